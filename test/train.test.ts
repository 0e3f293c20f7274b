// Training through the CLI on a small slice of CIFAR-10: the log and
// checkpoint contract, bit-identical resume, ONNX export that onnxruntime
// loads with the same predictions, and PS-QAT models that carry their
// settings and learned state through export and re-import.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import { writeFileAtomic } from '../ts/atomic.js';
import { argmax, evaluate } from '../ts/eval.js';
import { exportOnnx, learnedParams } from '../ts/onnx/export.js';
import { importOnnx } from '../ts/onnx/import.js';
import { native } from '../ts/native.js';
import type { NativeTrainer } from '../ts/native-binding.js';
import { train } from '../ts/train.js';
import { CLI, DATA_DIR, HAVE_DATA, HAVE_MODELS, model } from './helpers/env.js';

const run = promisify(execFile);
const tmp = () => mkdtempSync(join(tmpdir(), 'stoxnet-train-'));
const small = ['--data', DATA_DIR, '--train-images', '256', '--batch', '64', '--seed', '3', '--json'];

describe.skipIf(!HAVE_DATA)('stoxnet train (FP32, from scratch)', () => {
  it('logs, checkpoints, resumes bit for bit (with an EMA of the model) and exports a model onnxruntime agrees with', async () => {
    const [a, b] = [tmp(), tmp()];
    const { stdout } = await run('node', [CLI, 'train', '--arch', 'resnet20', '--out', a, '--epochs', '2', '--ema', '0.9', ...small]);
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.epoch)).toEqual([1, 2]);
    for (const l of lines) {
      expect(l.loss).toBeGreaterThan(0);
      expect(l.loss).toBeLessThan(10);
      for (const key of ['trainTop1', 'testTop1']) expect(l[key] >= 0 && l[key] <= 1, `${key} ${l[key]}`).toBe(true);
      expect(l.lr).toBeGreaterThan(0);
      expect(l.imagesPerSecond).toBeGreaterThan(0);
    }
    expect(readFileSync(join(a, 'log.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
    // Stop after one epoch, resume: the same checkpoint and model, byte for byte.
    await run('node', [CLI, 'train', '--arch', 'resnet20', '--out', b, '--epochs', '2', '--ema', '0.9', '--stop-after', '1', ...small]);
    await run('node', [CLI, 'train', '--resume', b, '--data', DATA_DIR, '--train-images', '256']);
    expect(readFileSync(join(b, 'checkpoint.bin')).equals(readFileSync(join(a, 'checkpoint.bin')))).toBe(true);
    expect(readFileSync(join(b, 'model.onnx')).equals(readFileSync(join(a, 'model.onnx')))).toBe(true);
    // The exported model: onnxruntime loads it and predicts what the native engine predicts.
    const nat = await evaluate({ model: join(a, 'model.onnx'), data: DATA_DIR, limit: 500 });
    const ort = await evaluate({ model: join(a, 'model.onnx'), data: DATA_DIR, limit: 500, backend: 'ort' });
    expect(nat.report.correct).toBe(ort.report.correct);
    expect(nat.report.top1).toBeCloseTo(lines[1].testTop1, 1);
  });

  it('shows progress on a terminal (batches, ETA, epoch, loss, images/s) and nothing in a pipe', async () => {
    const args = [CLI, 'train', '--arch', 'resnet20', '--out', tmp(), '--epochs', '1', '--data', DATA_DIR, '--train-images', '256', '--batch', '64', '--seed', '3'];
    // `script` runs the command on a pseudo-terminal (its stderr is a TTY) and copies what it prints.
    const command = [process.execPath, ...args].map((a) => `'${a}'`).join(' ');
    const tty = await run('script', ['-qfec', command, '/dev/null']);
    expect(tty.stdout).toMatch(/train \[[^\]]*\] \d+% \d\/4 ETA \S+ {2}epoch 1\/1, loss \d+\.\d{4}, \d+ images\/s/);
    expect(tty.stdout).toMatch(/epoch 1\/1: loss /);
    const pipe = await run('node', args);
    expect(pipe.stdout).toMatch(/^epoch 1\/1: loss /);
    expect(pipe.stderr).not.toMatch(/ETA|\[/);
  });

  it('rejects bad settings naming the flag', async () => {
    const err = await run('node', [CLI, 'train', '--arch', 'resnet21', '--out', tmp(), ...small]).catch((e) => e);
    expect(err.stderr).toMatch(/--arch: expected one of resnet20, resnet32, resnet44, resnet56, vgg8, lenet5, got "resnet21"/);
    const both = await run('node', [CLI, 'train', '--out', tmp(), ...small]).catch((e) => e);
    expect(both.stderr).toMatch(/give exactly one of --arch NAME or --from MODEL.onnx/);
    const resume = await run('node', [CLI, 'train', '--resume', tmp()]).catch((e) => e);
    expect(resume.stderr).toMatch(/no checkpoint in/);
    const ema = await run('node', [CLI, 'train', '--arch', 'resnet20', '--out', tmp(), '--ema', '1', ...small]).catch((e) => e);
    expect(ema.stderr).toMatch(/--ema: expected a number in \[0.000001, 0.999999\], got "1"/);
  });
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('distillation', () => {
  it('changes training, survives resume bit for bit, and names a bad teacher', async () => {
    const [a, b, c] = [tmp(), tmp(), tmp()];
    const kd = ['--teacher', model('resnet20.onnx'), '--distill-alpha', '0.8', '--distill-temperature', '3'];
    const args = (out: string) => [CLI, 'train', '--arch', 'resnet20', '--out', out, '--epochs', '2', ...small];
    await run('node', [...args(a), ...kd]);
    await run('node', [...args(b), ...kd, '--stop-after', '1']);
    // The teacher and its settings come back from the checkpoint.
    await run('node', [CLI, 'train', '--resume', b, '--data', DATA_DIR, '--train-images', '256']);
    expect(readFileSync(join(b, 'checkpoint.bin')).equals(readFileSync(join(a, 'checkpoint.bin')))).toBe(true);
    await run('node', args(c));
    expect(readFileSync(join(c, 'checkpoint.bin')).equals(readFileSync(join(a, 'checkpoint.bin')))).toBe(false);
    const missing = join(tmp(), 'no-teacher.onnx');
    const err = await run('node', [...args(tmp()), '--teacher', missing]).catch((e) => e);
    expect(err.stderr).toContain(missing);
    const alpha = await run('node', [...args(tmp()), ...kd, '--distill-alpha', '1.5']).catch((e) => e);
    expect(alpha.stderr).toMatch(/--distill-alpha: expected a number in \[0, 1\], got "1.5"/);
  });
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('PS-QAT', () => {
  it('fine-tunes through the MTJ, and the exported model reproduces its StoX accuracy without flags', async () => {
    const out = tmp();
    const { stdout } = await run('node', [
      CLI, 'train', '--from', model('resnet20-bn.onnx'), '--out', out, '--epochs', '1', '--lr', '0.01',
      '--converter', 'mtj', '--samples', '2', '--calibration-images', '32', '--mtj-grad', 'expected', '--learn-clip', '--ema', '0.5', ...small,
    ]);
    const log = JSON.parse(stdout.trim().split('\n').at(-1)!);
    const path = join(out, 'model.onnx');
    const net = await importOnnx(path);
    expect(net.stox?.config.converter).toBe('mtj');
    expect(Object.keys(net.stox!.layers)).toHaveLength(18);
    const again = await evaluate({ model: path, data: DATA_DIR });
    expect(again.report.converter).toBe('mtj');
    expect(again.report.config.samples).toBe(2);
    expect(again.report.top1).toBe(log.testTop1);
    // Export → import → export → import keeps every bit of the simulation.
    const copy = join(out, 'copy.onnx');
    writeFileAtomic(copy, exportOnnx(net, { config: net.stox!.config, params: learnedParams(net.stox!.layers) }));
    const [x, y] = await Promise.all([evaluate({ model: path, data: DATA_DIR, limit: 100 }), evaluate({ model: copy, data: DATA_DIR, limit: 100 })]);
    expect(y.report.logitsDigest).toBe(x.report.logitsDigest);
    // onnxruntime still loads it, with FP32 semantics: image by image it predicts what the
    // native engine predicts in FP32, which is not what the StoX simulation gives.
    const fp = { model: path, data: DATA_DIR, limit: 100, config: { converter: 'fp' as const } };
    const [ort, nat] = await Promise.all([evaluate({ ...fp, backend: 'ort' }), evaluate(fp)]);
    expect(ort.report.images).toBe(100);
    const predictions = (logits: Float32Array) => Array.from({ length: 100 }, (_, i) => argmax(logits.subarray(i * 10, (i + 1) * 10)));
    expect(predictions(ort.logits)).toEqual(predictions(nat.logits));
    expect(ort.report.correct).toBe(nat.report.correct);
    expect(nat.report.logitsDigest).not.toBe(x.report.logitsDigest);
  });

  it('evaluates each epoch in the engine: the network crosses to JavaScript once, at export', async () => {
    const proto = (native() as unknown as { NativeTrainer: { prototype: NativeTrainer } }).NativeTrainer.prototype;
    const network = vi.spyOn(proto, 'network');
    const evaluator = vi.spyOn(proto, 'evaluator');
    try {
      const out = tmp();
      const { log } = await train({ from: model('resnet20-bn.onnx'), out, data: DATA_DIR, epochs: 2, trainImages: 128, batch: 64, seed: 3, lr: 0.01, stox: { converter: 'mtj', samples: 1, calibrationImages: 16 } });
      expect(log).toHaveLength(2);
      expect(evaluator).toHaveBeenCalledTimes(2);
      expect(network).toHaveBeenCalledTimes(1);
      // What the engine evaluated is what the exported file holds.
      const { report } = await evaluate({ model: join(out, 'model.onnx'), data: DATA_DIR });
      expect(report.top1).toBe(log[1].testTop1);
    } finally {
      network.mockRestore();
      evaluator.mockRestore();
    }
  });

  it('fine-tunes through ideal, adc, sparse-adc and sense-amp; each exported model reproduces its accuracy without flags, sparse-adc as the ADC it resolved to', async () => {
    const converters: [string, string[]][] = [['ideal', []], ['adc', ['--adc-bits', '4', '--adc-range', 'calibrated']], ['sparse-adc', []], ['sense-amp', []]];
    for (const [converter, flags] of converters) {
      // sparse-adc also runs two epochs straight and the same two with a stop and a resume between them.
      const epochs = converter === 'sparse-adc' ? '2' : '1';
      const args = (out: string) => [CLI, 'train', '--from', model('resnet20-bn.onnx'), '--out', out, '--epochs', epochs, '--lr', '0.01', '--converter', converter, ...flags, ...small];
      const out = tmp();
      const { stdout } = await run('node', args(out));
      const log = JSON.parse(stdout.trim().split('\n').at(-1)!);
      const path = join(out, 'model.onnx');
      const { report } = await evaluate({ model: path, data: DATA_DIR });
      expect(report.converter, converter).toBe(converter);
      expect(report.top1, converter).toBe(log.testTop1);
      if (converter !== 'sparse-adc') continue;
      // Every layer runs as the ADC training calibrated: the bits sparse-adc resolves on the starting model.
      const calibrated = await evaluate({ model: model('resnet20-bn.onnx'), data: DATA_DIR, limit: 1, config: { converter: 'sparse-adc' } });
      const bits = calibrated.report.config.layers.map((l) => l.adcBits);
      expect(report.config.layers.map((l) => l.converter)).toEqual(bits.map(() => 'adc'));
      expect(report.config.layers.map((l) => l.adcBits)).toEqual(bits);
      const net = await importOnnx(path);
      expect(report.config.layers.map((l) => net.stox!.layers[l.name].adcBits)).toEqual(bits);
      const resumed = tmp();
      await run('node', [...args(resumed), '--stop-after', '1']);
      await run('node', [CLI, 'train', '--resume', resumed, '--data', DATA_DIR, '--train-images', '256']);
      expect(readFileSync(join(resumed, 'checkpoint.bin')).equals(readFileSync(join(out, 'checkpoint.bin')))).toBe(true);
      expect(readFileSync(join(resumed, 'model.onnx')).equals(readFileSync(join(out, 'model.onnx')))).toBe(true);
    }
  });

  it('fine-tunes bit-sliced (1-bit cells, 1-bit input streams) through the MTJ; the exported model carries the mapping and reproduces its accuracy without flags', async () => {
    const out = tmp();
    const { stdout } = await run('node', [
      CLI, 'train', '--from', model('resnet20-bn.onnx'), '--out', out, '--epochs', '1', '--lr', '0.01', '--converter', 'mtj', '--samples', '1',
      '--weight-slice-bits', '1', '--input-stream-bits', '1', '--calibration-images', '32', '--learn-clip', '--val-images', '0', ...small,
    ]);
    const log = JSON.parse(stdout.trim().split('\n').at(-1)!);
    const path = join(out, 'model.onnx');
    const { report } = await evaluate({ model: path, data: DATA_DIR });
    expect([report.config.weightSliceBits, report.config.inputStreamBits]).toEqual([1, 1]);
    expect(report.top1).toBe(log.testTop1);
    // Training moved the weights: the first crossbar layer's are not the starting model's.
    const [from, trained] = await Promise.all([importOnnx(model('resnet20-bn.onnx')), importOnnx(path)]);
    const weight = (net: typeof from) => net.nodes.flatMap((n) => (n.op === 'Conv' && n.name.includes('layer1') ? [n.weight] : []))[0];
    expect(weight(trained)).toHaveLength(weight(from).length);
    expect(weight(trained)).not.toEqual(weight(from));
  });

  it('a corrupted embedded setting is named', async () => {
    const dir = tmp();
    const net = await importOnnx(model('resnet20.onnx'));
    const bad = join(dir, 'bad.onnx');
    writeFileSync(bad, exportOnnx(net, { params: { nosuchnode: { normScale: Float32Array.of(1) } } }));
    await expect(importOnnx(bad)).rejects.toThrow(/stoxnet\/nosuchnode\/normScale' does not name a node/);
  });
});
