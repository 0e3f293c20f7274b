// Constant folding: evaluates, at import time, the nodes whose inputs are all
// known (initializers, Constant nodes, Shape of tensors with a known shape), so
// that shape subgraphs such as the pads of an option-A shortcut become plain
// constants. The batch size is dynamic: shapes are folded with N = 1 and every
// element that depends on N is marked, so the importer can refuse it where a
// weight or a pad is needed.

import { type Attrs, type DType, type Tensor, checkedSize, dtypeOf, exact, fail, list, newArray } from './proto.js';

export interface Const extends Tensor {
  /** 1 for the elements that depend on the batch size; absent when none does. */
  batch?: Uint8Array;
  /** The shape itself depends on the batch size (then so does every element). */
  batchShape?: boolean;
}

/**
 * Elements that folding may still allocate for one model: 2^20 plus one per
 * byte of the file. Shape subgraphs are tiny, and folding weights (a
 * Transpose, a Cast) makes about one element per four bytes; without a bound
 * a file of a hundred bytes (ConstantOfShape, Expand, Range), or a chain of
 * nodes each copying a large constant, could make the importer allocate
 * gigabytes.
 */
export interface FoldBudget {
  left: number;
}

export function foldBudget(fileBytes: number): FoldBudget {
  return { left: FOLD_ELEMENTS + fileBytes };
}

const FOLD_ELEMENTS = 2 ** 20;

type FoldOp = (x: (Const | undefined)[], a: Attrs, budget: FoldBudget) => Const;

export function canFold(op: string): boolean {
  return Object.hasOwn(FOLD, op);
}

/** Evaluates one node whose present inputs are all constants (missing optional inputs are undefined). */
export function foldNode(op: string, x: (Const | undefined)[], a: Attrs, budget = foldBudget(0)): Const {
  const out = FOLD[op]!(x, a, budget);
  return x.some((c) => c?.batchShape) ? batchDependent(out) : out;
}

export function dependsOnBatch(c: Const): boolean {
  return c.batchShape === true || (c.batch !== undefined && c.batch.includes(1));
}

/** Output of Shape (with the opset-15 start/end attributes); `batchAxis0` marks dimension 0 as the batch. */
export function shapeOf(dims: number[], a: Attrs, batchAxis0: boolean): Const {
  const r = dims.length;
  const clampAxis = (v: number) => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
  const start = clampAxis(a.int('start', 0));
  const end = clampAxis(a.int('end', r));
  const picked = dims.slice(start, Math.max(start, end));
  const out: Const = { dtype: 'int64', dims: [picked.length], data: Float64Array.from(picked) };
  if (batchAxis0 && start === 0 && picked.length > 0) {
    out.batch = new Uint8Array(picked.length);
    out.batch[0] = 1;
  }
  return out;
}

export interface SliceAxis {
  start: number;
  step: number;
  count: number;
}

/**
 * Resolves a Slice node's parameters (inputs starts, ends, axes, steps at
 * opset ≥ 10, attributes before) against `dims`, clamping per the ONNX spec.
 * Returns one entry per axis, undefined for the axes the node does not name.
 */
export function sliceAxes(dims: number[], x: (Const | undefined)[], a: Attrs): (SliceAxis | undefined)[] {
  const r = dims.length;
  const starts = x[1] ? values(x[1]) : (a.int64s('starts') ?? fail("attribute 'starts' is required"));
  const ends = x[2] ? values(x[2]) : (a.int64s('ends') ?? fail("attribute 'ends' is required"));
  const axes = x[3] ? ints(x[3], 'axes') : a.ints('axes', starts.map((_, i) => i));
  const steps = x[4] ? ints(x[4], 'steps') : starts.map(() => 1);
  if (ends.length !== starts.length || axes.length !== starts.length || steps.length !== starts.length) {
    fail('starts, ends, axes and steps differ in length');
  }
  const out = new Array<SliceAxis | undefined>(r).fill(undefined);
  axes.forEach((ax, i) => {
    const axis = normAxis(ax, r);
    if (out[axis]) fail(`axis ${ax} is repeated`);
    const d = dims[axis]!;
    const step = steps[i]!;
    if (step === 0) fail('step is 0');
    let s = starts[i]!;
    let e = ends[i]!;
    if (s < 0) s += d;
    if (e < 0) e += d;
    // Positive steps clamp to [0, d], negative ones to [-1, d-1]: ONNX Slice.
    s = step > 0 ? clamp(s, 0, d) : clamp(s, 0, d - 1);
    e = step > 0 ? clamp(e, 0, d) : clamp(e, -1, d - 1);
    out[axis] = { start: s, step, count: Math.max(0, Math.ceil((e - s) / step)) };
  });
  return out;
}

// ---- helpers ----

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(Math.max(v, lo), hi);
}

function need(x: (Const | undefined)[], i: number): Const {
  return x[i] ?? fail(`input ${i} is required`);
}

function values(c: Const): number[] {
  return Array.from(c.data);
}

export function ints(c: Const, what: string): number[] {
  return Array.from(c.data, (v) => exact(v, what));
}

export function scalar(c: Const, what: string): number {
  if (c.data.length !== 1) fail(`${what} must have one element, has shape ${list(c.dims)}`);
  return c.data[0]!;
}

function normAxis(axis: number, rank: number): number {
  if (axis < -rank || axis >= rank) fail(`axis ${axis} is out of range for rank ${rank}`);
  return axis < 0 ? axis + rank : axis;
}

function strides(dims: number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= dims[i]!;
  }
  return s;
}

// Index lists are typed arrays: a plain array of ~10^8 numbers is a fatal
// "invalid size" error in V8, not an exception (sizes stay below 2^28, see checkedSize).
function range(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, j) => j);
}

/**
 * Flat source indices of an output walked in row-major order, where output
 * axis k takes the source positions pick[k] along a source stride st[k].
 */
function product(st: number[], pick: ArrayLike<number>[]): Int32Array {
  let idx = Int32Array.of(0);
  pick.forEach((p, k) => {
    const next = new Int32Array(idx.length * p.length);
    let o = 0;
    for (const base of idx) for (let j = 0; j < p.length; j++) next[o++] = base + p[j]! * st[k]!;
    idx = next;
  });
  return idx;
}

/** Element count of a folded output, taken from the budget before anything is allocated. */
function foldedSize(dims: number[], budget: FoldBudget): number {
  const n = checkedSize(dims, 'output');
  if (n > budget.left) {
    fail(`output has shape ${list(dims)} (${n} elements); constants folded from a file are limited to 2^20 elements plus one per byte, ${budget.left} are left`);
  }
  budget.left -= n;
  return n;
}

/** A new constant whose element i is element idx[i] of `src` (data and batch marks move together). */
function gather(src: Const, dims: number[], idx: ArrayLike<number>): Const {
  const data = newArray(src.dtype, idx.length);
  for (let i = 0; i < idx.length; i++) data[i] = src.data[idx[i]!]!;
  const out: Const = { dtype: src.dtype, dims, data };
  if (src.batch) out.batch = Uint8Array.from(idx, (j) => src.batch![j]!);
  return out;
}

/** Same elements, new shape. */
function reshaped(src: Const, dims: number[]): Const {
  if (checkedSize(dims, 'output') !== src.data.length) {
    fail(`cannot reshape ${list(src.dims)} to ${list(dims)}`);
  }
  return { ...src, dims };
}

function batchDependent(out: Const): Const {
  return { ...out, batch: new Uint8Array(out.data.length).fill(1), batchShape: true };
}

/** When an input that decides the output's shape or selection depends on the batch size, everything does. */
function taintedBy(out: Const, ...controls: (Const | undefined)[]): Const {
  return controls.some((c) => c && dependsOnBatch(c)) ? batchDependent(out) : out;
}

function broadcastDims(shapes: number[][]): number[] {
  const r = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    let d = 1;
    for (const s of shapes) {
      const v = s[s.length - r + i] ?? 1;
      if (v !== 1 && d !== 1 && v !== d) fail(`shapes ${shapes.map(list).join(', ')} do not broadcast`);
      if (v !== 1) d = v;
    }
    out.push(d);
  }
  return out;
}

/** For each element of `out`, the flat index of the element of a tensor of shape `dims` that broadcasts to it. */
function broadcastIndex(out: number[], dims: number[]): Int32Array {
  const lead = out.length - dims.length;
  const st = strides(dims);
  return product(
    out.map((_, i) => (i < lead || dims[i - lead] === 1 ? 0 : st[i - lead]!)),
    out.map(range),
  );
}

function sameDType(cs: Const[]): DType {
  const t = cs[0]!.dtype;
  if (cs.some((c) => c.dtype !== t)) fail(`inputs have different types ${cs.map((c) => c.dtype).join(', ')}`);
  return t;
}

const INTEGER: ReadonlySet<DType> = new Set(['int64', 'int32', 'int8', 'uint8', 'uint32', 'uint64']);

/** Numpy-broadcast elementwise op; `f` gets one value per input. */
function elementwise(x: Const[], dtype: DType, budget: FoldBudget, f: (v: number[]) => number): Const {
  const dims = broadcastDims(x.map((c) => c.dims));
  const n = foldedSize(dims, budget);
  const maps = x.map((c) => broadcastIndex(dims, c.dims));
  const data = newArray(dtype, n);
  const batch = x.some((c) => c.batch) ? new Uint8Array(n) : undefined;
  const v = new Array<number>(x.length);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < x.length; k++) {
      const j = maps[k]![i]!;
      v[k] = x[k]!.data[j]!;
      if (batch && x[k]!.batch?.[j]) batch[i] = 1;
    }
    data[i] = f(v);
  }
  return batch ? { dtype, dims, data, batch } : { dtype, dims, data };
}

function arithmetic(f: (a: number, b: number) => number, intF = f): FoldOp {
  return (x, _, budget) => {
    const ab = [need(x, 0), need(x, 1)];
    const t = sameDType(ab);
    const g = INTEGER.has(t) ? intF : f;
    return elementwise(ab, t, budget, ([a, b]) => g(a!, b!));
  };
}

function castValue(v: number, to: DType): number {
  if (to === 'bool') return Number(v !== 0);
  // Integer targets truncate toward zero, as onnxruntime does.
  return INTEGER.has(to) ? Math.trunc(v) : v;
}

/** The axes of Unsqueeze or Squeeze: input 1 from opset 13, the attribute before. */
export function unsqueezeAxes(x: (Const | undefined)[], a: Attrs): number[] {
  return x[1] ? ints(x[1], 'axes') : a.ints('axes');
}

// The output shapes of Reshape, Unsqueeze and Squeeze, for folded constants and for tensors computed at run time alike.

/** Reshape: 0 copies the input's dimension (unless `allowZero`), one -1 is inferred. */
export function reshapeDims(src: number[], shape: number[], allowZero: boolean): number[] {
  const copy = (i: number) => src[i] ?? fail('shape 0 copies a missing dimension');
  const dims = shape.map((d, i) => (d === 0 && !allowZero ? copy(i) : d));
  const infer = dims.indexOf(-1);
  if (infer >= 0) {
    if (dims.lastIndexOf(-1) !== infer) fail('shape has more than one -1');
    const size = src.reduce((p, d) => p * d, 1);
    const rest = dims.reduce((p, d, i) => (i === infer ? p : p * d), 1);
    if (rest === 0 || size % rest !== 0) fail(`cannot reshape ${list(src)} to ${list(dims)}`);
    dims[infer] = size / rest;
  }
  return dims;
}

/** Unsqueeze: a 1 inserted at each of `axesIn` (axes of the output). */
export function unsqueezeDims(src: number[], axesIn: number[]): number[] {
  const r = src.length + axesIn.length;
  const axes = new Set(axesIn.map((ax) => normAxis(ax, r)));
  if (axes.size !== axesIn.length) fail('repeated axis');
  const dims: number[] = [];
  let k = 0;
  for (let i = 0; i < r; i++) dims.push(axes.has(i) ? 1 : src[k++]!);
  return dims;
}

/** Squeeze: the given axes, each of size 1, removed; all of size 1 when `given` is undefined. */
export function squeezeDims(src: number[], given: number[] | undefined): number[] {
  const axes = new Set(given?.map((ax) => normAxis(ax, src.length)) ?? src.flatMap((d, i) => (d === 1 ? [i] : [])));
  for (const ax of axes) if (src[ax] !== 1) fail(`cannot squeeze axis ${ax} of size ${src[ax]}`);
  return src.filter((_, i) => !axes.has(i));
}

// ---- the op table ----

const FOLD: Record<string, FoldOp> = {
  Constant: (_, a) => {
    const t = a.tensor('value');
    if (t) return t;
    if (a.has('value_float')) return { dtype: 'float32', dims: [], data: Float32Array.of(a.float('value_float')) };
    if (a.has('value_int')) return { dtype: 'int64', dims: [], data: Float64Array.of(a.int('value_int')) };
    if (a.has('value_floats')) {
      const fs = a.floats('value_floats');
      return { dtype: 'float32', dims: [fs.length], data: Float32Array.from(fs) };
    }
    if (a.has('value_ints')) {
      const is = a.ints('value_ints');
      return { dtype: 'int64', dims: [is.length], data: Float64Array.from(is) };
    }
    return fail('Constant without a supported value attribute (value, value_float(s), value_int(s))');
  },

  ConstantOfShape: (x, a, budget) => {
    const shape = need(x, 0);
    const dims = ints(shape, 'shape');
    const n = foldedSize(dims, budget);
    const value = a.tensor('value') ?? { dtype: 'float32', dims: [1], data: new Float32Array(1) };
    const data = newArray(value.dtype, n).fill(scalar(value, "attribute 'value'"));
    return taintedBy({ dtype: value.dtype, dims, data }, shape);
  },

  Shape: (x, a) => shapeOf(need(x, 0).dims, a, false),

  Cast: (x, a, budget) => {
    const src = need(x, 0);
    const to = dtypeOf(a.int('to'), "attribute 'to'");
    const data = newArray(to, foldedSize(src.dims, budget));
    for (let i = 0; i < data.length; i++) data[i] = castValue(src.data[i]!, to);
    return { ...src, dtype: to, data };
  },

  Reshape: (x, a) => {
    const src = need(x, 0);
    const shape = need(x, 1);
    return taintedBy(reshaped(src, reshapeDims(src.dims, ints(shape, 'shape'), a.int('allowzero', 0) === 1)), shape);
  },

  Unsqueeze: (x, a) => {
    const src = need(x, 0);
    return taintedBy(reshaped(src, unsqueezeDims(src.dims, unsqueezeAxes(x, a))), x[1]);
  },

  Squeeze: (x, a) => {
    const src = need(x, 0);
    const given = x[1] || a.has('axes') ? unsqueezeAxes(x, a) : undefined;
    return taintedBy(reshaped(src, squeezeDims(src.dims, given)), x[1]);
  },

  Transpose: (x, a, budget) => {
    const src = need(x, 0);
    const r = src.dims.length;
    const perm = a.ints('perm', src.dims.map((_, i) => r - 1 - i));
    if (perm.length !== r || [...perm].sort((p, q) => p - q).some((p, i) => p !== i)) {
      fail(`perm ${list(perm)} is not a permutation of rank ${r}`);
    }
    const dims = perm.map((p) => src.dims[p]!);
    foldedSize(dims, budget);
    const st = strides(src.dims);
    return gather(src, dims, product(perm.map((p) => st[p]!), dims.map(range)));
  },

  Slice: (x, a, budget) => {
    const src = need(x, 0);
    const axes = sliceAxes(src.dims, x, a).map((s, k) => s ?? { start: 0, step: 1, count: src.dims[k]! });
    const dims = axes.map((s) => s.count);
    foldedSize(dims, budget);
    const idx = product(strides(src.dims), axes.map((s) => range(s.count).map((j) => s.start + j * s.step)));
    return taintedBy(gather(src, dims, idx), x[1], x[2], x[3], x[4]);
  },

  Gather: (x, a, budget) => {
    const src = need(x, 0);
    const indices = need(x, 1);
    const axis = normAxis(a.int('axis', 0), src.dims.length);
    const d = src.dims[axis]!;
    const picks = ints(indices, 'index').map((j) => {
      if (j < -d || j >= d) fail(`index ${j} is out of range for size ${d}`);
      return j < 0 ? j + d : j;
    });
    const pick: ArrayLike<number>[] = src.dims.map(range);
    pick[axis] = picks;
    const dims = [...src.dims.slice(0, axis), ...indices.dims, ...src.dims.slice(axis + 1)];
    foldedSize(dims, budget);
    return taintedBy(gather(src, dims, product(strides(src.dims), pick)), indices);
  },

  Concat: (x, a, budget) => {
    const parts = x.filter((c): c is Const => c !== undefined);
    if (parts.length === 0) fail('no inputs');
    const dtype = sameDType(parts);
    const first = parts[0]!;
    const axis = normAxis(a.int('axis'), first.dims.length);
    for (const p of parts) {
      if (p.dims.length !== first.dims.length || p.dims.some((d, i) => i !== axis && d !== first.dims[i])) {
        fail(`cannot concatenate ${list(first.dims)} and ${list(p.dims)} on axis ${axis}`);
      }
    }
    const dims = first.dims.slice();
    dims[axis] = parts.reduce((s, p) => s + p.dims[axis]!, 0);
    const n = foldedSize(dims, budget);
    const data = newArray(dtype, n);
    const batch = parts.some((p) => p.batch) ? new Uint8Array(n) : undefined;
    const outer = dims.slice(0, axis).reduce((p, d) => p * d, 1);
    let o = 0;
    for (let i = 0; i < outer; i++) {
      for (const p of parts) {
        const chunk = p.data.length / outer;
        for (let j = i * chunk; j < (i + 1) * chunk; j++, o++) {
          data[o] = p.data[j]!;
          if (batch && p.batch) batch[o] = p.batch[j]!;
        }
      }
    }
    return batch ? { dtype, dims, data, batch } : { dtype, dims, data };
  },

  Expand: (x, _, budget) => {
    const src = need(x, 0);
    const shape = need(x, 1);
    const dims = broadcastDims([src.dims, ints(shape, 'shape')]);
    foldedSize(dims, budget);
    return taintedBy(gather(src, dims, broadcastIndex(dims, src.dims)), shape);
  },

  Range: (x, _, budget) => {
    const [start, limit, delta] = [need(x, 0), need(x, 1), need(x, 2)];
    const dtype = sameDType([start, limit, delta]);
    const s = scalar(start, 'start');
    const d = scalar(delta, 'delta');
    if (d === 0) fail('delta is 0');
    const n = Math.max(0, Math.ceil((scalar(limit, 'limit') - s) / d));
    foldedSize([n], budget);
    const data = newArray(dtype, n);
    for (let i = 0; i < n; i++) data[i] = s + i * d;
    return taintedBy({ dtype, dims: [n], data }, start, limit, delta);
  },

  Add: arithmetic((p, q) => p + q),
  Sub: arithmetic((p, q) => p - q),
  Mul: arithmetic((p, q) => p * q),
  // Integer division truncates toward zero, as onnxruntime does.
  Div: arithmetic(
    (p, q) => p / q,
    (p, q) => (q === 0 ? fail('integer division by zero') : Math.trunc(p / q)),
  ),

  Equal: (x, _, budget) => {
    const ab = [need(x, 0), need(x, 1)];
    sameDType(ab);
    return elementwise(ab, 'bool', budget, ([p, q]) => Number(p === q));
  },

  Where: (x, _, budget) => {
    const [cond, p, q] = [need(x, 0), need(x, 1), need(x, 2)];
    if (cond.dtype !== 'bool') fail(`condition has type ${cond.dtype}, expected bool`);
    return elementwise([cond, p, q], sameDType([p, q]), budget, ([c, u, v]) => (c ? u! : v!));
  },
};
