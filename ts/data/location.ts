import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { DATASETS, type Dataset } from './dataset.js';

/** STOXNET_CACHE, else $XDG_CACHE_HOME/stoxnet, else ~/.cache/stoxnet. */
export function cacheDir(): string {
  const env = process.env;
  if (env.STOXNET_CACHE) return resolve(env.STOXNET_CACHE);
  return resolve(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'stoxnet');
}

/** Where `stoxnet data NAME` puts a data set by default. */
export function datasetCacheDir(ds: Dataset = DATASETS.cifar10): string {
  return join(cacheDir(), ds.folder);
}

/** The folder of a data set named by the `--data` flag, else its environment variable, else the cache. */
export function dataDirOf(ds: Dataset, flag?: string): { dir: string; origin: string } {
  const fromEnv = process.env[ds.env];
  if (flag) return { dir: resolve(flag), origin: 'given by --data' };
  if (fromEnv) return { dir: resolve(fromEnv), origin: `given by ${ds.env}` };
  return { dir: datasetCacheDir(ds), origin: 'the cache; --data DIR or ' + ds.env + ' point elsewhere' };
}

/**
 * The folder holding a data set's files (default CIFAR-10): the `--data`
 * flag, else its environment variable (STOXNET_DATA for CIFAR-10), else the
 * cache. Throws, saying where it looked, when files are missing: all of
 * them, or only the training files when `trainOnly` (work on the validation
 * split, which must not depend on the test set).
 */
export function resolveDataDir(flag?: string, trainOnly = false, ds: Dataset = DATASETS.cifar10): string {
  if (ds.path) return ds.path;
  const { dir, origin } = dataDirOf(ds, flag);
  const missing = (trainOnly ? ds.files.train : [...ds.files.train, ...ds.files.test]).filter((name) => !existsSync(join(dir, name)));
  if (missing.length > 0) {
    const dest = flag || process.env[ds.env] ? ` --dest ${JSON.stringify(dir)}` : '';
    throw new Error(`${ds.title} not found in ${dir} (${origin}): missing ${missing.join(', ')}. ` + `Download it with \`npx stoxnet data ${ds.name}${dest}\`.`);
  }
  return dir;
}
