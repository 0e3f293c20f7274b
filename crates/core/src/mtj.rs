//! The stochastic SOT-MTJ converter: a normalised partial sum x sets the
//! switching probability P(+1) = sigmoid(k·ς·(x − x0 − δ)); the MTJ is
//! written, read and reset T times, giving T samples of ±1. ς (slope factor)
//! and δ (offset) model device-to-device spread per MTJ.

use crate::cpu::Isa;
#[cfg(target_arch = "x86_64")]
use crate::cpu::Level;
use crate::pmath;

/// A transfer curve `P(+1) = sigmoid(slope·(x − center))` on x clamped to
/// [−clamp, clamp]. All curves the authors used have this form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Curve {
    pub slope: f32,
    pub center: f32,
    pub clamp: f32,
}

/// The transfer curves by name; `sigmoid` and `tanh` take the sensitivity a.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Sigmoid,
    Tanh,
    Fitted,
}

impl Curve {
    /// The curve `transfer` names, with sensitivity `a` (unused by `fitted`).
    pub fn new(transfer: Transfer, a: f32) -> Curve {
        match transfer {
            Transfer::Sigmoid => Curve::sigmoid(a),
            Transfer::Tanh => Curve::tanh(a),
            Transfer::Fitted => Curve::fitted(),
        }
    }

    /// `sigmoid(a·x)` (the paper's default, a = 4).
    pub fn sigmoid(a: f32) -> Curve {
        Curve { slope: a, center: 0.0, clamp: 1.0 }
    }

    /// `(1 + tanh(a·x)) / 2`, which equals `sigmoid(2a·x)`.
    pub fn tanh(a: f32) -> Curve {
        Curve { slope: 2.0 * a, center: 0.0, clamp: 1.0 }
    }

    /// The authors' fitted device curve `sigmoid(3.598·(x − 0.0082))` on
    /// x clamped to ±0.8.
    pub fn fitted() -> Curve {
        Curve { slope: 3.598, center: 0.0082, clamp: 0.8 }
    }
}

/// Per-MTJ device: its own slope factor and offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Device {
    pub slope: f32,
    pub offset: f32,
}

impl Device {
    pub const NOMINAL: Device = Device { slope: 1.0, offset: 0.0 };

    /// P(+1) scaled to the 24-bit uniform range: a sample is +1 when
    /// `(u >> 8) < threshold`, compared exactly in f32.
    #[inline(always)]
    pub fn threshold(&self, curve: &Curve, x: f32) -> f32 {
        let x = x.max(-curve.clamp).min(curve.clamp);
        pmath::sigmoid(curve.slope * self.slope * (x - curve.center - self.offset)) * 16_777_216.0
    }

    /// E[sample] = 2·P(+1) − 1.
    pub fn expected(&self, curve: &Curve, x: f32) -> f32 {
        let x = x.clamp(-curve.clamp, curve.clamp);
        2.0 * pmath::sigmoid(curve.slope * self.slope * (x - curve.center - self.offset)) - 1.0
    }
}

/// One column's thresholds for every integer partial sum that lands inside
/// the curve's clamp range; outside it the clamped end values hold. Each
/// entry is `Device::threshold` of the same f32 value the converter would
/// compute, so a lookup gives the same bits as the sigmoid (which costs an
/// exp and a division per partial sum).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    lo: i32,
    table: Vec<f32>,
}

impl Thresholds {
    /// Most entries a column's table may have.
    const MAX: usize = 4096;

    /// Largest table looked up with register permutes at the AVX-512 level
    /// (eight two-register permutes and seven blends per 16 lookups). On
    /// Zen 4 a gather took 0.75–0.8 ns per lookup at every size; permutes
    /// 0.12 (32 entries), 0.19 (128) and 0.30 ns (256), but 0.53–0.69 ns at
    /// 512, where the table no longer fits the registers.
    const PERMUTED: usize = 256;

    /// The table for `x = ps·scale + shift` over integer `ps`, or `None` when
    /// the unclamped range spans more than `MAX` integers.
    // `!(a < b)` on floats is deliberate: a NaN bound gives no table.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn new(device: &Device, curve: &Curve, scale: f32, shift: f32) -> Option<Thresholds> {
        let x = |v: i32| v as f32 * scale + shift;
        if !(scale.is_finite() && shift.is_finite()) || scale == 0.0 {
            return None;
        }
        // Integers at which x is clamped at either end (f32 rounding is
        // monotone in v, so every integer beyond them is clamped too).
        let (a, b) = ((-curve.clamp - shift) / scale, (curve.clamp - shift) / scale);
        let (from, to) = (a.min(b).floor() - 2.0, a.max(b).ceil() + 2.0);
        if !(to - from < Self::MAX as f32) || from < -8_388_608.0 || to > 8_388_608.0 {
            return None;
        }
        let (lo, hi) = (from as i32, to as i32);
        let clamped = |v: i32| x(v).abs() >= curve.clamp;
        if !clamped(lo) || !clamped(hi) {
            return None;
        }
        let mut table: Vec<f32> = (lo..=hi).map(|v| device.threshold(curve, x(v))).collect();
        // Padded with the clamped end value to the power of two (16 at
        // least) that `lookup_in` permutes: indices past the true end read
        // the value they would be clamped to.
        let len = if table.len() <= Self::PERMUTED { table.len().next_power_of_two().max(16) } else { table.len() };
        table.resize(len, table[table.len() - 1]);
        Some(Thresholds { lo, table })
    }

    /// The threshold of an integer partial sum `ps`.
    #[inline(always)]
    pub fn get(&self, ps: f32) -> f32 {
        self.get_lanes(&[ps])[0]
    }

    /// Sets `out` to the thresholds of the integer partial sums `ps` (a
    /// multiple of 8 long) with register permutes where the table is small,
    /// as a gather takes several cycles per lookup: at the AVX-512 level,
    /// 16 lookups in one permute for a table of 16 entries (padded up to 16
    /// by `new`; typical of 1-bit slices and streams), in one permute per
    /// 32 entries up to `PERMUTED` entries (4-bit slices and streams: 36–325
    /// entries on ResNet20), `permute_blocks`; at AVX2, a 16-entry table in
    /// two permutes and a blend per 8 lookups. Larger tables, and the AVX2
    /// level beyond 16 entries, gather. Measured choices: the
    /// permutes write into `out` resized (not cleared and refilled, which
    /// added a memset per row); the gather extends it from arrays (an
    /// explicit loop made that path 5 % slower).
    ///
    /// `I` is the level of the kernel this inlines into, only in the bodies
    /// that `cpu::multiversion!` runs.
    #[inline(always)]
    pub(crate) fn lookup_in<I: Isa>(&self, ps: &[f32], out: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        if I::LEVEL == Level::Avx2 && self.table.len() == 16 {
            out.resize(ps.len(), 0.0);
            // SAFETY: `I` is a level only in a clone run on a CPU with its features.
            unsafe { self.permute_halves(ps, out) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if I::LEVEL == Level::Avx512 && self.table.len() <= Self::PERMUTED {
            out.resize(ps.len(), 0.0);
            // SAFETY: an AVX-512 clone, so a CPU with AVX-512F; `new` padded
            // the table to a power of two from 16 to `PERMUTED` entries.
            unsafe {
                match self.table.len() {
                    16 => self.permute_blocks::<0>(ps, out),
                    32 => self.permute_blocks::<1>(ps, out),
                    64 => self.permute_blocks::<2>(ps, out),
                    128 => self.permute_blocks::<4>(ps, out),
                    _ => self.permute_blocks::<8>(ps, out),
                }
            }
            return;
        }
        out.clear();
        out.extend(ps.chunks_exact(8).flat_map(|v| self.get_lanes::<8>(v.try_into().unwrap())));
    }

    /// `lookup_in` for a table of `32·B` entries (16 for `B` = 0: one
    /// one-register permute), 16 values at a time: the index's low five
    /// bits pick an entry of each block of 32 (one two-register permute per
    /// block), its higher bits the block (a tree of blends).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn permute_blocks<const B: usize>(&self, ps: &[f32], out: &mut [f32]) {
        use std::arch::x86_64::*;
        let len = if B == 0 { 16 } else { 32 * B };
        debug_assert!(self.table.len() == len && out.len() == ps.len());
        // The loads read the table's entries, 16-value chunks of `ps` (the
        // last one masked), and the stores write the same of `out`.
        let t = self.table.as_ptr();
        let first = _mm512_loadu_ps(t);
        let blocks: [(__m512, __m512); B] = std::array::from_fn(|b| (_mm512_loadu_ps(t.add(32 * b)), _mm512_loadu_ps(t.add(32 * b + 16))));
        let (lo, top) = (_mm512_set1_ps(self.lo as f32), _mm512_set1_ps((len - 1) as f32));
        let lookup = |x: __m512| {
            // The index of get_lanes: (ps − lo) clamped to the table (NaN → 0).
            let i = _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_sub_ps(x, lo), _mm512_setzero_ps()), top));
            if B == 0 {
                return _mm512_permutexvar_ps(i, first);
            }
            let mut v: [__m512; B] = std::array::from_fn(|b| _mm512_permutex2var_ps(blocks[b].0, i, blocks[b].1));
            let mut width = 1;
            while width < B {
                let upper = _mm512_test_epi32_mask(i, _mm512_set1_epi32(32 * width as i32));
                for b in (0..B).step_by(2 * width) {
                    v[b] = _mm512_mask_blend_ps(upper, v[b], v[b + width]);
                }
                width *= 2;
            }
            v[0]
        };
        let whole = ps.len() / 16 * 16;
        for (src, dst) in ps[..whole].chunks_exact(16).zip(out.chunks_exact_mut(16)) {
            _mm512_storeu_ps(dst.as_mut_ptr(), lookup(_mm512_loadu_ps(src.as_ptr())));
        }
        if whole < ps.len() {
            let mask = (1u16 << (ps.len() - whole)) - 1;
            let x = _mm512_maskz_loadu_ps(mask, ps.as_ptr().add(whole));
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(whole), mask, lookup(x));
        }
    }

    /// A 16-entry table at the AVX2 level, by `x86::halves` (on AMD cores
    /// before Zen 4 a gather is microcoded and slower still).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn permute_halves(&self, ps: &[f32], out: &mut [f32]) {
        use std::arch::x86_64::*;
        // The loads read the 16-entry table and 8-value chunks of `ps`, the
        // stores write 8-value chunks of `out`.
        let t = self.table.as_ptr();
        let (a, b) = (_mm256_loadu_ps(t), _mm256_loadu_ps(t.add(8)));
        let (lo, top) = (_mm256_set1_ps(self.lo as f32), _mm256_set1_ps(15.0));
        for (src, dst) in ps.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
            // The index of get_lanes: (ps − lo) clamped to 0..=15 (NaN → 0).
            let i = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(src.as_ptr()), lo), _mm256_setzero_ps()), top));
            _mm256_storeu_ps(dst.as_mut_ptr(), x86::halves(a, b, i));
        }
    }

    /// Thresholds of `N` integer partial sums: whole-array steps that
    /// vectorise into one gather.
    #[inline(always)]
    pub fn get_lanes<const N: usize>(&self, ps: &[f32; N]) -> [f32; N] {
        let (lo, last) = (self.lo as f32, (self.table.len() - 1) as f32);
        // SAFETY: the value is clamped to 0..=last (a NaN becomes 0 through
        // `max`), so it converts exactly and indexes inside the table.
        // 32-bit offsets, so that the gather takes eight per instruction.
        let i: [i32; N] = std::array::from_fn(|l| unsafe { (ps[l] - lo).max(0.0).min(last).to_int_unchecked::<i32>() });
        std::array::from_fn(|l| unsafe { *self.table.as_ptr().offset(i[l] as isize) })
    }
}

/// `table[i[l]]` for eight indices below 16: one two-register permute at
/// the AVX-512 level, two permutes and a blend at AVX2, where the compiler
/// made eight scalar loads. `I` as for `Thresholds::lookup_in`.
#[inline(always)]
pub(crate) fn pick16<I: Isa>(table: &[f32; 16], i: [i32; 8]) -> [f32; 8] {
    debug_assert!(i.iter().all(|&i| (0..16).contains(&i)));
    #[cfg(target_arch = "x86_64")]
    if I::LEVEL >= Level::Avx2 {
        // SAFETY: `I` is a level only in a clone run on a CPU with its features.
        return unsafe {
            if I::LEVEL == Level::Avx512 {
                x86::pick16_avx512(table, i)
            } else {
                x86::pick16_avx2(table, i)
            }
        };
    }
    i.map(|i| table[i as usize])
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    // The loads read the 16 entries of `table` and the 8 of `i`, the store writes the 8 of the result.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl")]
    pub unsafe fn pick16_avx512(table: &[f32; 16], i: [i32; 8]) -> [f32; 8] {
        let (a, b) = (_mm256_loadu_ps(table.as_ptr()), _mm256_loadu_ps(table.as_ptr().add(8)));
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_permutex2var_ps(a, _mm256_loadu_si256(i.as_ptr() as *const __m256i), b));
        out
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn pick16_avx2(table: &[f32; 16], i: [i32; 8]) -> [f32; 8] {
        let (a, b) = (_mm256_loadu_ps(table.as_ptr()), _mm256_loadu_ps(table.as_ptr().add(8)));
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), halves(a, b, _mm256_loadu_si256(i.as_ptr() as *const __m256i)));
        out
    }

    /// Entry `i` (0..16) of the 16-entry table `a`, `b` without AVX-512's
    /// two-register permute: each half permuted by the index's low three
    /// bits, the upper half taken where the index is 8 or more.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn halves(a: __m256, b: __m256, i: __m256i) -> __m256 {
        let upper = _mm256_castsi256_ps(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(7)));
        _mm256_blendv_ps(_mm256_permutevar8x32_ps(a, i), _mm256_permutevar8x32_ps(b, i), upper)
    }
}

/// ±1 from one uniform draw and a threshold.
#[inline(always)]
pub fn sample(u: u32, threshold: f32) -> f32 {
    if ((u >> 8) as f32) < threshold {
        1.0
    } else {
        -1.0
    }
}

/// The threshold as the integer a 24-bit draw must stay below: for an
/// integer k, k < t ⇔ k < ⌈t⌉, so `hit(u, integer_threshold(t))` is
/// `sample(u, t) > 0` without converting each draw to f32 (a NaN threshold,
/// as `sample`'s comparison, is never hit). ⌈t⌉ from the truncation, which
/// vectorises as one conversion where the saturating `as` went lane by lane.
#[inline(always)]
// Not `clamp`: it keeps a NaN, which the unchecked conversion must not see.
#[allow(clippy::manual_clamp)]
pub fn integer_threshold(t: f32) -> i32 {
    // Thresholds lie in [0, 2^24]; `max` maps NaN to 0 (never hit).
    let t = t.max(0.0).min(16_777_216.0);
    // SAFETY: t is finite and within i32's range.
    let i: i32 = unsafe { t.to_int_unchecked() };
    i + ((i as f32) < t) as i32
}

/// Whether a draw falls below an integer threshold: a +1 sample.
#[inline(always)]
pub fn hit(u: u32, threshold: i32) -> bool {
    ((u >> 8) as i32) < threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table gives the sigmoid's own bits for every integer partial sum,
    /// inside the clamp range and far outside it, for either sign of scale.
    #[test]
    fn thresholds_table_equals_the_curve() {
        let dev = Device { slope: 1.07, offset: -0.03 };
        // Table sizes (entries before padding, after) on both sides of the
        // 16 entries a permute holds, of each block count of
        // `permute_blocks` and of the largest table it permutes.
        for (curve, scale, shift, entries) in [
            (Curve::sigmoid(4.0), 0.0123f32, 0.21f32, (169, 256)),
            (Curve::sigmoid(4.0), -0.0071, -0.4, (288, 288)),
            (Curve::fitted(), 0.3, 0.05, (11, 16)),
            (Curve::sigmoid(4.0), 0.2, 0.1, (16, 16)),
            (Curve::sigmoid(4.0), 0.18, 0.0, (17, 32)),
            (Curve::sigmoid(4.0), 0.06, 0.3, (39, 64)),
            (Curve::sigmoid(4.0), -0.025, 0.1, (85, 128)),
        ] {
            let t = Thresholds::new(&dev, &curve, scale, shift).expect("small range");
            assert_eq!(t.table.len(), entries.1, "{} entries padded", entries.0);
            for v in -5000..5000 {
                let ps = v as f32;
                assert_eq!(t.get(ps).to_bits(), dev.threshold(&curve, ps * scale + shift).to_bits(), "ps {v}");
                // Calibration reads E[sample] = 2P − 1 off the same table.
                assert_eq!((2.0 * (t.get(ps) / 16_777_216.0) - 1.0).to_bits(), dev.expected(&curve, ps * scale + shift).to_bits(), "ps {v}");
            }
            // The row lookup (permutes for small tables at the AVX-512 and
            // AVX2 levels, a gather otherwise) agrees at every level, NaN
            // included, in a whole vector of 16 and in a last one of 8.
            let ps: Vec<f32> = (-5000..5000).map(|v| v as f32).chain([f32::NAN; 8]).collect();
            crate::cpu::multiversion! {
                fn lookup_at(t: &Thresholds, ps: &[f32], out: &mut Vec<f32>) {
                    I => t.lookup_in::<I>(ps, out)
                }
            }
            for level in crate::cpu::available() {
                let mut got = vec![1.0; 3];
                lookup_at(level, &t, &ps, &mut got);
                assert_eq!(got.len(), ps.len());
                for (v, g) in ps.iter().zip(&got) {
                    assert_eq!(g.to_bits(), t.get(*v).to_bits(), "{level:?}: lookup of ps {v}");
                }
            }
        }
        assert!(Thresholds::new(&dev, &Curve::sigmoid(4.0), 1e-6, 0.0).is_none(), "a range too wide for a table");
    }
    use crate::rng::{Domain, Lanes};

    /// The integer comparison is the f32 one for every threshold kind (whole,
    /// fractional, the ends, NaN) and draws on both sides of it.
    #[test]
    fn integer_threshold_hits_as_the_sample() {
        let mut ts = vec![0.0, -0.0, 0.5, 1.0, 16_777_215.0, 16_777_215.5, 16_777_216.0, f32::NAN];
        for k in [1u32, 2, 1000, 8_388_607, 8_388_608, 8_388_609, 12_345_678] {
            let t = k as f32;
            ts.extend([t, f32::from_bits(t.to_bits() - 1), f32::from_bits(t.to_bits() + 1), t + 0.25, t - 0.75]);
        }
        ts.extend((0..1000).map(|i| pmath::sigmoid(i as f32 * 0.013 - 6.0) * 16_777_216.0));
        for &t in &ts {
            let ti = integer_threshold(t);
            let near = if t.is_finite() { t as i64 } else { 0 };
            for k in (near - 3..=near + 3).filter(|k| (0..1 << 24).contains(k)) {
                for low in [0u32, 0x55, 0xff] {
                    let u = (k as u32) << 8 | low;
                    assert_eq!(hit(u, ti), sample(u, t) > 0.0, "t {t} draw {k}");
                }
            }
        }
    }

    /// The mean of many samples matches the curve's expectation within
    /// binomial bounds: for N = 20,000 samples the standard error of the
    /// mean of ±1 draws is sqrt((1 − m²)/N) ≤ 0.00707; we allow 4.5 standard
    /// errors (two-sided p ≈ 7e-6 per point, 41 points, seed 2024).
    #[test]
    fn sample_mean_matches_expectation() {
        let curve = Curve::sigmoid(4.0);
        let dev = Device::NOMINAL;
        let n = 20_000;
        let mut lanes = Lanes::new(2024, Domain::MtjSample, 0, 0);
        for i in 0..=40 {
            let x = -1.2 + i as f32 * 0.06;
            let thr = dev.threshold(&curve, x);
            let mut sum = 0f64;
            for _ in 0..n / 8 {
                for u in lanes.next() {
                    sum += sample(u, thr) as f64;
                }
            }
            let mean = sum / n as f64;
            let m = dev.expected(&curve, x) as f64;
            let se = ((1.0 - m * m) / n as f64).sqrt();
            assert!((mean - m).abs() <= 4.5 * se + 1e-12, "x {x}: mean {mean} expected {m} (se {se})");
            // E[sample] = tanh(a·x/2) for the sigmoid curve.
            let xc = (x as f64).clamp(-1.0, 1.0);
            assert!((m - (2.0 * xc).tanh()).abs() < 1e-6);
        }
    }

    #[test]
    fn curves() {
        let d = Device::NOMINAL;
        assert!((Device::NOMINAL.expected(&Curve::tanh(4.0), 0.1) as f64 - (0.4f64).tanh()).abs() < 1e-6);
        assert_eq!(d.threshold(&Curve::fitted(), 5.0), d.threshold(&Curve::fitted(), 0.8));
        let spread = Device { slope: 1.5, offset: 0.1 };
        assert!((spread.expected(&Curve::sigmoid(4.0), 0.1)).abs() < 1e-6);
    }
}
