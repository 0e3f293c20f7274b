// The crossbar engine on the real ResNet20: op counts, lossless ADC,
// determinism under threads/batch, seeds, the pure-JS reference, and config
// validation.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../ts/config.js';
import { evaluate, type EvalOptions } from '../ts/eval.js';
import { importOnnx } from '../ts/onnx/import.js';
import { crossbarNodes, layerSpecs, resolveConfig, scheduleSamples } from '../ts/stox.js';
import { CLI, DATA_DIR, HAVE_DATA, HAVE_MODELS, model } from './helpers/env.js';

const run = promisify(execFile);
const R20 = () => model('resnet20.onnx');
// Calibration on 64 training images keeps these tests quick; results are
// compared between runs with the same setting, never against a constant.
const base = (config: EvalOptions['config'], extra: Partial<EvalOptions> = {}): EvalOptions => ({
  model: R20(),
  data: DATA_DIR,
  config: { calibrationImages: 64, ...config },
  ...extra,
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('crossbar engine on resnet20', () => {
  it('counts 450,560 MTJ conversions per image per sample (rows 128, balanced, one slice and stream)', async () => {
    const { report } = await evaluate(base({ converter: 'mtj', samples: 4 }, { limit: 20 }));
    const per = (k: 'conversions' | 'mtjSamples') => report.ops!.totals[k] / report.images;
    expect(per('conversions')).toBe(450_560);
    expect(per('mtjSamples')).toBe(4 * 450_560);
    // 18 crossbar layers; the first conv and the final linear stay digital.
    const layers = report.ops!.layers;
    expect(layers.filter((l) => l.crossbar)).toHaveLength(18);
    expect(layers[0].crossbar).toBe(false);
    expect(layers[0].digitalMacs / report.images).toBe(16 * 27 * 1024);
    expect(layers.at(-1)!.crossbar).toBe(false);
    expect(layers.at(-1)!.digitalMacs / report.images).toBe(640);
    // Balanced split of 144 / 288 / 576 rows, as torch.chunk.
    const rows = new Set(report.config.layers.map((l) => l.subarrayRows.join('+')));
    expect([...rows].sort()).toEqual(['116+116+116+116+112', '72+72', '96+96+96']);
    // 16x16 layer: 2 subarrays × 16 columns × 1024 pixels per image.
    expect(layers[1].conversions / report.images).toBe(2 * 16 * 1024);
    // Differential columns: 2 × 16 physical columns fit one 128-wide subarray per row tile.
    expect(layers[1].cellReads / report.images).toBe(1024 * 144 * 32);
    expect(layers[1].psMin).toBeLessThan(0);
    expect(layers[1].psMax).toBeGreaterThan(0);
  });

  it('a lossless full-range ADC gives the digest of the ideal converter', async () => {
    const ideal = await evaluate(base({ converter: 'ideal' }, { limit: 100 }));
    const adc = await evaluate(base({ converter: 'adc', adcRange: 'full' }, { limit: 100 }));
    // Lossless per layer: 2 × real rows × 7 (4-bit symmetric magnitudes) × 15 (4-bit inputs) + 1 levels.
    expect(adc.report.config.layers[0].adcBits).toBe(14); // 144 rows as 72 + 72: 15,121 levels
    expect(Math.max(...adc.report.config.layers.map((l) => l.adcBits!))).toBe(15); // 576 rows as 116 × 4 + 112: 24,361 levels
    expect(adc.report.logitsDigest).toBe(ideal.report.logitsDigest);
    // Fewer bits over the same range lose information.
    const adc8 = await evaluate(base({ converter: 'adc', adcRange: 'full', adcBits: 8 }, { limit: 100 }));
    expect(adc8.report.logitsDigest).not.toBe(ideal.report.logitsDigest);
  });

  it('mtj with every non-ideality: same digest for threads 1/2 and batch 1/100; seed changes it', async () => {
    const noisy = { converter: 'mtj' as const, samples: 4, weightNoise: 0.05, readNoise: 2, mtjOffsetSigma: 0.05, mtjSlopeSigma: 0.1, seed: 7 };
    const runs = await Promise.all([
      evaluate(base(noisy, { limit: 40, threads: 1, batch: 100 })),
      evaluate(base(noisy, { limit: 40, threads: 2, batch: 100 })),
      evaluate(base(noisy, { limit: 40, threads: 2, batch: 1 })),
    ]);
    expect(new Set(runs.map((r) => r.report.logitsDigest)).size).toBe(1);
    const other = await evaluate(base({ ...noisy, seed: 8 }, { limit: 40 }));
    expect(other.report.logitsDigest).not.toBe(runs[0].report.logitsDigest);
    expect(runs[0].report.seed).toBe(7);
  });

  // Native and the pure-JS reference on the first 64 test images.
  const configs: [string, EvalOptions['config']][] = [
    ['ideal 4w4a', { converter: 'ideal' }],
    ['adc 5-bit calibrated', { converter: 'adc', adcBits: 5, adcRange: 'calibrated' }],
    ['mtj per-layer schedule', { converter: 'mtj', schedule: 'first-16-then-4', seed: 3 }],
    ['mtj T = 1, 1-bit slices and streams', { converter: 'mtj', samples: 1, weightSliceBits: 1, inputStreamBits: 1, calibrationImages: 16, seed: 5 }],
    ['ideal 1-bit slices and streams, offset mapping', { converter: 'ideal', signed: 'offset', weightSliceBits: 1, inputStreamBits: 1 }],
    ['mtj offset mapping, every non-ideality', { converter: 'mtj', samples: 2, signed: 'offset', weightNoise: 0.03, readNoise: 1, mtjOffsetSigma: 0.05, mtjSlopeSigma: 0.05, seed: 9 }],
    ['sense-amp, away quantiser', { converter: 'sense-amp', weightQuant: 'away' }],
    ['sparse-adc, filled split', { converter: 'sparse-adc', split: 'filled' }],
  ];
  for (const [name, config] of configs) {
    it(`js reference = native: ${name}`, async () => {
      const nat = await evaluate(base(config, { limit: 64 }));
      const js = await evaluate(base(config, { limit: 64, backend: 'js' }));
      expect(js.report.backend).toBe('js');
      expect(js.report.logitsDigest).toBe(nat.report.logitsDigest);
    });
  }
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('stoxnet eval with simulator flags', () => {
  it('--json adds config, seed and ops; --config FILE is overridden by flags', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stoxnet-'));
    const file = join(dir, 'cfg.json');
    writeFileSync(file, JSON.stringify({ converter: 'mtj', samples: 2, rows: 64, calibrationImages: 32 }));
    const { stdout } = await run('node', [CLI, 'eval', '--model', R20(), '--data', DATA_DIR, '--config', file, '--samples', '3', '--limit', '10', '--json']);
    const r = JSON.parse(stdout);
    expect(r.converter).toBe('mtj');
    expect(r.config.rows).toBe(64);
    expect(r.config.samples).toBe(3);
    expect(r.config.layers.every((l: { samples: number }) => l.samples === 3)).toBe(true);
    expect(r.seed).toBe(0);
    expect(r.ops.totals.mtjSamples).toBe(3 * r.ops.totals.conversions);
  });

  it('invalid values are rejected naming the flag and value', async () => {
    const cases: [string[], RegExp][] = [
      [['--converter', 'mtj', '--rows', '0'], /--rows: expected an integer in \[1, 4096\], got "0"/],
      [['--converter', 'mtj', '--weight-bits=-1'], /--weight-bits: expected an integer in \[1, 16\], got "-1"/],
      [['--converter', 'mtj', '--samples', '0'], /--samples: expected an integer in \[1, 1048576\], got "0"/],
      [['--converter', 'mtj', '--samples-per-layer', '1,2,3'], /--samples-per-layer: the model has 18 crossbar layers, got 3 values/],
      [['--converter', 'mtj', '--schedule', 'zigzag'], /--schedule: expected one of first-16-then-4, rising, falling, got "zigzag"/],
      [['--converter', 'warp'], /--converter: expected one of fp, ideal, adc, sparse-adc, sense-amp, mtj, got "warp"/],
      [['--converter', 'ideal', '--weight-slice-bits', '5'], /--weight-slice-bits: expected an integer in \[1, 4\], got "5"/],
      [['--converter', 'ideal', '--weight-quant', 'away', '--signed', 'offset'], /needs the differential mapping/],
      [['--converter', 'mtj', '--backend', 'ort'], /backend ort runs the model in FP32 only/],
    ];
    for (const [flags, message] of cases) {
      const err = await run('node', [CLI, 'eval', '--model', R20(), '--data', DATA_DIR, '--limit', '1', ...flags]).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
      expect(err, flags.join(' ')).toBeDefined();
      expect(err!.stderr, flags.join(' ')).toMatch(message);
      expect(err!.code).toBeGreaterThan(0);
    }
  });
});

describe('configuration', () => {
  it('schedules and policies', async () => {
    expect(scheduleSamples('first-16-then-4', 5)).toEqual([16, 4, 4, 4, 4]);
    expect(scheduleSamples('rising', 18)).toEqual([1, 1, 2, 4, 8, 16, 1, 1, 2, 4, 8, 16, 1, 1, 2, 4, 8, 16]);
    expect(scheduleSamples('falling', 7)).toEqual([16, 8, 4, 2, 1, 1, 16]);
    expect(() => resolveConfig({ rows: 'x' })).toThrow(ConfigError);
    expect(() => resolveConfig({ bogus: 1 })).toThrow(/unknown setting "bogus"/);
    expect(() => resolveConfig({ schedule: 'rising', samplesPerLayer: [1] })).toThrow(/both set the samples per layer/);
    expect(resolveConfig({ samplesPerLayer: '1,2' }).samplesPerLayer).toEqual([1, 2]);
  });

  it.skipIf(!HAVE_MODELS)('layer specs: first conv and last linear digital, signedness from the producer', async () => {
    const net = await importOnnx(R20());
    const nodes = crossbarNodes(net, 'first-last-digital');
    expect(nodes).toHaveLength(18);
    expect(crossbarNodes(net, 'all-crossbar')).toHaveLength(20);
    const specs = layerSpecs(net, resolveConfig({ converter: 'mtj', schedule: 'first-16-then-4' }));
    const used = specs.filter((s) => s !== null);
    expect(used.map((s) => s!.samples)).toEqual([16, ...new Array(17).fill(4)]);
    // Every block conv reads a ReLU output: unsigned inputs.
    expect(used.every((s) => !s!.inputSigned)).toBe(true);
    expect(layerSpecs(net, resolveConfig({ converter: 'mtj', policy: 'all-crossbar' }))[0]!.inputSigned).toBe(true);
    // An explicit digital list overrides the policy and names unknown layers.
    const keep = [net.nodes[nodes[0]].name, net.nodes[nodes[5]].name];
    expect(crossbarNodes(net, 'first-last-digital', keep)).toHaveLength(20 - 2);
    expect(() => crossbarNodes(net, 'all-crossbar', ['nope'])).toThrow(/--digital-layers: no Conv\/Linear layer named "nope"/);
  });
});
