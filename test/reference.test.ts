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
    expect(Number.isFinite(gaussian(1, 0))).toBe(true);
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
