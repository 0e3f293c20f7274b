// MaxPool, AveragePool and GlobalMaxPool end to end, without external data:
// small VGG-style ONNX graphs built here import, agree with onnxruntime in
// FP32, run bit for bit the same in the JS reference and the native engine
// (digital and on crossbars), round-trip through export, train, and refuse
// what the engine does not do with an error naming the node.
import { describe, expect, it } from 'vitest';
import { attr, model, node, randoms, tensor, valueInfo } from '../bench/onnx-builder.js';
import { logitsDigest } from '../ts/digest.js';
import { native } from '../ts/native.js';
import type { Network } from '../ts/network.js';
import { exportOnnx } from '../ts/onnx/export.js';
import { OnnxImportError, importOnnxBytes } from '../ts/onnx/import.js';
import { createTrainer, resolveTrainSettings } from '../ts/train.js';
import { inputs, LEN, logits, ortLogits, scaled } from './helpers/graphs.js';


/** The second pooling stage and the head: what each variant puts after Conv → Relu → MaxPool → Conv → Relu. */
interface Variant {
  first: Record<string, object>;
  second: object[];
  features: number;
}

const VARIANTS: Record<string, Variant> = {
  'AveragePool(3, stride 2, pads 1, ceil_mode, count_include_pad 0) → GlobalMaxPool': {
    first: { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) },
    second: [
      node('AveragePool', ['r2'], ['p2'], { kernel_shape: attr.ints([3, 3]), strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 1, 1]), ceil_mode: attr.int(1), count_include_pad: attr.int(0) }),
      node('GlobalMaxPool', ['p2'], ['g']),
      node('Flatten', ['g'], ['f']),
    ],
    features: 16,
  },
  'AveragePool(3, stride 2, pads 1, ceil_mode, count_include_pad 0) → Flatten': {
    first: { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) },
    second: [node('AveragePool', ['r2'], ['p2'], { kernel_shape: attr.ints([3, 3]), strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 1, 1]), ceil_mode: attr.int(1) }), node('Flatten', ['p2'], ['f'])],
    // 16 × 16 → ceil((16 + 2 − 3) / 2) + 1 = 9
    features: 16 * 9 * 9,
  },
  // 32 × 32 with pads 1, kernel 2, stride 3, ceil_mode: a 12th window would start in the padding and is dropped (11),
  // as onnxruntime's kernel does; its static shape inference keeps it, so a Flatten → Gemm here would not load there.
  'MaxPool with pads and a dropped ceil_mode window, AveragePool count_include_pad 1 with asymmetric pads': {
    first: { kernel_shape: attr.ints([2, 2]), strides: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]), ceil_mode: attr.int(1) },
    second: [
      node('AveragePool', ['r2'], ['p2'], { kernel_shape: attr.ints([3, 2]), strides: attr.ints([2, 1]), pads: attr.ints([2, 0, 1, 1]), ceil_mode: attr.int(1), count_include_pad: attr.int(1) }),
      node('GlobalAveragePool', ['p2'], ['g']),
      node('Flatten', ['g'], ['f']),
    ],
    // 11 × 11 → h: ceil((11 + 3 − 3) / 2) + 1 = 7, w: (11 + 1 − 2) + 1 = 11
    features: 16,
  },
};

function vgg(v: Variant, extra: Record<string, object> = {}): Uint8Array {
  return model({
    inputs: [valueInfo('x', ['N', 3, 32, 32])],
    nodes: [
      node('Conv', ['x', 'w1', 'b1'], ['c1'], { kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]) }),
      node('Relu', ['c1'], ['r1']),
      node('MaxPool', ['r1'], ['p1'], { ...v.first, ...extra }, 'pool1'),
      node('Conv', ['p1', 'w2', 'b2'], ['c2'], { kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]) }),
      node('Relu', ['c2'], ['r2']),
      ...v.second,
      node('Gemm', ['f', 'w3', 'b3'], ['h'], { transB: attr.int(1) }),
      node('Gemm', ['h', 'w4', 'b4'], ['y'], { transB: attr.int(1) }),
    ],
    initializers: [
      tensor('w1', [8, 3, 3, 3], scaled(8 * 27, 1, 0.4)),
      tensor('b1', [8], scaled(8, 2, 0.1)),
      tensor('w2', [16, 8, 3, 3], scaled(16 * 72, 3, 0.2)),
      tensor('b2', [16], scaled(16, 4, 0.1)),
      tensor('w3', [12, v.features], scaled(12 * v.features, 5, 1 / Math.sqrt(v.features))),
      tensor('b3', [12], scaled(12, 6, 0.1)),
      tensor('w4', [10, 12], scaled(120, 7, 0.3)),
      tensor('b4', [10], scaled(10, 8, 0.1)),
    ],
  });
}

describe('pooling: FP32 ≡ onnxruntime, JS reference ≡ native, export round trip', () => {
  for (const [name, v] of Object.entries(VARIANTS)) {
    it(name, async () => {
      const bytes = vgg(v);
      const net = importOnnxBytes(bytes, 'vgg.onnx');
      // The pooled shapes the importer computed: what the first Gemm's weight expects.
      expect(net.nodes.find((n) => n.op === 'Linear')).toMatchObject({ shape: [12, v.features] });
      expect(net.nodes.map((n) => n.op)).toEqual(expect.arrayContaining(['MaxPool', 'AvgPool']));

      const fp = await logits(net, { converter: 'fp' }, 'native');
      const want = await ortLogits(bytes, inputs);
      expect(fp.length).toBe(want.length);
      const scale = Math.max(...want.map(Math.abs));
      const err = Math.max(...fp.map((a, i) => Math.abs(a - want[i]!)));
      expect(err / scale).toBeLessThanOrEqual(1e-4);

      for (const converter of [{ converter: 'fp' }, { converter: 'ideal' }, { converter: 'mtj', samples: 2 }]) {
        expect(logitsDigest(await logits(net, converter, 'js')), converter.converter).toBe(logitsDigest(await logits(net, converter, 'native')));
      }

      // Export and import give the same IR, and onnxruntime the same logits.
      const again = exportOnnx(net);
      expect(importOnnxBytes(again, 'again.onnx').nodes).toEqual(net.nodes);
      expect(await ortLogits(again, inputs)).toEqual(want);
    });
  }
});

describe('pooling: clear errors', () => {
  const base = Object.values(VARIANTS)[0]!;
  const importError = (bytes: Uint8Array) => {
    try {
      importOnnxBytes(bytes, 'bad.onnx');
    } catch (e) {
      expect(e).toBeInstanceOf(OnnxImportError);
      return (e as Error).message;
    }
    throw new Error('expected an OnnxImportError');
  };

  it('names the node of an unsupported attribute value', () => {
    expect(importError(vgg(base, { dilations: attr.ints([2, 2]) }))).toBe("bad.onnx: node 'pool1' (MaxPool): dilations [2,2] are not supported (only 1)");
    expect(importError(vgg(base, { pads: attr.ints([2, 0, 0, 0]) }))).toContain("node 'pool1' (MaxPool): pads [2,0,0,0] must each be below the kernel [2,2]");
    expect(importError(vgg(base, { auto_pad: attr.string('SAME_UPPER') }))).toContain("node 'pool1' (MaxPool): auto_pad SAME_UPPER is not supported");
  });

  it('the core checks the window too, naming the node', () => {
    const net = importOnnxBytes(vgg(base), 'vgg.onnx');
    const pool = net.nodes.find((n) => n.op === 'MaxPool')!;
    if (pool.op !== 'MaxPool') throw new Error('no MaxPool');
    pool.pads = [0, 0, 2, 0];
    expect(() => new (native().NativeNetwork)(net)).toThrow("node 'pool1' (MaxPool): kernel [2, 2] stride [2, 2] pads [0, 0, 2, 0] do not fit input 32x32 (each pad must be below the kernel)");
  });
});

describe('pooling: training', () => {
  it('trains through MaxPool, AveragePool and GlobalMaxPool, and hands the windows back unchanged', async () => {
    const v = Object.values(VARIANTS)[0]!;
    const net = importOnnxBytes(vgg(v), 'vgg.onnx');
    const n = 8;
    const rng = randoms(n * LEN, 21);
    const bytes = Uint8Array.from(rng, (r) => Math.floor((r + 1) * 127.5));
    const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
    const settings = resolveTrainSettings({ from: 'vgg.onnx', epochs: 1, batch: 4, augment: false, lr: 0.01 });
    const trainer = await createTrainer(net, settings, bytes, labels, 1);
    const progress = await trainer.trainBatches(0, 0, 2, 1);
    expect(Number.isFinite(progress.lossSum)).toBe(true);
    const trained = trainer.network() as unknown as Network;
    const windows = (m: Network) => m.nodes.flatMap((x) => (x.op === 'MaxPool' || x.op === 'AvgPool' || x.op === 'GlobalMaxPool' ? [{ ...x }] : []));
    expect(windows(trained)).toEqual(windows(net).map((x) => expect.objectContaining(x)));
    // The weights moved, and the trained model still exports and imports.
    const conv = (m: Network) => m.nodes.find((x) => x.op === 'Conv')! as { weight: Float32Array };
    expect(conv(trained).weight).not.toEqual(conv(net).weight);
    expect(importOnnxBytes(exportOnnx(trained), 'trained.onnx').nodes.map((x) => x.op)).toEqual(net.nodes.map((x) => x.op));
  });
});
