// `npm run bench -- [--images N] [--reps R] [--threads N] [--model PATH] [--data DIR] [--json]`
// Throughput of the engines on the same images in one process; prints ratios
// measured in this run (see bench/README.md for the method).
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Backend } from '../ts/backend.js';
import { int } from '../ts/config.js';
import { readCifar10 } from '../ts/data/cifar10.js';
import { normalize } from '../ts/data/dataset.js';
import { resolveDataDir } from '../ts/data/location.js';
import { native, nativeBackend } from '../ts/native.js';
import { importOnnx } from '../ts/onnx/import.js';
import { ortBackend } from '../ts/ort.js';
import { packageRoot } from '../ts/paths.js';
import { createSimulator } from '../ts/simulator.js';
import { resolveConfig, type StoxConfig } from '../ts/stox.js';
import { resolveTrainSettings } from '../ts/train.js';
import { resnet } from '../ts/arch.js';
import { BATCH, median, pass, trainThroughput } from './timing.js';

/**
 * An engine against onnxruntime: one warm-up batch each, then `reps` pairs of
 * timed passes (onnxruntime, engine, onnxruntime, engine, …). Load that
 * arrives during a run then skews both halves of a pair alike: the ratio is
 * the median of the pairs' ratios, and their range is its spread.
 */
async function paired(ort: Backend, engine: Backend, images: Float32Array, imageLen: number, reps: number): Promise<{ ort: number[]; rate: number; ratio: number; spread: [number, number] }> {
  const warm = images.subarray(0, Math.min(BATCH * imageLen, images.length));
  await ort.run(warm, 0);
  await engine.run(warm, 0);
  const ortRates: number[] = [];
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    ortRates.push(await pass(ort, images, imageLen));
    rates.push(await pass(engine, images, imageLen));
  }
  const ratios = rates.map((v, r) => v / ortRates[r]);
  return { ort: ortRates, rate: median(rates), ratio: median(ratios), spread: [Math.min(...ratios), Math.max(...ratios)] };
}

/**
 * FP32 inference and training images/s at each instruction-set level this CPU has
 * above the baseline (bench/levels.ts, a child process per level, STOXNET_CPU set).
 */
function levels(model: string, data: string, count: number, threads: number, batches: number): Record<string, { nativeFp32: number; trainFp32: number }> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'levels.js');
  const out: Record<string, { nativeFp32: number; trainFp32: number }> = {};
  for (const cap of native().cpuLevel() === 'avx512' ? ['avx2', 'native'] : native().cpuLevel() === 'avx2' ? ['native'] : []) {
    const child = spawnSync(process.execPath, [script, model, data, String(count), String(threads), String(batches)], { encoding: 'utf8', env: { ...process.env, STOXNET_CPU: cap } });
    if (child.status !== 0) throw new Error(`bench/levels.js (STOXNET_CPU=${cap}) failed: ${child.stderr}`);
    const r = JSON.parse(child.stdout) as { cpu: string; nativeFp32: number; trainFp32: number };
    out[r.cpu] = { nativeFp32: r.nativeFp32, trainFp32: r.trainFp32 };
  }
  return out;
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
  const ort = await ortBackend(model, threads, net.input);
  const engines = {
    nativeFp32: nativeBackend(net, threads),
    nativeIdeal4w4a: await stox({ converter: 'ideal' }),
    nativeMtjT1: await stox(mtj1),
    nativeMtjT4: await stox({ converter: 'mtj', samples: 4 }),
    nativeSchedule: await stox({ converter: 'mtj', schedule: 'first-16-then-4' }),
    nativeBitSliced: await stox({ ...mtj1, weightSliceBits: 1, inputStreamBits: 1 }),
    native1Thread: await stox(mtj1, 'native', 1),
  };
  const vsOrt: Record<string, { ratio: number; spread: [number, number] }> = {};
  const ortRates: number[] = [];
  const imagesPerSecond: Record<string, number> = { ortFp32: 0 };
  for (const [name, engine] of Object.entries(engines)) {
    const p = await paired(ort, engine, images, imageLen, reps);
    imagesPerSecond[name] = p.rate;
    vsOrt[name] = { ratio: p.ratio, spread: p.spread };
    ortRates.push(...p.ort);
  }
  imagesPerSecond.ortFp32 = median(ortRates);
  imagesPerSecond.jsReference = await pass(await stox(mtj1, 'js'), images.subarray(0, jsImages * imageLen), imageLen);
  const batches = int('train-batches', values['train-batches'], 1, 390);
  const train = await readCifar10(dataDir, 'train');
  const fp32 = await trainThroughput(resnet('resnet20'), resolveTrainSettings({ arch: 'resnet20', epochs: 1 }), train, batches, reps, threads);
  imagesPerSecond.trainFp32 = fp32.rate;
  const qat = resolveTrainSettings({ from: model, epochs: 1, lr: 0.01, stox: { converter: 'mtj', samples: 4, calibrationImages: 64 } });
  imagesPerSecond.trainQatT4 = (await trainThroughput(await importOnnx(model), qat, train, batches, reps, threads)).rate;
  // The FP32 training step's achieved GFLOP/s against this machine's FMA peak on the same threads.
  const trainGflops = (fp32.rate * fp32.flopsPerImage) / 1e9;
  const peakThreads = threads > 0 ? threads : availableParallelism();
  const fmaPeakGflops = native().fmaPeakGflops(peakThreads, 1);
  const rss = peakRssMB(model, dataDir);
  const byLevel = levels(model, dataDir, count, threads, batches);
  const ratios = {
    nativeFp32VsOrt: vsOrt.nativeFp32.ratio,
    idealVsOrt: vsOrt.nativeIdeal4w4a.ratio,
    mtjT1VsOrt: vsOrt.nativeMtjT1.ratio,
    mtjT4VsOrt: vsOrt.nativeMtjT4.ratio,
    bitSlicedVsOrt: vsOrt.nativeBitSliced.ratio,
    nativeVsJs: imagesPerSecond.nativeMtjT1 / imagesPerSecond.jsReference,
    threadScaling: imagesPerSecond.nativeMtjT1 / imagesPerSecond.native1Thread,
  };
  const spreads = Object.fromEntries(Object.entries(vsOrt).map(([k, v]) => [k, v.spread]));
  // The kernels' instruction set: ratios on an AVX2-only CPU and on one with AVX-512 are different machines' figures.
  const cpu = native().cpuLevel();
  if (values.json) {
    process.stdout.write(JSON.stringify({ model, images: count, reps, threads, cpu, imagesPerSecond, ratios, spreads, peakRssMB: rss, trainGflops, fmaPeakGflops, levels: byLevel }) + '\n');
    return;
  }
  process.stdout.write(`${model}: ${count} images, batch ${BATCH}, ${threads} threads, kernels ${cpu}, median of ${reps}\n`);
  for (const [k, v] of Object.entries(imagesPerSecond)) process.stdout.write(`  ${k.padEnd(16)} ${v.toFixed(1).padStart(9)} images/s\n`);
  for (const [k, v] of Object.entries(ratios)) process.stdout.write(`  ${k.padEnd(16)} ${v.toFixed(3).padStart(9)} x\n`);
  for (const [k, [lo, hi]] of Object.entries(spreads)) process.stdout.write(`  ${k.padEnd(16)} vs onnxruntime ${vsOrt[k].ratio.toFixed(3)} (pairs ${lo.toFixed(3)}–${hi.toFixed(3)})\n`);
  process.stdout.write(`  peakRssMB        ${rss.toFixed(0).padStart(9)} MB (10,000-image StoX eval, mtj T = 1)\n`);
  process.stdout.write(`  trainGflops      ${trainGflops.toFixed(1).padStart(9)} GFLOP/s of ${fmaPeakGflops.toFixed(1)} (FMA peak, ${peakThreads} threads)\n`);
  for (const [level, r] of Object.entries(byLevel)) process.stdout.write(`  at ${level.padEnd(13)} FP32 inference ${r.nativeFp32.toFixed(0)}, training ${r.trainFp32.toFixed(0)} images/s\n`);
}

await main();
