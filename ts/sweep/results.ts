// results.jsonl files: read back (checked against the grid), appended one
// whole line per write, merged from shards, or written whole (`stoxnet cost --results`).
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { writeFileAtomic } from '../atomic.js';
import { ConfigError } from '../config.js';
import type { Grid } from './grid.js';
import { invalidField, type SweepResult } from './result.js';

/**
 * The result lines of `file`, each checked for the fields a sweep and a
 * report rely on. A last line without its newline is what an interrupted
 * append leaves: with `dropTornTail` it is left out (and `torn` says so),
 * otherwise it is an error like any other bad line.
 */
export function readResults(file: string, dropTornTail = false): { results: SweepResult[]; lines: number[]; torn: boolean } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`${file}: ${(e as Error).message}`);
  }
  const rows = text.split('\n');
  const last = rows.pop()!;
  const torn = last !== '';
  if (torn && !dropTornTail) rows.push(last);
  const results: SweepResult[] = [];
  const lines: number[] = [];
  rows.forEach((raw, i) => {
    const row = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    let r: unknown;
    try {
      r = JSON.parse(row);
    } catch (e) {
      throw new ConfigError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    const bad = invalidField(r);
    if (bad) throw new ConfigError(`${file}:${i + 1}: not a sweep result: ${bad}`);
    results.push(r as SweepResult);
    lines.push(i + 1);
  });
  return { results, lines, torn: torn && dropTornTail };
}

/** Checks that every result is a point of `grid` (same index and key). */
export function checkAgainstGrid(grid: Grid, file: string, { results, lines }: { results: SweepResult[]; lines: number[] }): void {
  results.forEach((r, i) => {
    const p = grid.points[r.index];
    if (!p || p.key !== r.key) throw new ConfigError(`${file}:${lines[i]}: point ${r.index} ${r.key} is not in ${grid.file} (results of another grid?)`);
  });
}

/**
 * Appends one result as one line with a single write, flushed to disk: a
 * crash leaves either the whole line or a torn last line that the next run
 * drops and redoes.
 */
export function appendResult(file: string, r: SweepResult): void {
  const fd = openSync(file, 'a');
  try {
    writeSync(fd, JSON.stringify(r) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Rewrites `file` with only its whole lines (after a torn append). */
export function dropTornTail(file: string): void {
  if (!existsSync(file)) return;
  const text = readFileSync(file, 'utf8');
  writeFileAtomic(file, text.slice(0, text.lastIndexOf('\n') + 1));
}

/**
 * Combines shard files into `out`, sorted by point: every point of the grid
 * exactly once, or an error that says which are missing or duplicated.
 */
export function mergeResults(grid: Grid, files: string[], out: string): SweepResult[] {
  if (files.length === 0) throw new ConfigError('merge: give the shard result files to merge');
  const byIndex = new Map<number, { r: SweepResult; at: string }>();
  for (const file of files) {
    const read = readResults(file);
    checkAgainstGrid(grid, file, read);
    read.results.forEach((r, i) => {
      const at = `${file}:${read.lines[i]}`;
      const prev = byIndex.get(r.index);
      if (prev) throw new ConfigError(`merge: point ${r.index} ${r.key} is in ${prev.at} and again in ${at}`);
      byIndex.set(r.index, { r, at });
    });
  }
  const missing = grid.points.filter((p) => !byIndex.has(p.index));
  if (missing.length) {
    const list = missing.slice(0, 5).map((p) => `${p.index} ${p.key}`).join('; ');
    throw new ConfigError(`merge: ${missing.length} of ${grid.points.length} points missing: ${list}${missing.length > 5 ? '; …' : ''}`);
  }
  const merged = grid.points.map((p) => byIndex.get(p.index)!.r);
  writeResults(out, merged);
  return merged;
}

/** Writes `results` as a whole results file, atomically. */
export function writeResults(file: string, results: SweepResult[]): void {
  writeFileAtomic(file, results.map((r) => JSON.stringify(r) + '\n').join(''));
}
