// Builds small ONNX models for the importer tests and the fuzzers' seed
// models, encoded with the same protobufjs schema the importer decodes with.
// It lives in bench/ (not test/helpers/) because bench/fuzz.ts needs it and
// everything bench/ imports is compiled into dist/.

import { encodeModel } from '../ts/onnx/proto.js';

export const FLOAT = 1;
export const UINT8 = 2;
export const INT8 = 3;
export const INT32 = 6;
export const INT64 = 7;
export const BOOL = 9;
export const FLOAT16 = 10;
export const DOUBLE = 11;

export const INT64_MAX = 2n ** 63n - 1n;
export const INT64_MIN = -(2n ** 63n);

type Num = number | bigint;

const RAW: Record<number, (v: Num[]) => ArrayBufferView> = {
  [FLOAT]: (v) => Float32Array.from(v, Number),
  [DOUBLE]: (v) => Float64Array.from(v, Number),
  [INT64]: (v) => BigInt64Array.from(v, (x) => BigInt(x)),
  [INT32]: (v) => Int32Array.from(v, Number),
  [INT8]: (v) => Int8Array.from(v, Number),
  [UINT8]: (v) => Uint8Array.from(v, Number),
  [BOOL]: (v) => Uint8Array.from(v, Number),
  [FLOAT16]: (v) => new Uint16Array(v.length),
};

const TYPED: Record<number, string> = {
  [FLOAT]: 'floatData',
  [DOUBLE]: 'doubleData',
  [INT64]: 'int64Data',
  [INT32]: 'int32Data',
  [INT8]: 'int32Data',
  [UINT8]: 'int32Data',
  [BOOL]: 'int32Data',
};

export interface TensorOptions {
  dtype?: number;
  /** raw_data (default) or the typed repeated field */
  form?: 'raw' | 'typed';
}

export function tensor(name: string, dims: Num[], values: Num[], { dtype = FLOAT, form = 'raw' }: TensorOptions = {}): object {
  const base = { name, dims: dims.map(String), dataType: dtype };
  if (form === 'typed') return { ...base, [TYPED[dtype]!]: values.map((v) => (typeof v === 'bigint' ? String(v) : v)) };
  const view = RAW[dtype]!(values);
  return { ...base, rawData: new Uint8Array(view.buffer, view.byteOffset, view.byteLength) };
}

/** An int64 vector, raw. */
export function i64(name: string, values: Num[]): object {
  return tensor(name, [values.length], values, { dtype: INT64 });
}

/** A tensor whose data lives in `location` (relative to the model's directory). */
export function externalTensor(name: string, dims: number[], location: string, offset: number, length: number): object {
  return {
    name,
    dims: dims.map(String),
    dataType: FLOAT,
    dataLocation: 1,
    externalData: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(length) },
    ],
  };
}

export const attr = {
  int: (i: Num) => ({ type: 2, i: String(i) }),
  ints: (ints: Num[]) => ({ type: 7, ints: ints.map(String) }),
  float: (f: number) => ({ type: 1, f }),
  floats: (floats: number[]) => ({ type: 6, floats }),
  string: (s: string) => ({ type: 3, s: new TextEncoder().encode(s) }),
  tensor: (t: object) => ({ type: 4, t }),
};

export function node(opType: string, input: string[], output: string[], attrs: Record<string, object> = {}, name = output[0]): object {
  return { opType, input, output, name, attribute: Object.entries(attrs).map(([n, a]) => ({ name: n, ...a })) };
}

/** A Constant node holding `t`, named after its output. */
export function constant(output: string, t: object): object {
  return node('Constant', [], [output], { value: attr.tensor(t) });
}

export function valueInfo(name: string, dims: (number | string)[], elemType = FLOAT): object {
  const dim = dims.map((d) => (typeof d === 'number' ? { dimValue: String(d) } : { dimParam: d }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}

export interface ModelSpec {
  nodes: object[];
  initializers?: object[];
  inputs?: object[];
  outputs?: string[];
  opset?: number;
}

export function model({ nodes, initializers = [], inputs = [valueInfo('x', ['N', 3, 8, 8])], outputs = ['y'], opset = 13 }: ModelSpec): Uint8Array {
  return encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }],
    producerName: 'stoxnet-test',
    graph: {
      name: 'test',
      node: nodes,
      initializer: initializers,
      input: inputs,
      output: outputs.map((o) => ({ name: o })),
    },
  });
}

/** Deterministic pseudo-random floats in [-1, 1) (mulberry32). */
export function randoms(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  });
}
