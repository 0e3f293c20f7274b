// The pure-JS reference engine: the forward pass of crates/core/src/engine.rs
// in plain TypeScript. Same seed, same calibrated parameters ⇒ the same
// logits, bit for bit, as the native engine (test/reference.test.ts).
import type { Backend } from '../backend.js';
import type { LayerSpecJs, ResolvedJs } from '../native-binding.js';
import type { Network } from '../network.js';
import { CrossbarLayer } from './crossbar.js';
import * as L from './layers.js';

export class ReferenceEngine {
  private shapes: L.Shape[];
  private crossbars: (CrossbarLayer | undefined)[];

  constructor(
    private net: Network,
    specs: (LayerSpecJs | null)[],
    resolved: ResolvedJs[],
    private seed: number,
  ) {
    this.shapes = [{ c: net.input[0], h: net.input[1], w: net.input[2] }];
    for (const n of net.nodes) {
      const x = this.shapes[n.inputs[0]];
      switch (n.op) {
        case 'Conv':
          this.shapes.push(L.convOutShape(n, x));
          break;
        case 'Slice':
          this.shapes.push({ c: x.c, h: Math.ceil((n.end[0] - n.start[0]) / n.step[0]), w: Math.ceil((n.end[1] - n.start[1]) / n.step[1]) });
          break;
        case 'PadChannels':
          this.shapes.push({ ...x, c: x.c + n.before + n.after });
          break;
        case 'SliceChannels':
          this.shapes.push({ ...x, c: n.end[0] - n.start[0] });
          break;
        case 'Transpose':
          this.shapes.push(L.transposedShape(n.perm, x));
          break;
        case 'MaxPool':
        case 'AvgPool':
          this.shapes.push(L.poolOutShape(n, x));
          break;
        case 'GlobalAvgPool':
        case 'GlobalMaxPool':
          this.shapes.push({ c: x.c, h: 1, w: 1 });
          break;
        case 'Flatten':
          this.shapes.push({ c: x.c * x.h * x.w, h: 1, w: 1 });
          break;
        case 'Linear':
          this.shapes.push({ c: n.shape[0], h: 1, w: 1 });
          break;
        case 'Concat':
          this.shapes.push({ ...x, c: n.inputs.reduce((c, v) => c + this.shapes[v].c, 0) });
          break;
        case 'Add':
        case 'Sub':
        case 'Mul':
        case 'Div': {
          const k = n.constantShape;
          this.shapes.push(L.broadcastShape(x, k ? { c: k[0], h: k[1], w: k[2] } : this.shapes[n.inputs[1]!]));
          break;
        }
        default:
          this.shapes.push(x);
      }
    }
    const byNode = new Map(resolved.map((r) => [r.node, r]));
    this.crossbars = net.nodes.map((n, i) => {
      const spec = specs[i];
      if (!spec) return undefined;
      if (n.op !== 'Conv' && n.op !== 'Linear') throw new Error(`node '${n.name}' (${n.op}) cannot run on a crossbar`);
      const r = byNode.get(i);
      if (!r) throw new Error(`node '${n.name}': no calibrated parameters`);
      return new CrossbarLayer(i, n.weight, n.bias, n.shape[0], spec, r, seed);
    });
  }

  get classes(): number {
    const s = this.shapes[this.net.output];
    return s.c * s.h * s.w;
  }

  /** Logits of image number `index`. */
  forward(image: Float32Array, index: number): Float32Array {
    const values: Float32Array[] = [image];
    this.net.nodes.forEach((n, i) => {
      const x = values[n.inputs[0]];
      const xs = this.shapes[n.inputs[0]];
      const os = this.shapes[i + 1];
      const xb = this.crossbars[i];
      let out: Float32Array;
      switch (n.op) {
        case 'Conv':
          out = xb ? xb.forward(x, os.h * os.w, (plane) => L.im2col(n, plane, xs, os), index, this.seed) : L.conv(n, x, xs, os);
          break;
        case 'Linear':
          out = xb ? xb.forward(x, 1, (plane) => plane, index, this.seed) : L.linear(n, x);
          break;
        case 'BatchNorm':
          out = L.batchNorm(n, x, xs.h * xs.w);
          break;
        case 'Relu':
          out = L.relu(x);
          break;
        case 'Hardtanh':
          out = L.hardtanh(x, n.min, n.max);
          break;
        case 'Add':
        case 'Sub':
        case 'Mul':
        case 'Div': {
          const y = n.inputs[1];
          out = L.binary(n.op, ...L.operands(n, [x, xs], y === undefined ? undefined : [values[y], this.shapes[y]]), os);
          break;
        }
        case 'Sigmoid':
        case 'HardSigmoid':
        case 'HardSwish':
        case 'LeakyRelu':
          out = L.activation(n, x);
          break;
        case 'Slice':
          out = L.slice(n, x, xs, os);
          break;
        case 'PadChannels':
          out = L.padChannels(n.before, n.after, x, xs.h * xs.w);
          break;
        case 'SliceChannels':
          out = x.slice(n.start[0] * xs.h * xs.w, n.end[0] * xs.h * xs.w);
          break;
        case 'Transpose':
          out = L.transpose(n.perm, x, xs);
          break;
        case 'MaxPool':
          out = L.maxPool(n, x, xs, os);
          break;
        case 'AvgPool':
          out = L.avgPool(n, x, xs, os);
          break;
        case 'GlobalAvgPool':
          out = L.globalAvgPool(x, xs.c, xs.h * xs.w);
          break;
        case 'GlobalMaxPool':
          out = L.globalMaxPool(x, xs.c, xs.h * xs.w);
          break;
        case 'Concat':
          out = L.concat(n.inputs.map((v) => values[v]));
          break;
        case 'Flatten':
          out = x;
          break;
      }
      values.push(out);
    });
    return values[this.net.output];
  }
}

/** The reference as a backend (one image at a time, on the JS thread). */
export function referenceBackend(net: Network, specs: (LayerSpecJs | null)[], resolved: ResolvedJs[], seed: number): Backend {
  const engine = new ReferenceEngine(net, specs, resolved, seed);
  const len = net.input[0] * net.input[1] * net.input[2];
  const classes = engine.classes;
  return {
    name: 'js',
    classes,
    async run(images, first) {
      const n = images.length / len;
      const logits = new Float32Array(n * classes);
      for (let i = 0; i < n; i++) logits.set(engine.forward(images.subarray(i * len, (i + 1) * len), first + i), i * classes);
      return { logits };
    },
  };
}
