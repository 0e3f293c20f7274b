//! PS-quantization-aware training of crossbar layers (docs/method.md §7).
//!
//! Forward is the StoX engine's own (`CrossbarLayer::forward` on the current
//! weights, programmed anew each step, sampling keyed by epoch and image).
//! Backward, per subarray s, column o and pixel p, with x = ps·scale + shift
//! the normalised partial sum and c the converter output:
//!   d acc = d out · out_scale;    d gain = Σ d acc · c;    d offset = Σ d acc
//!   d c = d acc · gain;           d x = d c · c'(x)
//!   d scale = Σ d x · ps;          d shift = Σ d x;         d ps = d x · scale
//! where c'(x) is the straight-through identity inside the clamp range (the
//! authors', `ste`) or the derivative of the expected transfer curve
//! (`expected`); the ideal converter passes d ps = d acc, an ADC too inside
//! its range [lo, lo + step·(2^bits − 1)] and 0 where it clips (STE). Then
//! d W_s = d ps · X_sᵀ and d X_s = W_sᵀ · d ps as for a digital conv, and
//! straight-through estimators reach the float weights (d w = d q / scale)
//! and the inputs (d x_in = d level / step inside [0, clip]).
//!
//! Bit-sliced mappings (S weight slices of b_w bits, J input streams of b_x
//! bits) convert each (slice i, stream j) partial sum on its own and add it
//! shifted by f_ij = 2^(i·b_w + j·b_x); above, d acc becomes d out ·
//! out_scale · f_ij per conversion. The digits are step functions of the
//! levels, so a surrogate stands for their derivative: each of the S weight
//! digits carries an equal share of the weight level (∂d_i/∂w = 1 / (S ·
//! 2^(i·b_w))), and each of the J input digits of the input level
//! (∂e_j/∂x = 1 / (J · 2^(j·b_x))). Then
//!   d W_s = Σ_j G_sj · E_jᵀ,  G_sj = Σ_i d ps_sij / (S · 2^(i·b_w))
//!   d X_s = Σ_i C_siᵀ · H_si, H_si = Σ_j d ps_sij / (J · 2^(j·b_x))
//! with E_j the stream-j digits' unfold and C_si the slice-i cells: every
//! conversion's own slope meets its own digits, and through converters
//! that pass partial sums unchanged the gradients are those of the unsliced
//! layer (Σ_i 2^(i·b_w)·C_si = W_s, Σ_j 2^(j·b_x)·E_j = X).
//!
//! The input clip can be learned too (`with_learned_clip`). The gradient is
//! taken in float space, q = step·level with step = clip/levels:
//! ∂q/∂clip = (level − x/step)/levels inside the range (LSQ, Esser et al.
//! 2020) and ±1 where x is clipped (PACT, Choi et al. 2018). For that to be
//! the whole gradient, a normalising converter's scale follows the clip
//! and its readout the inverse (scale = γn·s0·r, gain = γr·g0/r,
//! offset = (h0 + βr·g0)/r with r = clip/clip0): it then normalises Σ w·q,
//! and its output, which the layer scales by the step, does not move with
//! the clip. Other converters' outputs are Σ w·q already.

use crate::bail;
use crate::buffers::Buf;
use crate::config::{ColumnParams, LayerConfig};
use crate::converter::{Column, Converter};
use crate::cpu::{self, multiversion};
use crate::crossbar::CrossbarLayer;
use crate::error::Result;
use crate::gemm::transpose;
use crate::graph::{Node, Op};
use crate::layers::Unfolded;
use crate::pmath;
use crate::quant::InputQuant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtjGrad {
    Ste,
    Expected,
}

/// A crossbar layer under training. Its normalisation and readout are
/// learned in a normalised parameterisation, like a BatchNorm affine on
/// top of the calibrated statistics (raw partial-sum units would make SGD
/// steps hundreds of times too large for the scale and too small for the
/// gain):
///   scale = γn·s0,  shift = βn + γn·t0,  gain = γr·g0,  offset = h0 + βr·g0
/// with (s0, t0, g0, h0) the calibrated values and (γn, βn, γr, βr) learned,
/// starting at (1, 0, 1, 0). `config.params` always holds the composition.
#[derive(Debug, Clone)]
pub struct QatLayer {
    pub config: LayerConfig,
    pub grad: MtjGrad,
    base: [Vec<f32>; 4],
    /// γn, βn, γr, βr per column.
    pub learned: [Vec<f32>; 4],
    pub velocity: [Vec<f32>; 4],
    pub clip: Option<LearnedClip>,
}

/// A learned input clip, from its calibrated value `base`.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedClip {
    pub base: f32,
    pub value: f32,
    pub velocity: f32,
    /// LSQ's gradient scale 1/√(features · levels): without it the clip,
    /// whose gradient sums over every input of the layer, would take steps
    /// hundreds of times larger than the weights'.
    pub grad_scale: f32,
}

/// Raw gradients of a crossbar layer's learned state: d scale, d shift,
/// d gain, d offset per column (empty unless the converter normalises), and
/// d clip.
#[derive(Debug, Clone, PartialEq)]
pub struct XbarGrads {
    pub params: [Vec<f32>; 4],
    pub clip: f32,
}

impl QatLayer {
    pub fn new(node: &Node, config: LayerConfig, grad: MtjGrad) -> Result<QatLayer> {
        let at = format!("layer '{}'", node.name);
        if !matches!(node.op, Op::Conv(_) | Op::Linear(_)) {
            bail!("{at}: PS-QAT trains crossbar Conv and Linear layers (got {})", node.op.kind());
        }
        let p = &config.params;
        if config.converter.normalises() && (p.norm_scale.is_empty() || p.readout_gain.is_empty()) {
            bail!("{at}: PS-QAT of a normalising converter starts from calibrated normalisation and readout; none given");
        }
        let base = [p.norm_scale.clone(), p.norm_shift.clone(), p.readout_gain.clone(), p.readout_offset.clone()];
        let n = base[0].len();
        let learned = [vec![1f32; n], vec![0f32; n], vec![1f32; n], vec![0f32; n]];
        let velocity = std::array::from_fn(|_| vec![0f32; n]);
        Ok(QatLayer { config, grad, base, learned, velocity, clip: None })
    }

    /// Learns the input clip too; `features`: the layer's inputs per image.
    pub fn with_learned_clip(mut self, features: usize) -> QatLayer {
        let levels = crate::quant::InputQuant::new(self.config.mapping.input_bits, self.config.input_clip, self.config.input_signed).levels;
        let c = self.config.input_clip;
        self.clip = Some(LearnedClip { base: c, value: c, velocity: 0.0, grad_scale: 1.0 / (features as f32 * levels).sqrt() });
        self
    }

    /// clip / calibrated clip: the factor a normalising scale follows.
    fn clip_ratio(&self) -> f32 {
        self.clip.as_ref().map_or(1.0, |c| c.value / c.base)
    }

    /// Recomputes `config.params` from the calibrated base and the learned values.
    pub fn compose(&mut self) {
        let r = self.clip_ratio();
        if let Some(c) = &self.clip {
            self.config.input_clip = c.value;
        }
        let [s0, t0, g0, h0] = &self.base;
        let [gn, bn, gr, br] = &self.learned;
        let ColumnParams { norm_scale, norm_shift, readout_gain, readout_offset, .. } = &mut self.config.params;
        for i in 0..s0.len() {
            norm_scale[i] = gn[i] * s0[i] * r;
            norm_shift[i] = bn[i] + gn[i] * t0[i];
            readout_gain[i] = gr[i] * g0[i] / r;
            readout_offset[i] = (h0[i] + br[i] * g0[i]) / r;
        }
    }

    /// Turns gradients of (scale, shift, gain, offset) into gradients of the
    /// learned (γn, βn, γr, βr).
    pub fn learned_grads(&self, raw: &XbarGrads) -> [Vec<f32>; 4] {
        let [s0, t0, g0, _] = &self.base;
        let [ds, dt, dg, dh] = &raw.params;
        let n = s0.len();
        let r = self.clip_ratio();
        [(0..n).map(|i| ds[i] * s0[i] * r + dt[i] * t0[i]).collect(), dt.clone(), (0..n).map(|i| dg[i] * g0[i] / r).collect(), (0..n).map(|i| dh[i] * g0[i] / r).collect()]
    }

    /// The surrogate derivative of the converter output with respect to x
    /// (normalising converters only), resolved once per layer.
    fn surrogate(&self) -> Surrogate {
        match (self.config.converter, self.grad) {
            (Converter::Mtj { curve, .. }, MtjGrad::Ste) => Surrogate::Window { clamp: curve.clamp },
            (Converter::Mtj { curve, .. }, MtjGrad::Expected) => Surrogate::Curve { clamp: curve.clamp, slope: curve.slope, center: curve.center },
            _ => Surrogate::Window { clamp: 1.0 },
        }
    }
}

/// d(converter output)/dx inside the backward pass's pixel loop.
#[derive(Clone, Copy)]
enum Surrogate {
    /// Straight through: 1 for |x| < clamp, else 0.
    Window { clamp: f32 },
    /// The expected MTJ curve's derivative 2a·s·(1 − s), s = σ(a(x − c)), for |x| < clamp.
    Curve { clamp: f32, slope: f32, center: f32 },
}

/// Gradients of one crossbar conv over one image, in buffers reused from
/// image to image (every value is overwritten, so none is cleared).
pub struct ImageGrads {
    /// d ps of every conversion (`columns × p`, canonical column order).
    pub dps: Buf,
    /// `k × out` (transposed), with respect to the quantised weight levels.
    pub dw: Vec<f32>,
    pub db: Vec<f32>,
    /// Per column: d scale, d shift, d gain, d offset.
    pub dparams: [Vec<f32>; 4],
    /// Bit-sliced mappings only (empty otherwise): H_si of the module doc,
    /// slice-major, every subarray's `out × p` per slice; G_sj of one
    /// (subarray, stream); the weight gradient of streams after the first.
    by_slice: Buf,
    by_stream: Buf,
    dw_stream: Vec<f32>,
    /// Scratch: one subarray's d ps transposed; one column's d acc and d x
    /// per pixel (`pixel_grads`).
    dps_t: Buf,
    pixel: [Buf; 2],
}

impl ImageGrads {
    pub fn new(qat: &QatLayer, layer: &CrossbarLayer, p: usize, has_bias: bool) -> ImageGrads {
        let (out, k, cols) = (layer.out, layer.k, layer.columns.len());
        let m = &layer.config.mapping;
        let sliced = m.slices() * m.streams() > 1;
        ImageGrads {
            dps: Buf::for_overwrite(cols * p),
            dw: vec![0f32; out * k],
            db: vec![0f32; if has_bias { out } else { 0 }],
            dparams: std::array::from_fn(|_| vec![0f32; if qat.config.converter.normalises() { cols } else { 0 }]),
            by_slice: Buf::for_overwrite(if sliced { cols / m.streams() * p } else { 0 }),
            by_stream: Buf::for_overwrite(if sliced { out * p } else { 0 }),
            dw_stream: vec![0f32; if m.streams() > 1 { out * k } else { 0 }],
            dps_t: Buf::for_overwrite(p * out),
            pixel: [Buf::for_overwrite(p), Buf::for_overwrite(p)],
        }
    }

    /// What the input gradient multiplies with slice `i`'s transposed cells
    /// (of `slices`): every subarray's `out × p`, d ps itself without bit
    /// slicing.
    pub fn input_source(&self, i: usize, slices: usize) -> &[f32] {
        if self.by_slice.is_empty() {
            return &self.dps;
        }
        let per = self.by_slice.len() / slices;
        &self.by_slice[i * per..(i + 1) * per]
    }
}

/// The programmed cells of each weight slice transposed, `k × out` each:
/// rows `k0..k1` those of the subarray over them, as the input gradient
/// multiplies with them (once per step, not per image).
pub fn transposed_cells(layer: &CrossbarLayer) -> Vec<Vec<f32>> {
    let out = layer.out;
    (0..layer.config.mapping.slices())
        .map(|i| {
            let mut wt = vec![0f32; layer.k * out];
            for (s, &(k0, k1)) in layer.ranges.iter().enumerate() {
                let (w, ks) = (layer.cells(i, s), k1 - k0);
                for o in 0..out {
                    for r in 0..ks {
                        wt[(k0 + r) * out + o] = w[o * ks + r];
                    }
                }
            }
            wt
        })
        .collect()
}

const L: usize = 8;

/// Backward of one image through `layer` (programmed from `qat.config`) as
/// far as the input gradient's sources (`ImageGrads::input_source`) and the
/// weight gradient, given the unfold of the input levels `cols` (one; with J
/// input streams, the unfold of each stream's digits, J), the
/// recorded partial sums and converter outputs (`columns × p`) and `dy`
/// (`out × p`). Sums over pixels run in eight lanes (lane l
/// takes pixels ≡ l mod 8, lanes added in order), so they vectorise and
/// stay independent of threads. Runs in the clone of `cpu::level()`: its
/// per-pixel loops are a fifth of a PS-QAT step, and the baseline build
/// vectorises them four floats wide at best.
#[allow(clippy::too_many_arguments)]
pub fn backward_image(qat: &QatLayer, layer: &CrossbarLayer, cols: &[Unfolded], ps: &[f32], c: &[f32], dy: &[f32], p: usize, g: &mut ImageGrads) {
    backward_image_at(cpu::level(), qat, layer, cols, ps, c, dy, p, g)
}

multiversion! {
    fn backward_image_at(qat: &QatLayer, layer: &CrossbarLayer, cols: &[Unfolded], ps: &[f32], c: &[f32], dy: &[f32], p: usize, g: &mut ImageGrads) {
        _I => backward_image_in(qat, layer, cols, ps, c, dy, p, g)
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_image_in(qat: &QatLayer, layer: &CrossbarLayer, cols: &[Unfolded], ps: &[f32], c: &[f32], dy: &[f32], p: usize, g: &mut ImageGrads) {
    let out = layer.out;
    let m = &layer.config.mapping;
    let (slices, streams) = (m.slices(), m.streams());
    let subarrays = layer.ranges.len();
    for (o, db) in g.db.iter_mut().enumerate() {
        *db = dy[o * p..(o + 1) * p].iter().sum();
    }
    let normalises = qat.config.converter.normalises();
    let surrogate = qat.surrogate();
    for (s, &(k0, k1)) in layer.ranges.iter().enumerate() {
        let ks = k1 - k0;
        for i in 0..slices {
            for j in 0..streams {
                let base = ((s * slices + i) * streams + j) * out;
                for o in 0..out {
                    let idx = base + o;
                    let col = &layer.columns[idx];
                    let scale = layer.out_scale[o] * m.shift(i, j);
                    let (dyr, dpsr) = (&dy[o * p..(o + 1) * p], &mut g.dps[idx * p..(idx + 1) * p]);
                    let (psr, cr) = (&ps[idx * p..(idx + 1) * p], &c[idx * p..(idx + 1) * p]);
                    if !normalises {
                        match qat.config.converter {
                            // Straight through inside the ADC's range, zero where it clips
                            // (the code saturates: the output no longer follows ps).
                            Converter::Adc { bits } => {
                                let (lo, hi) = (col.lo, col.lo + col.step * ((1u64 << bits) - 1) as f32);
                                dpsr.iter_mut().zip(dyr).zip(psr).for_each(|((d, &g), &v)| *d = if (lo..=hi).contains(&v) { g * scale } else { 0.0 });
                            }
                            _ => dpsr.iter_mut().zip(dyr).for_each(|(d, &g)| *d = g * scale),
                        }
                        continue;
                    }
                    // (A NaN x, from a diverged normalisation, passes no gradient.)
                    let [t0, t1] = &mut g.pixel;
                    let outs = (dpsr, &mut t0[..], &mut t1[..]);
                    let [dg, dh, ds, dt] = match surrogate {
                        Surrogate::Window { clamp } => pixel_grads(dyr, psr, cr, scale, col, outs, |x| if x.abs() < clamp { 1.0 } else { 0.0 }),
                        Surrogate::Curve { clamp, slope, center } => pixel_grads(dyr, psr, cr, scale, col, outs, |x| {
                            if x.abs() < clamp {
                                let s = pmath::sigmoid(slope * (x - center));
                                2.0 * slope * s * (1.0 - s)
                            } else {
                                0.0
                            }
                        }),
                    };
                    g.dparams[0][idx] = ds;
                    g.dparams[1][idx] = dt;
                    g.dparams[2][idx] = dg;
                    g.dparams[3][idx] = dh;
                }
            }
        }
        let block = out * p;
        // Conversion (i, j) of this subarray: its d ps, `out × p`.
        let at = |i: usize, j: usize| ((s * slices + i) * streams + j) * block;
        for j in 0..streams {
            // dW_sᵀ = Σ_j E_j,s · G_sjᵀ: E_j,s is the row range k0..k1 of
            // stream j's unfold, and the result the same row range of dWᵀ.
            let gsj: &[f32] = if g.by_stream.is_empty() {
                &g.dps[at(0, j)..at(0, j) + block]
            } else {
                let (dps, to) = (&g.dps, &mut g.by_stream[..]);
                for i in 0..slices {
                    combine(to, &dps[at(i, j)..at(i, j) + block], 1.0 / (slices as f32 * m.shift(i, 0)), i == 0);
                }
                &g.by_stream
            };
            transpose(gsj, out, p, &mut g.dps_t);
            if j == 0 {
                cols[j].product(k0..k1, &g.dps_t, &mut g.dw[k0 * out..k1 * out], out);
            } else {
                cols[j].product(k0..k1, &g.dps_t, &mut g.dw_stream[..ks * out], out);
                combine(&mut g.dw[k0 * out..k1 * out], &g.dw_stream[..ks * out], 1.0, false);
            }
        }
        if !g.by_slice.is_empty() {
            // H_si = Σ_j d ps_sij / (J · 2^(j·b_x)), at subarray s of slice i's source.
            for i in 0..slices {
                let to = (i * subarrays + s) * block;
                for j in 0..streams {
                    combine(&mut g.by_slice[to..to + block], &g.dps[at(i, j)..at(i, j) + block], 1.0 / (streams as f32 * m.shift(0, j)), j == 0);
                }
            }
        }
    }
}

/// `to = w · from` (`first`) or `to += w · from`: one term of a sum (over
/// conversions, or the streams' weight gradients), in the order of the terms.
#[inline(always)]
fn combine(to: &mut [f32], from: &[f32], w: f32, first: bool) {
    if first {
        to.iter_mut().zip(from).for_each(|(t, &f)| *t = f * w);
    } else {
        to.iter_mut().zip(from).for_each(|(t, &f)| *t += f * w);
    }
}

/// The layer's input levels of `x` (before the unfold), in the clone of
/// `cpu::level()`: there `floor` is one instruction, in the baseline build
/// a libm call per value.
pub fn input_levels(input: &InputQuant, x: &[f32], levels: &mut [f32]) {
    input_levels_at(cpu::level(), input, x, levels)
}

multiversion! {
    fn input_levels_at(input: &InputQuant, x: &[f32], levels: &mut [f32]) {
        I => levels.iter_mut().zip(x).for_each(|(l, &v)| *l = input.level_in::<I>(v))
    }
}

/// Straight through the input quantiser: d x = d level / step inside the
/// clip range `range`, 0 outside. Returns d clip for q = step·level (LSQ
/// inside, PACT at the clip; see the module doc), summed in the eight lanes
/// of `lane_sum` (one chain of dependent additions over every input was
/// a twentieth of a PS-QAT step). `dlevels` is consumed: it holds each
/// input's d clip term afterwards.
pub fn input_ste(input: &InputQuant, range: (f32, f32), x: &[f32], levels: &[f32], dlevels: &mut [f32], dx: &mut [f32]) -> f32 {
    input_ste_at(cpu::level(), input, range, x, levels, dlevels, dx)
}

multiversion! {
    fn input_ste_at(input: &InputQuant, range: (f32, f32), x: &[f32], levels: &[f32], dlevels: &mut [f32], dx: &mut [f32]) -> f32 {
        _I => input_ste_in(input, range, x, levels, dlevels, dx)
    }
}

#[inline(always)]
fn input_ste_in(input: &InputQuant, (lo, hi): (f32, f32), x: &[f32], levels: &[f32], dlevels: &mut [f32], dx: &mut [f32]) -> f32 {
    let below = if input.signed { -1.0 } else { 0.0 };
    let inv = 1.0 / input.step;
    // Both sides computed, then picked by bit masks: with plain `if`s the
    // compiler sank the division into a branch and the loop stayed scalar.
    let pick = |c: bool, a: f32, b: f32| {
        let m = (c as u32).wrapping_neg();
        f32::from_bits(a.to_bits() & m | b.to_bits() & !m)
    };
    // One elementwise pass (it vectorises), then the lanes' sums.
    for (((d, dl), &v), &level) in dx.iter_mut().zip(dlevels.iter_mut()).zip(x).zip(levels) {
        let dq = *dl * inv;
        let lsq = (level - v * input.inv_step) / input.levels;
        let (over, under) = (v >= hi, v <= lo);
        *d = pick(over | under, 0.0, dq);
        *dl = dq * pick(over, 1.0, pick(under, below, lsq));
    }
    lane_sum(dlevels, dlevels, |t, _| t)
}

/// One column's backward over its pixels: writes d ps and returns the sums of
/// d gain, d offset, d scale and d shift. `derivative` is the surrogate, as a
/// closure of its own kind so that the loop carries no branch on it. One
/// elementwise pass (it vectorises) writes d ps and keeps each pixel's d acc
/// and d x in the other two outputs,
/// then `lane_sum` adds the terms: with the four sums in the pixel loop the
/// compiler kept it scalar.
#[inline(always)]
fn pixel_grads(dy: &[f32], ps: &[f32], c: &[f32], scale: f32, col: &Column, (dps, dacc, dx): (&mut [f32], &mut [f32], &mut [f32]), derivative: impl Fn(f32) -> f32) -> [f32; 4] {
    let (dacc, dx) = (&mut dacc[..dy.len()], &mut dx[..dy.len()]);
    for ((((a, d), out), &g), &v) in dacc.iter_mut().zip(dx.iter_mut()).zip(dps.iter_mut()).zip(dy).zip(ps) {
        *a = g * scale;
        let x = v * col.scale + col.shift;
        *d = *a * col.gain * derivative(x);
        *out = *d * col.scale;
    }
    [lane_sum(dacc, c, |a, c| a * c), lane_sum(dacc, dacc, |a, _| a), lane_sum(dx, ps, |d, v| d * v), lane_sum(dx, dx, |d, _| d)]
}

/// Σ f(a, b) over pairs in eight lanes (lane l takes the pairs ≡ l mod 8,
/// lanes added in order), so that it vectorises and stays independent of
/// threads.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            lanes[l] += f(x[l], y[l]);
        }
    }
    for (lane, (&x, &y)) in lanes.iter_mut().zip(ra.iter().zip(rb)) {
        *lane += f(x, y);
    }
    lanes.iter().sum()
}
