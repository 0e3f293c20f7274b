// The simulator's configuration: what the user sets (flags, a JSON file, or
// a typed object), validated once here, and its resolution into one crossbar
// spec per IR node (crates/core/src/calibrate.rs `LayerSpec`).
import { ConfigError, int, ints, num, oneOf, readJsonFile, show } from './config.js';
import type { LayerSpecJs } from './native-binding.js';
import type { Network } from './network.js';

export const CONVERTERS = ['fp', 'ideal', 'adc', 'sparse-adc', 'sense-amp', 'mtj'] as const;
export const SCHEDULES = ['first-16-then-4', 'rising', 'falling'] as const;
export const POLICIES = ['first-last-digital', 'all-crossbar'] as const;

export type ConverterName = (typeof CONVERTERS)[number];
export type ScheduleName = (typeof SCHEDULES)[number];

export interface StoxConfig {
  /** `fp` runs the whole network digitally in FP32; the others map conv/linear layers onto crossbars. */
  converter: ConverterName;
  /** Word lines per subarray. */
  rows: number;
  /** Bit lines per subarray (tiling of wide layers; changes cost only). */
  cols: number;
  split: 'balanced' | 'filled';
  weightBits: number;
  /** Bits per weight slice (default = weightBits: one slice). */
  weightSliceBits?: number;
  inputBits: number;
  /** Bits per input stream (default = inputBits: one stream). */
  inputStreamBits?: number;
  weightQuant: 'uniform' | 'away';
  signed: 'differential' | 'offset';
  /** ADC resolution (default: lossless for each layer, from its real rows, slices and streams: crossbar.rs `lossless_adc_bits`). */
  adcBits?: number;
  adcRange: 'full' | 'calibrated';
  /** MTJ samples T for every crossbar layer. */
  samples: number;
  /** Explicit T per crossbar layer (overrides `samples`). */
  samplesPerLayer?: number[];
  /**
   * Named per-layer T (overrides `samples`), or the path of a schedule file
   * (`stoxnet schedule search` writes them): JSON with `samplesPerLayer` or
   * `samplesPerStream`, which it resolves into.
   */
  schedule?: ScheduleName | `${string}.json`;
  /**
   * Explicit T per input stream, least significant stream first, for every
   * crossbar layer (overrides `samples`): sampling weighted by the streams'
   * significance. One value per stream (inputBits / inputStreamBits).
   */
  samplesPerStream?: number[];
  transfer: 'sigmoid' | 'tanh' | 'fitted';
  /** Sensitivity a of the sigmoid / tanh transfer curve. */
  sensitivity: number;
  /** Relative σ of each cell's programmed conductance. */
  weightNoise: number;
  /** σ of additive read noise per conversion, in partial-sum LSB. */
  readNoise: number;
  /** σ of each MTJ's transfer-curve offset (normalised units). */
  mtjOffsetSigma: number;
  /** Relative σ of each MTJ's transfer-curve slope. */
  mtjSlopeSigma: number;
  seed: number;
  /** Which layers stay digital FP32. */
  policy: (typeof POLICIES)[number];
  /** Explicit digital layers (Conv/Linear node names); overrides `policy`. */
  digitalLayers?: string[];
  /** Training images used to calibrate clips, ranges and normalisation. */
  calibrationImages: number;
}

export const DEFAULTS: StoxConfig = {
  converter: 'fp',
  rows: 128,
  cols: 128,
  split: 'balanced',
  weightBits: 4,
  inputBits: 4,
  weightQuant: 'uniform',
  signed: 'differential',
  adcRange: 'full',
  samples: 1,
  transfer: 'sigmoid',
  sensitivity: 4,
  weightNoise: 0,
  readNoise: 0,
  mtjOffsetSigma: 0,
  mtjSlopeSigma: 0,
  seed: 0,
  policy: 'first-last-digital',
  calibrationImages: 256,
};

/** The CLI flag of each key (for error messages and --help). */
export const FLAGS: Record<keyof StoxConfig, string> = {
  converter: '--converter',
  rows: '--rows',
  cols: '--cols',
  split: '--split',
  weightBits: '--weight-bits',
  weightSliceBits: '--weight-slice-bits',
  inputBits: '--input-bits',
  inputStreamBits: '--input-stream-bits',
  weightQuant: '--weight-quant',
  signed: '--signed',
  adcBits: '--adc-bits',
  adcRange: '--adc-range',
  samples: '--samples',
  samplesPerLayer: '--samples-per-layer',
  schedule: '--schedule',
  samplesPerStream: '--samples-per-stream',
  transfer: '--mtj-transfer',
  sensitivity: '--sensitivity',
  weightNoise: '--weight-noise',
  readNoise: '--read-noise',
  mtjOffsetSigma: '--mtj-offset-sigma',
  mtjSlopeSigma: '--mtj-slope-sigma',
  seed: '--seed',
  policy: '--policy',
  digitalLayers: '--digital-layers',
  calibrationImages: '--calibration-images',
};

/**
 * Validates a partial configuration (from flags, a JSON file or the API)
 * and fills in the defaults. Errors name the flag and the value.
 */
export function resolveConfig(input: Record<string, unknown>): StoxConfig {
  // A JSON config file may hold anything.
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ConfigError(`configuration: expected an object of settings, got ${show(input)}`);
  for (const key of Object.keys(input)) {
    // Own keys only: `key in FLAGS` would take "toString" or "__proto__" for a setting.
    if (!Object.hasOwn(FLAGS, key)) throw new ConfigError(`unknown setting ${show(key)}; known: ${Object.keys(FLAGS).join(', ')}`);
  }
  const get = (k: keyof StoxConfig) => (input[k] === undefined ? DEFAULTS[k] : input[k]);
  const f = (k: keyof StoxConfig) => FLAGS[k];
  const weightBits = int(f('weightBits'), get('weightBits'), 1, 16);
  const inputBits = int(f('inputBits'), get('inputBits'), 1, 16);
  const c: StoxConfig = {
    converter: oneOf(f('converter'), get('converter'), CONVERTERS),
    rows: int(f('rows'), get('rows'), 1, 4096),
    cols: int(f('cols'), get('cols'), 1, 4096),
    split: oneOf(f('split'), get('split'), ['balanced', 'filled'] as const),
    weightBits,
    weightSliceBits: int(f('weightSliceBits'), input.weightSliceBits ?? weightBits, 1, weightBits),
    inputBits,
    inputStreamBits: int(f('inputStreamBits'), input.inputStreamBits ?? inputBits, 1, inputBits),
    weightQuant: oneOf(f('weightQuant'), get('weightQuant'), ['uniform', 'away'] as const),
    signed: oneOf(f('signed'), get('signed'), ['differential', 'offset'] as const),
    adcRange: oneOf(f('adcRange'), get('adcRange'), ['full', 'calibrated'] as const),
    samples: int(f('samples'), get('samples'), 1, 1 << 20),
    transfer: oneOf(f('transfer'), get('transfer'), ['sigmoid', 'tanh', 'fitted'] as const),
    sensitivity: num(f('sensitivity'), get('sensitivity'), 1e-3, 1e3),
    weightNoise: num(f('weightNoise'), get('weightNoise'), 0, 10),
    readNoise: num(f('readNoise'), get('readNoise'), 0, 1e6),
    mtjOffsetSigma: num(f('mtjOffsetSigma'), get('mtjOffsetSigma'), 0, 10),
    mtjSlopeSigma: num(f('mtjSlopeSigma'), get('mtjSlopeSigma'), 0, 10),
    seed: int(f('seed'), get('seed'), 0, Number.MAX_SAFE_INTEGER),
    policy: oneOf(f('policy'), get('policy'), POLICIES),
    calibrationImages: int(f('calibrationImages'), get('calibrationImages'), 1, 50_000),
  };
  if (input.adcBits !== undefined) c.adcBits = int(f('adcBits'), input.adcBits, 1, 24);
  let fileStreams: { label: string; samples: number[] } | undefined;
  if (typeof input.schedule === 'string' && input.schedule.endsWith('.json')) {
    const file = readScheduleFile(input.schedule);
    if ('samplesPerLayer' in file) c.samplesPerLayer = file.samplesPerLayer;
    else fileStreams = { label: `${f('schedule')} ${input.schedule}: samplesPerStream`, samples: file.samplesPerStream };
  } else if (input.schedule !== undefined) c.schedule = oneOf(f('schedule'), input.schedule, SCHEDULES);
  if (input.digitalLayers !== undefined) {
    const raw = typeof input.digitalLayers === 'string' ? input.digitalLayers.split(',').filter(Boolean) : input.digitalLayers;
    if (!Array.isArray(raw) || raw.some((n) => typeof n !== 'string')) throw new ConfigError(`${f('digitalLayers')}: expected a list of layer names, got ${show(input.digitalLayers)}`);
    c.digitalLayers = raw;
  }
  if (input.samplesPerLayer !== undefined) {
    if (c.samplesPerLayer) throw new ConfigError(`${f('schedule')} ${show(input.schedule)} and ${f('samplesPerLayer')} both set the samples per layer; give one`);
    c.samplesPerLayer = ints(f('samplesPerLayer'), input.samplesPerLayer, 1, 1 << 20);
  }
  if (c.schedule && c.samplesPerLayer) throw new ConfigError(`${f('schedule')} and ${f('samplesPerLayer')} both set the samples per layer; give one`);
  if (input.samplesPerStream !== undefined) {
    const perLayer = input.schedule !== undefined ? 'schedule' : c.samplesPerLayer ? 'samplesPerLayer' : undefined;
    if (perLayer) throw new ConfigError(`${f('samplesPerStream')} and ${f(perLayer)} both set T; give one (T per stream applies to every crossbar layer)`);
  }
  const perStream = input.samplesPerStream !== undefined ? { label: f('samplesPerStream'), samples: input.samplesPerStream } : fileStreams;
  if (perStream !== undefined) {
    c.samplesPerStream = ints(perStream.label, perStream.samples, 1, 1 << 20);
    const streams = Math.ceil(inputBits / c.inputStreamBits!);
    if (c.samplesPerStream.length !== streams) {
      throw new ConfigError(`${perStream.label} ${c.samplesPerStream.join(',')}: ${c.samplesPerStream.length} values, but ${f('inputBits')} ${inputBits} in streams of ${f('inputStreamBits')} ${c.inputStreamBits} make ${streams} streams (one T per stream, least significant first)`);
    }
    if (c.converter !== 'mtj') throw new ConfigError(`${perStream.label} sets MTJ samples; ${f('converter')} is ${c.converter}, give ${f('converter')} mtj`);
  }
  if (c.converter !== 'fp') {
    // crates/core/src/crossbar.rs (Mapping::validate, CrossbarLayer::new) refuses these too, but only
    // after the data is read and the clips calibrated, and without naming the flags.
    if (c.weightQuant === 'away' && c.signed === 'offset') {
      throw new ConfigError(`${f('weightQuant')} away needs the differential mapping (${f('signed')} differential): its levels ±1…±2^(b−1) have no offset-binary code in b bits`);
    }
    const [wsb, isb] = [c.weightSliceBits!, c.inputStreamBits!];
    const bound = c.rows * (2 ** wsb - 1) * (2 ** isb - 1);
    if (bound >= 2 ** 24) {
      throw new ConfigError(`${f('rows')} ${c.rows} × (2^${wsb} − 1) weight-slice levels × (2^${isb} − 1) input-stream levels = ${bound} reaches 2^24; partial sums would not be exact in f32 (lower ${f('rows')}, ${f('weightSliceBits')} or ${f('inputStreamBits')})`);
    }
  }
  return c;
}

/** The keys that set T: one setting, given four ways. */
const SAMPLING: readonly string[] = ['samples', 'schedule', 'samplesPerLayer', 'samplesPerStream'];

/**
 * Explicit settings over a model's embedded ones. T is one setting given
 * four ways (samples, schedule, samplesPerLayer, samplesPerStream): an explicit one replaces
 * all of the model's, so that `--samples 1` on a model trained at a
 * per-layer schedule means T = 1 in every layer (the embedded per-layer T
 * used to win), and `--schedule FILE` is not refused as a second schedule.
 */
export function overEmbedded(embedded: Record<string, unknown>, explicit: Partial<StoxConfig>): Record<string, unknown> {
  const replaces = SAMPLING.some((k) => explicit[k as keyof StoxConfig] !== undefined);
  // T per stream sets MTJ samples only: another converter on a model trained with it does not inherit it (an
  // embedded per-layer T is inert for it; a per-stream T would be refused as needing the mtj converter).
  const otherConverter = explicit.converter !== undefined && explicit.converter !== 'mtj';
  const kept = Object.entries(embedded).filter(([k]) => !(replaces && SAMPLING.includes(k)) && !(otherConverter && k === 'samplesPerStream'));
  return { ...Object.fromEntries(kept), ...explicit };
}

/**
 * The T of a schedule file, as `stoxnet schedule search` writes them: per crossbar layer
 * (`{"samplesPerLayer": [...]}`) or per input stream in every layer (`{"samplesPerStream": [...]}`).
 */
export function readScheduleFile(path: string): { samplesPerLayer: number[] } | { samplesPerStream: number[] } {
  const doc = readJsonFile(path, `${FLAGS.schedule} ${path}: cannot read a schedule file`) as { samplesPerLayer?: unknown; samplesPerStream?: unknown } | null;
  const [layers, streams] = [doc?.samplesPerLayer, doc?.samplesPerStream];
  if (Array.isArray(layers) === Array.isArray(streams)) {
    throw new ConfigError(`${FLAGS.schedule} ${path}: expected a JSON object with one of "samplesPerLayer": [T per crossbar layer] or "samplesPerStream": [T per input stream], got ${show(doc)}`);
  }
  // The stream count is checked against the mapping where the file is resolved.
  if (Array.isArray(streams)) return { samplesPerStream: ints(`${FLAGS.schedule} ${path}: samplesPerStream`, streams, 1, 1 << 20) };
  return { samplesPerLayer: ints(`${FLAGS.schedule} ${path}: samplesPerLayer`, layers, 1, 1 << 20) };
}

/** T per crossbar layer for a named schedule over `n` layers. */
export function scheduleSamples(name: ScheduleName, n: number): number[] {
  const tile = (pattern: number[]) => Array.from({ length: n }, (_, i) => pattern[i % pattern.length]);
  switch (name) {
    case 'first-16-then-4':
      return Array.from({ length: n }, (_, i) => (i === 0 ? 16 : 4));
    case 'rising':
      return tile([1, 1, 2, 4, 8, 16]);
    case 'falling':
      return tile([16, 8, 4, 2, 1, 1]);
  }
}

/** Node indices of the layers that run on crossbars under the policy (or the explicit digital list). */
export function crossbarNodes(net: Network, policy: StoxConfig['policy'], digital?: string[]): number[] {
  const mvm = net.nodes.flatMap((n, i) => (n.op === 'Conv' || n.op === 'Linear' ? [i] : []));
  if (digital) {
    const names = new Set(mvm.map((i) => net.nodes[i].name));
    const unknown = digital.filter((d) => !names.has(d));
    if (unknown.length) throw new ConfigError(`${FLAGS.digitalLayers}: no Conv/Linear layer named ${unknown.map((u) => show(u)).join(', ')}`);
    return mvm.filter((i) => !digital.includes(net.nodes[i].name));
  }
  if (policy === 'all-crossbar') return mvm;
  const firstConv = mvm.find((i) => net.nodes[i].op === 'Conv');
  const lastLinear = [...mvm].reverse().find((i) => net.nodes[i].op === 'Linear');
  return mvm.filter((i) => i !== firstConv && i !== lastLinear);
}

/**
 * Whether value `v` is never negative: a ReLU's, a clip's from 0, a
 * sigmoid's, and whatever only moves, selects, pools or concatenates such
 * values (a conv after ReLU → MaxPool reads non-negative inputs), or adds or
 * multiplies them with each other or with non-negative constants.
 */
function nonNegative(net: Network, v: number, memo = new Map<number, boolean>()): boolean {
  if (v === 0) return false;
  const known = memo.get(v);
  if (known !== undefined) return known;
  const n = net.nodes[v - 1];
  const all = (inputs: number[]) => inputs.every((u) => nonNegative(net, u, memo));
  let result: boolean;
  switch (n.op) {
    case 'Relu':
    case 'Sigmoid':
    case 'HardSigmoid':
      result = true;
      break;
    case 'Hardtanh':
      result = n.min >= 0;
      break;
    case 'MaxPool':
    case 'AvgPool':
    case 'GlobalAvgPool':
    case 'GlobalMaxPool':
    case 'Flatten':
    case 'Slice':
    case 'PadChannels':
    case 'SliceChannels':
    case 'Transpose':
    case 'Concat':
      result = all(n.inputs);
      break;
    case 'Add':
    case 'Mul':
      result = all(n.inputs) && (n.constant?.every((c) => c >= 0) ?? true);
      break;
    default:
      result = false;
  }
  memo.set(v, result);
  return result;
}

/** Whether node i's input can be negative (see `nonNegative`). */
function signedInput(net: Network, i: number): boolean {
  return !nonNegative(net, net.nodes[i].inputs[0]);
}

/** Samples T for each crossbar layer, in network order. */
export function samplesPerLayer(c: StoxConfig, layers: number): number[] {
  if (c.samplesPerLayer) {
    if (c.samplesPerLayer.length !== layers) {
      throw new ConfigError(`${FLAGS.samplesPerLayer}: the model has ${layers} crossbar layers, got ${c.samplesPerLayer.length} values`);
    }
    return c.samplesPerLayer;
  }
  // A resolved configuration names only built-in schedules (files resolve into samplesPerLayer).
  if (c.schedule) return scheduleSamples(c.schedule as ScheduleName, layers);
  return new Array<number>(layers).fill(c.samples);
}

/** One crossbar spec per IR node (null = digital). */
export function layerSpecs(net: Network, c: StoxConfig): (LayerSpecJs | null)[] {
  const converter = c.converter;
  if (converter === 'fp') return net.nodes.map(() => null);
  const nodes = crossbarNodes(net, c.policy, c.digitalLayers);
  const T = samplesPerLayer(c, nodes.length);
  const specs: (LayerSpecJs | null)[] = net.nodes.map(() => null);
  const weightSliceBits = c.weightSliceBits ?? c.weightBits;
  const inputStreamBits = c.inputStreamBits ?? c.inputBits;
  nodes.forEach((i, l) => {
    const inputSigned = signedInput(net, i);
    // A signed code of b bits has the levels ±(2^(b−1) − 1): none but 0 for one bit (the engine would divide by 0).
    if (inputSigned && c.inputBits < 2) {
      throw new ConfigError(`${FLAGS.inputBits} 1: layer '${net.nodes[i].name}' has a signed input, which one bit cannot code (its only level is 0); give ${FLAGS.inputBits} 2 or more, or keep the layer digital (${FLAGS.policy}, ${FLAGS.digitalLayers})`);
    }
    specs[i] = {
      rows: c.rows,
      cols: c.cols,
      split: c.split,
      weightBits: c.weightBits,
      weightSliceBits,
      inputBits: c.inputBits,
      inputStreamBits,
      weightQuant: c.weightQuant,
      signed: c.signed,
      converter,
      adcBits: c.adcBits,
      adcRange: c.adcRange,
      transfer: c.transfer,
      sensitivity: c.sensitivity,
      samples: T[l],
      samplesPerStream: c.samplesPerStream,
      inputSigned,
      cellNoise: c.weightNoise,
      readNoise: c.readNoise,
      mtjOffsetSigma: c.mtjOffsetSigma,
      mtjSlopeSigma: c.mtjSlopeSigma,
    };
  });
  return specs;
}
