// The addon as a well-behaved backend inside someone else's Node program:
// asynchronous, cancellable, safe under concurrency, panics surfaced as
// exceptions, interrupts that keep checkpoints and results, bounded memory.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { compareCosts } from '../ts/cost/compare.js';
import { evaluate } from '../ts/eval.js';
import { native } from '../ts/native.js';
import { packageRoot } from '../ts/paths.js';
import { train } from '../ts/train.js';
import { CLI, DATA_DIR, HAVE_DATA, HAVE_MODELS, model } from './helpers/env.js';
import { timerLag } from './helpers/lag.js';

const run = promisify(execFile);
const tmp = () => mkdtempSync(join(tmpdir(), 'stoxnet-rel-'));
const R20 = () => model('resnet20.onnx');

/** Starts `work`, aborts it after `ms`, expects an AbortError and returns the ms from abort() to the rejection. */
async function abortLatency(ms: number, work: (signal: AbortSignal) => Promise<unknown>): Promise<number> {
  const controller = new AbortController();
  const running = work(controller.signal);
  await new Promise((r) => setTimeout(r, ms));
  const t0 = performance.now();
  controller.abort();
  await expect(running).rejects.toMatchObject({ name: 'AbortError' });
  return performance.now() - t0;
}

/** Starts `stoxnet ARGS`, sends `signal` once `ready` matches its stderr, and resolves with its exit. */
function interrupt(args: string[], ready: RegExp, signal: NodeJS.Signals): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, STOXNET_DATA: DATA_DIR } });
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!sent && ready.test(stderr)) {
        sent = true;
        child.kill(signal);
      }
    });
    child.stdout.on('data', (d) => {
      if (!sent && ready.test(String(d))) {
        sent = true;
        child.kill(signal);
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('a backend that never blocks, hangs or takes its host down', () => {
  it('keeps the event loop responsive during an eval (no timer tick delayed by more than 50 ms)', async () => {
    // Warm the data and model caches of the OS so that the figure is the engine's.
    await evaluate({ model: R20(), data: DATA_DIR, limit: 10, config: { converter: 'mtj', calibrationImages: 16 } });
    const { result, maxLagMs, ticks } = await timerLag(() => evaluate({ model: R20(), data: DATA_DIR, limit: 2000, config: { converter: 'mtj', samples: 4 } }));
    console.log(`timer lag during a 2,000-image mtj T = 4 eval: max ${maxLagMs.toFixed(1)} ms over ${ticks} ticks`);
    expect(result.report.images).toBe(2000);
    expect(ticks).toBeGreaterThan(20);
    expect(maxLagMs).toBeLessThan(50);
  }, 120_000);

  it('aborts an eval (in its batches or its calibration), a PS-QAT calibration and a cost comparison within a second, rejecting with an AbortError', async () => {
    const controller = new AbortController();
    const started = evaluate({ model: R20(), data: DATA_DIR, config: { converter: 'mtj', samples: 4 }, signal: controller.signal, onProgress: (done) => done >= 300 && controller.abort() });
    await expect(started).rejects.toMatchObject({ name: 'AbortError' });
    // Abort from outside while it runs, measured from the abort call: in the
    // batches, and during calibration (1-bit slices and streams calibrate for seconds).
    const batches = await abortLatency(3000, (signal) => evaluate({ model: R20(), data: DATA_DIR, config: { converter: 'mtj', samples: 4 }, signal }));
    const calibration = await abortLatency(1500, (signal) => evaluate({ model: R20(), data: DATA_DIR, config: { converter: 'mtj', weightSliceBits: 1, inputStreamBits: 1, calibrationImages: 512 }, signal }));
    console.log(`eval stopped ${batches.toFixed(0)} ms after abort() in its batches, ${calibration.toFixed(0)} ms in its calibration`);
    expect(batches).toBeLessThan(1000);
    expect(calibration).toBeLessThan(1000);
    // Training: its PS-QAT calibration (here 2,048 images, several seconds) stops too.
    const calibrating = await abortLatency(1500, (signal) =>
      train({ from: model('resnet20-bn.onnx'), out: tmp(), epochs: 1, data: DATA_DIR, trainImages: 2048, stox: { converter: 'mtj', samples: 4, calibrationImages: 2048 }, signal }),
    );
    console.log(`PS-QAT calibration stopped ${calibrating.toFixed(0)} ms after abort()`);
    expect(calibrating).toBeLessThan(1000);
    // A cost comparison passes the signal to each of its evaluations.
    await abortLatency(2000, (signal) => compareCosts({ model: R20(), data: DATA_DIR, images: 2000, compare: ['fp-adc', 'stox:4'], signal }));
    // An already-aborted signal never starts the work.
    await expect(evaluate({ model: R20(), data: DATA_DIR, limit: 10, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  }, 120_000);

  it('runs evaluations concurrently with the results they give alone, on the thread count asked for', async () => {
    const a = { model: R20(), data: DATA_DIR, limit: 200, config: { converter: 'mtj' as const, samples: 2, seed: 4, calibrationImages: 32 } };
    const b = { model: model('resnet32.onnx'), data: DATA_DIR, limit: 200, config: { converter: 'adc' as const, adcBits: 5, adcRange: 'calibrated' as const, calibrationImages: 32 } };
    const alone = [await evaluate(a), await evaluate(b)].map((r) => r.report.logitsDigest);
    const together = await Promise.all([evaluate({ ...a, threads: 1 }), evaluate({ ...b, threads: 2 }), evaluate({ ...a, threads: 2, batch: 7 })]);
    expect(together.map((r) => r.report.logitsDigest)).toEqual([alone[0], alone[1], alone[0]]);
    // A pool of exactly the size asked for: its worker threads appear in /proc once.
    const threads = () => readdirSync('/proc/self/task').length;
    const before = threads();
    await evaluate({ ...a, limit: 20, threads: 5 });
    expect(threads() - before).toBe(5);
    await evaluate({ ...a, limit: 20, threads: 5 });
    expect(threads() - before).toBe(5);
  }, 300_000);

  it('turns a Rust panic on a worker thread into a rejected promise with the panic message, and keeps working', async () => {
    const binding = native() as unknown as { __panicForTest(message: string): Promise<void> };
    await expect(binding.__panicForTest('deliberate panic 42')).rejects.toThrow(/stoxnet internal error \(panic\): deliberate panic 42/);
    const after = await evaluate({ model: R20(), data: DATA_DIR, limit: 10 });
    expect(after.report.images).toBe(10);
  });
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('interrupts keep checkpoints and results, and the next run resumes', () => {
  const small = ['--data', DATA_DIR, '--train-images', '512', '--batch', '64', '--seed', '5', '--json'];

  it('aborting training checkpoints mid-epoch; resuming ends with the weights of an uninterrupted run', async () => {
    const [a, b] = [tmp(), tmp()];
    const settings = { arch: 'resnet20' as const, epochs: 2, batch: 64, seed: 5, data: DATA_DIR, trainImages: 512 };
    await train({ ...settings, out: a });
    const controller = new AbortController();
    // Abort after batch 3 of epoch 1 (of 8 batches per epoch).
    const stopped = train({ ...settings, out: b, signal: controller.signal, onProgress: (done, _, epoch) => epoch === 1 && done === 3 && controller.abort() });
    await expect(stopped).rejects.toMatchObject({ name: 'AbortError' });
    expect(readFileSync(join(b, 'log.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
    await train({ out: b, resume: true, data: DATA_DIR, trainImages: 512 });
    expect(readFileSync(join(b, 'model.onnx')).equals(readFileSync(join(a, 'model.onnx')))).toBe(true);
    expect(readFileSync(join(b, 'checkpoint.bin')).equals(readFileSync(join(a, 'checkpoint.bin')))).toBe(true);
  }, 300_000);

  it('SIGTERM during `stoxnet train` exits 143 with the checkpoint intact; --resume finishes the run', async () => {
    const out = tmp();
    const r = await interrupt(['train', '--arch', 'resnet20', '--out', out, '--epochs', '2', ...small], /"epoch":1/, 'SIGTERM');
    expect(r.code).toBe(143);
    expect(r.stderr).toMatch(/interrupted by SIGTERM; the state is checkpointed in .*; continue with `stoxnet train --resume/);
    expect(existsSync(join(out, 'checkpoint.bin'))).toBe(true);
    const { stdout } = await run(process.execPath, [CLI, 'train', '--resume', out, '--data', DATA_DIR, '--train-images', '512', '--json']);
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!).epoch).toBe(2);
    expect(existsSync(join(out, 'model.onnx'))).toBe(true);
  }, 300_000);

  it('SIGINT during `stoxnet sweep` exits 130 keeping the finished lines; the rerun completes the grid', async () => {
    const dir = tmp();
    const grid = join(dir, 'grid.json');
    writeFileSync(grid, JSON.stringify({ model: R20(), images: 200, base: { converter: 'mtj', calibrationImages: 16 }, axes: { samples: [1, 2, 4, 8], seed: [0, 1] } }));
    const out = join(dir, 'results.jsonl');
    const r = await interrupt(['sweep', '--grid', grid, '--out', out], /\(2\/8\)/, 'SIGINT');
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/interrupted by SIGINT; the finished points are in/);
    const kept = readFileSync(out, 'utf8');
    expect(kept.endsWith('\n')).toBe(true);
    const n = kept.trim().split('\n').length;
    expect(n).toBeGreaterThanOrEqual(2);
    expect(n).toBeLessThan(8);
    const { stderr } = await run(process.execPath, [CLI, 'sweep', '--grid', grid, '--out', out], { env: { ...process.env, STOXNET_DATA: DATA_DIR } });
    expect(stderr).toContain(`${8 - n} points evaluated, ${n} already in`);
    expect(readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(8);
  }, 300_000);
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('memory bounds (stated in the README)', () => {
  // Each in its own process, so that the peak is that of the job alone.
  const peak = async (script: string): Promise<{ peakRssMB: number } & Record<string, number>> => {
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: packageRoot(), env: { ...process.env, STOXNET_DATA: DATA_DIR }, maxBuffer: 1 << 24 });
    return JSON.parse(stdout);
  };
  const dist = (m: string) => JSON.stringify(join(packageRoot(), 'dist', 'ts', m));

  it('a 10,000-image StoX eval at batch 1,000 stays under 1.5 GB', async () => {
    const r = await peak(`
      const { evaluate } = await import(${dist('eval.js')});
      const run = await evaluate({ model: ${JSON.stringify(R20())}, batch: 1000, config: { converter: 'mtj', samples: 4 } });
      console.log(JSON.stringify({ images: run.report.images, peakRssMB: process.resourceUsage().maxRSS / 1024 }));`);
    console.log(`peak RSS, 10,000-image eval at batch 1,000: ${r.peakRssMB.toFixed(0)} MB`);
    expect(r.images).toBe(10_000);
    expect(r.peakRssMB).toBeLessThan(1536);
  }, 300_000);

  it('PS-QAT training at batch 128 stays under 2.5 GB', async () => {
    const out = tmp();
    const r = await peak(`
      const { train } = await import(${dist('train.js')});
      await train({ from: ${JSON.stringify(model('resnet20-bn.onnx'))}, out: ${JSON.stringify(out)}, epochs: 1, batch: 128, lr: 0.01, trainImages: 1280, stox: { converter: 'mtj', samples: 4, calibrationImages: 64 } });
      console.log(JSON.stringify({ peakRssMB: process.resourceUsage().maxRSS / 1024 }));`);
    console.log(`peak RSS, PS-QAT T = 4 training at batch 128: ${r.peakRssMB.toFixed(0)} MB`);
    expect(r.peakRssMB).toBeLessThan(2560);
  }, 300_000);
});
