// `npm run bench -- [--images N] [--reps R] [--threads N] [--model PATH] [--data DIR] [--json]`
// Throughput of the engines on the same images in one process; prints ratios
// measured in this run (see bench/README.md for the method).
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Backend } from '../ts/backend.js';
import { int } from '../ts/config.js';
import { normalize, readCifar10 } from '../ts/data/cifar10.js';
import { resolveDataDir } from '../ts/data/location.js';
import { nativeBackend } from '../ts/native.js';
import { importOnnx } from '../ts/onnx/import.js';
import { ortBackend } from '../ts/ort.js';
import { packageRoot } from '../ts/paths.js';
import { createSimulator } from '../ts/simulator.js';
import { resolveConfig, type StoxConfig } from '../ts/stox.js';

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

async function main() {
  const { values } = parseArgs({
    options: {
      images: { type: 'string', default: '1000' },
      reps: { type: 'string', default: '3' },
      threads: { type: 'string', default: '2' },
      'js-images': { type: 'string', default: '20' },
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
  };
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
    process.stdout.write(JSON.stringify({ model, images: count, reps, threads, imagesPerSecond, ratios }) + '\n');
    return;
  }
  process.stdout.write(`${model}: ${count} images, batch ${BATCH}, ${threads} threads, median of ${reps}\n`);
  for (const [k, v] of Object.entries(imagesPerSecond)) process.stdout.write(`  ${k.padEnd(16)} ${v.toFixed(1).padStart(9)} images/s\n`);
  for (const [k, v] of Object.entries(ratios)) process.stdout.write(`  ${k.padEnd(16)} ${v.toFixed(3).padStart(9)} x\n`);
}

await main();
