// ONNX → network IR (ts/network.ts). One walk over the nodes in topological
// order: nodes whose inputs are all constants are folded (fold.ts); the others
// run at inference time and map to IR nodes, each handler checking its shapes
// and computing its output shape, so that Shape of any tensor folds too.
// Runtime shapes are full ONNX shapes with the batch dimension folded as 1.

import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { type ActivationNode, type BinaryNode, type ConvNode, type EmbeddedStox, type IrNode, LEARNED_PARAMS, type LinearNode, type Network, type PoolNode } from '../network.js';
import { poolOut } from '../reference/layers.js';
import {
  type Const,
  type FoldBudget,
  type SliceAxis,
  canFold,
  dependsOnBatch,
  foldBudget,
  foldNode,
  ints,
  reshapeDims,
  scalar,
  shapeOf,
  sliceAxes,
  squeezeDims,
  unsqueezeAxes,
  unsqueezeDims,
} from './fold.js';
import {
  Attrs,
  type ModelProto,
  type NodeProto,
  type TensorData,
  type TensorProto,
  type ValueInfoProto,
  MAX_ELEMENTS,
  OnnxImportError,
  checkedSize,
  decodeModel,
  fail,
  int64,
  list,
  tensorFromProto,
} from './proto.js';

export { OnnxImportError } from './proto.js';

/** A tensor computed at inference time: IR value `index`, first held by the ONNX tensor `name`. */
interface Runtime {
  index: number;
  dims: number[];
  name: string;
  /**
   * The Transpose [1,0] of the [N,F] held by IR value `index` (dims [F,1], the batch folded as 1 and last): only a
   * Gemm with transA 1 reads it, which transposes it back (Transpose handler).
   */
  batchLast?: true;
}

type Value = Const | Runtime;

function isRuntime(v: Value): v is Runtime {
  return 'index' in v;
}

/** Dropout at inference is the identity; a training_mode input that is not a constant false is refused. */
function dropout(node: NodeProto, x: (Value | undefined)[]): Value {
  const training = x[2];
  if (training !== undefined && (isRuntime(training) || dependsOnBatch(training) || training.data.length !== 1 || Number(training.data[0]) !== 0)) {
    fail(`training_mode '${node.input[2]}' must be a constant false (dropout runs at inference only)`);
  }
  return x[0] ?? fail('input 0 is required');
}

export async function importOnnx(path: string): Promise<Network> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    // One error type for every way a model fails to load; the system error stays as the cause.
    throw new OnnxImportError(`cannot read the file (${(e as Error).message})`, path, undefined, { cause: e });
  }
  return importOnnxBytes(bytes, basename(path), dirname(path));
}

/** `source` names the model in errors; `dir` is where external tensor data is looked up. */
export function importOnnxBytes(bytes: Uint8Array, source: string, dir?: string): Network {
  return located(source, undefined, () => new Importer(source, dir).run(bytes));
}

/** Adds the file and node to errors thrown by lower layers with the reason only. */
function located<T>(source: string, where: string | undefined, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof OnnxImportError && e.source === undefined) throw new OnnxImportError(e.reason, source, where);
    throw e;
  }
}

function nodeLabel(node: NodeProto): string {
  return `node '${node.name || node.output[0] || '?'}' (${node.opType})`;
}

/** No NaN or Inf; a plain loop, because `every(Number.isFinite)` made most of an import's time (on the event loop). */
function allFinite(data: Float32Array): boolean {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return false;
  return true;
}

function same(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Runtime shapes print their batch dimension as N. */
function fmtRuntime(v: Runtime): string {
  return `[N${v.dims.slice(1).map((d) => `,${d}`).join('')}]`;
}

/** The IR's integer fields (ts/network.ts). */
const INT_FIELDS = ['shape', 'kernel', 'stride', 'pads', 'start', 'end', 'step', 'before', 'after'] as const;

/**
 * The addon takes these as u32 (crates/node/src/lib.rs NodeSpec), and
 * Node-API keeps the low 32 bits of a larger number: a stride of 2^32 + 1
 * would run as 1. Shapes are bounded by checkedSize; strides and steps are not.
 */
function checkEngineInts(node: IrNode): void {
  for (const field of INT_FIELDS) {
    const v = (node as unknown as Record<string, number | number[] | undefined>)[field];
    if (v === undefined) continue;
    if ((Array.isArray(v) ? v : [v]).some((x) => x > 2 ** 32 - 1)) {
      fail(`${field} ${Array.isArray(v) ? list(v) : v} is above 2^32 - 1, the largest value the engine takes`);
    }
  }
}

class Importer {
  private readonly values = new Map<string, Value>();
  private readonly initializers = new Map<string, TensorProto>();
  private readonly consumers = new Map<string, number>();
  /** The nodes reading each tensor, for handlers whose output only some readers accept (a batch-moving Transpose). */
  private readonly readers = new Map<string, NodeProto[]>();
  private outputName = '';
  readonly nodes: IrNode[] = [];
  /** dims of each IR value, by index */
  readonly valueDims: number[][] = [];
  /** Values of all activations so far: the engine's workspace per image, bounded like one tensor (graph.rs MAX_WORKSPACE). */
  private workspace = 0;
  /** Parameters of all IR nodes so far: each node holds its own (and the engine copies them), so shared weights count once per node. */
  private parameters = 0;
  private budget: FoldBudget = foldBudget(0);
  /** Each float constant as float32, checked for NaN and Inf (see Node.floats). */
  readonly float32 = new WeakMap<TensorData, Float32Array>();

  constructor(
    private readonly source: string,
    private readonly dir: string | undefined,
  ) {}

  run(bytes: Uint8Array): Network {
    // protobuf decodes an empty buffer as a message with every field unset.
    if (bytes.length === 0) fail('not an ONNX model: the file is empty');
    this.budget = foldBudget(bytes.length);
    let model;
    try {
      model = decodeModel(bytes);
    } catch (e) {
      const why = (e as Error).message;
      // protobufjs's wording when a field's length runs past the end of the bytes.
      const hint = why.startsWith('index out of range') ? ': a field runs past the end of the file (truncated?)' : '';
      return fail(`not an ONNX model: protobuf decoding failed (${why})${hint}`);
    }
    if (!(int64(model.irVersion) > 0)) fail('not an ONNX model: no ir_version');
    const g = model.graph ?? fail('not an ONNX model: no graph');
    if (g.node.length === 0) fail('the graph has no nodes');

    for (const t of g.initializer) this.initializers.set(t.name, t);
    const inputs = g.input.filter((i) => !this.initializers.has(i.name));
    if (inputs.length !== 1) fail(`expected one graph input, found ${inputs.length}${inputs.length ? ` (${inputs.map((i) => `'${i.name}'`).join(', ')})` : ''}`);
    if (g.output.length !== 1) fail(`expected one graph output, found ${g.output.length}`);
    const input = this.graphInput(inputs[0]!);
    this.values.set(inputs[0]!.name, input);
    this.valueDims.push(input.dims);
    this.workspace = checkedSize(input.dims, 'graph input');

    for (const node of g.node) {
      for (const name of node.input) {
        this.consumers.set(name, (this.consumers.get(name) ?? 0) + 1);
        const readers = this.readers.get(name);
        if (readers) readers.push(node);
        else this.readers.set(name, [node]);
      }
    }
    for (const o of g.output) this.consumers.set(o.name, (this.consumers.get(o.name) ?? 0) + 1);
    this.outputName = g.output[0]!.name;

    const order = this.topologicalOrder(g.node, new Set([...this.initializers.keys(), inputs[0]!.name]));
    for (const node of order) located(this.source, nodeLabel(node), () => this.visit(node));

    const name = g.output[0]!.name;
    const out = this.values.get(name) ?? fail(`graph output '${name}' is not produced by any node`);
    if (!isRuntime(out)) fail(`graph output '${name}' is a constant`);
    const [, c, h, w] = input.dims as [number, number, number, number];
    const stox = this.embeddedStox(model);
    const meta = (key: string) => (model.metadataProps ?? []).find((m) => m.key === key)?.value;
    const dataset = meta('stoxnet.dataset');
    const normalization = this.normalization(meta('stoxnet.normalization'), c);
    return { input: [c, h, w], nodes: this.nodes, output: out.index, ...(stox ? { stox } : {}), ...(dataset ? { dataset } : {}), ...(normalization ? { normalization } : {}) };
  }

  /** Metadata `stoxnet.normalization`: {"mean": [...], "std": [...]}, one finite value per input channel, std positive. */
  private normalization(text: string | undefined, channels: number): { mean: number[]; std: number[] } | undefined {
    if (text === undefined) return undefined;
    let v: { mean?: unknown; std?: unknown };
    try {
      v = JSON.parse(text);
    } catch (e) {
      fail(`metadata 'stoxnet.normalization' is not valid JSON (${(e as Error).message})`);
    }
    const ok = (a: unknown, positive: boolean): a is number[] => Array.isArray(a) && a.length === channels && a.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0));
    if (!ok(v.mean, false) || !ok(v.std, true)) fail(`metadata 'stoxnet.normalization' must hold ${channels} finite means and ${channels} positive stds, got ${text}`);
    return { mean: v.mean, std: v.std };
  }

  /** The StoX settings and learned parameters of a model trained here (export.ts). */
  private embeddedStox(model: ModelProto): EmbeddedStox | undefined {
    const meta = (model.metadataProps ?? []).find((m) => m.key === 'stoxnet.config');
    const learned = [...this.initializers.values()].filter((t) => t.name.startsWith('stoxnet/'));
    if (!meta && learned.length === 0) return undefined;
    let config: Record<string, unknown> = {};
    if (meta) {
      try {
        config = JSON.parse(meta.value);
      } catch (e) {
        fail(`metadata 'stoxnet.config' is not valid JSON (${(e as Error).message})`);
      }
      if (typeof config !== 'object' || config === null || Array.isArray(config)) fail(`metadata 'stoxnet.config' must be a JSON object`);
    }
    const layers: EmbeddedStox['layers'] = {};
    const known = new Set(this.nodes.map((n) => n.name));
    for (const t of learned) {
      // Node names may contain '/', parameter names do not.
      const rest = t.name.slice('stoxnet/'.length);
      const node = rest.slice(0, rest.lastIndexOf('/'));
      const param = rest.slice(rest.lastIndexOf('/') + 1);
      if (!known.has(node)) fail(`initializer '${t.name}' does not name a node of this graph (expected stoxnet/<node>/<param>)`);
      const tensor = tensorFromProto(t, this.dir);
      const data = tensor.data instanceof Float32Array ? tensor.data : Float32Array.from(tensor.data as ArrayLike<number>);
      if (!allFinite(data)) fail(`initializer '${t.name}' contains NaN or Inf`);
      const layer = (layers[node] ??= { params: {} });
      if (param === 'inputClip') {
        if (data.length !== 1 || !(data[0] > 0)) fail(`initializer '${t.name}' must hold one positive value`);
        layer.inputClip = data[0];
      } else if (param === 'adcBits') {
        if (data.length !== 1 || !Number.isInteger(data[0]) || data[0] < 1 || data[0] > 24) fail(`initializer '${t.name}' must hold one integer in 1..24, got [${data.join(', ')}]`);
        layer.adcBits = data[0];
      } else if ((LEARNED_PARAMS as readonly string[]).includes(param)) {
        layer.params[param as (typeof LEARNED_PARAMS)[number]] = data;
      } else {
        fail(`initializer '${t.name}': unknown parameter '${param}' (known: inputClip, adcBits, ${LEARNED_PARAMS.join(', ')})`);
      }
    }
    return { config, layers };
  }

  private graphInput(vi: ValueInfoProto): Runtime {
    const what = `graph input '${vi.name}'`;
    const t = vi.type?.tensorType ?? fail(`${what} is not a tensor`);
    if (t.elemType !== 1) fail(`${what} has element type ${t.elemType}, expected FLOAT (1)`);
    const dims = t.shape?.dim ?? fail(`${what} has no shape`);
    if (dims.length !== 4) fail(`${what}: wrong input rank ${dims.length}, expected 4 ([N,C,H,W])`);
    const chw = dims.slice(1).map((d) => {
      const v = Object.hasOwn(d, 'dimValue') ? int64(d.dimValue) : 0;
      if (!(v > 0)) fail(`${what}: dynamic dimension '${d.dimParam || '?'}' cannot be resolved`);
      return v;
    });
    const full = [1, ...chw];
    checkedSize(full, what);
    return { index: 0, dims: full, name: vi.name };
  }

  /** Depth-first, so a file that is already sorted keeps its order. */
  private topologicalOrder(nodes: NodeProto[], available: Set<string>): NodeProto[] {
    const producer = new Map<string, number>();
    nodes.forEach((node, i) => {
      for (const o of node.output) {
        if (o === '') continue;
        if (producer.has(o) || available.has(o)) this.failAt(node, `output '${o}' is already defined elsewhere`);
        producer.set(o, i);
      }
    });
    const state = new Uint8Array(nodes.length); // 0 unvisited, 1 on the stack, 2 emitted
    const order: NodeProto[] = [];
    for (let root = 0; root < nodes.length; root++) {
      if (state[root]) continue;
      state[root] = 1;
      const stack: [number, number][] = [[root, 0]];
      while (stack.length > 0) {
        const top = stack[stack.length - 1]!;
        const node = nodes[top[0]]!;
        if (top[1] === node.input.length) {
          state[top[0]] = 2;
          order.push(node);
          stack.pop();
          continue;
        }
        const name = node.input[top[1]++]!;
        if (name === '' || available.has(name)) continue;
        const p = producer.get(name);
        if (p === undefined) {
          this.failAt(node, `input '${name}' is not produced by any node, and is neither an initializer nor a graph input`);
        }
        if (state[p] === 1) this.failAt(node, `the graph has a cycle through input '${name}'`);
        if (state[p] === 0) {
          state[p] = 1;
          stack.push([p, 0]);
        }
      }
    }
    return order;
  }

  private failAt(node: NodeProto, reason: string): never {
    throw new OnnxImportError(reason, this.source, nodeLabel(node));
  }

  private value(name: string): Value {
    let v = this.values.get(name);
    if (v === undefined) {
      const t = this.initializers.get(name) ?? fail(`input '${name}' is an extra output of its node, which is not supported`);
      v = tensorFromProto(t, this.dir);
      this.values.set(name, v);
    }
    return v;
  }

  private visit(node: NodeProto): void {
    if (node.domain !== '' && node.domain !== 'ai.onnx') fail(`unsupported op (domain '${node.domain}')`);
    const out = node.output[0] || fail('the node has no output');
    const x = node.input.map((name) => (name === '' ? undefined : this.value(name)));
    const a = new Attrs(node, this.dir);
    const op = node.opType;
    let v: Value;
    if (op === 'Identity') v = x[0] ?? fail('input 0 is required');
    else if (op === 'Dropout') v = dropout(node, x);
    else if (op === 'Softmax' || op === 'LogSoftmax') v = this.finalSoftmax(node, x[0], a);
    else if (op === 'Shape' && x[0] && isRuntime(x[0])) v = shapeOf(x[0].dims, a, true);
    else if (canFold(op) && x.every((i) => i === undefined || !isRuntime(i))) v = foldNode(op, x as (Const | undefined)[], a, this.budget);
    else if (Object.hasOwn(RUNTIME, op)) v = RUNTIME[op]!(new Node(this, node, x, a));
    else if (canFold(op)) fail('unsupported op on a tensor computed at run time (folded only when all inputs are constant)');
    else fail('unsupported op');
    this.values.set(out, v);
  }

  /**
   * Softmax and LogSoftmax over the classes are dropped when they make the graph output: both are
   * strictly increasing in each logit, so the top-1 (and top-k) class is the same, and the simulator
   * reports classes, not probabilities. Anywhere else they would change what later nodes see.
   */
  private finalSoftmax(node: NodeProto, x: Value | undefined, a: Attrs): Value {
    if (node.output[0] !== this.outputName) fail('only supported as the last node, where it is dropped (it does not change the top-1 class)');
    if (x === undefined || !isRuntime(x)) fail('input 0 must be a tensor computed at run time');
    const axis = a.int('axis', -1);
    if (x.dims.length !== 2 || (axis !== 1 && axis !== -1)) fail(`only over the classes of [N,classes] is supported, got axis ${axis} of ${fmtRuntime(x)}`);
    return x;
  }

  emit(node: IrNode, dims: number[], name: string): Runtime {
    // Empty: a weight with a zero dimension (the engine refuses it, less clearly).
    const size = checkedSize(dims, 'output');
    if (size === 0) fail(`output has shape ${fmtRuntime({ index: 0, dims, name })}, which is empty`);
    checkEngineInts(node);
    this.workspace += size;
    if (this.workspace > MAX_ELEMENTS) fail(`the activations up to this node take ${this.workspace} values, more than the limit of 2^28`);
    this.nodes.push(node);
    this.valueDims.push(dims);
    return { index: this.nodes.length, dims, name };
  }

  /** Counts parameters before they are copied or converted. */
  addParameters(n: number): void {
    this.parameters += n;
    if (this.parameters > MAX_ELEMENTS) fail(`the parameters up to this node take ${this.parameters} values, more than the limit of 2^28`);
  }

  consumerCount(name: string): number {
    return this.consumers.get(name) ?? 0;
  }

  /** Whether tensor `name` is read, and only by nodes for which `ok` holds (the graph output is not such a node). */
  onlyReadBy(name: string, ok: (node: NodeProto, a: Attrs) => boolean): boolean {
    const readers = this.readers.get(name) ?? [];
    return name !== this.outputName && readers.length > 0 && readers.every((r) => ok(r, new Attrs(r, this.dir)));
  }
}

/** One node being mapped: its inputs, attributes, and the checks shared by the handlers. */
class Node {
  constructor(
    readonly imp: Importer,
    readonly proto: NodeProto,
    readonly x: (Value | undefined)[],
    readonly a: Attrs,
  ) {}

  get name(): string {
    return this.proto.name || this.proto.output[0]!;
  }

  has(i: number): boolean {
    return this.x[i] !== undefined;
  }

  value(i: number): Value {
    return this.x[i] ?? fail(`input ${i} is required`);
  }

  runtime(i: number): Runtime {
    const v = this.value(i);
    if (!isRuntime(v)) fail(`input '${this.proto.input[i]}' is a constant, expected a tensor computed at run time`);
    if (v.batchLast) fail(`input '${this.proto.input[i]}' has the batch axis last (a Transpose [1,0] of [N,F]), which only a Gemm with transA 1 reads`);
    return v;
  }

  rank4(i: number): Runtime {
    const v = this.runtime(i);
    if (v.dims.length !== 4) fail(`input '${this.proto.input[i]}' has shape ${fmtRuntime(v)}, expected [N,C,H,W]`);
    return v;
  }

  param(i: number): Const {
    const v = this.value(i);
    const name = this.proto.input[i];
    if (isRuntime(v)) fail(`input '${name}' is computed at run time, expected a constant`);
    if (dependsOnBatch(v)) fail(`input '${name}' depends on the batch size, which is dynamic`);
    return v;
  }

  /** Float parameters, optionally of a given shape; refuses NaN and Inf. */
  floats(i: number, dims?: number[]): Float32Array {
    const c = this.param(i);
    const name = this.proto.input[i];
    if (c.dtype !== 'float32' && c.dtype !== 'float64') fail(`initializer '${name}' has type ${c.dtype}, expected float`);
    if (dims && !same(c.dims, dims)) fail(`initializer '${name}' has shape ${list(c.dims)}, expected ${list(dims)}`);
    this.imp.addParameters(c.data.length);
    // Converted and checked once per constant: nodes that share a weight share the array.
    let data = this.imp.float32.get(c.data);
    if (!data) {
      data = c.data instanceof Float32Array ? c.data : Float32Array.from(c.data);
      if (!allFinite(data)) fail(`initializer '${name}' contains NaN or Inf`);
      this.imp.float32.set(c.data, data);
    }
    return data;
  }

  emit(node: IrNode, dims: number[]): Runtime {
    return this.imp.emit(node, dims, this.proto.output[0]!);
  }

  /** The IR node behind runtime input i when this node is its only consumer, so the two may merge. */
  fusable(i: number): IrNode | undefined {
    const v = this.runtime(i);
    const name = this.proto.input[i]!;
    return v.index > 0 && v.name === name && this.imp.consumerCount(name) === 1 ? this.imp.nodes[v.index - 1] : undefined;
  }
}

// ---- handlers for the ops that run at inference time ----

function linear(n: Node, x: Runtime, i: number, transposed: boolean): LinearNode {
  if (x.dims.length !== 2) fail(`input '${n.proto.input[0]}' has shape ${fmtRuntime(x)}, expected [N,features]`);
  const w = n.param(i);
  if (w.dims.length !== 2) fail(`weight '${n.proto.input[i]}' has shape ${list(w.dims)}, expected rank 2`);
  const [out, inp] = (transposed ? w.dims : [w.dims[1], w.dims[0]]) as [number, number];
  if (inp !== x.dims[1]) {
    fail(`weight '${n.proto.input[i]}' has shape ${list(w.dims)}, which does not fit an input of ${x.dims[1]} features`);
  }
  const data = n.floats(i);
  let weight = data;
  if (!transposed) {
    // Stored [in, out]; the IR wants [out, in].
    weight = new Float32Array(data.length);
    for (let o = 0; o < out; o++) for (let k = 0; k < inp; k++) weight[o * inp + k] = data[k * out + o]!;
  }
  return { name: n.name, op: 'Linear', inputs: [x.index], shape: [out, inp], weight };
}

/** Whether constant input i is a bias of a Linear with `out` features: shape [out], [1, out], or a single value. */
function isLinearBias(n: Node, i: number, out: number): boolean {
  const c = n.param(i);
  return c.dims.length <= 2 && (c.dims.at(-1) === out || c.data.length === 1) && c.dims.slice(0, -1).every((d) => d === 1);
}

function linearBias(n: Node, i: number, out: number): Float32Array {
  if (!isLinearBias(n, i, out)) fail(`bias '${n.proto.input[i]}' has shape ${list(n.param(i).dims)}, which does not broadcast to [N,${out}]`);
  const b = n.floats(i);
  return b.length === out ? b : new Float32Array(out).fill(b[0]!);
}

/**
 * The IR's [c, h, w] of an ONNX shape [1, ...rest] (batch folded as 1): rest padded with trailing 1s,
 * so that [N,C,H,W] is [C,H,W] and [N,F] is [F,1,1], and broadcasting over the IR axes is ONNX's.
 */
function irShape(dims: number[]): [number, number, number] {
  if (dims.length < 2 || dims.length > 4) fail(`shape ${list(dims)} is not supported (only rank 2 to 4, batch first)`);
  return [dims[1]!, dims[2] ?? 1, dims[3] ?? 1];
}

/**
 * Add, Sub, Mul and Div of two tensors, or of a tensor and a constant, with ONNX (numpy) broadcasting.
 * Shapes are right-aligned; the batch axis may not be broadcast (a constant's leading axis must be 1),
 * and a tensor must have the result's rank (a lower-rank tensor would align its batch axis elsewhere).
 */
function binary(n: Node, op: BinaryNode['op']): Value {
  const [p, q] = [n.value(0), n.value(1)];
  const rank = Math.max(p.dims.length, q.dims.length);
  const aligned = (v: Value) => [...new Array<number>(rank - v.dims.length).fill(1), ...v.dims];
  const [a, b] = [aligned(p), aligned(q)];
  const shape = (v: Value) => (isRuntime(v) ? fmtRuntime(v) : list(v.dims));
  const dims = a.map((d, k) => (d === b[k] || b[k] === 1 ? d : d === 1 ? b[k]! : fail(`operands have shapes ${shape(p)} and ${shape(q)}, which do not broadcast`)));
  if (dims[0] !== 1) fail(`operands have shapes ${shape(p)} and ${shape(q)}; broadcasting a constant over the batch axis is not supported`);
  for (const [i, v] of [p, q].entries()) {
    if (isRuntime(v) && v.dims.length !== rank) fail(`input '${n.proto.input[i]}' has shape ${fmtRuntime(v)} of rank ${v.dims.length}, the result has rank ${rank}`);
  }
  if (isRuntime(p) && isRuntime(q)) return n.emit({ name: n.name, op, inputs: [p.index, q.index] }, dims);
  // Folding handled the all-constant case: exactly one operand is a constant.
  const r = isRuntime(p) ? 0 : 1;
  const x = n.runtime(r);
  // MatMul (or Gemm without C) + Add: the constant is the Linear's bias, added on the same accumulator.
  const prev = n.fusable(r);
  if (op === 'Add' && prev?.op === 'Linear' && !prev.bias && isLinearBias(n, 1 - r, prev.shape[0])) {
    prev.bias = linearBias(n, 1 - r, prev.shape[0]);
    return x;
  }
  const constant = n.floats(1 - r);
  return n.emit({ name: n.name, op, inputs: [x.index], constant, constantShape: irShape(r === 0 ? b : a), ...(r === 1 ? { constantFirst: true } : {}) }, dims);
}

/** Exclusive end of a positive-step slice, within the input size. */
function sliceEnd(s: SliceAxis, size: number): number {
  return Math.min(s.start + s.count * s.step, size);
}

/**
 * The sliding-window attributes Conv and the poolings share: dilations (only 1), strides, and
 * pads from `pads` or `auto_pad` (NOTSET or VALID). ONNX pads are [h_begin, w_begin, h_end,
 * w_end]: top, left, bottom, right, as in the IR.
 */
function windowAttrs(n: Node): { strides: [number, number]; pads: [number, number, number, number] } {
  const dilations = n.a.ints('dilations', [1, 1]);
  if (dilations.some((d) => d !== 1)) fail(`dilations ${list(dilations)} are not supported (only 1)`);
  const strides = n.a.ints('strides', [1, 1]);
  if (strides.length !== 2 || strides.some((s) => s < 1)) fail(`strides ${list(strides)} are invalid`);
  const autoPad = n.a.string('auto_pad', 'NOTSET');
  if (autoPad !== 'NOTSET' && autoPad !== 'VALID') fail(`auto_pad ${autoPad} is not supported (only NOTSET or VALID)`);
  const pads = autoPad === 'VALID' ? [0, 0, 0, 0] : n.a.ints('pads', [0, 0, 0, 0]);
  if (pads.length !== 4 || pads.some((p) => p < 0)) fail(`pads ${list(pads)} are invalid`);
  return { strides: strides as [number, number], pads: pads as [number, number, number, number] };
}

/**
 * Reshape, Squeeze and Unsqueeze of a tensor computed at run time, to static `dims` (batch first). The IR holds
 * an image as [c, h, w] in row-major order, which these never move. An image to [N,F] is a Flatten (export writes
 * it back as one: a Gemm reads only [N,F]); otherwise, when `dims` has the IR shape of the input ([N,C] and
 * [N,C,1,1] are both [C,1,1]), the value is only renamed; any other relayout is refused.
 */
function reshaped(n: Node, x: Runtime, dims: number[]): Value {
  const size = (d: number[]) => d.reduce((p, v) => p * v, 1);
  if (dims[0] !== 1 || size(dims) !== size(x.dims)) fail(`cannot reshape ${fmtRuntime(x)} to ${list(dims)} with the batch first`);
  if (dims.length === 2 && x.dims.length !== 2) return flatten(n, x);
  if (dims.length >= 2 && dims.length <= 4 && same(irShape(dims), irShape(x.dims))) return { ...x, dims };
  return fail(`reshaping ${fmtRuntime(x)} to ${fmtRuntime({ ...x, dims })} is not supported (only to [N,F], or adding or removing trailing 1s)`);
}

/**
 * Whether permuting the axes of `dims` by `perm` moves values in memory: it does not when the axes larger than 1
 * keep their order ([N,C,1,1] to [N,1,1,C], say).
 */
function movesValues(perm: readonly number[], dims: readonly number[]): boolean {
  const kept = perm.filter((a) => dims[a] !== 1);
  return kept.some((a, k) => k > 0 && a < kept[k - 1]!);
}

/**
 * An image (or vector) to [N,F]: its values in order. A Transpose that moves no value right before it, read by
 * nothing else, leaves no node: it becomes the Flatten (as the Slice handler merges a chain of Slices).
 */
function flatten(n: Node, x: Runtime): Runtime {
  const dims = [1, x.dims.slice(1).reduce((p, d) => p * d, 1)];
  const prev = n.fusable(0);
  if (prev?.op === 'Transpose' && !movesValues(prev.perm, irShape(n.imp.valueDims[prev.inputs[0]]!))) {
    n.imp.nodes[x.index - 1] = { name: n.name, op: 'Flatten', inputs: prev.inputs };
    n.imp.valueDims[x.index] = dims;
    return { index: x.index, dims, name: n.proto.output[0]! };
  }
  return n.emit({ name: n.name, op: 'Flatten', inputs: [x.index] }, dims);
}

/** MaxPool and AveragePool: the window attributes, checked as Conv checks its own. */
function pool(n: Node, op: 'MaxPool' | 'AvgPool'): Runtime {
  const x = n.rank4(0);
  const kernel = n.a.ints('kernel_shape');
  if (kernel.length !== 2 || kernel.some((k) => k < 1)) fail(`kernel_shape ${list(kernel)} is invalid (expected 2 values >= 1)`);
  const { strides, pads } = windowAttrs(n);
  const [kh, kw] = kernel as [number, number];
  const [pt, pl, pb, pr] = pads;
  if (pt >= kh || pb >= kh || pl >= kw || pr >= kw) fail(`pads ${list(pads)} must each be below the kernel ${list(kernel)}`);
  const ceilMode = n.a.int('ceil_mode', 0) !== 0;
  const [sh, sw] = strides;
  // With ceil_mode a last window starting in the padding is dropped, as onnxruntime's kernels (not its
  // static shape inference) and PyTorch do.
  const oh = poolOut(x.dims[2]!, pt, pb, kh, sh, ceilMode);
  const ow = poolOut(x.dims[3]!, pl, pr, kw, sw, ceilMode);
  if (!(oh >= 1 && ow >= 1)) fail(`a ${kh}x${kw} window does not fit the input ${fmtRuntime(x)} with pads ${list(pads)}`);
  const node: PoolNode = { name: n.name, op, inputs: [x.index], kernel: [kh, kw], stride: [sh, sw], pads: [pt, pl, pb, pr], ceilMode };
  if (op === 'AvgPool') node.countIncludePad = n.a.int('count_include_pad', 0) !== 0;
  return n.emit(node, [1, x.dims[1]!, oh, ow]);
}

/** An elementwise activation and its float attributes, each with its ONNX default and finite. */
function activation(n: Node, op: ActivationNode['op'], defaults: { alpha?: number; beta?: number } = {}): Runtime {
  const x = n.runtime(0);
  const node: ActivationNode = { name: n.name, op, inputs: [x.index] };
  for (const [k, d] of Object.entries(defaults) as ['alpha' | 'beta', number][]) {
    const v = n.a.float(k, d);
    if (!Number.isFinite(v)) fail(`${k} ${v} is not a finite number`);
    // The engine computes in float32 (a float attribute already is one; the defaults are not).
    node[k] = Math.fround(v);
  }
  return n.emit(node, x.dims);
}

const RUNTIME: Record<string, (n: Node) => Value> = {
  Conv(n) {
    const x = n.rank4(0);
    const w = n.param(1);
    const wName = n.proto.input[1];
    if (w.dims.length !== 4) fail(`weight '${wName}' has shape ${list(w.dims)}, expected [out,in,kh,kw]`);
    const [co, ci, kh, kw] = w.dims as [number, number, number, number];
    const group = n.a.int('group', 1);
    if (!(group >= 1 && co % group === 0)) fail(`group ${group} must be a positive divisor of the ${co} output channels`);
    const { strides, pads } = windowAttrs(n);
    if (ci * group !== x.dims[1]) fail(`weight '${wName}' expects ${ci} input channels${group > 1 ? ` per group (${group} groups)` : ''}, the input ${fmtRuntime(x)} has ${x.dims[1]}`);
    const kernel = n.a.ints('kernel_shape', [kh, kw]);
    if (!same(kernel, [kh, kw])) fail(`kernel_shape ${list(kernel)} does not match weight '${wName}' ${list(w.dims)}`);
    const [sh, sw] = strides;
    const [pt, pl, pb, pr] = pads;
    const oh = Math.floor((x.dims[2]! + pt + pb - kh) / sh) + 1;
    const ow = Math.floor((x.dims[3]! + pl + pr - kw) / sw) + 1;
    if (oh < 1 || ow < 1) fail(`a ${kh}x${kw} kernel does not fit the input ${fmtRuntime(x)} with pads ${list(pads)}`);
    // The engine unfolds the input into in × kh × kw values per output pixel (graph.rs checks this bound too).
    checkedSize([ci * kh * kw, oh * ow], 'the unfolded input');
    const weight = n.floats(1);
    const bias = n.has(2) ? n.floats(2, [co]) : undefined;
    const conv = (name: string, input: number, g: number, of: number): ConvNode => {
      const [cog, size] = [co / of, (co / of) * ci * kh * kw];
      // One group keeps the weight itself: a copy per node of a shared weight would cost memory and time.
      const part = <T extends Float32Array>(a: T, n: number) => (of === 1 ? a : (a.slice(g * n, (g + 1) * n) as T));
      const node: ConvNode = { name, op: 'Conv', inputs: [input], shape: [cog, ci, kh, kw], weight: part(weight, size), stride: [sh, sw], pads: [pt, pl, pb, pr] };
      if (bias) node.bias = part(bias, cog);
      return node;
    };
    if (group === 1) return n.emit(conv(n.name, x.index, 0, 1), [1, co, oh, ow]);
    // A grouped (or depthwise) conv is its groups side by side: each reads its
    // channel slice, is its own conv (a crossbar layer of ci·kh·kw rows, e.g. 9
    // for a depthwise 3×3, on subarrays of its own), and their outputs are
    // concatenated.
    const parts = Array.from({ length: group }, (_, g) => {
      const slice = n.emit({ name: `${n.name}.group${g}.in`, op: 'SliceChannels', inputs: [x.index], start: [g * ci], end: [(g + 1) * ci] }, [1, ci, x.dims[2]!, x.dims[3]!]);
      return n.emit(conv(`${n.name}.group${g}`, slice.index, g, group), [1, co / group, oh, ow]).index;
    });
    return n.emit({ name: n.name, op: 'Concat', inputs: parts }, [1, co, oh, ow]);
  },

  BatchNormalization(n) {
    const x = n.rank4(0);
    const c = x.dims[1]!;
    if (n.a.int('training_mode', 0) !== 0) fail('training_mode 1 is not supported');
    const variance = n.floats(4, [c]);
    if (variance.some((v) => v < 0)) fail(`variance '${n.proto.input[4]}' has negative values`);
    // The engine divides by sqrt(var + eps): both zero would make Inf and NaN activations.
    const eps = n.a.float('epsilon', 1e-5);
    if (!(Number.isFinite(eps) && eps >= 0)) fail(`epsilon ${eps} is not a finite number >= 0`);
    if (eps === 0 && variance.includes(0)) fail(`variance '${n.proto.input[4]}' has zeros and epsilon is 0`);
    return n.emit(
      {
        name: n.name,
        op: 'BatchNorm',
        inputs: [x.index],
        weight: n.floats(1, [c]),
        bias: n.floats(2, [c]),
        mean: n.floats(3, [c]),
        var: variance,
        eps,
      },
      x.dims,
    );
  },

  Relu(n) {
    const x = n.runtime(0);
    return n.emit({ name: n.name, op: 'Relu', inputs: [x.index] }, x.dims);
  },

  Sigmoid: (n) => activation(n, 'Sigmoid'),
  HardSigmoid: (n) => activation(n, 'HardSigmoid', { alpha: 0.2, beta: 0.5 }),
  HardSwish: (n) => activation(n, 'HardSwish'),
  LeakyRelu: (n) => activation(n, 'LeakyRelu', { alpha: 0.01 }),

  // Clip with constant bounds (inputs from opset 11, attributes before): hardtanh, ReLU6, ...
  Clip(n) {
    const x = n.runtime(0);
    const bound = (i: number, attr: string) => {
      if (n.proto.input[i]) return scalar(n.param(i), `Clip ${attr}`);
      if (n.a.has(attr)) return n.a.float(attr, 0);
      return fail(`Clip without a ${attr} bound is not supported (only clamps to a finite range)`);
    };
    const [min, max] = [bound(1, 'min'), bound(2, 'max')];
    if (!(Number.isFinite(min) && Number.isFinite(max) && min < max)) fail(`Clip bounds must be finite with min < max, got [${min}, ${max}]`);
    return n.emit({ name: n.name, op: 'Hardtanh', inputs: [x.index], min, max }, x.dims);
  },

  Add: (n) => binary(n, 'Add'),
  Sub: (n) => binary(n, 'Sub'),
  Mul: (n) => binary(n, 'Mul'),
  Div: (n) => binary(n, 'Div'),

  Slice(n) {
    const x = n.rank4(0);
    const params = [1, 2, 3, 4].map((i) => (n.has(i) ? n.param(i) : undefined));
    const axes = sliceAxes(x.dims, [undefined, ...params], n.a);
    if (axes[0]) fail('slicing the batch (axis 0) is not supported');
    if (axes[1]) {
      // A channel range (a group of a grouped conv, as exported here).
      const c = axes[1];
      if (axes[2] || axes[3]) fail('slicing channels and H or W in one Slice is not supported');
      if (c.step !== 1 || c.count === 0) fail(`a channel slice needs step 1 and at least one channel`);
      return n.emit({ name: n.name, op: 'SliceChannels', inputs: [x.index], start: [c.start], end: [c.start + c.count] }, [1, c.count, x.dims[2]!, x.dims[3]!]);
    }
    const [h, w] = [2, 3].map((k) => axes[k] ?? { start: 0, step: 1, count: x.dims[k]! }) as [SliceAxis, SliceAxis];
    if (h.step < 0 || w.step < 0) fail('negative steps are not supported');
    if (h.count === 0 || w.count === 0) fail(`the slice of ${fmtRuntime(x)} is empty`);
    const dims = [1, x.dims[1]!, h.count, w.count];

    // Exporters emit one Slice per axis; merge a chain into one node when nothing else reads the middle.
    const prev = n.fusable(0);
    if (prev?.op === 'Slice') {
      const size = n.imp.valueDims[prev.inputs[0]]!;
      const merged = [h, w].map((s, k) => ({
        start: prev.start[k]! + s.start * prev.step[k]!,
        step: prev.step[k]! * s.step,
        count: s.count,
      }));
      prev.start = [merged[0]!.start, merged[1]!.start];
      prev.step = [merged[0]!.step, merged[1]!.step];
      prev.end = [sliceEnd(merged[0]!, size[2]!), sliceEnd(merged[1]!, size[3]!)];
      checkEngineInts(prev);
      n.imp.valueDims[x.index] = dims;
      return { index: x.index, dims, name: n.proto.output[0]! };
    }
    return n.emit(
      {
        name: n.name,
        op: 'Slice',
        inputs: [x.index],
        start: [h.start, w.start],
        end: [sliceEnd(h, x.dims[2]!), sliceEnd(w, x.dims[3]!)],
        step: [h.step, w.step],
      },
      dims,
    );
  },

  Pad(n) {
    const x = n.rank4(0);
    const r = x.dims.length;
    const mode = n.a.string('mode', 'constant');
    if (mode !== 'constant') fail(`mode '${mode}' is not supported (only constant)`);
    // Opset ≥ 11 takes pads, constant_value and (≥ 18) axes as inputs; before, pads and value are attributes.
    let pads: number[];
    let value: number;
    let axes = x.dims.map((_, k) => k);
    if (n.has(1)) {
      pads = ints(n.param(1), 'pads');
      value = n.has(2) ? scalar(n.param(2), 'constant_value') : 0;
      if (n.has(3)) axes = ints(n.param(3), 'axes').map((k) => (k < 0 ? k + r : k));
    } else {
      pads = n.a.ints('pads');
      value = n.a.float('value', 0);
    }
    if (pads.length !== 2 * axes.length) fail(`pads ${list(pads)} do not fit ${axes.length} axes`);
    if (value !== 0) fail(`pad value ${value} is not supported (only 0)`);
    const before = new Array<number>(r).fill(0);
    const after = new Array<number>(r).fill(0);
    axes.forEach((k, i) => {
      if (!(k >= 0 && k < r)) fail(`axis ${k} is out of range`);
      before[k] = pads[i]!;
      after[k] = pads[i + axes.length]!;
    });
    if (before.some((p, k) => k !== 1 && p !== 0) || after.some((p, k) => k !== 1 && p !== 0)) {
      fail(`only padding the channel axis is supported, pads are ${list(pads)}`);
    }
    const [b, e] = [before[1]!, after[1]!];
    if (b < 0 || e < 0) fail(`negative pads ${list(pads)} are not supported`);
    const dims = [1, x.dims[1]! + b + e, x.dims[2]!, x.dims[3]!];
    return n.emit({ name: n.name, op: 'PadChannels', inputs: [x.index], before: b, after: e }, dims);
  },

  MaxPool(n) {
    if (n.proto.output.length > 1 && n.proto.output[1]) fail('the Indices output is not supported');
    return pool(n, 'MaxPool');
  },

  AveragePool(n) {
    return pool(n, 'AvgPool');
  },

  GlobalMaxPool(n) {
    const x = n.rank4(0);
    return n.emit({ name: n.name, op: 'GlobalMaxPool', inputs: [x.index] }, [1, x.dims[1]!, 1, 1]);
  },

  // Along the channels of images ([N,C,H,W]) or the features of vectors ([N,F]): both are the IR's channel axis.
  Concat(n) {
    const xs = n.proto.input.map((_, i) => n.runtime(i));
    const rank = xs[0]!.dims.length;
    const axis = n.a.int('axis');
    if ((axis < 0 ? axis + rank : axis) !== 1) fail(`axis ${axis} is not supported (only the channels, 1${rank === 4 ? ' or -3' : ''})`);
    for (const [i, x] of xs.entries()) {
      if (x.dims.length !== rank || x.dims.some((d, k) => k !== 1 && d !== xs[0]!.dims[k])) {
        fail(`input '${n.proto.input[i]}' has shape ${fmtRuntime(x)}, which does not fit ${fmtRuntime(xs[0]!)} beside it`);
      }
    }
    const dims = [...xs[0]!.dims];
    dims[1] = xs.reduce((c, x) => c + x.dims[1]!, 0);
    return n.emit({ name: n.name, op: 'Concat', inputs: xs.map((x) => x.index) }, dims);
  },

  GlobalAveragePool(n) {
    const x = n.rank4(0);
    return n.emit({ name: n.name, op: 'GlobalAvgPool', inputs: [x.index] }, [1, x.dims[1]!, 1, 1]);
  },

  Reshape(n) {
    const x = n.runtime(0);
    const shape = n.value(1);
    const name = n.proto.input[1];
    if (isRuntime(shape)) fail(`shape '${name}' is computed at run time, expected a constant`);
    if (n.a.int('allowzero', 0) !== 0) fail('allowzero 1 is not supported');
    const target = ints(shape, 'shape');
    // The first dimension stays the batch: the batch size taken from Shape, 0 (copied) or -1 (inferred). Folding
    // computed the rest with N = 1, so nothing else may depend on it.
    const batch = shape.batch?.[0] === 1 || target[0] === 0 || target[0] === -1;
    if (shape.batchShape || shape.batch?.subarray(1).includes(1) || !batch) {
      fail(`shape '${name}' ${list(target)} must keep the batch first (0, -1 or the batch size from Shape) and fix the other dimensions`);
    }
    return reshaped(n, x, reshapeDims(x.dims, target, false));
  },

  // Unsqueeze and Squeeze move no values; before the batch axis (0) they would change its meaning.
  Unsqueeze(n) {
    const x = n.runtime(0);
    const axes = unsqueezeAxes([undefined, n.has(1) ? n.param(1) : undefined], n.a);
    if (axes.some((a) => a === 0 || a === -(x.dims.length + axes.length))) fail(`axes ${list(axes)} would move the batch axis`);
    return reshaped(n, x, unsqueezeDims(x.dims, axes));
  },

  Squeeze(n) {
    const x = n.runtime(0);
    if (!n.has(1) && !n.a.has('axes')) fail('Squeeze without axes is not supported (it would remove a batch of 1)');
    const axes = unsqueezeAxes([undefined, n.has(1) ? n.param(1) : undefined], n.a);
    if (axes.some((a) => a === 0 || a === -x.dims.length)) fail(`axes ${list(axes)} would remove the batch axis`);
    return reshaped(n, x, squeezeDims(x.dims, axes));
  },

  /**
   * A Transpose that keeps the batch first permutes the axes of each image: an IR Transpose of [c, h, w] (NCHW to
   * NHWC, say; a rank-3 tensor's IR shape ends in a 1 that the perm keeps last). One that moves no value and keeps
   * the IR shape ([N,C,1,1] by [0,1,3,2]) is only renamed; one that moves no value into another IR shape ([N,C,1,1]
   * to [N,1,1,C]) is a copy, which a Flatten right after it drops (flatten()). The batch axis may move only where
   * the readers move it back: the Transpose [1,0] of [N,F] read as A by Gemms with transA 1 (Gemm handler).
   */
  Transpose(n) {
    const x = n.runtime(0);
    const r = x.dims.length;
    const perm = n.a.ints('perm', x.dims.map((_, k) => r - 1 - k));
    if (perm.length !== r || new Set(perm).size !== r || perm.some((a) => !(a >= 0 && a < r))) fail(`perm ${list(perm)} is not a permutation of ${r} axes`);
    const dims = perm.map((a) => x.dims[a]!);
    if (perm[0] !== 0) {
      const t = n.proto.output[0]!;
      const cancelled = r === 2 && n.imp.onlyReadBy(t, (g, a) => g.opType === 'Gemm' && g.input[0] === t && !g.input.slice(1).includes(t) && a.int('transA', 0) === 1);
      if (!cancelled) {
        fail(`perm ${list(perm)} of ${fmtRuntime(x)} moves the batch axis, which is not supported (only a Transpose [1,0] of [N,F] whose readers are all Gemms with transA 1 reading it as A, which cancel it)`);
      }
      return { ...x, dims, batchLast: true };
    }
    if (!movesValues(perm, x.dims) && same(irShape(dims), irShape(x.dims))) return { ...x, dims };
    const irPerm = [0, 1, 2].map((k) => (perm[k + 1] ?? k + 1) - 1) as [number, number, number];
    return n.emit({ name: n.name, op: 'Transpose', inputs: [x.index], perm: irPerm }, dims);
  },

  Flatten(n) {
    const x = n.runtime(0);
    const axis = n.a.int('axis', 1);
    if ((axis < 0 ? axis + x.dims.length : axis) !== 1) fail(`axis ${axis} is not supported (only 1)`);
    return flatten(n, x);
  },

  // alpha·(A·B) + beta·C with alpha folded into the weight and beta into the bias: the same values up to one
  // rounding of each product, and the Linear (on a crossbar too) sees ordinary parameters. A is the activations:
  // [N,F], or with transA 1 the Transpose [1,0] of an [N,F], which transA transposes back. Any other A would make
  // the product sum over the batch, whose size is dynamic, or (a constant A, transB 1) put the batch last.
  Gemm(n) {
    const a = n.value(0);
    const transA = n.a.int('transA', 0) !== 0;
    if (!isRuntime(a)) {
      const how = n.a.int('transB', 0) !== 0 ? 'would have the batch axis last ([out,N])' : 'would sum over the batch axis, whose size is dynamic';
      fail(`A '${n.proto.input[0]}' is a constant and B the activations: the product ${how}, which is not supported (only the activations as A)`);
    }
    if (transA && !a.batchLast) fail(`transA 1 on A ${fmtRuntime(a)} would sum over the batch axis, whose size is dynamic (only on the Transpose [1,0] of an [N,F], which it cancels)`);
    const x: Runtime = transA ? { index: a.index, dims: [a.dims[1]!, a.dims[0]!], name: a.name } : n.runtime(0);
    const alpha = n.a.float('alpha', 1);
    const beta = n.a.float('beta', 1);
    if (!Number.isFinite(alpha) || !Number.isFinite(beta)) fail(`alpha ${alpha} and beta ${beta} must be finite`);
    const node = linear(n, x, 1, n.a.int('transB', 0) === 1);
    if (alpha !== 1) node.weight = node.weight.map((w) => alpha * w);
    if (n.has(2)) {
      const bias = linearBias(n, 2, node.shape[0]);
      node.bias = beta === 1 ? bias : bias.map((b) => beta * b);
    }
    return n.emit(node, [1, node.shape[0]]);
  },

  MatMul(n) {
    const node = linear(n, n.runtime(0), 1, false);
    return n.emit(node, [1, node.shape[0]]);
  },
};
