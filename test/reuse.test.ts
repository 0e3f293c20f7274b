// A comparison imports each model file once and reads the test set once for
// all its configurations and seeds (ts/cache.ts), and gives the same logits,
// bit for bit, as separate evaluations that import and read afresh.
import { relative, resolve } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { EvalCache } from '../ts/cache.js';
import { compareCosts, entryConfig } from '../ts/cost/compare.js';
import { readCifar10 } from '../ts/data/cifar10.js';
import { DATASETS, normalizeFor } from '../ts/data/dataset.js';
import { evaluate } from '../ts/eval.js';
import { importOnnx } from '../ts/onnx/import.js';
import { packageRoot } from '../ts/paths.js';
import { DATA_DIR, HAVE_DATA } from './helpers/env.js';

// The real importOnnx, counting its calls: every module that imports it gets this one.
vi.mock('../ts/onnx/import.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../ts/onnx/import.js')>();
  return { ...real, importOnnx: vi.fn(real.importOnnx) };
});

const stox = resolve(packageRoot(), 'models', 'resnet20-cifar10-stox-4w4a.onnx');
const adc4 = resolve(packageRoot(), 'models', 'resnet20-cifar10-adc4-4w4a.onnx');

describe.skipIf(!HAVE_DATA)('one import per model, one read per data set', () => {
  it('a comparison of 5 configurations × 2 seeds on 2 models imports each model once, and equals separate evaluations', async () => {
    // Two batches of the default 100: the second runs on images further into the shared normalised set.
    const images = 130;
    const seeds = [1, 2];
    // The shared model once by its absolute path and once by a relative one: still one import.
    const entries = [
      { config: 'fp-adc', model: stox },
      { config: 'sense-amp', model: stox },
      { config: 'stox:1', model: stox },
      { config: 'low-bit-adc', model: adc4, entry: `low-bit-adc=${adc4}` },
      { config: 'stox:4', model: stox, entry: `stox:4=${relative(process.cwd(), stox)}` },
    ];
    const imports = vi.mocked(importOnnx);
    imports.mockClear();
    const read = vi.spyOn(DATASETS.cifar10, 'read');
    let report;
    let splits: string[];
    try {
      report = await compareCosts({ model: stox, data: DATA_DIR, images, seeds, compare: entries.map((e) => e.entry ?? e.config) });
    } finally {
      // (mockRestore forgets the calls)
      splits = read.mock.calls.map(([, split]) => split);
      read.mockRestore();
    }
    expect(imports.mock.calls.map(([path]) => resolve(path)).sort()).toEqual([adc4, stox].sort());
    expect(splits.filter((s) => s === 'test')).toHaveLength(1);
    expect(splits.filter((s) => s === 'train').length).toBeLessThanOrEqual(1);

    expect(report.configs.map((c) => c.name)).toEqual(entries.map((e) => e.config));
    const digests = new Set<string>();
    for (const [i, e] of entries.entries()) {
      const c = report.configs[i];
      expect(c.runs.map((r) => r.seed)).toEqual(seeds);
      for (const [k, seed] of seeds.entries()) {
        // On its own: its own import, data set and native network.
        const alone = await evaluate({ model: e.model, data: DATA_DIR, limit: images, config: { ...entryConfig(e.config, 4), seed } });
        expect({ config: e.config, seed, digest: c.runs[k].logitsDigest, correct: c.runs[k].correct }).toEqual({ config: e.config, seed, digest: alone.report.logitsDigest, correct: alone.report.correct });
        digests.add(c.runs[k].logitsDigest);
      }
    }
    // The configurations differ (the MTJ ones per seed too), so equal digests are not equal by accident.
    expect(digests.size).toBeGreaterThanOrEqual(entries.length + 1);
  });

  it('reads and normalises the longest prefix asked for once, however the requests interleave', async () => {
    const cache = new EvalCache();
    const ds = DATASETS.cifar10;
    const read = vi.spyOn(ds, 'read');
    const len = 3 * 32 * 32;
    try {
      // Started together: the shorter request shares the first read, the longer one replaces it.
      const [a, b, c] = await Promise.all([cache.inputs(ds, DATA_DIR, 'test', 500), cache.inputs(ds, DATA_DIR, 'test', 200), cache.inputs(ds, DATA_DIR, 'test', 700)]);
      const again = await cache.inputs(ds, DATA_DIR, 'test', 600);
      expect(read.mock.calls.map(([, split, count]) => [split, count])).toEqual([
        ['test', 500],
        ['test', 700],
      ]);
      const expected = Buffer.from(normalizeFor(ds, (await readCifar10(DATA_DIR, 'test', 700)).images, 700).buffer);
      for (const x of [a, b, c, again]) expect(Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(expected.subarray(0, x.length * 4))).toBe(true);
      expect([a.length, b.length, c.length, again.length]).toEqual([500 * len, 200 * len, 700 * len, 600 * len]);
      // A calibration's 300 training images: one read of 300, not of the split.
      expect((await cache.images(ds, DATA_DIR, 'train', 300)).count).toBe(300);
      expect(read.mock.calls.at(-1)!.slice(1)).toEqual(['train', 300]);
      // The first 40 validation images: the whole training split is read (they end it), 40 are returned.
      const validation = await cache.images(ds, DATA_DIR, 'validation', 40);
      expect(read.mock.calls.at(-1)!.slice(1)).toEqual(['train', undefined]);
      const train = await readCifar10(DATA_DIR, 'train');
      expect({ count: validation.count, labels: [...validation.labels] }).toEqual({ count: 40, labels: [...train.labels.subarray(45_000, 45_040)] });
    } finally {
      read.mockRestore();
    }
  });

  it('a missing model is still named, through a shared cache too', async () => {
    const cache = new EvalCache();
    const missing = resolve(packageRoot(), 'models', 'no-such-model.onnx');
    // Twice: a failed import is not kept as the answer for the next caller, who gets the same error.
    for (let i = 0; i < 2; i++) await expect(evaluate({ model: missing, data: DATA_DIR, limit: 1, cache })).rejects.toThrow(/no-such-model\.onnx/);
    await expect(compareCosts({ data: DATA_DIR, images: 1, compare: [`stox:4=${missing}`] })).rejects.toThrow(/stox:4: model .*no-such-model\.onnx does not exist/);
  });
});
