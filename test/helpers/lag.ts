/** Largest delay of a 5 ms interval timer while `work` runs: how long `work` held the event loop at a stretch. */
export async function timerLag<T>(work: () => Promise<T>): Promise<{ result: T; maxLagMs: number; ticks: number }> {
  let last = performance.now();
  let maxLagMs = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxLagMs = Math.max(maxLagMs, now - last - 5);
    last = now;
    ticks++;
  }, 5);
  try {
    const result = await work();
    // One more tick: a stretch that ends `work` is measured by the tick it delayed.
    await new Promise((resolve) => setTimeout(resolve, 6));
    return { result, maxLagMs, ticks };
  } finally {
    clearInterval(timer);
  }
}
