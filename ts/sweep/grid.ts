// A sweep's grid: the design points, in a fixed order, and which of them a
// shard runs. The order and the keys are what make sweeps resumable and
// shardable: point i is the same point on every machine.
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError, int, readJsonFile } from '../config.js';
import { FLAGS, type StoxConfig } from '../stox.js';

/** GRID.json as written by the user. */
export interface GridFile {
  /** ONNX model; a relative path is relative to the grid file. */
  model?: string;
  /** Test images per point (default 1,000). */
  images?: number;
  /** Technology preset or file for the cost (default isaac-32nm). */
  tech?: string;
  /** Settings shared by every point. */
  base?: Partial<StoxConfig>;
  /** Values per setting: one cartesian product, or a list of products whose union is the grid. */
  axes: Record<string, unknown[]> | Record<string, unknown[]>[];
}

export interface Point {
  index: number;
  /** Canonical JSON of `settings`: the point's identity in result files. */
  key: string;
  settings: Record<string, unknown>;
}

export interface Grid {
  /** Where it was read from (for messages). */
  file: string;
  model?: string;
  images: number;
  tech?: string;
  base: Partial<StoxConfig>;
  points: Point[];
}

/** JSON with object keys sorted, so equal settings give equal keys. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The cartesian product of `axes`, the last axis varying fastest. */
function product(axes: Record<string, unknown[]>): Record<string, unknown>[] {
  return Object.entries(axes).reduce<Record<string, unknown>[]>((points, [name, values]) => points.flatMap((p) => values.map((v) => ({ ...p, [name]: v }))), [{}]);
}

/** Checks a parsed GRID.json and enumerates its points; errors name the file and field. */
export function parseGrid(value: unknown, file: string): Grid {
  const fail = (msg: string): never => {
    throw new ConfigError(`${file}: ${msg}`);
  };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('expected a JSON object with "axes"');
  const g = value as Record<string, unknown>;
  for (const k of Object.keys(g)) if (!['model', 'images', 'tech', 'base', 'axes'].includes(k)) fail(`unknown field ${JSON.stringify(k)}; fields: model, images, tech, base, axes`);
  if (g.model !== undefined && typeof g.model !== 'string') fail(`"model" must be a path, got ${JSON.stringify(g.model)}`);
  if (g.tech !== undefined && typeof g.tech !== 'string') fail(`"tech" must be a preset name or a path, got ${JSON.stringify(g.tech)}`);
  const images = int(`${file}: "images"`, g.images ?? 1000, 1, 10_000);
  const base = (g.base ?? {}) as Record<string, unknown>;
  if (base === null || typeof base !== 'object' || Array.isArray(base)) fail('"base" must be an object of settings');
  for (const k of Object.keys(base)) if (!(k in FLAGS)) fail(`"base": unknown setting ${JSON.stringify(k)}`);
  const products = Array.isArray(g.axes) ? g.axes : g.axes === undefined ? fail('"axes" is required') : [g.axes];
  if (products.length === 0) fail('"axes" is empty');
  const points: Point[] = [];
  const seen = new Map<string, number>();
  products.forEach((axes, a) => {
    const at = Array.isArray(g.axes) ? `"axes"[${a}]` : '"axes"';
    if (axes === null || typeof axes !== 'object' || Array.isArray(axes)) fail(`${at} must be an object of setting → list of values`);
    for (const [k, values] of Object.entries(axes as Record<string, unknown>)) {
      if (!(k in FLAGS)) fail(`${at}: unknown setting ${JSON.stringify(k)}; known: ${Object.keys(FLAGS).join(', ')}`);
      if (k in base) fail(`${at}: ${JSON.stringify(k)} is also in "base"`);
      if (!Array.isArray(values) || values.length === 0) fail(`${at}.${k} must be a non-empty list of values`);
    }
    for (const settings of product(axes as Record<string, unknown[]>)) {
      const key = canonical(settings);
      const dup = seen.get(key);
      if (dup !== undefined) fail(`the point ${key} appears twice (points ${dup} and ${points.length})`);
      seen.set(key, points.length);
      points.push({ index: points.length, key, settings });
    }
  });
  const model = typeof g.model === 'string' ? (isAbsolute(g.model) ? g.model : resolve(dirname(file), g.model)) : undefined;
  return { file, model, images, tech: g.tech as string | undefined, base: base as Partial<StoxConfig>, points };
}

export function readGrid(file: string): Grid {
  return parseGrid(readJsonFile(file, `--grid ${file}`), file);
}

/** `k/n` → [k, n] with 0 ≤ k < n. */
export function parseShard(text: string): [number, number] {
  const m = /^(\d+)\/(\d+)$/.exec(text);
  if (!m) throw new ConfigError(`--shard: expected k/n (for example 0/4), got ${JSON.stringify(text)}`);
  const [k, n] = [Number(m[1]), Number(m[2])];
  if (n < 1 || k >= n) throw new ConfigError(`--shard: need 0 ≤ k < n, got ${text}`);
  return [k, n];
}

/** The points shard k of n runs: every n-th, starting at k. */
export function shardPoints(points: Point[], [k, n]: [number, number]): Point[] {
  return points.filter((p) => p.index % n === k);
}
