//! The RNG contract: every random draw is a pure function of
//! (seed, domain, layer, image, subarray, column, pixel, sample), so results
//! do not depend on threads, batch size or evaluation order.
//!
//! - A *key* is derived from the seed and a list of words by SplitMix64:
//!   `h = seed; for w in words { h = SplitMix64::seed_from_u64(h ^ w).next_u64() }`.
//! - A *stream* is `Xoshiro128PlusPlus::seed_from_u64(key)` (rand_xoshiro).
//! - Per-image draws (MTJ samples, read noise) use 8 *lanes* per
//!   (seed, domain, layer, image): lane `l` is the stream keyed by
//!   `[domain, layer, image, l]` and serves the pixels with `p % 8 == l`.
//!   A lane's draws are consumed in the canonical order subarray → column →
//!   pixel → sample, so the draw for (s, o, p, t) is the lane's n-th output
//!   with n fixed by that order. Eight lanes let the kernels step eight
//!   pixels at once.
//! - Per-layer draws (programming variation of each cell, per-MTJ spread) use
//!   one stream keyed by `[domain, layer]`, consumed in the canonical order of
//!   the cells / devices.
//!
//! ts/reference/rng.ts implements the same contract; both are checked against
//! fixed vectors.

use crate::cpu::Isa;
#[cfg(target_arch = "x86_64")]
use crate::cpu::Level;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::{SplitMix64, Xoshiro128PlusPlus};

pub const LANES: usize = 8;

/// What a stream is used for; part of every key so domains never share draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Domain {
    MtjSample = 1,
    ReadNoise = 2,
    CellVariation = 3,
    MtjDevice = 4,
}

/// A seed given as a double (a JavaScript number): an integer in [0, 2^53).
pub fn seed_from_f64(v: f64) -> crate::Result<u64> {
    if !(v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_991.0) {
        crate::bail!("seed must be an integer in [0, 2^53), got {v}");
    }
    Ok(v as u64)
}

pub fn key(seed: u64, words: &[u64]) -> u64 {
    words.iter().fold(seed, |h, &w| SplitMix64::seed_from_u64(h ^ w).next_u64())
}

pub fn stream(seed: u64, words: &[u64]) -> Xoshiro128PlusPlus {
    Xoshiro128PlusPlus::seed_from_u64(key(seed, words))
}

/// The eight lane streams of one (seed, domain, layer, image), stored
/// lane-major so that one step of all lanes is plain array arithmetic that
/// the compiler vectorises. Bit-identical to eight `Xoshiro128PlusPlus`.
#[derive(Clone)]
pub struct Lanes {
    s: [[u32; LANES]; 4],
}

impl Lanes {
    // `l` indexes the lanes of the state and of the seeds together.
    #[allow(clippy::needless_range_loop)]
    pub fn new(seed: u64, domain: Domain, layer: usize, image: usize) -> Lanes {
        let mut s = [[0u32; LANES]; 4];
        for l in 0..LANES {
            // rand_xoshiro keeps its state private; rebuild the state its
            // `seed_from_u64` would start from (checked by the test below).
            let st = state_of(key(seed, &[domain as u64, layer as u64, image as u64, l as u64]));
            for w in 0..4 {
                s[w][l] = st[w];
            }
        }
        Lanes { s }
    }

    /// One output of every lane: the step of `next_lane` on all lanes at once.
    #[inline(always)]
    // Eight lanes at a time, not an Iterator: it never ends and yields arrays.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> [u32; LANES] {
        std::array::from_fn(|l| self.next_lane(l))
    }

    /// `next` in a kernel compiled for `I` (cpu.rs): AVX2 code from the AVX2
    /// level up. From plain arrays the compiler packed two state words per
    /// register and stepped one lane in scalar code, which made the
    /// generator the converter's critical path. Only for the bodies that
    /// `cpu::multiversion!` runs, where `I` is a level the CPU has.
    #[inline(always)]
    pub(crate) fn next_in<I: Isa>(&mut self) -> [u32; LANES] {
        #[cfg(target_arch = "x86_64")]
        if I::LEVEL >= Level::Avx2 {
            // SAFETY: `I` is at least AVX2 only in a clone run on a CPU with AVX2.
            return unsafe { self.next_avx2() };
        }
        self.next()
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn next_avx2(&mut self) -> [u32; LANES] {
        use std::arch::x86_64::*;
        // Every load and store covers exactly one [u32; 8] array.
        let [s0, s1, s2, s3] = self.s.map(|w| _mm256_loadu_si256(w.as_ptr() as *const __m256i));
        let sum = _mm256_add_epi32(s0, s3);
        let rot7 = _mm256_or_si256(_mm256_slli_epi32::<7>(sum), _mm256_srli_epi32::<25>(sum));
        let out = _mm256_add_epi32(rot7, s0);
        let t = _mm256_slli_epi32::<9>(s1);
        let s2 = _mm256_xor_si256(s2, s0);
        let s3 = _mm256_xor_si256(s3, s1);
        let s1 = _mm256_xor_si256(s1, s2);
        let s0 = _mm256_xor_si256(s0, s3);
        let s2 = _mm256_xor_si256(s2, t);
        let s3 = _mm256_or_si256(_mm256_slli_epi32::<11>(s3), _mm256_srli_epi32::<21>(s3));
        for (w, v) in self.s.iter_mut().zip([s0, s1, s2, s3]) {
            _mm256_storeu_si256(w.as_mut_ptr() as *mut __m256i, v);
        }
        let mut o = [0u32; LANES];
        _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, out);
        o
    }

    /// One output of lane `l`: a Xoshiro128++ step.
    #[inline(always)]
    pub fn next_lane(&mut self, l: usize) -> u32 {
        let [s0, s1, s2, s3] = &mut self.s;
        let out = s0[l].wrapping_add(s3[l]).rotate_left(7).wrapping_add(s0[l]);
        let t = s1[l] << 9;
        s2[l] ^= s0[l];
        s3[l] ^= s1[l];
        s1[l] ^= s2[l];
        s0[l] ^= s3[l];
        s2[l] ^= t;
        s3[l] = s3[l].rotate_left(11);
        out
    }
}

/// The state `Xoshiro128PlusPlus::seed_from_u64(key)` starts from: two
/// SplitMix64 outputs, little-endian, as rand_xoshiro fills its seed bytes
/// (an all-zero seed is replaced by the seed of 0, as rand_xoshiro does).
fn state_of(key: u64) -> [u32; 4] {
    let mut sm = SplitMix64::seed_from_u64(key);
    let (a, b) = (sm.next_u64(), sm.next_u64());
    let st = [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32];
    if st == [0; 4] {
        return state_of(0);
    }
    st
}

/// Uniform in [0, 1) with 24 bits, exactly representable in f32 and f64.
#[inline(always)]
pub fn unit24(u: u32) -> f32 {
    (u >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_equal_rand_xoshiro_streams() {
        let (seed, layer, image) = (42u64, 7usize, 12345usize);
        let mut lanes = Lanes::new(seed, Domain::MtjSample, layer, image);
        let mut refs: Vec<Xoshiro128PlusPlus> = (0..LANES).map(|l| stream(seed, &[Domain::MtjSample as u64, layer as u64, image as u64, l as u64])).collect();
        for step in 0..1000 {
            if step % 3 == 2 {
                let l = step % LANES;
                assert_eq!(lanes.next_lane(l), refs[l].next_u32());
                continue;
            }
            let out = lanes.next();
            for l in 0..LANES {
                assert_eq!(out[l], refs[l].next_u32(), "step {step} lane {l}");
            }
            // The AVX2 step, where this CPU has it, from the same state.
            #[cfg(target_arch = "x86_64")]
            if crate::cpu::best() >= Level::Avx2 {
                let mut fast = lanes.clone();
                let mut portable = lanes.clone();
                // SAFETY: the CPU has AVX2 (checked above).
                assert_eq!(unsafe { fast.next_avx2() }, portable.next(), "step {step}");
                assert_eq!(fast.s, portable.s);
            }
        }
    }

    #[test]
    fn fixed_vectors() {
        // The same vectors are asserted by test/reference.test.ts for the JS side.
        assert_eq!(key(1, &[]), 1);
        assert_eq!(key(42, &[1, 2, 3, 4]), 0x6972_269d_3473_7476);
        let mut r = stream(42, &[1, 2, 3, 4]);
        let first: Vec<u32> = (0..4).map(|_| r.next_u32()).collect();
        assert_eq!(first, vec![2568815041, 2299623974, 3206830162, 226171529]);
        assert_ne!(key(42, &[1, 2, 3, 4]), key(43, &[1, 2, 3, 4]));
        assert_ne!(key(42, &[1, 2, 3, 4]), key(42, &[1, 2, 3, 5]));
    }
}
