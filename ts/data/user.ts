// Users' own data, given to --dataset as a path: a NumPy `.npz` archive
// (Keras's names x_train, y_train, x_test, y_test; images N×H×W×C, N×C×H×W or
// N×H×W, uint8 or float; labels integers) or an image folder (train/ and
// test/, one sub-folder per class, PNG or JPEG). Either becomes a Dataset like
// the built-in ones: CHW bytes, labels, classes, and a normalisation (the
// training images' per-channel statistics unless given).
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { unzip } from 'fflate';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';
import { subset, type Dataset, type ImageSet, type Normalization } from './dataset.js';
import { readDataFile } from './file.js';
import { inSlices } from './slices.js';

/** An array of a .npy file: its shape and values (integers or floats as numbers). */
export interface NpyArray {
  shape: number[];
  dtype: string;
  data: ArrayLike<number>;
}

const DTYPES: Record<string, (b: ArrayBuffer, at: number, n: number) => ArrayLike<number>> = {
  '|u1': (b, at, n) => new Uint8Array(b, at, n),
  '|i1': (b, at, n) => new Int8Array(b, at, n),
  '<u2': (b, at, n) => new Uint16Array(b, at, n),
  '<i2': (b, at, n) => new Int16Array(b, at, n),
  '<u4': (b, at, n) => new Uint32Array(b, at, n),
  '<i4': (b, at, n) => new Int32Array(b, at, n),
  '<i8': (b, at, n) => Array.from(new BigInt64Array(b, at, n), Number),
  '<u8': (b, at, n) => Array.from(new BigUint64Array(b, at, n), Number),
  '<f4': (b, at, n) => new Float32Array(b, at, n),
  '<f8': (b, at, n) => new Float64Array(b, at, n),
};

/**
 * Parses a .npy file (format versions 1–3: magic, version, header length, a
 * Python dict literal with descr, fortran_order and shape, then the data).
 * Little-endian C-order numeric arrays only; `what` names it in errors.
 */
export function parseNpy(bytes: Uint8Array, what: string): NpyArray {
  const magic = '\x93NUMPY';
  if (String.fromCharCode(...bytes.subarray(0, 6)) !== magic) throw new Error(`${what}: not a .npy array (no \\x93NUMPY magic)`);
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [len, start] = major === 1 ? [view.getUint16(8, true), 10] : [view.getUint32(8, true), 12];
  const header = new TextDecoder().decode(bytes.subarray(start, start + len));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new Error(`${what}: unreadable .npy header ${JSON.stringify(header.trim())}`);
  if (fortran === 'True') throw new Error(`${what}: Fortran-order arrays are not supported (save it with numpy.ascontiguousarray)`);
  const read = DTYPES[descr];
  if (!read) throw new Error(`${what}: dtype ${descr} is not supported (expected one of ${Object.keys(DTYPES).join(', ')}, little-endian)`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const size = Number(descr.slice(2));
  const at = start + len;
  if (bytes.length - at !== count * size) throw new Error(`${what}: holds ${bytes.length - at} data bytes, its shape (${shape.join(', ')}) of ${descr} needs ${count * size}`);
  // Typed-array views need aligned offsets: only misaligned data is copied to its own buffer.
  const offset = bytes.byteOffset + at;
  const [buffer, from] = offset % size === 0 ? [bytes.buffer as ArrayBuffer, offset] : [bytes.slice(at).buffer, 0];
  return { shape, dtype: descr, data: read(buffer, from, count) };
}

/** Images of `len` values per slice (`inSlices`) of a conversion: 50,000 values, a few ms even before the JIT has optimised the loop. */
function imagesPerSlice(len: number): number {
  return Math.max(1, Math.floor(50_000 / len));
}

/**
 * CHW bytes from images of `shape` N×H×W×C, N×C×H×W (C of 1 or 3 first,
 * when the last axis is not) or N×H×W; floats in [0, 1] are scaled by 255,
 * floats in [0, 255] kept, then rounded (exact for images that were bytes).
 */
export async function toChwBytes(x: NpyArray, what: string): Promise<{ images: Uint8Array; dims: [number, number, number]; count: number }> {
  const s = x.shape;
  let nchw: boolean;
  if (s.length === 3) nchw = true;
  else if (s.length === 4) nchw = [1, 3].includes(s[1]) && ![1, 3].includes(s[3]);
  else throw new Error(`${what}: images must be N×H×W×C, N×C×H×W or N×H×W, got shape (${s.join(', ')})`);
  const [n, c, h, w] = s.length === 3 ? [s[0], 1, s[1], s[2]] : nchw ? s : [s[0], s[3], s[1], s[2]];
  const len = c * h * w;
  // Both passes image by image in slices: a CIFAR-sized array took seconds
  // of its host's event loop in one piece.
  const slice = imagesPerSlice(len);
  let max = 0;
  let min = 0;
  await inSlices(n, slice, (from, to) => {
    for (let i = from * len; i < to * len; i++) {
      const v = x.data[i];
      if (!Number.isFinite(v)) throw new Error(`${what}: value ${i} is ${v}`);
      if (v > max) max = v;
      if (v < min) min = v;
    }
  });
  const float = x.dtype.includes('f');
  if (min < 0 || max > 255) throw new Error(`${what}: pixel values span ${min}…${max}; expected 0…255 (or 0…1 as floats)`);
  const scale = float && max <= 1 ? 255 : 1;
  const images = new Uint8Array(n * len);
  await inSlices(n, slice, (from, to) => {
    for (let i = from; i < to; i++) {
      for (let ch = 0; ch < c; ch++) {
        for (let p = 0; p < h * w; p++) {
          const src = nchw ? (i * c + ch) * h * w + p : (i * h * w + p) * c + ch;
          images[(i * c + ch) * h * w + p] = Math.round(x.data[src] * scale);
        }
      }
    }
  });
  return { images, dims: [c, h, w], count: n };
}

function toLabels(y: NpyArray, count: number, what: string): Uint8Array {
  const n = y.shape.length === 1 ? y.shape[0] : y.shape.length === 2 && y.shape[1] === 1 ? y.shape[0] : -1;
  if (n !== count) throw new Error(`${what}: labels must be a vector of ${count} integers, got shape (${y.shape.join(', ')})`);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const v = y.data[i];
    if (!Number.isInteger(v) || v < 0 || v > 255) throw new Error(`${what}: label ${i} is ${v}; expected an integer class 0…255`);
    labels[i] = v;
  }
  return labels;
}

/** Per-channel mean and std of byte images (scaled to 0…1). */
export async function channelStats(images: Uint8Array, dims: readonly [number, number, number]): Promise<Normalization> {
  const [c, h, w] = dims;
  const plane = h * w;
  const sum = new Array<number>(c).fill(0);
  const sq = new Array<number>(c).fill(0);
  // Image by image, in slices (`inSlices`): each channel's sums take its values in file order, as in one loop.
  await inSlices(images.length / (c * plane), imagesPerSlice(c * plane), (from, to) => {
    for (let i = from * c * plane; i < to * c * plane; i++) {
      const ch = Math.floor(i / plane) % c;
      const v = images[i] / 255;
      sum[ch] += v;
      sq[ch] += v * v;
    }
  });
  const n = images.length / c;
  const mean = sum.map((s) => s / n);
  const std = sq.map((s, i) => Math.sqrt(Math.max(s / n - mean[i] ** 2, 1e-12)));
  return { mean, std };
}

interface Loaded {
  dims: [number, number, number];
  classes: string[];
  train: ImageSet;
  test: ImageSet;
}

/** A user data set from its loaded splits, normalised by `normalization`. */
function userDataset(path: string, loaded: Loaded, normalization: Normalization): Dataset {
  return {
    name: `user:${basename(path)}`,
    title: path,
    classes: loaded.classes,
    dims: loaded.dims,
    normalization,
    augment: { pad: 0, flip: false },
    files: { train: [], test: [] },
    env: '',
    folder: '',
    path,
    read: async (_dir, split, count) => subset(loaded[split], 0, Math.min(count ?? Infinity, loaded[split].count)),
  };
}

async function loadNpz(path: string): Promise<Loaded> {
  const zip = await readDataFile(path, undefined, 'npz', 'numpy.savez');
  // fflate's asynchronous unzip inflates compressed members (numpy.savez_compressed) in worker threads.
  const entries = await new Promise<Record<string, Uint8Array>>((resolve, reject) =>
    unzip(zip, (err, files) => (err ? reject(new Error(`${path}: not a .npz (zip) archive: ${err.message}`)) : resolve(files))),
  );
  const get = (key: string) => {
    const bytes = entries[`${key}.npy`];
    if (!bytes) throw new Error(`${path}: no array '${key}' (expected x_train, y_train, x_test, y_test; found ${Object.keys(entries).map((k) => k.replace(/\.npy$/, '')).join(', ') || 'none'})`);
    return parseNpy(bytes, `${path}: ${key}`);
  };
  const split = async (xKey: string, yKey: string): Promise<ImageSet & { dims: [number, number, number] }> => {
    const x = await toChwBytes(get(xKey), `${path}: ${xKey}`);
    return { images: x.images, labels: toLabels(get(yKey), x.count, `${path}: ${yKey}`), count: x.count, dims: x.dims };
  };
  const train = await split('x_train', 'y_train');
  const test = await split('x_test', 'y_test');
  if (train.dims.join() !== test.dims.join()) throw new Error(`${path}: x_train images are ${train.dims.join('×')}, x_test images ${test.dims.join('×')}`);
  let top = 0;
  for (const l of [...train.labels, ...test.labels]) top = Math.max(top, l);
  return { dims: train.dims, classes: Array.from({ length: top + 1 }, (_, i) => String(i)), train, test };
}

/** Decodes a PNG or JPEG file to RGB CHW bytes. */
function decodeImage(file: string, data: Buffer): { width: number; height: number; chw: Uint8Array } {
  let rgba: { width: number; height: number; data: Uint8Array };
  try {
    // pngjs and jpeg-js both give 8-bit RGBA, whatever the file's colour type.
    rgba = extname(file).toLowerCase() === '.png' ? pngjs.PNG.sync.read(data) : jpeg.decode(data, { useTArray: true, formatAsRGBA: true });
  } catch (err) {
    throw new Error(`${file}: cannot decode the image: ${(err as Error).message}`);
  }
  const { width, height } = rgba;
  const chw = new Uint8Array(3 * width * height);
  for (let p = 0; p < width * height; p++) for (let c = 0; c < 3; c++) chw[c * width * height + p] = rgba.data[4 * p + c];
  return { width, height, chw };
}

const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'];

async function loadFolder(path: string): Promise<Loaded> {
  const subdirs = async (dir: string) => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => {
      throw new Error(`${dir}: missing (an image folder holds train/ and test/, each with one sub-folder per class)`);
    });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  };
  const classes = await subdirs(join(path, 'train'));
  if (classes.length === 0) throw new Error(`${join(path, 'train')}: no class sub-folders`);
  if (classes.length > 256) throw new Error(`${path}: ${classes.length} classes; at most 256 are supported`);
  let dims: [number, number, number] | undefined;
  const readSplit = async (split: 'train' | 'test'): Promise<ImageSet> => {
    const extra = (await subdirs(join(path, split))).filter((c) => !classes.includes(c));
    if (extra.length) throw new Error(`${join(path, split)}: classes ${extra.join(', ')} are not in train/`);
    const images: Uint8Array[] = [];
    const labels: number[] = [];
    for (const [label, cls] of classes.entries()) {
      const dir = join(path, split, cls);
      const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => IMAGE_EXTENSIONS.includes(extname(f).toLowerCase())).sort();
      for (const f of files) {
        const file = join(dir, f);
        const { width, height, chw } = decodeImage(file, await readDataFile(file, undefined, 'image', ''));
        dims ??= [3, height, width];
        if (dims[1] !== height || dims[2] !== width) throw new Error(`${file}: ${width}×${height} pixels; the first image was ${dims[2]}×${dims[1]} (all images must have one size)`);
        images.push(chw);
        labels.push(label);
      }
    }
    if (images.length === 0) throw new Error(`${join(path, split)}: no PNG or JPEG images`);
    const out = new Uint8Array(images.reduce((a, b) => a + b.length, 0));
    images.reduce((at, im) => (out.set(im, at), at + im.length), 0);
    return { images: out, labels: Uint8Array.from(labels), count: images.length };
  };
  const train = await readSplit('train');
  const test = await readSplit('test');
  return { dims: dims!, classes, train, test };
}

/** Whether `name` is a path to user data rather than a built-in data set's name. */
export function isDataPath(name: string): boolean {
  return name.includes('/') || name.includes('\\') || name.endsWith('.npz');
}

/** Loads the user data set at `path` (.npz or image folder). */
export async function openUserDataset(path: string, normalization?: Normalization): Promise<Dataset> {
  const full = resolve(path);
  const st = await stat(full).catch(() => {
    throw new Error(`--dataset ${path}: no such file or folder`);
  });
  const loaded = st.isDirectory() ? await loadFolder(full) : await loadNpz(full);
  // `normalization` overrides the training images' statistics.
  return userDataset(full, loaded, normalization ?? (await channelStats(loaded.train.images, loaded.dims)));
}
