// `npm run bench -- [--images N] [--reps R] [--threads N] [--model PATH] [--data DIR] [--json]`
// Throughput of the engines on the same images in one process; prints ratios
// measured in this run (see bench/README.md for the method).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Backend } from '../ts/backend.js';
import { int } from '../ts/config.js';
import { readCifar10 } from '../ts/data/cifar10.js';
import { normalize } from '../ts/data/dataset.js';
import { resolveDataDir } from '../ts/data/location.js';
import { nativeBackend } from '../ts/native.js';
import { importOnnx } from '../ts/onnx/import.js';
import { ortBackend } from '../ts/ort.js';
import { packageRoot } from '../ts/paths.js';
import { createSimulator } from '../ts/simulator.js';
import { resolveConfig, type StoxConfig } from '../ts/stox.js';
import { createTrainer, resolveTrainSettings, type TrainSettings } from '../ts/train.js';
import { resnet } from '../ts/arch.js';
import type { Network } from '../ts/network.js';

const BATCH = 100;

/** Median over `reps` timed passes (after one warm-up batch) of images/s. */
async function throughput(backend: Backend, images: Float32Array, imageLen: number, reps: number): Promise<number> {
  const count = images.length / imageLen;
  await backend.run(images.subarray(0, Math.min(BATCH, count) * imageLen), 0);
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    for (let s = 0; s < count; s += BATCH) await backend.run(images.subarray(s * imageLen, Math.min(s + BATCH, count) * imageLen), s);
    rates.push(count / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)];
}

/**
 * Training images/s: one warm-up batch, then `reps` timed passes of `batches`
 * batches of 128 (the median counts), on the first training images.
 */
async function trainThroughput(net: Network, settings: TrainSettings, train: { images: Uint8Array; labels: Uint8Array }, batches: number, reps: number, threads: number): Promise<number> {
  const n = 128 * (1 + batches * reps);
  const trainer = await createTrainer(net, settings, train.images.subarray(0, n * 3072), train.labels.subarray(0, n), threads);
  await trainer.trainBatches(0, 0, 1, threads);
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    const p = await trainer.trainBatches(0, 1 + r * batches, 1 + (r + 1) * batches, threads);
    rates.push(p.images / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)];
}

/** Peak resident memory of a 10,000-image StoX eval, run in a child process. */
function peakRssMB(model: string, data: string): number {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'rss.js');
  const child = spawnSync(process.execPath, [script, model, data], { encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`bench/rss.js failed: ${child.stderr}`);
  return (JSON.parse(child.stdout) as { peakRssMB: number }).peakRssMB;
}

async function main() {
  const { values } = parseArgs({
    options: {
      images: { type: 'string', default: '1000' },
      reps: { type: 'string', default: '3' },
      threads: { type: 'string', default: '2' },
      'js-images': { type: 'string', default: '20' },
      'train-batches': { type: 'string', default: '5' },
      model: { type: 'string' },
      data: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const count = int('images', values.images, 1, 10_000);
  const reps = int('reps', values.reps, 1, 100);
  const threads = int('threads', values.threads, 0, 1024);
  const model = values.model ?? join(process.env.STOXNET_MODELS ?? join(packageRoot(), '..', 'shared', 'models'), 'resnet20.onnx');
  const net = await importOnnx(model);
  const imageLen = net.input[0] * net.input[1] * net.input[2];
  const test = await readCifar10(resolveDataDir(values.data), 'test');
  // StoX configurations: 4w4a, rows 128, balanced, first conv and last linear digital.
  const images = normalize(test.images.subarray(0, count * imageLen), count);

  const jsImages = int('js-images', values['js-images'], 1, count);
  const dataDir = resolveDataDir(values.data);
  const stox = async (config: Partial<StoxConfig>, engine: 'native' | 'js' = 'native', t = threads) =>
    (await createSimulator(net, resolveConfig({ calibrationImages: 64, ...config }), { dataDir, threads: t, engine })).backend;
  const mtj1 = { converter: 'mtj', samples: 1 } as const;
  const imagesPerSecond = {
    ortFp32: await throughput(await ortBackend(model, threads, net.input), images, imageLen, reps),
    nativeFp32: await throughput(nativeBackend(net, threads), images, imageLen, reps),
    nativeIdeal4w4a: await throughput(await stox({ converter: 'ideal' }), images, imageLen, reps),
    nativeMtjT1: await throughput(await stox(mtj1), images, imageLen, reps),
    nativeMtjT4: await throughput(await stox({ converter: 'mtj', samples: 4 }), images, imageLen, reps),
    nativeSchedule: await throughput(await stox({ converter: 'mtj', schedule: 'first-16-then-4' }), images, imageLen, reps),
    nativeBitSliced: await throughput(await stox({ ...mtj1, weightSliceBits: 1, inputStreamBits: 1 }), images, imageLen, reps),
    jsReference: await throughput(await stox(mtj1, 'js'), images.subarray(0, jsImages * imageLen), imageLen, 1),
    native1Thread: await throughput(await stox(mtj1, 'native', 1), images, imageLen, reps),
    trainFp32: 0,
    trainQatT4: 0,
  };
  const batches = int('train-batches', values['train-batches'], 1, 390);
  const train = await readCifar10(dataDir, 'train');
  imagesPerSecond.trainFp32 = await trainThroughput(resnet('resnet20'), resolveTrainSettings({ arch: 'resnet20', epochs: 1 }), train, batches, reps, threads);
  const qat = resolveTrainSettings({ from: model, epochs: 1, lr: 0.01, stox: { converter: 'mtj', samples: 4, calibrationImages: 64 } });
  imagesPerSecond.trainQatT4 = await trainThroughput(await importOnnx(model), qat, train, batches, reps, threads);
  const rss = peakRssMB(model, dataDir);
  const ort = imagesPerSecond.ortFp32;
  const ratios = {
    nativeFp32VsOrt: imagesPerSecond.nativeFp32 / ort,
    idealVsOrt: imagesPerSecond.nativeIdeal4w4a / ort,
    mtjT1VsOrt: imagesPerSecond.nativeMtjT1 / ort,
    mtjT4VsOrt: imagesPerSecond.nativeMtjT4 / ort,
    bitSlicedVsOrt: imagesPerSecond.nativeBitSliced / ort,
    nativeVsJs: imagesPerSecond.nativeMtjT1 / imagesPerSecond.jsReference,
    threadScaling: imagesPerSecond.nativeMtjT1 / imagesPerSecond.native1Thread,
  };
  if (values.json) {
    process.stdout.write(JSON.stringify({ model, images: count, reps, threads, imagesPerSecond, ratios, peakRssMB: rss }) + '\n');
    return;
  }
  process.stdout.write(`${model}: ${count} images, batch ${BATCH}, ${threads} threads, median of ${reps}\n`);
  for (const [k, v] of Object.entries(imagesPerSecond)) process.stdout.write(`  ${k.padEnd(16)} ${v.toFixed(1).padStart(9)} images/s\n`);
  for (const [k, v] of Object.entries(ratios)) process.stdout.write(`  ${k.padEnd(16)} ${v.toFixed(3).padStart(9)} x\n`);
  process.stdout.write(`  peakRssMB        ${rss.toFixed(0).padStart(9)} MB (10,000-image StoX eval, mtj T = 1)\n`);
}

await main();
