// What the evaluations of one command share: each model file imported, and
// built in the native engine, once; each data set opened, each of its splits
// read, and each image set normalised once. `stoxnet cost`, `sweep`,
// `schedule search` and `demo` pass one to every evaluation of every
// configuration and seed; a lone `evaluate` makes its own. Nothing cached
// depends on a configuration: the crossbars are programmed per evaluation
// from the shared network (NativeNetwork.simulator), so results are the
// same as with a fresh import each time.
import { resolve } from 'node:path';
import { holdOut, normalizeSliced, openDataset, subset, VALIDATION_IMAGES, type Dataset, type ImageSet, type Normalization } from './data/dataset.js';
import { native } from './native.js';
import type { NativeNetwork } from './native-binding.js';
import type { Network } from './network.js';
import { importOnnx } from './onnx/import.js';

/** The images an evaluation classifies (`test`, `validation`), or the training images calibration reads (`train`). */
export type ImageSplit = 'test' | 'validation' | 'train';

/** Memoises `f(key)`; a rejected promise is dropped, so the error is not kept for a later caller. */
function memo<T>(map: Map<string, Promise<T>>, key: string, f: () => Promise<T>): Promise<T> {
  let p = map.get(key);
  if (!p) {
    p = f();
    map.set(key, p);
    p.catch(() => map.delete(key));
  }
  return p;
}

/** A cached read or normalisation of a split's first `count` images (all: Infinity). */
interface Prefix<T> {
  count: number;
  value: Promise<T>;
}

/** The cached prefix of `map` at `key` if it holds `count` images, else `f()`'s, which replaces it (a rejected one is dropped). */
function longest<T>(map: Map<string, Prefix<T>>, key: string, count: number, f: () => Promise<T>): Promise<T> {
  const held = map.get(key);
  if (held && held.count >= count) return held.value;
  const entry = { count, value: f() };
  map.set(key, entry);
  entry.value.catch(() => map.get(key) === entry && map.delete(key));
  return entry.value;
}

export class EvalCache {
  readonly #networks = new Map<string, Promise<Network>>();
  readonly #engines = new WeakMap<Network, NativeNetwork>();
  readonly #datasets = new Map<string, Promise<Dataset>>();
  readonly #splits = new Map<string, Prefix<ImageSet>>();
  readonly #inputs = new Map<string, Prefix<Float32Array>>();

  /** The model at `path` (one import per file, however it is spelled). */
  network(path: string): Promise<Network> {
    return memo(this.#networks, resolve(path), () => importOnnx(path));
  }

  /** `net` built in the native engine (its FP32 weights), from which each configuration programs its crossbars. */
  engine(net: Network): NativeNetwork {
    let e = this.#engines.get(net);
    if (!e) {
      e = new (native().NativeNetwork)(net);
      this.#engines.set(net, e);
    }
    return e;
  }

  /** `openDataset`, once per name (or path) and normalisation: a user's data set is loaded from disk. */
  dataset(nameOrPath: string, normalization?: Normalization): Promise<Dataset> {
    return memo(this.#datasets, JSON.stringify([nameOrPath, normalization ?? null]), () => openDataset(nameOrPath, normalization));
  }

  /**
   * The first `count` images (default all) of a split: `validation` is the
   * last `VALIDATION_IMAGES` training images, so it reads the whole training
   * split. Only the longest prefix asked for is read (`Dataset.read`).
   */
  async images(ds: Dataset, dataDir: string, split: ImageSplit, count = Infinity): Promise<ImageSet> {
    const file = split === 'test' ? 'test' : 'train';
    const need = split === 'validation' ? Infinity : count;
    const key = JSON.stringify([ds.name, ds.path ?? null, dataDir, file]);
    const read = await longest(this.#splits, key, need, () => ds.read(dataDir, file, need === Infinity ? undefined : need));
    const set = split === 'validation' ? holdOut(read, VALIDATION_IMAGES).validation : read;
    return set.count > count ? subset(set, 0, count) : set;
  }

  /** The first `count` images of a split, normalised as `ds` says (`normalizeSliced`); one normalisation of the longest prefix asked for. */
  async inputs(ds: Dataset, dataDir: string, split: ImageSplit, count: number): Promise<Float32Array> {
    const set = await this.images(ds, dataDir, split, count);
    const key = JSON.stringify([ds.name, ds.path ?? null, dataDir, split, ds.normalization.mean, ds.normalization.std]);
    const len = ds.dims[0] * ds.dims[1] * ds.dims[2];
    const done = await longest(this.#inputs, key, count, () => normalizeSliced(ds, set.images, count));
    return done.subarray(0, count * len);
  }
}
