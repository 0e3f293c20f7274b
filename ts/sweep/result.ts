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
  /** By component (cells, dac, adc, sampleHold, senseAmp, mtj, counter, shiftAdd, buffer, digital). */
  perComponent: { energyPJ: Record<string, number>; latencyNs: Record<string, number>; areaMm2: Record<string, number> };
  perLayer: { name: string; crossbar: boolean; energyPJ: number; latencyNs: number; areaMm2: number }[];
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
