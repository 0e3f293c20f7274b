import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import type { IrNode, Network } from '../ts/network.js';
import { type Const, foldNode } from '../ts/onnx/fold.js';
import { OnnxImportError, importOnnx, importOnnxBytes } from '../ts/onnx/import.js';
import { Attrs, type NodeProto, type Tensor, decodeModel, tensorFromProto } from '../ts/onnx/proto.js';
import { packageRoot } from '../ts/paths.js';
import {
  BOOL,
  DOUBLE,
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
} from './helpers/onnx-builder.js';

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
    for (const attrs of [{}, { auto_pad: attr.string('VALID') }, { auto_pad: attr.string('NOTSET') }]) {
      const conv = only(imp({ nodes: [node('Conv', ['x', 'w'], ['y'], attrs)], initializers: [tensor('w', [4, 3, 3, 3], W)] }), 'Conv');
      expect(conv.bias).toBeUndefined();
      expect(conv.stride).toEqual([1, 1]);
      expect(conv.pads).toEqual([0, 0, 0, 0]);
    }
  });

  test('Conv output shape feeds Shape folding', () => {
    // Pad the channels by the conv output's H and W: (8 + 1 + 3 - 3) / 2 + 1 = 5, 8 + 2 + 0 - 3 + 1 = 7.
    const net = imp({
      nodes: [
        node('Conv', ['x', 'w'], ['c'], { pads: attr.ints([1, 2, 3, 0]), strides: attr.ints([2, 1]) }),
        node('Shape', ['c'], ['s']),
        node('Gather', ['s', 'hw'], ['g'], { axis: attr.int(0) }),
        node('Slice', ['g', 'zero1', 'one1'], ['h']),
        node('Slice', ['g', 'one1', 'two1'], ['w_']),
        node('Concat', ['z2', 'h', 'z2', 'z2', 'w_', 'z2'], ['pads'], { axis: attr.int(0) }),
        node('Pad', ['c', 'pads'], ['y']),
      ],
      initializers: [tensor('w', [4, 3, 3, 3], W), i64('hw', [2, 3]), i64('zero1', [0]), i64('one1', [1]), i64('two1', [2]), i64('z2', [0, 0])],
    });
    expect(ops(net)).toEqual(['Conv', 'PadChannels']);
    expect(only(net, 'PadChannels')).toMatchObject({ inputs: [1], before: 5, after: 7 });
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

  const head = [node('GlobalAveragePool', ['x'], ['p']), node('Flatten', ['p'], ['f'])];
  // weight as [out=2, in=3] row-major, and its transpose [in, out]
  const wOI = [1, 2, 3, 4, 5, 6];
  const wIO = [1, 4, 2, 5, 3, 6];

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

  test('MatMul read twice is not fused with its Add', () => {
    const e = importError({
      nodes: [...head, node('MatMul', ['f', 'w'], ['m']), node('Add', ['m', 'bias'], ['a']), node('Add', ['a', 'm'], ['y'])],
      initializers: [tensor('w', [3, 2], wIO), tensor('bias', [2], [1, 2])],
    });
    expect(e.message).toContain("node 'a' (Add)");
    expect(e.message).toContain("operand 'bias' is a constant");
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
    const spec = (form: 'raw' | 'typed', dtype = 1): ModelSpec => ({
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
    const dir = mkdtempSync(join(tmpdir(), 'stoxnet-onnx-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const weights = Float32Array.from(W);
    const bytes = new Uint8Array(weights.buffer);
    // 5 bytes of padding before the weights: unaligned on purpose
    mkdirSync(join(dir, 'data'));
    writeFileSync(join(dir, 'data', 'w.bin'), Buffer.concat([Buffer.alloc(5, 7), bytes]));
    writeFileSync(join(dir, '..', `outside-${process.pid}.bin`), bytes);
    afterAll(() => rmSync(join(dir, '..', `outside-${process.pid}.bin`), { force: true }));

    const write = (name: string, location: string, offset = 5) => {
      const path = join(dir, name);
      const m = model({ nodes: [node('Conv', ['x', 'w'], ['y'])], initializers: [externalTensor('w', [4, 3, 3, 3], location, offset, bytes.length)] });
      writeFileSync(path, m);
      return path;
    };

    test('is read relative to the model file', async () => {
      const net = await importOnnx(write('ext.onnx', 'data/w.bin'));
      expect(only(net, 'Conv').weight).toEqual(weights);
    });

    test('must stay inside the model directory', async () => {
      await expect(importOnnx(write('escape.onnx', `../outside-${process.pid}.bin`, 0))).rejects.toThrow(
        /escape\.onnx: node 'y' \(Conv\): tensor 'w': external data path '.*' leaves the model's directory/,
      );
      await expect(importOnnx(write('abs.onnx', join(dir, 'data', 'w.bin')))).rejects.toThrow(/leaves the model's directory/);
      symlinkSync(join(dir, '..', `outside-${process.pid}.bin`), join(dir, 'link.bin'));
      await expect(importOnnx(write('link.onnx', 'link.bin', 0))).rejects.toThrow(/leaves the model's directory/);
    });

    test('range and presence are checked', async () => {
      await expect(importOnnx(write('range.onnx', 'data/w.bin', 100))).rejects.toThrow(/outside 'data\/w.bin'/);
      await expect(importOnnx(write('missing.onnx', 'data/none.bin'))).rejects.toThrow(/cannot open external data 'data\/none.bin'/);
      const m = readFileSync(join(dir, 'ext.onnx'));
      expect(() => importOnnxBytes(m, 'ext.onnx')).toThrow(/the model's directory is not known/);
    });
  });
});

