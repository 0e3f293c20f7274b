// Fair converter comparisons: every `--compare` entry on its own model, several
// sampling seeds per configuration, the `stoxnet-fair` preset, and the result
// lines that `stoxnet report` draws.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../ts/config.js';
import { compareCosts, costResults, entryConfig, entryName, PRESETS, splitEntry, type CostReport } from '../ts/cost/compare.js';
import { evaluate } from '../ts/eval.js';
import { packageRoot } from '../ts/paths.js';
import { designGroups, renderReport } from '../ts/report/index.js';
import { overEmbedded, resolveConfig } from '../ts/stox.js';
import { readResults, writeResults } from '../ts/sweep/results.js';
import { CLI, DATA_DIR, HAVE_DATA, HAVE_MODELS, model } from './helpers/env.js';

const run = promisify(execFile);
const OURS = join(packageRoot(), 'models', 'resnet20-cifar10-stox-4w4a.onnx');
const dir = mkdtempSync(join(tmpdir(), 'stoxnet-fair-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('comparison entries', () => {
  it('stox:FILE.json is a per-layer schedule file; an entry\'s T replaces the model\'s per-layer T', () => {
    expect(entryConfig('stox:sched/mixed.schedule.json', 4)).toEqual({ converter: 'mtj', schedule: 'sched/mixed.schedule.json' });
    expect(entryName('stox:sched/mixed.schedule.json')).toBe('stox:mixed.schedule.json');
    // A model trained with samplesPerLayer embeds it; stox:4 and stox:<schedule> still mean what they say.
    const embedded = { converter: 'mtj', samplesPerLayer: [16, 4, 4] };
    const t4 = resolveConfig({ ...embedded, ...entryConfig('stox:4', 4) });
    expect([t4.samples, t4.samplesPerLayer]).toEqual([4, undefined]);
    const sched = resolveConfig({ ...embedded, ...entryConfig('stox:rising', 4) });
    expect([sched.schedule, sched.samplesPerLayer]).toEqual(['rising', undefined]);
    // stox:T0/T1/... is T per input stream, least significant first; it too replaces the embedded T.
    expect(entryConfig('stox:1/1/1/4', 4)).toEqual({ converter: 'mtj', samplesPerLayer: undefined, schedule: undefined, samplesPerStream: [1, 1, 1, 4] });
    const perStream = resolveConfig({ ...embedded, inputStreamBits: 1, ...entryConfig('stox:1/1/1/4', 4) });
    expect([perStream.samplesPerStream, perStream.samplesPerLayer]).toEqual([[1, 1, 1, 4], undefined]);
    expect(resolveConfig({ converter: 'mtj', inputStreamBits: 1, samplesPerStream: [1, 1, 1, 4], ...entryConfig('stox:2', 4) }).samplesPerStream).toBeUndefined();
    expect(() => entryConfig('stox:1/x', 4)).toThrow(/--compare stox:1\/x: T per stream: expected an integer/);
    // A model trained at T per stream (or a shared --samples-per-stream) still reads through the other converters.
    const streamModel = { converter: 'mtj', inputStreamBits: 1, samplesPerStream: [1, 1, 2, 3] };
    for (const entry of ['fp-adc', 'low-bit-adc', 'sparse-adc', 'sense-amp', 'ideal']) {
      expect(resolveConfig({ ...streamModel, ...entryConfig(entry, 4) }).samplesPerStream, entry).toBeUndefined();
    }
    expect(resolveConfig(overEmbedded(streamModel, { converter: 'sense-amp' })).samplesPerStream).toBeUndefined();
    expect(resolveConfig(overEmbedded(streamModel, { seed: 2 })).samplesPerStream).toEqual([1, 1, 2, 3]);
    expect(() => resolveConfig(overEmbedded(streamModel, { converter: 'sense-amp', samplesPerStream: [1, 1, 1, 2] }))).toThrow('--samples-per-stream sets MTJ samples; --converter is sense-amp');
    // fp-adc is lossless even on a model that embeds a low ADC resolution.
    expect(resolveConfig({ converter: 'adc', adcBits: 4, adcRange: 'calibrated', ...entryConfig('fp-adc', 4) }).adcBits).toBeUndefined();
  });

  it('an explicit T replaces the T a model embeds, whichever way either gives it', () => {
    const embedded = { converter: 'mtj', sensitivity: 8, samplesPerLayer: [1, 2, 4] };
    // --samples 1 on a model trained at a per-layer schedule is T = 1 in every layer.
    const t1 = resolveConfig(overEmbedded(embedded, { samples: 1 }));
    expect([t1.samples, t1.samplesPerLayer, t1.sensitivity]).toEqual([1, undefined, 8]);
    // --schedule is not a second schedule beside the embedded one.
    const rising = resolveConfig(overEmbedded(embedded, { schedule: 'rising' }));
    expect([rising.schedule, rising.samplesPerLayer]).toEqual(['rising', undefined]);
    expect(resolveConfig(overEmbedded(embedded, { samplesPerLayer: [4, 4, 4] })).samplesPerLayer).toEqual([4, 4, 4]);
    // Without an explicit T the model's stands, beside other explicit settings.
    const kept = resolveConfig(overEmbedded({ ...embedded, samples: 2 }, { seed: 3 }));
    expect([kept.samples, kept.samplesPerLayer, kept.seed]).toEqual([2, [1, 2, 4], 3]);
  });

  it('splits CONFIG=MODEL at the first =, so that the configuration may hold a colon', () => {
    expect(splitEntry('stox:4=a/b.onnx')).toEqual({ config: 'stox:4', model: 'a/b.onnx' });
    expect(splitEntry('fp-adc')).toEqual({ config: 'fp-adc' });
  });

  it('names the entry without a model, the missing model file, duplicate entries and seeds, before anything runs', async () => {
    await expect(compareCosts({ compare: ['fp-adc=' + OURS, 'sense-amp'] })).rejects.toThrow(new ConfigError('--compare sense-amp: no model; give --model PATH or sense-amp=MODEL.onnx'));
    await expect(compareCosts({ model: OURS, compare: ['fp-adc', 'stox:4=no/such.onnx'] })).rejects.toThrow(/^--compare stox:4: model no\/such\.onnx does not exist$/);
    await expect(compareCosts({ model: OURS, compare: ['stox:4', `stox:4=${OURS}`] })).rejects.toThrow('--compare: stox:4=resnet20-cifar10-stox-4w4a.onnx is given twice');
    await expect(compareCosts({ model: OURS, compare: ['stox:4'], seeds: [1, 2, 1] })).rejects.toThrow('--seeds: 1 is given twice');
    await expect(compareCosts({ model: OURS, compare: ['stox:4'], seeds: [] })).rejects.toThrow('--seeds: give at least one seed');
  });
});

const FAIR = {
  'stoxnet-fair': ['ideal-4w4a', 'adc4-4w4a', 'senseamp-4w4a', 'stox-t1-4w4a', ['stox-mixed.schedule.json', 'stox-mixed-4w4a'], 'stox-4w4a'],
  'stoxnet-fair-45k': ['ideal-4w4a-45k', 'adc4-4w4a-45k', 'senseamp-4w4a-45k', 'stox-t1-4w4a-45k', ['stox-random-45k.schedule.json', 'stox-random-45k'], 'stox-4w4a-45k'],
} as const;

describe.each(Object.keys(FAIR) as (keyof typeof FAIR)[])('the %s preset', (name) => {
  const rows = PRESETS[name].compare.map((e) => splitEntry(e));
  const models = join(packageRoot(), 'models');
  const [ideal, adc4, senseAmp, t1, [schedule, scheduled], t4] = FAIR[name];
  const file = (f: string) => join(models, `resnet20-cifar10-${f}`);

  it('runs each converter on the model of models/ trained for it', () => {
    expect(rows.map((r) => [entryName(r.config), r.model])).toEqual([
      ['fp-adc', ideal],
      ['low-bit-adc', adc4],
      ['sparse-adc', ideal],
      ['sense-amp', senseAmp],
      ['stox:1', t1],
      [`stox:resnet20-cifar10-${schedule}`, scheduled],
      ['stox:4', t4],
    ].map(([entry, f]) => [entry, file(`${f}.onnx`)]));
    expect(entryConfig(rows[5].config, 4)).toEqual({ converter: 'mtj', schedule: file(schedule) });
    expect(PRESETS[name].config).toEqual({});
  });

  it('ships every model and the schedule it names; the schedule covers the scheduled model\'s crossbar layers', () => {
    for (const r of rows) expect(existsSync(r.model!), r.model).toBe(true);
    const doc = JSON.parse(readFileSync(file(schedule), 'utf8')) as { samplesPerLayer: number[]; model?: string };
    expect(doc.samplesPerLayer).toHaveLength(18);
    // The search names the model it searched on: the one its row runs.
    expect(doc.model).toBe(`resnet20-cifar10-${scheduled}.onnx`);
  });

  it('refuses to run while a row\'s model is missing, naming the file', async () => {
    const gone = join(dir, 'gone.onnx');
    const compare = PRESETS[name].compare.map((e, i) => (i === 3 ? `${splitEntry(e).config}=${gone}` : e));
    await expect(compareCosts({ compare })).rejects.toThrow(`--compare sense-amp: model ${gone} does not exist`);
  });
});

describe('the stoxnet-fair-1b1b preset (the paper\'s mapping)', () => {
  it('runs each readout on the model of models/ trained for it on 1-bit cells and streams, every model shipped', () => {
    const rows = PRESETS['stoxnet-fair-1b1b'].compare.map((e) => splitEntry(e));
    const file = (f: string) => join(packageRoot(), 'models', `resnet20-cifar10-${f}.onnx`);
    expect(rows.map((r) => [r.config, r.model])).toEqual([
      ['fp-adc', 'ideal-4w4a-45k'],
      ['sparse-adc', 'ideal-4w4a-45k'],
      ['sense-amp', 'senseamp-1b1b-45k'],
      ['stox:1', 'stox-t1-1b1b-45k'],
      ['stox:2', 'stox-t2-1b1b-45k'],
      ['stox:1/1/2/3', 'stox-streams-1b1b-45k'],
      ['stox:4', 'stox-t1-1b1b-45k'],
    ].map(([entry, f]) => [entry, file(f)]));
    for (const r of rows) expect(existsSync(r.model!), r.model).toBe(true);
    expect(PRESETS['stoxnet-fair-1b1b'].config).toEqual({ weightSliceBits: 1, inputStreamBits: 1 });
    // Every per-stream row has one T per stream of the mapping.
    expect(resolveConfig({ ...PRESETS['stoxnet-fair-1b1b'].config, ...entryConfig('stox:1/1/2/3', 4) }).samplesPerStream).toEqual([1, 1, 2, 3]);
  });
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('comparisons with a model per entry and several seeds', () => {
  const seeds = [1, 2, 3];
  const images = 20;
  let report: CostReport;

  it('evaluates each entry on its own model (--model for the others), once per seed', async () => {
    report = await compareCosts({ model: model('resnet20.onnx'), data: DATA_DIR, images, seeds, compare: ['fp-adc', 'stox:4', `stox:4=${OURS}`] });
    expect(report.configs.map((c) => [c.name, c.model])).toEqual([
      ['fp-adc', 'resnet20.onnx'],
      ['stox:4=resnet20.onnx', 'resnet20.onnx'],
      ['stox:4=resnet20-cifar10-stox-4w4a.onnx', 'resnet20-cifar10-stox-4w4a.onnx'],
    ]);
    const [, theirs, ours] = report.configs;
    // Same converter and seeds, different weights: different logits, and the PS-QAT model far ahead.
    for (const k of [0, 1, 2]) expect(ours.runs[k].logitsDigest).not.toBe(theirs.runs[k].logitsDigest);
    expect(ours.top1).toBeGreaterThan(theirs.top1 + 0.2);
    // Each run is that model's own evaluation: its embedded settings and learned parameters, the entry's T, the seed.
    const direct = await evaluate({ model: OURS, data: DATA_DIR, limit: images, config: { converter: 'mtj', samples: 4, seed: 2 } });
    expect(ours.runs[1].logitsDigest).toBe(direct.report.logitsDigest);
  });

  it('gives per-seed top-1, its mean and sample sd, and costs averaged over the seeds', () => {
    for (const c of report.configs) {
      expect(c.seeds).toEqual(seeds);
      expect(c.top1PerSeed.map((s) => s.seed)).toEqual(seeds);
      expect(c.top1PerSeed.map((s) => s.top1)).toEqual(c.runs.map((r) => r.correct / images));
      const xs = c.top1PerSeed.map((s) => s.top1);
      const mean = (xs[0] + xs[1] + xs[2]) / 3;
      expect(c.top1Mean).toBeCloseTo(mean, 12);
      expect(c.top1).toBe(c.top1Mean);
      expect(c.top1Sd).toBeCloseTo(Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / 2), 12);
      expect(c.energyPJ).toBeCloseTo(c.runs.reduce((a, r) => a + r.cost.energyPJ, 0) / 3, 6);
      expect(c.latencyNs).toBeCloseTo(c.runs.reduce((a, r) => a + r.cost.latencyNs, 0) / 3, 6);
      expect(c.edp).toBeCloseTo(c.energyPJ * c.latencyNs, 0);
    }
    // The MTJ samples with each seed's draws; the lossless ADC is deterministic.
    expect(new Set(report.configs[2].runs.map((r) => r.logitsDigest)).size).toBe(3);
    expect(new Set(report.configs[0].runs.map((r) => r.logitsDigest)).size).toBe(1);
  });

  it('without seeds, runs once with the model\'s own seed: sd 0', async () => {
    const [c] = (await compareCosts({ model: OURS, data: DATA_DIR, images: 5, compare: ['stox'] })).configs;
    expect(c.seeds).toEqual([6]); // resnet20-cifar10-stox-4w4a.onnx was trained, and embeds, seed 6
    expect(c.top1PerSeed).toEqual([{ seed: 6, top1: c.top1 }]);
    expect(c.top1Sd).toBe(0);
  });

  it('writes result lines that the report reads back, one per configuration and seed, each on its model', async () => {
    const file = join(dir, 'cost.jsonl');
    const lines = costResults(report);
    writeResults(file, lines);
    const read = readResults(file).results;
    expect(read).toEqual(JSON.parse(JSON.stringify(lines)));
    expect(read.map((r) => [r.settings.configuration, r.model, r.seed])).toEqual(report.configs.flatMap((c) => seeds.map((s) => [c.name, c.model, s])));
    expect(read.map((r) => r.settings.model)).toEqual(read.map((r) => r.model));
    expect(new Set(read.map((r) => r.key)).size).toBe(read.length);
    expect(read[8].logitsDigest).toBe(report.configs[2].runs[2].logitsDigest);
    expect(read[8].meanSamples).toBe(4);
    // Three designs of three seeds each, labelled with their model.
    const designs = designGroups(read);
    expect(designs.map((d) => [d.points.length, d.label])).toEqual([
      [3, 'adc configuration=fp-adc model=resnet20.onnx'],
      [3, 'mtj configuration=stox:4=resnet20.onnx model=resnet20.onnx T=4'],
      [3, 'mtj configuration=stox:4=resnet20-cifar10-stox-4w4a.onnx model=resnet20-cifar10-stox-4w4a.onnx T=4'],
    ]);
    const html = await renderReport(read);
    expect(html).toContain('id="accuracy-vs-energy"');
    expect(html).toContain(`<td>${designs[2].label}</td><td class="num">3</td><td class="num">${(report.configs[2].top1Mean * 100).toFixed(2)} ± ${(report.configs[2].top1Sd * 100).toFixed(2)}</td>`);
  });

  it('stoxnet cost: entries with =MODEL relative to the current directory, a model column, --seeds, --results for stoxnet report', async () => {
    const results = join(dir, 'cli.jsonl');
    const { stdout } = await run('node', [CLI, 'cost', '--model', model('resnet20.onnx'), '--data', DATA_DIR, '--compare', 'fp-adc,stox:4=models/resnet20-cifar10-stox-4w4a.onnx', '--images', '5', '--seeds', '1,2', '--results', results], { cwd: packageRoot() });
    expect(stdout).toMatch(/^config\s+model\s+seeds\s+top-1 % \(mean ± sd\)\s+energy µJ/m);
    expect(stdout).toMatch(/^fp-adc\s+resnet20\.onnx\s+2\s+[\d.]+ ± [\d.]+\s+[\d.]+/m);
    expect(stdout).toMatch(/^stox:4\s+resnet20-cifar10-stox-4w4a\.onnx\s+2\s+[\d.]+ ± [\d.]+\s+[\d.]+/m);
    expect(readResults(results).results.map((r) => [r.settings.configuration, r.model, r.seed])).toEqual([
      ['fp-adc', 'resnet20.onnx', 1],
      ['fp-adc', 'resnet20.onnx', 2],
      ['stox:4', basename(OURS), 1],
      ['stox:4', basename(OURS), 2],
    ]);
    const html = join(dir, 'r.html');
    const { stderr } = await run('node', [CLI, 'report', results, '--out', html]);
    expect(stderr).toContain(`4 points → ${html}`);
    expect(readFileSync(html, 'utf8')).toContain('mtj configuration=stox:4 model=resnet20-cifar10-stox-4w4a.onnx T=4');

    const err = await run('node', [CLI, 'cost', '--data', DATA_DIR, '--compare', 'fp-adc=models/resnet20-cifar10-stox-4w4a.onnx,sparse-adc', '--images', '5'], { cwd: packageRoot() }).catch((e) => e);
    expect(err.code).toBe(2);
    expect(err.stderr).toContain('stoxnet cost: --compare sparse-adc: no model; give --model PATH or sparse-adc=MODEL.onnx');
  });
});
