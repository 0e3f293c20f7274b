//! Mapping a conv/linear layer onto crossbar subarrays, and its forward pass:
//! quantised inputs streamed bit-group by bit-group, weights sliced across
//! columns, one partial sum per (subarray, slice, stream, column, pixel),
//! each converted on its own and recombined by shift-and-add.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use rand_core::RngCore;

use crate::bail;
use crate::config::{split_rows, LayerConfig, SignedMapping};
use crate::converter::{self, Column, Converter, Draws};
use crate::counts::OpCounts;
use crate::cpu::{self, multiversion, Isa, Level};
use crate::error::Result;
use crate::gemm::gemm;
use crate::graph::{Conv, Shape};
use crate::mtj::{Device, Thresholds};
use crate::mvm::{self, PackedWeights};
use crate::pmath;
use crate::quant::{quantize_weights, InputQuant};
use crate::rng::{self, unit24, Domain, Lanes};

/// A layer programmed onto crossbars.
pub struct CrossbarLayer {
    pub layer: usize,
    pub config: LayerConfig,
    pub out: usize,
    pub k: usize,
    pub ranges: Vec<(usize, usize)>,
    /// Effective cell weights per (slice, subarray): `out × rows_s`, digits
    /// of the quantised weight with programming variation applied.
    weights: Vec<Vec<f32>>,
    /// The same weights as i8 for the integer kernel, when every cell holds
    /// an integer digit that fits (no programming variation) and the input
    /// digits fit u8.
    packed: Option<Vec<PackedWeights>>,
    /// Per column, canonical order (subarray, slice, stream, out).
    pub columns: Vec<Column>,
    /// Per column, MTJ thresholds by integer partial sum (integer layers
    /// without read noise; empty otherwise).
    thresholds: Vec<Option<Thresholds>>,
    /// Largest |digit| per slice (sets the ADC full range).
    pub max_digit: Vec<f32>,
    /// Per layer row: the sum of the digits its cells store (every slice,
    /// both columns of a differential pair, the offset reference), nominal.
    row_load: Vec<u64>,
    /// Digital rescale per output: weight scale × input step.
    pub out_scale: Vec<f32>,
    /// The weight quantiser's scale per output (weight ≈ level × scale).
    pub weight_scale: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub input: InputQuant,
}

/// Digit `index` (base 2^bits) of a level's magnitude, with the level's sign.
pub(crate) fn digit(level: f32, index: usize, bits: u32) -> f32 {
    let m = level.abs() as u32;
    let d = ((m >> (index as u32 * bits)) & ((1u32 << bits) - 1)) as f32;
    if level < 0.0 {
        -d
    } else {
        d
    }
}

/// N(0, 1) from a sequential stream (two draws).
fn normal(r: &mut impl RngCore) -> f32 {
    let u1 = 1.0 - unit24(r.next_u32());
    let u2 = unit24(r.next_u32());
    pmath::gaussian(u1, u2)
}

impl CrossbarLayer {
    /// Quantises and programs `weight` (`out × k`, row-major) with the seed's
    /// cell variation and MTJ spread.
    // `i` walks the slices of several per-slice arrays at once.
    #[allow(clippy::needless_range_loop)]
    pub fn new(layer: usize, name: &str, weight: &[f32], bias: Option<&[f32]>, out: usize, config: LayerConfig, seed: u64) -> Result<CrossbarLayer> {
        let at = format!("layer '{name}'");
        let m = &config.mapping;
        m.validate(&at)?;
        if !(config.input_clip > 0.0 && config.input_clip.is_finite()) {
            bail!("{at}: input clip must be a positive finite number, got {}", config.input_clip);
        }
        if let Converter::Adc { bits } = config.converter {
            if bits == 0 || bits > 24 {
                bail!("{at}: ADC bits must be in 1..=24, got {bits}");
            }
        }
        if let Converter::Mtj { samples, curve } = config.converter {
            if samples == 0 {
                bail!("{at}: MTJ samples must be >= 1, got 0");
            }
            if !(curve.slope > 0.0 && curve.slope.is_finite()) {
                bail!("{at}: the MTJ transfer curve needs a positive finite sensitivity, got slope {}", curve.slope);
            }
        }
        if !config.samples_per_stream.is_empty() {
            let t = &config.samples_per_stream;
            if !matches!(config.converter, Converter::Mtj { .. }) {
                bail!("{at}: samples per input stream {t:?} need the mtj converter");
            }
            if t.len() != m.streams() {
                bail!("{at}: samples per input stream has {} values, the mapping has {} input streams ({} input bits in streams of {})", t.len(), m.streams(), m.input_bits, m.input_stream_bits);
            }
            if t.contains(&0) {
                bail!("{at}: samples per input stream must be >= 1, got {t:?}");
            }
        }
        let k = weight.len() / out;
        let ranges = split_rows(k, m.rows, m.split);
        let (slices, streams) = (m.slices(), m.streams());
        let q = quantize_weights(weight, out, m.weight_bits, m.weight_quant);
        let half = (1u32 << (m.weight_bits - 1)) as f32;
        let mut cells = rng::stream(seed, &[Domain::CellVariation as u64, layer as u64]);
        let sigma = config.noise.cell;
        let mut weights = Vec::with_capacity(slices * ranges.len());
        let mut max_digit = vec![0f32; slices];
        let mut row_load = vec![0u64; k];
        for i in 0..slices {
            for &(k0, k1) in &ranges {
                let rows = k1 - k0;
                let mut w = vec![0f32; out * rows];
                // Offset mapping: the reference column's cells for this subarray.
                let reference: Vec<f32> = match m.signed {
                    SignedMapping::Offset => {
                        let r = digit(half, i, m.weight_slice_bits);
                        row_load[k0..k1].iter_mut().for_each(|l| *l += r as u64);
                        (0..rows).map(|_| if sigma > 0.0 && r != 0.0 { r * (1.0 + sigma * normal(&mut cells)) } else { r }).collect()
                    }
                    SignedMapping::Differential => Vec::new(),
                };
                for o in 0..out {
                    for r in 0..rows {
                        let level = q.q[o * k + k0 + r];
                        w[o * rows + r] = match m.signed {
                            SignedMapping::Differential => {
                                let d = digit(level, i, m.weight_slice_bits);
                                max_digit[i] = max_digit[i].max(d.abs());
                                row_load[k0 + r] += d.abs() as u64;
                                if sigma > 0.0 {
                                    let (gp, gn) = (normal(&mut cells), normal(&mut cells));
                                    d.max(0.0) * (1.0 + sigma * gp) - (-d).max(0.0) * (1.0 + sigma * gn)
                                } else {
                                    d
                                }
                            }
                            SignedMapping::Offset => {
                                let d = digit(level + half, i, m.weight_slice_bits);
                                row_load[k0 + r] += d as u64;
                                let cell = if sigma > 0.0 { d * (1.0 + sigma * normal(&mut cells)) } else { d };
                                let r0 = digit(half, i, m.weight_slice_bits);
                                max_digit[i] = max_digit[i].max((d - r0).abs());
                                cell - reference[r]
                            }
                        };
                    }
                }
                weights.push(w);
            }
        }
        let columns = Self::columns(&config, &ranges, slices, streams, out, &max_digit, seed, layer, &at)?;
        let integer = sigma == 0.0 && !config.input_signed && m.input_stream_bits <= 8 && weights.iter().flatten().all(|&w| w.abs() <= 127.0);
        let binary = m.weight_slice_bits == 1 && m.input_stream_bits == 1;
        let packed = integer.then(|| (0..slices).flat_map(|_| ranges.iter()).zip(&weights).map(|(&(k0, k1), w)| PackedWeights::new(w, out, k1 - k0, binary, (1 << m.input_stream_bits) - 1)).collect());
        let input = InputQuant::new(m.input_bits, config.input_clip, config.input_signed);
        let out_scale = q.scale.iter().map(|&s| s * input.step).collect();
        let thresholds = match config.converter {
            Converter::Mtj { curve, .. } if packed.is_some() && config.noise.read == 0.0 => columns.iter().map(|c| Thresholds::new(&c.device, &curve, c.scale, c.shift)).collect(),
            _ => Vec::new(),
        };
        Ok(CrossbarLayer { layer, config, out, k, ranges, weights, packed, columns, thresholds, max_digit, row_load, out_scale, weight_scale: q.scale, bias: bias.map(|b| b.to_vec()), input })
    }

    #[allow(clippy::too_many_arguments)]
    fn columns(config: &LayerConfig, ranges: &[(usize, usize)], slices: usize, streams: usize, out: usize, max_digit: &[f32], seed: u64, layer: usize, at: &str) -> Result<Vec<Column>> {
        let n = ranges.len() * slices * streams * out;
        let p = &config.params;
        for (name, v) in
            [("adcLo", &p.adc_lo), ("adcStep", &p.adc_step), ("normScale", &p.norm_scale), ("normShift", &p.norm_shift), ("readoutGain", &p.readout_gain), ("readoutOffset", &p.readout_offset)]
        {
            if !v.is_empty() && v.len() != n {
                bail!("{at}: {name} has {} values, the mapping has {n} columns (subarrays × slices × streams × outputs)", v.len());
            }
            if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                bail!("{at}: {name} holds a non-finite value {bad}");
            }
        }
        let m = &config.mapping;
        let x_max = ((1u32 << m.input_stream_bits) - 1) as f32;
        let mut devices = rng::stream(seed, &[Domain::MtjDevice as u64, layer as u64]);
        let spread = config.noise.mtj_offset > 0.0 || config.noise.mtj_slope > 0.0;
        // One MTJ per (subarray, slice, column), shared by the input streams.
        let mut device_of = Vec::with_capacity(ranges.len() * slices * out);
        for _ in 0..ranges.len() * slices * out {
            device_of.push(if spread {
                let (a, b) = (normal(&mut devices), normal(&mut devices));
                Device { slope: 1.0 + config.noise.mtj_slope * a, offset: config.noise.mtj_offset * b }
            } else {
                Device::NOMINAL
            });
        }
        let get = |v: &Vec<f32>, idx: usize, default: f32| if v.is_empty() { default } else { v[idx] };
        let mut columns = Vec::with_capacity(n);
        for (s, &(k0, k1)) in ranges.iter().enumerate() {
            for i in 0..slices {
                for j in 0..streams {
                    // Full range: every sum the programmed digits can produce.
                    let bound = (k1 - k0) as f32 * max_digit[i] * x_max;
                    let step = match config.converter {
                        Converter::Adc { bits } => ((2.0 * bound) / ((1u64 << bits) - 1) as f32).max(1.0),
                        _ => 1.0,
                    };
                    for o in 0..out {
                        let idx = ((s * slices + i) * streams + j) * out + o;
                        columns.push(Column {
                            lo: get(&p.adc_lo, idx, -bound),
                            step: get(&p.adc_step, idx, step),
                            scale: get(&p.norm_scale, idx, 1.0),
                            shift: get(&p.norm_shift, idx, 0.0),
                            gain: get(&p.readout_gain, idx, 1.0),
                            offset: get(&p.readout_offset, idx, 0.0),
                            device: device_of[(s * slices + i) * out + o],
                        });
                    }
                }
            }
        }
        Ok(columns)
    }

    /// Programmed cell weights of (slice, subarray): `out × rows`.
    pub fn cells(&self, slice: usize, subarray: usize) -> &[f32] {
        &self.weights[slice * self.ranges.len() + subarray]
    }

    pub fn subarrays(&self) -> usize {
        self.ranges.len()
    }

    /// Input levels → stream digit planes → unfolded columns, then partial
    /// sums per (subarray, slice, stream), each row converted and
    /// shift-added. Integer layers unfold u8 digits for the VNNI kernel,
    /// the others f32 digits for `gemm`.
    /// `ops` (inference, calibration) receives the pass's operation counts;
    /// training passes none and skips the counting. `observe` (calibration)
    /// sees every raw partial-sum row; `record` (training) receives every
    /// partial sum and converter output, each `columns × p` in canonical
    /// column order.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        p: usize,
        unfold: Unfold,
        scratch: &mut Scratch,
        image: usize,
        seed: u64,
        out: &mut [f32],
        ops: Option<&mut OpCounts>,
        observe: Option<Observe>,
        record: Option<Record>,
    ) {
        forward_at(cpu::level(), self, x, p, unfold, scratch, image, seed, out, ops, observe, record)
    }

    /// `forward`'s body, inlined into the clone of each instruction-set
    /// level (cpu.rs): its digit, unfold, packing and range loops are
    /// vectorised for the CPU, as the kernels it calls are.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn forward_in<I: Isa>(
        &self,
        x: &[f32],
        p: usize,
        unfold: Unfold,
        scratch: &mut Scratch,
        image: usize,
        seed: u64,
        out: &mut [f32],
        mut ops: Option<&mut OpCounts>,
        mut observe: Option<Observe>,
        record: Option<Record>,
    ) {
        let m = &self.config.mapping;
        let (slices, streams) = (m.slices(), m.streams());
        // A loop here rather than `extend`: std's `extend` stays an outlined
        // baseline function, where `floor` is a libm call per value.
        scratch.levels.resize(x.len(), 0.0);
        for (l, &v) in scratch.levels.iter_mut().zip(x) {
            *l = self.input.level_in::<I>(v);
        }
        let plane = self.k * p;
        // Integer layers: stride-1 convolutions whose output has their
        // input's size read their rows in place from the digit planes
        // (`mvm::Rows`); the others unfold each stream's digits.
        let shifted = self.packed.as_ref().and_then(|_| unfold.shift(p));
        let len = shifted.map_or(plane, |(g, _)| x.len() / p.max(1) * g.pitch);
        let mut at = 0;
        if self.packed.is_some() {
            scratch.digits_u8.resize(x.len(), 0);
            scratch.cols_u8.resize(streams * len, 0);
            // Masks made once per geometry and thread: a network has few.
            let key = (shifted.map(|(g, _)| g), p);
            at = match scratch.masks.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    if scratch.masks.len() == MASKS {
                        scratch.masks.remove(0);
                    }
                    scratch.masks.push((key, shifted.map_or_else(|| [vec![!0; p], vec![!0; p]], |(g, _)| g.masks(p))));
                    scratch.masks.len() - 1
                }
            };
            for j in 0..streams {
                // Integer layers have unsigned integer levels below 2^23.
                let (shift, mask) = (j as u32 * m.input_stream_bits, (1u32 << m.input_stream_bits) - 1);
                let digit = |l: f32| (pmath::small_uint(l) >> shift & mask) as u8;
                let cols = &mut scratch.cols_u8[j * len..(j + 1) * len];
                match shifted {
                    Some((g, margin)) => {
                        for (plane, src) in cols.chunks_exact_mut(g.pitch).zip(scratch.levels.chunks_exact(p)) {
                            plane[..margin].fill(0);
                            for (d, &l) in plane[margin..margin + p].iter_mut().zip(src) {
                                *d = digit(l);
                            }
                            plane[margin + p..].fill(0);
                        }
                        if let Some(ops) = ops.as_deref_mut() {
                            let pulses = self.config.pulses(j);
                            unfold.each_row_drives::<I>(cols, margin, g.pitch, |k, nonzero, sq| ops.count_drives(nonzero, sq, self.row_load[k], pulses));
                        }
                    }
                    None => {
                        for (d, &l) in scratch.digits_u8.iter_mut().zip(&scratch.levels) {
                            *d = digit(l);
                        }
                        unfold.apply(&scratch.digits_u8, cols);
                        if let Some(ops) = ops.as_deref_mut() {
                            let pulses = self.config.pulses(j);
                            for (row, &load) in cols.chunks_exact(p).zip(&self.row_load) {
                                let (nonzero, sq) = drives::<I>(row);
                                ops.count_drives(nonzero, sq, load, pulses);
                            }
                        }
                    }
                }
            }
        } else {
            scratch.cols.resize(streams * plane, 0.0);
            scratch.digits.resize(x.len(), 0.0);
            for j in 0..streams {
                for (d, &l) in scratch.digits.iter_mut().zip(&scratch.levels) {
                    *d = digit(l, j, m.input_stream_bits);
                }
                unfold.apply(&scratch.digits, &mut scratch.cols[j * plane..(j + 1) * plane]);
                if let Some(ops) = ops.as_deref_mut() {
                    let pulses = self.config.pulses(j);
                    for (row, &load) in scratch.cols[j * plane..(j + 1) * plane].chunks_exact(p).zip(&self.row_load) {
                        // Digits are integers below 2^16 in magnitude: their squares are exact in u64.
                        let (nonzero, sq) = row.iter().fold((0u64, 0u64), |(n, s), &d| (n + (d != 0.0) as u64, s + (d as i64 * d as i64) as u64));
                        ops.count_drives(nonzero, sq, load, pulses);
                    }
                }
            }
        }
        scratch.ps.resize(self.out * p, 0.0);
        // Training's record: the products write their partial sums straight
        // into it (its rows for one subarray, slice and stream are the
        // product's `out × p` block), the converters their outputs.
        let (mut record_ps, mut record_c) = record.map_or((None, None), |(ps, c)| (Some(ps), Some(c)));
        let acc = out;
        acc.fill(0.0);
        let mut draws = Draws {
            samples: Lanes::new(seed, Domain::MtjSample, self.layer, image),
            read: (self.config.noise.read > 0.0).then(|| (Lanes::new(seed, Domain::ReadNoise, self.layer, image), self.config.noise.read)),
            thresholds: std::mem::take(&mut scratch.thresholds),
        };
        for (s, &(k0, k1)) in self.ranges.iter().enumerate() {
            let rows = k1 - k0;
            if let Some(packed) = &self.packed {
                scratch.packed.resize_with(streams, Default::default);
                for j in 0..streams {
                    let [masks, bits] = &scratch.masks[at].1;
                    let rows = mvm::Rows { digits: &scratch.cols_u8[j * len..(j + 1) * len], p, masks, bits, shift: shifted.map(|(g, _)| g) };
                    packed[s].pack_inputs::<I>(&rows, k0, k1, &mut scratch.packed[j]);
                }
            }
            for i in 0..slices {
                let n = i * self.ranges.len() + s;
                for j in 0..streams {
                    let base = ((s * slices + i) * streams + j) * self.out;
                    let block = match record_ps.as_deref_mut() {
                        Some(all) => &mut all[base * p..(base + self.out) * p],
                        None => &mut scratch.ps[..],
                    };
                    match &self.packed {
                        Some(packed) => mvm::mvm(&packed[n], &scratch.packed[j], p, block),
                        None => {
                            let cols = &scratch.cols[j * plane + k0 * p..j * plane + k1 * p];
                            gemm(&self.weights[n], cols, block, self.out, rows, p);
                        }
                    }
                    let factor = m.shift(i, j);
                    let conv = self.config.stream_converter(j);
                    if let Some(ops) = ops.as_deref_mut() {
                        let (lo, hi) = range(block);
                        ops.ps_min = ops.ps_min.min(lo);
                        ops.ps_max = ops.ps_max.max(hi);
                    }
                    for o in 0..self.out {
                        let idx = base + o;
                        let ps = &block[o * p..(o + 1) * p];
                        if let Some(f) = observe.as_mut() {
                            f(idx, ps);
                        }
                        let keep = record_c.as_deref_mut().map(|c| &mut c[idx * p..(idx + 1) * p]);
                        let table = self.thresholds.get(idx).and_then(|t| t.as_ref());
                        converter::convert_row(&conv, &self.columns[idx], table, ps, &mut acc[o * p..(o + 1) * p], factor, &mut draws, keep);
                    }
                }
            }
        }
        for o in 0..self.out {
            let (sc, b) = (self.out_scale[o], self.bias.as_ref().map_or(0.0, |b| b[o]));
            for a in &mut acc[o * p..(o + 1) * p] {
                *a = *a * sc + b;
            }
        }
        scratch.thresholds = draws.thresholds;
        if let Some(ops) = ops {
            self.count(p, ops);
        }
    }

    /// Operation counts of one forward pass over `p` input vectors.
    fn count(&self, p: usize, ops: &mut OpCounts) {
        let m = &self.config.mapping;
        let (slices, streams) = (m.slices() as u64, m.streams() as u64);
        let (p, out, k, s) = (p as u64, self.out as u64, self.k as u64, self.ranges.len() as u64);
        let phys = self.physical_columns() as u64;
        let col_tiles = phys.div_ceil(m.cols as u64);
        let conversions = p * streams * s * slices * out;
        ops.images += 1;
        ops.subarray_reads += p * streams * s * col_tiles;
        ops.cell_reads += p * streams * k * phys;
        ops.dac_drives += p * streams * k * col_tiles;
        ops.conversions += conversions;
        if let Converter::Mtj { .. } = self.config.converter {
            ops.mtj_samples += conversions / streams * self.config.pulses_all_streams() as u64;
        }
        ops.shift_adds += conversions;
        ops.digital_ops += p * out;
    }

    /// Physical columns of one row: weight columns (two per weight column
    /// when differential) plus one reference column per slice for offset.
    pub fn physical_columns(&self) -> usize {
        let m = &self.config.mapping;
        match m.signed {
            SignedMapping::Differential => 2 * self.out * m.slices(),
            SignedMapping::Offset => self.out * m.slices() + m.slices(),
        }
    }

    /// Physical subarrays this layer occupies.
    pub fn physical_subarrays(&self) -> usize {
        self.ranges.len() * self.physical_columns().div_ceil(self.config.mapping.cols)
    }
}

/// Calibration's view of every raw partial-sum row: (column, row of p sums).
pub type Observe<'a> = &'a mut dyn FnMut(usize, &[f32]);

/// Where training records a layer's partial sums and converter outputs
/// (`columns × p` each, canonical column order).
pub type Record<'a> = (&'a mut [f32], &'a mut [f32]);

multiversion! {
    fn forward_at(
        layer: &CrossbarLayer,
        x: &[f32],
        p: usize,
        unfold: Unfold,
        scratch: &mut Scratch,
        image: usize,
        seed: u64,
        out: &mut [f32],
        ops: Option<&mut OpCounts>,
        observe: Option<Observe>,
        record: Option<Record>,
    ) {
        I => layer.forward_in::<I>(x, p, unfold, scratch, image, seed, out, ops, observe, record)
    }
}

/// Nonzero digits and the sum of their squares in one row of drives, in
/// u32 lanes over blocks short enough that 255² sums cannot wrap (with
/// AVX2 or AVX-512, `avx2::drives` or `avx512::drives`: the compiler widened
/// every byte to 32 bits here).
#[inline(always)]
fn drives<I: Isa>(row: &[u8]) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    if I::LEVEL >= Level::Avx512 {
        // SAFETY: `I` is AVX-512 only in a clone run on a CPU with AVX-512 (F, BW).
        return unsafe { avx512::drives(row) };
    }
    #[cfg(target_arch = "x86_64")]
    if I::LEVEL >= Level::Avx2 {
        // SAFETY: `I` is at least AVX2 only in a clone run on a CPU with AVX2.
        return unsafe { avx2::drives(row) };
    }
    let (mut nonzero, mut sq) = (0u64, 0u64);
    for block in row.chunks(1 << 16) {
        let (mut n, mut s) = (0u32, 0u32);
        for &b in block {
            n += (b != 0) as u32;
            s += b as u32 * b as u32;
        }
        nonzero += n as u64;
        sq += s as u64;
    }
    (nonzero, sq)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `drives` 32 bytes at a time: nonzero bytes as `min(b, 1)` summed by
    /// `vpsadbw` into u64 lanes; squares as the bytes widened to 16 bits,
    /// squared and added in pairs by `vpmaddwd` into i32 lanes (at most
    /// 4 · 255² per lane and step), added into u64 every 4,096 steps, far
    /// below 2^31.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn drives(row: &[u8]) -> (u64, u64) {
        let (zero, one) = (_mm256_setzero_si256(), _mm256_set1_epi8(1));
        let (mut nonzero, mut sq) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let (whole, rest) = row.split_at(row.len() / 32 * 32);
        for block in whole.chunks(32 * 4096) {
            let mut s = _mm256_setzero_si256();
            for c in block.chunks_exact(32) {
                // One 32-byte load of a 32-byte chunk.
                let v = _mm256_loadu_si256(c.as_ptr() as *const __m256i);
                nonzero = _mm256_add_epi64(nonzero, _mm256_sad_epu8(_mm256_min_epu8(v, one), zero));
                let (lo, hi) = (_mm256_unpacklo_epi8(v, zero), _mm256_unpackhi_epi8(v, zero));
                s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_madd_epi16(lo, lo), _mm256_madd_epi16(hi, hi)));
            }
            // i32 lanes (non-negative) widened to u64.
            sq = _mm256_add_epi64(sq, _mm256_add_epi64(_mm256_unpacklo_epi32(s, zero), _mm256_unpackhi_epi32(s, zero)));
        }
        let lanes = |v: __m256i| {
            let mut a = [0u64; 4];
            _mm256_storeu_si256(a.as_mut_ptr() as *mut __m256i, v);
            a.iter().sum::<u64>()
        };
        let (mut n, mut q) = (lanes(nonzero), lanes(sq));
        for &b in rest {
            n += (b != 0) as u64;
            q += b as u64 * b as u64;
        }
        (n, q)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// `avx2::drives` 64 bytes at a time (the same sums: the blocks of
    /// 4,096 steps keep each i32 lane at most 4,096 · 4 · 255², below 2^31).
    /// At 32 bytes it was a seventh of an ideal crossbar layer's own work.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn drives(row: &[u8]) -> (u64, u64) {
        let (zero, one) = (_mm512_setzero_si512(), _mm512_set1_epi8(1));
        let (mut nonzero, mut sq) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let (whole, rest) = row.split_at(row.len() / 64 * 64);
        for block in whole.chunks(64 * 4096) {
            let mut s = _mm512_setzero_si512();
            for c in block.chunks_exact(64) {
                // One 64-byte load of a 64-byte chunk.
                let v = _mm512_loadu_si512(c.as_ptr() as *const __m512i);
                nonzero = _mm512_add_epi64(nonzero, _mm512_sad_epu8(_mm512_min_epu8(v, one), zero));
                let (lo, hi) = (_mm512_unpacklo_epi8(v, zero), _mm512_unpackhi_epi8(v, zero));
                s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_madd_epi16(lo, lo), _mm512_madd_epi16(hi, hi)));
            }
            // i32 lanes (non-negative) widened to u64.
            sq = _mm512_add_epi64(sq, _mm512_add_epi64(_mm512_unpacklo_epi32(s, zero), _mm512_unpackhi_epi32(s, zero)));
        }
        let (mut n, mut q) = (_mm512_reduce_add_epi64(nonzero) as u64, _mm512_reduce_add_epi64(sq) as u64);
        for &b in rest {
            n += (b != 0) as u64;
            q += b as u64 * b as u64;
        }
        (n, q)
    }
}

/// Smallest and largest value, in 32 lanes (four independent vectors, so
/// that the min/max chains do not wait on each other).
#[inline(always)]
fn range(v: &[f32]) -> (f32, f32) {
    const N: usize = 32;
    let (mut lo, mut hi) = ([f32::INFINITY; N], [f32::NEG_INFINITY; N]);
    let chunks = v.chunks_exact(N);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..N {
            lo[l] = if c[l] < lo[l] { c[l] } else { lo[l] };
            hi[l] = if c[l] > hi[l] { c[l] } else { hi[l] };
        }
    }
    let lo = rest.iter().chain(&lo).fold(f32::INFINITY, |a, &b| a.min(b));
    let hi = rest.iter().chain(&hi).fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    (lo, hi)
}

/// How a layer's input becomes the `k × p` matrix its crossbar reads.
#[derive(Clone, Copy)]
pub enum Unfold<'a> {
    Conv {
        conv: &'a Conv,
        input: Shape,
        output: Shape,
        taps: &'a [crate::layers::Tap],
    },
    /// A linear layer reads its input vector (p = 1).
    Identity,
}

impl Unfold<'_> {
    /// A stride-1 convolution whose `p` outputs have its input's size reads
    /// its rows in place (`mvm::Rows`): their geometry, and the zeros
    /// before each plane.
    fn shift(&self, p: usize) -> Option<(mvm::Shift, usize)> {
        match *self {
            Unfold::Conv { conv, input, output, .. } if conv.stride == [1, 1] && (output.h, output.w) == (input.h, input.w) && p > 0 => {
                let ([kh, kw], [top, left], w) = (conv.kernel, [conv.pads[0], conv.pads[1]], input.w);
                // Before each plane, the reach of the kernel's first row and
                // column; after it, the rest of its reach.
                let margin = top * w + left;
                Some((mvm::Shift { pitch: (kh - 1) * w + kw - 1 + p, w, kernel: conv.kernel, left }, margin))
            }
            _ => None,
        }
    }

    /// The drives of every row of a shifted layout (`cols`: planes of
    /// `pitch` digits, each after `margin` zeros): `f(k, nonzero reads,
    /// Σ digit²)`. A row reads a rectangle of its plane: the plane's sums
    /// less the input rows and columns outside it, plus the corners taken
    /// twice (a few edge lines per plane, where summing every row's reads
    /// took a twentieth of an ideal crossbar's inference).
    #[inline(always)]
    fn each_row_drives<I: Isa>(&self, cols: &[u8], margin: usize, pitch: usize, mut f: impl FnMut(usize, u64, u64)) {
        let Unfold::Conv { conv, input, .. } = *self else { return };
        let ([kh, kw], [top, left], (h, w)) = (conv.kernel, [conv.pads[0], conv.pads[1]], (input.h, input.w));
        // The input rows (columns) a kernel row (column) reads: 0..n shifted by it.
        let reach = |tap: usize, pad: usize, n: usize| (tap.saturating_sub(pad).min(n), (n + tap).saturating_sub(pad).min(n));
        // A column's (nonzero, Σ d²), in u32 over blocks of 2^16 digits below
        // 2^8: exact. Whole planes and input rows are contiguous: `drives`.
        let sums = |digits: &mut dyn Iterator<Item = u8>| {
            let (mut n, mut s) = (0u64, 0u64);
            let (mut bn, mut bs, mut i) = (0u32, 0u32, 0u32);
            for d in digits {
                bn += (d != 0) as u32;
                bs += d as u32 * d as u32;
                i += 1;
                if i == 1 << 16 {
                    (n, s, bn, bs, i) = (n + bn as u64, s + bs as u64, 0, 0, 0);
                }
            }
            (n + bn as u64, s + bs as u64)
        };
        let (mut rows, mut columns) = (vec![None; h], vec![None; w]);
        for c in 0..input.c {
            let plane = &cols[c * pitch + margin..c * pitch + margin + h * w];
            let total = drives::<I>(plane);
            rows.fill(None);
            columns.fill(None);
            for ky in 0..kh {
                let (y0, y1) = reach(ky, top, h);
                for kx in 0..kw {
                    let (x0, x1) = reach(kx, left, w);
                    let (mut n, mut s) = total;
                    for y in (0..y0).chain(y1..h) {
                        let (a, q) = *rows[y].get_or_insert_with(|| drives::<I>(&plane[y * w..(y + 1) * w]));
                        (n, s) = (n - a, s - q);
                    }
                    for x in (0..x0).chain(x1..w) {
                        let (a, q) = *columns[x].get_or_insert_with(|| sums(&mut plane.iter().skip(x).step_by(w).copied()));
                        (n, s) = (n - a, s - q);
                        for y in (0..y0).chain(y1..h) {
                            let (a, q) = sums(&mut std::iter::once(plane[y * w + x]));
                            (n, s) = (n + a, s + q);
                        }
                    }
                    f((c * kh + ky) * kw + kx, n, s);
                }
            }
        }
    }

    #[inline(always)]
    pub fn apply<T: Copy + Default>(&self, x: &[T], cols: &mut [T]) {
        match *self {
            Unfold::Conv { conv, input, output, taps } => crate::layers::im2col(conv, taps, x, input, output, cols),
            Unfold::Identity => cols.copy_from_slice(x),
        }
    }
}

/// Per-thread buffers of the crossbar forward pass. Every use overwrites
/// what it reads, so one scratch serves any layer and image in turn.
#[derive(Default)]
pub struct Scratch {
    levels: Vec<f32>,
    digits: Vec<f32>,
    cols: Vec<f32>,
    digits_u8: Vec<u8>,
    /// Integer layers: each stream's unfolded digits, or its digit planes
    /// read in place (`mvm::Rows`).
    cols_u8: Vec<u8>,
    /// The masks of `mvm::Rows`, by the geometry they were made for.
    masks: Vec<(MaskKey, [Vec<u32>; 2])>,
    packed: Vec<mvm::PackedInputs>,
    ps: Vec<f32>,
    thresholds: Vec<f32>,
}

/// A geometry of `mvm::Rows`: its shifted layout (None: unfolded) and pixels.
type MaskKey = (Option<mvm::Shift>, usize);

/// Most geometries whose masks one scratch keeps.
const MASKS: usize = 8;

thread_local! {
    /// Scratch given back on this thread (see `Scratch::reused`).
    static SPARE: RefCell<Vec<Scratch>> = const { RefCell::new(Vec::new()) };
}

/// Most spare scratches one thread keeps (a training step holds one per
/// rayon job at a time).
const SPARES: usize = 4;

impl Scratch {
    /// A scratch from this thread's spares, already grown, or a new one.
    /// Training takes one per layer, step and rayon job: new, its buffers of
    /// a few hundred KiB came fresh from the kernel each time, page-faulted
    /// and zeroed (a twelfth of a PS-QAT step).
    pub fn reused() -> Reused {
        Reused(SPARE.try_with(|spare| spare.borrow_mut().pop()).ok().flatten().unwrap_or_default())
    }
}

/// A `Scratch` that goes back to its thread's spares when dropped.
pub struct Reused(Scratch);

impl Deref for Reused {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl DerefMut for Reused {
    fn deref_mut(&mut self) -> &mut Scratch {
        &mut self.0
    }
}

impl Drop for Reused {
    fn drop(&mut self) {
        let scratch = std::mem::take(&mut self.0);
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARES {
                spare.push(scratch);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::mapping;
    use crate::config::{ColumnParams, Noise, Split};
    use crate::quant::WeightQuant;

    #[test]
    fn counts_drives_past_block_boundaries() {
        // Past the kernels' blocks (2^16 bytes; 32 · 4,096; 64 · 4,096),
        // with a tail shorter than a vector; all 255s, the largest squares.
        for v in [(0..(1 << 18) + 37).map(|i| (i % 3 != 0) as u8 * (i % 256) as u8).collect::<Vec<u8>>(), vec![255u8; 3 * 64 * 4096 + 5]] {
            let want = (v.iter().filter(|&&x| x != 0).count() as u64, v.iter().map(|&x| x as u64 * x as u64).sum::<u64>());
            for level in cpu::available() {
                let got = match level {
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx2 => drives::<cpu::Avx2>(&v),
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx512 => drives::<cpu::Avx512>(&v),
                    _ => drives::<cpu::Portable>(&v),
                };
                assert_eq!(got, want, "{level:?}");
            }
        }
    }

    /// Rows read in place from padded digit planes give the unfold's
    /// partial sums (bytes and bits kernels) and drive counts: kernels
    /// 3 × 3, 5 × 5, 1 × 1 and 2 × 2 with uneven padding, widths not a
    /// multiple of 8, row ranges that start and end off the quads and words.
    #[test]
    fn shifted_rows_equal_the_unfold() {
        use crate::layers::{im2col, taps};
        for (c, h, w, kernel, pads) in [(3, 7, 5, [3, 3], [1, 1, 1, 1]), (2, 6, 9, [5, 5], [2, 2, 2, 2]), (4, 4, 4, [1, 1], [0, 0, 0, 0]), (3, 5, 6, [2, 2], [0, 1, 1, 0])] {
            let conv = Conv { weight: Vec::new(), bias: None, out_channels: 1, in_channels: c, kernel, stride: [1, 1], pads };
            let (xs, p) = (Shape { c, h, w }, h * w);
            let taps: Vec<_> = taps(&conv, xs, xs).collect();
            let unfold = Unfold::Conv { conv: &conv, input: xs, output: xs, taps: &taps };
            let digits: Vec<u8> = (0..c * p).map(|i| ((i * 7919 % 23) as u8).saturating_sub(7)).collect();
            let k = c * kernel[0] * kernel[1];
            let mut cols = vec![0u8; k * p];
            im2col(&conv, &taps, &digits, xs, xs, &mut cols);
            let (g, margin) = unfold.shift(p).expect("same-size stride-1 convolution");
            let mut planes = vec![0u8; c * g.pitch];
            for (plane, src) in planes.chunks_exact_mut(g.pitch).zip(digits.chunks_exact(p)) {
                plane[margin..margin + p].copy_from_slice(src);
            }
            let want: Vec<_> = cols.chunks_exact(p).enumerate().map(|(r, row)| (r, row.iter().filter(|&&d| d != 0).count() as u64, row.iter().map(|&d| d as u64 * d as u64).sum())).collect();
            for level in cpu::available() {
                let mut counts = Vec::new();
                let f = |r, n, s| counts.push((r, n, s));
                match level {
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx2 => unfold.each_row_drives::<cpu::Avx2>(&planes, margin, g.pitch, f),
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx512 => unfold.each_row_drives::<cpu::Avx512>(&planes, margin, g.pitch, f),
                    _ => unfold.each_row_drives::<cpu::Portable>(&planes, margin, g.pitch, f),
                }
                assert_eq!(counts, want, "{level:?} {kernel:?} {pads:?}");
            }
            let (ones, [masks, bits]) = (vec![!0u32; p], g.masks(p));
            // Bytes (4-bit digits), and bits (binary cells on the digits' low bits).
            for ((k0, k1), binary) in [(0, k), (1, k - 1), (k / 2, k)].into_iter().flat_map(|r| [(r, false), (r, true)]) {
                let rows = k1 - k0;
                let wts: Vec<f32> = (0..5 * rows).map(|i| if binary { (i * 31 % 3) as f32 - 1.0 } else { (i * 31 % 15) as f32 - 7.0 }).collect();
                let packed = PackedWeights::new(&wts, 5, rows, binary, 15);
                // Packed at every level this CPU runs.
                for level in cpu::available() {
                    let run = |src: &mvm::Rows| {
                        let mut x = mvm::PackedInputs::default();
                        packed.pack_at(level, src, k0, k1, &mut x);
                        let mut ps = vec![f32::NAN; 5 * p];
                        mvm::mvm(&packed, &x, p, &mut ps);
                        ps
                    };
                    let shifted = run(&mvm::Rows { digits: &planes, p, masks: &masks, bits: &bits, shift: Some(g) });
                    assert_eq!(shifted, run(&mvm::Rows::unfolded(&cols, p, &ones)), "{level:?} {kernel:?} {pads:?} rows {k0}..{k1} binary {binary}");
                }
            }
        }
    }

    #[test]
    fn no_weight_slice_is_zero_by_design() {
        use {SignedMapping::*, WeightQuant::*};
        let (out, k) = (2, 40);
        let w: Vec<f32> = (0..out * k).map(|i| (i % k) as f32 / (k - 1) as f32 * 2.0 - 1.0).collect();
        for (bits, quant, signed, slices) in [(1, Uniform, Differential, 3), (2, Uniform, Differential, 2), (4, Uniform, Differential, 1), (1, Away, Differential, 4), (1, Uniform, Offset, 4)] {
            let config = LayerConfig {
                mapping: mapping(Split::Balanced, bits, 4, quant, signed),
                converter: Converter::Ideal,
                input_clip: 1.0,
                input_signed: false,
                noise: Noise::default(),
                params: ColumnParams::default(),
                samples_per_stream: Vec::new(),
            };
            let layer = CrossbarLayer::new(0, "l", &w, None, out, config, 0).unwrap();
            assert_eq!(layer.max_digit.len(), slices, "{bits}-bit slices, {quant:?}, {signed:?}");
            assert!(layer.max_digit.iter().all(|&d| d > 0.0), "{bits}-bit slices, {quant:?}, {signed:?}: {:?}", layer.max_digit);
        }
    }

    /// A 40-input, 4-output linear layer, 4-bit weights in one slice, 4-bit
    /// inputs in two 2-bit streams, an MTJ at `samples` (or per stream).
    fn two_stream_layer(samples: u32, per_stream: Vec<u32>) -> Result<CrossbarLayer> {
        let (out, k) = (4, 40);
        let w: Vec<f32> = (0..out * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0).collect();
        let config = LayerConfig {
            mapping: mapping(Split::Balanced, 4, 2, WeightQuant::Uniform, SignedMapping::Differential),
            converter: Converter::Mtj { curve: crate::mtj::Curve::sigmoid(4.0), samples },
            input_clip: 1.0,
            input_signed: false,
            noise: Noise::default(),
            params: ColumnParams { norm_scale: vec![0.05; 8], norm_shift: vec![-0.4; 8], ..Default::default() },
            samples_per_stream: per_stream,
        };
        CrossbarLayer::new(2, "fc", &w, None, out, config, 9)
    }

    /// Output bits, recorded converter outputs (8 columns: stream-major
    /// within the one subarray and slice) and counts of one image.
    fn run(layer: &CrossbarLayer, image: usize) -> (Vec<u32>, Vec<f32>, OpCounts) {
        let x: Vec<f32> = (0..40).map(|i| ((i * 5 + image * 3) % 17) as f32 / 16.0).collect();
        let (mut y, mut ps, mut c, mut ops) = (vec![0f32; 4], vec![0f32; 8], vec![0f32; 8], OpCounts::default());
        layer.forward(&x, 1, Unfold::Identity, &mut Scratch::default(), image, 5, &mut y, Some(&mut ops), None, Some((&mut ps, &mut c)));
        (y.iter().map(|v| v.to_bits()).collect(), c, ops)
    }

    /// T given per stream, all equal, is the layer's T: the same draws and
    /// bits and counts.
    #[test]
    fn equal_samples_per_stream_are_the_uniform_t() {
        let (uniform, per_stream) = (two_stream_layer(3, Vec::new()).unwrap(), two_stream_layer(1, vec![3, 3]).unwrap());
        for image in 0..4 {
            assert_eq!(run(&uniform, image), run(&per_stream, image), "image {image}");
        }
    }

    /// Each stream samples its own T: an MTJ sample mean times T is an
    /// integer of T's parity, so at T = 1 only ±1 and at T = 3 also ±1/3
    /// appear; the counts take every stream's own T.
    #[test]
    fn each_stream_samples_its_own_t() {
        let layer = two_stream_layer(2, vec![1, 3]).unwrap();
        let (mut thirds, mut ones) = (0, 0);
        for image in 0..64 {
            let (_, c, ops) = run(&layer, image);
            let (lsb, msb) = c.split_at(4);
            assert!(lsb.iter().all(|&v| v == 1.0 || v == -1.0), "stream 0 at T = 1: {lsb:?}");
            for &v in msb {
                let hits = v * 3.0;
                assert!(hits == hits.round() && hits.round() as i32 % 2 != 0 && hits.abs() <= 3.0, "stream 1 at T = 3: {v}");
                if hits.abs() == 1.0 {
                    thirds += 1;
                } else {
                    ones += 1;
                }
            }
            assert_eq!(ops.conversions, 8);
            assert_eq!(ops.mtj_samples, 4 + 4 * 3);
            assert_eq!((ops.pulse_rows, ops.pulse_sq), (ops.active_rows + 2 * msb_drives(image).0, ops.drive_sq + 2 * msb_drives(image).1 as u128));
        }
        assert!(thirds > 0 && ones > 0, "±1/3 {thirds} times, ±1 {ones} times");
    }

    /// Nonzero digits and Σ digit² of the most significant 2-bit stream of
    /// `run`'s image, by hand.
    fn msb_drives(image: usize) -> (u64, u64) {
        let levels = (0..40).map(|i| (((i * 5 + image * 3) % 17) as f32 / 16.0 * 15.0).round() as u64);
        levels.map(|l| l >> 2).fold((0, 0), |(n, s), d| (n + (d != 0) as u64, s + d * d))
    }

    #[test]
    fn samples_per_stream_are_validated() {
        let err = |r: Result<CrossbarLayer>| r.err().expect("refused").to_string();
        assert!(err(two_stream_layer(1, vec![1, 2, 4])).contains("layer 'fc': samples per input stream has 3 values, the mapping has 2 input streams"));
        assert!(err(two_stream_layer(1, vec![0, 2])).contains("must be >= 1, got [0, 2]"));
        let mut ideal = two_stream_layer(1, Vec::new()).unwrap().config;
        ideal.converter = Converter::SenseAmp;
        ideal.samples_per_stream = vec![1, 2];
        let w = vec![0.5f32; 160];
        assert!(err(CrossbarLayer::new(0, "fc", &w, None, 4, ideal, 0)).contains("samples per input stream [1, 2] need the mtj converter"));
    }

    #[test]
    fn digits_recombine_to_the_level() {
        for level in -15..=15 {
            for bits in [1u32, 2, 4] {
                let slices = 4u32.div_ceil(bits);
                let sum: f32 = (0..slices as usize).map(|i| digit(level as f32, i, bits) * (1u32 << (i as u32 * bits)) as f32).sum();
                assert_eq!(sum, level as f32);
            }
        }
    }
}
