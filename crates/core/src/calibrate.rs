//! Turns a layer policy into programmed crossbar layers: everything a layer
//! needs but the user did not give is calibrated on training images.
//!
//! 1. Input clip (unsigned [0, clip] or signed [−clip, clip]): the clip that
//!    minimises the quantisation MSE of the layer's FP32 inputs (histogram
//!    of 2048 bins, 200 candidate clips).
//! 2. Partial-sum statistics per column, from the crossbar forward pass with
//!    ideal converters: they set the `calibrated` ADC range (observed min and
//!    max per layer, slice and stream), the `sparse-adc` bits per layer
//!    (the fewest bits that cover the observed integer range of the whole
//!    layer, lossless on the calibration images, at most the lossless bits
//!    of the mapping), and the MTJ / sense-amp normalisation
//!    x = (ps − mean)/std per column.
//! 3. The readout of normalising converters: `gain·c + offset` fitted by least
//!    squares of ps on the converter's expected output E[c | ps] per column.
//!
//! All sums run through `engine::ordered_fold`, so calibration is
//! deterministic for any thread count.

use crate::bail;
use crate::config::{ColumnParams, ConverterSpec, LayerConfig, LayerSpec, Noise};
use crate::converter::Converter;
use crate::counts::OpCounts;
use crate::cpu::{self, multiversion};
use crate::crossbar::CrossbarLayer;
use crate::engine::{ordered_fold, Cancel, Crossbars};
use crate::error::Result;
use crate::graph::{Network, Op};
use crate::mtj::{Device, Thresholds};
use crate::quant;

/// What calibration decided, per crossbar layer, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub input_clip: f32,
    pub converter: Converter,
    pub params: ColumnParams,
}

const BINS: usize = 2048;
const CANDIDATES: usize = 200;

fn weights(op: &Op) -> (&[f32], Option<&[f32]>, usize) {
    match op {
        Op::Conv(c) => (&c.weight, c.bias.as_deref(), c.out_channels),
        Op::Linear(l) => (&l.weight, l.bias.as_deref(), l.out_features),
        _ => unreachable!("only Conv and Linear map onto crossbars"),
    }
}

/// MSE-optimal clip for `levels` uniform steps from a histogram of |x|.
fn best_clip(hist: &[u64], max: f64, levels: f64) -> f64 {
    let width = max / BINS as f64;
    let mut best = (f64::INFINITY, max);
    for c in 1..=CANDIDATES {
        let clip = max * c as f64 / CANDIDATES as f64;
        let step = clip / levels;
        let mut mse = 0.0;
        for (b, &n) in hist.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let v = (b as f64 + 0.5) * width;
            let q = (v / step).round().min(levels) * step;
            mse += n as f64 * (v - q) * (v - q);
        }
        if mse < best.0 {
            best = (mse, clip);
        }
    }
    best.1
}

fn input_clips(net: &Network, specs: &[Option<LayerSpec>], images: &[f32], cancel: &Cancel) -> Vec<f32> {
    let n = net.nodes.len();
    let wanted: Vec<usize> = (0..n).filter(|&i| specs[i].as_ref().is_some_and(|s| s.input_clip.is_none())).collect();
    if wanted.is_empty() {
        return specs.iter().map(|s| s.as_ref().and_then(|s| s.input_clip).unwrap_or(0.0)).collect();
    }
    let src = |i: usize| net.nodes[i].inputs[0];
    let maxes = ordered_fold(
        net,
        images,
        cancel,
        || vec![0f32; n],
        |acc, ws, idx, image| {
            ws.forward(net, None, image, idx, &mut vec![OpCounts::default(); n], None);
            for &i in &wanted {
                acc[i] = ws.value(src(i)).iter().fold(acc[i], |m, v| m.max(v.abs()));
            }
        },
        |a, b| a.iter_mut().zip(b).for_each(|(x, y)| *x = x.max(y)),
    );
    let hists = ordered_fold(
        net,
        images,
        cancel,
        || vec![vec![0u64; BINS]; n],
        |acc, ws, idx, image| {
            ws.forward(net, None, image, idx, &mut vec![OpCounts::default(); n], None);
            for &i in &wanted {
                let scale = BINS as f32 / maxes[i].max(f32::MIN_POSITIVE);
                let signed = specs[i].as_ref().unwrap().input_signed;
                for &v in ws.value(src(i)) {
                    let v = if signed { v.abs() } else { v };
                    if v > 0.0 {
                        acc[i][((v * scale) as usize).min(BINS - 1)] += 1;
                    }
                }
            }
        },
        |a, b| a.iter_mut().zip(b).for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(p, q)| *p += q)),
    );
    (0..n)
        .map(|i| match &specs[i] {
            Some(s) => s.input_clip.unwrap_or_else(|| {
                let bits = s.mapping.input_bits;
                let levels = if s.input_signed { ((1u64 << (bits - 1)) - 1).max(1) } else { (1u64 << bits) - 1 } as f64;
                if maxes[i] > 0.0 {
                    best_clip(&hists[i], maxes[i] as f64, levels) as f32
                } else {
                    1.0
                }
            }),
            None => 0.0,
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Moments {
    n: f64,
    sum: f64,
    sum2: f64,
    min: f64,
    max: f64,
}

/// 2^53: integers below it add exactly in f64.
const EXACT: f64 = 9_007_199_254_740_992.0;

impl Moments {
    const EMPTY: Moments = Moments { n: 0.0, sum: 0.0, sum2: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY };
    fn add(&mut self, v: f64) {
        self.n += 1.0;
        self.sum += v;
        self.sum2 += v * v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// `add` of every value of `ps` in order, with the same bits, in the
    /// clone of `cpu::level()`. Partial sums are integers, and integers
    /// whose sums stay below 2^53 add exactly in any order: then eight
    /// lanes sum them (one by one, the dependent additions of the running
    /// sums took half of a bit-sliced calibration). Any other row (a
    /// fraction, −0, a NaN, sums too large) is added one by one.
    fn add_row(&mut self, ps: &[f32]) {
        moments_row(cpu::level(), self, ps)
    }

    #[inline(always)]
    fn add_row_in(&mut self, ps: &[f32]) {
        const L: usize = 8;
        let (mut sum, mut abs, mut sq) = ([0f64; L], [0f64; L], [0f64; L]);
        let (mut lo, mut hi) = ([f64::INFINITY; L], [f64::NEG_INFINITY; L]);
        // Per lane, whether some value was not an integer (or was −0: Rust
        // leaves the sign of min(−0, +0) unspecified, so its order could matter).
        let mut odd = [0u32; L];
        let chunks = ps.chunks_exact(L);
        let rest = chunks.remainder();
        let mut lane = |l: usize, v: f32| {
            odd[l] |= (v - quant::floor(v) != 0.0 || v.to_bits() == 0x8000_0000) as u32;
            let d = v as f64;
            sum[l] += d;
            abs[l] += d.abs();
            sq[l] += d * d;
            lo[l] = lo[l].min(d);
            hi[l] = hi[l].max(d);
        };
        for c in chunks {
            for (l, &v) in c.iter().enumerate() {
                lane(l, v);
            }
        }
        for (l, &v) in rest.iter().enumerate() {
            lane(l, v);
        }
        let total = |a: [f64; L]| a.iter().sum::<f64>();
        // Sums of non-negative integers round up past 2^53 if the exact sum
        // gets there, so totals below it are exact, as is every order of them.
        let exact = odd.iter().all(|&o| o == 0)
            && self.min.to_bits() != (-0f64).to_bits()
            && self.max.to_bits() != (-0f64).to_bits()
            && self.sum == self.sum.floor()
            && self.sum2 == self.sum2.floor()
            && self.sum.abs() + total(abs) < EXACT
            && self.sum2 + total(sq) < EXACT
            && self.n + (ps.len() as f64) < EXACT;
        if !exact {
            ps.iter().for_each(|&v| self.add(v as f64));
            return;
        }
        self.n += ps.len() as f64;
        self.sum += total(sum);
        self.sum2 += total(sq);
        self.min = lo.iter().fold(self.min, |m, &v| m.min(v));
        self.max = hi.iter().fold(self.max, |m, &v| m.max(v));
    }
    fn merge(&mut self, o: &Moments) {
        self.n += o.n;
        self.sum += o.sum;
        self.sum2 += o.sum2;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
    fn mean(&self) -> f64 {
        self.sum / self.n.max(1.0)
    }
    fn std(&self) -> f64 {
        (self.sum2 / self.n.max(1.0) - self.mean() * self.mean()).max(0.0).sqrt()
    }
}

multiversion! {
    fn moments_row(m: &mut Moments, ps: &[f32]) {
        _I => m.add_row_in(ps)
    }
}

multiversion! {
    /// Adds one row of partial sums to a column's readout sums [n, Σc, Σc²,
    /// Σc·ps, Σps], c = E[converter output | ps], in order (the sums are of
    /// fractions: no other order gives the same bits), in the clone of
    /// `cpu::level()`, where the table's lookups are gathers and the
    /// integer test one instruction (in the baseline build, a libm call per
    /// value).
    fn readout_row(conv: &Converter, scale: f32, shift: f32, table: Option<&Thresholds>, ps: &[f32], acc: &mut [f64; 5]) {
        _I => readout_row_in(conv, scale, shift, table, ps, acc)
    }
}

#[inline(always)]
fn readout_row_in(conv: &Converter, scale: f32, shift: f32, table: Option<&Thresholds>, ps: &[f32], acc: &mut [f64; 5]) {
    const L: usize = 8;
    let expected = |v: f32| -> f32 {
        let x = v * scale + shift;
        match conv {
            Converter::Mtj { curve, .. } => Device::NOMINAL.expected(curve, x),
            _ => {
                if x >= 0.0 {
                    1.0
                } else {
                    -1.0
                }
            }
        }
    };
    let mut add = |c: f32, v: f32| {
        let c = c as f64;
        acc[0] += 1.0;
        acc[1] += c;
        acc[2] += c * c;
        acc[3] += c * v as f64;
        acc[4] += v as f64;
    };
    // E = 2P − 1 from the column's table of P for integer sums: the same
    // bits as `expected` without an exp per partial sum.
    let whole = |v: f32| v - quant::floor(v) == 0.0;
    let from_table = |thr: f32| 2.0 * (thr / 16_777_216.0) - 1.0;
    match (conv, table) {
        (Converter::Mtj { .. }, Some(t)) => {
            let chunks = ps.chunks_exact(L);
            let rest = chunks.remainder();
            for chunk in chunks {
                let v: &[f32; L] = chunk.try_into().unwrap();
                // Eight lanes at a time (a gather, no branch), then the sums in order.
                let thr = t.get_lanes(v);
                let (mut c, mut fractions) = ([0f32; L], 0u32);
                for l in 0..L {
                    c[l] = from_table(thr[l]);
                    fractions |= !whole(v[l]) as u32;
                }
                if fractions != 0 {
                    for l in 0..L {
                        if !whole(v[l]) {
                            c[l] = expected(v[l]);
                        }
                    }
                }
                for l in 0..L {
                    add(c[l], v[l]);
                }
            }
            rest.iter().for_each(|&v| add(if whole(v) { from_table(t.get(v)) } else { expected(v) }, v));
        }
        _ => ps.iter().for_each(|&v| add(expected(v), v)),
    }
}

/// Per-column statistics gathered by `f(node, column, ps) -> values to add`.
fn column_fold<T: Clone + Send + Sync>(
    net: &Network,
    stox: &Crossbars,
    images: &[f32],
    cancel: &Cancel,
    empty: T,
    add: impl Fn(&mut T, usize, usize, &[f32]) + Sync,
    merge: impl Fn(&mut T, &T),
) -> Vec<Vec<T>> {
    let n = net.nodes.len();
    let sizes: Vec<usize> = stox.layers.iter().map(|l| l.as_ref().map_or(0, |l| l.columns.len())).collect();
    ordered_fold(
        net,
        images,
        cancel,
        || sizes.iter().map(|&s| vec![empty.clone(); s]).collect::<Vec<_>>(),
        |acc, ws, idx, image| {
            let mut ops = vec![OpCounts::default(); n];
            let mut obs = |node: usize, col: usize, ps: &[f32]| add(&mut acc[node][col], node, col, ps);
            ws.forward(net, Some(stox), image, idx, &mut ops, Some(&mut obs));
        },
        |a, b| a.iter_mut().zip(&b).for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(p, q)| merge(p, q))),
    )
}

/// Programs the crossbar layers of `net` with resolved configurations
/// (`configs[i]` for node i, `None` = digital); `seed` keys their draws.
pub fn program(net: &Network, configs: &[Option<LayerConfig>], seed: u64) -> Result<Crossbars> {
    let mut layers = Vec::with_capacity(net.nodes.len());
    for (i, node) in net.nodes.iter().enumerate() {
        layers.push(match &configs[i] {
            Some(c) => {
                let (w, b, out) = weights(&node.op);
                Some(CrossbarLayer::new(i, &node.name, w, b, out, c.clone(), seed)?)
            }
            None => None,
        });
    }
    Ok(Crossbars { layers, seed })
}

/// Whether any layer leaves something to calibrate on training images: an
/// input clip, a calibrated ADC range, or a normalisation and readout.
pub fn needs_images(specs: &[Option<LayerSpec>]) -> bool {
    specs.iter().flatten().any(|s| {
        s.input_clip.is_none()
            || matches!(s.converter, ConverterSpec::SparseAdc | ConverterSpec::Adc { calibrated: true, .. }) && s.params.adc_lo.is_empty()
            || matches!(s.converter, ConverterSpec::SenseAmp | ConverterSpec::Mtj(_)) && (s.params.norm_scale.is_empty() || s.params.readout_gain.is_empty())
    })
}

/// Programs the crossbar layers of `net` (`specs[i]` for node i, `None` =
/// digital), calibrating on `images` whatever the specs leave open.
/// `cancel` stops it between images (returning a "cancelled" error).
pub fn prepare(net: &Network, specs: &[Option<LayerSpec>], seed: u64, images: &[f32], cancel: &Cancel) -> Result<(Crossbars, Vec<Option<Resolved>>)> {
    if specs.len() != net.nodes.len() {
        bail!("layer policy covers {} nodes, the network has {}", specs.len(), net.nodes.len());
    }
    for (i, s) in specs.iter().enumerate() {
        if s.is_some() && !matches!(net.nodes[i].op, Op::Conv(_) | Op::Linear(_)) {
            bail!("node '{}' ({}): only Conv and Linear layers can run on crossbars", net.nodes[i].name, net.nodes[i].op.kind());
        }
    }
    if needs_images(specs) && images.is_empty() {
        bail!("calibration needs training images (input clips, ADC ranges or MTJ normalisation are not given)");
    }
    let clips = input_clips(net, specs, images, cancel);
    cancel.check()?;
    // Pass 2: ideal converters, noise-free, to observe the partial sums.
    let ideal: Vec<Option<LayerConfig>> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.as_ref().map(|s| LayerConfig {
                mapping: s.mapping.clone(),
                converter: Converter::Ideal,
                input_clip: clips[i],
                input_signed: s.input_signed,
                noise: Noise::default(),
                params: ColumnParams::default(),
                samples_per_stream: Vec::new(),
            })
        })
        .collect();
    let needs_stats = specs.iter().flatten().any(|s| match s.converter {
        ConverterSpec::SparseAdc | ConverterSpec::Adc { calibrated: true, .. } => s.params.adc_lo.is_empty(),
        ConverterSpec::SenseAmp | ConverterSpec::Mtj(_) => s.params.norm_scale.is_empty(),
        _ => false,
    });
    let ideal_stox = program(net, &ideal, seed)?;
    let stats = if needs_stats { column_fold(net, &ideal_stox, images, cancel, Moments::EMPTY, |m, _, _, ps| m.add_row(ps), |a, b| a.merge(b)) } else { vec![Vec::new(); net.nodes.len()] };
    cancel.check()?;
    let mut configs: Vec<Option<LayerConfig>> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let Some(s) = spec else {
            configs.push(None);
            continue;
        };
        let layer = ideal_stox.layers[i].as_ref().unwrap();
        let mut params = s.params.clone();
        let (slices, streams, out) = (s.mapping.slices(), s.mapping.streams(), layer.out);
        let lossless = s.mapping.lossless_adc_bits(layer.k, s.input_signed);
        let converter = match s.converter {
            ConverterSpec::Ideal => Converter::Ideal,
            ConverterSpec::Adc { bits, calibrated } => {
                let bits = bits.unwrap_or(lossless);
                if lossless > 24 && bits == lossless {
                    bail!("node '{}': the lossless ADC needs {lossless} bits, more than 24; give the ADC bits", net.nodes[i].name);
                }
                if calibrated && params.adc_lo.is_empty() {
                    // One range per (slice, stream): min and max over the layer's columns.
                    let mut lo = vec![f64::INFINITY; slices * streams];
                    let mut hi = vec![f64::NEG_INFINITY; slices * streams];
                    for (c, m) in stats[i].iter().enumerate() {
                        let ij = (c / out) % (slices * streams);
                        lo[ij] = lo[ij].min(m.min);
                        hi[ij] = hi[ij].max(m.max);
                    }
                    let levels = ((1u64 << bits) - 1) as f64;
                    params.adc_lo = (0..layer.columns.len()).map(|c| lo[(c / out) % (slices * streams)] as f32).collect();
                    params.adc_step = (0..layer.columns.len())
                        .map(|c| {
                            let ij = (c / out) % (slices * streams);
                            (((hi[ij] - lo[ij]) / levels) as f32).max(f32::MIN_POSITIVE)
                        })
                        .collect();
                }
                Converter::Adc { bits }
            }
            ConverterSpec::SparseAdc => {
                if params.adc_lo.is_empty() {
                    let lo = stats[i].iter().fold(f64::INFINITY, |a, m| a.min(m.min));
                    let hi = stats[i].iter().fold(f64::NEG_INFINITY, |a, m| a.max(m.max));
                    let bits = ((hi - lo + 1.0).log2().ceil() as u32).clamp(1, lossless);
                    params.adc_lo = vec![lo as f32; layer.columns.len()];
                    params.adc_step = vec![1.0; layer.columns.len()];
                    Converter::Adc { bits }
                } else {
                    bail!("node '{}': sparse-adc takes its bits from calibration; give an adc with explicit bits instead of explicit ranges", net.nodes[i].name);
                }
            }
            ConverterSpec::SenseAmp => Converter::SenseAmp,
            ConverterSpec::Mtj(c) => c,
        };
        if converter.normalises() && params.norm_scale.is_empty() {
            params.norm_scale = stats[i].iter().map(|m| (1.0 / m.std().max(1e-6)) as f32).collect();
            params.norm_shift = stats[i].iter().map(|m| (-m.mean() / m.std().max(1e-6)) as f32).collect();
        }
        configs.push(Some(LayerConfig {
            mapping: s.mapping.clone(),
            converter,
            input_clip: clips[i],
            input_signed: s.input_signed,
            noise: s.noise,
            params,
            samples_per_stream: s.samples_per_stream.clone(),
        }));
    }
    // Pass 3: readout of normalising converters by least squares of ps on E[c | ps].
    let needs_readout = configs.iter().flatten().any(|c| c.converter.normalises() && c.params.readout_gain.is_empty());
    if needs_readout {
        let fit: Vec<Option<LayerConfig>> =
            configs.iter().map(|c| c.clone().map(|c| LayerConfig { converter: Converter::Ideal, noise: Noise::default(), samples_per_stream: Vec::new(), ..c })).collect();
        let stox = program(net, &fit, seed)?;
        let norm: Vec<Option<(Converter, ColumnParams)>> = configs.iter().map(|c| c.as_ref().map(|c| (c.converter, c.params.clone()))).collect();
        let tables: Vec<Option<Vec<Option<Thresholds>>>> = norm
            .iter()
            .map(|n| match n {
                Some((Converter::Mtj { curve, .. }, p)) => Some(p.norm_scale.iter().zip(&p.norm_shift).map(|(&sc, &sh)| Thresholds::new(&Device::NOMINAL, curve, sc, sh)).collect()),
                _ => None,
            })
            .collect();
        // [n, Σc, Σc², Σc·ps, Σps]
        let sums = column_fold(
            net,
            &stox,
            images,
            cancel,
            [0f64; 5],
            |acc, node, col, ps| {
                let (conv, p) = norm[node].as_ref().unwrap();
                if !conv.normalises() {
                    return;
                }
                let table = tables[node].as_ref().and_then(|t| t[col].as_ref());
                readout_row(cpu::level(), conv, p.norm_scale[col], p.norm_shift[col], table, ps, acc);
            },
            |a, b| a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
        );
        cancel.check()?;
        for (i, c) in configs.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            if !(c.converter.normalises() && c.params.readout_gain.is_empty()) {
                continue;
            }
            let (gain, offset): (Vec<f32>, Vec<f32>) = sums[i]
                .iter()
                .map(|s| {
                    let n = s[0].max(1.0);
                    let (mc, mp) = (s[1] / n, s[4] / n);
                    let var = s[2] / n - mc * mc;
                    let cov = s[3] / n - mc * mp;
                    let g = if var > 1e-12 { cov / var } else { 0.0 };
                    (g as f32, (mp - g * mc) as f32)
                })
                .unzip();
            c.params.readout_gain = gain;
            c.params.readout_offset = offset;
        }
    }
    let stox = program(net, &configs, seed)?;
    let resolved = configs.iter().map(|c| c.as_ref().map(|c| Resolved { input_clip: c.input_clip, converter: c.converter, params: c.params.clone() })).collect();
    Ok((stox, resolved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mtj::Curve;

    fn bits(m: &Moments) -> [u64; 5] {
        [m.n, m.sum, m.sum2, m.min, m.max].map(f64::to_bits)
    }

    /// `add_row` gives the bits of `add` one by one at every level this CPU
    /// runs: integer rows (summed in lanes), and rows where the lanes would
    /// round or reorder (fractions, −0, NaN, sums past 2^53), which it adds
    /// one by one; also after such a row has made the sums fractional.
    #[test]
    fn moments_rows_equal_one_by_one() {
        let ints: Vec<f32> = (0..203).map(|i| ((i * 7919 % 301) as f32) - 150.0).collect();
        // Odd squares near 2^40, 12,000 of them: their sum passes 2^53, where
        // the order of the additions decides the rounding.
        let big: Vec<f32> = (0..12_000).map(|i| (1_048_577 + 2 * (i * 7919 % 12_000)) as f32).collect();
        let rows: Vec<Vec<f32>> = vec![
            ints.clone(),
            ints.iter().map(|v| v * 0.37).collect(),
            vec![5.0, 0.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, -0.0, 4.0, 3.0],
            vec![1.0, f32::NAN, 2.0],
            big.clone(),
            vec![],
            ints[..5].to_vec(),
        ];
        for order in [vec![0, 4, 6, 5], vec![0, 1, 0], vec![2, 0], vec![3, 0, 6], vec![6, 0, 4, 4, 4]] {
            let mut want = Moments::EMPTY;
            for &r in &order {
                rows[r].iter().for_each(|&v| want.add(v as f64));
            }
            for level in cpu::available() {
                let mut got = Moments::EMPTY;
                for &r in &order {
                    moments_row(level, &mut got, &rows[r]);
                }
                assert_eq!(bits(&got), bits(&want), "{level:?}, rows {order:?}");
            }
        }
    }

    /// `readout_row` gives the bits of adding one value at a time from the
    /// sigmoid itself, at every level: with and without a table, for
    /// integer and fractional partial sums, and for the sense amp.
    #[test]
    fn readout_rows_equal_one_by_one() {
        let curve = Curve::sigmoid(4.0);
        let (scale, shift) = (0.031f32, -0.2f32);
        let table = Thresholds::new(&Device::NOMINAL, &curve, scale, shift).expect("a small range");
        let mut ps: Vec<f32> = (0..203).map(|i| ((i * 7919 % 161) as f32) - 80.0).collect();
        ps[17] += 0.5;
        ps[90] = f32::NAN;
        for conv in [Converter::Mtj { curve, samples: 2 }, Converter::SenseAmp] {
            let mut want = [0f64; 5];
            for &v in &ps {
                let x = v * scale + shift;
                let c = match conv {
                    Converter::Mtj { .. } => Device::NOMINAL.expected(&curve, x),
                    _ => {
                        if x >= 0.0 {
                            1.0
                        } else {
                            -1.0
                        }
                    }
                } as f64;
                for (w, t) in want.iter_mut().zip([1.0, c, c * c, c * v as f64, v as f64]) {
                    *w += t;
                }
            }
            for level in cpu::available() {
                for t in [Some(&table), None] {
                    let mut got = [0f64; 5];
                    readout_row(level, &conv, scale, shift, t, &ps, &mut got);
                    assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{level:?} {conv:?} table {}", t.is_some());
                }
            }
        }
    }
    use crate::config::{Mapping, SignedMapping, Split};
    use crate::graph::{Linear, Node, Shape};
    use crate::quant::WeightQuant;

    /// The lossless default is the layer's own: 129 real rows × 1-bit
    /// weights × 16-bit inputs need 25 bits, which the engine refuses
    /// (naming the node); 24 explicit bits are accepted.
    #[test]
    fn lossless_adc_default_is_per_layer_and_bounded() {
        let k = 129;
        let w: Vec<f32> = (0..2 * k).map(|i| if i % 3 == 0 { -0.5 } else { 0.5 }).collect();
        let fc = Linear { weight: w, bias: None, out_features: 2, in_features: k };
        let net = Network::new(Shape { c: k, h: 1, w: 1 }, vec![Node { name: "fc".into(), op: Op::Linear(fc), inputs: vec![0] }], 1).unwrap();
        let spec = |bits| LayerSpec {
            mapping: Mapping {
                rows: 129,
                cols: 128,
                split: Split::Filled,
                weight_bits: 1,
                weight_slice_bits: 1,
                input_bits: 16,
                input_stream_bits: 16,
                weight_quant: WeightQuant::Uniform,
                signed: SignedMapping::Differential,
            },
            converter: ConverterSpec::Adc { bits, calibrated: false },
            input_clip: Some(1.0),
            input_signed: false,
            noise: Noise::default(),
            params: ColumnParams::default(),
            samples_per_stream: Vec::new(),
        };
        let err = prepare(&net, &[Some(spec(None))], 0, &[], &Cancel::default()).err().expect("25 lossless bits are refused");
        assert!(err.to_string().contains("node 'fc': the lossless ADC needs 25 bits"), "{err}");
        let (_, resolved) = prepare(&net, &[Some(spec(Some(24)))], 0, &[], &Cancel::default()).unwrap();
        assert_eq!(resolved[0].as_ref().unwrap().converter, Converter::Adc { bits: 24 });
    }
}
