// The pure-JS reference's building blocks against the Rust contract.
import { describe, expect, it } from 'vitest';
import { cos2pi, exp, gaussian, ln, sigmoid } from '../ts/reference/pmath.js';
import { quantizeWeights, roundHalfAway } from '../ts/reference/quant.js';
import { splitRows } from '../ts/reference/crossbar.js';
import { Domain, key, Lanes, Stream, unit24 } from '../ts/reference/rng.js';

describe('RNG contract', () => {
  it('matches the fixed vectors of crates/core/src/rng.rs', () => {
    expect(key(1, [])).toBe(1n);
    expect(key(42, [1, 2, 3, 4])).toBe(0x6972269d34737476n);
    const r = new Stream(42, [1, 2, 3, 4]);
    expect([r.nextU32(), r.nextU32(), r.nextU32(), r.nextU32()]).toEqual([2568815041, 2299623974, 3206830162, 226171529]);
  });

  it('lanes are the streams keyed [domain, layer, image, lane]', () => {
    const lanes = new Lanes(42, Domain.MtjSample, 7, 12345);
    const refs = Array.from({ length: 8 }, (_, l) => new Stream(42, [Domain.MtjSample, 7, 12345, l]));
    for (let step = 0; step < 100; step++) {
      const l = (step * 5) % 8;
      expect(lanes.next(l)).toBe(refs[l].nextU32());
    }
  });

  it('uniforms are 24-bit', () => {
    expect(unit24(0xffffffff)).toBe(1 - 2 ** -24);
    expect(unit24(255)).toBe(0);
  });
});

describe('portable math', () => {
  it('is close to libm and always float32', () => {
    for (let i = 0; i <= 2000; i++) {
      const x = Math.fround(-20 + i * 0.02);
      expect(Math.abs(exp(x) / Math.exp(x) - 1)).toBeLessThan(4e-7);
      expect(Math.abs(sigmoid(x) - 1 / (1 + Math.exp(-x)))).toBeLessThan(2e-7);
      expect(Math.fround(sigmoid(x))).toBe(sigmoid(x));
      const y = Math.fround(1e-6 + i * 0.5);
      expect(Math.abs(ln(y) - Math.log(y))).toBeLessThan(2e-6);
      const u = Math.fround(i / 2001);
      expect(Math.abs(cos2pi(u) - Math.cos(2 * Math.PI * u))).toBeLessThan(5e-7);
    }
  });

  it('gives the bits of crates/core/tests/pmath_vectors.rs', () => {
    const bits = (v: number[]) => v.map((x) => new Uint32Array(Float32Array.of(x).buffer)[0]);
    const xs = [-87.5, -20.25, -1.75, -0.125, 0, 0.3125, 1, 5.25, 88.75];
    expect(bits(xs.map(exp))).toEqual([0x00b33687, 0x30dc9ef1, 0x3e31f1cc, 0x3f61eb51, 0x3f800000, 0x3faef48c, 0x402df854, 0x433e90f7, 0x7ef882b7]);
    expect(bits(xs.map(sigmoid))).toEqual([0x006cb2bb, 0x30dc9ef0, 0x3e1799b0, 0x3ef00553, 0x3f000000, 0x3f13d6bc, 0x3f3b26a8, 0x3f7ea9e6, 0x3f800000]);
    const ys = [2 ** -100, 2 ** -10, 0.5, 1, 1.5, 2, 1000];
    expect(bits(ys.map(ln))).toEqual([0xc28aa123, 0xc0ddce9e, 0xbf317218, 0x00000000, 0x3ecf9920, 0x3f317218, 0x40dd0c55]);
    const us = [0, 0.125, 0.25, 0.3125, 0.5, 0.75, 1 - 2 ** -14];
    expect(bits(us.map(cos2pi))).toEqual([0x3f800000, 0x3f3504f2, 0x00000000, 0xbec3ef16, 0xbf800000, 0x00000000, 0x3f7fffff]);
    const gs: [number, number][] = [[1, 0], [0.5, 0.25], [2 ** -10, 0.125], [0.875, 0.625], [2 ** -24, 1 - 2 ** -10]];
    expect(bits(gs.map(([a, b]) => gaussian(a, b)))).toEqual([0x80000000, 0x00000000, 0x40287f48, 0xbebb1842, 0x40b89372]);
  });

  it('gaussian is Box–Muller, and standard normal on the RNG stream', () => {
    let worst = 0;
    for (let i = 1; i <= 1000; i++) {
      for (let j = 0; j < 100; j++) {
        const [u1, u2] = [Math.fround(i / 1000), Math.fround(j / 100)];
        worst = Math.max(worst, Math.abs(gaussian(u1, u2) - Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)));
      }
    }
    expect(worst).toBeLessThan(1e-6);
    // As gaussian_moments in crates/core/src/pmath.rs: 200k deviates of the stream (3, [9]); mean within
    // 5·sd/sqrt(n) = 0.011 of 0, variance within 5·sqrt(2/n) = 0.016 of 1; and 5 % beyond ±1.96.
    const r = new Stream(3, [9]);
    const n = 200_000;
    let [s, s2, tails] = [0, 0, 0];
    for (let k = 0; k < n; k++) {
      const g = gaussian(1 - unit24(r.nextU32()), unit24(r.nextU32()));
      s += g;
      s2 += g * g;
      if (Math.abs(g) > 1.96) tails++;
    }
    const mean = s / n;
    expect(Math.abs(mean)).toBeLessThan(0.011);
    expect(Math.abs(s2 / n - mean * mean - 1)).toBeLessThan(0.016);
    // Binomial sd of the tail fraction: sqrt(0.05·0.95/n) = 0.00049; 5 of them.
    expect(Math.abs(tails / n - 0.05)).toBeLessThan(0.0025);
  });
});

describe('quantisers and mapping', () => {
  it('round half away from zero', () => {
    expect([-2.5, -1.5, -0.5, 0.5, 1.5, 2.4].map(roundHalfAway)).toEqual([-3, -2, -1, 1, 2, 2]);
  });

  it('uniform and away weight levels', () => {
    const u = quantizeWeights(Float32Array.of(0.7, -0.35, 0.1, 0, -0.7, 0.05), 2, 4, 'uniform');
    expect([...u.q]).toEqual([7, -4, 1, 0, -7, 1]);
    const a = quantizeWeights(Float32Array.of(1, -1, 0.01, -0.01), 1, 2, 'away');
    expect([...a.q]).toEqual([2, -2, 1, -1]);
  });

  it('subarray splits as torch.chunk', () => {
    const sizes = (k: number, split: string) => splitRows(k, 128, split).map(([a, b]) => b - a);
    expect(sizes(576, 'balanced')).toEqual([116, 116, 116, 116, 112]);
    expect(sizes(144, 'filled')).toEqual([128, 16]);
  });
});
