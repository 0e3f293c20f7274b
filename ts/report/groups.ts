// Which points belong together in a report: a series is one curve of accuracy
// against T, a design is one hardware configuration whose seeds are repeats.
import type { SweepResult } from '../sweep/result.js';

export interface Group {
  /** Canonical identity of the group (settings that define it). */
  key: string;
  /** Short name for legends and tables, unique among the groups. */
  label: string;
  converter: string;
  points: SweepResult[];
}

// Axes that never tell configurations apart in a label: the resolved converter
// leads every label anyway, samples is the x axis or the T suffix, seeds are repeats.
const NOT_IN_LABEL = new Set(['converter', 'samples', 'seed']);

const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

/**
 * A point's settings with its model: the same settings on two models (result
 * files of several sweeps, or `stoxnet cost` lines) are two designs, and
 * their labels say which model each is.
 */
const settingsOf = (r: SweepResult): Record<string, unknown> => ({ ...r.settings, model: r.model });

function canonical(entries: [string, unknown][]): string {
  return JSON.stringify(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Settings keys whose value is not the same on every point: the ones a label must show. */
function varyingKeys(results: SweepResult[]): string[] {
  const values = new Map<string, Set<string>>();
  for (const r of results) for (const [k, v] of Object.entries(settingsOf(r))) {
    if (!values.has(k)) values.set(k, new Set());
    values.get(k)!.add(show(v));
  }
  return [...values].filter(([k, vs]) => !NOT_IN_LABEL.has(k) && (vs.size > 1 || results.some((r) => !(k in settingsOf(r))))).map(([k]) => k);
}

/** The settings no label shows because every point has the same value, e.g. `rows=128` (the model is in the summary's first sentence). */
export function fixedSettings(results: SweepResult[]): string[] {
  const varying = new Set(varyingKeys(results));
  const first = results[0]?.settings ?? {};
  return Object.entries(first).filter(([k]) => !NOT_IN_LABEL.has(k) && k !== 'model' && !varying.has(k)).map(([k, v]) => `${k}=${show(v)}`);
}

const formatT = (t: number) => (Number.isInteger(t) ? String(t) : t.toFixed(2));

function group(results: SweepResult[], identity: (r: SweepResult) => [string, unknown][], withT: boolean): Group[] {
  const keys = varyingKeys(results);
  const groups = new Map<string, Group>();
  for (const r of results) {
    const key = canonical([['converter (resolved)', r.converter], ...identity(r)]);
    let g = groups.get(key);
    if (!g) {
      const settings = settingsOf(r);
      const parts = [r.converter, ...keys.filter((k) => k in settings).map((k) => `${k}=${show(settings[k])}`)];
      if (withT && r.converter === 'mtj' && r.meanSamples !== null) parts.push(`T=${formatT(r.meanSamples)}`);
      g = { key, label: parts.join(' '), converter: r.converter, points: [] };
      groups.set(key, g);
    }
    g.points.push(r);
  }
  const out = [...groups.values()];
  const seen = new Map<string, number>();
  for (const g of out) {
    const n = (seen.get(g.label) ?? 0) + 1;
    seen.set(g.label, n);
    if (n > 1) g.label += ` #${n}`;
  }
  return out;
}

/** Curves of accuracy against T: points (of one model) that differ only in samples and seed. */
export function seriesGroups(results: SweepResult[]): Group[] {
  return group(results, (r) => Object.entries(settingsOf(r)).filter(([k]) => k !== 'samples' && k !== 'seed'), false);
}

/**
 * Hardware configurations: points (of one model) that differ only in seed. Converters other
 * than the MTJ do not use `samples`, so a grid that crosses them with T gives
 * repeats of one design, not several.
 */
export function designGroups(results: SweepResult[]): Group[] {
  return group(results, (r) => Object.entries(settingsOf(r)).filter(([k]) => k !== 'seed' && (k !== 'samples' || r.converter === 'mtj')), true);
}

export interface Stats {
  n: number;
  mean: number;
  /** Sample standard deviation (n − 1); 0 for a single value. */
  std: number;
  min: number;
  max: number;
}

export function stats(xs: number[]): Stats {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { n, mean, std, min: Math.min(...xs), max: Math.max(...xs) };
}

export const distinctSeeds = (points: SweepResult[]) => [...new Set(points.map((p) => p.seed))].sort((a, b) => a - b);
