// `stoxnet demo` (and `npm start`): from a fresh install to a result. Fetches
// CIFAR-10 when it is missing, evaluates the project's own PS-QAT StoX model,
// and costs each converter on the model trained for it (the stoxnet-fair
// preset), leaving out the rows whose model is not trained yet.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EvalCache } from './cache.js';
import { int } from './config.js';
import { compareCosts, entryName, PRESETS, splitEntry, type CostReport } from './cost/compare.js';
import { CIFAR10_FILES } from './data/cifar10.js';
import { downloadCifar10 } from './data/download.js';
import { dataDirOf } from './data/location.js';
import { DATASETS } from './data/dataset.js';
import { evaluate, type EvalReport } from './eval.js';
import { packageRoot } from './paths.js';

export const DEMO_MODEL = 'resnet20-cifar10-stox-4w4a.onnx';

export interface DemoOptions {
  /** Model of the accuracy; default: models/resnet20-cifar10-stox-4w4a.onnx of this package. The cost rows use their own models. */
  model?: string;
  /** CIFAR-10 folder; default STOXNET_DATA, else the cache (downloaded when missing). */
  data?: string;
  /** Test images for accuracy (default all 10,000). */
  images?: number;
  /** Test images per configuration of the cost comparison (default 200). */
  costImages?: number;
  threads?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface DemoResult {
  accuracy: EvalReport;
  cost: CostReport;
  /** stoxnet-fair rows not costed because their model file does not exist (yet). */
  skipped: { name: string; model: string }[];
}

export async function demo(o: DemoOptions = {}): Promise<DemoResult> {
  const model = o.model ?? join(packageRoot(), 'models', DEMO_MODEL);
  if (!existsSync(model)) throw new Error(`demo: model ${model} not found (the package ships it in models/)`);
  let data = dataDirOf(DATASETS.cifar10, o.data).dir;
  if (!CIFAR10_FILES.every((f) => existsSync(join(data, f)))) data = await downloadCifar10({ dest: data, progress: true });
  const images = o.images === undefined ? undefined : int('--images', o.images, 1, 10_000);
  const costImages = int('--cost-images', o.costImages ?? 200, 1, 10_000);
  // One import per model and one read of the test set for the accuracy run and every cost row (its model is the stox:4 row's).
  const cache = new EvalCache();
  // The model carries its StoX settings and learned parameters: no flags needed.
  const { report: accuracy } = await evaluate({ model, data, limit: images, threads: o.threads, onProgress: o.onProgress, signal: o.signal, cache });
  // The models of the other converters are trained one after another; the demo costs those that exist.
  const rows = PRESETS['stoxnet-fair'].compare.map((entry) => ({ entry, ...splitEntry(entry) }));
  const present = rows.filter((r) => existsSync(r.model!));
  const skipped = rows.filter((r) => !present.includes(r)).map((r) => ({ name: entryName(r.config), model: r.model! }));
  const cost = await compareCosts({ data, images: costImages, threads: o.threads, compare: present.map((r) => r.entry), signal: o.signal, cache });
  return { accuracy, cost, skipped };
}
