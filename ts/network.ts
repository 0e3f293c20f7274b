// The network IR, one to one with crates/core/src/graph.rs. Value 0 is the
// network input; node i produces value i + 1; nodes are in topological order.
// Weights travel to Rust as typed arrays (no JSON copies).

export interface ConvNode {
  name: string;
  op: 'Conv';
  inputs: [number];
  /** [out, in, kh, kw] */
  shape: [number, number, number, number];
  weight: Float32Array;
  bias?: Float32Array;
  stride: [number, number];
  /** top, left, bottom, right */
  pads: [number, number, number, number];
}

export interface BatchNormNode {
  name: string;
  op: 'BatchNorm';
  inputs: [number];
  /** gamma */
  weight: Float32Array;
  /** beta */
  bias: Float32Array;
  mean: Float32Array;
  var: Float32Array;
  eps: number;
}

export interface SliceNode {
  name: string;
  op: 'Slice';
  inputs: [number];
  /** [h, w] each, end exclusive and clamped to the input size */
  start: [number, number];
  end: [number, number];
  step: [number, number];
}

export interface PadChannelsNode {
  name: string;
  op: 'PadChannels';
  inputs: [number];
  before: number;
  after: number;
}

export interface LinearNode {
  name: string;
  op: 'Linear';
  inputs: [number];
  /** [out, in] */
  shape: [number, number];
  /** row-major [out, in] */
  weight: Float32Array;
  bias?: Float32Array;
}

/** ONNX MaxPool / AveragePool (dilation 1); each pad is below the kernel. */
export interface PoolNode {
  name: string;
  op: 'MaxPool' | 'AvgPool';
  inputs: [number];
  /** [kh, kw] */
  kernel: [number, number];
  stride: [number, number];
  /** top, left, bottom, right */
  pads: [number, number, number, number];
  /** Output size rounded up; a last window starting in the bottom/right padding is dropped. */
  ceilMode: boolean;
  /** AvgPool only: divide by the window clipped to the padded input, not by the input pixels it covers. */
  countIncludePad?: boolean;
}

export interface SimpleNode {
  name: string;
  op: 'Relu' | 'GlobalAvgPool' | 'GlobalMaxPool' | 'Flatten';
  inputs: [number];
}

/** Clamp to [min, max]: ONNX Clip, hardtanh when ±1. */
export interface HardtanhNode {
  name: string;
  op: 'Hardtanh';
  inputs: [number];
  min: number;
  max: number;
}

/** ONNX Concat on the channel axis: each image's values are the inputs' values in order. */
export interface ConcatNode {
  name: string;
  op: 'Concat';
  inputs: number[];
}

/** ONNX Sigmoid, HardSigmoid (alpha, beta), HardSwish and LeakyRelu (alpha). */
export interface ActivationNode {
  name: string;
  op: 'Sigmoid' | 'HardSigmoid' | 'HardSwish' | 'LeakyRelu';
  inputs: [number];
  alpha?: number;
  beta?: number;
}

/**
 * Elementwise `a ∘ b` with numpy broadcasting over [c, h, w]: of two values
 * (`inputs` [a, b]; the residual Add), or of one value and a constant
 * (`inputs` [x]; the constant is `a` when `constantFirst`). Constants are not trained.
 */
export interface BinaryNode {
  name: string;
  op: 'Add' | 'Sub' | 'Mul' | 'Div';
  inputs: [number] | [number, number];
  constant?: Float32Array;
  /** [c, h, w] of the constant; each is 1 or the output's size */
  constantShape?: [number, number, number];
  constantFirst?: boolean;
}

/** Channels `start[0]..end[0]` of the input (ONNX Slice on axis 1; one group of a grouped conv). */
export interface SliceChannelsNode {
  name: string;
  op: 'SliceChannels';
  inputs: [number];
  start: [number];
  end: [number];
}

/** ONNX Transpose with the batch first (NCHW → NHWC, say): output axis k of [c, h, w] is input axis `perm[k]`. */
export interface TransposeNode {
  name: string;
  op: 'Transpose';
  inputs: [number];
  perm: [number, number, number];
}

export type IrNode =
  | ConvNode
  | BatchNormNode
  | SliceNode
  | SliceChannelsNode
  | PadChannelsNode
  | LinearNode
  | PoolNode
  | SimpleNode
  | HardtanhNode
  | BinaryNode
  | ActivationNode
  | ConcatNode
  | TransposeNode;

/** Per-column parameter names a trained crossbar layer carries. */
export const LEARNED_PARAMS = ['adcLo', 'adcStep', 'normScale', 'normShift', 'readoutGain', 'readoutOffset'] as const;

/**
 * What a model trained with PS-QAT carries besides its FP32 graph: the
 * simulator settings it was trained with (ONNX metadata `stoxnet.config`)
 * and, per crossbar node, its input clip, the resolution of its ADC (the
 * bits a sparse-adc resolved to) and learned per-column parameters
 * (initializers `stoxnet/<node>/<param>`).
 */
export interface EmbeddedStox {
  config: Record<string, unknown>;
  layers: Record<string, { inputClip?: number; adcBits?: number; params: Partial<Record<(typeof LEARNED_PARAMS)[number], Float32Array>> }>;
}

export interface Network {
  /** [channels, height, width] of one image */
  input: [number, number, number];
  nodes: IrNode[];
  /** value index of the logits */
  output: number;
  stox?: EmbeddedStox;
  /** The data set a model trained here learned (metadata `stoxnet.dataset`): eval reads it by default. */
  dataset?: string;
  /** The per-channel normalisation it was trained with (metadata `stoxnet.normalization`); needed for users' data sets. */
  normalization?: { mean: number[]; std: number[] };
}
