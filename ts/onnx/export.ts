// IR → ONNX (opset 17), so that a model trained here loads in onnxruntime
// with FP32 semantics. StoX settings and learned crossbar parameters ride
// along: the configuration as metadata `stoxnet.config` (JSON), and each
// learned per-column array as an initializer `stoxnet/<node>/<param>` that
// no graph node reads (onnxruntime ignores it; importOnnx picks it up).
import type { EmbeddedStox, IrNode, Network } from '../network.js';
import { encodeModel } from './proto.js';

const FLOAT = 1;
const INT64 = 7;

function floats(name: string, dims: number[], data: Float32Array): object {
  return { name, dims: dims.map(String), dataType: FLOAT, rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) };
}

function int64s(name: string, values: number[]): object {
  const data = BigInt64Array.from(values, (v) => BigInt(v));
  return { name, dims: [String(values.length)], dataType: INT64, rawData: new Uint8Array(data.buffer) };
}

const intsAttr = (name: string, ints: number[]) => ({ name, type: 7, ints: ints.map(String) });
const intAttr = (name: string, i: number) => ({ name, type: 2, i: String(i) });
const floatAttr = (name: string, f: number) => ({ name, type: 1, f });

export interface ExportExtras {
  /** Goes to metadata `stoxnet.config` as JSON. */
  config?: unknown;
  /** Learned arrays per node name: `stoxnet/<node>/<param>`. */
  params?: Record<string, Record<string, Float32Array>>;
  /** Free-text provenance (`doc_string`). */
  doc?: string;
}

/** A model's learned layers as `params`: input clip and ADC bits as one-value arrays beside the per-column ones. */
export function learnedParams(layers: EmbeddedStox['layers']): Record<string, Record<string, Float32Array>> {
  return Object.fromEntries(
    Object.entries(layers).map(([name, l]) => [
      name,
      { ...l.params, ...(l.inputClip === undefined ? {} : { inputClip: Float32Array.of(l.inputClip) }), ...(l.adcBits === undefined ? {} : { adcBits: Float32Array.of(l.adcBits) }) },
    ]),
  );
}

export function exportOnnx(net: Network, extras: ExportExtras = {}): Uint8Array {
  const names = ['input', ...net.nodes.map((n) => n.name)];
  // The graph's input and output are 'input' and 'logits', unless another value already has that name.
  const free = (base: string, v: number) => {
    let name = base;
    for (let k = 1; names.some((m, u) => u !== v && m === name); k++) name = `${base}_${k}`;
    return name;
  };
  names[0] = free('input', 0);
  const output = free('logits', net.output);
  const value = (v: number) => (v === net.output ? output : names[v]);
  const initializers: object[] = [];
  const nodes: object[] = [];
  const node = (n: IrNode, op: string, inputs: string[], attribute: object[] = []) =>
    nodes.push({ name: n.name, opType: op, input: inputs, output: [value(net.nodes.indexOf(n) + 1)], attribute });
  const init = (t: object & { name: string }) => {
    initializers.push(t);
    return t.name;
  };
  // ONNX ranks: the IR's [c, h, w] is [N,C,H,W] until a Flatten or Linear makes it [N,F]. An elementwise
  // op of a vector and an image unsqueezes the vector, so that ONNX aligns it with the channels.
  const ranks = [4];
  const unsqueezed = new Map<number, string>();
  const atRank = (v: number, rank: number) => {
    if (ranks[v] === rank) return value(v);
    let name = unsqueezed.get(v);
    if (name === undefined) {
      name = `${names[v]}/unsqueezed`;
      const axes = init(int64s(`${names[v]}/unsqueeze.axes`, [2, 3]) as { name: string });
      nodes.push({ name: `${names[v]}/unsqueeze`, opType: 'Unsqueeze', input: [value(v), axes], output: [name], attribute: [] });
      unsqueezed.set(v, name);
    }
    return name;
  };
  for (const n of net.nodes) {
    // A Transpose permutes the axes of [N,C,H,W]: a vector it reads is unsqueezed to one first.
    const rank = n.op === 'Flatten' || n.op === 'Linear' ? 2 : n.op === 'Transpose' ? 4 : Math.max(...n.inputs.map((v) => ranks[v]!));
    ranks.push(rank);
    const x = n.inputs.map((v) => (n.inputs.length > 1 ? atRank(v, rank) : value(v)));
    switch (n.op) {
      case 'Conv': {
        const inputs = [x[0], init(floats(`${n.name}.weight`, n.shape, n.weight) as { name: string })];
        if (n.bias) inputs.push(init(floats(`${n.name}.bias`, [n.shape[0]], n.bias) as { name: string }));
        node(n, 'Conv', inputs, [intsAttr('kernel_shape', n.shape.slice(2)), intsAttr('strides', n.stride), intsAttr('pads', [n.pads[0], n.pads[1], n.pads[2], n.pads[3]])]);
        break;
      }
      case 'BatchNorm': {
        const c = n.weight.length;
        const t = (k: string, d: Float32Array) => init(floats(`${n.name}.${k}`, [c], d) as { name: string });
        node(n, 'BatchNormalization', [x[0], t('weight', n.weight), t('bias', n.bias), t('running_mean', n.mean), t('running_var', n.var)], [floatAttr('epsilon', n.eps)]);
        break;
      }
      case 'Slice': {
        const t = (k: string, v: number[]) => init(int64s(`${n.name}.${k}`, v) as { name: string });
        node(n, 'Slice', [x[0], t('starts', n.start), t('ends', n.end), t('axes', [2, 3]), t('steps', n.step)]);
        break;
      }
      case 'SliceChannels': {
        const t = (k: string, v: number[]) => init(int64s(`${n.name}.${k}`, v) as { name: string });
        node(n, 'Slice', [x[0], t('starts', n.start), t('ends', n.end), t('axes', [1])]);
        break;
      }
      case 'PadChannels':
        node(n, 'Pad', [x[0], init(int64s(`${n.name}.pads`, [0, n.before, 0, 0, 0, n.after, 0, 0]) as { name: string })], [{ name: 'mode', type: 3, s: new TextEncoder().encode('constant') }]);
        break;
      case 'Transpose':
        node(n, 'Transpose', [atRank(n.inputs[0], 4)], [intsAttr('perm', [0, ...n.perm.map((a) => a + 1)])]);
        break;
      case 'Linear': {
        const inputs = [x[0], init(floats(`${n.name}.weight`, n.shape, n.weight) as { name: string })];
        if (n.bias) inputs.push(init(floats(`${n.name}.bias`, [n.shape[0]], n.bias) as { name: string }));
        node(n, 'Gemm', inputs, [intAttr('transB', 1)]);
        break;
      }
      case 'MaxPool':
      case 'AvgPool': {
        const window = [intsAttr('kernel_shape', n.kernel), intsAttr('strides', n.stride), intsAttr('pads', n.pads), intAttr('ceil_mode', n.ceilMode ? 1 : 0)];
        if (n.op === 'MaxPool') node(n, 'MaxPool', x, window);
        else node(n, 'AveragePool', x, [...window, intAttr('count_include_pad', n.countIncludePad ? 1 : 0)]);
        break;
      }
      case 'Flatten':
        node(n, 'Flatten', x, [intAttr('axis', 1)]);
        break;
      case 'Hardtanh': {
        const bound = (k: string, v: number) => init(floats(`${n.name}.${k}`, [], Float32Array.of(v)) as { name: string });
        node(n, 'Clip', [x[0], bound('min', n.min), bound('max', n.max)]);
        break;
      }
      case 'Concat':
        node(n, 'Concat', x, [intAttr('axis', 1)]);
        break;
      case 'HardSigmoid':
        node(n, n.op, x, [floatAttr('alpha', n.alpha!), floatAttr('beta', n.beta!)]);
        break;
      case 'LeakyRelu':
        node(n, n.op, x, [floatAttr('alpha', n.alpha!)]);
        break;
      case 'Add':
      case 'Sub':
      case 'Mul':
      case 'Div':
        if (n.constant) {
          // [c, h, w] right-aligned under [N,C,H,W], or [c] under [N,F].
          const k = init(floats(`${n.name}.constant`, n.constantShape!.slice(0, rank - 1), n.constant) as { name: string });
          node(n, n.op, n.constantFirst ? [k, x[0]!] : [x[0]!, k]);
        } else node(n, n.op, x);
        break;
      default:
        node(n, n.op === 'GlobalAvgPool' ? 'GlobalAveragePool' : n.op, x); // GlobalMaxPool, Relu, Sigmoid and HardSwish keep their ONNX names
    }
  }
  for (const [nodeName, params] of Object.entries(extras.params ?? {})) {
    for (const [k, v] of Object.entries(params)) init(floats(`stoxnet/${nodeName}/${k}`, [v.length], v) as { name: string });
  }
  const [c, h, w] = net.input;
  const dim = (d: number | string) => (typeof d === 'number' ? { dimValue: String(d) } : { dimParam: d });
  const valueInfo = (name: string, dims: (number | string)[]) => ({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map(dim) } } } });
  const classes = (net.nodes[net.output - 1] as { shape?: number[] }).shape?.[0] ?? 10;
  return encodeModel({
    irVersion: '8',
    producerName: 'stoxnet',
    producerVersion: '0.1.0',
    docString: extras.doc ?? '',
    opsetImport: [{ domain: '', version: '17' }],
    metadataProps: [
      ...(extras.config === undefined ? [] : [{ key: 'stoxnet.config', value: JSON.stringify(extras.config) }]),
      ...(net.dataset === undefined ? [] : [{ key: 'stoxnet.dataset', value: net.dataset }]),
      ...(net.normalization === undefined ? [] : [{ key: 'stoxnet.normalization', value: JSON.stringify(net.normalization) }]),
    ],
    graph: {
      name: 'stoxnet',
      node: nodes,
      initializer: initializers,
      input: [valueInfo(names[0]!, ['N', c, h, w])],
      output: [valueInfo(output, ['N', classes])],
    },
  });
}
