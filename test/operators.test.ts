// Elementwise arithmetic with broadcasting, the activations (Sigmoid,
// HardSigmoid, HardSwish, LeakyRelu, ReLU6; Dropout, Identity and a final
// Softmax vanish at import), Concat, squeeze-excitation blocks (with the
// static Reshape, Squeeze and Unsqueeze they need), Gemm's alpha / beta /
// transB / transA, Transposes that move values (NCHW → NHWC, H ↔ W, of a
// rank-3 tensor) and ones that do not, end to end, without external data:
// small ONNX graphs built here import, agree with onnxruntime in FP32, run
// bit for bit the same in the JS reference and the native engine (digital
// and on crossbars), round-trip through export, train, and refuse what the
// engine does not do with an error naming the node.
import { describe, expect, it } from 'vitest';
import { BOOL, INT64, attr, i64, model, node, randoms, tensor, valueInfo } from '../bench/onnx-builder.js';
import { logitsDigest } from '../ts/digest.js';
import { native } from '../ts/native.js';
import type { Network } from '../ts/network.js';
import { exportOnnx } from '../ts/onnx/export.js';
import { OnnxImportError, importOnnxBytes } from '../ts/onnx/import.js';
import { createSimulator } from '../ts/simulator.js';
import { resolveConfig } from '../ts/stox.js';
import { createTrainer, resolveTrainSettings } from '../ts/train.js';
import { calibration, inputs, LEN, logits, ortLogits, scaled } from './helpers/graphs.js';

/** Values in [lo, hi]: divisors kept away from 0. */
const within = (n: number, seed: number, lo: number, hi: number) => randoms(n, seed).map((v) => lo + ((v + 1) / 2) * (hi - lo));

const conv = (x: string, w: string, y: string, k = 3) => node('Conv', [x, w, `${w}.b`], [y], { kernel_shape: attr.ints([k, k]), pads: attr.ints(k === 3 ? [1, 1, 1, 1] : [0, 0, 0, 0]) });
const convWeights = (w: string, o: number, c: number, k: number, seed: number) => [
  tensor(w, [o, c, k, k], scaled(o * c * k * k, seed, 1.2 / Math.sqrt(c * k * k))),
  tensor(`${w}.b`, [o], scaled(o, seed + 1, 0.1)),
];

/** The head every graph ends in: a C-channel image → GlobalAveragePool → Flatten → Gemm to 10 logits. */
function head(x: string, c: number, seed: number, y = 'y'): { nodes: object[]; initializers: object[] } {
  return {
    nodes: [node('GlobalAveragePool', [x], ['gap']), node('Flatten', ['gap'], ['flat']), node('Gemm', ['flat', 'fc.w', 'fc.b'], [y], { transB: attr.int(1) })],
    initializers: [tensor('fc.w', [10, c], scaled(10 * c, seed, 1 / Math.sqrt(c))), tensor('fc.b', [10], scaled(10, seed + 1, 0.1))],
  };
}

function graph(nodes: object[], initializers: object[], y = 'y'): Uint8Array {
  // Opset 17: HardSwish needs 14.
  return model({ inputs: [valueInfo('x', ['N', 3, 32, 32])], nodes, initializers, outputs: [y], opset: 17 });
}

const GRAPHS: Record<string, () => Uint8Array> = {
  // (x − mean) / std on the input, per-channel scale, a scalar from the left, a per-pixel [H,W] constant, tensor ∘ tensor
  // with [N,C,1,1] against [N,C,H,W] both ways, and a constant after a Gemm that already has a bias ([10] against [N,10]).
  'Add / Sub / Mul / Div with constants and tensors, broadcast': () => {
    // The Gemm is named 'logits', the name export gives the graph output: export picks another.
    const h = head('q', 8, 20, 'logits');
    return graph(
      [
        node('Sub', ['x', 'mean'], ['xc']),
        node('Div', ['xc', 'std'], ['xn']),
        conv('xn', 'w1', 'c1'),
        node('Mul', ['c1', 'gamma'], ['s1']),
        node('Sub', ['half', 's1'], ['s2']),
        node('Add', ['s2', 'plane'], ['s3']),
        node('Relu', ['s3'], ['r1']),
        conv('r1', 'w2', 'c2'),
        node('GlobalAveragePool', ['c2'], ['g']),
        node('Mul', ['c2', 'g'], ['m']),
        node('Relu', ['g'], ['gr']),
        node('Add', ['two', 'gr'], ['den']),
        node('Div', ['m', 'den'], ['d']),
        node('Sub', ['d', 'c2'], ['q0']),
        node('Div', ['one', 'inv'], ['k']),
        node('Mul', ['q0', 'k'], ['q']),
        ...h.nodes,
        node('Sub', ['logits', 'shift'], ['y']),
      ],
      [
        tensor('mean', [3, 1, 1], [0.1, -0.2, 0.05]),
        tensor('std', [1, 3, 1, 1], [0.5, 1.5, 2]),
        ...convWeights('w1', 8, 3, 3, 1),
        tensor('gamma', [8, 1, 1], scaled(8, 3, 1.5)),
        tensor('half', [], [0.5]),
        tensor('plane', [32, 32], scaled(32 * 32, 4, 0.3)),
        ...convWeights('w2', 8, 8, 3, 5),
        tensor('two', [1], [2]),
        tensor('one', [1, 1, 1], [1]),
        tensor('inv', [8, 1, 1], within(8, 7, 0.5, 2)),
        ...h.initializers,
        tensor('shift', [10], scaled(10, 8, 0.2)),
      ],
    );
  },
  // Expand 1×1 → Clip(0, 6) → 3×3 → Clip(0, 6) → project 1×1, plus the block input (ordinary convs: depthwise is not here yet).
  'MobileNetV2-style residual: ReLU6 as Clip(0, 6), residual Add': () => {
    const h = head('res', 8, 20);
    return graph(
      [
        conv('x', 'stem', 's'),
        node('Clip', ['s', 'zero', 'six'], ['s6']),
        conv('s6', 'expand', 'e', 1),
        node('Clip', ['e', 'zero', 'six'], ['e6']),
        conv('e6', 'mid', 'm'),
        node('Clip', ['m', 'zero', 'six'], ['m6']),
        conv('m6', 'project', 'p', 1),
        node('Add', ['p', 's6'], ['res']),
        ...h.nodes,
      ],
      [
        ...convWeights('stem', 8, 3, 3, 1),
        tensor('zero', [], [0]),
        tensor('six', [], [6]),
        ...convWeights('expand', 24, 8, 1, 3),
        ...convWeights('mid', 24, 24, 3, 5),
        ...convWeights('project', 8, 24, 1, 7),
        ...h.initializers,
      ],
    );
  },
  // Depthwise 3×3 (group = 24 channels: 24 crossbar layers of 9 rows) and a grouped 1×1 (group 2) between ReLU6s.
  'MobileNetV2-style block: depthwise and grouped Conv (group > 1), ReLU6, residual Add': () => {
    const h = head('res', 8, 22);
    return graph(
      [
        conv('x', 'stem', 's'),
        node('Clip', ['s', 'zero', 'six'], ['s6']),
        conv('s6', 'expand', 'e', 1),
        node('Clip', ['e', 'zero', 'six'], ['e6']),
        node('Conv', ['e6', 'dw', 'dw.b'], ['d'], { kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]), group: attr.int(24) }),
        node('Clip', ['d', 'zero', 'six'], ['d6']),
        node('Conv', ['d6', 'project', 'project.b'], ['p'], { kernel_shape: attr.ints([1, 1]), group: attr.int(2) }),
        node('Add', ['p', 's6'], ['res']),
        ...h.nodes,
      ],
      [
        ...convWeights('stem', 8, 3, 3, 31),
        tensor('zero', [], [0]),
        tensor('six', [], [6]),
        ...convWeights('expand', 24, 8, 1, 33),
        ...convWeights('dw', 24, 1, 3, 35),
        ...convWeights('project', 8, 12, 1, 37),
        ...h.initializers,
      ],
    );
  },
  'Sigmoid, HardSigmoid, HardSwish, LeakyRelu (attributes and defaults), Dropout and Identity': () => activations(false),
  // Each layer reads the Concat of everything before it (axis 1, then -3, of 2 and 3 inputs), a 1×1 transition and an
  // AveragePool; the head concatenates two pooled vectors ([N,F], axis -1).
  'DenseNet-style block: Concat along the channels': () =>
    graph(
      [
        conv('x', 'stem', 's'),
        node('Relu', ['s'], ['s0']),
        conv('s0', 'g1', 'c1'),
        node('Relu', ['c1'], ['r1']),
        node('Concat', ['s0', 'r1'], ['k1'], { axis: attr.int(1) }),
        conv('k1', 'g2', 'c2'),
        node('Relu', ['c2'], ['r2']),
        node('Concat', ['s0', 'r1', 'r2'], ['k2'], { axis: attr.int(-3) }),
        conv('k2', 'transition', 't', 1),
        node('AveragePool', ['t'], ['p'], { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) }),
        node('GlobalAveragePool', ['p'], ['ga']),
        node('GlobalMaxPool', ['p'], ['gm']),
        node('Flatten', ['ga'], ['fa']),
        node('Flatten', ['gm'], ['fm']),
        node('Concat', ['fa', 'fm'], ['f'], { axis: attr.int(-1) }),
        node('Gemm', ['f', 'fc.w', 'fc.b'], ['y'], { transB: attr.int(1) }),
      ],
      [
        ...convWeights('stem', 8, 3, 3, 1),
        ...convWeights('g1', 4, 8, 3, 3),
        ...convWeights('g2', 4, 12, 3, 5),
        ...convWeights('transition', 8, 16, 1, 7),
        tensor('fc.w', [10, 16], scaled(160, 9, 0.25)),
        tensor('fc.b', [10], scaled(10, 10, 0.1)),
      ],
    ),
  'Transpose that moves values: H ↔ W between convs, NCHW → NHWC and a rank-3 [N,C,H] → [N,H,C] before Flatten → Gemm': () => movingTransposes(),
  'Transpose [1,0] → Gemm with transA 1; Transposes of [N,F] and of [N,C,1,1] that move no value': () => transposedGemms(),
  'squeeze-excitation: GlobalAveragePool → Flatten → Gemm → Relu → Gemm → Sigmoid → Reshape → Mul': () => squeezeExcitation('flatten'),
  'squeeze-excitation: Reshape with the batch from Shape, Unsqueeze, the scale as the left operand': () => squeezeExcitation('shape'),
  'squeeze-excitation: Squeeze, HardSigmoid, Unsqueeze (MobileNetV3-style)': () => squeezeExcitation('squeeze'),
  // alpha and beta fold into the Linear's weight and bias; [N,8,1,1] → [N,1,1,8] moves no value before the Flatten.
  'Gemm with alpha, beta, transB 0 and 1; MatMul + Add; a Transpose before Flatten and before Reshape': () =>
    graph(
      [
        conv('x', 'w1', 'c1'),
        node('Relu', ['c1'], ['r1']),
        node('GlobalAveragePool', ['r1'], ['g']),
        node('Transpose', ['g'], ['gt'], { perm: attr.ints([0, 2, 3, 1]) }),
        node('Flatten', ['gt'], ['f']),
        node('Transpose', ['g'], ['gt2'], { perm: attr.ints([0, 3, 1, 2]) }),
        node('Reshape', ['gt2', 'nf'], ['f2']),
        node('Add', ['f', 'f2'], ['f3']),
        node('Gemm', ['f3', 'fc1.w', 'fc1.b'], ['h1'], { alpha: attr.float(0.5), beta: attr.float(2) }),
        node('Relu', ['h1'], ['h1r']),
        node('Gemm', ['h1r', 'fc2.w', 'fc2.b'], ['h2'], { transB: attr.int(1), alpha: attr.float(1.5) }),
        node('Relu', ['h2'], ['h2r']),
        node('MatMul', ['h2r', 'fc3.w'], ['m']),
        node('Add', ['m', 'fc3.b'], ['y']),
      ],
      [
        ...convWeights('w1', 8, 3, 3, 1),
        i64('nf', [0, -1]),
        tensor('fc1.w', [8, 12], scaled(96, 3, 0.6)),
        tensor('fc1.b', [12], scaled(12, 4, 0.1)),
        tensor('fc2.w', [12, 12], scaled(144, 5, 0.4)),
        tensor('fc2.b', [1, 12], scaled(12, 6, 0.1)),
        tensor('fc3.w', [12, 10], scaled(120, 7, 0.4)),
        tensor('fc3.b', [10], scaled(10, 8, 0.1)),
      ],
    ),
};

/**
 * Transposes that move values: H ↔ W between two convs (the first has stride [1,2], so H ≠ W and a wrong perm
 * changes shapes, not only values), NCHW → NHWC before a Flatten, and [N,C,H] → [N,H,C] of a rank-3 tensor (an
 * AveragePool over the whole width, then Squeeze); the two flattened vectors are concatenated into one Gemm.
 */
function movingTransposes(): Uint8Array {
  return graph(
    [
      node('Conv', ['x', 'w1', 'w1.b'], ['c1'], { kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]), strides: attr.ints([1, 2]) }),
      node('Relu', ['c1'], ['r1']),
      node('Transpose', ['r1'], ['hw'], { perm: attr.ints([0, 1, 3, 2]) }),
      conv('hw', 'w2', 'c2'),
      node('Relu', ['c2'], ['r2']),
      node('AveragePool', ['r2'], ['p'], { kernel_shape: attr.ints([2, 8]), strides: attr.ints([2, 8]) }),
      node('Transpose', ['p'], ['nhwc'], { perm: attr.ints([0, 2, 3, 1]) }),
      node('Flatten', ['nhwc'], ['f1']),
      node('AveragePool', ['r2'], ['rows'], { kernel_shape: attr.ints([1, 32]), strides: attr.ints([1, 32]) }),
      node('Squeeze', ['rows', 'w'], ['seq']),
      node('Transpose', ['seq'], ['seqT'], { perm: attr.ints([0, 2, 1]) }),
      node('Flatten', ['seqT'], ['f2']),
      node('Concat', ['f1', 'f2'], ['f'], { axis: attr.int(1) }),
      node('Gemm', ['f', 'fc.w', 'fc.b'], ['y'], { transB: attr.int(1) }),
    ],
    [
      ...convWeights('w1', 8, 3, 3, 41),
      ...convWeights('w2', 6, 8, 3, 43),
      i64('w', [3]),
      tensor('fc.w', [10, 288], scaled(2880, 45, 1 / Math.sqrt(288))),
      tensor('fc.b', [10], scaled(10, 46, 0.1)),
    ],
  );
}

/**
 * Gemm with transA 1 after a Transpose [1,0] of the [N,F] activations (written as exporters do, once with the perm
 * and once with Transpose's default, the reversed axes), a Transpose [0,1] of [N,F] (no op) and a Transpose of
 * [N,8,1,1] to [N,1,1,8] that moves no value but changes the IR shape, read by a Relu before its Flatten.
 */
function transposedGemms(): Uint8Array {
  return graph(
    [
      conv('x', 'w1', 'c1'),
      node('Relu', ['c1'], ['r1']),
      node('GlobalAveragePool', ['r1'], ['g']),
      node('Transpose', ['g'], ['gt'], { perm: attr.ints([0, 2, 3, 1]) }),
      node('Relu', ['gt'], ['gr']),
      node('Flatten', ['gr'], ['f']),
      node('Transpose', ['f'], ['fT'], { perm: attr.ints([1, 0]) }),
      node('Gemm', ['fT', 'fc1.w', 'fc1.b'], ['h1'], { transA: attr.int(1) }),
      node('Relu', ['h1'], ['h1r']),
      node('Transpose', ['h1r'], ['h1s'], { perm: attr.ints([0, 1]) }),
      node('Transpose', ['h1s'], ['h1T']),
      node('Gemm', ['h1T', 'fc2.w', 'fc2.b'], ['y'], { transA: attr.int(1), transB: attr.int(1), alpha: attr.float(0.75) }),
    ],
    [...convWeights('w1', 8, 3, 3, 51), tensor('fc1.w', [8, 12], scaled(96, 53, 0.6)), tensor('fc1.b', [12], scaled(12, 54, 0.1)), tensor('fc2.w', [10, 12], scaled(120, 55, 0.4)), tensor('fc2.b', [10], scaled(10, 56, 0.1))],
  );
}

/**
 * Conv → Relu → an SE block scaling its 16 channels by a gate computed from their means ([N,16,1,1] × [N,16,H,W])
 * → Conv → Relu → head. The gate's vector goes to [N,16] and back to [N,16,1,1] as `how` says.
 */
function squeezeExcitation(how: 'flatten' | 'shape' | 'squeeze'): Uint8Array {
  const h = head('r2', 8, 20);
  const toVector = {
    flatten: [node('Flatten', ['g'], ['v'])],
    shape: [
      node('Shape', ['g'], ['gs']),
      node('Gather', ['gs', 'zero'], ['n0'], { axis: attr.int(0) }),
      node('Unsqueeze', ['n0', 'axis0'], ['n1']),
      node('Concat', ['n1', 'sixteen'], ['shp'], { axis: attr.int(0) }),
      node('Reshape', ['g', 'shp'], ['v']),
    ],
    squeeze: [node('Squeeze', ['g', 'hw'], ['v'])],
  }[how];
  const gate = how === 'squeeze' ? node('HardSigmoid', ['e2'], ['gate']) : node('Sigmoid', ['e2'], ['gate']);
  const toImage = how === 'flatten' ? node('Reshape', ['gate', 'nc11'], ['g4']) : node('Unsqueeze', ['gate', 'hw'], ['g4']);
  const scale = how === 'shape' ? node('Mul', ['g4', 'r1'], ['se']) : node('Mul', ['r1', 'g4'], ['se']);
  return graph(
    [
      conv('x', 'w1', 'c1'),
      node('Relu', ['c1'], ['r1']),
      node('GlobalAveragePool', ['r1'], ['g']),
      ...toVector,
      node('Gemm', ['v', 'se1.w', 'se1.b'], ['e1'], { transB: attr.int(1) }),
      node('Relu', ['e1'], ['e1r']),
      node('Gemm', ['e1r', 'se2.w', 'se2.b'], ['e2'], { transB: attr.int(1) }),
      gate,
      toImage,
      scale,
      conv('se', 'w2', 'c2'),
      node('Relu', ['c2'], ['r2']),
      ...h.nodes,
    ],
    [
      ...convWeights('w1', 16, 3, 3, 1),
      tensor('se1.w', [4, 16], scaled(64, 3, 0.5)),
      tensor('se1.b', [4], scaled(4, 4, 0.1)),
      tensor('se2.w', [16, 4], scaled(64, 5, 1)),
      tensor('se2.b', [16], scaled(16, 6, 0.5)),
      ...convWeights('w2', 8, 16, 3, 7),
      tensor('zero', [], [0], { dtype: INT64 }),
      i64('axis0', [0]),
      i64('sixteen', [16]),
      i64('hw', [2, 3]),
      i64('nc11', [-1, 16, 1, 1]),
      ...h.initializers,
    ],
  );
}

/** Every activation after a conv of its own; with `softmax` the logits end in a Softmax, which import drops. */
function activations(softmax: boolean): Uint8Array {
  const h = head('a6', 8, 20, softmax ? 'scores' : 'y');
  return graph(
    [
      conv('x', 'w1', 'c1'),
      node('Sigmoid', ['c1'], ['a1']),
      conv('a1', 'w2', 'c2'),
      node('HardSigmoid', ['c2'], ['a2'], { alpha: attr.float(0.3), beta: attr.float(0.6) }),
      conv('a2', 'w3', 'c3'),
      node('HardSwish', ['c3'], ['a3']),
      conv('a3', 'w4', 'c4'),
      node('LeakyRelu', ['c4'], ['a4'], { alpha: attr.float(0.05) }),
      node('Dropout', ['a4', 'ratio', 'training'], ['d']),
      node('Identity', ['d'], ['i']),
      conv('i', 'w5', 'c5'),
      node('HardSigmoid', ['c5'], ['a5']),
      node('LeakyRelu', ['a5'], ['a6']),
      ...h.nodes,
      ...(softmax ? [node('Softmax', ['scores'], ['y'], { axis: attr.int(-1) })] : []),
    ],
    [
      ...convWeights('w1', 8, 3, 3, 1),
      ...convWeights('w2', 8, 8, 3, 3),
      ...convWeights('w3', 8, 8, 3, 5),
      ...convWeights('w4', 8, 8, 3, 7),
      ...convWeights('w5', 8, 8, 3, 9),
      tensor('ratio', [], [0.5]),
      tensor('training', [], [0], { dtype: BOOL }),
      ...h.initializers,
    ],
  );
}

function maxRelativeError(got: Float32Array, want: Float32Array): number {
  expect(got.length).toBe(want.length);
  const scale = Math.max(...want.map(Math.abs));
  return Math.max(...got.map((a, i) => Math.abs(a - want[i]!))) / scale;
}

const importError = (bytes: Uint8Array) => {
  try {
    importOnnxBytes(bytes, 'bad.onnx');
  } catch (e) {
    expect(e).toBeInstanceOf(OnnxImportError);
    return (e as Error).message;
  }
  throw new Error('expected an OnnxImportError');
};

describe('operators: FP32 ≡ onnxruntime, JS reference ≡ native, export round trip', () => {
  for (const [name, build] of Object.entries(GRAPHS)) {
    it(name, async () => {
      const bytes = build();
      const net = importOnnxBytes(bytes, 'ops.onnx');
      const want = await ortLogits(bytes, inputs);
      expect(maxRelativeError(await logits(net, { converter: 'fp' }, 'native'), want)).toBeLessThanOrEqual(1e-4);

      for (const converter of [{ converter: 'fp' }, { converter: 'ideal' }, { converter: 'mtj', samples: 2 }]) {
        expect(logitsDigest(await logits(net, converter, 'js')), converter.converter).toBe(logitsDigest(await logits(net, converter, 'native')));
      }

      // Export and import give the same IR, and onnxruntime the same logits.
      const again = exportOnnx(net);
      expect(importOnnxBytes(again, 'again.onnx').nodes).toEqual(net.nodes);
      expect(maxRelativeError(await ortLogits(again, inputs), want)).toBeLessThanOrEqual(1e-6);
    });
  }

  it('maps each constant to its broadcast [c, h, w] and side; a constant Add after a bias-less MatMul is its bias', () => {
    const net = importOnnxBytes(GRAPHS['Add / Sub / Mul / Div with constants and tensors, broadcast']!(), 'ops.onnx');
    const binary = Object.fromEntries(net.nodes.flatMap((n) => (n.op === 'Add' || n.op === 'Sub' || n.op === 'Mul' || n.op === 'Div' ? [[n.name, n]] : [])));
    expect(binary.xc).toMatchObject({ op: 'Sub', inputs: [0], constantShape: [3, 1, 1] });
    expect(binary.xc!.constantFirst).toBeUndefined();
    expect(binary.s2).toMatchObject({ op: 'Sub', constantShape: [1, 1, 1], constantFirst: true, constant: Float32Array.of(0.5) });
    expect(binary.s3).toMatchObject({ op: 'Add', constantShape: [1, 32, 32] });
    expect(binary.m).toMatchObject({ op: 'Mul', inputs: [8, 9] });
    expect(binary.m!.constant).toBeUndefined();
    expect(binary.y).toMatchObject({ op: 'Sub', constantShape: [10, 1, 1] });

    const matmul = importOnnxBytes(
      graph(
        [node('GlobalAveragePool', ['x'], ['g']), node('Flatten', ['g'], ['f']), node('MatMul', ['f', 'w'], ['mm']), node('Add', ['b', 'mm'], ['y'])],
        [tensor('w', [3, 10], scaled(30, 1, 1)), tensor('b', [1, 10], scaled(10, 2, 1))],
      ),
      'mm.onnx',
    );
    expect(matmul.nodes.map((n) => n.op)).toEqual(['GlobalAvgPool', 'Flatten', 'Linear']);
  });
});

describe('activations at import', () => {
  it('keeps each attribute or its ONNX default; Dropout and Identity vanish; a final Softmax is dropped', () => {
    const net = importOnnxBytes(activations(false), 'ops.onnx');
    const acts = net.nodes.filter((n) => n.op === 'Sigmoid' || n.op === 'HardSigmoid' || n.op === 'HardSwish' || n.op === 'LeakyRelu');
    expect(acts.map((n) => [n.op, n.alpha, n.beta])).toEqual([
      ['Sigmoid', undefined, undefined],
      ['HardSigmoid', Math.fround(0.3), Math.fround(0.6)],
      ['HardSwish', undefined, undefined],
      ['LeakyRelu', Math.fround(0.05), undefined],
      ['HardSigmoid', Math.fround(0.2), 0.5],
      ['LeakyRelu', Math.fround(0.01), undefined],
    ]);
    // The conv after Dropout → Identity reads the LeakyRelu directly.
    const c5 = net.nodes.findIndex((n) => n.name === 'c5');
    expect(net.nodes[c5]!.inputs).toEqual([net.nodes.findIndex((n) => n.name === 'a4') + 1]);
    // Softmax is strictly increasing in each logit: the top-1 class is the same, and the importer drops it.
    const dropped = importOnnxBytes(activations(true), 'softmax.onnx');
    expect(dropped.nodes.map((n) => n.op)).toEqual(net.nodes.map((n) => n.op));
    expect(dropped.output).toBe(net.output);
  });

  it('counts their digital operations for the cost model: per value 3 (Sigmoid, HardSwish), 2 (HardSigmoid), 1 (LeakyRelu, each elementwise op)', async () => {
    for (const build of [() => activations(false), GRAPHS['Add / Sub / Mul / Div with constants and tensors, broadcast']!]) {
      const net = importOnnxBytes(build(), 'ops.onnx');
      const { backend } = await createSimulator(net, resolveConfig({ converter: 'fp', seed: 5 }), { dataDir: '', threads: 1, engine: 'native', calibration });
      await backend.run(inputs, 0);
      const counts = backend.counts!();
      const perValue: Record<string, number> = { Sigmoid: 3, HardSwish: 3, HardSigmoid: 2, LeakyRelu: 1, Add: 1, Sub: 1, Mul: 1, Div: 1 };
      let checked = 0;
      net.nodes.forEach((n, i) => {
        if (!(n.op in perValue)) return;
        // Outputs are 8×32×32 images except the normalised input (3×32×32), the gate's denominator (8) and the logits (10).
        const values = ({ xc: 3 * 32 * 32, xn: 3 * 32 * 32, den: 8, y: 10 } as Record<string, number>)[n.name] ?? 8 * 32 * 32;
        expect(counts[i]!.digitalOps, n.name).toBe(6 * values * perValue[n.op]!);
        checked++;
      });
      expect(checked).toBeGreaterThanOrEqual(6);
    }
  });

  it('refuses a Softmax before the output, training-mode Dropout and non-finite attributes, naming the node', () => {
    const small = (nodes: object[], initializers: object[] = []) =>
      graph([conv('x', 'w1', 'c1'), ...nodes, ...head('r', 4, 20).nodes], [...convWeights('w1', 4, 3, 3, 1), ...initializers, ...head('r', 4, 20).initializers]);
    expect(importError(small([node('Softmax', ['c1'], ['r'], { axis: attr.int(1) }, 'sm')]))).toBe(
      "bad.onnx: node 'sm' (Softmax): only supported as the last node, where it is dropped (it does not change the top-1 class)",
    );
    expect(importError(small([node('Dropout', ['c1', 'ratio', 'on'], ['r'], {}, 'drop')], [tensor('ratio', [], [0.5]), tensor('on', [], [1], { dtype: BOOL })]))).toBe(
      "bad.onnx: node 'drop' (Dropout): training_mode 'on' must be a constant false (dropout runs at inference only)",
    );
    expect(importError(small([node('LeakyRelu', ['c1'], ['r'], { alpha: attr.float(Infinity) }, 'leaky')]))).toBe("bad.onnx: node 'leaky' (LeakyRelu): alpha Infinity is not a finite number");
    const logSoftmax = graph(
      [conv('x', 'w1', 'c1'), node('GlobalAveragePool', ['c1'], ['g']), node('Flatten', ['g'], ['f']), node('Gemm', ['f', 'fc.w', 'fc.b'], ['s'], { transB: attr.int(1) }), node('LogSoftmax', ['s'], ['y'], { axis: attr.int(0) }, 'lsm')],
      [...convWeights('w1', 4, 3, 3, 1), ...head('r', 4, 20).initializers],
    );
    expect(importError(logSoftmax)).toBe("bad.onnx: node 'lsm' (LogSoftmax): only over the classes of [N,classes] is supported, got axis 0 of [N,10]");
  });

  it('the core checks the attributes too, naming the node', () => {
    const net = importOnnxBytes(activations(false), 'ops.onnx');
    const leaky = net.nodes.find((n) => n.op === 'LeakyRelu')!;
    if (leaky.op !== 'LeakyRelu') throw new Error('no LeakyRelu');
    leaky.alpha = Number.NaN;
    expect(() => new (native().NativeNetwork)(net)).toThrow(`node 'a4' (LeakyRelu): alpha NaN and beta 0 must be finite`);
  });
});

describe('grouped Conv', () => {
  it('becomes one conv per group on its channel slice, concatenated; the depthwise groups read 9 rows each', () => {
    const net = importOnnxBytes(GRAPHS['MobileNetV2-style block: depthwise and grouped Conv (group > 1), ReLU6, residual Add']!(), 'g.onnx');
    // Nodes are named after their output ('d', the depthwise conv; 'p', the grouped projection).
    const dw = net.nodes.filter((n) => n.name.startsWith('d.group'));
    expect(dw.filter((n) => n.op === 'Conv').map((n) => (n as { shape: number[] }).shape)).toEqual(new Array(24).fill([1, 1, 3, 3]));
    expect(dw.filter((n) => n.op === 'SliceChannels').map((n) => [(n as { start: number[] }).start[0], (n as { end: number[] }).end[0]])).toEqual(Array.from({ length: 24 }, (_, g) => [g, g + 1]));
    const project = net.nodes.filter((n) => n.op === 'Conv' && n.name.startsWith('p.group'));
    expect(project.map((n) => (n as { shape: number[] }).shape)).toEqual([[4, 12, 1, 1], [4, 12, 1, 1]]);
    expect(net.nodes.find((n) => n.name === 'p')).toMatchObject({ op: 'Concat', inputs: project.map((c) => net.nodes.indexOf(c) + 1) });
  });

  it('refuses a group that does not divide the channels, naming the node', () => {
    const bytes = graph([node('Conv', ['x', 'w', 'w.b'], ['y'], { kernel_shape: attr.ints([3, 3]), group: attr.int(2) })], convWeights('w', 3, 1, 3, 5));
    expect(importError(bytes)).toMatch(/group 2 must be a positive divisor of the 3 output channels/);
  });
});

describe('Concat', () => {
  const dense = () => importOnnxBytes(GRAPHS['DenseNet-style block: Concat along the channels']!(), 'dense.onnx');

  it('reads its inputs in order, and refuses other axes and shapes naming the node', () => {
    const net = dense();
    const value = (name: string) => net.nodes.findIndex((n) => n.name === name) + 1;
    expect(net.nodes.filter((n) => n.op === 'Concat').map((n) => n.inputs)).toEqual([
      [value('s0'), value('r1')],
      [value('s0'), value('r1'), value('r2')],
      [value('fa'), value('fm')],
    ]);
    const bad = (attrs: Record<string, object>, b = 's0') =>
      graph(
        [conv('x', 'stem', 's'), node('Relu', ['s'], ['s0']), node('MaxPool', ['s0'], ['half'], { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) }), node('Concat', ['s0', b], ['k'], attrs, 'cat'), ...head('k', 16, 20).nodes],
        [...convWeights('stem', 8, 3, 3, 1), ...head('k', 16, 20).initializers],
      );
    expect(importError(bad({ axis: attr.int(2) }))).toBe("bad.onnx: node 'cat' (Concat): axis 2 is not supported (only the channels, 1 or -3)");
    expect(importError(bad({ axis: attr.int(1) }, 'half'))).toBe("bad.onnx: node 'cat' (Concat): input 'half' has shape [N,8,16,16], which does not fit [N,8,32,32] beside it");
    expect(importError(bad({}))).toBe("bad.onnx: node 'cat' (Concat): attribute 'axis' is required");
  });

  it('the core checks the inputs too, naming the node', () => {
    const net = dense();
    const cat = net.nodes.find((n) => n.name === 'f')!;
    cat.inputs = [cat.inputs[0]!, net.nodes.findIndex((n) => n.name === 'p') + 1];
    expect(() => new (native().NativeNetwork)(net)).toThrow("node 'f' (Concat): input shapes 8x1x1 and 8x16x16 differ in height or width");
    cat.inputs = [];
    expect(() => new (native().NativeNetwork)(net)).toThrow("node 'f' (Concat): expects at least 1 input, got 0");
  });
});

describe('squeeze-excitation', () => {
  it('imports to one Mul of the image by its gate, whichever way the gate is reshaped', () => {
    for (const how of ['flatten', 'shape', 'squeeze'] as const) {
      const net = importOnnxBytes(squeezeExcitation(how), 'se.onnx');
      const gate = how === 'squeeze' ? 'HardSigmoid' : 'Sigmoid';
      expect(net.nodes.map((n) => n.op), how).toEqual(['Conv', 'Relu', 'GlobalAvgPool', 'Flatten', 'Linear', 'Relu', 'Linear', gate, 'Mul', 'Conv', 'Relu', 'GlobalAvgPool', 'Flatten', 'Linear']);
      expect(net.nodes[8]!.inputs, how).toEqual(how === 'shape' ? [8, 2] : [2, 8]);
    }
  });

  it('refuses reshapes that move values or the batch, naming the node', () => {
    const bad = (nodes: object[], inits: object[] = []) =>
      graph([conv('x', 'w1', 'c1'), ...nodes, ...head('r', 4, 20).nodes], [...convWeights('w1', 4, 3, 3, 1), ...inits, ...head('r', 4, 20).initializers]);
    expect(importError(bad([node('Reshape', ['c1', 's'], ['r'], {}, 'rs')], [i64('s', [0, 16, 16, 16])]))).toBe(
      "bad.onnx: node 'rs' (Reshape): reshaping [N,4,32,32] to [N,16,16,16] is not supported (only to [N,F], or adding or removing trailing 1s)",
    );
    expect(importError(bad([node('Reshape', ['c1', 's'], ['r'], {}, 'rs')], [i64('s', [2, 2048, 1, 1])]))).toBe(
      "bad.onnx: node 'rs' (Reshape): shape 's' [2,2048,1,1] must keep the batch first (0, -1 or the batch size from Shape) and fix the other dimensions",
    );
    expect(importError(bad([node('Unsqueeze', ['c1', 'a'], ['r'], {}, 'un')], [i64('a', [0])]))).toBe("bad.onnx: node 'un' (Unsqueeze): axes [0] would move the batch axis");
    expect(importError(bad([node('Squeeze', ['c1'], ['r'], {}, 'sq')]))).toBe("bad.onnx: node 'sq' (Squeeze): Squeeze without axes is not supported (it would remove a batch of 1)");
  });
});

describe('Gemm, MatMul and Transpose', () => {
  const build = GRAPHS['Gemm with alpha, beta, transB 0 and 1; MatMul + Add; a Transpose before Flatten and before Reshape']!;

  it('folds alpha and beta into the weight and bias, the MatMul bias into its Linear; the Transpose leaves no node', () => {
    const net = importOnnxBytes(build(), 'gemm.onnx');
    expect(net.nodes.map((n) => n.op)).toEqual(['Conv', 'Relu', 'GlobalAvgPool', 'Flatten', 'Flatten', 'Add', 'Linear', 'Relu', 'Linear', 'Relu', 'Linear']);
    const [fc1, fc2, fc3] = net.nodes.filter((n) => n.op === 'Linear');
    const w1 = Float32Array.from(scaled(96, 3, 0.6));
    // fc1.w is [in, out] (transB 0): the IR's [out, in], times alpha.
    expect(fc1!.weight[1 * 8 + 2]).toBe(Math.fround(0.5 * w1[2 * 12 + 1]!));
    expect(fc1!.bias![3]).toBe(Math.fround(2 * Math.fround(scaled(12, 4, 0.1)[3]!)));
    expect(fc2!.weight[5]).toBe(Math.fround(1.5 * Math.fround(scaled(144, 5, 0.4)[5]!)));
    expect(fc2!.bias).toEqual(Float32Array.from(scaled(12, 6, 0.1)));
    expect(fc3!.bias).toEqual(Float32Array.from(scaled(10, 8, 0.1)));
  });

  it('imports a Transpose that moves values as an IR Transpose of [c, h, w]; a Transpose [1,0] and the transA 1 after it cancel', () => {
    const moving = importOnnxBytes(movingTransposes(), 'moving.onnx');
    expect(moving.nodes.map((n) => n.op)).toEqual(['Conv', 'Relu', 'Transpose', 'Conv', 'Relu', 'AvgPool', 'Transpose', 'Flatten', 'AvgPool', 'Transpose', 'Flatten', 'Concat', 'Linear']);
    // [N,8,32,16] → [N,8,16,32]; [N,6,8,4] → [N,8,4,6]; [N,6,16] (IR [6,16,1]) → [N,16,6].
    expect(moving.nodes.flatMap((n) => (n.op === 'Transpose' ? [n.perm] : []))).toEqual([
      [0, 2, 1],
      [1, 2, 0],
      [1, 0, 2],
    ]);
    const gemms = importOnnxBytes(transposedGemms(), 'gemms.onnx');
    // [N,8,1,1] → [N,1,1,8] moves no value but changes the IR shape: a copy, because a Relu reads it.
    expect(gemms.nodes.map((n) => n.op)).toEqual(['Conv', 'Relu', 'GlobalAvgPool', 'Transpose', 'Relu', 'Flatten', 'Linear', 'Relu', 'Linear']);
    const [fc1, fc2] = gemms.nodes.filter((n) => n.op === 'Linear');
    // fc1.w is [in, out] (transB 0): the IR's [out, in]; each Linear reads the [N,F] before its Transpose [1,0].
    expect(fc1).toMatchObject({ shape: [12, 8], inputs: [6] });
    expect(fc1!.weight[1 * 8 + 2]).toBe(Math.fround(scaled(96, 53, 0.6)[2 * 12 + 1]!));
    expect(fc2).toMatchObject({ shape: [10, 12], inputs: [8] });
    expect(fc2!.weight[5]).toBe(Math.fround(0.75 * Math.fround(scaled(120, 55, 0.4)[5]!)));
  });

  it('refuses a Transpose that moves the batch (but before a transA), transA 1 on [N,F] and a constant A, naming the node', () => {
    const bad = (nodes: object[]) => graph([conv('x', 'w1', 'c1'), ...nodes, ...head('r', 4, 20).nodes], [...convWeights('w1', 4, 3, 3, 1), ...head('r', 4, 20).initializers]);
    const why = 'moves the batch axis, which is not supported (only a Transpose [1,0] of [N,F] whose readers are all Gemms with transA 1 reading it as A, which cancel it)';
    expect(importError(bad([node('Transpose', ['c1'], ['r'], { perm: attr.ints([1, 0, 2, 3]) }, 'tr')]))).toBe(`bad.onnx: node 'tr' (Transpose): perm [1,0,2,3] of [N,4,32,32] ${why}`);
    expect(importError(bad([node('Transpose', ['c1'], ['r'], {}, 'tr')]))).toBe(`bad.onnx: node 'tr' (Transpose): perm [3,2,1,0] of [N,4,32,32] ${why}`);
    const vector = (nodes: object[], inits: object[] = []) =>
      graph(
        [conv('x', 'w1', 'c1'), node('GlobalAveragePool', ['c1'], ['g']), node('Flatten', ['g'], ['f']), ...nodes],
        [...convWeights('w1', 4, 3, 3, 1), tensor('w', [4, 10], scaled(40, 2, 1)), tensor('wt', [10, 4], scaled(40, 2, 1)), ...inits],
      );
    // [F,N] read by something else than a Gemm's transposed A: a Relu, a Gemm with transA 0, a Gemm reading it as B, the graph output.
    for (const [reader, what] of [
      [[node('Relu', ['fT'], ['r']), node('Gemm', ['r', 'w'], ['y'], { transA: attr.int(1) })], 'a Relu'],
      [[node('Gemm', ['fT', 'w'], ['y'])], 'a Gemm with transA 0'],
      [[node('Gemm', ['wt', 'fT'], ['y'], { transA: attr.int(1) })], 'a Gemm reading it as B'],
      [[node('Gemm', ['fT', 'w'], ['z'], { transA: attr.int(1) }), node('Identity', ['fT'], ['y'])], 'an Identity beside the Gemm'],
    ] as const) {
      expect(importError(vector([node('Transpose', ['f'], ['fT'], { perm: attr.ints([1, 0]) }, 'tr'), ...reader])), what).toBe(`bad.onnx: node 'tr' (Transpose): perm [1,0] of [N,4] ${why}`);
    }
    expect(importError(vector([node('Transpose', ['f'], ['y'], {}, 'tr')]))).toBe(`bad.onnx: node 'tr' (Transpose): perm [1,0] of [N,4] ${why}`);
    expect(importError(vector([node('Gemm', ['f', 'w'], ['y'], { transA: attr.int(1) }, 'gemm')]))).toBe(
      "bad.onnx: node 'gemm' (Gemm): transA 1 on A [N,4] would sum over the batch axis, whose size is dynamic (only on the Transpose [1,0] of an [N,F], which it cancels)",
    );
    expect(importError(vector([node('Gemm', ['wt', 'f'], ['y'], { transA: attr.int(1) }, 'gemm')]))).toBe(
      "bad.onnx: node 'gemm' (Gemm): A 'wt' is a constant and B the activations: the product would sum over the batch axis, whose size is dynamic, which is not supported (only the activations as A)",
    );
    expect(importError(vector([node('Gemm', ['wt', 'f'], ['y'], { transB: attr.int(1) }, 'gemm')]))).toBe(
      "bad.onnx: node 'gemm' (Gemm): A 'wt' is a constant and B the activations: the product would have the batch axis last ([out,N]), which is not supported (only the activations as A)",
    );
  });

  it('the core checks a Transpose perm too, naming the node', () => {
    const net = importOnnxBytes(movingTransposes(), 'moving.onnx');
    const t = net.nodes.find((n) => n.name === 'nhwc')!;
    if (t.op !== 'Transpose') throw new Error('no Transpose');
    t.perm = [1, 1, 0];
    expect(() => new (native().NativeNetwork)(net)).toThrow("node 'nhwc' (Transpose): perm [1, 1, 0] is not a permutation of the axes 0, 1, 2");
  });
});

describe('operators: clear errors', () => {
  const base = (op: string, b: object) =>
    graph([conv('x', 'w1', 'c1'), node(op, ['c1', 'k'], ['o'], {}, 'bad1'), ...head('o', 4, 20).nodes], [...convWeights('w1', 4, 3, 3, 1), b, ...head('o', 4, 20).initializers]);

  it('names the node of shapes that do not broadcast', () => {
    expect(importError(base('Mul', tensor('k', [3, 1, 1], [1, 2, 3])))).toBe("bad.onnx: node 'bad1' (Mul): operands have shapes [N,4,32,32] and [3,1,1], which do not broadcast");
    expect(importError(base('Add', tensor('k', [2, 4, 1, 1], scaled(8, 1, 1))))).toBe(
      "bad.onnx: node 'bad1' (Add): operands have shapes [N,4,32,32] and [2,4,1,1]; broadcasting a constant over the batch axis is not supported",
    );
    expect(importError(base('Div', tensor('k', [1], [0], { dtype: 7 })))).toBe("bad.onnx: node 'bad1' (Div): initializer 'k' has type int64, expected float");
    const twoRuntimes = graph(
      [conv('x', 'w1', 'c1'), node('GlobalAveragePool', ['c1'], ['g']), node('Flatten', ['g'], ['f']), node('Mul', ['c1', 'f'], ['o'], {}, 'bad2'), ...head('o', 4, 20).nodes],
      [...convWeights('w1', 4, 3, 3, 1), ...head('o', 4, 20).initializers],
    );
    expect(importError(twoRuntimes)).toBe("bad.onnx: node 'bad2' (Mul): operands have shapes [N,4,32,32] and [N,4], which do not broadcast");
  });

  it('the core checks the operands too, naming the node', () => {
    const net = importOnnxBytes(base('Mul', tensor('k', [4, 1, 1], [1, 2, 3, 4])), 'ops.onnx');
    const mul = net.nodes.find((n) => n.op === 'Mul')!;
    if (mul.op !== 'Mul') throw new Error('no Mul');
    mul.constantShape = [3, 1, 1];
    expect(() => new (native().NativeNetwork)(net)).toThrow("node 'bad1' (Mul): constant has 4 values, shape 3x1x1 needs 3");
    mul.constantShape = [4, 1, 1];
    mul.constant = Float32Array.of(1, 2);
    mul.constantShape = [2, 1, 1];
    expect(() => new (native().NativeNetwork)(net)).toThrow("node 'bad1' (Mul): operand shapes 4x32x32 and 2x1x1 do not broadcast");
  });
});

describe('operators: training', () => {
  for (const name of Object.keys(GRAPHS)) {
    it(`trains through ${name}, and hands the constants and attributes back unchanged`, async () => {
      const net = importOnnxBytes(GRAPHS[name]!(), 'ops.onnx');
      const n = 8;
      const bytes = Uint8Array.from(randoms(n * LEN, 21), (r) => Math.floor((r + 1) * 127.5));
      const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
      const settings = resolveTrainSettings({ from: 'ops.onnx', epochs: 1, batch: 4, augment: false, lr: 0.01 });
      const trainer = await createTrainer(net, settings, bytes, labels, 1);
      const progress = await trainer.trainBatches(0, 0, 2, 1);
      expect(Number.isFinite(progress.lossSum)).toBe(true);
      const trained = trainer.network() as unknown as Network;
      const fixed = (m: Network) => m.nodes.flatMap((x) => (x.op !== 'Conv' && x.op !== 'Linear' && x.op !== 'BatchNorm' ? [{ ...x }] : []));
      expect(fixed(trained)).toEqual(fixed(net).map((x) => expect.objectContaining(x)));
      // Every weighted layer moved (the gradient reached the first conv through every operator), and the model still exports.
      const weights = (m: Network) => m.nodes.flatMap((x) => (x.op === 'Conv' || x.op === 'Linear' ? [x.weight] : []));
      weights(trained).forEach((w, i) => expect(w, `layer ${i}`).not.toEqual(weights(net)[i]));
      expect(importOnnxBytes(exportOnnx(trained), 'trained.onnx').nodes.map((x) => x.op)).toEqual(net.nodes.map((x) => x.op));
    });
  }
});
