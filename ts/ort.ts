import * as ort from 'onnxruntime-node';
import type { Backend } from './backend.js';

/** The FP32 baseline and cross-check: the same ONNX file in onnxruntime. */
export async function ortBackend(modelPath: string, threads: number, input: [number, number, number]): Promise<Backend> {
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
