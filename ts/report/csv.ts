// Sweep results as one CSV table (RFC 4180) for spreadsheets and pandas.
import type { SweepResult } from '../sweep/result.js';

/** Keys in order of first appearance, so columns follow the grid's axes and the cost model's component order. */
export function unionKeys(records: Record<string, unknown>[]): string[] {
  const keys = new Set<string>();
  for (const r of records) for (const k of Object.keys(r)) keys.add(k);
  return [...keys];
}

function field(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/**
 * One row per point. Settings columns are prefixed `settings.` because axes
 * such as `seed` and `converter` are also result columns; a component absent
 * from a point is an empty cell, not 0.
 */
export function toCsv(results: SweepResult[]): string {
  const settings = unionKeys(results.map((r) => r.settings));
  const parts = ['energyPJ', 'latencyNs', 'areaMm2'] as const;
  const components = parts.map((p) => unionKeys(results.map((r) => r.cost.perComponent[p])));
  const header = [
    'index',
    ...settings.map((k) => `settings.${k}`),
    'model', 'images', 'correct', 'top1', 'seed', 'converter', 'meanSamples',
    'energyPJ', 'latencyNs', 'areaMm2', 'edp',
    ...parts.flatMap((p, i) => components[i].map((c) => `${p}.${c}`)),
  ];
  const rows = results.map((r) => [
    r.index,
    ...settings.map((k) => r.settings[k]),
    r.model, r.images, r.correct, r.top1, r.seed, r.converter, r.meanSamples,
    r.cost.energyPJ, r.cost.latencyNs, r.cost.areaMm2, r.cost.edp,
    ...parts.flatMap((p, i) => components[i].map((c) => r.cost.perComponent[p][c])),
  ]);
  return [header, ...rows].map((row) => row.map(field).join(',') + '\r\n').join('');
}
