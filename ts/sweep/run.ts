// `stoxnet sweep`: evaluates the points of a grid (or of one shard of it),
// each with accuracy and cost, one result line per point. A rerun skips the
// points already in the output, so an interrupted sweep resumes.
import { existsSync } from 'node:fs';
import { EvalCache } from '../cache.js';
import { ConfigError, int } from '../config.js';
import { costConfig, resultLine } from '../cost/compare.js';
import { loadTech } from '../cost/tech.js';
import { resolveConfig, type StoxConfig } from '../stox.js';
import { readGrid, shardPoints, type Grid, type Point } from './grid.js';
import type { SweepResult } from './result.js';
import { appendResult, checkAgainstGrid, dropTornTail, readResults } from './results.js';

export interface SweepOptions {
  /** GRID.json path, or a parsed grid. */
  grid: string | Grid;
  /** results.jsonl: appended to, and read to skip finished points. */
  out: string;
  /** [k, n]: run every n-th point starting at k (0 ≤ k < n). */
  shard?: [number, number];
  /** Overrides the grid's model. */
  model?: string;
  /** Overrides the grid's images per point. */
  images?: number;
  data?: string;
  /** Which data set (default: the model's own, else CIFAR-10). */
  dataset?: string;
  threads?: number;
  /** Stops the point in progress; the finished points' lines stay, and a rerun continues. */
  signal?: AbortSignal;
  /** Called after each point: the result, points of this shard done so far, and their number. */
  onPoint?: (r: SweepResult, done: number, total: number) => void;
}

export interface SweepSummary {
  /** Points of this shard. */
  points: number;
  /** Evaluated by this call. */
  ran: number;
  /** Already in the output. */
  skipped: number;
  /** A torn last line (an interrupted append) was dropped. */
  repaired: boolean;
}

/** The full settings of a point, validated before any point runs. */
function pointConfig(grid: Grid, p: Point): Partial<StoxConfig> {
  const config = { ...grid.base, ...p.settings } as Partial<StoxConfig>;
  let resolved: StoxConfig;
  try {
    resolved = resolveConfig(config as Record<string, unknown>);
  } catch (e) {
    throw new ConfigError(`${grid.file}: point ${p.index} ${p.key}: ${(e as Error).message}`);
  }
  if (resolved.converter === 'fp') throw new ConfigError(`${grid.file}: point ${p.index} ${p.key}: converter fp has no crossbars to cost; its accuracy is \`stoxnet eval --converter fp\``);
  return config;
}

export async function runSweep(o: SweepOptions): Promise<SweepSummary> {
  const grid = typeof o.grid === 'string' ? readGrid(o.grid) : o.grid;
  const model = o.model ?? grid.model;
  if (!model) throw new ConfigError(`${grid.file}: no "model", and no --model given`);
  if (!existsSync(model)) throw new ConfigError(`model ${model} does not exist`);
  const images = o.images === undefined ? grid.images : int('--images', o.images, 1, 10_000);
  const technology = loadTech(grid.tech);
  const points = o.shard ? shardPoints(grid.points, o.shard) : grid.points;
  const configs = new Map(points.map((p) => [p.index, pointConfig(grid, p)]));

  let repaired = false;
  const done = new Set<number>();
  if (existsSync(o.out)) {
    const read = readResults(o.out, true);
    checkAgainstGrid(grid, o.out, read);
    for (const r of read.results) {
      if (r.images !== images) throw new ConfigError(`${o.out}: point ${r.index} was evaluated on ${r.images} images, this run uses ${images}; write to another file`);
      done.add(r.index);
    }
    if (read.torn) {
      dropTornTail(o.out);
      repaired = true;
    }
  }
  const todo = points.filter((p) => !done.has(p.index));
  let finished = points.length - todo.length;
  // The model imported, and the images read, once for all points.
  const cache = new EvalCache();
  for (const p of todo) {
    const cost = await costConfig(p.key, { model, data: o.data, dataset: o.dataset, images, threads: o.threads, config: configs.get(p.index)!, signal: o.signal, cache }, technology);
    const result = resultLine(cost, 0, p);
    appendResult(o.out, result);
    o.onPoint?.(result, ++finished, points.length);
  }
  return { points: points.length, ran: todo.length, skipped: points.length - todo.length, repaired };
}
