// Technology files: every number of the cost model with its unit and
// source (ts/cost/tech/*.json). Loaded and validated once here; the Rust
// cost model receives canonical units (pJ, ns, µm², V, Ω, µA, mW = pJ/ns).
import { basename, join } from 'node:path';
import { ConfigError, parseJson, readTextFile, show } from '../config.js';
import type { TechFieldJs } from '../native-binding.js';
import { native } from '../native.js';
import { packageRoot } from '../paths.js';

export const PRESETS = ['isaac-32nm', 'neurosim-22nm'] as const;

type Dimension = 'energy' | 'time' | 'area' | 'count' | 'voltage' | 'resistance' | 'current' | 'power' | 'choice';

/** The fields of a technology, as the core names them (crates/core/src/cost.rs `FIELDS`). */
function fields(): TechFieldJs[] {
  return native().techFields();
}

/** Factor to the canonical unit (pJ, ns, µm², V, Ω, µA, mW = pJ/ns) of each accepted unit. */
const UNITS: Record<Dimension, Record<string, number>> = {
  energy: { fJ: 1e-3, pJ: 1, nJ: 1e3 },
  time: { ps: 1e-3, ns: 1, us: 1e3 },
  area: { um2: 1, mm2: 1e6 },
  count: { bits: 1, columns: 1, 'per-ns': 1 },
  voltage: { mV: 1e-3, V: 1 },
  resistance: { Ohm: 1, kOhm: 1e3, MOhm: 1e6 },
  current: { uA: 1, mA: 1e3 },
  power: { nW: 1e-6, uW: 1e-3, mW: 1 },
  choice: { choice: 1 },
};

export interface TechValue {
  value: number | number[] | string;
  unit: string;
  /** The value is given for this many units (e.g. a crossbar's area for its cells). */
  per?: number;
  source: string;
}

export interface TechFile {
  name: string;
  description?: string;
  /** A preset this file overrides; without it the file must be complete. */
  base?: string;
  values: Partial<Record<string, TechValue>>;
}

export interface Technology {
  name: string;
  /** Canonical units by field name, for the cost model. */
  tech: Record<string, number | number[] | string>;
  /** Every value as given, with its source, for reports. */
  values: Record<string, TechValue>;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkShape(t: unknown, file: string): asserts t is TechFile {
  if (!isObject(t) || !isObject(t.values)) throw new ConfigError(`${file}: expected an object with "values"`);
}

function parse(text: string, file: string): TechFile {
  const t = parseJson(text, file);
  checkShape(t, file);
  return t;
}

function readPreset(name: string): TechFile {
  if (!(PRESETS as readonly string[]).includes(name)) throw new ConfigError(`unknown technology preset ${show(name)}; presets: ${PRESETS.join(', ')}`);
  const file = join(packageRoot(), 'ts', 'cost', 'tech', `${name}.json`);
  return parse(readTextFile(file, basename(file)), basename(file));
}

/** Checks every field (present, unit, non-negative finite numbers, a source) and converts to canonical units. */
export function validateTech(t: TechFile, file: string): Technology {
  checkShape(t, file);
  // A misspelt field in a file that overrides a preset would otherwise be ignored, silently.
  const known = fields();
  for (const key of Object.keys(t.values)) {
    if (!known.some((f) => f.name === key)) throw new ConfigError(`${file}: unknown field ${show(key)}; known: ${known.map((f) => f.name).join(', ')}`);
  }
  const tech = {} as Record<string, number | number[] | string>;
  for (const { name: key, dimension, list: isList, choices } of known) {
    const dim = dimension as Dimension;
    const at = `${file}: field '${key}'`;
    const v = t.values[key];
    if (v === undefined) throw new ConfigError(`${at} is missing`);
    if (!isObject(v)) throw new ConfigError(`${at}: expected an object with "value", "unit" and "source", got ${show(v)}`);
    // Own keys only: "toString" is not a unit.
    const factor = Object.hasOwn(UNITS[dim], v.unit) ? UNITS[dim][v.unit] : undefined;
    if (factor === undefined) throw new ConfigError(`${at}: unit ${show(v.unit)} is not one of ${Object.keys(UNITS[dim]).join(', ')}`);
    if (typeof v.source !== 'string' || v.source.trim() === '') throw new ConfigError(`${at} has no source`);
    if (dim === 'choice') {
      if (typeof v.value !== 'string' || !choices.includes(v.value)) throw new ConfigError(`${at}: ${show(v.value)} is not one of ${choices.join(', ')}`);
      tech[key] = v.value;
      continue;
    }
    const per = v.per ?? 1;
    if (!(typeof per === 'number' && Number.isFinite(per) && per > 0)) throw new ConfigError(`${at}: "per" must be a positive number, got ${show(per)}`);
    const values = Array.isArray(v.value) ? v.value : [v.value];
    if (Array.isArray(v.value) !== isList) throw new ConfigError(`${at}: expected ${isList ? 'a list of numbers' : 'a number'}`);
    for (const x of values as unknown[]) {
      if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new ConfigError(`${at}: ${show(x)} is not a non-negative number`);
    }
    const converted = (values as number[]).map((x) => (x * factor) / per);
    tech[key] = isList ? converted : converted[0];
  }
  // What the cost model relies on (ADC table, positive rates, resistances), checked by the core.
  try {
    native().checkTech(tech);
  } catch (e) {
    throw new ConfigError(`${file}: ${(e as Error).message}`);
  }
  return { name: t.name ?? file, tech, values: t.values as Record<string, TechValue> };
}

/** A preset, or a file (complete, or with `base` naming the preset it overrides). */
export function loadTech(presetOrFile: string = PRESETS[0]): Technology {
  if ((PRESETS as readonly string[]).includes(presetOrFile)) return validateTech(readPreset(presetOrFile), `${presetOrFile}.json`);
  const file = parse(readTextFile(presetOrFile, `--tech ${presetOrFile}`), presetOrFile);
  if (file.base !== undefined) {
    const base = readPreset(file.base);
    return validateTech({ ...base, name: file.name ?? `${base.name}+${basename(presetOrFile)}`, values: { ...base.values, ...file.values } }, presetOrFile);
  }
  return validateTech(file, presetOrFile);
}
