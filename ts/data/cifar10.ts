// CIFAR-10 in its official binary format: each file holds 10,000 records of
// one label byte followed by the 32×32 image as 1024 red, 1024 green and 1024
// blue bytes (row-major), i.e. CHW.

import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';

export const CIFAR10_CLASSES = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
] as const;

export const IMAGE_CHANNELS = 3;
export const IMAGE_HEIGHT = 32;
export const IMAGE_WIDTH = 32;
export const IMAGE_BYTES = IMAGE_CHANNELS * IMAGE_HEIGHT * IMAGE_WIDTH; // 3072
export const RECORD_BYTES = 1 + IMAGE_BYTES; // 3073
export const RECORDS_PER_FILE = 10_000;
export const FILE_BYTES = RECORDS_PER_FILE * RECORD_BYTES; // 30,730,000

export const TRAIN_FILES = [
  'data_batch_1.bin',
  'data_batch_2.bin',
  'data_batch_3.bin',
  'data_batch_4.bin',
  'data_batch_5.bin',
] as const;
export const TEST_FILES = ['test_batch.bin'] as const;
export const CIFAR10_FILES = [...TRAIN_FILES, ...TEST_FILES] as const;
export const META_FILE = 'batches.meta.txt';
/** Contents of the official batches.meta.txt. */
export const META_TEXT = CIFAR10_CLASSES.join('\n') + '\n';

/** md5 of the official files (cifar-10-binary.tar.gz). */
export const CIFAR10_MD5: Readonly<Record<string, string>> = {
  'data_batch_1.bin': '5dd7e06a14cb22eb9f671a540d1b7c25',
  'data_batch_2.bin': '5ea93a67294ea407fff1d09f752e9692',
  'data_batch_3.bin': '942cd6a4bcdd0dd3c604fbe906cb4421',
  'data_batch_4.bin': 'ae636b3ba5c66a11e91e8cb52e771fcb',
  'data_batch_5.bin': '53f37980c15c3d472c316c40844f3f0d',
  'test_batch.bin': '803d5f7f4d78ea53de84dbe85f74fb6d',
};

export interface Cifar10Split {
  /** count × 3072 bytes, each image CHW (1024 R, 1024 G, 1024 B). */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

async function readCifarFile(path: string): Promise<Buffer> {
  let file: FileHandle;
  try {
    file = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`CIFAR-10 file missing: ${path} (download it with \`npx stoxnet data cifar10\`)`);
    }
    throw new Error(`cannot read CIFAR-10 file ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    // Size first: a wrong file may be a large one, refused before it is read.
    const st = await file.stat();
    if (!st.isFile()) throw new Error(`CIFAR-10 file ${path} is not a regular file`);
    if (st.size !== FILE_BYTES) {
      const hint = st.size < FILE_BYTES ? ' (truncated?)' : '';
      throw new Error(`CIFAR-10 file ${path} has ${st.size} bytes, expected ${FILE_BYTES}${hint}`);
    }
    const data = await file.readFile().catch((err: Error) => {
      throw new Error(`cannot read CIFAR-10 file ${path}: ${err.message}`, { cause: err });
    });
    // The file may change between stat and read.
    if (data.length !== FILE_BYTES) throw new Error(`CIFAR-10 file ${path} has ${data.length} bytes, expected ${FILE_BYTES}`);
    return data;
  } finally {
    await file.close();
  }
}

/** Reads the training (50,000 images) or test (10,000 images) split from `dir`. */
export async function readCifar10(dir: string, split: 'train' | 'test'): Promise<Cifar10Split> {
  const files = split === 'train' ? TRAIN_FILES : TEST_FILES;
  const count = files.length * RECORDS_PER_FILE;
  const images = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  for (const [f, name] of files.entries()) {
    const path = join(dir, name);
    const data = await readCifarFile(path);
    for (let r = 0; r < RECORDS_PER_FILE; r++) {
      // Let timers run between slices of the copy (a file takes ~25 ms).
      if (r % 2000 === 1999) await new Promise((resolve) => setImmediate(resolve));
      const at = r * RECORD_BYTES;
      const label = data[at];
      if (label > 9) throw new Error(`CIFAR-10 file ${path}: record ${r} has label ${label}, expected 0–9`);
      const i = f * RECORDS_PER_FILE + r;
      labels[i] = label;
      images.set(data.subarray(at + 1, at + RECORD_BYTES), i * IMAGE_BYTES);
    }
  }
  return { images, labels, count };
}

/**
 * Training images held out as the validation split: the last 5,000 of
 * data_batch_5. Every choice the project makes (per-layer schedules, model
 * selection) is made on them, never on the test set, and models trained for
 * such choices train on the first 45,000 only.
 */
export const VALIDATION_IMAGES = 5000;

/** The images `from..to` of a split. */
export function subset(set: Cifar10Split, from: number, to: number): Cifar10Split {
  return { images: set.images.subarray(from * IMAGE_BYTES, to * IMAGE_BYTES), labels: set.labels.subarray(from, to), count: to - from };
}

/** A training split without its last `held` images, and those images. */
export function holdOut(train: Cifar10Split, held: number): { fit: Cifar10Split; validation: Cifar10Split } {
  if (!Number.isInteger(held) || held < 0 || held >= train.count) throw new Error(`validation split: ${held} held-out images from ${train.count} training images`);
  return { fit: subset(train, 0, train.count - held), validation: subset(train, train.count - held, train.count) };
}

export function md5(data: Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

/**
 * Checks the md5 of the six files in `dir` against the official sums.
 * Opt-in because hashing all 184 MB takes about 0.25 s on top of reading them.
 */
export async function verifyCifar10(dir: string): Promise<void> {
  for (const name of CIFAR10_FILES) {
    const path = join(dir, name);
    const sum = md5(await readCifarFile(path));
    if (sum !== CIFAR10_MD5[name]) {
      throw new Error(`CIFAR-10 file ${path} has md5 ${sum}, expected ${CIFAR10_MD5[name]}`);
    }
  }
}

/**
 * The per-channel mean and std (ImageNet's) of `normalize` by default and of
 * the trainer's input: one definition for every place that normalises images.
 */
export const NORMALIZATION: { readonly mean: readonly [number, number, number]; readonly std: readonly [number, number, number] } = {
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
};

export interface NormalizeOptions {
  mean?: [number, number, number];
  std?: [number, number, number];
}

/**
 * `(pixel/255 − mean[c]) / std[c]` for `count` CHW images, the input the
 * models were trained on.
 *
 * Every step is rounded to float32 (Math.fround after the division by 255,
 * the subtraction and the division by std, with mean and std rounded to
 * float32 first). Since double has more than twice float32's precision, this
 * equals plain IEEE float32 arithmetic, so the result is the same bit for bit
 * as `(p as f32 / 255.0 - mean) / std` in Rust or numpy float32.
 */
export function normalize(images: Uint8Array, count: number, opts: NormalizeOptions = {}): Float32Array {
  const mean = opts.mean ?? NORMALIZATION.mean;
  const std = opts.std ?? NORMALIZATION.std;
  const plane = IMAGE_HEIGHT * IMAGE_WIDTH;
  if (images.length < count * IMAGE_BYTES) {
    throw new Error(`normalize: ${count} images need ${count * IMAGE_BYTES} bytes, got ${images.length}`);
  }
  // A byte has only 256 values, so one table per channel does all the arithmetic.
  const table = new Float32Array(IMAGE_CHANNELS * 256);
  for (let c = 0; c < IMAGE_CHANNELS; c++) {
    const mean32 = Math.fround(mean[c]);
    const std32 = Math.fround(std[c]);
    for (let p = 0; p < 256; p++) {
      table[c * 256 + p] = Math.fround(Math.fround(Math.fround(p / 255) - mean32) / std32);
    }
  }
  const out = new Float32Array(count * IMAGE_BYTES);
  for (let start = 0; start < out.length; start += plane) {
    const t = ((start / plane) % IMAGE_CHANNELS) * 256;
    for (let i = start; i < start + plane; i++) out[i] = table[t + images[i]];
  }
  return out;
}
