// `stoxnet cost`: evaluates several converter configurations on the same
// images and mapping, turns each one's operation counts into energy,
// latency and area (crates/core/src/cost.rs), and compares them with the
// first, the baseline.
import { ConfigError, int } from '../config.js';
import { evaluate, type EvalRun } from '../eval.js';
import { native } from '../native.js';
import { SCHEDULES, type StoxConfig } from '../stox.js';
import { loadTech, type Technology } from './tech.js';

/**
 * `stoxnet-paper`: our reading of the StoX-Net abstract's hardware setting
 * for ResNet20 on CIFAR-10 (the paper body could not be read, METHOD.md):
 * 128-row subarrays, 4-bit weights and inputs mapped as 1-bit cells and
 * 1-bit input streams (so the full-precision ADC has log2(128) + 1 + 1 = 9
 * bits), balanced split, first conv and last linear digital, MTJ sigmoid
 * a = 4. "stox-uniform" is one T for every layer (T = 1); "stox-inhomogeneous"
 * is the first-16-then-4 schedule. Every assumption is a flag that can be
 * overridden.
 */
export const PRESETS = {
  'stoxnet-paper': {
    config: { rows: 128, split: 'balanced', weightBits: 4, weightSliceBits: 1, inputBits: 4, inputStreamBits: 1, transfer: 'sigmoid', sensitivity: 4, policy: 'first-last-digital' } as Partial<StoxConfig>,
    compare: ['fp-adc', 'sparse-adc', 'stox-uniform', 'stox-inhomogeneous'],
  },
} as const;

export interface CompareOptions {
  model: string;
  data?: string;
  /** Test images evaluated per configuration (default 500). */
  images?: number;
  threads?: number;
  /** Mapping and other settings shared by every configuration. */
  config?: Partial<StoxConfig>;
  /** Configurations, the first is the baseline: fp-adc, low-bit-adc, sparse-adc, sense-amp, ideal, stox[:T|:schedule]. */
  compare: string[];
  /** Resolution of `low-bit-adc` (default 4). */
  adcBits?: number;
  /** A preset name or a technology file. */
  tech?: string;
  signal?: AbortSignal;
}

export interface LayerCostReport {
  node: number;
  name: string;
  crossbar: boolean;
  energyPJ: number;
  latencyNs: number;
  areaMm2: number;
  energy: Record<string, number>;
}

export interface ConfigCost {
  name: string;
  top1: number;
  images: number;
  /** per image */
  energyPJ: number;
  /** per image, layers one after another */
  latencyNs: number;
  /** images/s with every layer a pipeline stage */
  pipelinedImagesPerSecond: number;
  areaMm2: number;
  /** energy × latency, pJ·ns */
  edp: number;
  perLayer: LayerCostReport[];
  perComponent: { energyPJ: Record<string, number>; latencyNs: Record<string, number>; areaMm2: Record<string, number> };
  config: Partial<StoxConfig>;
}

export interface CostReport {
  tech: string;
  images: number;
  configs: ConfigCost[];
  /** baseline ÷ configuration: "16" means 16× better */
  ratios: Record<string, { energy: number; latency: number; area: number; edp: number }>;
}

/** The converter settings a comparison entry stands for. */
export function entryConfig(entry: string, adcBits: number): Partial<StoxConfig> {
  const [name, arg] = entry.split(':');
  switch (name) {
    case 'fp-adc':
      return { converter: 'adc', adcRange: 'full', adcBits: undefined };
    case 'low-bit-adc':
      return { converter: 'adc', adcRange: 'calibrated', adcBits };
    case 'sparse-adc':
      return { converter: 'sparse-adc' };
    case 'sense-amp':
      return { converter: 'sense-amp' };
    case 'ideal':
      return { converter: 'ideal' };
    case 'stox-uniform':
      return { converter: 'mtj', samples: arg === undefined ? 1 : int(`--compare ${entry}`, arg, 1, 1 << 20) };
    case 'stox-inhomogeneous':
      return { converter: 'mtj', schedule: (arg ?? 'first-16-then-4') as StoxConfig['schedule'] };
    case 'stox':
      if (arg === undefined) return { converter: 'mtj' };
      if ((SCHEDULES as readonly string[]).includes(arg)) return { converter: 'mtj', schedule: arg as StoxConfig['schedule'] };
      return { converter: 'mtj', samples: int(`--compare ${entry}`, arg, 1, 1 << 20) };
    default:
      throw new ConfigError(`--compare: unknown configuration ${JSON.stringify(entry)}; use fp-adc, low-bit-adc, sparse-adc, sense-amp, ideal, stox, stox:T, stox:<schedule>, stox-uniform[:T] or stox-inhomogeneous[:schedule]`);
  }
}

/** Energy, latency and area per image of one evaluated configuration. */
export function costOf(name: string, run: EvalRun, technology: Technology, config: Partial<StoxConfig>): ConfigCost {
  if (!run.simulator || !run.nodeOps) throw new ConfigError(`configuration ${name}: needs crossbar layers to cost (converter ${run.report.converter})`);
  const components = native().costComponents();
  const costs = run.simulator.cost(run.nodeOps, technology.tech);
  const names = new Map(run.report.ops!.layers.map((l) => [l.node, l]));
  const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
  const perComponent = { energyPJ: {} as Record<string, number>, latencyNs: {} as Record<string, number>, areaMm2: {} as Record<string, number> };
  components.forEach((c, k) => {
    perComponent.energyPJ[c] = costs.reduce((s, x) => s + x.energy[k], 0);
    perComponent.latencyNs[c] = costs.reduce((s, x) => s + x.latency[k], 0);
    perComponent.areaMm2[c] = costs.reduce((s, x) => s + x.area[k], 0) / 1e6;
  });
  const perLayer = costs.flatMap((c, node) => {
    const l = names.get(node);
    if (!l) return [];
    return [
      {
        node,
        name: l.name,
        crossbar: l.crossbar,
        energyPJ: sum(c.energy),
        latencyNs: sum(c.latency),
        areaMm2: sum(c.area) / 1e6,
        energy: Object.fromEntries(components.map((n, k) => [n, c.energy[k]])),
      },
    ];
  });
  const energyPJ = costs.reduce((s, c) => s + sum(c.energy), 0);
  const latencyNs = costs.reduce((s, c) => s + sum(c.latency), 0);
  return {
    name,
    top1: run.report.top1,
    images: run.report.images,
    energyPJ,
    latencyNs,
    pipelinedImagesPerSecond: 1e9 / Math.max(...costs.map((c) => sum(c.latency))),
    areaMm2: Object.values(perComponent.areaMm2).reduce((a, b) => a + b, 0),
    edp: energyPJ * latencyNs,
    perLayer,
    perComponent,
    config,
  };
}

export async function compareCosts(o: CompareOptions): Promise<CostReport> {
  if (o.compare.length === 0) throw new ConfigError('--compare: give at least one configuration');
  const images = int('--images', o.images ?? 500, 1, 10_000);
  const adcBits = int('--adc-bits', o.adcBits ?? 4, 1, 24);
  const technology = loadTech(o.tech);
  const entries = o.compare.map((e) => [e, entryConfig(e, adcBits)] as const); // all validated before any runs
  const configs: ConfigCost[] = [];
  for (const [entry, converter] of entries) {
    const config = { ...o.config, ...converter };
    if (config.adcBits === undefined) delete config.adcBits;
    const run = await evaluate({ model: o.model, data: o.data, limit: images, threads: o.threads, config, signal: o.signal });
    configs.push(costOf(entry, run, technology, config));
  }
  const [base] = configs;
  const ratios = Object.fromEntries(
    configs.map((c) => [c.name, { energy: base.energyPJ / c.energyPJ, latency: base.latencyNs / c.latencyNs, area: base.areaMm2 / c.areaMm2, edp: base.edp / c.edp }]),
  );
  return { tech: technology.name, images, configs, ratios };
}
