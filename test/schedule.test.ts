// The per-layer schedule search: it chooses on the validation split only (a
// data folder without the test file is enough), the same seed gives the same
// schedule, its constraint holds, and the schedule file it writes is what
// eval, cost and train take as --schedule FILE.json.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TRAIN_FILES } from '../ts/data/cifar10.js';
import { evaluate } from '../ts/eval.js';
import { packageRoot } from '../ts/paths.js';
import { readResults } from '../ts/sweep/results.js';
import { resolveConfig } from '../ts/stox.js';
import { CLI, DATA_DIR, HAVE_DATA } from './helpers/env.js';

const run = promisify(execFile);
const tmp = () => mkdtempSync(join(tmpdir(), 'stoxnet-schedule-'));
const STOX = join(packageRoot(), 'models', 'resnet20-cifar10-stox-4w4a.onnx');

describe('schedule files', () => {
  it('resolve into samplesPerLayer, and bad files are named', () => {
    const dir = tmp();
    const file = join(dir, 's.json');
    writeFileSync(file, JSON.stringify({ samplesPerLayer: [1, 2, 4] }));
    const c = resolveConfig({ converter: 'mtj', schedule: file });
    expect(c.samplesPerLayer).toEqual([1, 2, 4]);
    expect(c.schedule).toBeUndefined();
    // A resolved configuration resolves to itself (models embed it).
    expect(resolveConfig(c as unknown as Record<string, unknown>)).toEqual(c);
    writeFileSync(file, JSON.stringify({ samplesPerLayer: [1, 0] }));
    expect(() => resolveConfig({ schedule: file })).toThrow(/s\.json: samplesPerLayer\[1\]/);
    writeFileSync(file, '{"samples": [1]}');
    expect(() => resolveConfig({ schedule: file })).toThrow(/s\.json: expected a JSON object with one of "samplesPerLayer"/);
    writeFileSync(file, JSON.stringify({ samplesPerLayer: [1], samplesPerStream: [1] }));
    expect(() => resolveConfig({ schedule: file })).toThrow(/s\.json: expected a JSON object with one of/);
    // T per input stream: one per stream of the mapping, MTJ only, not beside --samples-per-stream.
    writeFileSync(file, JSON.stringify({ samplesPerStream: [1, 3] }));
    const streams = resolveConfig({ converter: 'mtj', inputBits: 4, inputStreamBits: 2, schedule: file });
    expect(streams.samplesPerStream).toEqual([1, 3]);
    expect(streams.samplesPerLayer).toBeUndefined();
    expect(resolveConfig(streams as unknown as Record<string, unknown>)).toEqual(streams);
    expect(() => resolveConfig({ converter: 'mtj', inputBits: 4, inputStreamBits: 1, schedule: file })).toThrow(/s\.json: samplesPerStream 1,3: 2 values, but .* make 4 streams/);
    expect(() => resolveConfig({ converter: 'sense-amp', inputBits: 4, inputStreamBits: 2, schedule: file })).toThrow(/s\.json: samplesPerStream sets MTJ samples/);
    expect(() => resolveConfig({ converter: 'mtj', inputBits: 4, inputStreamBits: 2, schedule: file, samplesPerStream: [2, 2] })).toThrow(/both set T/);
    expect(() => resolveConfig({ schedule: join(dir, 'missing.json') })).toThrow(/missing\.json: cannot read/);
    writeFileSync(file, JSON.stringify({ samplesPerLayer: [1] }));
    expect(() => resolveConfig({ schedule: file, samplesPerLayer: [2] })).toThrow(/both set the samples per layer/);
  });
});

describe.skipIf(!HAVE_DATA)('stoxnet schedule search', () => {
  it('never opens the test file, is reproducible, meets its budget, and its file drives eval', async () => {
    // A data folder with the training files only: any read of the test set would fail.
    const data = tmp();
    for (const f of TRAIN_FILES) symlinkSync(join(DATA_DIR, f), join(data, f));
    const search = async (out: string, seed: string, ...more: string[]) => {
      const dir = tmp();
      const args = ['schedule', 'search', '--model', STOX, '--data', data, '--choices', '1,4', '--metric', 'samples', '--budget', '2.5', '--images', '40', '--seed', seed, '--out', join(dir, out), '--results', join(dir, 'points.jsonl'), ...more];
      const { stdout } = await run('node', [CLI, ...args]);
      return { printed: JSON.parse(stdout), file: join(dir, out), points: readResults(join(dir, 'points.jsonl')).results };
    };
    const a = await search('a.json', '3');
    const b = await search('b.json', '3');
    expect(readFileSync(a.file, 'utf8')).toBe(readFileSync(b.file, 'utf8'));
    expect(a.printed).toEqual(JSON.parse(readFileSync(a.file, 'utf8')));
    const s = a.printed;
    expect(s.layers).toHaveLength(18);
    expect(s.samplesPerLayer).toHaveLength(18);
    expect(s.samplesPerLayer.every((t: number) => t === 1 || t === 4)).toBe(true);
    expect(s.validation.meanSamples).toBeLessThanOrEqual(2.5);
    // Every evaluation (schedule × seed) is a result line. The descent measures at seed 3:
    // 2 uniform + 18 sensitivity + at most 18 greedy steps (some repeat a measured schedule).
    expect(a.points.length).toBe(s.evaluated);
    const descent = a.points.filter((p) => p.settings.search !== 'confirm');
    expect(descent.every((p) => p.seed === 3)).toBe(true);
    expect(descent.length).toBeGreaterThanOrEqual(2 + 18 + 1);
    // The finalists: within the budget and within 2·√2 binomial standard errors of the best at seed 3
    // (at most 6), each measured again at seeds 4 and 5; the chosen one has the best mean of the three.
    const within = descent.filter((p) => (p.settings.meanSamplesPerConversion as number) <= 2.5);
    const lead = Math.max(...within.map((p) => p.top1));
    const margin = 2 * Math.SQRT2 * Math.sqrt((lead * (1 - lead)) / 40);
    const near = within.filter((p) => p.top1 >= lead - margin);
    const finalists = s.finalists as { samplesPerLayer: number[]; top1: number; seeds: number[]; top1PerSeed: number[] }[];
    expect(finalists.length).toBe(Math.min(6, near.length));
    for (const f of finalists) {
      expect(f.seeds).toEqual([3, 4, 5]);
      const again = a.points.filter((p) => p.settings.search === 'confirm' && (p.settings.samplesPerLayer as number[]).join() === f.samplesPerLayer.join());
      expect(again.map((p) => p.seed)).toEqual([4, 5]);
      const first = descent.find((p) => (p.settings.samplesPerLayer as number[]).join() === f.samplesPerLayer.join())!;
      expect(f.top1PerSeed).toEqual([first.top1, ...again.map((p) => p.top1)]);
      expect(first.top1).toBeGreaterThanOrEqual(lead - margin);
      expect(f.top1).toBeCloseTo(f.top1PerSeed.reduce((x, y) => x + y, 0) / 3, 12);
    }
    expect(finalists.map((f) => f.top1)).toEqual([...finalists.map((f) => f.top1)].sort((x, y) => y - x));
    expect(s.samplesPerLayer).toEqual(finalists[0].samplesPerLayer);
    expect(s.validation.top1).toBe(finalists[0].top1);
    // Without confirmation, the choice is the most accurate schedule within the budget at the one seed.
    const single = (await search('d.json', '3', '--confirm-seeds', '0')).printed;
    expect(single.validation.top1).toBe(lead);
    expect(single.validation.seeds).toEqual([3]);
    // Under a floor: the cheapest finalist whose mean over seeds 3-5 reaches it; finalists cheapest first.
    const dir = tmp();
    const { stdout } = await run('node', [CLI, 'schedule', 'search', '--model', STOX, '--data', data, '--choices', '1,4', '--metric', 'samples', '--floor', '0.85', '--images', '40', '--seed', '3', '--results', join(dir, 'p.jsonl')]);
    const f = JSON.parse(stdout);
    const cost = f.finalists.map((x: { meanSamples: number }) => x.meanSamples);
    expect(cost).toEqual([...cost].sort((x: number, y: number) => x - y));
    const reaching = f.finalists.filter((x: { top1: number }) => x.top1 >= 0.85);
    expect(reaching.length).toBeGreaterThan(0);
    expect(f.samplesPerLayer).toEqual(reaching[0].samplesPerLayer);
    expect(f.validation.top1).toBeGreaterThanOrEqual(0.85);
    expect(a.points.every((p) => p.images === 40)).toBe(true);
    // Another seed draws other samples: the measured accuracies differ somewhere.
    const c = await search('c.json', '4');
    expect(c.points.map((p) => p.top1)).not.toEqual(a.points.map((p) => p.top1));
    // The schedule file is a --schedule for eval: the same bits as the explicit list.
    const viaFile = await evaluate({ model: STOX, data: DATA_DIR, limit: 50, config: { schedule: a.file as `${string}.json`, seed: 1 } });
    const explicit = await evaluate({ model: STOX, data: DATA_DIR, limit: 50, config: { samplesPerLayer: s.samplesPerLayer, seed: 1 } });
    expect(viaFile.report.logitsDigest).toBe(explicit.report.logitsDigest);
    expect(viaFile.report.config.layers.map((l) => l.samples)).toEqual(s.samplesPerLayer);
  });

  it('searches T per input stream: test-blind, reproducible, within its budget, and its file drives eval', async () => {
    // The paper's mapping (1-bit cells and streams, embedded in the model): four streams.
    const model = join(packageRoot(), 'models', 'resnet20-cifar10-stox-t2-1b1b-45k.onnx');
    const data = tmp();
    for (const f of TRAIN_FILES) symlinkSync(join(DATA_DIR, f), join(data, f));
    const search = async (out: string) => {
      const dir = tmp();
      const args = ['schedule', 'search', '--over', 'streams', '--model', model, '--data', data, '--choices', '1,2,4', '--metric', 'edp', '--budget', 'uniform:2', '--images', '30', '--seed', '5', '--out', join(dir, out), '--results', join(dir, 'points.jsonl')];
      const { stdout } = await run('node', [CLI, ...args]);
      return { printed: JSON.parse(stdout), file: join(dir, out), points: readResults(join(dir, 'points.jsonl')).results };
    };
    const a = await search('a.json');
    const b = await search('b.json');
    expect(readFileSync(a.file, 'utf8')).toBe(readFileSync(b.file, 'utf8'));
    const s = a.printed;
    expect(s.over).toBe('streams');
    expect(s.samplesPerLayer).toBeUndefined();
    expect(s.samplesPerStream).toHaveLength(4);
    expect(s.samplesPerStream.every((t: number) => [1, 2, 4].includes(t))).toBe(true);
    // Streams convert equally often: the mean samples is the plain mean.
    expect(s.validation.meanSamples).toBeCloseTo(s.samplesPerStream.reduce((x: number, y: number) => x + y, 0) / 4, 12);
    // Within the EDP of every stream at T = 2, as this search measured it.
    const uniform2 = a.points.find((p) => p.settings.search === 'uniform' && (p.settings.samplesPerStream as number[]).join() === '2,2,2,2')!;
    expect(s.budget).toBe(uniform2.cost.edp);
    expect(s.validation.edp).toBeLessThanOrEqual(s.budget);
    // 3 uniform + 4 streams × 2 lower T alone, then the descent; every point a per-stream setting.
    const descent = a.points.filter((p) => p.settings.search !== 'confirm');
    expect(descent.filter((p) => p.settings.search === 'sensitivity')).toHaveLength(8);
    expect(a.points.every((p) => Array.isArray(p.settings.samplesPerStream) && p.settings.samplesPerLayer === undefined)).toBe(true);
    expect(s.finalists.every((f: { samplesPerStream: number[] }) => f.samplesPerStream.length === 4)).toBe(true);
    // The file is a --schedule for eval: the same bits as the explicit T per stream.
    const viaFile = await evaluate({ model, data: DATA_DIR, limit: 20, config: { schedule: a.file as `${string}.json`, seed: 1 } });
    const explicit = await evaluate({ model, data: DATA_DIR, limit: 20, config: { samplesPerStream: s.samplesPerStream, seed: 1 } });
    expect(viaFile.report.logitsDigest).toBe(explicit.report.logitsDigest);
    expect(viaFile.report.config.layers.every((l) => l.samplesPerStream?.join() === s.samplesPerStream.join())).toBe(true);
  });

  it('refuses a constraint it cannot meet, and takes exactly one of budget and floor', async () => {
    const fail = (args: string[]) => run('node', [CLI, 'schedule', 'search', '--model', STOX, '--data', DATA_DIR, '--images', '10', ...args]).then(
      () => '',
      (e: { stderr: string }) => e.stderr,
    );
    expect(await fail(['--choices', '2,4', '--metric', 'samples', '--budget', '1.5'])).toMatch(/no schedule over T ∈ \{2, 4\} has samples ≤ 1\.5 \(the lowest measured is 2\)/);
    expect(await fail(['--budget', '2', '--floor', '0.5'])).toMatch(/exactly one of --budget/);
    expect(await fail(['--budget', '2', '--over', 'pixels'])).toMatch(/--over/);
    expect(await fail(['--budget', '2', '--samples-per-stream', '2'])).toMatch(/--samples-per-stream: the schedule search chooses T itself/);
    expect(await fail(['--choices', '1,4', '--budget', 'uniform:2'])).toMatch(/--budget uniform:2: T = 2 is not among --choices 1,4/);
    // Within the EDP of every layer at T = 2, but at most 1.5 samples per conversion: T ∈ {2, 4} cannot.
    expect(await fail(['--choices', '2,4', '--metric', 'edp', '--budget', 'uniform:2', '--max-samples', '1.5'])).toMatch(/no schedule over T ∈ \{2, 4\} has at most 1\.5 samples per conversion/);
  });
});
