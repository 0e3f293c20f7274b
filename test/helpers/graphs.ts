// What the operator tests share: seeded weights and images for the small
// 3×32×32 graphs they build, onnxruntime's logits for them, and the
// simulator's logits (native or JS reference) on the same images.
import { randoms } from '../../bench/onnx-builder.js';
import type { Network } from '../../ts/network.js';
import { createSimulator } from '../../ts/simulator.js';
import { resolveConfig } from '../../ts/stox.js';

export const scaled = (n: number, seed: number, scale: number) => randoms(n, seed).map((v) => v * scale);

export const LEN = 3 * 32 * 32;
const images = (n: number, seed: number) => Float32Array.from(scaled(n * LEN, seed, 2));
export const calibration = images(16, 11);
export const inputs = images(6, 12);

export async function ortLogits(bytes: Uint8Array, x: Float32Array): Promise<Float32Array> {
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 });
  const out = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', x, [x.length / LEN, 3, 32, 32]) });
  return out[session.outputNames[0]!]!.data as Float32Array;
}

/** The logits of `inputs` through `net` with these simulator settings (seed 5, calibrated on 16 images, image numbers from 40). */
export async function logits(net: Network, converter: Record<string, unknown>, engine: 'native' | 'js'): Promise<Float32Array> {
  const config = resolveConfig({ ...converter, seed: 5, calibrationImages: 16 });
  const { backend } = await createSimulator(net, config, { dataDir: '', threads: 1, engine, calibration });
  return (await backend.run(inputs, 40)).logits;
}
