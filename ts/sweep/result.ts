// One line of a sweep's results.jsonl: a design point, its accuracy and its
// hardware cost. `stoxnet sweep` writes these, `stoxnet report` reads them.
import type { StoxConfig } from '../stox.js';

/** Energy, latency and area of one configuration, per image (cost/compare.ts). */
export interface PointCost {
  /** Technology preset or file name. */
  tech: string;
  energyPJ: number;
  /** Layers one after another. */
  latencyNs: number;
  areaMm2: number;
  /** energy × latency, pJ·ns */
  edp: number;
  /** By component (cells, dac, adc, sampleHold, senseAmp, mtj, shiftAdd, buffer, digital). */
  perComponent: { energyPJ: Record<string, number>; latencyNs: Record<string, number>; areaMm2: Record<string, number> };
  /** Conv/linear layers in order, then "(other)": every other node (BatchNorm, ReLU, add, pooling). The rows add up to the totals. */
  perLayer: { name: string; crossbar: boolean; energyPJ: number; latencyNs: number; areaMm2: number }[];
  /**
   * The same totals in two scopes: `macro` (crossbars and their periphery:
   * cells, DACs, converters, sample-and-hold, shift-and-add) and `system`
   * (plus activation buffers and the digital layers: the totals above).
   * Absent from results written before scopes existed.
   */
  scope?: Record<Scope, ScopeCost>;
}

export type Scope = 'macro' | 'system';

export interface ScopeCost {
  energyPJ: number;
  latencyNs: number;
  areaMm2: number;
  /** pJ·ns */
  edp: number;
}

export interface SweepResult {
  /** Position of the point in the grid's enumeration (0-based). */
  index: number;
  /** Canonical JSON of `settings` (sorted keys): the point's identity. */
  key: string;
  /** The values the grid's axes take at this point, e.g. {converter: 'mtj', samples: 4, seed: 1}. */
  settings: Record<string, unknown>;
  /** The full simulator settings of the point (grid base + settings). */
  config: Partial<StoxConfig>;
  /** Model file name. */
  model: string;
  /** Test images evaluated (the first N of the 10,000). */
  images: number;
  correct: number;
  /** Fraction in [0, 1]. */
  top1: number;
  /** The seed of every random draw of this point. */
  seed: number;
  /** Resolved converter of the crossbar layers: ideal, adc, sparse-adc, sense-amp, mtj. */
  converter: string;
  /** MTJ samples per crossbar layer in order (empty for other converters). */
  samples: number[];
  /** Mean T over crossbar layers (null for other converters). */
  meanSamples: number | null;
  cost: PointCost;
  logitsDigest: string;
  /** Wall time of the point (evaluation and costing). */
  seconds: number;
}

// Every field a report uses, checked when a file is read, so that a bad line
// fails with its line number instead of as a NaN in a plot.
type Kind = 'number' | 'string' | 'object' | 'array' | 'number|null' | 'record';

const FIELDS: [string, Kind][] = [
  ['index', 'number'],
  ['key', 'string'],
  ['settings', 'object'],
  ['config', 'object'],
  ['model', 'string'],
  ['images', 'number'],
  ['correct', 'number'],
  ['top1', 'number'],
  ['seed', 'number'],
  ['converter', 'string'],
  ['samples', 'array'],
  ['meanSamples', 'number|null'],
  ['cost', 'object'],
  ['cost.tech', 'string'],
  ['cost.energyPJ', 'number'],
  ['cost.latencyNs', 'number'],
  ['cost.areaMm2', 'number'],
  ['cost.edp', 'number'],
  ['cost.perComponent', 'object'],
  ['cost.perComponent.energyPJ', 'record'],
  ['cost.perComponent.latencyNs', 'record'],
  ['cost.perComponent.areaMm2', 'record'],
  ['cost.perLayer', 'array'],
  ['logitsDigest', 'string'],
  ['seconds', 'number'],
];

const LAYER_FIELDS: [string, Kind][] = [
  ['name', 'string'],
  ['energyPJ', 'number'],
  ['latencyNs', 'number'],
  ['areaMm2', 'number'],
];

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function fits(v: unknown, kind: Kind): boolean {
  switch (kind) {
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'number|null':
      return v === null || (typeof v === 'number' && Number.isFinite(v));
    case 'string':
      return typeof v === 'string';
    case 'object':
      return isObject(v);
    case 'array':
      return Array.isArray(v);
    case 'record':
      return isObject(v) && Object.values(v).every((x) => typeof x === 'number' && Number.isFinite(x));
  }
}

function get(obj: unknown, path: string): unknown {
  let v = obj;
  for (const part of path.split('.')) v = isObject(v) ? v[part] : undefined;
  return v;
}

/** The first field of `value` that is missing or of the wrong type, as a message; null when it is a whole SweepResult. */
export function invalidField(value: unknown): string | null {
  if (!isObject(value)) return 'not a JSON object';
  for (const [path, kind] of FIELDS) {
    const v = get(value, path);
    if (!fits(v, kind)) return `field '${path}' is ${v === undefined ? 'missing' : `not ${kind === 'record' ? 'an object of numbers' : `a ${kind}`}`}`;
  }
  const layers = get(value, 'cost.perLayer') as unknown[];
  for (let i = 0; i < layers.length; i++) {
    for (const [path, kind] of LAYER_FIELDS) {
      const v = get(layers[i], path);
      if (!fits(v, kind)) return `field 'cost.perLayer[${i}].${path}' is ${v === undefined ? 'missing' : `not a ${kind}`}`;
    }
  }
  return null;
}
