// Seeded fuzzing of the two input boundaries, shared by test/fuzz.test.ts
// (10,000 cases each) and bench/fuzz.ts (any number), and the small network
// of test/parity.test.ts. It lives in bench/ (not test/helpers/) because
// bench/fuzz.ts needs it and everything bench/ imports is compiled into
// dist/, where nothing from test/ belongs. Mutated ONNX files
// through importOnnxBytes (then the Rust engine), and random configurations
// through resolveConfig and layerSpecs. Every case draws from its own
// generator, seeded from (seed, case number), so one case reproduces alone.
//
// A case passes when the code either succeeds or throws a typed error
// (OnnxImportError, ConfigError) within the time and memory bounds, and what
// it accepts the addon runs. Anything else is a failure: another exception
// type, an error that does not name the file, a network or configuration the
// TypeScript checks accept but the engine refuses (a check missing there), a
// panic caught by the addon, a slow or memory-hungry case, non-finite logits
// from parameters of ordinary size.

import type { LayerSpecJs } from '../ts/native-binding.js';
import { native } from '../ts/native.js';
import type { IrNode, Network } from '../ts/network.js';
import { exportOnnx } from '../ts/onnx/export.js';
import { OnnxImportError, importOnnxBytes } from '../ts/onnx/import.js';
import { decodeModel, encodeModel } from '../ts/onnx/proto.js';
import { ConfigError } from '../ts/config.js';
import { CONVERTERS, FLAGS, POLICIES, SCHEDULES, layerSpecs, resolveConfig } from '../ts/stox.js';
import { INT64, INT64_MAX, INT64_MIN, attr, constant, i64, model, node, randoms, tensor, valueInfo } from './onnx-builder.js';

// ---- the generator ----

/** mulberry32: a 32-bit state, fast, and good enough to pick mutations. */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

/** The generator of case `k` under `seed` (a 32-bit hash of both). */
export function caseRng(seed: number, k: number): Rng {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ (k >>> 0);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return new Rng((h ^ (h >>> 16)) >>> 0);
}

// ---- ONNX seeds: small valid models covering every op the importer maps or folds ----

export interface SeedModel {
  name: string;
  bytes: Uint8Array;
  /** Relative frequency among the seeds. */
  weight: number;
}

const f = (n: number, seed: number, scale = 0.5) => randoms(n, seed).map((v) => v * scale);

/** A residual block with the option-A shortcut exactly as torch.onnx exports it for resnet20 (Slice, Pad, and its pads subgraph). */
function blockModel(): Uint8Array {
  const c = (name: string, values: (number | bigint)[]) => constant(name, i64(name, values));
  return model({
    inputs: [valueInfo('x', ['N', 3, 8, 8])],
    initializers: [
      tensor('w0', [4, 3, 3, 3], f(108, 1)),
      tensor('b0', [4], f(4, 2)),
      tensor('w1', [8, 4, 3, 3], f(288, 3), { form: 'typed' }),
      tensor('g', [8], f(8, 4, 0.1).map((v) => 1 + v)),
      tensor('beta', [8], f(8, 5)),
      tensor('mean', [8], f(8, 6)),
      tensor('var', [8], f(8, 7, 0.1).map((v) => 1 + v)),
      tensor('w2', [8, 8, 3, 3], f(576, 8)),
      tensor('fcW', [10, 8], f(80, 9)),
      tensor('fcB', [10], f(10, 10), { form: 'typed' }),
    ],
    nodes: [
      node('Conv', ['x', 'w0', 'b0'], ['a'], { pads: attr.ints([1, 1, 1, 1]), kernel_shape: attr.ints([3, 3]) }),
      node('Relu', ['a'], ['ar']),
      node('Conv', ['ar', 'w1'], ['c1'], { pads: attr.ints([1, 1, 1, 1]), strides: attr.ints([2, 2]) }),
      node('BatchNormalization', ['c1', 'g', 'beta', 'mean', 'var'], ['n1'], { epsilon: attr.float(1e-5) }),
      node('Relu', ['n1'], ['r1']),
      node('Conv', ['r1', 'w2'], ['c2'], { pads: attr.ints([1, 1, 1, 1]) }),
      c('s0', [0]),
      c('e0', [INT64_MAX]),
      c('ax2', [2]),
      c('ax3', [3]),
      c('st2', [2]),
      node('Slice', ['ar', 's0', 'e0', 'ax2', 'st2'], ['sl1']),
      node('Slice', ['sl1', 's0', 'e0', 'ax3', 'st2'], ['sl2']),
      c('c8', [2]),
      c('c9', [0, 0, 0, 0, 2, 2]),
      node('ConstantOfShape', ['c8'], ['cos'], { value: attr.tensor(i64('v', [0])) }),
      node('Concat', ['c9', 'cos'], ['cat'], { axis: attr.int(0) }),
      c('c10', [-1, 2]),
      node('Reshape', ['cat', 'c10'], ['rs'], { allowzero: attr.int(0) }),
      c('m1', [-1]),
      c('big', [INT64_MIN]),
      c('z', [0]),
      node('Slice', ['rs', 'm1', 'big', 'z', 'm1'], ['rev']),
      node('Transpose', ['rev'], ['tr'], { perm: attr.ints([1, 0]) }),
      node('Reshape', ['tr', 'm1'], ['flat']),
      node('Cast', ['flat'], ['pads'], { to: attr.int(INT64) }),
      node('Pad', ['sl2', 'pads', ''], ['sh'], { mode: attr.string('constant') }),
      node('Add', ['c2', 'sh'], ['s']),
      node('Relu', ['s'], ['o']),
      node('GlobalAveragePool', ['o'], ['gp']),
      node('Flatten', ['gp'], ['fl'], { axis: attr.int(1) }),
      node('Gemm', ['fl', 'fcW', 'fcB'], ['y'], { alpha: attr.float(1), beta: attr.float(1), transB: attr.int(1) }),
    ],
  });
}

/** The other mapped ops (Identity, Clip, Dropout, MatMul + Add, Gemm without transB) and the folded ones the block does not use. */
function opsModel(): Uint8Array {
  return model({
    opset: 13,
    inputs: [valueInfo('x', ['N', 2, 4, 4])],
    initializers: [
      i64('one', [1]),
      i64('five', [5]),
      i64('zero', [0]),
      i64('eight', [8]),
      i64('axis0', [0]),
      i64('idx2', [2]),
      i64('axis3', [3]),
      tensor('lo', [], [-1]),
      tensor('hi', [], [1]),
      tensor('W', [64, 6], f(384, 11)),
      tensor('b', [6], f(6, 12)),
      tensor('W2', [6, 5], f(30, 13), { form: 'typed' }),
      tensor('b2', [1, 5], f(5, 14)),
    ],
    nodes: [
      // Slice ends from the input's shape (not the batch): W stays 4.
      node('Shape', ['x'], ['shp']),
      node('Gather', ['shp', 'idx2'], ['h'], { axis: attr.int(0) }),
      node('Slice', ['x', 'zero', 'h', 'axis3'], ['xs']),
      // pads [0,1,0,0,0,1,0,0]: where (r − 1)(r − 5) = 0 for r in Range(0, 8).
      node('Range', ['zero1', 'eight1', 'one1'], ['r']),
      node('Squeeze', ['zero', 'axis0'], ['zero1']),
      node('Squeeze', ['eight', 'axis0'], ['eight1']),
      node('Squeeze', ['one', 'axis0'], ['one1']),
      node('Sub', ['r', 'one'], ['r1']),
      node('Sub', ['r', 'five'], ['r5']),
      node('Mul', ['r1', 'r5'], ['prod']),
      node('Equal', ['prod', 'zero'], ['mask']),
      node('Expand', ['one', 'eight'], ['ones']),
      node('ConstantOfShape', ['eight'], ['zeros'], { value: attr.tensor(i64('v', [0])) }),
      node('Where', ['mask', 'ones', 'zeros'], ['w']),
      node('Div', ['w', 'one'], ['wd']),
      node('Unsqueeze', ['wd', 'axis0'], ['wu']),
      node('Squeeze', ['wu', 'axis0'], ['pads']),
      node('Constant', [], ['cv'], { value_float: attr.float(0) }),
      node('Pad', ['xs', 'pads', 'cv'], ['p']),
      node('Identity', ['p'], ['i']),
      node('Clip', ['i', 'lo', 'hi'], ['clip']),
      node('Dropout', ['clip'], ['d']),
      node('Flatten', ['d'], ['fl']),
      node('MatMul', ['fl', 'W'], ['mm']),
      node('Add', ['mm', 'b'], ['ma']),
      node('Relu', ['ma'], ['r6']),
      node('Gemm', ['r6', 'W2', 'b2'], ['y']),
    ],
  });
}

/** A model as `stoxnet train` exports it: IR ops, BatchNorm and Hardtanh, the config and learned parameters. */
function exportedModel(): Uint8Array {
  const nodes: IrNode[] = [
    { name: 'conv', op: 'Conv', inputs: [0], shape: [4, 3, 3, 3], weight: Float32Array.from(f(108, 21)), bias: Float32Array.from(f(4, 22)), stride: [1, 1], pads: [1, 1, 1, 1] },
    { name: 'bn', op: 'BatchNorm', inputs: [1], weight: new Float32Array(4).fill(1), bias: new Float32Array(4), mean: new Float32Array(4), var: new Float32Array(4).fill(1), eps: 1e-5 },
    { name: 'act', op: 'Hardtanh', inputs: [2], min: -1, max: 1 },
    { name: 'conv2', op: 'Conv', inputs: [3], shape: [4, 4, 3, 3], weight: Float32Array.from(f(144, 23)), stride: [2, 2], pads: [1, 1, 1, 1] },
    { name: 'add', op: 'Add', inputs: [4, 4] },
    { name: 'pool', op: 'GlobalAvgPool', inputs: [5] },
    { name: 'flat', op: 'Flatten', inputs: [6] },
    { name: 'fc', op: 'Linear', inputs: [7], shape: [10, 4], weight: Float32Array.from(f(40, 24)), bias: new Float32Array(10) },
  ];
  const net: Network = { input: [3, 8, 8], nodes, output: nodes.length };
  const ones = new Float32Array(4).fill(1);
  return exportOnnx(net, {
    config: { converter: 'mtj', samples: 4, rows: 16 },
    params: { conv2: { inputClip: Float32Array.of(1.5), normScale: ones, normShift: new Float32Array(4), readoutGain: ones, readoutOffset: new Float32Array(4) } },
    doc: 'fuzz seed',
  });
}

/** The built seeds; with `resnet20` (the bytes of the real model) added at `resnetWeight` relative to each built seed. */
export function seedModels(resnet20?: Uint8Array, resnetWeight = 0.15): SeedModel[] {
  const seeds: SeedModel[] = [
    { name: 'block', bytes: blockModel(), weight: 1 },
    { name: 'ops', bytes: opsModel(), weight: 1 },
    { name: 'exported', bytes: exportedModel(), weight: 1 },
  ];
  if (resnet20) seeds.push({ name: 'resnet20', bytes: resnet20, weight: resnetWeight });
  // Plain, frozen-by-convention copies: mutations build new arrays and never write into a seed.
  return seeds.map((m) => ({ ...m, bytes: copy(m.bytes) }));
}

function pickSeed(rng: Rng, seeds: SeedModel[]): SeedModel {
  let x = rng.next() * seeds.reduce((s, m) => s + m.weight, 0);
  for (const m of seeds) if ((x -= m.weight) < 0) return m;
  return seeds[seeds.length - 1]!;
}

// ---- mutations ----

/**
 * A position to mutate. Large models are mostly weights; most positions fall
 * in the first 64 KiB, where protobuf writers put the nodes (the graph's
 * field 1) and the first initializers' headers.
 */
function position(rng: Rng, len: number): number {
  if (len === 0) return 0;
  return rng.chance(0.7) ? rng.int(Math.min(len, 1 << 16)) : rng.int(len);
}

const BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x08, 0x0a, 0x12, 0x1a];
const VARINTS = [0n, 1n, 2n, 3n, 4n, 7n, 8n, 9n, 11n, 127n, 128n, 255n, 2n ** 16n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 64n - 1n];

/**
 * A copy. Not `slice`: the seeds and what protobufjs decodes are often Node
 * Buffers, whose `slice` is a view, and mutating it would change the seed.
 */
function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

function splice(b: Uint8Array, at: number, remove: number, insert: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(b.length - remove + insert.length);
  out.set(b.subarray(0, at));
  out.set(insert, at);
  out.set(b.subarray(at + remove), at + insert.length);
  return out;
}

function encodeVarint(v: bigint): Uint8Array {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    const byte = Number(x & 0x7fn);
    x >>= 7n;
    out.push(x ? byte | 0x80 : byte);
  } while (x);
  return Uint8Array.from(out);
}

/** Replaces the varint that starts at or after `at` (a byte after one without the continuation bit). */
function editVarint(b: Uint8Array, at: number, rng: Rng): Uint8Array {
  let start = at;
  while (start > 0 && start < b.length && b[start - 1]! & 0x80) start++;
  if (start >= b.length) return b;
  let end = start;
  let value = 0n;
  while (end < b.length && end - start < 10) {
    value |= BigInt(b[end]! & 0x7f) << BigInt(7 * (end - start));
    if (!(b[end++]! & 0x80)) break;
  }
  const choices = [...VARINTS, value + 1n, value - 1n, value * 2n, value << 8n, value >> 1n, BigInt(rng.int(1 << 20))];
  return splice(b, start, end - start, encodeVarint(rng.pick(choices)));
}

/** One byte-level mutation; returns the new bytes and what it did. */
function byteMutation(b: Uint8Array, rng: Rng): [Uint8Array, string] {
  const at = position(rng, b.length);
  switch (rng.int(7)) {
    case 0: {
      const out = copy(b);
      const n = rng.range(1, 8);
      for (let i = 0; i < n && out.length; i++) out[position(rng, out.length)]! ^= 1 << rng.int(8);
      return [out, `flip ${n} bits`];
    }
    case 1: {
      const out = copy(b);
      const n = rng.range(1, 4);
      for (let i = 0; i < n && at + i < out.length; i++) out[at + i] = rng.chance(0.5) ? rng.pick(BYTES) : rng.int(256);
      return [out, `overwrite ${n} bytes at ${at}`];
    }
    case 2: {
      const to = rng.chance(0.3) ? rng.int(Math.min(b.length, 64)) : rng.int(b.length + 1);
      return [b.subarray(0, to), `truncate to ${to}`];
    }
    case 3: {
      const n = rng.range(1, 64);
      const run = rng.chance(0.5) ? Uint8Array.from({ length: n }, () => rng.int(256)) : new Uint8Array(n).fill(rng.pick(BYTES));
      return [splice(b, at, 0, run), `insert ${n} bytes at ${at}`];
    }
    case 4: {
      const n = Math.min(rng.range(1, 64), b.length - at);
      return [splice(b, at, n), `delete ${n} bytes at ${at}`];
    }
    case 5: {
      const from = position(rng, b.length);
      const n = Math.min(rng.range(1, 512), b.length - from);
      return [splice(b, at, 0, copy(b.subarray(from, from + n))), `duplicate ${n} bytes from ${from} to ${at}`];
    }
    default:
      return [editVarint(b, at, rng), `varint at ${at}`];
  }
}

const OPS = [
  'Conv', 'Relu', 'Add', 'Mul', 'Sub', 'Div', 'Gemm', 'MatMul', 'Slice', 'Pad', 'Concat', 'Shape', 'Gather', 'ConstantOfShape', 'Expand',
  'Range', 'Where', 'Equal', 'Cast', 'Transpose', 'Squeeze', 'Unsqueeze', 'Reshape', 'Identity', 'Dropout', 'Clip', 'BatchNormalization',
  'GlobalAveragePool', 'Flatten', 'Constant', 'LSTM', 'Softmax', 'MaxPool', 'Tile', '',
];
const INTS = [0, 1, -1, 2, 3, 4, 7, 8, 16, 255, 65536, 2 ** 31 - 1, -(2 ** 31), 2 ** 32, 2 ** 40, 1e9, 100000];
const LONGS = ['9223372036854775807', '-9223372036854775808', '4294967296', '-4294967297', '9007199254740993'];
const FLOATS = [0, -0, 1, -1, 0.5, 1e-45, 1e-5, 3.4e38, -3.4e38, 1e30, NaN, Infinity, -Infinity];

interface Leaf {
  obj: Record<string, unknown> | unknown[];
  key: string | number;
  /** The field name (for array elements, the array's). */
  field: string;
  value: unknown;
}

/** Every scalar, string, bytes and array field of a decoded message, depth first. */
function leaves(obj: Record<string, unknown>, out: Leaf[] = []): Leaf[] {
  for (const [field, value] of Object.entries(obj)) {
    if (value === null || value === undefined) continue;
    if (Array.isArray(value)) {
      out.push({ obj, key: field, field, value });
      value.forEach((v, i) => {
        if (typeof v === 'object' && v !== null && !isLong(v)) leaves(v as Record<string, unknown>, out);
        else out.push({ obj: value, key: i, field, value: v });
      });
    } else if (typeof value === 'object' && !(value instanceof Uint8Array) && !isLong(value)) {
      leaves(value as Record<string, unknown>, out);
    } else {
      out.push({ obj, key: field, field, value });
    }
  }
  return out;
}

function isLong(v: unknown): boolean {
  return typeof v === 'object' && v !== null && 'low' in v && 'high' in v;
}

/** A new value for one field, chosen by what the field holds. */
function newValue(leaf: Leaf, rng: Rng, strings: string[]): unknown {
  const { field, value } = leaf;
  if (Array.isArray(value)) {
    const a = value.slice();
    const k = rng.int(3);
    if (k === 0 || a.length === 0) a.push(a.length ? rng.pick(a) : rng.pick(INTS));
    else if (k === 1) a.splice(rng.int(a.length), 1);
    else a.length = 0;
    return a;
  }
  if (field === 'opType') return rng.pick(OPS);
  if (field === 'dataType' || field === 'elemType') return rng.int(20);
  if (field === 'type') return rng.int(16);
  if (value instanceof Uint8Array) {
    // rawData: a NaN, an Inf or a random float in place of four bytes; other bytes (strings): random.
    const out = copy(value);
    if (out.length >= 4) new DataView(out.buffer).setFloat32(4 * rng.int(out.length >> 2), rng.pick(FLOATS), true);
    else if (out.length) out[rng.int(out.length)] = rng.int(256);
    return out;
  }
  if (typeof value === 'string') return rng.chance(0.8) && strings.length ? rng.pick(strings) : rng.pick(['', '?', 'N', 'x'.repeat(300)]);
  if (isLong(value) || field === 'dims' || field === 'ints' || field === 'i' || field === 'dimValue' || field === 'int64Data') {
    return rng.chance(0.8) ? rng.pick(INTS) : rng.pick(LONGS);
  }
  if (typeof value === 'number') return Number.isInteger(value) && rng.chance(0.5) ? rng.pick(INTS) : rng.pick(FLOATS);
  if (typeof value === 'boolean') return !value;
  return value;
}

/** One field-level mutation: decode, change one field by kind, encode. */
function fieldMutation(b: Uint8Array, rng: Rng): [Uint8Array, string] {
  let model: Record<string, unknown>;
  try {
    model = decodeModel(b) as unknown as Record<string, unknown>;
  } catch {
    return byteMutation(b, rng); // earlier mutations broke the encoding
  }
  const all = leaves(model);
  if (all.length === 0) return byteMutation(b, rng);
  const strings = [...new Set(all.filter((l) => typeof l.value === 'string').map((l) => l.value as string))];
  const leaf = rng.pick(all);
  const target = leaf.obj as Record<string | number, unknown>;
  let what: string;
  if (!Array.isArray(leaf.obj) && rng.chance(0.15)) {
    // Unset: the reader then sees the schema's default (protobufjs: 0, '', an empty array for bytes).
    delete target[leaf.key];
    what = `unset ${leaf.field}`;
  } else {
    const value = newValue(leaf, rng, strings);
    target[leaf.key] = value;
    what = `${leaf.field} = ${describe(value)}`;
  }
  try {
    return [encodeModel(model), `field ${what}`];
  } catch {
    return byteMutation(b, rng); // a value the schema cannot encode in that field
  }
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return `[${v.length} items]`;
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

/** One to three mutations of `bytes`: byte-level (60%) or field-level (40%). */
export function mutate(bytes: Uint8Array, rng: Rng): { bytes: Uint8Array; how: string[] } {
  let b = bytes;
  const how: string[] = [];
  const n = rng.range(1, 3);
  for (let i = 0; i < n; i++) {
    const [next, what] = rng.chance(0.6) ? byteMutation(b, rng) : fieldMutation(b, rng);
    b = next;
    how.push(what);
  }
  return { bytes: b, how };
}

// ---- random configurations ----

const KEYS = Object.keys(FLAGS) as (keyof typeof FLAGS)[];
const UNKNOWN_KEYS = ['rowz', 'Rows', 'weight_bits', 'adc-bits', 'converter ', '', 'toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf'];
const WILD: unknown[] = [
  0, -1, 1, 1.5, -0, NaN, Infinity, -Infinity, 1e308, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 17, 25, 4097, 1 << 20, (1 << 20) + 1, 1e-4,
  '12x', '', ' ', '4', ' 8 ', '1.5', 'NaN', 'Infinity', '-Infinity', '0x10', '1e3', '-3', 'mtj', 'adc', 'rising', 'away', 'conv1', 'a,b', ',', '1,,2',
  true, false, null, undefined, [], [1], [1, 'a'], [NaN], [[1]], {}, { rows: 1 }, 12n, 'x'.repeat(300),
];

/** A valid value for each setting (names: the Conv/Linear layers of the network the config is for). */
function validValue(key: keyof typeof FLAGS, rng: Rng, names: string[]): unknown {
  const bits = () => (rng.chance(0.7) ? rng.range(1, 8) : rng.range(1, 16));
  const list = (n: number, g: () => unknown) => Array.from({ length: n }, g);
  switch (key) {
    case 'converter':
      return rng.pick(CONVERTERS);
    case 'rows':
    case 'cols':
      return rng.chance(0.7) ? rng.pick([8, 16, 64, 100, 128, 256, 512]) : rng.range(1, 4096);
    case 'split':
      return rng.pick(['balanced', 'filled']);
    case 'weightBits':
    case 'weightSliceBits':
    case 'inputBits':
    case 'inputStreamBits':
      return rng.chance(0.2) ? String(bits()) : bits();
    case 'weightQuant':
      return rng.pick(['uniform', 'away']);
    case 'signed':
      return rng.pick(['differential', 'offset']);
    case 'adcBits':
      return rng.range(1, 24);
    case 'adcRange':
      return rng.pick(['full', 'calibrated']);
    case 'samples':
      return rng.chance(0.9) ? rng.range(1, 64) : rng.range(1, 1 << 20);
    case 'samplesPerLayer': {
      const l = list(rng.chance(0.5) ? 18 : rng.range(1, 20), () => rng.range(1, 16));
      return rng.chance(0.3) ? l.join(',') : l;
    }
    case 'samplesPerStream': {
      const l = list(rng.chance(0.5) ? 4 : rng.range(1, 16), () => rng.range(1, 16));
      return rng.chance(0.3) ? l.join(',') : l;
    }
    case 'schedule':
      return rng.pick(SCHEDULES);
    case 'transfer':
      return rng.pick(['sigmoid', 'tanh', 'fitted']);
    case 'sensitivity':
      return rng.pick([1e-3, 0.5, 4, 10, 1e3]);
    case 'weightNoise':
    case 'mtjOffsetSigma':
    case 'mtjSlopeSigma':
      return rng.pick([0, 0.01, 0.1, 1, 10]);
    case 'readNoise':
      return rng.pick([0, 0.5, 2, 1e6]);
    case 'seed':
      return rng.chance(0.9) ? rng.int(1000) : Number.MAX_SAFE_INTEGER;
    case 'policy':
      return rng.pick(POLICIES);
    case 'digitalLayers': {
      const l = names.filter(() => rng.chance(0.2));
      return rng.chance(0.3) ? l.join(',') : l;
    }
    case 'calibrationImages':
      return rng.range(1, 50_000);
  }
}

function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  // defineProperty: assigning `__proto__` would set the prototype, not a key (JSON.parse makes it a key).
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * A configuration: half of them valid except for at most one setting, the
 * others any mix of settings, unknown keys and wild values; a few are not
 * objects at all (a JSON config file may hold anything).
 */
export function randomConfig(rng: Rng, names: string[]): unknown {
  if (rng.chance(0.02)) return rng.pick([null, [], 'rows=1', 5, [{ rows: 1 }]]);
  const c: Record<string, unknown> = {};
  const n = rng.range(0, 8);
  const mostlyValid = rng.chance(0.5);
  const bad = mostlyValid && rng.chance(0.5) ? rng.int(n) : -1;
  for (let i = 0; i < n; i++) {
    const wild = mostlyValid ? i === bad : rng.chance(0.4);
    const key = !mostlyValid && rng.chance(0.1) ? rng.pick(UNKNOWN_KEYS) : rng.pick(KEYS);
    const value = wild || !KEYS.includes(key as keyof typeof FLAGS) ? rng.pick(WILD) : validValue(key as keyof typeof FLAGS, rng, names);
    setOwn(c, key, value);
  }
  return c;
}

// ---- outcomes ----

export interface Failure {
  kind: string;
  seed: number;
  case: number;
  input?: string;
  message: string;
}

export interface Tally {
  cases: number;
  ok: number;
  /** Typed errors by class and message prefix (names and numbers replaced). */
  typed: Record<string, number>;
  failures: Failure[];
  ms: number;
  maxCaseMs: number;
  slowestCase: number;
  /** Peak resident set of the process, MiB. */
  peakRssMB: number;
  [extra: string]: unknown;
}

function newTally(): Tally {
  return { cases: 0, ok: 0, typed: {}, failures: [], ms: 0, maxCaseMs: 0, slowestCase: -1, peakRssMB: 0 };
}

/** A message with the names and numbers taken out, so that errors of one kind count together. */
export function messageKey(message: string): string {
  const m = message
    .replace(/, got .*$/s, ', got …')
    .replace(/'[^']*'|"[^"]*"/g, '…')
    .replace(/(?<![\w-])-?\d[\d.]*(?:e[+-]?\d+)?(?![\w-])|NaN|-?Infinity/g, 'N')
    .replace(/\[[^\]]*\]/g, '[…]');
  return m.length > 90 ? `${m.slice(0, 87)}...` : m;
}

function count(t: Tally, key: string): void {
  t.typed[key] = (t.typed[key] ?? 0) + 1;
}

/** The addon's validation errors are InvalidArg; panics caught by its guard are GenericFailure with "(panic)". */
function nativeKind(e: unknown): 'invalid' | 'panic' | 'other' {
  const err = e as { code?: string; message?: string };
  if (err?.code === 'InvalidArg') return 'invalid';
  if (err?.message?.includes('internal error (panic)')) return 'panic';
  return 'other';
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}`.slice(0, 500) : `non-Error thrown: ${String(e)}`;
}

const rssMB = () => process.resourceUsage().maxRSS / 1024;

/** Checks the time and memory bounds of one case. */
function bounded(t: Tally, where: Omit<Failure, 'kind' | 'message'>, ms: number, rssBefore: number, bounds: Bounds): void {
  if (ms > t.maxCaseMs) [t.maxCaseMs, t.slowestCase] = [ms, where.case];
  if (ms > bounds.caseMs) t.failures.push({ kind: 'slow', ...where, message: `took ${ms.toFixed(0)} ms (bound ${bounds.caseMs} ms)` });
  const grew = rssMB() - rssBefore;
  if (grew > bounds.caseMB) t.failures.push({ kind: 'memory', ...where, message: `peak RSS grew by ${grew.toFixed(0)} MiB in one case (bound ${bounds.caseMB} MiB)` });
}

export interface Bounds {
  /** Per case, import (or resolve) and building the native network. */
  caseMs: number;
  /** Growth of the peak RSS within one case. */
  caseMB: number;
}

export const DEFAULT_BOUNDS: Bounds = { caseMs: 2000, caseMB: 128 };

// ---- the IR's cost, to keep the forward passes of fuzzed networks cheap ----

/** Values held by all activations and multiply-accumulates of one image (the engine's graph.rs shape rules). */
export function irCost(net: Network): { values: number; macs: number } {
  const shapes: [number, number, number][] = [net.input];
  let macs = 0;
  for (const n of net.nodes) {
    const [c, h, w] = shapes[n.inputs[0]!]!;
    let s: [number, number, number] = [c, h, w];
    if (n.op === 'Conv') {
      const [co, ci, kh, kw] = n.shape;
      s = [co, Math.floor((h + n.pads[0] + n.pads[2] - kh) / n.stride[0]) + 1, Math.floor((w + n.pads[1] + n.pads[3] - kw) / n.stride[1]) + 1];
      macs += co * ci * kh * kw * s[1] * s[2];
    } else if (n.op === 'Slice') s = [c, Math.ceil((n.end[0] - n.start[0]) / n.step[0]), Math.ceil((n.end[1] - n.start[1]) / n.step[1])];
    else if (n.op === 'PadChannels') s = [c + n.before + n.after, h, w];
    else if (n.op === 'GlobalAvgPool') s = [c, 1, 1];
    else if (n.op === 'Flatten') s = [c * h * w, 1, 1];
    else if (n.op === 'Transpose') s = n.perm.map((a) => [c, h, w][a]!) as [number, number, number];
    else if (n.op === 'Linear') {
      s = [n.shape[0], 1, 1];
      macs += n.shape[0] * n.shape[1];
    }
    shapes.push(s);
  }
  return { values: shapes.reduce((t, [c, h, w]) => t + c * h * w, 0), macs };
}

/** Largest magnitude among the network's parameters, a BatchNorm's by its scale γ/√(var + ε). */
export function maxParam(net: Network): number {
  let m = 0;
  const see = (x: number) => {
    m = Math.max(m, Math.abs(x));
  };
  for (const n of net.nodes) {
    for (const v of Object.values(n)) if (v instanceof Float32Array) v.forEach(see);
    if (n.op === 'BatchNorm') n.var.forEach((v, c) => see(n.weight[c]! / Math.sqrt(v + n.eps)));
    if (n.op === 'Hardtanh') [n.min, n.max].forEach(see);
  }
  return m;
}

/**
 * Parameters above this magnitude (a mutated exponent; trained weights are
 * below 10) may overflow float32 through the layers: non-finite logits are
 * then arithmetic, not a defect.
 */
export const HUGE_PARAM = 1e6;

// ---- the ONNX fuzzer ----

/** Case k's model: which seed, its mutated bytes, the mutations, and the generator to go on with. */
export function onnxCase(seed: number, k: number, seeds: SeedModel[]): { rng: Rng; seed: SeedModel; bytes: Uint8Array; how: string[] } {
  const rng = caseRng(seed, k);
  const model = pickSeed(rng, seeds);
  return { rng, seed: model, ...mutate(model.bytes, rng) };
}

export interface OnnxFuzzOptions {
  seed: number;
  cases: number;
  /** First case number (to resume or reproduce one case). */
  first?: number;
  seeds: SeedModel[];
  /** Also build the native network of what imports, and run one image through this share of them. */
  native?: boolean;
  forwardShare?: number;
  bounds?: Bounds;
  onProgress?: (done: number) => void;
  /** Called before each case (the bench's watchdog). */
  onCase?: (k: number) => void;
}

/** Runs `cases` mutated models through importOnnxBytes (and the addon); counts outcomes. */
export async function fuzzOnnx(o: OnnxFuzzOptions): Promise<Tally> {
  const bounds = o.bounds ?? DEFAULT_BOUNDS;
  const t = newTally();
  const stats = { built: 0, forwards: 0, finite: 0, nonFiniteHuge: 0 };
  const Net = o.native ? native().NativeNetwork : undefined;
  const start = performance.now();
  const first = o.first ?? 0;
  for (let k = first; k < first + o.cases; k++) {
    o.onCase?.(k);
    const { rng, seed, bytes, how } = onnxCase(o.seed, k, o.seeds);
    const where = { seed: o.seed, case: k, input: `${seed.name}: ${how.join('; ')}` };
    const rss = rssMB();
    const t0 = performance.now();
    let net: Network | undefined;
    const file = `${seed.name}.onnx`;
    try {
      net = importOnnxBytes(bytes, file);
      t.ok++;
    } catch (e) {
      if (!(e instanceof OnnxImportError || e instanceof ConfigError)) t.failures.push({ kind: 'untyped import error', ...where, message: errorText(e) });
      else if (!e.message.startsWith(`${file}: `)) t.failures.push({ kind: 'error does not name the file', ...where, message: errorText(e) });
      else count(t, `${e.name}: ${messageKey(e instanceof OnnxImportError ? e.reason : e.message)}`);
    }
    let engine: InstanceType<NonNullable<typeof Net>> | undefined;
    if (net && Net) {
      try {
        engine = new Net(net as never);
        stats.built++;
      } catch (e) {
        // A typed refusal still means the importer let through what the engine cannot run (a check missing there).
        const kind = nativeKind(e);
        t.failures.push({ kind: kind === 'invalid' ? 'the engine refused an imported network' : `native build: ${kind}`, ...where, message: errorText(e) });
      }
    }
    bounded(t, where, performance.now() - t0, rss, bounds);
    t.cases++;
    if (engine && net && rng.chance(o.forwardShare ?? 0.1)) {
      const cost = irCost(net);
      // The engine allows up to 2^28 values; a fuzz case need not spend seconds on one.
      if (cost.values <= 1 << 22 && cost.macs <= 2e8) {
        const n = net.input[0] * net.input[1] * net.input[2];
        const image = Float32Array.from({ length: n }, () => (rng.next() - 0.5) * 5);
        stats.forwards++;
        try {
          const logits = await engine.digital().forward(image, 0, 1);
          if (logits.length !== engine.classes) {
            t.failures.push({ kind: 'forward: wrong logits', ...where, message: `${logits.length} logits for ${engine.classes} classes` });
          } else if (logits.every(Number.isFinite)) stats.finite++;
          else if (maxParam(net) > HUGE_PARAM) stats.nonFiniteHuge++;
          else t.failures.push({ kind: 'forward: non-finite logits', ...where, message: `largest parameter ${maxParam(net)}` });
        } catch (e) {
          t.failures.push({ kind: `forward: ${nativeKind(e)}`, ...where, message: errorText(e) });
        }
      }
    }
    if ((k - first + 1) % 1000 === 0) o.onProgress?.(k - first + 1);
  }
  t.ms = performance.now() - start;
  t.peakRssMB = rssMB();
  return Object.assign(t, stats);
}

// ---- the configuration fuzzer ----

export interface ConfigFuzzOptions {
  seed: number;
  cases: number;
  first?: number;
  /** The network layerSpecs resolves configurations for (the real resnet20 when available). */
  net: Network;
  /**
   * A small network on which this share of the configurations that resolve
   * are programmed into the addon's simulator and run on one image: whatever
   * resolveConfig accepts, the engine must accept too.
   */
  small?: Network;
  nativeShare?: number;
  bounds?: Bounds;
  onProgress?: (done: number) => void;
  onCase?: (k: number) => void;
}

/** Conv/Linear names of a network. */
export function layerNames(net: Network): string[] {
  return net.nodes.filter((n) => n.op === 'Conv' || n.op === 'Linear').map((n) => n.name);
}

export async function fuzzConfigs(o: ConfigFuzzOptions): Promise<Tally> {
  const bounds = o.bounds ?? DEFAULT_BOUNDS;
  const t = newTally();
  const stats = { resolved: 0, specsOk: 0, simulated: 0 };
  const names = layerNames(o.net);
  const smallNames = o.small ? layerNames(o.small) : [];
  const engine = o.small && (o.nativeShare ?? 0) > 0 ? new (native().NativeNetwork)(o.small as never) : undefined;
  const start = performance.now();
  const first = o.first ?? 0;
  const typedOnly = (e: unknown, where: Omit<Failure, 'kind' | 'message'>, stage: string) => {
    if (e instanceof ConfigError) count(t, `${stage}: ${messageKey(e.message)}`);
    else t.failures.push({ kind: `untyped ${stage} error`, ...where, message: errorText(e) });
  };
  for (let k = first; k < first + o.cases; k++) {
    o.onCase?.(k);
    const rng = caseRng(o.seed, k);
    // For the small network, layer names of its own (digitalLayers must name existing layers to resolve).
    const forSmall = engine !== undefined && rng.chance(o.nativeShare!);
    const input = randomConfig(rng, forSmall ? smallNames : names);
    const where = { seed: o.seed, case: k, input: showConfig(input) };
    const rss = rssMB();
    const t0 = performance.now();
    let specs: (LayerSpecJs | null)[] | undefined;
    let config: ReturnType<typeof resolveConfig> | undefined;
    try {
      config = resolveConfig(input as Record<string, unknown>);
      stats.resolved++;
      const unknown = Object.keys(input as object).filter((key) => !Object.hasOwn(FLAGS, key));
      if (unknown.length) t.failures.push({ kind: 'unknown setting accepted', ...where, message: unknown.join(', ') });
    } catch (e) {
      typedOnly(e, where, 'resolveConfig');
    }
    if (config) {
      try {
        specs = layerSpecs(forSmall ? o.small! : o.net, config);
        stats.specsOk++;
        t.ok++;
      } catch (e) {
        typedOnly(e, where, 'layerSpecs');
      }
    }
    bounded(t, where, performance.now() - t0, rss, bounds);
    t.cases++;
    // MTJ samples multiply the cost of a forward pass; a fuzz case need not spend seconds on one.
    if (forSmall && config && specs && Math.max(...specs.map((s) => Math.max(s?.samples ?? 1, ...(s?.samplesPerStream ?? [])))) <= 4096) {
      const len = o.small!.input.reduce((p, d) => p * d, 1);
      const images = Float32Array.from({ length: 2 * len }, () => (rng.next() - 0.5) * 5);
      stats.simulated++;
      try {
        const sim = await engine!.simulator(specs, config.seed, images, 1);
        const logits = await sim.forward(images.subarray(0, len), 0, 1);
        // Noise (σ up to 10^6 LSB) may make logits large, never NaN.
        if (logits.some(Number.isNaN)) t.failures.push({ kind: 'simulator: NaN logits', ...where, message: Array.from(logits).join(',') });
      } catch (e) {
        t.failures.push({ kind: `simulator refused an accepted configuration (${nativeKind(e)})`, ...where, message: errorText(e) });
      }
    }
    if ((k - first + 1) % 1000 === 0) o.onProgress?.(k - first + 1);
  }
  t.ms = performance.now() - start;
  t.peakRssMB = rssMB();
  return Object.assign(t, stats);
}

function showConfig(c: unknown): string {
  try {
    const s = JSON.stringify(c, (_, v) => (typeof v === 'bigint' ? `${v}n` : typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
    return s === undefined ? String(c) : s.length > 300 ? `${s.slice(0, 297)}...` : s;
  } catch {
    return String(c);
  }
}

/** A small network for the simulator checks: the block seed, imported. */
export function smallNetwork(): Network {
  return importOnnxBytes(blockModel(), 'block.onnx');
}
