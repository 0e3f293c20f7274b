// Sweeps: grid enumeration, sharding, resuming, merging.
import { execFile } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../ts/config.js';
import { parseGrid, parseShard, readGrid, shardPoints } from '../ts/sweep/grid.js';
import { packageRoot } from '../ts/paths.js';
import { resolveConfig } from '../ts/stox.js';
import { mergeResults, readResults } from '../ts/sweep/results.js';
import { runSweep } from '../ts/sweep/run.js';
import { CLI, DATA_DIR, HAVE_DATA, HAVE_MODELS, model } from './helpers/env.js';

const run = promisify(execFile);

describe('sweep grids', () => {
  it('enumerates the union of cartesian products in a fixed order, last axis fastest', () => {
    const g = parseGrid({ axes: [{ converter: ['mtj'], samples: [1, 4], seed: [0, 1] }, { converter: ['adc'], adcBits: [4, 6] }] }, 'g.json');
    expect(g.points.map((p) => p.settings)).toEqual([
      { converter: 'mtj', samples: 1, seed: 0 },
      { converter: 'mtj', samples: 1, seed: 1 },
      { converter: 'mtj', samples: 4, seed: 0 },
      { converter: 'mtj', samples: 4, seed: 1 },
      { converter: 'adc', adcBits: 4 },
      { converter: 'adc', adcBits: 6 },
    ]);
    expect(g.points.map((p) => p.index)).toEqual([0, 1, 2, 3, 4, 5]);
    // Keys do not depend on the order of the axes in the file.
    const h = parseGrid({ axes: { seed: [0], samples: [1], converter: ['mtj'] } }, 'h.json');
    expect(h.points[0].key).toBe(g.points[0].key);
    expect(g.images).toBe(1000);
  });

  it('all shards together are the whole grid, each point once, for every shard count', () => {
    const g = parseGrid({ axes: { rows: [32, 64, 128], samples: [1, 2, 4, 8, 16], seed: [0, 1, 2] } }, 'g.json');
    expect(g.points).toHaveLength(45);
    for (let n = 1; n <= 50; n++) {
      const seen = Array.from({ length: n }, (_, k) => shardPoints(g.points, [k, n])).flat().map((p) => p.index);
      expect(seen.sort((a, b) => a - b)).toEqual(g.points.map((p) => p.index));
      // Balanced: shard sizes differ by at most one.
      const sizes = Array.from({ length: n }, (_, k) => shardPoints(g.points, [k, n]).length);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  });

  it('the example grid and cluster scripts agree with the CLI', () => {
    const file = join(packageRoot(), 'examples', 'grid.json');
    const g = readGrid(file);
    expect(g.points).toHaveLength(5 * 3 + 3 + 5 + 2);
    for (const p of g.points) expect(() => resolveConfig({ ...g.base, ...p.settings })).not.toThrow();
    expect(g.model).toBe(join(packageRoot(), 'models', 'resnet20-cifar10-stox-4w4a.onnx'));
    // Both launchers pass a shard k/n and a per-shard output file to `stoxnet sweep`.
    const slurm = readFileSync(join(packageRoot(), 'examples', 'slurm', 'sweep.slurm'), 'utf8');
    expect(slurm).toContain('"${CLI[@]}" sweep --grid "$GRID" --out "$RESULTS/shard-$K.jsonl" --shard "$K/$N"');
    expect(slurm).toContain('GRID=${STOXNET_GRID:-examples/grid.json}');
    const job = readFileSync(join(packageRoot(), 'examples', 'sweep-job.yaml'), 'utf8');
    const completions = Number(/completions: (\d+)/.exec(job)![1]);
    expect(job).toContain('completionMode: Indexed');
    expect(job).toContain(`--shard $JOB_COMPLETION_INDEX/${completions}`);
  });

  it('rejects bad grids and shards, naming the file and field', () => {
    const bad: [unknown, RegExp][] = [
      [{ axes: { sampels: [1] } }, /g\.json: "axes": unknown setting "sampels"/],
      [{ axes: { samples: [] } }, /g\.json: "axes"\.samples must be a non-empty list/],
      [{ axes: [{ samples: [1] }, { samples: [1] }] }, /g\.json: the point \{"samples":1\} appears twice \(points 0 and 1\)/],
      [{ axes: { samples: [1] }, base: { samples: 2 } }, /"samples" is also in "base"/],
      [{ axes: { samples: [1] }, images: 0 }, /g\.json: "images": expected an integer in \[1, 10000\], got 0/],
      [{ axes: { samples: [1] }, colour: 'red' }, /unknown field "colour"/],
      [[1, 2], /expected a JSON object/],
    ];
    for (const [grid, msg] of bad) expect(() => parseGrid(grid, 'g.json')).toThrow(msg);
    expect(() => parseShard('2/2')).toThrow(ConfigError);
    expect(() => parseShard('a/b')).toThrow(/--shard: expected k\/n/);
    expect(parseShard('3/8')).toEqual([3, 8]);
  });
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('stoxnet sweep on a real model', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stoxnet-sweep-'));
  const gridFile = join(dir, 'grid.json');
  writeFileSync(
    gridFile,
    JSON.stringify({
      model: model('resnet20.onnx'),
      images: 20,
      base: { calibrationImages: 16 },
      axes: [{ converter: ['mtj'], samples: [1, 4], seed: [0, 1] }, { converter: ['adc'], adcBits: [4], adcRange: ['calibrated'] }, { converter: ['sparse-adc'] }],
    }),
  );

  it('shards run on their own equal the whole sweep; merge checks completeness; reruns skip; a torn line is redone', async () => {
    const whole = join(dir, 'whole.jsonl');
    const ran: number[] = [];
    const s = await runSweep({ grid: gridFile, out: whole, data: DATA_DIR, onPoint: (r) => ran.push(r.index) });
    expect(s).toEqual({ points: 6, ran: 6, skipped: 0, repaired: false });
    expect(ran).toEqual([0, 1, 2, 3, 4, 5]);
    const all = readResults(whole).results;
    for (const r of all) {
      expect(r.cost.energyPJ).toBeGreaterThan(0);
      expect(r.cost.perLayer.length).toBeGreaterThan(0);
    }
    expect(all[2].meanSamples).toBe(4);
    expect(all[4].meanSamples).toBeNull();
    // A rerun evaluates nothing and leaves the file as it was.
    const before = readFileSync(whole, 'utf8');
    expect(await runSweep({ grid: gridFile, out: whole, data: DATA_DIR })).toMatchObject({ ran: 0, skipped: 6 });
    expect(readFileSync(whole, 'utf8')).toBe(before);

    // Three shards through the CLI (as three cluster jobs would run them).
    const shards = [0, 1, 2].map((k) => join(dir, `shard-${k}.jsonl`));
    for (const [k, f] of shards.entries()) await run('node', [CLI, 'sweep', '--grid', gridFile, '--out', f, '--shard', `${k}/3`, '--data', DATA_DIR]);
    // An interrupted append leaves half a line: the next run drops it and redoes that point.
    const last = readFileSync(shards[2], 'utf8').trimEnd().split('\n').pop()!;
    const kept = readFileSync(shards[2], 'utf8').split('\n').slice(0, -2).join('\n') + '\n';
    writeFileSync(shards[2], kept);
    appendFileSync(shards[2], last.slice(0, 100));
    expect(await runSweep({ grid: gridFile, out: shards[2], shard: [2, 3], data: DATA_DIR })).toMatchObject({ ran: 1, repaired: true });

    const merged = join(dir, 'merged.jsonl');
    await expect(run('node', [CLI, 'sweep', 'merge', '--grid', gridFile, '--out', merged, shards[0], shards[1]])).rejects.toThrow(/merge: 2 of 6 points missing: 2 \{"converter":"mtj","samples":4,"seed":0\}; 5 \{"converter":"sparse-adc"\}/);
    expect(() => mergeResults(parseGrid(JSON.parse(readFileSync(gridFile, 'utf8')), gridFile), [...shards, shards[1]], merged)).toThrow(/point 1 .* is in .*shard-1\.jsonl:1 and again in .*shard-1\.jsonl:1/);
    await run('node', [CLI, 'sweep', 'merge', '--grid', gridFile, '--out', merged, ...shards]);
    const m = readResults(merged).results;
    // Same points, same order, same results (every draw is keyed by the point's seed, not by the machine).
    expect(m.map((r) => r.key)).toEqual(all.map((r) => r.key));
    expect(m.map((r) => r.logitsDigest)).toEqual(all.map((r) => r.logitsDigest));
    expect(m.map((r) => r.cost.energyPJ)).toEqual(all.map((r) => r.cost.energyPJ));
  }, 300_000);

  it('refuses results of another grid or another image count, naming the file and line', async () => {
    const other = join(dir, 'other.jsonl');
    const real = readResults(join(dir, 'whole.jsonl')).results[0];
    writeFileSync(other, JSON.stringify({ ...real, key: '{"samples":99}', settings: { samples: 99 } }) + '\n');
    await expect(runSweep({ grid: gridFile, out: other, data: DATA_DIR })).rejects.toThrow(/other\.jsonl:1: point 0 \{"samples":99\} is not in .*grid\.json/);
    await expect(runSweep({ grid: gridFile, out: join(dir, 'whole.jsonl'), images: 10, data: DATA_DIR })).rejects.toThrow(/was evaluated on 20 images, this run uses 10/);
  });
});
