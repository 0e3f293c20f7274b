// `stoxnet schedule search`: chooses the MTJ samples T of every crossbar
// layer to maximise accuracy under a cost budget, or to minimise a cost
// under an accuracy floor. Accuracy is measured on the validation split
// (the last 5,000 training images, held out of the models trained here),
// never on the test set; the test file is not even opened.
//
// The search is a measured greedy descent (in the spirit of HAWQ-style
// sensitivity-guided bit allocation):
// 1. every layer at the largest T, and every uniform T, are evaluated;
// 2. sensitivity: each layer alone is lowered to each smaller T, the others
//    kept at the largest, and the accuracy change measured;
// 3. from all-largest, the next step lowers one layer by one choice, the one
//    whose predicted accuracy loss (from step 2, additive) per unit of cost
//    saved (from the per-layer costs of step 1, exact for energy and
//    latency, which the cost model adds up layer by layer) is smallest;
//    every step's schedule is evaluated and costed for real;
// 4. the answer is the best measured schedule that meets the constraint.
// Every draw uses the one seed (common random numbers), so a difference
// between two schedules is not sampling noise between two seeds, and the
// same seed gives the same schedule.
import { EvalCache } from '../cache.js';
import { ConfigError, int, ints, num, oneOf } from '../config.js';
import { costConfig, resultLine, type ConfigCost } from '../cost/compare.js';
import { loadTech } from '../cost/tech.js';
import { evaluate } from '../eval.js';
import { VALIDATION_IMAGES } from '../data/dataset.js';
import type { StoxConfig } from '../stox.js';
import type { SweepResult } from '../sweep/result.js';
import { canonical } from '../sweep/grid.js';

export const METRICS = ['samples', 'energy', 'latency', 'edp'] as const;
export type Metric = (typeof METRICS)[number];

export interface ScheduleSearchOptions {
  model: string;
  data?: string;
  /** Which data set (default: the model's own, else CIFAR-10). */
  dataset?: string;
  /** The T a layer may take (default 1, 2, 4, 8). */
  choices?: number[];
  /**
   * What the constraint or objective measures: `samples` (mean MTJ samples
   * per conversion, weighted by each layer's conversions), `energy` (pJ per
   * image), `latency` (ns per image) or `edp` (pJ·ns).
   */
  metric?: Metric;
  /**
   * Maximise accuracy with the metric at most this: a number, or
   * `uniform:T`, the metric of every layer at T as this search measures it …
   */
  budget?: number | `uniform:${number}`;
  /** … or minimise the metric with validation top-1 (a fraction) at least this. */
  floor?: number;
  /** A second constraint, whatever the metric: mean samples per conversion at most this. */
  maxSamples?: number;
  /** Validation images per evaluation (default all 5,000). */
  images?: number;
  /** Seed of every draw (default the model's). */
  seed?: number;
  /** Settings over the model's embedded ones (converter mtj is implied). */
  config?: Partial<StoxConfig>;
  tech?: string;
  threads?: number;
  signal?: AbortSignal;
  /** Called after each evaluated schedule. */
  onPoint?: (p: SearchPoint, done: number, planned: number) => void;
}

export interface SearchPoint {
  /** uniform, sensitivity or greedy */
  phase: 'uniform' | 'sensitivity' | 'greedy';
  samples: number[];
  /** Validation top-1 (fraction). */
  top1: number;
  /** Mean samples per conversion (weighted by conversions). */
  meanSamples: number;
  energyPJ: number;
  latencyNs: number;
  edp: number;
  cost: ConfigCost;
}

export interface ScheduleFile {
  /** T per crossbar layer, in network order: what `--schedule FILE.json` reads. */
  samplesPerLayer: number[];
  layers: string[];
  model: string;
  metric: Metric;
  budget?: number;
  /** The budget as given when it was `uniform:T`. */
  budgetOf?: string;
  floor?: number;
  maxSamples?: number;
  choices: number[];
  seed: number;
  tech: string;
  /** What the chosen schedule measured on the validation split. */
  validation: { images: number; top1: number; meanSamples: number; energyPJ: number; latencyNs: number; edp: number };
  /** Schedules evaluated. */
  evaluated: number;
}

export interface ScheduleSearchResult {
  schedule: ScheduleFile;
  points: SearchPoint[];
  /** One result line per evaluated schedule, for `stoxnet report`. */
  lines: SweepResult[];
}

function metricOf(m: Metric, p: Pick<SearchPoint, 'meanSamples' | 'energyPJ' | 'latencyNs' | 'edp'>): number {
  return m === 'samples' ? p.meanSamples : m === 'energy' ? p.energyPJ : m === 'latency' ? p.latencyNs : p.edp;
}

export async function searchSchedule(o: ScheduleSearchOptions): Promise<ScheduleSearchResult> {
  const metric = oneOf('--metric', o.metric ?? 'edp', METRICS);
  if ((o.budget === undefined) === (o.floor === undefined)) throw new ConfigError('schedule search: give exactly one of --budget X (maximise accuracy) or --floor A (minimise the metric)');
  const budgetOf = typeof o.budget === 'string' && o.budget.startsWith('uniform:') ? o.budget : undefined;
  let budget = o.budget === undefined || budgetOf ? undefined : num('--budget', o.budget, 0, Number.MAX_VALUE);
  const floor = o.floor === undefined ? undefined : num('--floor', o.floor, 0, 1);
  const maxSamples = o.maxSamples === undefined ? undefined : num('--max-samples', o.maxSamples, 1, 1 << 20);
  const choices = [...new Set(ints('--choices', o.choices ?? [1, 2, 4, 8], 1, 1 << 20))].sort((a, b) => a - b);
  const uniformBudget = budgetOf === undefined ? undefined : int('--budget uniform:T', budgetOf.slice('uniform:'.length), 1, 1 << 20);
  if (uniformBudget !== undefined && !choices.includes(uniformBudget)) throw new ConfigError(`--budget ${budgetOf}: T = ${uniformBudget} is not among --choices ${choices.join(',')}`);
  const images = int('--images', o.images ?? VALIDATION_IMAGES, 1, VALIDATION_IMAGES);
  const technology = loadTech(o.tech);
  const base: Partial<StoxConfig> = { ...o.config, converter: 'mtj', ...(o.seed === undefined ? {} : { seed: int('--seed', o.seed, 0, Number.MAX_SAFE_INTEGER) }) };
  delete base.samples;
  delete base.schedule;
  delete base.samplesPerLayer;

  // The model imported, and the validation split read, once for every schedule.
  const cache = new EvalCache();
  // The crossbar layers and their conversions per image (they do not depend on T or the data).
  const probe = await evaluate({ model: o.model, data: o.data, dataset: o.dataset, evalSet: 'validation', limit: 1, threads: o.threads, config: base, signal: o.signal, cache });
  const crossbar = probe.report.ops!.layers.filter((l) => l.crossbar);
  const layers = crossbar.map((l) => l.name);
  const conversions = crossbar.map((l) => l.conversions);
  const seed = probe.report.seed;
  const n = layers.length;
  const meanSamples = (t: number[]) => t.reduce((s, v, l) => s + v * conversions[l], 0) / conversions.reduce((a, b) => a + b, 0);

  const top = choices[choices.length - 1];
  const planned = choices.length + n * (choices.length - 1) * 2;
  const points: SearchPoint[] = [];
  const seen = new Map<string, SearchPoint>();
  const measure = async (phase: SearchPoint['phase'], t: number[]): Promise<SearchPoint> => {
    const known = seen.get(t.join(','));
    if (known) return known;
    const config = { ...base, samplesPerLayer: t };
    const cost = await costConfig(`T ${t.join(',')}`, { model: o.model, data: o.data, dataset: o.dataset, images, threads: o.threads, config, evalSet: 'validation', signal: o.signal, cache }, technology);
    const p: SearchPoint = { phase, samples: t, top1: cost.top1, meanSamples: meanSamples(t), energyPJ: cost.energyPJ, latencyNs: cost.latencyNs, edp: cost.edp, cost };
    seen.set(t.join(','), p);
    points.push(p);
    o.onPoint?.(p, points.length, planned);
    return p;
  };

  // 1. Uniform T: the reference points and the per-layer cost tables.
  const uniform = new Map<number, SearchPoint>();
  for (const c of [...choices].reverse()) uniform.set(c, await measure('uniform', new Array<number>(n).fill(c)));
  if (uniformBudget !== undefined) budget = metricOf(metric, uniform.get(uniformBudget)!);
  const layerCost = (c: number, l: number) => uniform.get(c)!.cost.perLayer.find((r) => r.name === layers[l])!;
  const fixed = (() => {
    const all = uniform.get(top)!.cost;
    const crossbarNames = new Set(layers);
    const rest = all.perLayer.filter((r) => !crossbarNames.has(r.name));
    // Whatever the per-layer rows leave out (buffers, other nodes) stays constant across schedules.
    const listed = all.perLayer.reduce((s, r) => ({ e: s.e + r.energyPJ, l: s.l + r.latencyNs }), { e: 0, l: 0 });
    return { energy: rest.reduce((s, r) => s + r.energyPJ, 0) + all.energyPJ - listed.e, latency: rest.reduce((s, r) => s + r.latencyNs, 0) + all.latencyNs - listed.l };
  })();
  const predict = (t: number[]) => {
    let energyPJ = fixed.energy;
    let latencyNs = fixed.latency;
    t.forEach((c, l) => {
      const r = layerCost(c, l);
      energyPJ += r.energyPJ;
      latencyNs += r.latencyNs;
    });
    return metricOf(metric, { meanSamples: meanSamples(t), energyPJ, latencyNs, edp: energyPJ * latencyNs });
  };

  // 2. Sensitivity of each layer alone.
  const start = new Array<number>(n).fill(top);
  const startTop1 = uniform.get(top)!.top1;
  const drop: number[][] = [];
  for (let l = 0; l < n; l++) {
    drop.push([]);
    for (const c of choices) {
      if (c === top) {
        drop[l].push(0);
        continue;
      }
      const t = [...start];
      t[l] = c;
      drop[l].push(startTop1 - (await measure('sensitivity', t)).top1);
    }
  }

  // 3. Greedy descent, every step measured.
  const at = start.map(() => choices.length - 1);
  let current = [...start];
  for (;;) {
    let best: { l: number; key: [number, number] } | undefined;
    for (let l = 0; l < n; l++) {
      if (at[l] === 0) continue;
      const next = [...current];
      next[l] = choices[at[l] - 1];
      const saved = predict(current) - predict(next);
      const loss = Math.max(0, drop[l][at[l] - 1] - drop[l][at[l]]);
      // Smallest loss per saving; a move that saves nothing ranks last.
      const key: [number, number] = saved > 0 ? [loss / saved, -saved] : [Infinity, 0];
      if (!best || key[0] < best.key[0] || (key[0] === best.key[0] && key[1] < best.key[1])) best = { l, key };
    }
    if (!best) break;
    at[best.l]--;
    current = [...current];
    current[best.l] = choices[at[best.l]];
    await measure('greedy', current);
  }

  // 4. The best measured schedule that meets the constraint (ties: the cheaper, then the first measured).
  const feasible = points.filter((p) => (budget !== undefined ? metricOf(metric, p) <= budget : p.top1 >= floor!) && (maxSamples === undefined || p.meanSamples <= maxSamples));
  if (feasible.length === 0) {
    if (maxSamples !== undefined && points.every((p) => p.meanSamples > maxSamples)) throw new ConfigError(`schedule search: no schedule over T ∈ {${choices.join(', ')}} has at most ${maxSamples} samples per conversion`);
    const closest = budget !== undefined ? Math.min(...points.map((p) => metricOf(metric, p))) : Math.max(...points.map((p) => p.top1));
    throw new ConfigError(budget !== undefined ? `schedule search: no schedule over T ∈ {${choices.join(', ')}} has ${metric} ≤ ${budget} (the lowest measured is ${closest})` : `schedule search: no schedule over T ∈ {${choices.join(', ')}} reaches validation top-1 ${floor} (the best measured is ${closest})`);
  }
  const better = (a: SearchPoint, b: SearchPoint) =>
    budget !== undefined ? a.top1 > b.top1 || (a.top1 === b.top1 && metricOf(metric, a) < metricOf(metric, b)) : metricOf(metric, a) < metricOf(metric, b) || (metricOf(metric, a) === metricOf(metric, b) && a.top1 > b.top1);
  const chosen = feasible.reduce((b, p) => (better(p, b) ? p : b));
  const lines = points.map((p, index) => {
    const settings = { search: p.phase, samplesPerLayer: p.samples, meanSamplesPerConversion: p.meanSamples };
    return resultLine(p.cost, 0, { index, key: canonical(settings), settings });
  });
  return {
    schedule: {
      samplesPerLayer: chosen.samples,
      layers,
      model: probe.report.model,
      metric,
      ...(budget === undefined ? { floor } : { budget }),
      ...(budgetOf === undefined ? {} : { budgetOf }),
      ...(maxSamples === undefined ? {} : { maxSamples }),
      choices,
      seed,
      tech: technology.name,
      validation: { images, top1: chosen.top1, meanSamples: chosen.meanSamples, energyPJ: chosen.energyPJ, latencyNs: chosen.latencyNs, edp: chosen.edp },
      evaluated: points.length,
    },
    points,
    lines,
  };
}
