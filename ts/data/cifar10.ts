// CIFAR-10 in its official binary format: each file holds 10,000 records of
// one label byte followed by the 32×32 image as 1024 red, 1024 green and 1024
// blue bytes (row-major), i.e. CHW.

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { ImageSet } from './dataset.js';
import { readDataFile } from './file.js';
import { inSlices } from './slices.js';

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

function readCifarFile(path: string): Promise<Buffer> {
  return readDataFile(path, FILE_BYTES, 'CIFAR-10', 'npx stoxnet data cifar10');
}

/** Reads the first `count` images (default all) of the training (50,000 images) or test (10,000) split from `dir`: only the files that hold them. */
export async function readCifar10(dir: string, split: 'train' | 'test', count?: number): Promise<ImageSet> {
  const files = split === 'train' ? TRAIN_FILES : TEST_FILES;
  const n = Math.min(count ?? Infinity, files.length * RECORDS_PER_FILE);
  const images = new Uint8Array(n * IMAGE_BYTES);
  const labels = new Uint8Array(n);
  for (let f = 0; f * RECORDS_PER_FILE < n; f++) {
    const path = join(dir, files[f]);
    const data = await readCifarFile(path);
    const first = f * RECORDS_PER_FILE;
    await copyRecords(data, Math.min(RECORDS_PER_FILE, n - first), 1, images.subarray(first * IMAGE_BYTES), (r, record) => {
      if (record[0] > 9) throw new Error(`CIFAR-10 file ${path}: record ${r} has label ${record[0]}, expected 0–9`);
      labels[first + r] = record[0];
    });
  }
  return { images, labels, count: n };
}

/**
 * Copies the images of the first `count` records of a CIFAR file (each
 * `labelBytes` label bytes, then the image) into `images`, handing each
 * record's label bytes to `label(r, labels)`; in slices (`inSlices`) of 1,000
 * records, ~5 ms each.
 */
export function copyRecords(data: Uint8Array, count: number, labelBytes: number, images: Uint8Array, label: (r: number, labels: Uint8Array) => void): Promise<void> {
  const record = labelBytes + IMAGE_BYTES;
  return inSlices(count, 1000, (start, end) => {
    for (let r = start; r < end; r++) {
      const at = r * record;
      label(r, data.subarray(at, at + labelBytes));
      images.set(data.subarray(at + labelBytes, at + record), r * IMAGE_BYTES);
    }
  });
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
 * The per-channel mean and std (ImageNet's) of the CIFAR-10 models: one
 * definition for every place that normalises CIFAR-10 images.
 */
export const NORMALIZATION: { readonly mean: readonly [number, number, number]; readonly std: readonly [number, number, number] } = {
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
};
