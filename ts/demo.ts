// `stoxnet demo` (and `npm start`): from a fresh install to a result. Fetches
// CIFAR-10 when it is missing, evaluates the project's own PS-QAT StoX model
// and costs it next to the ADC baselines on the same mapping.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { int } from './config.js';
import { compareCosts, type CostReport } from './cost/compare.js';
import { CIFAR10_FILES } from './data/cifar10.js';
import { downloadCifar10 } from './data/download.js';
import { cifar10CacheDir } from './data/location.js';
import { evaluate, type EvalReport } from './eval.js';
import { packageRoot } from './paths.js';

export const DEMO_MODEL = 'resnet20-cifar10-stox-4w4a.onnx';

export interface DemoOptions {
  /** Default: models/resnet20-cifar10-stox-4w4a.onnx of this package. */
  model?: string;
  /** CIFAR-10 folder; default STOXNET_DATA, else the cache (downloaded when missing). */
  data?: string;
  /** Test images for accuracy (default all 10,000). */
  images?: number;
  /** Test images per configuration for the cost comparison (default 200). */
  costImages?: number;
  threads?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface DemoResult {
  accuracy: EvalReport;
  cost: CostReport;
}

export async function demo(o: DemoOptions = {}): Promise<DemoResult> {
  const model = o.model ?? join(packageRoot(), 'models', DEMO_MODEL);
  if (!existsSync(model)) throw new Error(`demo: model ${model} not found (the package ships it in models/)`);
  let data = o.data ?? process.env.STOXNET_DATA ?? cifar10CacheDir();
  if (!CIFAR10_FILES.every((f) => existsSync(join(data, f)))) data = await downloadCifar10({ dest: data, progress: true });
  const images = o.images === undefined ? undefined : int('--images', o.images, 1, 10_000);
  const costImages = int('--cost-images', o.costImages ?? 200, 1, 10_000);
  // The model carries its StoX settings and learned parameters: no flags needed.
  const { report: accuracy } = await evaluate({ model, data, limit: images, threads: o.threads, onProgress: o.onProgress, signal: o.signal });
  const cost = await compareCosts({ model, data, images: costImages, threads: o.threads, compare: ['fp-adc', 'low-bit-adc', 'sparse-adc', 'stox'], signal: o.signal });
  return { accuracy, cost };
}
