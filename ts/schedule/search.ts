// `stoxnet schedule search`: chooses the MTJ samples T of every crossbar
// layer (or, `--over streams`, of every input stream, the same in every
// layer) to maximise accuracy under a cost budget, or to minimise a cost
// under an accuracy floor. Below, a "layer" is the unit searched over: a
// crossbar layer or an input stream. Accuracy is measured on the validation split
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
//    saved is smallest; the cost of a step is predicted from the per-layer
//    costs of step 1 (the cost model adds layers up), or for streams from
//    each stream's cost change measured alone in step 2 (a stream's samples
//    cost what its conversions drive, not only how many: the top streams
//    carry fewer ones); every step's schedule is evaluated and costed for real;
// 4. finalists: the schedules that meet the constraint and whose accuracy is
//    within sampling noise of the best (two standard errors of a difference
//    of two accuracies on these images), at most --finalists of them, with
//    uniform T of a `uniform:T` budget among them, are evaluated again at
//    --confirm-seeds further seeds;
// 5. the answer is the finalist with the best mean over its seeds (floor:
//    the cheapest whose mean reaches the floor).
// Steps 1-3 draw with the one seed (common random numbers), so a difference
// between two schedules is not sampling noise between two seeds; step 4
// keeps the descent's winner from being the one whose single draw was lucky.
// The same seed gives the same schedule.
import { EvalCache } from '../cache.js';
import { ConfigError, int, ints, num, oneOf } from '../config.js';
import { costConfig, resultLine, type ConfigCost } from '../cost/compare.js';
import { loadTech } from '../cost/tech.js';
import { evaluate } from '../eval.js';
import { VALIDATION_IMAGES } from '../data/dataset.js';
import { stats } from '../report/groups.js';
import type { StoxConfig } from '../stox.js';
import type { SweepResult } from '../sweep/result.js';
import { canonical } from '../sweep/grid.js';

export const METRICS = ['samples', 'energy', 'latency', 'edp'] as const;
export type Metric = (typeof METRICS)[number];
/** What gets its own T: each crossbar layer, or each input stream (one T vector for every layer). */
export const UNITS = ['layers', 'streams'] as const;
export type Unit = (typeof UNITS)[number];

export interface ScheduleSearchOptions {
  model: string;
  data?: string;
  /** Which data set (default: the model's own, else CIFAR-10). */
  dataset?: string;
  /** Search T per crossbar layer (default) or per input stream. */
  over?: Unit;
  /** The T a layer (or stream) may take (default 1, 2, 4, 8). */
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
  /** Seed of every draw of the descent (default the model's). */
  seed?: number;
  /** Further seeds (seed + 1, …) at which the finalists are evaluated again (default 2; 0: choose on the one seed). */
  confirmSeeds?: number;
  /** At most this many finalists (default 6). */
  finalists?: number;
  /** Settings over the model's embedded ones (converter mtj is implied). */
  config?: Partial<StoxConfig>;
  tech?: string;
  threads?: number;
  signal?: AbortSignal;
  /** Called after each evaluated schedule. */
  onPoint?: (p: SearchPoint, done: number, planned: number) => void;
}

export interface SearchPoint {
  /** uniform, sensitivity or greedy (at the search's seed), or confirm (a finalist at the further seeds) */
  phase: 'uniform' | 'sensitivity' | 'greedy' | 'confirm';
  samples: number[];
  /** The sampling seeds of this evaluation. */
  seeds: number[];
  /** Validation top-1 (fraction), mean over the seeds. */
  top1: number;
  /** Mean samples per conversion (weighted by conversions). */
  meanSamples: number;
  energyPJ: number;
  latencyNs: number;
  edp: number;
  cost: ConfigCost;
}

/** The chosen T, as `--schedule FILE.json` reads it: per crossbar layer in network order, or per input stream. */
type Samples = { samplesPerLayer: number[] } | { samplesPerStream: number[] };

export type ScheduleFile = Samples & {
  over: Unit;
  /** The crossbar layers (with `over: streams`, each takes the T per stream). */
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
  /** What the chosen schedule measured on the validation split: top-1 as the mean over `seeds`. */
  validation: Measured & { images: number; energyPJ: number; latencyNs: number; edp: number; top1Sd: number; standardError: number };
  /**
   * The schedules judged at every seed, best first, the chosen one among them:
   * whether the choice stands out from sampling noise is visible here.
   */
  finalists: (Measured & Samples & { metric: number })[];
  /** Evaluations (schedule × seed), as many as result lines. */
  evaluated: number;
};

interface Measured {
  /** Mean validation top-1 over the seeds. */
  top1: number;
  seeds: number[];
  top1PerSeed: number[];
  meanSamples: number;
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
  const over = oneOf('--over', o.over ?? 'layers', UNITS);
  if ((o.budget === undefined) === (o.floor === undefined)) throw new ConfigError('schedule search: give exactly one of --budget X (maximise accuracy) or --floor A (minimise the metric)');
  const budgetOf = typeof o.budget === 'string' && o.budget.startsWith('uniform:') ? o.budget : undefined;
  let budget = o.budget === undefined || budgetOf ? undefined : num('--budget', o.budget, 0, Number.MAX_VALUE);
  const floor = o.floor === undefined ? undefined : num('--floor', o.floor, 0, 1);
  const maxSamples = o.maxSamples === undefined ? undefined : num('--max-samples', o.maxSamples, 1, 1 << 20);
  const choices = [...new Set(ints('--choices', o.choices ?? [1, 2, 4, 8], 1, 1 << 20))].sort((a, b) => a - b);
  const uniformBudget = budgetOf === undefined ? undefined : int('--budget uniform:T', budgetOf.slice('uniform:'.length), 1, 1 << 20);
  if (uniformBudget !== undefined && !choices.includes(uniformBudget)) throw new ConfigError(`--budget ${budgetOf}: T = ${uniformBudget} is not among --choices ${choices.join(',')}`);
  const images = int('--images', o.images ?? VALIDATION_IMAGES, 1, VALIDATION_IMAGES);
  const confirmSeeds = int('--confirm-seeds', o.confirmSeeds ?? 2, 0, 64);
  const finalistsMax = int('--finalists', o.finalists ?? 6, 1, 64);
  const technology = loadTech(o.tech);
  const base: Partial<StoxConfig> = { ...o.config, converter: 'mtj', ...(o.seed === undefined ? {} : { seed: int('--seed', o.seed, 0, Number.MAX_SAFE_INTEGER) }) };
  delete base.samples;
  delete base.schedule;
  delete base.samplesPerLayer;
  // The search sets T; a T per stream given with it would override (or be) what it searches.
  if (base.samplesPerStream !== undefined) throw new ConfigError('--samples-per-stream: the schedule search chooses T itself (per layer, or per input stream with --over streams); leave the flag out');

  // The model imported, and the validation split read, once for every schedule.
  const cache = new EvalCache();
  // The crossbar layers and their conversions per image (they do not depend on T or the data).
  const probe = await evaluate({ model: o.model, data: o.data, dataset: o.dataset, evalSet: 'validation', limit: 1, threads: o.threads, config: base, signal: o.signal, cache });
  const crossbar = probe.report.ops!.layers.filter((l) => l.crossbar);
  const layers = crossbar.map((l) => l.name);
  const conversions = crossbar.map((l) => l.conversions);
  const seed = probe.report.seed;
  const { inputBits, inputStreamBits } = probe.report.config;
  const n = over === 'layers' ? layers.length : Math.ceil(inputBits / (inputStreamBits ?? inputBits));
  // Every stream converts as often as the others; layers convert as often as their outputs and subarrays.
  const weight = over === 'layers' ? conversions : new Array<number>(n).fill(1);
  const meanSamples = (t: number[]) => t.reduce((s, v, l) => s + v * weight[l], 0) / weight.reduce((a, b) => a + b, 0);
  const key = over === 'layers' ? 'samplesPerLayer' : 'samplesPerStream';
  const samplesOf = (t: number[]) => ({ [key]: t }) as Samples;

  const top = choices[choices.length - 1];
  const planned = choices.length + n * (choices.length - 1) * 2 + (confirmSeeds > 0 ? finalistsMax : 0);
  const points: SearchPoint[] = [];
  const seen = new Map<string, SearchPoint>();
  const measure = async (phase: SearchPoint['phase'], t: number[]): Promise<SearchPoint> => {
    const known = seen.get(t.join(','));
    if (known) return known;
    const p = await evaluatePoint(phase, t, [seed]);
    seen.set(t.join(','), p);
    return p;
  };
  const evaluatePoint = async (phase: SearchPoint['phase'], t: number[], seeds: number[]): Promise<SearchPoint> => {
    const config = { ...base, ...samplesOf(t) };
    const cost = await costConfig(`T ${t.join(over === 'layers' ? ',' : '/')}`, { model: o.model, data: o.data, dataset: o.dataset, images, threads: o.threads, config, seeds, evalSet: 'validation', signal: o.signal, cache }, technology);
    const p: SearchPoint = { phase, samples: t, seeds, top1: cost.top1, meanSamples: meanSamples(t), energyPJ: cost.energyPJ, latencyNs: cost.latencyNs, edp: cost.edp, cost };
    points.push(p);
    o.onPoint?.(p, points.length, planned);
    return p;
  };

  // 1. Uniform T: the reference points and the per-layer cost tables.
  const uniform = new Map<number, SearchPoint>();
  for (const c of [...choices].reverse()) uniform.set(c, await measure('uniform', new Array<number>(n).fill(c)));
  if (uniformBudget !== undefined) budget = metricOf(metric, uniform.get(uniformBudget)!);
  const layerCost = (c: number, l: number) => uniform.get(c)!.cost.perLayer.find((r) => r.name === layers[l])!;
  // 2. Sensitivity of each layer alone.
  const start = new Array<number>(n).fill(top);
  const startPoint = uniform.get(top)!;
  const drop: number[][] = [];
  const alone: SearchPoint[][] = [];
  for (let l = 0; l < n; l++) {
    drop.push([]);
    alone.push([]);
    for (const c of choices) {
      const t = [...start];
      t[l] = c;
      const p = c === top ? startPoint : await measure('sensitivity', t);
      alone[l].push(p);
      drop[l].push(startPoint.top1 - p.top1);
    }
  }
  // A schedule's cost before it is measured: a base plus each unit's share.
  // Per layer: what the layers' rows leave out (buffers, other nodes:
  // constant across schedules), plus each layer's row of the uniform run at
  // its T. Per stream (the cost model has no per-stream rows): the start
  // point, plus each stream's change measured alone.
  type Share = { energyPJ: number; latencyNs: number };
  const add = (s: Share, r: Share): Share => ({ energyPJ: s.energyPJ + r.energyPJ, latencyNs: s.latencyNs + r.latencyNs });
  const [origin, share]: [Share, (c: number, u: number) => Share] = (() => {
    if (over === 'streams') {
      const change = (c: number, u: number) => {
        const p = alone[u][choices.indexOf(c)];
        return { energyPJ: p.energyPJ - startPoint.energyPJ, latencyNs: p.latencyNs - startPoint.latencyNs };
      };
      return [startPoint, change];
    }
    const all = startPoint.cost;
    const crossbarNames = new Set(layers);
    const listed = all.perLayer.filter((r) => crossbarNames.has(r.name)).reduce(add, { energyPJ: 0, latencyNs: 0 });
    return [{ energyPJ: all.energyPJ - listed.energyPJ, latencyNs: all.latencyNs - listed.latencyNs }, layerCost];
  })();
  const predict = (t: number[]) => {
    const { energyPJ, latencyNs } = t.reduce((s, c, u) => add(s, share(c, u)), origin);
    return metricOf(metric, { meanSamples: meanSamples(t), energyPJ, latencyNs, edp: energyPJ * latencyNs });
  };

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

  // 4. Finalists: feasible, and within noise of the best (budget) or of the floor (floor).
  const meets = (p: SearchPoint) => maxSamples === undefined || p.meanSamples <= maxSamples;
  if (!points.some(meets)) throw new ConfigError(`schedule search: no schedule over T ∈ {${choices.join(', ')}} has at most ${maxSamples} samples per conversion`);
  // Two standard errors of the difference of two independent accuracies on these images (common
  // random numbers make the real one smaller, so this errs towards more finalists).
  const noise = (top1: number) => (confirmSeeds === 0 ? 0 : 2 * Math.SQRT2 * Math.sqrt((top1 * (1 - top1)) / images));
  const cheaper = (a: SearchPoint, b: SearchPoint) => metricOf(metric, a) - metricOf(metric, b);
  // Best first; ties: the cheaper, then the first measured (the sort is stable).
  const rank = (ps: SearchPoint[], top1: (p: SearchPoint) => number) => [...ps].sort((a, b) => (budget !== undefined ? top1(b) - top1(a) || cheaper(a, b) : cheaper(a, b) || top1(b) - top1(a)));
  let finalists: SearchPoint[];
  if (budget !== undefined) {
    const feasible = points.filter((p) => meets(p) && metricOf(metric, p) <= budget!);
    if (feasible.length === 0) throw new ConfigError(`schedule search: no schedule over T ∈ {${choices.join(', ')}} has ${metric} ≤ ${budget} (the lowest measured is ${Math.min(...points.map((p) => metricOf(metric, p)))})`);
    const ranked = rank(feasible, (p) => p.top1);
    const lead = ranked[0].top1;
    finalists = ranked.filter((p) => p.top1 >= lead - noise(lead)).slice(0, finalistsMax);
    const reference = uniformBudget === undefined ? undefined : uniform.get(uniformBudget)!;
    if (confirmSeeds > 0 && reference && meets(reference) && !finalists.includes(reference)) finalists.push(reference);
  } else {
    const near = points.filter((p) => meets(p) && p.top1 >= floor! - noise(floor!));
    if (near.length === 0) throw new ConfigError(`schedule search: no schedule over T ∈ {${choices.join(', ')}} reaches validation top-1 ${floor} (the best measured is ${Math.max(...points.map((p) => p.top1))})`);
    finalists = rank(near, (p) => p.top1).slice(0, finalistsMax);
  }

  // 5. Each finalist at the further seeds; the choice on the mean over all its seeds.
  const extraSeeds = Array.from({ length: confirmSeeds }, (_, k) => seed + 1 + k);
  const judged = new Map<SearchPoint, Measured>();
  for (const p of finalists) {
    const again = confirmSeeds === 0 ? undefined : await evaluatePoint('confirm', p.samples, extraSeeds);
    const top1PerSeed = [p.top1, ...(again ? again.cost.top1PerSeed.map((r) => r.top1) : [])];
    judged.set(p, { top1: stats(top1PerSeed).mean, seeds: [seed, ...(again ? extraSeeds : [])], top1PerSeed, meanSamples: p.meanSamples });
  }
  const byMean = rank(finalists, (p) => judged.get(p)!.top1);
  const chosen = budget !== undefined ? byMean[0] : byMean.find((p) => judged.get(p)!.top1 >= floor!);
  if (!chosen) throw new ConfigError(`schedule search: no schedule over T ∈ {${choices.join(', ')}} reaches validation top-1 ${floor} on the mean of seeds ${[seed, ...extraSeeds].join(', ')} (the best of the ${finalists.length} finalists has ${Math.max(...finalists.map((p) => judged.get(p)!.top1))}; --finalists K judges more)`);
  const chosenMeasured = judged.get(chosen)!;
  const lines = points.flatMap((p) => p.cost.runs.map((_, k) => ({ p, k }))).map(({ p, k }, index) => {
    const settings = { search: p.phase, ...samplesOf(p.samples), meanSamplesPerConversion: p.meanSamples, seed: p.seeds[k] };
    return resultLine(p.cost, k, { index, key: canonical(settings), settings });
  });
  return {
    schedule: {
      ...samplesOf(chosen.samples),
      over,
      layers,
      model: probe.report.model,
      metric,
      ...(budget === undefined ? { floor } : { budget }),
      ...(budgetOf === undefined ? {} : { budgetOf }),
      ...(maxSamples === undefined ? {} : { maxSamples }),
      choices,
      seed,
      tech: technology.name,
      validation: {
        images,
        ...chosenMeasured,
        top1Sd: stats(chosenMeasured.top1PerSeed).std,
        // Of one seed's accuracy on these images (binomial): what a difference smaller than about 2·√2 times this cannot tell apart.
        standardError: Math.sqrt((chosenMeasured.top1 * (1 - chosenMeasured.top1)) / images),
        energyPJ: chosen.energyPJ,
        latencyNs: chosen.latencyNs,
        edp: chosen.edp,
      },
      finalists: byMean.map((p) => ({ ...samplesOf(p.samples), ...judged.get(p)!, metric: metricOf(metric, p) })),
      evaluated: lines.length,
    },
    points,
    lines,
  };
}
