//! Weight and activation quantisers. Rounding is `sign(v)·floor(|v| + 0.5)`
//! (half away from zero) everywhere, written out so that the JS reference,
//! whose `Math.round` rounds half up, can repeat it exactly.

use crate::cpu::{Isa, Level, Portable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightQuant {
    /// Symmetric per-output-channel, levels −(2^(b−1)−1)…2^(b−1)−1, with a
    /// digital rescale by max|w|/(2^(b−1)−1). b = 1: sign, rescale mean|w|.
    Uniform,
    /// The authors' quantiser: standardise each output channel, then
    /// `sign(w)·ceil(|w|·2^(b−1))` clamped to ±2^(b−1) (no zero level for
    /// nonzero weights); the weight is `q / 2^(b−1)`, with no rescale.
    Away,
}

#[inline(always)]
pub fn round_half_away(v: f32) -> f32 {
    round_half_away_in::<Portable>(v)
}

/// `round_half_away` in a clone of `I` (cpu.rs), with its `floor`.
#[inline(always)]
pub fn round_half_away_in<I: Isa>(v: f32) -> f32 {
    let r = floor_in::<I>(v.abs() + 0.5);
    if v < 0.0 {
        -r
    } else {
        r
    }
}

/// `floor` in a clone of `I`: in the AVX2 and AVX-512 clones the rounding
/// instruction (SSE4.1), one instruction for the dozen of the emulation —
/// the same bits (floor is exact).
#[inline(always)]
pub fn floor_in<I: Isa>(x: f32) -> f32 {
    if I::LEVEL >= Level::Avx2 {
        x.floor()
    } else {
        floor(x)
    }
}

/// `x.floor()`, bit for bit, without a call: the baseline x86-64 build has
/// no rounding instruction, and outside the kernels' multiversioned clones
/// (e.g. the training step's input levels) libm's `floorf` was 5 % of a
/// PS-QAT step.
/// Branch-free (every case computed, then selected), so that loops over it
/// vectorise: with an early return the input levels stayed scalar.
#[inline(always)]
pub fn floor(x: f32) -> f32 {
    let small = x.abs() < 8_388_608.0;
    // Truncation is exact below 2^23; it rounds negative fractions up. (Not
    // `as i32`, whose saturation stays scalar; the argument is in range.)
    // SAFETY: the argument is finite and below 2^23 in magnitude.
    let t = unsafe { (if small { x } else { 0.0 }).to_int_unchecked::<i32>() } as f32;
    let f = if t > x { t - 1.0 } else { t };
    // floor(−0.0) is −0.0 (and floor(−0.3) is −1, never zero).
    let f = if f == 0.0 { f.copysign(x) } else { f };
    // |x| ≥ 2^23, infinities and NaN are their own floor.
    if small {
        f
    } else {
        x
    }
}

/// Integer levels `q[o][k]` (stored as f32) and the per-channel factor that
/// turns `q` back into a weight.
pub struct QuantizedWeights {
    pub q: Vec<f32>,
    pub scale: Vec<f32>,
}

pub fn quantize_weights(w: &[f32], out: usize, bits: u32, kind: WeightQuant) -> QuantizedWeights {
    let k = w.len() / out;
    let mut q = vec![0f32; w.len()];
    let mut scale = vec![0f32; out];
    for o in 0..out {
        let row = &w[o * k..(o + 1) * k];
        let qrow = &mut q[o * k..(o + 1) * k];
        match kind {
            WeightQuant::Uniform if bits == 1 => {
                let mut sum = 0f32;
                for &v in row {
                    sum += v.abs();
                }
                scale[o] = sum / k as f32;
                for (d, &v) in qrow.iter_mut().zip(row) {
                    *d = if v < 0.0 { -1.0 } else { 1.0 };
                }
            }
            WeightQuant::Uniform => {
                let levels = ((1u32 << (bits - 1)) - 1) as f32;
                let mut max = 0f32;
                for &v in row {
                    max = max.max(v.abs());
                }
                let s = if max > 0.0 { max / levels } else { 1.0 };
                scale[o] = s;
                for (d, &v) in qrow.iter_mut().zip(row) {
                    *d = round_half_away(v / s).clamp(-levels, levels);
                }
            }
            WeightQuant::Away => {
                let mut sum = 0f32;
                for &v in row {
                    sum += v;
                }
                let mean = sum / k as f32;
                let mut ss = 0f32;
                for &v in row {
                    ss += (v - mean) * (v - mean);
                }
                let std = (ss / k as f32).sqrt();
                let std = if std > 0.0 { std } else { 1.0 };
                let half = (1u32 << (bits - 1)) as f32;
                scale[o] = 1.0 / half;
                for (d, &v) in qrow.iter_mut().zip(row) {
                    let z = (v - mean) / std;
                    let m = (z.abs() * half).ceil().min(half);
                    *d = if z < 0.0 { -m } else { m };
                }
            }
        }
    }
    QuantizedWeights { q, scale }
}

/// Activation quantiser: unsigned inputs map [0, clip] to 0…2^a−1; signed
/// inputs map [−clip, clip] to −(2^(a−1)−1)…2^(a−1)−1 (driven with bipolar
/// row voltages). Returns the integer level as f32.
#[derive(Debug, Clone, Copy)]
pub struct InputQuant {
    pub levels: f32,
    pub inv_step: f32,
    pub step: f32,
    pub signed: bool,
}

impl InputQuant {
    pub fn new(bits: u32, clip: f32, signed: bool) -> InputQuant {
        let levels = if signed { ((1u32 << (bits - 1)) - 1) as f32 } else { ((1u64 << bits) - 1) as f32 };
        InputQuant { levels, inv_step: levels / clip, step: clip / levels, signed }
    }

    #[inline(always)]
    pub fn level(&self, x: f32) -> f32 {
        self.level_in::<Portable>(x)
    }

    /// `level` in a clone of `I` (the input levels of every crossbar pass).
    #[inline(always)]
    pub fn level_in<I: Isa>(&self, x: f32) -> f32 {
        let lo = if self.signed { -self.levels } else { 0.0 };
        round_half_away_in::<I>((x * self.inv_step).clamp(lo, self.levels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_levels_and_scale() {
        let w = [0.7, -0.35, 0.1, 0.0, -0.7, 0.05];
        let q = quantize_weights(&w, 2, 4, WeightQuant::Uniform);
        assert_eq!(q.scale, vec![0.1, 0.1]);
        assert_eq!(q.q, vec![7.0, -4.0, 1.0, 0.0, -7.0, 1.0]); // -3.5 → -4, 0.5 → 1
    }

    #[test]
    fn away_has_no_zero_level() {
        let w = [1.0, -1.0, 0.01, -0.01];
        let q = quantize_weights(&w, 1, 2, WeightQuant::Away);
        // mean 0, std = sqrt((1+1+1e-4+1e-4)/4): z of ±0.01 is tiny but nonzero.
        assert_eq!(q.q, vec![2.0, -2.0, 1.0, -1.0]);
        assert_eq!(q.scale, vec![0.5]);
    }

    #[test]
    fn input_levels() {
        let u = InputQuant::new(4, 3.0, false);
        assert_eq!([-1.0, 0.0, 0.1, 0.11, 1.5, 3.0, 9.0].map(|x| u.level(x)), [0.0, 0.0, 1.0, 1.0, 8.0, 15.0, 15.0]);
        let s = InputQuant::new(4, 1.0, true);
        assert_eq!([-2.0, -0.5, 0.5, 2.0].map(|x| s.level(x)), [-7.0, -4.0, 4.0, 7.0]);
    }

    #[test]
    fn floor_is_floor_bit_for_bit() {
        let mut cases = vec![
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            2.5,
            -2.5,
            8_388_607.5,
            -8_388_607.5,
            8_388_608.0,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            0.999_999_94,
            -0.999_999_94,
        ];
        let mut x = 0x1234_5678u32;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            cases.push(f32::from_bits(x));
        }
        for v in cases {
            let want = v.floor();
            for got in [floor(v), floor_in::<Portable>(v), floor_in::<crate::cpu::Avx2>(v), floor_in::<crate::cpu::Avx512>(v)] {
                assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{v}: {got} vs {want}");
            }
        }
    }
}
