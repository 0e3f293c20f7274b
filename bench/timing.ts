// Timed passes shared by bench/run.ts and bench/levels.ts.
import type { Backend } from '../ts/backend.js';
import type { Network } from '../ts/network.js';
import { createTrainer, type TrainSettings } from '../ts/train.js';

export const BATCH = 100;

/** Images/s of one timed pass of `backend` over `images` in batches of BATCH. */
export async function pass(backend: Backend, images: Float32Array, imageLen: number): Promise<number> {
  const count = images.length / imageLen;
  const t0 = process.hrtime.bigint();
  for (let s = 0; s < count; s += BATCH) await backend.run(images.subarray(s * imageLen, Math.min(s + BATCH, count) * imageLen), s);
  return count / (Number(process.hrtime.bigint() - t0) / 1e9);
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Training images/s: one warm-up batch, then `reps` timed passes of `batches`
 * batches of 128 (the median counts), on the first training images.
 */
export async function trainThroughput(net: Network, settings: TrainSettings, train: { images: Uint8Array; labels: Uint8Array }, batches: number, reps: number, threads: number): Promise<{ rate: number; flopsPerImage: number }> {
  const n = 128 * (1 + batches * reps);
  const trainer = await createTrainer(net, settings, train.images.subarray(0, n * 3072), train.labels.subarray(0, n), threads);
  await trainer.trainBatches(0, 0, 1, threads);
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    const p = await trainer.trainBatches(0, 1 + r * batches, 1 + (r + 1) * batches, threads);
    rates.push(p.images / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  return { rate: median(rates), flopsPerImage: trainer.flopsPerImage };
}

