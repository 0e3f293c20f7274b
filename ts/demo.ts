// `stoxnet demo` (and `npm start`): from a fresh install to a result. Fetches
// the data set when it is missing (checksummed), evaluates the project's own
// PS-QAT StoX model for it, and costs converters each on a named model: on
// CIFAR-10 every converter on the model trained for it (the stoxnet-fair
// preset), leaving out the rows whose model is not trained yet; on MNIST and
// Fashion-MNIST, where the project trained only FP32 and StoX LeNet-5s (on
// Fashion-MNIST at twice the width), the StoX model read with 1, 2 and 4
// samples (its sampling-length trade-off, not a comparison of converters).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EvalCache } from './cache.js';
import { int } from './config.js';
import { compareCosts, entryName, PRESETS, splitEntry, type CostReport } from './cost/compare.js';
import { downloadDataset } from './data/download.js';
import { dataDirOf } from './data/location.js';
import { dataset, type DatasetName } from './data/dataset.js';
import { evaluate, type EvalReport } from './eval.js';
import { packageRoot } from './paths.js';

export const DEMO_MODEL = 'resnet20-cifar10-stox-4w4a.onnx';

/** Each data set the project ships models for: the model of the accuracy (in models/) and the cost rows, each naming its model. */
export const DEMOS: Readonly<Partial<Record<DatasetName, { model: string; compare: readonly string[] }>>> = {
  cifar10: { model: DEMO_MODEL, compare: PRESETS['stoxnet-fair'].compare },
  ...Object.fromEntries(
    ([
      ['mnist', 'lenet5-mnist-stox-4w4a.onnx'],
      ['fashion-mnist', 'lenet5w3-fashion-mnist-stox-4w4a.onnx'],
    ] as const).map(([name, model]) => [name, { model, compare: [1, 2, 4].map((t) => `stox:${t}=${join(packageRoot(), 'models', model)}`) }]),
  ),
};

export interface DemoOptions {
  /** A data set of DEMOS (default cifar10). */
  dataset?: string;
  /** Model of the accuracy; default: the data set's StoX model in models/ of this package (DEMOS). The cost rows use their own models. */
  model?: string;
  /** The data set's folder; default its variable (STOXNET_DATA for CIFAR-10), else the cache (downloaded when missing). */
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
  /** Cost rows not costed because their model file does not exist (yet). */
  skipped: { name: string; model: string }[];
}

export async function demo(o: DemoOptions = {}): Promise<DemoResult> {
  const ds = dataset(o.dataset);
  const shipped = DEMOS[ds.name as DatasetName];
  if (!shipped) {
    const names = Object.keys(DEMOS).join(', ');
    throw new Error(`demo: the project ships no models for ${ds.title} (it does for ${names}); evaluate and cost your own with \`stoxnet eval\` and \`stoxnet cost --dataset ${ds.name}\``);
  }
  const model = o.model ?? join(packageRoot(), 'models', shipped.model);
  if (!existsSync(model)) throw new Error(`demo: model ${model} not found (the package ships it in models/)`);
  let data = dataDirOf(ds, o.data).dir;
  if (![...ds.files.train, ...ds.files.test].every((f) => existsSync(join(data, f)))) data = await downloadDataset(ds.name, { dest: data, progress: true });
  const images = o.images === undefined ? undefined : int('--images', o.images, 1, 10_000);
  const costImages = int('--cost-images', o.costImages ?? 200, 1, 10_000);
  // One import per model and one read of the test set for the accuracy run and every cost row (its model is the stox:4 row's).
  const cache = new EvalCache();
  // The model carries its StoX settings and learned parameters: no flags needed.
  const { report: accuracy } = await evaluate({ model, data, dataset: ds.name, limit: images, threads: o.threads, onProgress: o.onProgress, signal: o.signal, cache });
  // The models of the other converters are trained one after another; the demo costs those that exist.
  const rows = shipped.compare.map((entry) => ({ entry, ...splitEntry(entry) }));
  const present = rows.filter((r) => existsSync(r.model!));
  const skipped = rows.filter((r) => !present.includes(r)).map((r) => ({ name: entryName(r.config), model: r.model! }));
  const cost = await compareCosts({ data, dataset: ds.name, images: costImages, threads: o.threads, compare: present.map((r) => r.entry), signal: o.signal, cache });
  return { accuracy, cost, skipped };
}
