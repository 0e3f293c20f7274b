import { basename } from 'node:path';
import type { Backend, OpCounts } from './backend.js';
import { ConfigError, int, oneOf } from './config.js';
import { EvalCache } from './cache.js';
import { openDataset, type Dataset } from './data/dataset.js';
import { resolveDataDir } from './data/location.js';
import { logitsDigest } from './digest.js';
import { nativeUnavailable, simulatorBackend } from './native.js';
import type { Network } from './network.js';
import { ortBackend } from './ort.js';
import type { NativeSimulator } from './native-binding.js';
import { createSimulator, type LayerReport } from './simulator.js';
import { overEmbedded, resolveConfig, type StoxConfig } from './stox.js';

export const BACKENDS = ['native', 'ort', 'js'] as const;
/** Which images an evaluation classifies: the test set, or the validation split held out of training. */
export const EVAL_SETS = ['test', 'validation'] as const;
export type EvalSet = (typeof EVAL_SETS)[number];

export interface EvalOptions {
  /** Path of an ONNX model. */
  model: string;
  /** The data set's folder; default: its environment variable (STOXNET_DATA for CIFAR-10), else the cache. */
  data?: string;
  /** Which data set: a name (data/dataset.ts) or the path of a user's .npz or image folder (data/user.ts); default: the one the model was trained on (its metadata), else CIFAR-10. */
  dataset?: string;
  backend?: (typeof BACKENDS)[number];
  /** Simulator settings (see StoxConfig); unset keys take the model's embedded settings, else the defaults. */
  config?: Partial<StoxConfig>;
  /** Calibrate afresh instead of using a trained model's learned clips and normalisation. */
  ignoreLearned?: boolean;
  /**
   * `test` (default): the test images. `validation`: the last 5,000
   * training images (data/dataset.ts `VALIDATION_IMAGES`), for choices that
   * must not look at the test set; the test files are then never opened.
   */
  evalSet?: EvalSet;
  /** Evaluate the first `limit` images of the set (default all). */
  limit?: number;
  /** Images per engine call (default 100). Does not change results. */
  batch?: number;
  /** Worker threads, 0 = one per core (default). Does not change results. */
  threads?: number;
  onProgress?: (done: number, total: number) => void;
  /** Rejects with the signal's reason at the next batch boundary (a native batch of 100 images takes well under a second). */
  signal?: AbortSignal;
  /** Imported models, native networks and read images shared with other evaluations (default: a fresh one, for this evaluation alone). */
  cache?: EvalCache;
}

/** The operation counts the report totals over all nodes (crates/core/src/counts.rs). */
const COUNTS = ['subarrayReads', 'cellReads', 'dacDrives', 'activeRows', 'driveSq', 'cellLoad', 'pulseRows', 'pulseSq', 'pulseLoad', 'conversions', 'mtjSamples', 'shiftAdds', 'digitalMacs', 'digitalOps'] as const;

export type OpsTotals = Record<(typeof COUNTS)[number], number>;

/** The JSON contract of `stoxnet eval --json`. */
export interface EvalReport {
  model: string;
  /** the data set classified (data/dataset.ts) */
  dataset: string;
  backend: string;
  converter: string;
  /** which images: the test set or the validation split */
  evalSet: EvalSet;
  images: number;
  correct: number;
  /** fraction in [0, 1] */
  top1: number;
  /** fraction of images whose label is among the 5 largest logits (ties: the lower class first); null below 5 classes */
  top5: number | null;
  /** correct predictions per true class */
  perClass: number[];
  /** images per true class */
  perClassTotal: number[];
  /** confusion[true][predicted]: image counts (top-1 predictions) */
  confusion: number[][];
  /** time spent in the engine */
  seconds: number;
  imagesPerSecond: number;
  threads: number;
  batch: number;
  seed: number;
  /** the resolved configuration, with what calibration decided per crossbar layer */
  config: StoxConfig & { layers: LayerReport[] };
  /** operation counts summed over the evaluated images (per Conv/Linear layer, and totals) */
  ops: { layers: (OpCounts & { node: number; name: string; op: string; crossbar: boolean })[]; totals: OpsTotals } | null;
  /** sha256 of all logits as little-endian float32, in image order */
  logitsDigest: string;
}

export interface EvalRun {
  report: EvalReport;
  logits: Float32Array;
  /** The programmed crossbar simulation (native engine, crossbar converters). */
  simulator?: NativeSimulator;
}

/** Index of the largest logit (the first one on ties, as argmax conventions). */
export function argmax(row: Float32Array): number {
  let best = 0;
  for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
  return best;
}

function opsReport(net: Network, ops: OpCounts[] | undefined, crossbar: Set<number>): EvalReport['ops'] {
  if (!ops) return null;
  const layers = net.nodes.flatMap((n, i) => (n.op === 'Conv' || n.op === 'Linear' ? [{ node: i, name: n.name, op: n.op, crossbar: crossbar.has(i), ...ops[i] }] : []));
  const totals = Object.fromEntries(COUNTS.map((k) => [k, ops.reduce((s, o) => s + o[k], 0)])) as OpsTotals;
  return { layers, totals };
}

/** Whether `label` is among the `k` largest of `row` (ties go to the lower index, as `argmax`). */
export function inTopK(row: Float32Array, label: number, k: number): boolean {
  let above = 0;
  for (let j = 0; j < row.length; j++) if (row[j] > row[label] || (row[j] === row[label] && j < label)) above++;
  return above < k;
}

/**
 * The data set an evaluation of `net` reads: the one asked for, else the
 * model's own, else CIFAR-10, normalised as the model was trained (its
 * metadata) where it says; its image size must be the model's.
 */
export async function evalDataset(net: Network, name: string | undefined, model: string, open: typeof openDataset = openDataset): Promise<Dataset> {
  if (name === undefined && net.dataset?.startsWith('user:')) throw new ConfigError(`${basename(model)} was trained on a user's data set (${net.dataset.slice(5)}): give its path with --dataset`);
  const ds = await open(name ?? net.dataset ?? 'cifar10', net.normalization);
  const [c, h, w] = ds.dims;
  if (net.input[0] !== c || net.input[1] !== h || net.input[2] !== w) {
    throw new ConfigError(`${basename(model)}: the model takes ${net.input.join('×')} images (channels×height×width); ${ds.title} has ${ds.dims.join('×')} (--dataset)`);
  }
  return ds;
}

/** Classifies test (or validation) images of a data set with the chosen backend and simulator settings. */
export async function evaluate(options: EvalOptions): Promise<EvalRun> {
  options.signal?.throwIfAborted();
  let backendName = oneOf('backend', options.backend ?? 'native', BACKENDS);
  const missing = backendName === 'native' ? nativeUnavailable() : undefined;
  if (missing) {
    // A package without its addon still answers, slowly, rather than failing.
    process.emitWarning(`${missing}; falling back to the pure-JS reference engine (same results, several hundred times slower)`, { code: 'STOXNET_NO_NATIVE' });
    backendName = 'js';
  }
  const batch = int('batch', options.batch ?? 100, 1, 10_000);
  const threads = int('threads', options.threads ?? 0, 0, 1024);
  const limit = options.limit === undefined ? undefined : int('limit', options.limit, 1);
  const evalSet = oneOf('evalSet', options.evalSet ?? 'test', EVAL_SETS);
  const cache = options.cache ?? new EvalCache();
  const net = await cache.network(options.model);
  // A model trained with PS-QAT carries its settings; explicit ones override them.
  const config = resolveConfig(overEmbedded(net.stox?.config ?? {}, options.config ?? {}));
  if (backendName === 'ort' && config.converter !== 'fp') {
    throw new ConfigError(`backend ort runs the model in FP32 only; --converter ${config.converter} needs --backend native or js`);
  }
  const ds = await evalDataset(net, options.dataset, options.model, (n, norm) => cache.dataset(n, norm));
  const dataDir = resolveDataDir(options.data, evalSet === 'validation', ds);
  let backend: Backend;
  let layers: LayerReport[] = [];
  let simulator: NativeSimulator | undefined;
  if (backendName === 'ort') backend = await ortBackend(options.model, threads, net.input);
  else if (config.converter === 'fp' && backendName === 'native') backend = simulatorBackend(cache.engine(net).digital(), threads);
  else ({ backend, layers, simulator } = await createSimulator(net, config, { dataDir, threads, engine: backendName, learned: options.ignoreLearned ? undefined : net.stox?.layers, signal: options.signal, dataset: ds, cache }));
  options.signal?.throwIfAborted();

  const test = await cache.images(ds, dataDir, evalSet, limit);
  const total = test.count;
  const inputs = await cache.inputs(ds, dataDir, evalSet, total);
  const imageLen = net.input[0] * net.input[1] * net.input[2];
  const classes = backend.classes;
  if (classes !== ds.classes.length) throw new ConfigError(`${basename(options.model)}: the model gives ${classes} values per image; ${ds.title} has ${ds.classes.length} classes`);
  const logits = new Float32Array(total * classes);
  const perClass = new Array<number>(classes).fill(0);
  const perClassTotal = new Array<number>(classes).fill(0);
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  let correct = 0;
  let correct5 = 0;
  let seconds = 0;
  for (let start = 0; start < total; start += batch) {
    options.signal?.throwIfAborted();
    const n = Math.min(batch, total - start);
    const images = inputs.subarray(start * imageLen, (start + n) * imageLen);
    const t0 = process.hrtime.bigint();
    const out = await backend.run(images, start);
    seconds += Number(process.hrtime.bigint() - t0) / 1e9;
    logits.set(out.logits, start * classes);
    for (let i = 0; i < n; i++) {
      const label = test.labels[start + i];
      const row = out.logits.subarray(i * classes, (i + 1) * classes);
      const predicted = argmax(row);
      perClassTotal[label]++;
      confusion[label][predicted]++;
      if (predicted === label) {
        correct++;
        perClass[label]++;
      }
      if (classes >= 5 && inTopK(row, label, 5)) correct5++;
    }
    options.onProgress?.(start + n, total);
  }
  const ops = backend.counts?.();
  return {
    report: {
      model: basename(options.model),
      dataset: ds.name,
      backend: backend.name,
      converter: config.converter,
      evalSet,
      images: total,
      correct,
      top1: correct / total,
      top5: classes >= 5 ? correct5 / total : null,
      perClass,
      perClassTotal,
      confusion,
      seconds,
      imagesPerSecond: total / seconds,
      threads,
      batch,
      seed: config.seed,
      config: { ...config, layers },
      ops: opsReport(net, ops, new Set(layers.map((l) => l.node))),
      logitsDigest: logitsDigest(logits),
    },
    logits,
    simulator,
  };
}
