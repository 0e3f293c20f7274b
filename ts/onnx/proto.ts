// ONNX protobuf decoding with protobufjs and the official schema (onnx.proto),
// plus TensorProto → typed array conversion.

import { closeSync, constants, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { endianness } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import protobuf from 'protobufjs';
import type { Long } from 'protobufjs';
import { packageRoot } from '../paths.js';

/**
 * An import failure. Lower layers throw it with the reason only; the importer
 * adds the file and the node (see `located` in import.ts).
 */
export class OnnxImportError extends Error {
  constructor(
    readonly reason: string,
    readonly source?: string,
    readonly where?: string,
    options?: ErrorOptions,
  ) {
    super(cut(source === undefined ? reason : `${source}: ${where === undefined ? '' : `${where}: `}${reason}`), options);
    this.name = 'OnnxImportError';
  }
}

/** Names in messages come from the file and may be of any length. */
function cut(message: string): string {
  return message.length > 1000 ? `${message.slice(0, 999)}…` : message;
}

/** A list for messages: `[a,b,c]`, cut after 16 values (a shape or list read from a tensor may be long). */
export function list(v: ArrayLike<number>): string {
  const head = Array.from({ length: Math.min(v.length, 16) }, (_, i) => v[i]);
  return `[${head.join(',')}${v.length > 16 ? `,… (${v.length} values)` : ''}]`;
}

export function fail(reason: string): never {
  throw new OnnxImportError(reason);
}

// ---- decoded message shapes (the subset the importer reads; camelCase as protobufjs decodes) ----

/** protobufjs gives int64 fields as Long (long.js is installed) or as a possibly unsafe number. */
export type Int64 = number | Long;

export interface StringStringEntryProto {
  key: string;
  value: string;
}

export interface TensorProto {
  name: string;
  dims: Int64[];
  dataType: number;
  segment: object | null;
  rawData: Uint8Array;
  floatData: number[];
  int32Data: number[];
  int64Data: Int64[];
  doubleData: number[];
  uint64Data: Int64[];
  dataLocation: number;
  externalData: StringStringEntryProto[];
}

export interface AttributeProto {
  name: string;
  type: number;
  f: number;
  i: Int64;
  s: Uint8Array;
  t: TensorProto | null;
  floats: number[];
  ints: Int64[];
}

export interface NodeProto {
  input: string[];
  output: string[];
  name: string;
  opType: string;
  domain: string;
  attribute: AttributeProto[];
}

export interface DimensionProto {
  dimValue: Int64;
  dimParam: string;
}

export interface ValueInfoProto {
  name: string;
  type: { tensorType: { elemType: number; shape: { dim: DimensionProto[] } | null } | null } | null;
}

export interface GraphProto {
  name: string;
  node: NodeProto[];
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
}

export interface ModelProto {
  irVersion: Int64;
  opsetImport: { domain: string; version: Int64 }[];
  metadataProps: StringStringEntryProto[];
  graph: GraphProto | null;
}

let modelType: protobuf.Type | undefined;

function modelProtoType(): protobuf.Type {
  modelType ??= protobuf.loadSync(join(packageRoot(), 'ts', 'onnx', 'onnx.proto')).lookupType('onnx.ModelProto');
  return modelType;
}

/** Throws protobufjs's own error on malformed input; the importer words it. */
export function decodeModel(bytes: Uint8Array): ModelProto {
  return modelProtoType().decode(bytes) as unknown as ModelProto;
}

/** Encodes a plain-object ModelProto (camelCase fields, as protobufjs fromObject takes them). Used by tests. */
export function encodeModel(model: object): Uint8Array {
  const type = modelProtoType();
  return type.encode(type.fromObject(model)).finish();
}

// ---- integers ----

/**
 * An int64 as a number: exact when it is a safe integer, otherwise ±Infinity.
 * Exporters write INT64_MAX/MIN as "to the end" in Slice; saturating keeps that
 * meaning, and every place that needs an exact integer checks with `exact`.
 */
export function int64(v: Int64 | bigint): number {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : v < 0 ? -Infinity : Infinity;
  let b: bigint;
  if (typeof v === 'bigint') b = v;
  else {
    const bits = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
    b = v.unsigned ? bits : BigInt.asIntN(64, bits);
  }
  if (b > BigInt(Number.MAX_SAFE_INTEGER)) return Infinity;
  if (b < BigInt(Number.MIN_SAFE_INTEGER)) return -Infinity;
  return Number(b);
}

export function exact(v: number, what: string): number {
  if (!Number.isSafeInteger(v)) fail(`${what} is ${v}, not an integer in the safe range`);
  return v;
}

/** Largest tensor the importer will allocate (and graph.rs MAX_ELEMENTS). */
export const MAX_ELEMENTS = 2 ** 28;

/** Element count of `dims`, refusing negative, non-integer or huge dimensions before anything is allocated. */
export function checkedSize(dims: readonly number[], what: string): number {
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) fail(`${what} has invalid dimension ${d} in ${list(dims)}`);
    n *= d;
  }
  if (n > MAX_ELEMENTS) fail(`${what} has shape ${list(dims)} (${n} elements), more than the limit of 2^28`);
  return n;
}

// ---- tensors ----

export type DType = 'float32' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool' | 'uint32' | 'uint64';
/** int64 and uint64 are held as float64 numbers (see `int64`); bool as 0/1 bytes. */
export type TensorData = Float32Array | Float64Array | Int32Array | Int8Array | Uint8Array | Uint32Array;

export interface Tensor {
  dtype: DType;
  dims: number[];
  data: TensorData;
}

interface DTypeInfo {
  dtype: DType;
  bytes: number;
  /** The typed field holding the values when raw_data is not used (per onnx.proto). */
  field: 'floatData' | 'doubleData' | 'int32Data' | 'int64Data' | 'uint64Data';
  /** View of little-endian raw bytes in an aligned buffer of their own. */
  fromRaw: (buf: ArrayBuffer) => TensorData;
}

// Typed-array views read the host byte order; ONNX raw data is little-endian.
const littleEndian = endianness() === 'LE';

const DTYPES: Record<number, DTypeInfo> = {
  1: { dtype: 'float32', bytes: 4, field: 'floatData', fromRaw: (b) => new Float32Array(b) },
  11: { dtype: 'float64', bytes: 8, field: 'doubleData', fromRaw: (b) => new Float64Array(b) },
  7: { dtype: 'int64', bytes: 8, field: 'int64Data', fromRaw: (b) => Float64Array.from(new BigInt64Array(b), int64) },
  13: { dtype: 'uint64', bytes: 8, field: 'uint64Data', fromRaw: (b) => Float64Array.from(new BigUint64Array(b), int64) },
  6: { dtype: 'int32', bytes: 4, field: 'int32Data', fromRaw: (b) => new Int32Array(b) },
  12: { dtype: 'uint32', bytes: 4, field: 'uint64Data', fromRaw: (b) => new Uint32Array(b) },
  3: { dtype: 'int8', bytes: 1, field: 'int32Data', fromRaw: (b) => new Int8Array(b) },
  2: { dtype: 'uint8', bytes: 1, field: 'int32Data', fromRaw: (b) => new Uint8Array(b) },
  9: { dtype: 'bool', bytes: 1, field: 'int32Data', fromRaw: (b) => new Uint8Array(b).map((v) => (v ? 1 : 0)) },
};

const TYPE_NAMES = [
  'UNDEFINED', 'FLOAT', 'UINT8', 'INT8', 'UINT16', 'INT16', 'INT32', 'INT64', 'STRING', 'BOOL', 'FLOAT16', 'DOUBLE',
  'UINT32', 'UINT64', 'COMPLEX64', 'COMPLEX128', 'BFLOAT16',
];

function onnxTypeName(t: number): string {
  return TYPE_NAMES[t] ?? `type ${t}`;
}

/** The dtype of an ONNX TensorProto.DataType value. */
export function dtypeOf(onnxType: number, what: string): DType {
  const info = DTYPES[onnxType];
  if (!info) fail(`${what} has data type ${onnxTypeName(onnxType)}, which is not supported`);
  return info.dtype;
}

export function newArray(dtype: DType, n: number): TensorData {
  switch (dtype) {
    case 'float32':
      return new Float32Array(n);
    case 'float64':
    case 'int64':
    case 'uint64':
      return new Float64Array(n);
    case 'int32':
      return new Int32Array(n);
    case 'uint32':
      return new Uint32Array(n);
    case 'int8':
      return new Int8Array(n);
    case 'uint8':
    case 'bool':
      return new Uint8Array(n);
  }
}

/**
 * Decodes a TensorProto. External data is read from files relative to `dir`
 * (the model's directory), which they may not leave.
 */
export function tensorFromProto(t: TensorProto, dir?: string): Tensor {
  const what = `tensor '${t.name}'`;
  const info = DTYPES[t.dataType];
  if (!info) fail(`${what} has data type ${onnxTypeName(t.dataType)}, which is not supported`);
  const dims = t.dims.map((d) => int64(d));
  const n = checkedSize(dims, what);
  if (t.segment) fail(`${what} is segmented, which is not supported`);

  let raw: Uint8Array | undefined;
  if (t.dataLocation === 1) raw = readExternal(t, dir, what, n * info.bytes);
  else if (t.rawData.length > 0) raw = t.rawData;
  let data: TensorData;
  if (raw !== undefined) {
    if (raw.length !== n * info.bytes) fail(`${what} has ${raw.length} bytes of data, expected ${n * info.bytes}`);
    if (!littleEndian) fail('raw tensor data needs a little-endian host');
    // Copy (Buffer.slice would not): the bytes sit at any offset of the file buffer, typed views need alignment.
    data = info.fromRaw(new Uint8Array(raw).buffer);
  } else {
    const values = t[info.field];
    if (values.length !== n) fail(`${what} has ${values.length} values in ${info.field}, expected ${n}`);
    const wide = info.field === 'int64Data' || info.field === 'uint64Data';
    data = newArray(info.dtype, n);
    for (let i = 0; i < n; i++) {
      const v = wide ? int64(values[i]!) : (values[i] as number);
      data[i] = info.dtype === 'bool' ? Number(v !== 0) : v;
    }
  }
  return { dtype: info.dtype, dims, data };
}

function readExternal(t: TensorProto, dir: string | undefined, what: string, expected: number): Uint8Array {
  const entries = new Map(t.externalData.map((e) => [e.key, e.value]));
  const location = entries.get('location');
  if (!location) fail(`${what} has external data without a location`);
  if (dir === undefined) fail(`${what} has external data in '${location}', but the model's directory is not known`);
  const base = resolve(dir);
  const path = resolve(base, location);
  if (isAbsolute(location) || escapes(base, path)) fail(`${what}: external data path '${location}' leaves the model's directory`);
  let fd: number;
  try {
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer, forever.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    return fail(`${what}: cannot open external data '${location}': ${(e as Error).message}`);
  }
  try {
    // A symlink inside the directory may still point out of it.
    if (escapes(realpathSync(base), realpathSync(path))) fail(`${what}: external data path '${location}' leaves the model's directory`);
    const st = fstatSync(fd);
    if (!st.isFile()) fail(`${what}: external data '${location}' is not a regular file`);
    const fileSize = st.size;
    const offset = exact(Number(entries.get('offset') ?? 0), `${what} external data offset`);
    const length = entries.has('length') ? exact(Number(entries.get('length')), `${what} external data length`) : expected;
    // Checked before allocating: the declared length may be anything.
    if (length !== expected) fail(`${what} has ${length} bytes of external data, expected ${expected}`);
    if (offset < 0 || offset + length > fileSize) {
      fail(`${what}: external data range offset ${offset} length ${length} is outside '${location}' (${fileSize} bytes)`);
    }
    const bytes = new Uint8Array(length);
    let read: number;
    try {
      read = readSync(fd, bytes, 0, length, offset);
    } catch (e) {
      return fail(`${what}: cannot read external data '${location}': ${(e as Error).message}`);
    }
    if (read !== length) fail(`${what}: short read from '${location}'`);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

function escapes(base: string, path: string): boolean {
  const rel = relative(base, path);
  return rel === '..' || rel.startsWith('..' + sep) || isAbsolute(rel);
}

// ---- attributes ----

const ATTR_TYPES: Record<number, string> = { 1: 'FLOAT', 2: 'INT', 3: 'STRING', 4: 'TENSOR', 6: 'FLOATS', 7: 'INTS' };

/** Typed access to a node's attributes. */
export class Attrs {
  private readonly map: Map<string, AttributeProto>;

  constructor(
    node: NodeProto,
    private readonly dir?: string,
  ) {
    this.map = new Map(node.attribute.map((a) => [a.name, a]));
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  private get(name: string, type: number): AttributeProto | undefined {
    const a = this.map.get(name);
    // type is 0 only in files older than IR version 2; trust the field then.
    if (a && a.type !== 0 && a.type !== type) {
      fail(`attribute '${name}' has type ${ATTR_TYPES[a.type] ?? a.type}, expected ${ATTR_TYPES[type]}`);
    }
    return a;
  }

  int(name: string, dflt?: number): number {
    const a = this.get(name, 2);
    if (!a) return dflt ?? fail(`attribute '${name}' is required`);
    return exact(int64(a.i), `attribute '${name}'`);
  }

  /** Saturating (see `int64`), for Slice starts/ends. */
  int64s(name: string): number[] | undefined {
    return this.get(name, 7)?.ints.map((v) => int64(v));
  }

  ints(name: string, dflt?: number[]): number[] {
    const v = this.int64s(name);
    if (!v) return dflt ?? fail(`attribute '${name}' is required`);
    return v.map((x) => exact(x, `attribute '${name}'`));
  }

  float(name: string, dflt?: number): number {
    const a = this.get(name, 1);
    if (!a) return dflt ?? fail(`attribute '${name}' is required`);
    return a.f;
  }

  floats(name: string, dflt?: number[]): number[] {
    return this.get(name, 6)?.floats ?? dflt ?? fail(`attribute '${name}' is required`);
  }

  string(name: string, dflt?: string): string {
    const a = this.get(name, 3);
    if (!a) return dflt ?? fail(`attribute '${name}' is required`);
    // Unset, protobufjs gives the field's default, a plain empty array, which TextDecoder refuses.
    return new TextDecoder().decode(a.s.length ? a.s : new Uint8Array(0));
  }

  tensor(name: string): Tensor | undefined {
    const t = this.get(name, 4)?.t;
    return t ? tensorFromProto(t, this.dir) : undefined;
  }
}
