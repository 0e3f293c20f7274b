// Digital FP32 layers on one image (c × h × w, row-major), with the rounding
// sequence of crates/core/src/layers.rs. Matrix products (gemm.rs) start every
// sum at +0 and add terms in ascending k, each with one float32 fused
// multiply-add (fma.ts); other sums round each product and sum to float32.
//
// Zero terms are skipped: adding a ±0 product changes a sum only from −0 to
// +0, and a sum that started at +0 is −0 only after a product too small for
// float32 underflowed to it. Skipping them except on a zero sum gives the same
// bits and is much faster here.
import type { ActivationNode, BatchNormNode, BinaryNode, ConvNode, LinearNode, PoolNode, SliceNode } from '../network.js';
import { fmaf32 } from './fma.js';
import { sigmoid } from './pmath.js';

const f = Math.fround;

export interface Shape {
  c: number;
  h: number;
  w: number;
}

export function convOutShape(n: ConvNode, x: Shape): Shape {
  const [, , kh, kw] = n.shape;
  return {
    c: n.shape[0],
    h: Math.floor((x.h + n.pads[0] + n.pads[2] - kh) / n.stride[0]) + 1,
    w: Math.floor((x.w + n.pads[1] + n.pads[3] - kw) / n.stride[1]) + 1,
  };
}

/** The unfolded input `cols[k × p]`, k = (c, ky, kx), p = (oy, ox); padding is 0. */
export function im2col(n: ConvNode, x: Float32Array, xs: Shape, os: Shape): Float32Array {
  const [, , kh, kw] = n.shape;
  const p = os.h * os.w;
  const cols = new Float32Array(xs.c * kh * kw * p);
  for (let c = 0; c < xs.c; c++)
    for (let ky = 0; ky < kh; ky++)
      for (let kx = 0; kx < kw; kx++) {
        const row = ((c * kh + ky) * kw + kx) * p;
        for (let oy = 0; oy < os.h; oy++) {
          const iy = oy * n.stride[0] - n.pads[0] + ky;
          if (iy < 0 || iy >= xs.h) continue;
          for (let ox = 0; ox < os.w; ox++) {
            const ix = ox * n.stride[1] - n.pads[1] + kx;
            if (ix >= 0 && ix < xs.w) cols[row + oy * os.w + ox] = x[(c * xs.h + iy) * xs.w + ix];
          }
        }
      }
  return cols;
}

/** `c[m × n] = a[m × k] · b[k × n]`, each output a chain of fused multiply-adds over ascending k. */
export function gemm(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const c = new Float32Array(m * n);
  for (let kk = 0; kk < k; kk++) {
    for (let i = 0; i < m; i++) {
      const w = a[i * k + kk];
      for (let j = 0; j < n; j++) {
        const x = b[kk * n + j];
        const at = i * n + j;
        if (w !== 0 && x !== 0) c[at] = fmaf32(w, x, c[at]);
        else if (c[at] === 0) c[at] += w * x; // −0 + +0 is +0
      }
    }
  }
  return c;
}

export function addChannelBias(out: Float32Array, bias: Float32Array, p: number): void {
  for (let o = 0; o < bias.length; o++) for (let i = o * p; i < (o + 1) * p; i++) out[i] = f(out[i] + bias[o]);
}

export function conv(n: ConvNode, x: Float32Array, xs: Shape, os: Shape): Float32Array {
  const [o, c, kh, kw] = n.shape;
  const out = gemm(n.weight, im2col(n, x, xs, os), o, c * kh * kw, os.h * os.w);
  if (n.bias) addChannelBias(out, n.bias, os.h * os.w);
  return out;
}

export function linear(n: LinearNode, x: Float32Array): Float32Array {
  const out = gemm(n.weight, x, n.shape[0], n.shape[1], 1);
  if (n.bias) addChannelBias(out, n.bias, 1);
  return out;
}

export function batchNorm(n: BatchNormNode, x: Float32Array, p: number): Float32Array {
  const out = new Float32Array(x.length);
  const eps = f(n.eps);
  for (let c = 0; c < n.weight.length; c++) {
    const g = f(n.weight[c] / f(Math.sqrt(f(n.var[c] + eps))));
    for (let i = c * p; i < (c + 1) * p; i++) out[i] = f(f(f(x[i] - n.mean[c]) * g) + n.bias[c]);
  }
  return out;
}

export function relu(x: Float32Array): Float32Array {
  return x.map((v) => (v > 0 ? v : 0));
}

export function hardtanh(x: Float32Array, min: number, max: number): Float32Array {
  const lo = f(min);
  const hi = f(max);
  return x.map((v) => (v < lo ? lo : v > hi ? hi : v));
}

/** ONNX HardSwish's HardSigmoid (layers.rs HARD_SWISH). */
const HARD_SWISH: [number, number] = [f(1 / 6), 0.5];

const unitClamp = (t: number) => (t < 0 ? 0 : t > 1 ? 1 : t);

/** layers.rs activate: `alpha·x + beta` rounded after the product and the sum; the sigmoid from pmath. */
export function activation(n: ActivationNode, x: Float32Array): Float32Array {
  const alpha = f(n.alpha ?? 0);
  const beta = f(n.beta ?? 0);
  switch (n.op) {
    case 'Sigmoid':
      return x.map((v) => sigmoid(v));
    case 'HardSigmoid':
      return x.map((v) => unitClamp(f(f(alpha * v) + beta)));
    case 'HardSwish':
      return x.map((v) => f(v * unitClamp(f(f(HARD_SWISH[0] * v) + HARD_SWISH[1]))));
    case 'LeakyRelu':
      return x.map((v) => (v >= 0 ? v : f(alpha * v)));
  }
}

/** graph.rs broadcast: along each axis the sizes are equal or one is 1. */
export function broadcastShape(a: Shape, b: Shape): Shape {
  const axis = (x: number, y: number) => Math.max(x, y);
  return { c: axis(a.c, b.c), h: axis(a.h, b.h), w: axis(a.w, b.w) };
}

/** The operands of a Binary node in order (layers.rs operands): its inputs, or its input and constant. */
export function operands(n: BinaryNode, x: [Float32Array, Shape], y?: [Float32Array, Shape]): [[Float32Array, Shape], [Float32Array, Shape]] {
  if (!n.constant) return [x, y!];
  const [c, h, w] = n.constantShape!;
  const k: [Float32Array, Shape] = [n.constant, { c, h, w }];
  return n.constantFirst ? [k, x] : [x, k];
}

/** `a ∘ b` per output value with broadcasting (an axis of size 1 is read at 0), one float32 operation each. */
export function binary(op: BinaryNode['op'], [a, sa]: [Float32Array, Shape], [b, sb]: [Float32Array, Shape], os: Shape): Float32Array {
  const out = new Float32Array(os.c * os.h * os.w);
  const at = (s: Shape, c: number, y: number, x: number) => ((s.c === 1 ? 0 : c) * s.h + (s.h === 1 ? 0 : y)) * s.w + (s.w === 1 ? 0 : x);
  for (let c = 0; c < os.c; c++)
    for (let y = 0; y < os.h; y++)
      for (let x = 0; x < os.w; x++) {
        const u = a[at(sa, c, y, x)];
        const v = b[at(sb, c, y, x)];
        out[(c * os.h + y) * os.w + x] = op === 'Add' ? u + v : op === 'Sub' ? u - v : op === 'Mul' ? u * v : u / v;
      }
  return out;
}

export function slice(n: SliceNode, x: Float32Array, xs: Shape, os: Shape): Float32Array {
  const out = new Float32Array(os.c * os.h * os.w);
  for (let c = 0; c < xs.c; c++)
    for (let oy = 0; oy < os.h; oy++)
      for (let ox = 0; ox < os.w; ox++)
        out[(c * os.h + oy) * os.w + ox] = x[(c * xs.h + n.start[0] + oy * n.step[0]) * xs.w + n.start[1] + ox * n.step[1]];
  return out;
}

export function padChannels(before: number, after: number, x: Float32Array, p: number): Float32Array {
  const out = new Float32Array(x.length + (before + after) * p);
  out.set(x, before * p);
  return out;
}

/** The shape of `x` with its axes permuted (a Transpose node): output axis k is input axis `perm[k]`. */
export function transposedShape(perm: readonly number[], x: Shape): Shape {
  const dims = [x.c, x.h, x.w];
  return { c: dims[perm[0]!]!, h: dims[perm[1]!]!, w: dims[perm[2]!]! };
}

/** `x` with its axes permuted, in output order (layers.rs `transpose`). */
export function transpose(perm: readonly number[], x: Float32Array, xs: Shape): Float32Array {
  const strides = [xs.h * xs.w, xs.w, 1];
  const os = transposedShape(perm, xs);
  const [s0, s1, s2] = perm.map((a) => strides[a]!) as [number, number, number];
  const out = new Float32Array(x.length);
  let o = 0;
  for (let i = 0; i < os.c; i++) for (let j = 0; j < os.h; j++) for (let k = 0; k < os.w; k++) out[o++] = x[i * s0 + j * s1 + k * s2]!;
  return out;
}

/** The inputs one after the other: with channels outermost, their channels in order. */
export function concat(inputs: Float32Array[]): Float32Array {
  const out = new Float32Array(inputs.reduce((n, x) => n + x.length, 0));
  let at = 0;
  for (const x of inputs) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}

export function globalAvgPool(x: Float32Array, c: number, p: number): Float32Array {
  const out = new Float32Array(c);
  for (let ch = 0; ch < c; ch++) {
    let acc = 0;
    for (let i = ch * p; i < (ch + 1) * p; i++) acc = f(acc + x[i]);
    out[ch] = f(acc / p);
  }
  return out;
}

/** graph.rs pool_out: a ceil_mode window starting in the bottom/right padding is dropped. */
export function poolOut(size: number, padA: number, padB: number, k: number, stride: number, ceil: boolean): number {
  const span = size + padA + padB - k;
  const out = (ceil ? Math.ceil(span / stride) : Math.floor(span / stride)) + 1;
  return ceil && (out - 1) * stride >= size + padA ? out - 1 : out;
}

export function poolOutShape(n: PoolNode, x: Shape): Shape {
  return {
    c: x.c,
    h: poolOut(x.h, n.pads[0], n.pads[2], n.kernel[0], n.stride[0], n.ceilMode),
    w: poolOut(x.w, n.pads[1], n.pads[3], n.kernel[1], n.stride[1], n.ceilMode),
  };
}

/** Input range [lo, hi) under output o's window, and the window clipped to the padded input (layers.rs pool_window). */
function poolWindow(o: number, stride: number, k: number, padA: number, padB: number, size: number): [number, number, number] {
  const start = o * stride;
  return [Math.max(start, padA) - padA, Math.min(start + k, padA + size) - padA, Math.min(start + k, padA + size + padB) - start];
}

/** Each window's maximum, scanned row by row from -Infinity with a strict `>`. */
export function maxPool(n: PoolNode, x: Float32Array, xs: Shape, os: Shape): Float32Array {
  const out = new Float32Array(os.c * os.h * os.w);
  for (let c = 0; c < xs.c; c++)
    for (let oy = 0; oy < os.h; oy++) {
      const [y0, y1] = poolWindow(oy, n.stride[0], n.kernel[0], n.pads[0], n.pads[2], xs.h);
      for (let ox = 0; ox < os.w; ox++) {
        const [x0, x1] = poolWindow(ox, n.stride[1], n.kernel[1], n.pads[1], n.pads[3], xs.w);
        let acc = -Infinity;
        for (let iy = y0; iy < y1; iy++)
          for (let ix = x0; ix < x1; ix++) {
            const v = x[(c * xs.h + iy) * xs.w + ix];
            if (v > acc) acc = v;
          }
        out[(c * os.h + oy) * os.w + ox] = acc;
      }
    }
  return out;
}

/** Each window's float32 sum of its input pixels, row by row, divided by their count (or the padded window's size). */
export function avgPool(n: PoolNode, x: Float32Array, xs: Shape, os: Shape): Float32Array {
  const out = new Float32Array(os.c * os.h * os.w);
  for (let c = 0; c < xs.c; c++)
    for (let oy = 0; oy < os.h; oy++) {
      const [y0, y1, wh] = poolWindow(oy, n.stride[0], n.kernel[0], n.pads[0], n.pads[2], xs.h);
      for (let ox = 0; ox < os.w; ox++) {
        const [x0, x1, ww] = poolWindow(ox, n.stride[1], n.kernel[1], n.pads[1], n.pads[3], xs.w);
        let acc = 0;
        for (let iy = y0; iy < y1; iy++) for (let ix = x0; ix < x1; ix++) acc = f(acc + x[(c * xs.h + iy) * xs.w + ix]);
        out[(c * os.h + oy) * os.w + ox] = f(acc / (n.countIncludePad ? wh * ww : (y1 - y0) * (x1 - x0)));
      }
    }
  return out;
}

export function globalMaxPool(x: Float32Array, c: number, p: number): Float32Array {
  const out = new Float32Array(c);
  for (let ch = 0; ch < c; ch++) {
    let acc = -Infinity;
    for (let i = ch * p; i < (ch + 1) * p; i++) if (x[i] > acc) acc = x[i];
    out[ch] = acc;
  }
  return out;
}
