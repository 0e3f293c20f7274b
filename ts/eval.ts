import { basename } from 'node:path';
import type { Backend } from './backend.js';
import { int, oneOf } from './config.js';
import { normalize, readCifar10 } from './data/cifar10.js';
import { resolveDataDir } from './data/location.js';
import { logitsDigest } from './digest.js';
import { nativeBackend } from './native.js';
import { importOnnx } from './onnx/import.js';
import { ortBackend } from './ort.js';

export const BACKENDS = ['native', 'ort'] as const;
export const CONVERTERS = ['fp'] as const;

export interface EvalOptions {
  /** Path of an ONNX model. */
  model: string;
  /** CIFAR-10 binary folder; default: STOXNET_DATA, else the cache. */
  data?: string;
  backend?: (typeof BACKENDS)[number];
  converter?: (typeof CONVERTERS)[number];
  /** Evaluate the first `limit` test images (default all 10,000). */
  limit?: number;
  /** Images per engine call (default 100). Does not change results. */
  batch?: number;
  /** Worker threads, 0 = one per core (default). Does not change results. */
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

/** The JSON contract of `stoxnet eval --json`. */
export interface EvalReport {
  model: string;
  backend: string;
  converter: string;
  images: number;
  correct: number;
  /** fraction in [0, 1] */
  top1: number;
  /** correct predictions per true class */
  perClass: number[];
  /** images per true class */
  perClassTotal: number[];
  /** time spent in the engine */
  seconds: number;
  imagesPerSecond: number;
  threads: number;
  batch: number;
  /** sha256 of all logits as little-endian float32, in image order */
  logitsDigest: string;
}

export interface EvalRun {
  report: EvalReport;
  logits: Float32Array;
}

function validate(o: EvalOptions) {
  return {
    backend: oneOf('backend', o.backend ?? 'native', BACKENDS),
    converter: oneOf('converter', o.converter ?? 'fp', CONVERTERS),
    limit: o.limit === undefined ? undefined : int('limit', o.limit, 1),
    batch: int('batch', o.batch ?? 100, 1, 10_000),
    threads: int('threads', o.threads ?? 0, 0, 1024),
  };
}

/** Index of the largest logit (the first one on ties, as argmax conventions). */
export function argmax(row: Float32Array): number {
  let best = 0;
  for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
  return best;
}

/** Classifies CIFAR-10 test images with the chosen backend. */
export async function evaluate(options: EvalOptions): Promise<EvalRun> {
  const o = validate(options);
  const net = await importOnnx(options.model);
  const backend: Backend = o.backend === 'ort' ? await ortBackend(options.model, o.threads, net.input) : nativeBackend(net, o.threads);
  const test = await readCifar10(resolveDataDir(options.data), 'test');
  const total = Math.min(o.limit ?? test.count, test.count);
  const imageLen = net.input[0] * net.input[1] * net.input[2];
  const classes = backend.classes;
  const logits = new Float32Array(total * classes);
  const perClass = new Array<number>(classes).fill(0);
  const perClassTotal = new Array<number>(classes).fill(0);
  let correct = 0;
  let seconds = 0;
  for (let start = 0; start < total; start += o.batch) {
    const n = Math.min(o.batch, total - start);
    const images = normalize(test.images.subarray(start * imageLen, (start + n) * imageLen), n);
    const t0 = process.hrtime.bigint();
    const { logits: out } = await backend.run(images, start);
    seconds += Number(process.hrtime.bigint() - t0) / 1e9;
    logits.set(out, start * classes);
    for (let i = 0; i < n; i++) {
      const label = test.labels[start + i];
      perClassTotal[label]++;
      if (argmax(out.subarray(i * classes, (i + 1) * classes)) === label) {
        correct++;
        perClass[label]++;
      }
    }
    options.onProgress?.(start + n, total);
  }
  return {
    report: {
      model: basename(options.model),
      backend: backend.name,
      converter: o.converter,
      images: total,
      correct,
      top1: correct / total,
      perClass,
      perClassTotal,
      seconds,
      imagesPerSecond: total / seconds,
      threads: o.threads,
      batch: o.batch,
      logitsDigest: logitsDigest(logits),
    },
    logits,
  };
}
