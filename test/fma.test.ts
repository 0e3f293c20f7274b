// The reference's float32 fused multiply-add (ts/reference/fma.ts) against
// exact rational arithmetic: every float32 value is an integer times 2^-149, so
// a·b + c is an integer times 2^-298, held exactly in a BigInt and rounded
// once to float32 (to nearest, ties to even) by integer arithmetic.
import { describe, expect, it } from 'vitest';
import { fmaf32 } from '../ts/reference/fma.js';
import { gemm } from '../ts/reference/layers.js';

const f = Math.fround;
const F32_MAX = f(3.4028234663852886e38);
const SCALE = 298; // a·b + c = N · 2^-SCALE for an integer N

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const fromBits = (bits: number) => {
  u32[0] = bits;
  return f32[0];
};

/** A finite float32 as [integer significand with sign, exponent]: v = m · 2^e. */
function split(v: number): [bigint, number] {
  f32[0] = v;
  const bits = u32[0];
  const field = (bits >>> 23) & 0xff;
  const frac = bits & 0x7fffff;
  const m = BigInt(field === 0 ? frac : frac | 0x800000);
  return [bits >>> 31 ? -m : m, (field === 0 ? 1 : field) - 150];
}

/** a·b + c exactly, rounded once to float32, for finite float32 a, b, c. */
function exact(a: number, b: number, c: number): number {
  const [ma, ea] = split(a);
  const [mb, eb] = split(b);
  const [mc, ec] = split(c);
  const n = ((ma * mb) << BigInt(ea + eb + SCALE)) + (mc << BigInt(ec + SCALE));
  if (n === 0n) {
    // An exact zero: −0 only when both terms are −0 (IEEE 754 round to nearest).
    const productNegative = Object.is(a * b, -0);
    return productNegative && Object.is(c, -0) ? -0 : 0;
  }
  const negative = n < 0n;
  const mag = negative ? -n : n;
  // The float32 quantum at this magnitude: 2^(E−23) for 2^E ≤ |x| < 2^(E+1), at least 2^-149.
  const e = mag.toString(2).length - 1 - SCALE;
  const qe = Math.max(e - 23, -149);
  const shift = BigInt(qe + SCALE);
  let q = mag >> shift;
  const rem = mag - (q << shift);
  const half = 1n << (shift - 1n);
  if (rem > half || (rem === half && (q & 1n) === 1n)) q += 1n;
  const value = Number(q) * 2 ** qe;
  const rounded = value >= 2 ** 128 ? Infinity : value;
  return negative ? -rounded : rounded; // a sum that underflows to zero keeps its sign
}

/** mulberry32: a small seeded generator. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** A float32 with random sign and significand, exponent uniform in [lo, hi] (−127 gives subnormals). */
function randomF32(r: () => number, lo: number, hi: number): number {
  const e = lo + Math.floor(r() * (hi - lo + 1));
  const field = Math.max(0, Math.min(254, e + 127));
  return fromBits((r() < 0.5 ? 0x80000000 : 0) | (field << 23) | Math.floor(r() * 0x800000));
}

const same = (x: number, y: number) => Object.is(x, y);

describe('fmaf32', () => {
  it('equals the exactly rounded a·b + c on seeded random triples', () => {
    const r = rng(20);
    const kinds: Array<() => [number, number, number]> = [
      // Anywhere in the float32 range: overflow, underflow, one term dominating.
      () => [randomF32(r, -127, 127), randomF32(r, -127, 127), randomF32(r, -127, 127)],
      // Accumulation-like: c within 2^±40 of the product.
      () => {
        const a = randomF32(r, -8, 8);
        const b = randomF32(r, -8, 8);
        return [a, b, f(a * b * 2 ** Math.floor(r() * 80 - 40) * (r() < 0.5 ? -1 : 1) * (1 + r()))];
      },
      // Cancellation: c close to −a·b.
      () => {
        const a = randomF32(r, -20, 20);
        const b = randomF32(r, -20, 20);
        return [a, b, f(-a * b * (1 + (r() - 0.5) * 2 ** -Math.floor(r() * 30)))];
      },
      // Subnormal results and terms.
      () => [randomF32(r, -90, -60), randomF32(r, -90, -60), randomF32(r, -127, -120)],
      // Near the overflow threshold.
      () => [randomF32(r, 125, 127), randomF32(r, 0, 1), randomF32(r, 126, 127)],
    ];
    let n = 0;
    for (let i = 0; i < 40_000; i++) {
      for (const kind of kinds) {
        const [a, b, c] = kind();
        const got = fmaf32(a, b, c);
        const want = exact(a, b, c);
        if (!same(got, want)) expect([a, b, c, got]).toEqual([a, b, c, want]);
        n++;
      }
    }
    expect(n).toBe(200_000);
  });

  it('settles the double roundings that fround(a·b + c) gets wrong', () => {
    // |a·b| = h·(1 − k²·2^-46), h half of c's float32 spacing: a·b + c lies just on c's
    // side of the midpoint c ± h, by less than half a float64 ulp, so the float64 sum
    // is the midpoint itself and fround breaks the tie to the even neighbour. The
    // exact answer is c: with c's significand odd, the naive rounding is wrong.
    const r = rng(7);
    let wrong = 0;
    for (let i = 0; i < 4000; i++) {
      // Normal c, and subnormal c in [2^-127, 2^-126) (smaller ones have too few bits to lose any); both signs.
      const sign = r() < 0.5 ? 0x80000000 : 0;
      f32[0] = i % 4 === 3 ? fromBits(sign | 0x400000 | Math.floor(r() * 0x400000)) : randomF32(r, -125, 126);
      const odd = i % 2 === 0;
      u32[0] = odd ? u32[0] | 1 : u32[0] & ~1;
      const c = f32[0];
      const field = (u32[0] >>> 23) & 0xff;
      const h = 2 ** ((field === 0 ? 1 : field) - 151); // half the float32 spacing at c
      const k = 1 + Math.floor(r() * 200);
      const ha = Math.floor(Math.log2(h) / 2);
      const a = (r() < 0.5 ? -1 : 1) * (1 + k * 2 ** -23) * 2 ** ha;
      const b = (1 - k * 2 ** -23) * 2 ** (Math.log2(h) - ha);
      expect([a, b, c].every((v) => f(v) === v)).toBe(true);
      expect(exact(a, b, c)).toBe(c);
      expect(fmaf32(a, b, c)).toBe(c);
      if (odd) {
        expect(f(a * b + c)).not.toBe(c);
        wrong++;
      } else {
        expect(f(a * b + c)).toBe(c); // the tie went c's way
      }
    }
    expect(wrong).toBe(2000);
    // The answer away from c: 1 + 3·2^-24·(1 − 2^-44) is just below the midpoint
    // 1 + 3·2^-24, whose even neighbour is 1 + 2^-22.
    const [a, b] = [3 * (1 + 2 ** -22) * 2 ** -12, (1 - 2 ** -22) * 2 ** -12];
    expect(exact(a, b, 1)).toBe(f(1 + 2 ** -23));
    expect(f(a * b + 1)).toBe(f(1 + 2 ** -22));
    expect(fmaf32(a, b, 1)).toBe(f(1 + 2 ** -23));
    // The overflow threshold: just below the midpoint between the largest float32 and 2^128.
    const [ma, mb] = [(1 + 2 ** -23) * 2 ** 52, (1 - 2 ** -23) * 2 ** 51];
    expect(exact(ma, mb, F32_MAX)).toBe(F32_MAX);
    expect(f(ma * mb + F32_MAX)).toBe(Infinity);
    expect(fmaf32(ma, mb, F32_MAX)).toBe(F32_MAX);
    expect(fmaf32(-ma, mb, -F32_MAX)).toBe(-F32_MAX);
    expect(fmaf32(ma, ma, F32_MAX)).toBe(Infinity); // past the threshold
  });

  it('gives IEEE signed zeros, infinities and NaN', () => {
    expect(fmaf32(1, -1, 1)).toBe(0);
    expect(Object.is(fmaf32(1, -1, 1), 0)).toBe(true);
    expect(Object.is(fmaf32(-0, 1, -0), -0)).toBe(true);
    expect(Object.is(fmaf32(0, 1, -0), 0)).toBe(true);
    expect(Object.is(fmaf32(2 ** -100, -(2 ** -100), 0), -0)).toBe(true); // underflow keeps the sign
    expect(Object.is(fmaf32(2 ** -75, -(2 ** -75), 0), -0)).toBe(true); // exactly 2^-150: a tie, to even (zero)
    expect(fmaf32(2 ** -75, 2 ** -75 * (1 + 2 ** -23), 0)).toBe(2 ** -149);
    expect(fmaf32(F32_MAX, 2, -F32_MAX)).toBe(F32_MAX);
    expect(fmaf32(F32_MAX, 1.5, 0)).toBe(Infinity);
    expect(fmaf32(-F32_MAX, 1.5, 0)).toBe(-Infinity);
    expect(fmaf32(Infinity, 0, 1)).toBeNaN();
    expect(fmaf32(Infinity, 1, -Infinity)).toBeNaN();
    expect(fmaf32(Infinity, -1, 1)).toBe(-Infinity);
    expect(fmaf32(1, 1, NaN)).toBeNaN();
  });

  it('the reference GEMM skips zero terms without losing a sum\'s −0', () => {
    // 2^-100 · −2^-100 underflows to −0; a zero term then adds +0 (the sum becomes +0) or −0 (it stays −0).
    const t = 2 ** -100;
    const sum = (last: number) => gemm(Float32Array.of(t, 0), Float32Array.of(-t, last), 1, 2, 1)[0];
    expect(Object.is(sum(1), 0)).toBe(true);
    expect(Object.is(sum(-1), -0)).toBe(true);
    expect(Object.is(fmaf32(0, -1, fmaf32(t, -t, 0)), -0)).toBe(true);
  });
});
