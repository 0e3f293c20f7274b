import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../ts/paths.js';

/** Real data and models live outside the repo; CI puts ../shared beside the clone. */
export const DATA_DIR = process.env.STOXNET_DATA ?? join(packageRoot(), '..', 'shared', 'data', 'cifar-10-batches-bin');
export const MODELS_DIR = process.env.STOXNET_MODELS ?? join(packageRoot(), '..', 'shared', 'models');
export const HAVE_DATA = existsSync(join(DATA_DIR, 'test_batch.bin'));
export const HAVE_MODELS = existsSync(join(MODELS_DIR, 'resnet20.onnx'));
export const model = (name: string) => join(MODELS_DIR, name);
export const CLI = join(packageRoot(), 'dist', 'ts', 'cli.js');
