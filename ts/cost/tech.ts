// Technology files: every number of the cost model with its unit and
// source (ts/cost/tech/*.json). Loaded and validated once here; the Rust
// cost model receives canonical units (pJ, ns, µm², V, Ω, µA, mW = pJ/ns).
import { basename, join } from 'node:path';
import { ConfigError, parseJson, readTextFile, show } from '../config.js';
import type { TechJs } from '../native-binding.js';
import { packageRoot } from '../paths.js';

export const PRESETS = ['isaac-32nm', 'neurosim-22nm'] as const;

type Dimension = 'energy' | 'time' | 'area' | 'count' | 'voltage' | 'resistance' | 'current' | 'power' | 'choice';

const FIELDS: Record<keyof TechJs, Dimension> = {
  readVoltage: 'voltage',
  cellOnResistance: 'resistance',
  cellOffResistance: 'resistance',
  readPulse: 'time',
  readSettling: 'time',
  cellArea: 'area',
  dacPower: 'power',
  dacArea: 'area',
  adcArchitecture: 'choice',
  adcBits: 'count',
  adcEnergy: 'energy',
  adcArea: 'area',
  adcCycle: 'time',
  adcSharing: 'count',
  sampleHoldEnergy: 'energy',
  sampleHoldArea: 'area',
  senseAmpEnergy: 'energy',
  senseAmpArea: 'area',
  senseAmpLatency: 'time',
  mtjWriteCurrent: 'current',
  mtjResistance: 'resistance',
  mtjReadEnergy: 'energy',
  mtjResetEnergy: 'energy',
  mtjSampleLatency: 'time',
  mtjArea: 'area',
  shiftAddEnergy: 'energy',
  shiftAddArea: 'area',
  bufferEnergy: 'energy',
  digitalMacEnergy: 'energy',
  digitalOpEnergy: 'energy',
  digitalRate: 'count',
  digitalArea: 'area',
  pipeline: 'choice',
};

/** The values of the 'choice' fields (crates/core/src/cost.rs parses them). */
const CHOICES: Partial<Record<keyof TechJs, readonly string[]>> = {
  adcArchitecture: ['sar', 'flash'],
  pipeline: ['none', 'read-convert'],
};

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
  values: Partial<Record<keyof TechJs, TechValue>>;
}

export interface Technology {
  name: string;
  /** Canonical units, for the cost model. */
  tech: TechJs;
  /** Every value as given, with its source, for reports. */
  values: Record<keyof TechJs, TechValue>;
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
  for (const key of Object.keys(t.values)) {
    if (!Object.hasOwn(FIELDS, key)) throw new ConfigError(`${file}: unknown field ${show(key)}; known: ${Object.keys(FIELDS).join(', ')}`);
  }
  const tech = {} as Record<string, number | number[] | string>;
  for (const [key, dim] of Object.entries(FIELDS) as [keyof TechJs, Dimension][]) {
    const at = `${file}: field '${key}'`;
    const v = t.values[key];
    if (v === undefined) throw new ConfigError(`${at} is missing`);
    if (!isObject(v)) throw new ConfigError(`${at}: expected an object with "value", "unit" and "source", got ${show(v)}`);
    // Own keys only: "toString" is not a unit.
    const factor = Object.hasOwn(UNITS[dim], v.unit) ? UNITS[dim][v.unit] : undefined;
    if (factor === undefined) throw new ConfigError(`${at}: unit ${show(v.unit)} is not one of ${Object.keys(UNITS[dim]).join(', ')}`);
    if (typeof v.source !== 'string' || v.source.trim() === '') throw new ConfigError(`${at} has no source`);
    const choices = CHOICES[key];
    if (choices) {
      if (typeof v.value !== 'string' || !choices.includes(v.value)) throw new ConfigError(`${at}: ${show(v.value)} is not one of ${choices.join(', ')}`);
      tech[key] = v.value;
      continue;
    }
    const per = v.per ?? 1;
    if (!(typeof per === 'number' && Number.isFinite(per) && per > 0)) throw new ConfigError(`${at}: "per" must be a positive number, got ${show(per)}`);
    const isList = key === 'adcBits' || key === 'adcEnergy' || key === 'adcArea';
    const values = Array.isArray(v.value) ? v.value : [v.value];
    if (Array.isArray(v.value) !== isList) throw new ConfigError(`${at}: expected ${isList ? 'a list of numbers' : 'a number'}`);
    for (const x of values as unknown[]) {
      if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new ConfigError(`${at}: ${show(x)} is not a non-negative number`);
    }
    const converted = (values as number[]).map((x) => (x * factor) / per);
    tech[key] = isList ? converted : converted[0];
  }
  const bits = tech.adcBits as number[];
  for (const k of ['adcEnergy', 'adcArea'] as const) {
    if ((tech[k] as number[]).length !== bits.length) throw new ConfigError(`${file}: field '${k}' has ${(tech[k] as number[]).length} entries, adcBits has ${bits.length}`);
  }
  if (bits.length < 2 || bits.some((b, i) => !Number.isInteger(b) || (i > 0 && b <= bits[i - 1]))) throw new ConfigError(`${file}: field 'adcBits' must list at least two ascending integer resolutions`);
  for (const k of ['adcSharing', 'digitalRate'] as const) if (!((tech[k] as number) > 0)) throw new ConfigError(`${file}: field '${k}' must be positive`);
  if (!Number.isInteger(tech.adcSharing)) throw new ConfigError(`${file}: field 'adcSharing' must be an integer`);
  if (!((tech.cellOnResistance as number) > 0)) throw new ConfigError(`${file}: field 'cellOnResistance' must be positive`);
  if ((tech.cellOffResistance as number) < (tech.cellOnResistance as number)) throw new ConfigError(`${file}: field 'cellOffResistance' (${tech.cellOffResistance} Ohm) is below 'cellOnResistance' (${tech.cellOnResistance} Ohm)`);
  return { name: t.name ?? file, tech: tech as unknown as TechJs, values: t.values as Record<keyof TechJs, TechValue> };
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
