// The engines' contract without any external data: on a small built network
// with synthetic calibration images, the pure-JS reference gives the native
// engine's logits bit for bit for every converter (noise, bit slicing and
// signed inputs included), and the native engine gives the same bits on one
// thread and on two.
import { describe, expect, it } from 'vitest';
import { logitsDigest } from '../ts/digest.js';
import { createSimulator } from '../ts/simulator.js';
import { resolveConfig, type StoxConfig } from '../ts/stox.js';
import { caseRng, smallNetwork } from '../bench/fuzz-cases.js';

const net = smallNetwork();
const len = net.input[0] * net.input[1] * net.input[2];
// Normalised-image-like values, seeded.
const images = (n: number, seed: number) => {
  const rng = caseRng(seed, 0);
  return Float32Array.from({ length: n * len }, () => (rng.next() - 0.5) * 4);
};
const calibration = images(32, 1);
const test = images(12, 2);

const CONFIGS: [string, Partial<StoxConfig>][] = [
  ['ideal', { converter: 'ideal' }],
  ['lossless adc', { converter: 'adc' }],
  ['4-bit calibrated adc', { converter: 'adc', adcBits: 4, adcRange: 'calibrated' }],
  ['sparse-adc', { converter: 'sparse-adc' }],
  ['sense-amp', { converter: 'sense-amp' }],
  ['mtj T = 1', { converter: 'mtj', samples: 1 }],
  ['mtj T = 3, every crossbar layer (signed first input), device spread and noise', { converter: 'mtj', samples: 3, policy: 'all-crossbar', weightNoise: 0.05, readNoise: 0.5, mtjOffsetSigma: 0.1, mtjSlopeSigma: 0.1 }],
  ['mtj T = 2, 1-bit weight slices (three: 4-bit symmetric levels), 1-bit input streams, 16-row subarrays', { converter: 'mtj', samples: 2, weightSliceBits: 1, inputStreamBits: 1, rows: 16 }],
  ['mtj T per input stream 1, 2, 1, 5 (least significant first), 1-bit input streams, read noise', { converter: 'mtj', samplesPerStream: [1, 2, 1, 5], inputStreamBits: 1, rows: 16, readNoise: 0.5 }],
  ['sense-amp, 2-bit weight slices, 2-bit input streams, offset mapping', { converter: 'sense-amp', weightSliceBits: 2, inputStreamBits: 2, signed: 'offset', rows: 16 }],
];

describe('layer reports', () => {
  it('give T per stream and its mean as the samples per conversion', async () => {
    const config = resolveConfig({ converter: 'mtj', samplesPerStream: [1, 2, 1, 5], inputStreamBits: 1, rows: 16, seed: 7, calibrationImages: 32 });
    for (const engine of ['native', 'js'] as const) {
      const { layers } = await createSimulator(net, config, { dataDir: '', threads: 1, engine, calibration });
      expect(layers.length).toBeGreaterThan(0);
      for (const l of layers) expect([l.samples, l.samplesPerStream]).toEqual([2.25, [1, 2, 1, 5]]);
    }
  });
});

describe('JS reference ≡ native, no external data', () => {
  for (const [name, settings] of CONFIGS) {
    it(name, async () => {
      const config = resolveConfig({ ...settings, seed: 7, calibrationImages: 32 });
      const run = async (engine: 'native' | 'js', threads: number) => {
        const { backend } = await createSimulator(net, config, { dataDir: '', threads, engine, calibration });
        return logitsDigest((await backend.run(test, 100)).logits);
      };
      const native2 = await run('native', 2);
      expect(await run('native', 1)).toBe(native2);
      expect(await run('js', 1)).toBe(native2);
    });
  }
});
