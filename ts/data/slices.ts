// Long copies and conversions of a data set run on the caller's event loop:
// in one piece, a CIFAR training split's copy, 10,000 images' normalisation
// or a user's .npz conversion would hold it for tenths of a second to
// seconds, which a backend must not do to its host (test/reliability.test.ts
// and test/datasets.test.ts bound any timer's delay).

/**
 * Runs `f(start, end)` over `0..count` in slices of `size`, letting timers and
 * I/O run between slices. Callers size slices to a few ms of work on a
 * Zen 3.
 */
export async function inSlices(count: number, size: number, f: (start: number, end: number) => void): Promise<void> {
  for (let start = 0; start < count; start += size) {
    if (start > 0) await new Promise((resolve) => setImmediate(resolve));
    f(start, Math.min(count, start + size));
  }
}
