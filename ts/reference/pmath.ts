// Portable math, step for step as crates/core/src/pmath.rs: every operation
// is rounded to float32 with Math.fround, and only +, −, ×, ÷, sqrt, floor
// and exponent bit tricks are used. These are correctly rounded in both
// Rust and V8, so both engines get the same bits; libm's exp/log/tanh may
// differ in the last bit between the two and must never decide a sample.
const f = Math.fround;

const LOG2E = f(Math.LOG2E);
const LN2_HI = f(0.693145751953125);
const LN2_LO = f(1.428606765330187e-6);
const SQRT_2 = f(Math.SQRT2);
const TAU = f(2 * Math.PI);
const MIN_POSITIVE = 2 ** -126;

const bits = new DataView(new ArrayBuffer(4));
function fromBits(u: number): number {
  bits.setUint32(0, u >>> 0, true);
  return bits.getFloat32(0, true);
}
function toBits(x: number): number {
  bits.setFloat32(0, x, true);
  return bits.getUint32(0, true);
}

const clamp = (x: number, lo: number, hi: number) => (x < lo ? lo : x > hi ? hi : x);

/** e^x, x clamped to [−87, 88]. */
export function exp(x: number): number {
  x = clamp(x, -87, 88);
  const n = Math.floor(f(f(x * LOG2E) + 0.5));
  const r = f(f(x - f(n * LN2_HI)) - f(n * LN2_LO));
  let p = f(1 / 5040);
  p = f(f(p * r) + f(1 / 720));
  p = f(f(p * r) + f(1 / 120));
  p = f(f(p * r) + f(1 / 24));
  p = f(f(p * r) + f(1 / 6));
  p = f(f(p * r) + 0.5);
  p = f(f(p * r) + 1);
  p = f(f(p * r) + 1);
  return f(p * fromBits((n + 127) << 23));
}

/** 1 / (1 + e^−z). */
export function sigmoid(z: number): number {
  return f(1 / f(1 + exp(-z)));
}

/** Natural log of x > 0 (x ≤ 0 gives the log of the smallest normal). */
export function ln(x: number): number {
  x = x > MIN_POSITIVE ? x : MIN_POSITIVE;
  const b = toBits(x);
  let e = ((b >>> 23) & 0xff) - 127;
  let m = fromBits((b & 0x007fffff) | 0x3f800000);
  if (m > SQRT_2) {
    m = f(m * 0.5);
    e += 1;
  }
  const s = f(f(m - 1) / f(m + 1));
  const s2 = f(s * s);
  let p = f(1 / 11);
  p = f(f(p * s2) + f(1 / 9));
  p = f(f(p * s2) + f(1 / 7));
  p = f(f(p * s2) + f(1 / 5));
  p = f(f(p * s2) + f(1 / 3));
  p = f(f(p * s2) + 1);
  return f(f(e * LN2_HI) + f(f(e * LN2_LO) + f(f(2 * s) * p)));
}

/** cos(2π·u) for u in [0, 1). */
export function cos2pi(u: number): number {
  const t = f(u - Math.floor(f(u + 0.5)));
  let a = t < 0 ? -t : t;
  let sign = 1;
  if (a > 0.25) {
    a = f(0.5 - a);
    sign = -1;
  }
  const x = f(a * TAU);
  const nx2 = -f(x * x);
  let p = f(1 / 479001600);
  p = f(f(p * nx2) + f(1 / 3628800));
  p = f(f(p * nx2) + f(1 / 40320));
  p = f(f(p * nx2) + f(1 / 720));
  p = f(f(p * nx2) + f(1 / 24));
  p = f(f(p * nx2) + 0.5);
  p = f(f(p * nx2) + 1);
  return sign * p;
}

/** Standard normal deviate (Box–Muller, cosine branch) from u1 in (0, 1], u2 in [0, 1). */
export function gaussian(u1: number, u2: number): number {
  return f(f(Math.sqrt(f(-2 * ln(u1)))) * cos2pi(u2));
}
