// Weight and activation quantisers, as crates/core/src/quant.rs. Rounding is
// sign(v)·floor(|v| + 0.5) (half away from zero), unlike Math.round.
const f = Math.fround;

export function roundHalfAway(v: number): number {
  const r = Math.floor(f(Math.abs(v) + 0.5));
  return v < 0 ? -r : r;
}

const clamp = (x: number, lo: number, hi: number) => (x < lo ? lo : x > hi ? hi : x);

/** Integer levels q[o][k] and the factor per output that turns them back into weights. */
export function quantizeWeights(w: Float32Array, out: number, bits: number, kind: 'uniform' | 'away'): { q: Float32Array; scale: Float32Array } {
  const k = w.length / out;
  const q = new Float32Array(w.length);
  const scale = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    const row = w.subarray(o * k, (o + 1) * k);
    if (kind === 'uniform' && bits === 1) {
      // Sign, rescaled by the mean magnitude.
      let sum = 0;
      for (const v of row) sum = f(sum + Math.abs(v));
      scale[o] = f(sum / k);
      row.forEach((v, r) => (q[o * k + r] = v < 0 ? -1 : 1));
    } else if (kind === 'uniform') {
      // Symmetric, levels −(2^(b−1)−1)…2^(b−1)−1, scale max|w| / levels.
      const levels = 2 ** (bits - 1) - 1;
      let max = 0;
      for (const v of row) max = Math.max(max, Math.abs(v));
      const s = max > 0 ? f(max / levels) : 1;
      scale[o] = s;
      row.forEach((v, r) => (q[o * k + r] = clamp(roundHalfAway(f(v / s)), -levels, levels)));
    } else {
      // The authors': standardise, then sign·ceil(|z|·2^(b−1)) clamped to 2^(b−1).
      let sum = 0;
      for (const v of row) sum = f(sum + v);
      const mean = f(sum / k);
      let ss = 0;
      for (const v of row) {
        const d = f(v - mean);
        ss = f(ss + f(d * d));
      }
      let std = f(Math.sqrt(f(ss / k)));
      if (!(std > 0)) std = 1;
      const half = 2 ** (bits - 1);
      scale[o] = f(1 / half);
      row.forEach((v, r) => {
        const z = f(f(v - mean) / std);
        const m = Math.min(Math.ceil(f(Math.abs(z) * half)), half);
        q[o * k + r] = z < 0 ? -m : m;
      });
    }
  }
  return { q, scale };
}

/** Unsigned [0, clip] → 0…2^a−1, or signed [−clip, clip] → ±(2^(a−1)−1). */
export class InputQuant {
  readonly levels: number;
  readonly invStep: number;
  readonly step: number;
  constructor(bits: number, clip: number, readonly signed: boolean) {
    clip = f(clip);
    this.levels = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
    this.invStep = f(this.levels / clip);
    this.step = f(clip / this.levels);
  }
  level(x: number): number {
    return roundHalfAway(clamp(f(x * this.invStep), this.signed ? -this.levels : 0, this.levels));
  }
}
