// The data sets stoxnet reads, one description each: classes, image size,
// files, the normalisation its models take, the augmentation its training
// uses, and the reader of its official format. Everything that classifies or
// trains goes through this table, so a new data set is one entry here.
import { CIFAR10_CLASSES, CIFAR10_FILES, NORMALIZATION, readCifar10, TRAIN_FILES } from './cifar10.js';
import { CIFAR100_CLASSES, CIFAR100_FILES, readCifar100 } from './cifar100.js';
import { FASHION_MNIST_CLASSES, IDX_FILES, MNIST_CLASSES, readIdx } from './idx.js';
import { inSlices } from './slices.js';
import { isDataPath, openUserDataset } from './user.js';

/** Images of one split: `count` CHW byte images back to back, and their labels. */
export interface ImageSet {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  /** CIFAR-100: the superclass of each image. */
  coarse?: Uint8Array;
}

/** `(pixel/255 − mean[c]) / std[c]`, one value per input channel. */
export interface Normalization {
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

export const DATASET_NAMES = ['cifar10', 'cifar100', 'mnist', 'fashion-mnist'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

export interface Dataset {
  /** A built-in data set's name, or `user:FILE` for a user's data (data/user.ts). */
  name: string;
  /** As people write it, in messages. */
  title: string;
  classes: readonly string[];
  /** [channels, height, width] */
  dims: readonly [number, number, number];
  normalization: Normalization;
  /** Training augmentation: random translation by up to `pad` pixels, horizontal flip (not for digits). */
  augment: { pad: number; flip: boolean };
  /** Files a folder must hold for each split. */
  files: { train: readonly string[]; test: readonly string[] };
  /** Environment variable naming its folder (after --data, before the cache). */
  env: string;
  /** Folder name in the cache. */
  folder: string;
  /**
   * The first `count` images of a split (all of it when `count` is undefined
   * or larger): a calibration that uses 300 training images reads one
   * CIFAR-10 file, not five, and copies 300 records.
   */
  read(dir: string, split: 'train' | 'test', count?: number): Promise<ImageSet>;
  /** A user's data: the file or folder it came from (its own location; --data does not apply). */
  path?: string;
}

const idx = (name: 'mnist' | 'fashion-mnist', title: string, classes: readonly string[], mean: number, std: number, flip: boolean): Dataset => ({
  name,
  title,
  classes,
  dims: [1, 28, 28],
  normalization: { mean: [mean], std: [std] },
  augment: { pad: 2, flip },
  files: { train: [IDX_FILES.train.images, IDX_FILES.train.labels], test: [IDX_FILES.test.images, IDX_FILES.test.labels] },
  env: `STOXNET_DATA_${name.toUpperCase().replace('-', '_')}`,
  folder: name,
  read: (dir, split, count) => readIdx(dir, split, title, `npx stoxnet data ${name}`, count),
});

export const DATASETS: Readonly<Record<DatasetName, Dataset>> = {
  cifar10: {
    name: 'cifar10',
    title: 'CIFAR-10',
    classes: CIFAR10_CLASSES,
    dims: [3, 32, 32],
    normalization: NORMALIZATION,
    augment: { pad: 4, flip: true },
    files: { train: TRAIN_FILES, test: CIFAR10_FILES.filter((f) => !(TRAIN_FILES as readonly string[]).includes(f)) },
    env: 'STOXNET_DATA',
    folder: 'cifar-10-batches-bin',
    read: readCifar10,
  },
  cifar100: {
    name: 'cifar100',
    title: 'CIFAR-100',
    classes: CIFAR100_CLASSES,
    dims: [3, 32, 32],
    // The training set's per-channel statistics, as CIFAR-100 training recipes use them.
    normalization: { mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762] },
    augment: { pad: 4, flip: true },
    files: { train: [CIFAR100_FILES.train.name], test: [CIFAR100_FILES.test.name] },
    env: 'STOXNET_DATA_CIFAR100',
    folder: 'cifar-100-binary',
    read: readCifar100,
  },
  // The training sets' pixel statistics (0.1307/0.3081 and 0.2860/0.3530), as usual for both.
  mnist: idx('mnist', 'MNIST', MNIST_CLASSES, 0.1307, 0.3081, false),
  'fashion-mnist': idx('fashion-mnist', 'Fashion-MNIST', FASHION_MNIST_CLASSES, 0.286, 0.353, true),
};


/** The data set called `name` (default CIFAR-10); the error lists the known ones. */
export function dataset(name: string = 'cifar10'): Dataset {
  if (!(DATASET_NAMES as readonly string[]).includes(name)) throw new Error(`unknown data set ${JSON.stringify(name)}; expected one of ${DATASET_NAMES.join(', ')}`);
  return DATASETS[name as DatasetName];
}

/**
 * A built-in data set by name, or a user's data by path (.npz or image
 * folder, loaded now; `normalization` overrides its training images' statistics).
 */
export async function openDataset(nameOrPath: string, normalization?: Normalization): Promise<Dataset> {
  if (isDataPath(nameOrPath)) return openUserDataset(nameOrPath, normalization);
  const ds = dataset(nameOrPath);
  return normalization ? { ...ds, normalization } : ds;
}

export function imageBytes(ds: Pick<Dataset, 'dims'>): number {
  return ds.dims[0] * ds.dims[1] * ds.dims[2];
}

/**
 * Training images held out as the validation split (for CIFAR-10 the last
 * 5,000 of data_batch_5). Every choice the project makes (per-layer
 * schedules, model selection) is made on them, never on the test set, and
 * models trained for such choices train on the others only.
 */
export const VALIDATION_IMAGES = 5000;

/** The images `from..to` of a split. */
export function subset(set: ImageSet, from: number, to: number): ImageSet {
  const len = set.images.length / set.count;
  return {
    images: set.images.subarray(from * len, to * len),
    labels: set.labels.subarray(from, to),
    count: to - from,
    ...(set.coarse ? { coarse: set.coarse.subarray(from, to) } : {}),
  };
}

/** A training split without its last `held` images, and those images. */
export function holdOut(train: ImageSet, held: number): { fit: ImageSet; validation: ImageSet } {
  if (!Number.isInteger(held) || held < 0 || held >= train.count) throw new Error(`validation split: ${held} held-out images from ${train.count} training images`);
  return { fit: subset(train, 0, train.count - held), validation: subset(train, train.count - held, train.count) };
}

export interface NormalizeOptions {
  mean?: readonly number[];
  std?: readonly number[];
  /** [channels, height, width] of an image (default CIFAR's [3, 32, 32]). */
  dims?: readonly [number, number, number];
}

/**
 * `(pixel/255 − mean[c]) / std[c]` for the first `count` CHW images of
 * `images`, the input the models were trained on (default: CIFAR-10's images
 * and normalisation).
 *
 * Every step is rounded to float32 (Math.fround after the division by 255,
 * the subtraction and the division by std, with mean and std rounded to
 * float32 first). Since double has more than twice float32's precision, this
 * equals plain IEEE float32 arithmetic, so the result is the same bit for bit
 * as `(p as f32 / 255.0 - mean) / std` in Rust or numpy float32.
 */
export function normalize(images: Uint8Array, count: number, opts: NormalizeOptions = {}): Float32Array {
  const [channels, h, w] = opts.dims ?? DATASETS.cifar10.dims;
  const mean = opts.mean ?? NORMALIZATION.mean;
  const std = opts.std ?? NORMALIZATION.std;
  if (mean.length !== channels || std.length !== channels) throw new Error(`normalize: ${channels}-channel images need ${channels} means and stds, got ${mean.length} and ${std.length}`);
  const plane = h * w;
  const bytes = channels * plane;
  if (images.length < count * bytes) {
    throw new Error(`normalize: ${count} images need ${count * bytes} bytes, got ${images.length}`);
  }
  // A byte has only 256 values, so one table per channel does all the arithmetic.
  const table = new Float32Array(channels * 256);
  for (let c = 0; c < channels; c++) {
    const mean32 = Math.fround(mean[c]);
    const std32 = Math.fround(std[c]);
    for (let p = 0; p < 256; p++) {
      table[c * 256 + p] = Math.fround(Math.fround(Math.fround(p / 255) - mean32) / std32);
    }
  }
  const out = new Float32Array(count * bytes);
  for (let start = 0; start < out.length; start += plane) {
    const t = ((start / plane) % channels) * 256;
    for (let i = start; i < start + plane; i++) out[i] = table[t + images[i]];
  }
  return out;
}

/** `normalize` with a data set's image size and normalisation. */
export function normalizeFor(ds: Pick<Dataset, 'dims' | 'normalization'>, images: Uint8Array, count: number): Float32Array {
  return normalize(images, count, { dims: ds.dims, mean: ds.normalization.mean, std: ds.normalization.std });
}

/**
 * `normalizeFor` in slices of 200 images (`inSlices`); in one piece 2,000
 * images held an eval's event loop for ~50 ms on a Zen 3. The same values:
 * each image is normalised alone.
 */
export async function normalizeSliced(ds: Pick<Dataset, 'dims' | 'normalization'>, images: Uint8Array, count: number): Promise<Float32Array> {
  const len = imageBytes(ds);
  const out = new Float32Array(count * len);
  await inSlices(count, 200, (start, end) => out.set(normalizeFor(ds, images.subarray(start * len, end * len), end - start), start * len));
  return out;
}
