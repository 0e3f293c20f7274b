// A conv/linear layer on crossbar subarrays, as crates/core/src/crossbar.rs,
// converter.rs and mtj.rs — written to be read as the specification.
//
// Per image: quantise the inputs to integer levels; split the levels into
// input streams (bit groups, LSB first); unfold each stream; for every
// subarray s (a range of rows), weight slice i and stream j compute the
// partial sums PS[o][p] = Σ_k W_i[o][k]·X_j[k][p] over the subarray's rows;
// convert each PS on its own; shift-and-add the converted values with
// 2^(i·sliceBits + j·streamBits); finally rescale digitally per output.
import type { ColumnParamsJs, LayerSpecJs, ResolvedJs } from '../native-binding.js';
import { fmaf32 } from './fma.js';
import { gaussian, sigmoid } from './pmath.js';
import { Domain, Lanes, LANES, Stream, unit24 } from './rng.js';
import { InputQuant, quantizeWeights } from './quant.js';

const f = Math.fround;
const clamp = (x: number, lo: number, hi: number) => (x < lo ? lo : x > hi ? hi : x);

/** Row ranges of the subarrays: balanced = torch.chunk into ceil(K/rows) parts; filled = full parts + rest. */
/**
 * Weight slices of a mapping: the stored magnitudes cut into slices
 * (crossbar.rs `Mapping::magnitude_bits`). Symmetric uniform levels reach
 * ±(2^(b−1) − 1), b − 1 bits (one for ±1); 'away' levels and offset-binary
 * codes need b bits.
 */
export function weightSlices(s: Pick<LayerSpecJs, 'weightBits' | 'weightSliceBits' | 'weightQuant' | 'signed'>): number {
  const magnitude = s.signed === 'differential' && s.weightQuant === 'uniform' ? Math.max(s.weightBits - 1, 1) : s.weightBits;
  return Math.ceil(magnitude / s.weightSliceBits);
}

export function splitRows(k: number, rows: number, split: string): [number, number][] {
  const chunk = split === 'balanced' ? Math.ceil(k / Math.ceil(k / rows)) : rows;
  const out: [number, number][] = [];
  for (let k0 = 0; k0 < k; k0 += chunk) out.push([k0, Math.min(k0 + chunk, k)]);
  return out;
}

/** Digit `index` (of `bits` bits, LSB first) of an integer level, carrying its sign. */
function digit(level: number, index: number, bits: number): number {
  const d = Math.floor(Math.abs(level) / 2 ** (index * bits)) % 2 ** bits;
  return level < 0 ? -d : d;
}

function normal(r: Stream): number {
  const u1 = f(1 - unit24(r.nextU32()));
  const u2 = unit24(r.nextU32());
  return gaussian(u1, u2);
}

interface Curve {
  slope: number;
  center: number;
  clamp: number;
}

function curveOf(spec: LayerSpecJs): Curve {
  const a = f(spec.sensitivity ?? 4);
  switch (spec.transfer ?? 'sigmoid') {
    case 'tanh':
      return { slope: f(2 * a), center: 0, clamp: 1 }; // (1 + tanh(a·x))/2 = sigmoid(2a·x)
    case 'fitted':
      return { slope: f(3.598), center: f(0.0082), clamp: f(0.8) };
    default:
      return { slope: a, center: 0, clamp: 1 };
  }
}

interface Device {
  slope: number;
  offset: number;
}

/** P(+1) · 2^24 for normalised x: a sample is +1 when (u >> 8) < threshold. */
function threshold(c: Curve, d: Device, x: number): number {
  x = clamp(x, -c.clamp, c.clamp);
  return f(sigmoid(f(f(c.slope * d.slope) * f(f(x - c.center) - d.offset))) * 16777216);
}

interface Column {
  lo: number;
  step: number;
  scale: number;
  shift: number;
  gain: number;
  offset: number;
  device: Device;
}

export class CrossbarLayer {
  readonly ranges: [number, number][];
  readonly slices: number;
  readonly streams: number;
  /** Effective cell weights per (slice, subarray): out × rows. */
  private weights: Float32Array[] = [];
  private columns: Column[] = [];
  private outScale: Float32Array;
  private input: InputQuant;
  private curve: Curve;
  private adcBits: number;

  constructor(
    readonly layer: number,
    weight: Float32Array,
    private bias: Float32Array | undefined,
    readonly out: number,
    readonly spec: LayerSpecJs,
    resolved: ResolvedJs,
    seed: number,
  ) {
    const k = weight.length / out;
    this.ranges = splitRows(k, spec.rows, spec.split);
    this.slices = weightSlices(spec);
    this.streams = Math.ceil(spec.inputBits / spec.inputStreamBits);
    this.curve = curveOf(spec);
    // sparse-adc takes its bits from calibration.
    this.adcBits = resolved.adcBits ?? 0;
    const { q, scale } = quantizeWeights(weight, out, spec.weightBits, spec.weightQuant as 'uniform' | 'away');
    const half = 2 ** (spec.weightBits - 1);
    const sb = spec.weightSliceBits;
    const sigma = f(spec.cellNoise);
    // Programming variation: one stream per layer, cells in canonical order.
    const cells = new Stream(seed, [Domain.CellVariation, layer]);
    const maxDigit = new Array<number>(this.slices).fill(0);
    for (let i = 0; i < this.slices; i++) {
      for (const [k0, k1] of this.ranges) {
        const rows = k1 - k0;
        const w = new Float32Array(out * rows);
        const r0 = digit(half, i, sb);
        // Offset mapping: a reference column holding the offset's digit on every row.
        const reference =
          spec.signed === 'offset' ? Array.from({ length: rows }, () => (sigma > 0 && r0 !== 0 ? f(r0 * f(1 + f(sigma * normal(cells)))) : r0)) : [];
        for (let o = 0; o < out; o++) {
          for (let r = 0; r < rows; r++) {
            const level = q[o * k + k0 + r];
            if (spec.signed === 'differential') {
              // Positive and negative columns; their currents subtract before the converter.
              const d = digit(level, i, sb);
              maxDigit[i] = Math.max(maxDigit[i], Math.abs(d));
              if (sigma > 0) {
                const gp = normal(cells);
                const gn = normal(cells);
                w[o * rows + r] = f(f(Math.max(d, 0) * f(1 + f(sigma * gp))) - f(Math.max(-d, 0) * f(1 + f(sigma * gn))));
              } else {
                w[o * rows + r] = d;
              }
            } else {
              const d = digit(level + half, i, sb);
              const cell = sigma > 0 ? f(d * f(1 + f(sigma * normal(cells)))) : d;
              maxDigit[i] = Math.max(maxDigit[i], Math.abs(d - r0));
              w[o * rows + r] = f(cell - reference[r]);
            }
          }
        }
        this.weights.push(w);
      }
    }
    this.columns = this.makeColumns(resolved.params, maxDigit, seed);
    this.input = new InputQuant(spec.inputBits, resolved.inputClip, spec.inputSigned);
    this.outScale = scale.map((s) => f(s * this.input.step));
  }

  private makeColumns(p: ColumnParamsJs, maxDigit: number[], seed: number): Column[] {
    const spec = this.spec;
    const xMax = 2 ** spec.inputStreamBits - 1;
    // One MTJ per (subarray, slice, column), shared by the input streams.
    const devices: Device[] = [];
    const spread = spec.mtjOffsetSigma > 0 || spec.mtjSlopeSigma > 0;
    const ds = new Stream(seed, [Domain.MtjDevice, this.layer]);
    for (let n = 0; n < this.ranges.length * this.slices * this.out; n++) {
      if (!spread) devices.push({ slope: 1, offset: 0 });
      else {
        const a = normal(ds);
        const b = normal(ds);
        devices.push({ slope: f(1 + f(f(spec.mtjSlopeSigma) * a)), offset: f(f(spec.mtjOffsetSigma) * b) });
      }
    }
    const get = (v: Float32Array | undefined | null, idx: number, dflt: number) => (v ? v[idx] : dflt);
    const columns: Column[] = [];
    this.ranges.forEach(([k0, k1], s) => {
      for (let i = 0; i < this.slices; i++)
        for (let j = 0; j < this.streams; j++) {
          // Full ADC range: every sum the programmed digits can produce.
          const bound = f(f((k1 - k0) * maxDigit[i]) * xMax);
          const step = spec.converter === 'adc' || spec.converter === 'sparse-adc' ? Math.max(f(f(2 * bound) / (2 ** this.adcBits - 1)), 1) : 1;
          for (let o = 0; o < this.out; o++) {
            const idx = ((s * this.slices + i) * this.streams + j) * this.out + o;
            columns.push({
              lo: get(p.adcLo, idx, -bound),
              step: get(p.adcStep, idx, step),
              scale: get(p.normScale, idx, 1),
              shift: get(p.normShift, idx, 0),
              gain: get(p.readoutGain, idx, 1),
              offset: get(p.readoutOffset, idx, 0),
              device: devices[(s * this.slices + i) * this.out + o],
            });
          }
        }
    });
    return columns;
  }

  /**
   * Forward pass of image `image`. `unfold(plane)` returns the k × p matrix
   * of one stream's digit plane.
   */
  forward(x: Float32Array, p: number, unfold: (plane: Float32Array) => Float32Array, image: number, seed: number): Float32Array {
    const spec = this.spec;
    const levels = x.map((v) => this.input.level(v));
    const cols: Float32Array[] = [];
    for (let j = 0; j < this.streams; j++) cols.push(unfold(levels.map((l) => digit(l, j, spec.inputStreamBits))));
    const acc = new Float32Array(this.out * p);
    const samples = new Lanes(seed, Domain.MtjSample, this.layer, image);
    const read = spec.readNoise > 0 ? new Lanes(seed, Domain.ReadNoise, this.layer, image) : undefined;
    const sigmaRead = f(spec.readNoise);
    const readNoise = (lane: number) => {
      if (!read) return 0;
      const u1 = f(1 - unit24(read.next(lane)));
      const u2 = unit24(read.next(lane));
      return f(sigmaRead * gaussian(u1, u2));
    };
    // T per input stream (crossbar.rs `LayerConfig::stream_converter`), else the layer's T.
    const samplesOf = (j: number) => spec.samplesPerStream?.[j] ?? spec.samples ?? 1;
    const top = 2 ** this.adcBits - 1;
    const kind = spec.converter === 'sparse-adc' ? 'adc' : spec.converter;
    this.ranges.forEach(([k0, k1], s) => {
      const rows = k1 - k0;
      for (let i = 0; i < this.slices; i++) {
        const w = this.weights[i * this.ranges.length + s];
        for (let j = 0; j < this.streams; j++) {
          const factor = 2 ** (i * spec.weightSliceBits + j * spec.inputStreamBits);
          const T = samplesOf(j);
          const tInv = f(1 / T);
          const X = cols[j];
          for (let o = 0; o < this.out; o++) {
            const col = this.columns[((s * this.slices + i) * this.streams + j) * this.out + o];
            for (let px = 0; px < p; px++) {
              // The partial sum: ascending rows of this subarray, from +0, one fused
              // multiply-add each (gemm.rs; zero terms skipped as in layers.ts gemm).
              let ps = 0;
              for (let r = 0; r < rows; r++) {
                const xv = X[(k0 + r) * p + px];
                const wv = w[o * rows + r];
                if (xv !== 0 && wv !== 0) ps = fmaf32(wv, xv, ps);
                else if (ps === 0) ps += wv * xv;
              }
              const lane = px % LANES;
              let value: number;
              if (kind === 'ideal') {
                value = read ? f(ps + readNoise(lane)) : ps;
              } else if (kind === 'adc') {
                const v = read ? f(ps + readNoise(lane)) : ps;
                const code = clamp(Math.floor(f(f(f(v - col.lo) / col.step) + 0.5)), 0, top);
                value = f(col.lo + f(code * col.step));
              } else if (kind === 'sense-amp') {
                const v = read ? f(ps + readNoise(lane)) : ps;
                const c = f(f(v * col.scale) + col.shift) >= 0 ? 1 : -1;
                value = f(f(col.gain * c) + col.offset);
              } else {
                // MTJ: T write/read/reset cycles, each a ±1 sample; read noise enters every cycle.
                let count = 0;
                let thr = threshold(this.curve, col.device, f(f(ps * col.scale) + col.shift));
                for (let t = 0; t < T; t++) {
                  if (read) thr = threshold(this.curve, col.device, f(f(f(ps + readNoise(lane)) * col.scale) + col.shift));
                  count = f(count + ((samples.next(lane) >>> 8) < thr ? 1 : -1));
                }
                value = f(f(col.gain * f(count * tInv)) + col.offset);
              }
              acc[o * p + px] = f(acc[o * p + px] + f(value * factor));
            }
          }
        }
      }
    });
    for (let o = 0; o < this.out; o++) {
      const b = this.bias ? this.bias[o] : 0;
      for (let px = 0; px < p; px++) acc[o * p + px] = f(f(acc[o * p + px] * this.outScale[o]) + b);
    }
    return acc;
  }
}
