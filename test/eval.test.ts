// The native FP32 engine against onnxruntime on the real CIFAR-10 test set,
// determinism of the logits, and the CLI's JSON contract.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { argmax, evaluate } from '../ts/eval.js';
import { CLI, DATA_DIR, HAVE_DATA, HAVE_MODELS, model } from './helpers/env.js';

const run = promisify(execFile);

function agreement(a: Float32Array, b: Float32Array, classes: number) {
  let same = 0;
  let maxDiff = 0;
  const n = a.length / classes;
  for (let i = 0; i < n; i++) {
    const ra = a.subarray(i * classes, (i + 1) * classes);
    const rb = b.subarray(i * classes, (i + 1) * classes);
    if (argmax(ra) === argmax(rb)) same++;
    for (let j = 0; j < classes; j++) maxDiff = Math.max(maxDiff, Math.abs(ra[j] - rb[j]));
  }
  return { same: same / n, maxDiff };
}

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('native FP32 = onnxruntime on all 10,000 test images', () => {
  // Published top-1 of the shared models (onnxruntime, measured; ../shared/README.md).
  const expected: Record<string, number> = {
    'resnet20.onnx': 0.9173,
    'resnet20-bn.onnx': 0.9173,
    'resnet32.onnx': 0.9263,
    'resnet44.onnx': 0.931,
    'resnet56.onnx': 0.9339,
  };
  for (const [name, top1] of Object.entries(expected)) {
    it(name, async () => {
      const nat = await evaluate({ model: model(name), data: DATA_DIR, backend: 'native' });
      const ort = await evaluate({ model: model(name), data: DATA_DIR, backend: 'ort' });
      expect(nat.report.images).toBe(10_000);
      expect(nat.report.top1).toBe(ort.report.top1);
      expect(nat.report.top1).toBeCloseTo(top1, 4);
      const { same, maxDiff } = agreement(nat.logits, ort.logits, 10);
      console.log(`${name}: top-1 ${nat.report.top1} (ort ${ort.report.top1}), class agreement ${same}, max |logit diff| ${maxDiff.toExponential(2)}, native ${nat.report.imagesPerSecond.toFixed(0)} img/s, ort ${ort.report.imagesPerSecond.toFixed(0)} img/s`);
      expect(same).toBeGreaterThanOrEqual(0.9995);
      expect(maxDiff).toBeLessThan(1e-3);
    });
  }
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('logitsDigest does not depend on threads or batch size', () => {
  it('threads 1 vs 2, batch 1 vs 100 vs 37', async () => {
    const base = { model: model('resnet20.onnx'), data: DATA_DIR, limit: 300 };
    const digests = await Promise.all([
      evaluate({ ...base, threads: 1, batch: 100 }),
      evaluate({ ...base, threads: 2, batch: 100 }),
      evaluate({ ...base, threads: 2, batch: 1 }),
      evaluate({ ...base, threads: 2, batch: 37 }),
    ]);
    const set = new Set(digests.map((d) => d.report.logitsDigest));
    expect(set.size).toBe(1);
    // A different model gives a different digest: the digest covers the logits.
    const other = await evaluate({ ...base, model: model('resnet32.onnx') });
    expect(other.report.logitsDigest).not.toBe(digests[0].report.logitsDigest);
  });
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('stoxnet eval CLI', () => {
  it('--json prints the contract on stdout and nothing else', async () => {
    const { stdout, stderr } = await run('node', [CLI, 'eval', '--model', model('resnet20.onnx'), '--data', DATA_DIR, '--converter', 'fp', '--limit', '200', '--threads', '2', '--batch', '50', '--json']);
    expect(stderr).toBe(''); // progress only on a TTY
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const r = JSON.parse(lines[0]);
    expect(r.images).toBe(200);
    expect(r.backend).toBe('native');
    expect(r.correct).toBe(r.perClass.reduce((a: number, b: number) => a + b, 0));
    expect(r.top1).toBeCloseTo(r.correct / 200, 12);
    expect(r.perClass).toHaveLength(10);
    expect(r.perClassTotal.reduce((a: number, b: number) => a + b, 0)).toBe(200);
    expect(r.seconds).toBeGreaterThan(0);
    expect(r.imagesPerSecond).toBeCloseTo(200 / r.seconds, 6);
    expect(r.logitsDigest).toMatch(/^[0-9a-f]{64}$/);
    // The API gives the same digest as the CLI.
    const api = await evaluate({ model: model('resnet20.onnx'), data: DATA_DIR, limit: 200 });
    expect(api.report.logitsDigest).toBe(r.logitsDigest);
  });

  it('--backend ort runs onnxruntime: its logits, which predict what the native engine predicts', async () => {
    const { stdout } = await run('node', [CLI, 'eval', '--model', model('resnet20.onnx'), '--data', DATA_DIR, '--backend', 'ort', '--limit', '100', '--json']);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ backend: 'ort', images: 100 });
    const base = { model: model('resnet20.onnx'), data: DATA_DIR, limit: 100 };
    const [ort, nat] = await Promise.all([evaluate({ ...base, backend: 'ort' }), evaluate(base)]);
    // The CLI ran onnxruntime: the API's onnxruntime logits, bit for bit, and not the native engine's.
    expect(r.logitsDigest).toBe(ort.report.logitsDigest);
    expect(r.logitsDigest).not.toBe(nat.report.logitsDigest);
    expect(r.correct).toBe(ort.report.correct);
    expect(r.perClass).toEqual(ort.report.perClass);
    // Same predictions image by image, logits within float rounding.
    const { same, maxDiff } = agreement(ort.logits, nat.logits, 10);
    expect(same).toBe(1);
    expect(maxDiff).toBeLessThan(1e-3);
    expect(nat.report.correct).toBe(r.correct);
  });

  it('bad flags and values are named, exit code 2', async () => {
    const cases: [string[], RegExp][] = [
      [['eval', '--model', model('resnet20.onnx'), '--batch', '0'], /batch: expected an integer in \[1, 10000\], got "0"/],
      [['eval', '--model', model('resnet20.onnx'), '--backend', 'gpu'], /backend: expected one of native, ort, js, got "gpu"/],
      [['eval', '--model', model('resnet20.onnx'), '--bogus'], /Unknown option '--bogus'/],
      [['eval'], /--model PATH is required/],
      [['frobnicate'], /unknown command "frobnicate"/],
    ];
    for (const [args, message] of cases) {
      const err = await run('node', [CLI, ...args]).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
      expect(err, args.join(' ')).toBeDefined();
      expect(err!.code).toBe(2);
      expect(err!.stderr).toMatch(message);
    }
  });

  it('a missing model file is a runtime error naming the file, exit code 1', async () => {
    const err = await run('node', [CLI, 'eval', '--model', '/nonexistent/m.onnx', '--data', DATA_DIR]).catch((e) => e);
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(/m\.onnx/);
  });

  it('--help documents every flag', async () => {
    const { stdout } = await run('node', [CLI, 'eval', '--help']);
    for (const flag of ['--model', '--data', '--converter', '--backend', '--limit', '--batch', '--threads', '--json']) expect(stdout).toContain(flag);
    const top = await run('node', [CLI, '--help']);
    expect(top.stdout).toMatch(/eval/);
    expect(top.stdout).toMatch(/data/);
  });
});
