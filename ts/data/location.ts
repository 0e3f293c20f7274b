import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { CIFAR10_FILES, TRAIN_FILES } from './cifar10.js';

/** STOXNET_CACHE, else $XDG_CACHE_HOME/stoxnet, else ~/.cache/stoxnet. */
export function cacheDir(): string {
  const env = process.env;
  if (env.STOXNET_CACHE) return resolve(env.STOXNET_CACHE);
  return resolve(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'stoxnet');
}

/** Where `stoxnet data cifar10` puts the data set by default. */
export function cifar10CacheDir(): string {
  return join(cacheDir(), 'cifar-10-batches-bin');
}

/**
 * The folder holding the CIFAR-10 binary files: the `--data` flag, else
 * STOXNET_DATA, else the cache. Throws, saying where it looked, when files
 * are missing: all of them, or only the training files when `trainOnly`
 * (work on the validation split, which must not depend on the test set).
 */
export function resolveDataDir(flag?: string, trainOnly = false): string {
  const fromEnv = process.env.STOXNET_DATA;
  const [dir, origin] = flag
    ? [resolve(flag), 'given by --data']
    : fromEnv
      ? [resolve(fromEnv), 'given by STOXNET_DATA']
      : [cifar10CacheDir(), 'the cache; --data DIR or STOXNET_DATA point elsewhere'];
  const missing = (trainOnly ? TRAIN_FILES : CIFAR10_FILES).filter((name) => !existsSync(join(dir, name)));
  if (missing.length > 0) {
    const dest = flag || fromEnv ? ` --dest ${JSON.stringify(dir)}` : '';
    throw new Error(
      `CIFAR-10 not found in ${dir} (${origin}): missing ${missing.join(', ')}. ` +
        `Download it with \`npx stoxnet data cifar10${dest}\`.`,
    );
  }
  return dir;
}
