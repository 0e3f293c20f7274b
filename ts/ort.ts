import type * as Ort from 'onnxruntime-node';
import type { Backend } from './backend.js';
import { ConfigError } from './config.js';

/**
 * onnxruntime-node is an optional peer dependency: only `--backend ort` and
 * the bench need it, and its install script fetches GPU binaries unless told
 * not to, so `npm install stoxnet` does not pull it in.
 */
async function onnxruntime(): Promise<typeof Ort> {
  try {
    return await import('onnxruntime-node');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
    throw new ConfigError('the onnxruntime backend needs the optional package onnxruntime-node: add it with `ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30.0` (the variable skips its CUDA binaries)');
  }
}

/** The FP32 baseline and cross-check: the same ONNX file in onnxruntime. */
export async function ortBackend(modelPath: string, threads: number, input: [number, number, number]): Promise<Backend> {
  const ort = await onnxruntime();
  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    // A PS-QAT model's learned parameters are initializers no node reads; onnxruntime
    // would warn about each one.
    logSeverityLevel: 3,
  });
  const [inName] = session.inputNames;
  const [outName] = session.outputNames;
  const probe = await session.run({ [inName]: new ort.Tensor('float32', new Float32Array(input[0] * input[1] * input[2]), [1, ...input]) });
  const classes = probe[outName].dims[1];
  return {
    name: 'ort',
    classes,
    async run(images) {
      const n = images.length / (input[0] * input[1] * input[2]);
      const out = await session.run({ [inName]: new ort.Tensor('float32', images, [n, ...input]) });
      return { logits: out[outName].data as Float32Array };
    },
  };
}
