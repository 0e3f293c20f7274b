//! Partial-sum converters. Each turns one row of partial sums (one column of
//! one subarray, one weight slice and input stream, all pixels of the image)
//! into values in partial-sum units and adds them, shifted, into the layer's
//! accumulator.

use crate::cpu::{self, multiversion, Isa};
use crate::mtj::{self, Curve, Device, Thresholds};
use crate::pmath;
use crate::rng::{unit24, Lanes, LANES};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Converter {
    /// The analog value itself.
    Ideal,
    /// Uniform `bits`-bit quantisation of [lo, lo + step·(2^bits − 1)].
    Adc { bits: u32 },
    /// Deterministic sign of the normalised partial sum.
    SenseAmp,
    /// Stochastic MTJ: `samples` draws of ±1 from the transfer curve.
    Mtj { curve: Curve, samples: u32 },
}

impl Converter {
    /// Whether the converter reads the normalised value `x = ps·scale + shift`
    /// and reports through the readout `gain·c + offset`.
    pub fn normalises(&self) -> bool {
        matches!(self, Converter::SenseAmp | Converter::Mtj { .. })
    }
}

/// Per-column parameters of one converter (one subarray, slice, stream,
/// output column).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    /// ADC: lowest level and step. Normalising converters: x = ps·scale + shift.
    pub lo: f32,
    pub step: f32,
    pub scale: f32,
    pub shift: f32,
    /// Normalising converters report `gain·c + offset` in partial-sum units.
    pub gain: f32,
    pub offset: f32,
    pub device: Device,
}

/// Random state of one image in one layer.
pub struct Draws {
    pub samples: Lanes,
    pub read: Option<(Lanes, f32)>,
    /// Scratch for one row of thresholds.
    pub thresholds: Vec<f32>,
}

impl Draws {
    /// Additive read noise on one conversion of pixel `p` (0 when disabled).
    #[inline(always)]
    fn read_noise(&mut self, lane: usize) -> f32 {
        match &mut self.read {
            None => 0.0,
            Some((lanes, sigma)) => {
                let u1 = 1.0 - unit24(lanes.next_lane(lane));
                let u2 = unit24(lanes.next_lane(lane));
                *sigma * pmath::gaussian(u1, u2)
            }
        }
    }
}

/// Converts `ps[p]` for all pixels and does `acc[p] += shift_factor · value`.
/// `record` (training) receives each pixel's converter output before the
/// readout: the analog/ADC value, the sign, or the MTJ sample mean.
/// Random draws are taken pixel by pixel in lane order (see rng.rs): for
/// pixel p, lane p % 8, samples t = 0..T in order.
/// `table`: the column's MTJ thresholds for integer partial sums, if built.
#[allow(clippy::too_many_arguments)]
pub fn convert_row(conv: &Converter, col: &Column, table: Option<&Thresholds>, ps: &[f32], acc: &mut [f32], factor: f32, draws: &mut Draws, record: Option<&mut [f32]>) {
    convert_row_at(cpu::level(), conv, col, table, ps, acc, factor, draws, record)
}

multiversion! {
    /// `convert_row` in `level`'s clone (cpu.rs): the same bits and draws at every level.
    fn convert_row_at(conv: &Converter, col: &Column, table: Option<&Thresholds>, ps: &[f32], acc: &mut [f32], factor: f32, draws: &mut Draws, record: Option<&mut [f32]>) {
        I => convert::<I>(conv, col, table, ps, acc, factor, draws, record)
    }
}

/// `acc[p] += value · factor` and `record[p] = recorded` for every pixel,
/// `(value, recorded) = f(ps[p])` after the read noise (drawn pixel by
/// pixel, in order). One loop per case, none testing for noise or a record
/// per pixel: when the MTJ arm grew, LLVM stopped taking those tests out
/// of the ideal converter's loop, which ran in scalar code (ideal 4w4a 25 %
/// slower).
#[inline(always)]
fn each_read(acc: &mut [f32], ps: &[f32], factor: f32, record: Option<&mut [f32]>, draws: &mut Draws, f: impl Fn(f32) -> (f32, f32)) {
    #[inline(always)]
    fn each(acc: &mut [f32], ps: &[f32], factor: f32, record: Option<&mut [f32]>, mut f: impl FnMut(usize, f32) -> (f32, f32)) {
        match record {
            None => {
                for (p, (a, &v)) in acc.iter_mut().zip(ps).enumerate() {
                    *a += f(p, v).0 * factor;
                }
            }
            Some(r) => {
                for (p, ((a, &v), r)) in acc.iter_mut().zip(ps).zip(r).enumerate() {
                    let (x, c) = f(p, v);
                    *a += x * factor;
                    *r = c;
                }
            }
        }
    }
    if draws.read.is_none() {
        each(acc, ps, factor, record, |_, v| f(v))
    } else {
        each(acc, ps, factor, record, |p, v| f(v + draws.read_noise(p % LANES)))
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn convert<I: Isa>(conv: &Converter, col: &Column, table: Option<&Thresholds>, ps: &[f32], acc: &mut [f32], factor: f32, draws: &mut Draws, mut record: Option<&mut [f32]>) {
    let noisy = draws.read.is_some();
    #[inline(always)]
    fn keep(record: &mut Option<&mut [f32]>, p: usize, c: f32) {
        if let Some(r) = record.as_deref_mut() {
            r[p] = c;
        }
    }
    match *conv {
        Converter::Ideal => each_read(acc, ps, factor, record, draws, |v| (v, v)),
        Converter::Adc { bits } => {
            let top = ((1u64 << bits) - 1) as f32;
            each_read(acc, ps, factor, record, draws, |v| {
                let code = ((v - col.lo) / col.step + 0.5).floor().clamp(0.0, top);
                let v = col.lo + code * col.step;
                (v, v)
            })
        }
        Converter::SenseAmp => each_read(acc, ps, factor, record, draws, |v| {
            let c = if v * col.scale + col.shift >= 0.0 { 1.0 } else { -1.0 };
            (col.gain * c + col.offset, c)
        }),
        Converter::Mtj { curve, samples } => {
            let t_inv = 1.0 / samples as f32;
            let n = ps.len();
            let full = if noisy { 0 } else { n / LANES * LANES };
            // Eight pixels at a time: one step of the eight lanes per sample.
            // Plain loops over fixed arrays so that the compiler vectorises
            // the thresholds, the generator and the comparisons.
            let dev = col.device;
            // Thresholds first, in one long loop the compiler vectorises.
            let thr = &mut draws.thresholds;
            match table {
                Some(t) => t.lookup_in::<I>(&ps[..full], thr),
                None => {
                    thr.clear();
                    thr.extend(ps[..full].iter().map(|&v| dev.threshold(&curve, v * col.scale + col.shift)));
                }
            }
            // A local copy of the generator stays in registers.
            let mut lanes = draws.samples.clone();
            let readout = |c: f32| (col.gain * c + col.offset) * factor;
            let (high, low) = (readout(1.0), readout(-1.0));
            if samples == 1 && record.is_none() {
                // One sample is ±1 exactly, so its readout is one of two
                // values: a select instead of three multiply-adds.
                for b in (0..full).step_by(LANES) {
                    let t: [f32; LANES] = thr[b..b + LANES].try_into().unwrap();
                    let a: &mut [f32; LANES] = (&mut acc[b..b + LANES]).try_into().unwrap();
                    let u = lanes.next_in::<I>();
                    let v: [f32; LANES] = std::array::from_fn(|l| if mtj::sample(u[l], t[l]) > 0.0 { high } else { low });
                    for l in 0..LANES {
                        a[l] += v[l];
                    }
                }
            } else {
                // With fewer than 16 samples, the mean of a pixel's samples
                // and its readout are one of T + 1 values each, picked by the
                // hit count with a register permute: the conversion and the
                // readout's dependent multiply-adds after every pixel's last
                // sample were the kernel's critical path at T = 4.
                let mean = |h: usize| (2 * h.min(samples as usize) as i32 - samples as i32) as f32 * t_inv;
                let levels = (samples < 16).then(|| (std::array::from_fn::<f32, 16, _>(|h| readout(mean(h))), std::array::from_fn::<f32, 16, _>(mean)));
                for b in (0..full).step_by(LANES) {
                    let t: [f32; LANES] = thr[b..b + LANES].try_into().unwrap();
                    let a: &mut [f32; LANES] = (&mut acc[b..b + LANES]).try_into().unwrap();
                    // Counted as integer hits against integer thresholds: per
                    // sample a shift, a compare and an add, where ±1 in f32 took
                    // a conversion and a select more. The sum of the ±1 samples
                    // is 2·hits − T, exact either way.
                    let ti: [i32; LANES] = std::array::from_fn(|l| mtj::integer_threshold(t[l]));
                    let mut hits = [0i32; LANES];
                    for _ in 0..samples {
                        let u = lanes.next_in::<I>();
                        for l in 0..LANES {
                            hits[l] += mtj::hit(u[l], ti[l]) as i32;
                        }
                    }
                    let (v, c) = match &levels {
                        Some((values, means)) => (mtj::pick16::<I>(values, hits), record.is_some().then(|| mtj::pick16::<I>(means, hits))),
                        None => {
                            let c: [f32; LANES] = std::array::from_fn(|l| (2 * hits[l] - samples as i32) as f32 * t_inv);
                            (c.map(readout), Some(c))
                        }
                    };
                    for l in 0..LANES {
                        a[l] += v[l];
                    }
                    if let (Some(r), Some(c)) = (record.as_deref_mut(), c) {
                        r[b..b + LANES].copy_from_slice(&c);
                    }
                }
            }
            draws.samples = lanes;
            for p in full..n {
                let lane = p % LANES;
                let mut count = 0f32;
                let mut thr = col.device.threshold(&curve, ps[p] * col.scale + col.shift);
                for _ in 0..samples {
                    if noisy {
                        // Read noise enters every sample: each is its own write pulse.
                        let v = ps[p] + draws.read_noise(lane);
                        thr = col.device.threshold(&curve, v * col.scale + col.shift);
                    }
                    count += mtj::sample(draws.samples.next_lane(lane), thr);
                }
                let c = count * t_inv;
                acc[p] += readout(c);
                keep(&mut record, p, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Level;
    use crate::rng::Domain;

    /// Every converter at every level this CPU runs (the portable clone and
    /// the AVX2 / AVX-512 ones, with their generator and threshold lookup)
    /// gives the same accumulator bits, recorded outputs and generator
    /// state, with and without read noise, a thresholds table or a record.
    #[test]
    fn every_level_gives_the_same_bits() {
        let curve = Curve::sigmoid(4.0);
        let device = Device { slope: 1.07, offset: -0.03 };
        let col = Column { lo: -40.0, step: 3.0, scale: 0.05, shift: 0.1, gain: 0.8, offset: -0.2, device };
        // Tables of 16 entries (one permute), of 64 (permuted in blocks at
        // AVX-512, gathered at AVX2) and of 340 (gathered).
        let small = Column { scale: 0.7, ..col };
        let wide = Column { scale: 0.006, ..col };
        // T = 4 picks the readout by the hit count, T = 16 computes it.
        let converters =
            [Converter::Ideal, Converter::Adc { bits: 4 }, Converter::SenseAmp, Converter::Mtj { curve, samples: 1 }, Converter::Mtj { curve, samples: 4 }, Converter::Mtj { curve, samples: 16 }];
        // 203 pixels: full blocks of eight and a tail; integer partial sums.
        let ps: Vec<f32> = (0..203).map(|i| ((i * 7919 % 161) as f32) - 80.0).collect();
        for conv in converters {
            for c in [col, small, wide] {
                let table = Thresholds::new(&c.device, &curve, c.scale, c.shift);
                assert!(table.is_some());
                for (use_table, noise, recording) in [(false, 0.0, false), (true, 0.0, false), (true, 0.0, true), (false, 0.3, true)] {
                    let table = if use_table { table.as_ref() } else { None };
                    let run = |level: Level| {
                        let mut draws = Draws { samples: Lanes::new(7, Domain::MtjSample, 2, 3), read: (noise > 0.0).then(|| (Lanes::new(7, Domain::ReadNoise, 2, 3), noise)), thresholds: Vec::new() };
                        let mut acc: Vec<f32> = (0..ps.len()).map(|i| i as f32 * 0.25).collect();
                        let mut rec = recording.then(|| vec![f32::NAN; ps.len()]);
                        convert_row_at(level, &conv, &c, table, &ps, &mut acc, 4.0, &mut draws, rec.as_deref_mut());
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        (bits(&acc), rec.map(|r| bits(&r)), draws.samples.next(), draws.read.map(|(mut l, _)| l.next()))
                    };
                    let want = run(Level::Portable);
                    for level in cpu::available() {
                        assert!(run(level) == want, "{level:?}: {conv:?} table {use_table} noise {noise} record {recording}");
                    }
                }
            }
        }
    }
}
