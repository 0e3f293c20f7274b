// `stoxnet cost`: evaluates several converter configurations on the same
// images, each on its own model or on a shared one, turns each one's
// operation counts into energy, latency and area (crates/core/src/cost.rs),
// and compares them with the first, the baseline.
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { EvalCache } from '../cache.js';
import { ConfigError, int } from '../config.js';
import { evaluate, type EvalRun, type EvalSet } from '../eval.js';
import type { LayerCostJs } from '../native-binding.js';
import { native } from '../native.js';
import { packageRoot } from '../paths.js';
import { stats } from '../report/groups.js';
import { SCHEDULES, type StoxConfig } from '../stox.js';
import { canonical } from '../sweep/grid.js';
import type { PointCost, Scope, ScopeCost, SweepResult } from '../sweep/result.js';
import { loadTech, type Technology } from './tech.js';

/** The project's own models (models/README.md). */
const MODELS = join(packageRoot(), 'models');

/**
 * `stoxnet-paper`: our reading of the StoX-Net abstract's hardware setting
 * for ResNet20 on CIFAR-10 (the paper body could not be read, docs/method.md §1):
 * 128-row subarrays, 4-bit weights and inputs mapped as 1-bit cells and
 * 1-bit input streams (so the full-precision ADC has 8 bits: the balanced
 * split gives ResNet20's layers 72–116 rows, 2·116 + 1 = 233 levels), balanced split, first conv and last linear digital, MTJ sigmoid
 * a = 4. "stox-uniform" is one T for every layer (T = 1); "stox-inhomogeneous"
 * is the first-16-then-4 schedule. Every assumption is a flag that can be
 * overridden.
 *
 * `stoxnet-fair`: every converter on a model trained for it (models/), so
 * that no row's accuracy is that of weights trained for another converter.
 * The lossless ADC gives the same bits as the ideal converter, and the sparse
 * ADC is lossless on the calibration images, so both run the ideal-trained
 * model. No shared mapping: each model brings the one it was trained with.
 *
 * `stoxnet-fair-45k`: the same rows on the clean lineage, whose root trained
 * on the first 45,000 training images only, so that every choice along it
 * (and the schedule search, whose row runs the schedule it chose on the
 * random-T model) was made on a validation split none of them saw.
 *
 * `stoxnet-fair-1b1b`: the paper's mapping (1-bit cells, 1-bit input
 * streams), each readout on the clean-lineage model trained for it on this
 * mapping; the exact converters (fp-adc, sparse-adc) read the ideal model,
 * which an exact conversion reads the same under any slicing. No 4-bit ADC
 * row: no model was trained for it on this mapping.
 */
export const PRESETS = {
  'stoxnet-paper': {
    config: { rows: 128, split: 'balanced', weightBits: 4, weightSliceBits: 1, inputBits: 4, inputStreamBits: 1, transfer: 'sigmoid', sensitivity: 4, policy: 'first-last-digital' } as Partial<StoxConfig>,
    compare: ['fp-adc', 'sparse-adc', 'stox-uniform', 'stox-inhomogeneous'],
  },
  'stoxnet-fair': {
    config: {} as Partial<StoxConfig>,
    // T = 1 on the model trained at T = 1; the searched schedule on the one trained at T drawn from {1, 2, 4}, then at the schedule.
    compare: fairRows({ ideal: 'ideal-4w4a', adc4: 'adc4-4w4a', senseAmp: 'senseamp-4w4a', t1: 'stox-t1-4w4a', schedule: ['stox-mixed.schedule.json', 'stox-mixed-4w4a'], t4: 'stox-4w4a' }),
  },
  'stoxnet-fair-45k': {
    config: {} as Partial<StoxConfig>,
    // The schedule the confirmed search chose on the random-T model, run on that model.
    compare: fairRows({ ideal: 'ideal-4w4a-45k', adc4: 'adc4-4w4a-45k', senseAmp: 'senseamp-4w4a-45k', t1: 'stox-t1-4w4a-45k', schedule: ['stox-random-45k.schedule.json', 'stox-random-45k'], t4: 'stox-4w4a-45k' }),
  },
  'stoxnet-fair-1b1b': {
    config: { weightSliceBits: 1, inputStreamBits: 1 } as Partial<StoxConfig>,
    compare: entries([
      ['fp-adc', 'ideal-4w4a-45k'],
      ['sparse-adc', 'ideal-4w4a-45k'],
      ['sense-amp', 'senseamp-1b1b-45k'],
      ['stox:1', 'stox-t1-1b1b-45k'],
      ['stox:2', 'stox-t2-1b1b-45k'],
      ['stox:1/1/2/3', 'stox-streams-1b1b-45k'],
      ['stox:4', 'stox-t1-1b1b-45k'],
    ]),
  },
} as const;

/** A file of models/ named by its part after `resnet20-cifar10-`. */
function modelFile(name: string): string {
  return join(MODELS, `resnet20-cifar10-${name}`);
}

/** `CONFIG=MODEL` entries, each model of models/ named by its part after `resnet20-cifar10-` (without `.onnx`). */
function entries(rows: [string, string][]): string[] {
  return rows.map(([entry, model]) => `${entry}=${modelFile(model)}.onnx`);
}

/** The rows of a fair preset on the 4-bit mapping, the model (and schedule) of each in models/. */
function fairRows(m: { ideal: string; adc4: string; senseAmp: string; t1: string; schedule: [string, string]; t4: string }): string[] {
  return entries([
    ['fp-adc', m.ideal],
    ['low-bit-adc', m.adc4],
    ['sparse-adc', m.ideal],
    ['sense-amp', m.senseAmp],
    ['stox:1', m.t1],
    [`stox:${modelFile(m.schedule[0])}`, m.schedule[1]],
    ['stox:4', m.t4],
  ]);
}

export interface CompareOptions {
  /** Model of the entries that do not name their own; needed only when some entry does not. */
  model?: string;
  data?: string;
  /** Which data set (default: the model's own, else CIFAR-10). */
  dataset?: string;
  /** Test images evaluated per configuration (default 500). */
  images?: number;
  threads?: number;
  /** Mapping and other settings shared by every configuration; they override each model's embedded settings. */
  config?: Partial<StoxConfig>;
  /**
   * Configurations, the first is the baseline: fp-adc, low-bit-adc,
   * sparse-adc, sense-amp, ideal, stox[:T|:schedule|:FILE.json], each
   * optionally `=MODEL.onnx`, its own model (a path relative to the current
   * directory; default `model`).
   */
  compare: string[];
  /**
   * Sampling seeds: each configuration is evaluated once per seed (seed = s)
   * and its accuracy and cost are the mean over them. Default: one run with
   * the configured seed, else the model's.
   */
  seeds?: number[];
  /** Resolution of `low-bit-adc` (default 4). */
  adcBits?: number;
  /** A preset name or a technology file. */
  tech?: string;
  signal?: AbortSignal;
  /** Models and images shared by every configuration and seed (default: a fresh one); the demo shares its own with its accuracy run. */
  cache?: EvalCache;
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

/** One evaluation of a configuration, with one sampling seed. */
export interface SeedRun {
  seed: number;
  correct: number;
  logitsDigest: string;
  /** Wall time of the evaluation and costing. */
  seconds: number;
  /** Its own cost: cell energy depends on the data the converters pass on. */
  cost: PointCost;
}

export interface ConfigCost {
  /** The entry without its model (a schedule file as its base name); with `=MODEL` when another entry has the same configuration. */
  name: string;
  /** Model file name. */
  model: string;
  /** Resolved converter of the crossbar layers: ideal, adc, sparse-adc, sense-amp, mtj. */
  converter: string;
  /** MTJ samples per crossbar layer in order (empty for other converters). */
  samples: number[];
  /** The sampling seeds evaluated, one run each. */
  seeds: number[];
  /** Mean top-1 over the seeds (= top1Mean). */
  top1: number;
  top1Mean: number;
  /** Sample standard deviation over the seeds; 0 for one seed. */
  top1Sd: number;
  top1PerSeed: { seed: number; top1: number }[];
  images: number;
  /** per image, mean over the seeds (also every field below) */
  energyPJ: number;
  /** per image, layers one after another */
  latencyNs: number;
  /** images/s with every layer a pipeline stage */
  pipelinedImagesPerSecond: number;
  areaMm2: number;
  /** energy × latency, pJ·ns */
  edp: number;
  perLayer: LayerCostReport[];
  perComponent: PointCost['perComponent'];
  /** Macro and system scope (PointCost['scope']); the totals above are the system scope. */
  scope: Record<Scope, ScopeCost>;
  /** The settings evaluated (over the model's embedded ones), the seed aside. */
  config: Partial<StoxConfig>;
  /** Each seed's run: `costResults` makes the result lines from them. */
  runs: SeedRun[];
}

export interface CostReport {
  tech: string;
  images: number;
  configs: ConfigCost[];
  /** baseline ÷ configuration: "16" means 16× better */
  ratios: Record<string, Ratios>;
  /** sparse-adc ÷ configuration, when the comparison has a sparse-adc row (the paper's second baseline) */
  ratiosToSparse?: Record<string, Ratios>;
}

export interface Ratios {
  energy: number;
  latency: number;
  area: number;
  edp: number;
  /** The same ratios in the macro scope (crossbars and their periphery), the scope papers usually quote. */
  macro: { energy: number; latency: number; area: number; edp: number };
}

/** base ÷ each configuration, system and macro scope. */
function ratiosTo(base: ConfigCost, configs: ConfigCost[]): Record<string, Ratios> {
  const over = (a: ScopeCost, b: ScopeCost) => ({ energy: a.energyPJ / b.energyPJ, latency: a.latencyNs / b.latencyNs, area: a.areaMm2 / b.areaMm2, edp: a.edp / b.edp });
  return Object.fromEntries(configs.map((c) => [c.name, { ...over(base.scope.system, c.scope.system), macro: over(base.scope.macro, c.scope.macro) }]));
}

// An entry that sets T replaces every T setting of the model or the shared
// config: an embedded samplesPerLayer would override its samples, and a
// schedule beside a samplesPerLayer is refused.
const mtj = (t: Partial<Pick<StoxConfig, 'samples' | 'schedule' | 'samplesPerStream'>>): Partial<StoxConfig> => ({ converter: 'mtj', samplesPerLayer: undefined, schedule: undefined, samplesPerStream: undefined, ...t });

/** `NAME[:ARG]` → [NAME, ARG]; at the first colon, so that ARG may be a path. */
function nameArg(entry: string): [string, string | undefined] {
  const colon = entry.indexOf(':');
  return colon < 0 ? [entry, undefined] : [entry.slice(0, colon), entry.slice(colon + 1)];
}

/** The converter settings a comparison entry (without its `=MODEL`) stands for. */
export function entryConfig(entry: string, adcBits: number): Partial<StoxConfig> {
  const [name, arg] = nameArg(entry);
  // A T per stream (the model's or a shared --samples-per-stream) sets MTJ samples: the other converters drop it.
  const other = (c: Partial<StoxConfig>): Partial<StoxConfig> => ({ ...c, samplesPerStream: undefined });
  switch (name) {
    case 'fp-adc':
      // adcBits undefined (not absent) so that it also clears a model's embedded resolution: the default is lossless.
      return other({ converter: 'adc', adcRange: 'full', adcBits: undefined });
    case 'low-bit-adc':
      return other({ converter: 'adc', adcRange: 'calibrated', adcBits });
    case 'sparse-adc':
      return other({ converter: 'sparse-adc' });
    case 'sense-amp':
      return other({ converter: 'sense-amp' });
    case 'ideal':
      return other({ converter: 'ideal' });
    case 'stox-uniform':
      return mtj({ samples: arg === undefined ? 1 : int(`--compare ${entry}`, arg, 1, 1 << 20) });
    case 'stox-inhomogeneous':
      return mtj({ schedule: (arg ?? 'first-16-then-4') as StoxConfig['schedule'] });
    case 'stox':
      if (arg === undefined) return { converter: 'mtj' };
      // A schedule file ({"samplesPerLayer": [...]} or {"samplesPerStream": [...]}), read by resolveConfig.
      if (arg.endsWith('.json') || (SCHEDULES as readonly string[]).includes(arg)) return mtj({ schedule: arg as StoxConfig['schedule'] });
      // T per input stream, least significant first: `/` because `,` separates the entries.
      if (arg.includes('/')) return mtj({ samplesPerStream: arg.split('/').map((t) => int(`--compare ${entry}: T per stream`, t, 1, 1 << 20)) });
      return mtj({ samples: int(`--compare ${entry}`, arg, 1, 1 << 20) });
    default:
      throw new ConfigError(`--compare: unknown configuration ${JSON.stringify(entry)}; use fp-adc, low-bit-adc, sparse-adc, sense-amp, ideal, stox, stox:T, stox:<schedule>, stox:<FILE.json>, stox:T0/T1/... (T per input stream, least significant first), stox-uniform[:T] or stox-inhomogeneous[:schedule], each optionally =MODEL.onnx`);
  }
}

/** A comparison entry `CONFIG[=MODEL]` split at the first `=`. */
export function splitEntry(entry: string): { config: string; model?: string } {
  const eq = entry.indexOf('=');
  return eq < 0 ? { config: entry } : { config: entry.slice(0, eq), model: entry.slice(eq + 1) };
}

/** An entry's configuration as tables show it: a schedule file by its base name. */
export function entryName(config: string): string {
  const [name, arg] = nameArg(config);
  return arg?.endsWith('.json') ? `${name}:${basename(arg)}` : config;
}

/** The name of the per-layer row that holds every node that is not a conv/linear layer. */
export const OTHER = '(other)';

/** Totals, per layer, per component and per scope of one set of per-node costs. */
function totals(costs: LayerCostJs[], components: string[], layers: Map<number, { name: string; crossbar: boolean }>) {
  const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
  const perComponent = { energyPJ: {} as Record<string, number>, latencyNs: {} as Record<string, number>, areaMm2: {} as Record<string, number> };
  components.forEach((c, k) => {
    perComponent.energyPJ[c] = costs.reduce((s, x) => s + x.energy[k], 0);
    perComponent.latencyNs[c] = costs.reduce((s, x) => s + x.latency[k], 0);
    perComponent.areaMm2[c] = costs.reduce((s, x) => s + x.area[k], 0) / 1e6;
  });
  const row = (name: string, crossbar: boolean, nodes: LayerCostJs[], node: number): LayerCostReport => ({
    node,
    name,
    crossbar,
    energyPJ: sum(nodes.map((c) => sum(c.energy))),
    latencyNs: sum(nodes.map((c) => sum(c.latency))),
    areaMm2: sum(nodes.map((c) => sum(c.area))) / 1e6,
    energy: Object.fromEntries(components.map((n, k) => [n, sum(nodes.map((c) => c.energy[k]))])),
  });
  const perLayer: LayerCostReport[] = costs.flatMap((c, node) => {
    const l = layers.get(node);
    return l ? [row(l.name, l.crossbar, [c], node)] : [];
  });
  // The rest (BatchNorm, ReLU, add, pooling) as one row, so that the rows add up to the totals.
  const rest = costs.filter((_, node) => !layers.has(node));
  if (rest.length) perLayer.push(row(OTHER, false, rest, -1));
  const macro = new Set(native().macroComponents());
  const scope = (inScope: (c: string) => boolean): ScopeCost => {
    const part = (v: Record<string, number>) => sum(Object.entries(v).flatMap(([c, x]) => (inScope(c) ? [x] : [])));
    const energyPJ = part(perComponent.energyPJ);
    const latencyNs = part(perComponent.latencyNs);
    return { energyPJ, latencyNs, areaMm2: part(perComponent.areaMm2), edp: energyPJ * latencyNs };
  };
  const system = scope(() => true);
  return {
    ...system,
    pipelinedImagesPerSecond: 1e9 / Math.max(...costs.map((c) => sum(c.latency))),
    perLayer,
    perComponent,
    scope: { macro: scope((c) => macro.has(c)), system },
  };
}

export interface CostConfigOptions {
  model: string;
  data?: string;
  /** Which data set (default: the model's own, else CIFAR-10). */
  dataset?: string;
  images: number;
  threads?: number;
  config: Partial<StoxConfig>;
  /** One run per seed; default one run with the configured (else the model's) seed. */
  seeds?: number[];
  /** The images evaluated (default the test set; the schedule search uses the validation split). */
  evalSet?: EvalSet;
  signal?: AbortSignal;
  /** Models and images shared with the other configurations of the command (default: a fresh one, shared by the seeds). */
  cache?: EvalCache;
}

/** Evaluates one configuration once per seed and turns its operation counts into energy, latency and area per image. */
export async function costConfig(name: string, o: CostConfigOptions, technology: Technology): Promise<ConfigCost> {
  const evaluated: { run: EvalRun; costs: LayerCostJs[]; seconds: number }[] = [];
  const cache = o.cache ?? new EvalCache();
  for (const seed of o.seeds ?? [undefined]) {
    const t0 = performance.now();
    const config = seed === undefined ? o.config : { ...o.config, seed };
    const run = await evaluate({ model: o.model, data: o.data, dataset: o.dataset, evalSet: o.evalSet, limit: o.images, threads: o.threads, config, signal: o.signal, cache });
    if (!run.simulator) throw new ConfigError(`configuration ${name}: needs crossbar layers to cost (converter ${run.report.converter})`);
    evaluated.push({ run, costs: run.simulator.cost(technology.tech), seconds: (performance.now() - t0) / 1000 });
  }
  const components = native().costComponents();
  const { report } = evaluated[0].run;
  const layers = new Map(report.ops!.layers.map((l) => [l.node, l]));
  const meanOf = (xs: number[][]) => xs[0].map((_, k) => xs.reduce((s, x) => s + x[k], 0) / xs.length);
  const mean = evaluated[0].costs.map((_, node) => {
    const at = evaluated.map((e) => e.costs[node]);
    return { energy: meanOf(at.map((c) => c.energy)), latency: meanOf(at.map((c) => c.latency)), area: meanOf(at.map((c) => c.area)) };
  });
  const runs = evaluated.map(({ run, costs, seconds }): SeedRun => {
    const t = totals(costs, components, layers);
    return {
      seed: run.report.seed,
      correct: run.report.correct,
      logitsDigest: run.report.logitsDigest,
      seconds,
      cost: {
        tech: technology.name,
        energyPJ: t.energyPJ,
        latencyNs: t.latencyNs,
        areaMm2: t.areaMm2,
        edp: t.edp,
        perComponent: t.perComponent,
        scope: t.scope,
        perLayer: t.perLayer.map(({ name, crossbar, energyPJ, latencyNs, areaMm2 }) => ({ name, crossbar, energyPJ, latencyNs, areaMm2 })),
      },
    };
  });
  const top1PerSeed = evaluated.map(({ run }) => ({ seed: run.report.seed, top1: run.report.top1 }));
  const acc = stats(top1PerSeed.map((s) => s.top1));
  return {
    name,
    model: report.model,
    converter: report.converter,
    samples: report.config.layers.flatMap((l) => (l.samples === undefined ? [] : [l.samples])),
    seeds: top1PerSeed.map((s) => s.seed),
    top1: acc.mean,
    top1Mean: acc.mean,
    top1Sd: acc.std,
    top1PerSeed,
    images: report.images,
    ...totals(mean, components, layers),
    config: o.config,
    runs,
  };
}

export async function compareCosts(o: CompareOptions): Promise<CostReport> {
  if (o.compare.length === 0) throw new ConfigError('--compare: give at least one configuration');
  const images = int('--images', o.images ?? 500, 1, 10_000);
  const adcBits = int('--adc-bits', o.adcBits ?? 4, 1, 24);
  const seeds = o.seeds?.map((s) => int('--seeds', s, 0, Number.MAX_SAFE_INTEGER));
  if (seeds?.length === 0) throw new ConfigError('--seeds: give at least one seed');
  seeds?.forEach((s, i) => {
    if (seeds.indexOf(s) !== i) throw new ConfigError(`--seeds: ${s} is given twice`);
  });
  const technology = loadTech(o.tech);
  // Every entry is checked, and its model found, before anything runs.
  const parsed = o.compare.map((entry) => {
    const { config, model = o.model } = splitEntry(entry);
    const name = entryName(config);
    const converter = entryConfig(config, adcBits);
    if (!model) throw new ConfigError(`--compare ${name}: no model; give --model PATH or ${config}=MODEL.onnx`);
    if (!existsSync(model)) throw new ConfigError(`--compare ${name}: model ${model} does not exist`);
    return { name, model, converter };
  });
  // Names key the ratios and the result lines: the same configuration on two models is told apart by its model.
  const repeated = (name: string) => parsed.filter((e) => e.name === name).length > 1;
  const entries = parsed.map((e) => (repeated(e.name) ? { ...e, name: `${e.name}=${basename(e.model)}` } : e));
  entries.forEach((e, i) => {
    if (entries.findIndex((f) => f.name === e.name) !== i) throw new ConfigError(`--compare: ${e.name} is given twice`);
  });
  // Each model imported, and the images read, once for all configurations and seeds.
  const cache = o.cache ?? new EvalCache();
  const configs: ConfigCost[] = [];
  for (const e of entries) {
    const config = { ...o.config, ...e.converter };
    configs.push(await costConfig(e.name, { model: e.model, data: o.data, dataset: o.dataset, images, threads: o.threads, config, seeds, signal: o.signal, cache }, technology));
  }
  const sparse = configs.find((c) => c.name === 'sparse-adc');
  return { tech: technology.name, images, configs, ratios: ratiosTo(configs[0], configs), ...(sparse ? { ratiosToSparse: ratiosTo(sparse, configs) } : {}) };
}

/** The result line (the format `stoxnet sweep` writes and `stoxnet report` reads) of a configuration's k-th seed. */
export function resultLine(c: ConfigCost, k: number, point: Pick<SweepResult, 'index' | 'key' | 'settings'>): SweepResult {
  const run = c.runs[k];
  return {
    ...point,
    config: { ...c.config, seed: run.seed },
    model: c.model,
    images: c.images,
    correct: run.correct,
    top1: run.correct / c.images,
    seed: run.seed,
    converter: c.converter,
    samples: c.samples,
    meanSamples: c.samples.length ? c.samples.reduce((a, b) => a + b, 0) / c.samples.length : null,
    cost: run.cost,
    logitsDigest: run.logitsDigest,
    seconds: run.seconds,
  };
}

/** A comparison as result lines for `stoxnet report`: one per configuration and seed, settings {configuration, model, seed}. */
export function costResults(report: CostReport): SweepResult[] {
  const lines = report.configs.flatMap((c) => c.runs.map((run, k) => ({ c, k, settings: { configuration: c.name, model: c.model, seed: run.seed } })));
  return lines.map(({ c, k, settings }, index) => resultLine(c, k, { index, key: canonical(settings), settings }));
}
