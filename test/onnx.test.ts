import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import type { IrNode, Network } from '../ts/network.js';
import { type Const, foldNode } from '../ts/onnx/fold.js';
import { OnnxImportError, importOnnx, importOnnxBytes } from '../ts/onnx/import.js';
import { Attrs, type NodeProto, type Tensor, decodeModel, encodeModel, tensorFromProto } from '../ts/onnx/proto.js';
import { packageRoot } from '../ts/paths.js';
import {
  BOOL,
  DOUBLE,
  FLOAT,
  FLOAT16,
  INT32,
  INT64,
  INT64_MAX,
  INT64_MIN,
  INT8,
  UINT8,
  type ModelSpec,
  attr,
  constant,
  externalTensor,
  i64,
  model,
  node,
  randoms,
  tensor,
  valueInfo,
} from '../bench/onnx-builder.js';

function imp(spec: ModelSpec): Network {
  return importOnnxBytes(model(spec), 'test.onnx');
}

function importError(spec: ModelSpec | Uint8Array): OnnxImportError {
  try {
    importOnnxBytes(spec instanceof Uint8Array ? spec : model(spec), 'test.onnx');
  } catch (e) {
    expect(e).toBeInstanceOf(OnnxImportError);
    return e as OnnxImportError;
  }
  throw new Error('expected an OnnxImportError');
}

function f32(values: number[]): Float32Array {
  return Float32Array.from(values);
}

function ops(net: Network): string[] {
  return net.nodes.map((n) => n.op);
}

function only<T extends IrNode['op']>(net: Network, op: T): Extract<IrNode, { op: T }> {
  const found = net.nodes.filter((n) => n.op === op);
  expect(found).toHaveLength(1);
  return found[0] as Extract<IrNode, { op: T }>;
}

const W = randoms(4 * 3 * 3 * 3, 1);
const B = randoms(4, 2);
// a Linear weight as [out=2, in=3] row-major, and its transpose [in, out]
const wOI = [1, 2, 3, 4, 5, 6];
const wIO = [1, 4, 2, 5, 3, 6];

/** A builder tensor or node as the importer sees it: encoded, then decoded with the schema. */
function decodedTensor(t: object): Tensor {
  return tensorFromProto(decodeModel(model({ nodes: [], initializers: [t] })).graph!.initializer[0]!);
}

function decodedNode(n: object): NodeProto {
  return decodeModel(model({ nodes: [n] })).graph!.node[0]!;
}

describe('op mapping', () => {
  test('Conv with bias, stride and asymmetric pads', () => {
    const net = imp({
      nodes: [node('Conv', ['x', 'w', 'b'], ['y'], { pads: attr.ints([1, 2, 3, 0]), strides: attr.ints([2, 1]), kernel_shape: attr.ints([3, 3]) })],
      initializers: [tensor('w', [4, 3, 3, 3], W), tensor('b', [4], B)],
    });
    expect(net.input).toEqual([3, 8, 8]);
    expect(net.output).toBe(1);
    expect(net.nodes).toEqual([
      { name: 'y', op: 'Conv', inputs: [0], shape: [4, 3, 3, 3], weight: f32(W), bias: f32(B), stride: [2, 1], pads: [1, 2, 3, 0] },
    ]);
  });

  test('Conv without bias defaults to stride 1, no pads; auto_pad VALID is no pads', () => {
    for (const attrs of [{}, { auto_pad: attr.string('VALID') }, { auto_pad: attr.string('NOTSET') }] as Record<string, object>[]) {
      const conv = only(imp({ nodes: [node('Conv', ['x', 'w'], ['y'], attrs)], initializers: [tensor('w', [4, 3, 3, 3], W)] }), 'Conv');
      expect(conv.bias).toBeUndefined();
      expect(conv.stride).toEqual([1, 1]);
      expect(conv.pads).toEqual([0, 0, 0, 0]);
    }
  });

  test('Conv output shape feeds Shape folding', () => {
    // Pad the channels by the conv output's H and W: (8 + 1 + 3 - 3) / 2 + 1 = 5, 8 + 2 + 0 - 3 + 1 = 8.
    const net = imp({
      nodes: [
        node('Conv', ['x', 'w'], ['c'], { pads: attr.ints([1, 2, 3, 0]), strides: attr.ints([2, 1]) }),
        node('Shape', ['c'], ['s']),
        node('Gather', ['s', 'hw'], ['g'], { axis: attr.int(0) }),
        node('Slice', ['g', 'zero1', 'one1'], ['h']),
        node('Slice', ['g', 'one1', 'two1'], ['w_']),
        node('Concat', ['zero1', 'h', 'z2', 'zero1', 'w_', 'z2'], ['pads'], { axis: attr.int(0) }),
        node('Pad', ['c', 'pads'], ['y']),
      ],
      initializers: [tensor('w', [4, 3, 3, 3], W), i64('hw', [2, 3]), i64('zero1', [0]), i64('one1', [1]), i64('two1', [2]), i64('z2', [0, 0])],
    });
    expect(ops(net)).toEqual(['Conv', 'PadChannels']);
    expect(only(net, 'PadChannels')).toMatchObject({ inputs: [1], before: 5, after: 8 });
  });

  test('BatchNormalization, epsilon given or default', () => {
    const init = ['s', 'b', 'm', 'v'].map((n, i) => tensor(n, [3], i === 3 ? [0.5, 1, 2] : randoms(3, 10 + i)));
    const bn = only(imp({ nodes: [node('BatchNormalization', ['x', 's', 'b', 'm', 'v'], ['y'], { epsilon: attr.float(1e-3) })], initializers: init }), 'BatchNorm');
    expect(bn).toEqual({
      name: 'y',
      op: 'BatchNorm',
      inputs: [0],
      weight: f32(randoms(3, 10)),
      bias: f32(randoms(3, 11)),
      mean: f32(randoms(3, 12)),
      var: f32([0.5, 1, 2]),
      eps: Math.fround(1e-3),
    });
    expect(only(imp({ nodes: [node('BatchNormalization', ['x', 's', 'b', 'm', 'v'], ['y'])], initializers: init }), 'BatchNorm').eps).toBe(1e-5);
  });

  test('Relu, Add of two runtime tensors, GlobalAveragePool, Flatten', () => {
    const net = imp({
      nodes: [
        node('Relu', ['x'], ['r']),
        node('Add', ['r', 'x'], ['a']),
        node('GlobalAveragePool', ['a'], ['p']),
        node('Flatten', ['p'], ['y'], { axis: attr.int(1) }),
      ],
    });
    expect(net.nodes).toEqual([
      { name: 'r', op: 'Relu', inputs: [0] },
      { name: 'a', op: 'Add', inputs: [1, 0] },
      { name: 'p', op: 'GlobalAvgPool', inputs: [2] },
      { name: 'y', op: 'Flatten', inputs: [3] },
    ]);
    expect(net.output).toBe(4);
  });

  test('Clip with constant bounds becomes Hardtanh (inputs at opset 13, attributes at opset 6); open bounds are refused', () => {
    const net = imp({ nodes: [node('Clip', ['x', 'lo', 'hi'], ['y'])], initializers: [tensor('lo', [], [-1]), tensor('hi', [], [1])] });
    expect(net.nodes).toEqual([{ name: 'y', op: 'Hardtanh', inputs: [0], min: -1, max: 1 }]);
    const old = imp({ nodes: [node('Clip', ['x'], ['y'], { min: attr.float(0), max: attr.float(6) })], opset: 6 });
    expect(old.nodes[0]).toMatchObject({ op: 'Hardtanh', min: 0, max: 6 });
    expect(() => imp({ nodes: [node('Clip', ['x', 'lo'], ['y'])], initializers: [tensor('lo', [], [0])] })).toThrow(/Clip without a max bound is not supported/);
    expect(() => imp({ nodes: [node('Clip', ['x', 'lo', 'hi'], ['y'])], initializers: [tensor('lo', [], [1]), tensor('hi', [], [-1])] })).toThrow(/min < max/);
  });

  const head = [node('GlobalAveragePool', ['x'], ['p']), node('Flatten', ['p'], ['f'])];

  test('Gemm transB=1 keeps the weight, transB=0 transposes it', () => {
    const a = imp({
      nodes: [...head, node('Gemm', ['f', 'w', 'c'], ['y'], { transB: attr.int(1), alpha: attr.float(1), beta: attr.float(1) })],
      initializers: [tensor('w', [2, 3], wOI), tensor('c', [2], [0.5, -0.5])],
    });
    const b = imp({ nodes: [...head, node('Gemm', ['f', 'w', 'c'], ['y'])], initializers: [tensor('w', [3, 2], wIO), tensor('c', [1, 2], [0.5, -0.5])] });
    for (const net of [a, b]) {
      expect(only(net, 'Linear')).toEqual({ name: 'y', op: 'Linear', inputs: [2], shape: [2, 3], weight: f32(wOI), bias: f32([0.5, -0.5]) });
    }
  });

  test('MatMul + constant Add fuse into one Linear; MatMul alone has no bias', () => {
    const fused = imp({
      nodes: [...head, node('MatMul', ['f', 'w'], ['m']), node('Add', ['bias', 'm'], ['y'])],
      initializers: [tensor('w', [3, 2], wIO), tensor('bias', [2], [1, 2])],
    });
    expect(ops(fused)).toEqual(['GlobalAvgPool', 'Flatten', 'Linear']);
    expect(only(fused, 'Linear')).toEqual({ name: 'm', op: 'Linear', inputs: [2], shape: [2, 3], weight: f32(wOI), bias: f32([1, 2]) });
    expect(fused.output).toBe(3);

    const plain = imp({ nodes: [...head, node('MatMul', ['f', 'w'], ['y'])], initializers: [tensor('w', [3, 2], wIO)] });
    expect(only(plain, 'Linear').bias).toBeUndefined();
  });

  test('MatMul read twice is not fused with its Add: the Add keeps its constant', () => {
    const net = imp({
      nodes: [...head, node('MatMul', ['f', 'w'], ['m']), node('Add', ['m', 'bias'], ['a']), node('Add', ['a', 'm'], ['y'])],
      initializers: [tensor('w', [3, 2], wIO), tensor('bias', [2], [1, 2])],
    });
    expect(ops(net)).toEqual(['GlobalAvgPool', 'Flatten', 'Linear', 'Add', 'Add']);
    expect(only(net, 'Linear').bias).toBeUndefined();
    expect(net.nodes[3]).toEqual({ name: 'a', op: 'Add', inputs: [3], constant: f32([1, 2]), constantShape: [2, 1, 1] });
  });

  test('Identity and Dropout pass through', () => {
    const net = imp({ nodes: [node('Identity', ['x'], ['i']), node('Dropout', ['i'], ['d', 'mask']), node('Relu', ['d'], ['y'])] });
    expect(net.nodes).toEqual([{ name: 'y', op: 'Relu', inputs: [0] }]);
  });

  test('Slice on H and W: negative starts, INT64_MAX ends, clamping', () => {
    const x = valueInfo('x', ['N', 3, 7, 9]);
    const net = imp({
      inputs: [x],
      nodes: [node('Slice', ['x', 'st', 'en', 'ax', 'sp'], ['y'])],
      initializers: [i64('st', [-6, 0]), i64('en', [INT64_MAX, 100]), i64('ax', [2, -1]), i64('sp', [2, 3])],
    });
    // H: 1, 3, 5 → [1, 7); W: 0, 3, 6 → [0, 9)
    expect(only(net, 'Slice')).toEqual({ name: 'y', op: 'Slice', inputs: [0], start: [1, 0], end: [7, 9], step: [2, 3] });
  });

  test('a chain of per-axis Slices becomes one node', () => {
    const net = imp({
      inputs: [valueInfo('x', ['N', 3, 7, 9])],
      nodes: [
        node('Slice', ['x', 'z', 'max', 'two', 'two'], ['h']),
        node('Slice', ['h', 'one', 'min1', 'three', 'two'], ['y']),
        node('Relu', ['y'], ['r']),
      ],
      initializers: [i64('z', [0]), i64('one', [1]), i64('two', [2]), i64('three', [3]), i64('max', [INT64_MAX]), i64('min1', [-1])],
      outputs: ['r'],
    });
    expect(net.nodes).toEqual([
      // H: 0, 2, 4, 6; W: 1, 3, 5, 7 (end -1 → 8, exclusive)
      { name: 'h', op: 'Slice', inputs: [0], start: [0, 1], end: [7, 9], step: [2, 2] },
      { name: 'r', op: 'Relu', inputs: [1] },
    ]);
  });

  test('Slice steps compose when the same axis is sliced twice', () => {
    const net = imp({
      inputs: [valueInfo('x', ['N', 3, 16, 16])],
      nodes: [node('Slice', ['x', 'one', 'max', 'two', 'two'], ['h']), node('Slice', ['h', 'one', 'max', 'two', 'three'], ['y'])],
      initializers: [i64('one', [1]), i64('two', [2]), i64('three', [3]), i64('max', [INT64_MAX])],
    });
    // first: 1, 3, ..., 15; second takes its elements 1, 4, 7: rows 3, 9, 15
    expect(net.nodes).toEqual([{ name: 'h', op: 'Slice', inputs: [0], start: [3, 0], end: [16, 16], step: [6, 1] }]);
  });

  test('Slice, attribute form (opset < 10)', () => {
    const net = imp({
      opset: 9,
      nodes: [node('Slice', ['x'], ['y'], { starts: attr.ints([1]), ends: attr.ints([INT64_MAX]), axes: attr.ints([3]) })],
    });
    expect(only(net, 'Slice')).toMatchObject({ start: [0, 1], end: [8, 8], step: [1, 1] });
  });

  test('Pad of the channel axis, with and without constant_value', () => {
    for (const inputs of [['x', 'pads'], ['x', 'pads', ''], ['x', 'pads', 'zero']]) {
      const net = imp({ nodes: [node('Pad', inputs, ['y'], { mode: attr.string('constant') })], initializers: [i64('pads', [0, 2, 0, 0, 0, 3, 0, 0]), tensor('zero', [], [0])] });
      expect(net.nodes).toEqual([{ name: 'y', op: 'PadChannels', inputs: [0], before: 2, after: 3 }]);
    }
  });

  test('Pad, attribute form (opset < 11) and axes input (opset 18)', () => {
    const old = imp({ opset: 2, nodes: [node('Pad', ['x'], ['y'], { pads: attr.ints([0, 4, 0, 0, 0, 4, 0, 0]) })] });
    expect(only(old, 'PadChannels')).toMatchObject({ before: 4, after: 4 });
    const axes = imp({ opset: 18, nodes: [node('Pad', ['x', 'p', '', 'ax'], ['y'])], initializers: [i64('p', [1, 2]), i64('ax', [-3])] });
    expect(only(axes, 'PadChannels')).toMatchObject({ before: 1, after: 2 });
  });

  test('nodes out of order are sorted', () => {
    const nodes = [node('Relu', ['x'], ['r']), node('Add', ['r', 'x'], ['a']), node('Relu', ['a'], ['y'])];
    expect(imp({ nodes: [...nodes].reverse() })).toEqual(imp({ nodes }));
  });
});

describe('initializer storage', () => {
  test('typed fields give the same network as raw_data', () => {
    const spec = (form: 'raw' | 'typed', dtype = FLOAT): ModelSpec => ({
      nodes: [node('Conv', ['x', 'w', 'b'], ['c']), node('Slice', ['c', 'st', 'en', 'ax'], ['y'])],
      initializers: [
        tensor('w', [4, 3, 3, 3], W, { form, dtype }),
        tensor('b', [4], B, { form, dtype }),
        tensor('st', [1], [1], { form, dtype: INT64 }),
        tensor('en', [1], [INT64_MAX], { form, dtype: INT64 }),
        tensor('ax', [1], [2], { form, dtype: INT64 }),
      ],
    });
    const raw = imp(spec('raw'));
    expect(imp(spec('typed'))).toEqual(raw);
    // double weights are narrowed to float32
    expect(imp(spec('typed', DOUBLE))).toEqual(raw);
    expect(imp(spec('raw', DOUBLE))).toEqual(raw);
    expect(only(raw, 'Slice')).toMatchObject({ start: [1, 0], end: [6, 6], step: [1, 1] });
  });

  test('integer and bool types decode from raw and typed fields', () => {
    for (const form of ['raw', 'typed'] as const) {
      const t = (dtype: number, values: (number | bigint)[]) => decodedTensor(tensor('t', [values.length], values, { dtype, form }));
      expect(t(INT64, [-3, INT64_MAX, INT64_MIN, 2 ** 40])).toMatchObject({ dtype: 'int64', data: Float64Array.from([-3, Infinity, -Infinity, 2 ** 40]) });
      expect(t(INT32, [-7, 2 ** 31 - 1])).toMatchObject({ dtype: 'int32', data: Int32Array.from([-7, 2 ** 31 - 1]) });
      expect(t(INT8, [-128, 127])).toMatchObject({ dtype: 'int8', data: Int8Array.from([-128, 127]) });
      expect(t(UINT8, [0, 255])).toMatchObject({ dtype: 'uint8', data: Uint8Array.from([0, 255]) });
      expect(t(BOOL, [0, 1, 1])).toMatchObject({ dtype: 'bool', dims: [3], data: Uint8Array.from([0, 1, 1]) });
    }
  });

  describe('external data', () => {
    // root/model/ holds the models and data; root/outside.bin is out of their reach
    const root = mkdtempSync(join(tmpdir(), 'stoxnet-onnx-'));
    afterAll(() => rmSync(root, { recursive: true, force: true }));
    const dir = join(root, 'model');
    const weights = Float32Array.from(W);
    const bytes = new Uint8Array(weights.buffer);
    mkdirSync(join(dir, 'data'), { recursive: true });
    // 5 bytes before the weights: unaligned on purpose
    writeFileSync(join(dir, 'data', 'w.bin'), Buffer.concat([Buffer.alloc(5, 7), bytes]));
    writeFileSync(join(root, 'outside.bin'), bytes);
    symlinkSync(join(root, 'outside.bin'), join(dir, 'link.bin'));

    const write = (name: string, location: string, offset = 5, length = bytes.length) => {
      const path = join(dir, name);
      const m = model({ nodes: [node('Conv', ['x', 'w'], ['y'])], initializers: [externalTensor('w', [4, 3, 3, 3], location, offset, length)] });
      writeFileSync(path, m);
      return path;
    };

    test('is read relative to the model file', async () => {
      const net = await importOnnx(write('ext.onnx', 'data/w.bin'));
      expect(only(net, 'Conv').weight).toEqual(weights);
    });

    test('must stay inside the model directory', async () => {
      await expect(importOnnx(write('escape.onnx', '../outside.bin', 0))).rejects.toThrow(
        "escape.onnx: node 'y' (Conv): tensor 'w': external data path '../outside.bin' leaves the model's directory",
      );
      await expect(importOnnx(write('abs.onnx', join(dir, 'data', 'w.bin')))).rejects.toThrow(/leaves the model's directory/);
      await expect(importOnnx(write('link.onnx', 'link.bin', 0))).rejects.toThrow(/external data path 'link.bin' leaves the model's directory/);
    });

    test('range and presence are checked', async () => {
      await expect(importOnnx(write('range.onnx', 'data/w.bin', 100))).rejects.toThrow(/outside 'data\/w.bin'/);
      await expect(importOnnx(write('length.onnx', 'data/w.bin', 5, 2 ** 40))).rejects.toThrow(/has 1099511627776 bytes of external data, expected 432/);
      await expect(importOnnx(write('missing.onnx', 'data/none.bin'))).rejects.toThrow(/cannot open external data 'data\/none.bin'/);
      const m = readFileSync(write('nodir.onnx', 'data/w.bin'));
      expect(() => importOnnxBytes(m, 'nodir.onnx')).toThrow(/the model's directory is not known/);
    });
  });
});

describe('constant folding', () => {
  /**
   * The pads subgraph of a PyTorch option-A shortcut, F.pad(x, (0,0,0,0,p,p)),
   * with p = C/2 taken from Shape(x) at index `channelIndex`.
   */
  function shortcutPads(channelIndex: number): ModelSpec {
    return {
      inputs: [valueInfo('x', ['N', 4, 8, 8])],
      nodes: [
        node('Shape', ['x'], ['s']),
        constant('k', tensor('k', [], [channelIndex], { dtype: INT64 })),
        node('Gather', ['s', 'k'], ['c'], { axis: attr.int(0) }),
        node('Div', ['c', 'two'], ['p']),
        node('Unsqueeze', ['p', 'axis0'], ['pu']),
        node('Concat', ['zeros4', 'pu', 'pu'], ['six'], { axis: attr.int(0) }),
        // 2 * rank - len(six) more zeros
        node('Shape', ['six'], ['six_shape']),
        node('Gather', ['six_shape', 'axis0'], ['six_len']),
        node('Shape', ['s'], ['rank1']),
        node('Squeeze', ['rank1', 'axis0'], ['rank']),
        node('Mul', ['rank', 'two'], ['rank2']),
        node('Sub', ['rank2', 'six_len'], ['rest']),
        node('ConstantOfShape', ['rest'], ['zeros'], { value: attr.tensor(i64('v', [0])) }),
        node('Concat', ['six', 'zeros'], ['pairs'], { axis: attr.int(0) }),
        // torch's (last dim first) pairs to ONNX's [begins..., ends...]
        node('Reshape', ['pairs', 'shape_m1_2'], ['r']),
        node('Slice', ['r', 'm1', 'min', 'axis0', 'm1'], ['rev']),
        node('Transpose', ['rev'], ['tr'], { perm: attr.ints([1, 0]) }),
        node('Reshape', ['tr', 'm1'], ['flat']),
        node('Cast', ['flat'], ['pads'], { to: attr.int(INT64) }),
        node('Pad', ['x', 'pads', ''], ['y'], { mode: attr.string('constant') }),
      ],
      initializers: [
        tensor('two', [], [2], { dtype: INT64 }),
        i64('axis0', [0]),
        i64('zeros4', [0, 0, 0, 0]),
        i64('shape_m1_2', [-1, 2]),
        i64('m1', [-1]),
        i64('min', [INT64_MIN]),
      ],
    };
  }

  test('Shape → Gather → … → Pad folds into PadChannels', () => {
    const net = imp(shortcutPads(1));
    expect(net.nodes).toEqual([{ name: 'y', op: 'PadChannels', inputs: [0], before: 2, after: 2 }]);
  });

  test('a pad that depends on the dynamic batch size is refused', () => {
    expect(importError(shortcutPads(0)).message).toBe(
      "test.onnx: node 'y' (Pad): input 'pads' depends on the batch size, which is dynamic",
    );
  });

  test('Shape with start skips the batch dimension', () => {
    const net = imp({
      nodes: [
        node('Shape', ['x'], ['s'], { start: attr.int(-2) }),
        node('Slice', ['s', 'z', 'one'], ['h']),
        node('Concat', ['z', 'h', 'z', 'z', 'z', 'z', 'z', 'z'], ['pads'], { axis: attr.int(0) }),
        node('Pad', ['x', 'pads'], ['y']),
      ],
      initializers: [i64('z', [0]), i64('one', [1])],
    });
    expect(only(net, 'PadChannels')).toMatchObject({ before: 8, after: 0 });
  });

  const i64c = (dims: number[], values: number[]): Const => ({ dtype: 'int64', dims, data: Float64Array.from(values) });
  const fold = (op: string, x: (Const | undefined)[], attrs: Record<string, object> = {}) =>
    foldNode(op, x, new Attrs(decodedNode(node(op, [], ['out'], attrs))));

  test('Slice with a negative step, Transpose of rank 3', () => {
    const t = i64c([2, 3], [0, 1, 2, 3, 4, 5]);
    expect(fold('Slice', [t, i64c([1], [-1]), i64c([1], [-100]), i64c([1], [1]), i64c([1], [-2])])).toEqual(i64c([2, 2], [2, 0, 5, 3]));
    const u = i64c([2, 1, 3], [0, 1, 2, 3, 4, 5]);
    expect(fold('Transpose', [u], { perm: attr.ints([2, 0, 1]) })).toEqual(i64c([3, 2, 1], [0, 3, 1, 4, 2, 5]));
    expect(fold('Transpose', [t])).toEqual(i64c([3, 2], [0, 3, 1, 4, 2, 5]));
  });

  test('broadcasting arithmetic, integer division, Equal, Where, Expand', () => {
    expect(fold('Div', [i64c([2], [7, -7]), i64c([], [2])])).toEqual(i64c([2], [3, -3]));
    expect(fold('Add', [i64c([2, 1], [10, 20]), i64c([3], [1, 2, 3])])).toEqual(i64c([2, 3], [11, 12, 13, 21, 22, 23]));
    const eq = fold('Equal', [i64c([3], [1, 2, 3]), i64c([], [2])]);
    expect(eq).toEqual({ dtype: 'bool', dims: [3], data: Uint8Array.from([0, 1, 0]) });
    expect(fold('Where', [eq, i64c([], [9]), i64c([3], [1, 2, 3])])).toEqual(i64c([3], [1, 9, 3]));
    expect(fold('Expand', [i64c([2, 1], [1, 2]), i64c([2], [1, 3])])).toEqual(i64c([2, 3], [1, 1, 1, 2, 2, 2]));
  });

  test('Range, Squeeze, Unsqueeze (attribute form), Cast, ConstantOfShape, Constant', () => {
    expect(fold('Range', [i64c([], [1]), i64c([], [8]), i64c([], [3])])).toEqual(i64c([3], [1, 4, 7]));
    expect(fold('Squeeze', [i64c([1, 2, 1], [5, 6])])).toEqual(i64c([2], [5, 6]));
    expect(fold('Squeeze', [i64c([1, 2, 1], [5, 6])], { axes: attr.ints([-1]) })).toEqual(i64c([1, 2], [5, 6]));
    expect(fold('Unsqueeze', [i64c([2], [5, 6])], { axes: attr.ints([0, 2]) })).toEqual(i64c([1, 2, 1], [5, 6]));
    const floats: Const = { dtype: 'float32', dims: [3], data: Float32Array.from([1.7, -1.7, 0]) };
    expect(fold('Cast', [floats], { to: attr.int(INT64) })).toEqual(i64c([3], [1, -1, 0]));
    expect(fold('Cast', [floats], { to: attr.int(BOOL) })).toEqual({ dtype: 'bool', dims: [3], data: Uint8Array.from([1, 1, 0]) });
    expect(fold('ConstantOfShape', [i64c([2], [2, 1])])).toEqual({ dtype: 'float32', dims: [2, 1], data: new Float32Array(2) });
    expect(fold('Constant', [], { value_ints: attr.ints([3, 4]) })).toEqual(i64c([2], [3, 4]));
  });
});

describe('errors', () => {
  const conv = (attrs: Record<string, object> = {}, w = W, wDims = [4, 3, 3, 3]): ModelSpec => ({
    nodes: [node('Conv', ['x', 'w'], ['y'], attrs)],
    initializers: [tensor('w', wDims, w)],
  });

  test('not ONNX: random bytes, truncated, empty, no graph, no nodes', () => {
    const random = Uint8Array.from(randoms(1024, 1234), (v) => Math.floor((v + 1) * 128));
    expect(importError(random).message).toMatch(/^test\.onnx: not an ONNX model/);
    const good = model(conv());
    expect(importError(good.subarray(0, good.length >> 1)).message).toMatch(/^test\.onnx: not an ONNX model: protobuf decoding failed/);
    expect(importError(new Uint8Array(0)).message).toBe('test.onnx: not an ONNX model: the file is empty');
    expect(importError(encodeModel({ irVersion: 8 })).message).toBe('test.onnx: not an ONNX model: no graph');
    expect(importError({ nodes: [] }).message).toBe('test.onnx: the graph has no nodes');
  });

  test('unsupported ops', () => {
    expect(importError({ nodes: [node('LSTM', ['x'], ['y'], {}, '/layer1/Foo')] }).message).toBe(
      "test.onnx: node '/layer1/Foo' (LSTM): unsupported op",
    );
    expect(importError({ nodes: [node('Equal', ['x', 'x'], ['y'])] }).message).toMatch(/\(Equal\): unsupported op on a tensor computed at run time/);
    expect(importError({ nodes: [{ ...node('Relu', ['x'], ['y']), domain: 'com.example' }] }).message).toMatch(/unsupported op \(domain 'com.example'\)/);
  });

  test('missing inputs, cycles, duplicate outputs, unsupported extra outputs', () => {
    expect(importError({ nodes: [node('Conv', ['x', 'w'], ['y'])] }).message).toBe(
      "test.onnx: node 'y' (Conv): input 'w' is not produced by any node, and is neither an initializer nor a graph input",
    );
    expect(importError({ nodes: [node('Add', ['x', 'b'], ['a']), node('Relu', ['a'], ['b']), node('Relu', ['b'], ['y'])] }).message).toMatch(/cycle/);
    expect(importError({ nodes: [node('Relu', ['x'], ['y']), node('Relu', ['x'], ['y'])] }).message).toMatch(/output 'y' is already defined/);
    expect(importError({ nodes: [node('Dropout', ['x'], ['d', 'mask']), node('Add', ['d', 'mask'], ['y'])] }).message).toMatch(
      /input 'mask' is an extra output of its node/,
    );
  });

  test('graph inputs and outputs', () => {
    expect(importError({ ...conv(), inputs: [valueInfo('x', ['N', 3, 8])] }).message).toBe(
      "test.onnx: graph input 'x': wrong input rank 3, expected 4 ([N,C,H,W])",
    );
    expect(importError({ ...conv(), inputs: [valueInfo('x', ['N', 3, 'h', 8])] }).message).toBe(
      "test.onnx: graph input 'x': dynamic dimension 'h' cannot be resolved",
    );
    expect(importError({ ...conv(), inputs: [valueInfo('x', ['N', 3, 8, 8], INT64)] }).message).toMatch(/expected FLOAT/);
    expect(importError({ ...conv(), inputs: [valueInfo('x', ['N', 3, 8, 8]), valueInfo('z', [1])] }).message).toMatch(/expected one graph input, found 2/);
    expect(importError({ ...conv(), outputs: ['y', 'x'] }).message).toMatch(/expected one graph output, found 2/);
    expect(importError({ nodes: [node('Relu', ['x'], ['r']), constant('y', i64('c', [1]))] }).message).toMatch(/graph output 'y' is a constant/);
  });

  test('shapes that do not fit', () => {
    expect(importError(conv({}, randoms(4 * 5 * 9, 3), [4, 5, 3, 3])).message).toBe(
      "test.onnx: node 'y' (Conv): weight 'w' expects 5 input channels, the input [N,3,8,8] has 3",
    );
    expect(importError({ ...conv({ kernel_shape: attr.ints([5, 5]) }) }).message).toMatch(/kernel_shape \[5,5\] does not match/);
    expect(
      importError({ nodes: [node('Conv', ['x', 'w'], ['c']), node('Add', ['x', 'c'], ['y'])], initializers: [tensor('w', [4, 3, 3, 3], W)] }).message,
    ).toBe("test.onnx: node 'y' (Add): operands have shapes [N,3,8,8] and [N,4,6,6], which do not broadcast");
    const gemm = (wDims: number[], transB: number) =>
      importError({
        nodes: [node('GlobalAveragePool', ['x'], ['p']), node('Flatten', ['p'], ['f']), node('Gemm', ['f', 'w'], ['y'], { transB: attr.int(transB) })],
        initializers: [tensor('w', wDims, randoms(wDims[0]! * wDims[1]!, 4))],
      }).message;
    expect(gemm([2, 5], 1)).toBe("test.onnx: node 'y' (Gemm): weight 'w' has shape [2,5], which does not fit an input of 3 features");
    expect(gemm([2, 3], 0)).toMatch(/weight 'w' has shape \[2,3\], which does not fit an input of 3 features/);
    expect(importError({ nodes: [node('Gemm', ['x', 'w'], ['y'])], initializers: [tensor('w', [3, 2], wIO)] }).message).toMatch(
      /input 'x' has shape \[N,3,8,8\], expected \[N,features\]/,
    );
    expect(importError({ nodes: [node('Conv', ['x', 'w', 'b'], ['y'])], initializers: [tensor('w', [4, 3, 3, 3], W), tensor('b', [3], [1, 2, 3])] }).message).toMatch(
      /initializer 'b' has shape \[3\], expected \[4\]/,
    );
  });

  test('unsupported attributes', () => {
    // A grouped conv is supported (test/operators.test.ts); these weights have all the input's channels, not half.
    expect(importError(conv({ group: attr.int(2) })).message).toMatch(/^test\.onnx: node 'y' \(Conv\): weight '\w+' expects \d+ input channels per group \(2 groups\), the input/);
    expect(importError(conv({ dilations: attr.ints([2, 2]) })).message).toMatch(/dilations \[2,2\] are not supported/);
    expect(importError(conv({ auto_pad: attr.string('SAME_UPPER') })).message).toMatch(/auto_pad SAME_UPPER is not supported/);
    const pad = (pads: number[], attrs: Record<string, object> = {}, value?: number) =>
      importError({
        nodes: [node('Pad', value === undefined ? ['x', 'p'] : ['x', 'p', 'v'], ['y'], attrs)],
        initializers: [i64('p', pads), tensor('v', [], [value ?? 0])],
      }).message;
    expect(pad([0, 1, 0, 0, 0, 1, 0, 0], { mode: attr.string('reflect') })).toBe("test.onnx: node 'y' (Pad): mode 'reflect' is not supported (only constant)");
    expect(pad([0, 0, 1, 0, 0, 0, 1, 0])).toMatch(/only padding the channel axis is supported, pads are \[0,0,1,0,0,0,1,0\]/);
    expect(pad([0, 1, 0, 0, 0, 1, 0, 0], {}, 1)).toMatch(/pad value 1 is not supported/);
    expect(pad([0, -1, 0, 0, 0, 0, 0, 0])).toMatch(/negative pads/);
    const slice = (axes: number[], steps: number[]) =>
      importError({ nodes: [node('Slice', ['x', 's', 'e', 'a', 't'], ['y'])], initializers: [i64('s', [0]), i64('e', [4]), i64('a', axes), i64('t', steps)] }).message;
    // A channel range is supported (grouped convs); steps over channels and the batch axis are not.
    expect(slice([1], [2])).toMatch(/a channel slice needs step 1 and at least one channel/);
    expect(slice([0], [1])).toMatch(/slicing the batch \(axis 0\) is not supported/);
    expect(slice([2], [-1])).toMatch(/negative steps are not supported/);
    expect(importError({ nodes: [node('Flatten', ['x'], ['y'], { axis: attr.int(2) })] }).message).toMatch(/axis 2 is not supported \(only 1\)/);
  });

  test('weights: NaN/Inf, huge dims, unsupported types, wrong lengths', () => {
    const bad = W.slice();
    bad[5] = NaN;
    expect(importError(conv({}, bad)).message).toBe("test.onnx: node 'y' (Conv): initializer 'w' contains NaN or Inf");
    bad[5] = -Infinity;
    expect(importError({ ...conv(), initializers: [tensor('w', [4, 3, 3, 3], bad, { form: 'typed' })] }).message).toMatch(/initializer 'w' contains NaN or Inf/);
    // Declared 2^32 elements with no data: refused before anything is allocated.
    expect(importError({ ...conv(), initializers: [{ name: 'w', dims: ['65536', '65536'], dataType: 1 }] }).message).toMatch(
      /tensor 'w' has shape \[65536,65536\] \(4294967296 elements\), more than the limit of 2\^28/,
    );
    expect(importError({ ...conv(), inputs: [valueInfo('x', ['N', 3, 100000, 100000])] }).message).toMatch(/more than the limit of 2\^28/);
    expect(
      importError({ nodes: [node('ConstantOfShape', ['s'], ['big']), node('Relu', ['x'], ['y'])], initializers: [i64('s', [1 << 20, 1 << 20])] }).message,
    ).toMatch(/\(ConstantOfShape\): output has shape \[1048576,1048576\]/);
    expect(importError({ ...conv(), initializers: [tensor('w', [4, 3, 3, 3], W, { dtype: FLOAT16 })] }).message).toBe(
      "test.onnx: node 'y' (Conv): tensor 'w' has data type FLOAT16, which is not supported",
    );
    expect(importError({ ...conv(), initializers: [tensor('w', [4, 3, 3, 3], W.slice(1))] }).message).toMatch(
      /tensor 'w' has 428 bytes of data, expected 432/,
    );
    expect(importError({ ...conv(), initializers: [tensor('w', [4, 3, 3, 3], W.slice(1), { form: 'typed' })] }).message).toMatch(
      /tensor 'w' has 107 values in floatData, expected 108/,
    );
    expect(importError({ ...conv(), initializers: [tensor('w', [4, 3, 3, 3], W.map(() => 1), { dtype: INT32 })] }).message).toMatch(
      /initializer 'w' has type int32, expected float/,
    );
  });
});

const modelsDir = process.env.STOXNET_MODELS ?? join(packageRoot(), '..', 'shared', 'models');

describe.skipIf(!existsSync(modelsDir))('real models', () => {
  /** Channels of every IR value. */
  function channels(net: Network): number[] {
    const c = [net.input[0]];
    for (const n of net.nodes) {
      const x = c[n.inputs[0]]!;
      c.push(n.op === 'Conv' ? n.shape[0] : n.op === 'PadChannels' ? x + n.before + n.after : n.op === 'Linear' ? n.shape[0] : x);
    }
    return c;
  }

  // ResNet-(6n+2): 6n+1 convolutions, 3n residual adds, two option-A shortcuts.
  test.each([
    ['resnet20.onnx', 3, false],
    ['resnet20-bn.onnx', 3, true],
    ['resnet32.onnx', 5, false],
    ['resnet44.onnx', 7, false],
    ['resnet56.onnx', 9, false],
  ])('%s', async (file, n, bn) => {
    const net = await importOnnx(join(modelsDir, file));
    const counts: Record<string, number> = {};
    for (const node of net.nodes) counts[node.op] = (counts[node.op] ?? 0) + 1;
    expect(counts).toEqual({
      Conv: 6 * n + 1,
      ...(bn ? { BatchNorm: 6 * n + 1 } : {}),
      Relu: 6 * n + 1,
      Add: 3 * n,
      Slice: 2,
      PadChannels: 2,
      GlobalAvgPool: 1,
      Flatten: 1,
      Linear: 1,
    });
    expect(net.input).toEqual([3, 32, 32]);
    expect(net.output).toBe(net.nodes.length);
    expect(net.nodes.at(-1)).toMatchObject({ op: 'Linear', shape: [10, 64] });
    expect(net.nodes.every((node, i) => node.inputs.every((v) => v <= i))).toBe(true);
    if (bn) for (const node of net.nodes) if (node.op === 'BatchNorm') expect(node.eps).toBe(Math.fround(1e-5));

    const ch = channels(net);
    for (const [i, pad] of net.nodes.entries()) {
      if (pad.op !== 'PadChannels') continue;
      const slice = net.nodes[pad.inputs[0] - 1]!;
      expect(slice).toMatchObject({ op: 'Slice', start: [0, 0], step: [2, 2] });
      const planes = ch[i + 1]!;
      expect(pad.before).toBe(planes / 4);
      expect(pad.after).toBe(planes / 4);
      // the padded shortcut joins a residual Add with the block's output of the same width
      const add = net.nodes.find((a) => a.op === 'Add' && a.inputs.includes(i + 1))!;
      expect(add.inputs.map((v) => ch[v])).toEqual([planes, planes]);
    }
  });

  test('a truncated model is refused', () => {
    const bytes = readFileSync(join(modelsDir, 'resnet20.onnx'));
    expect(() => importOnnxBytes(bytes.subarray(0, 500_000), 'resnet20.onnx')).toThrow(/^resnet20\.onnx: not an ONNX model: protobuf decoding failed/);
  });
});
