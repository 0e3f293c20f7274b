//! Integer crossbar MVM: exact partial sums of u8 input digits and i8 weight
//! digits. The f32 kernel (gemm.rs) gives the same values whenever the cells
//! hold integer digits (sums below 2^24 are exact in f32), so this is purely
//! a faster way to the same bits. Two kernels:
//! - bytes: with AVX-512 VNNI, `vpdpbusd` does 64 multiply-accumulates per
//!   instruction;
//! - bits, for binary cells (−1, 0, 1) and binary inputs (1-bit slices and
//!   streams): eight rows per byte, `popcount(x & w⁺) − popcount(x & w⁻)`,
//!   512 cell reads per byte-popcount instruction with AVX-512 BITALG.

/// Weights of one (slice, subarray), packed for one of the kernels.
pub enum PackedWeights {
    /// i8 digits `[out][kq][4]`, rows padded to a multiple of 4 by zeros.
    Bytes { w: Vec<i8>, out: usize, quads: usize },
    /// Per output and group of eight rows, a byte of the +1 cells and one of
    /// the −1 cells (bit b = row 8·g + b).
    Bits { pos: Vec<u8>, neg: Vec<u8>, out: usize, groups: usize },
}

/// One subarray's input digits of one stream, packed for the layer's kernel.
#[derive(Default)]
pub struct PackedInputs {
    /// Bytes kernel: `[kq][p][4]`. Bits kernel: `[groups][stride]`, a byte
    /// per pixel (padded to whole blocks) holding eight rows.
    x: Vec<u8>,
    stride: usize,
}

/// Pixels per step of the bits kernel (one AVX-512 register of bytes).
const BLOCK: usize = 64;
/// Groups of eight rows a u8 counter can add before it could overflow.
const FLUSH: usize = 255 / 8;

impl PackedWeights {
    /// `w`: `out × rows` integer digits. `binary`: every digit is −1, 0 or 1
    /// and every input digit 0 or 1, so the bits kernel applies.
    pub fn new(w: &[f32], out: usize, rows: usize, binary: bool) -> PackedWeights {
        if binary {
            let groups = rows.div_ceil(8);
            let (mut pos, mut neg) = (vec![0u8; out * groups], vec![0u8; out * groups]);
            for o in 0..out {
                for r in 0..rows {
                    let d = w[o * rows + r];
                    debug_assert!(d == 0.0 || d.abs() == 1.0, "binary cell {d}");
                    let (mask, bit) = (if d > 0.0 { &mut pos } else { &mut neg }, 1u8 << (r % 8));
                    if d != 0.0 {
                        mask[o * groups + r / 8] |= bit;
                    }
                }
            }
            return PackedWeights::Bits { pos, neg, out, groups };
        }
        let quads = rows.div_ceil(4);
        let mut packed = vec![0i8; out * quads * 4];
        for o in 0..out {
            for r in 0..rows {
                packed[o * quads * 4 + r] = w[o * rows + r] as i8;
            }
        }
        PackedWeights::Bytes { w: packed, out, quads }
    }

    /// Packs rows `k0..k1` of `cols` (`k × p` u8 digits) for this kernel.
    pub fn pack_inputs(&self, cols: &[u8], p: usize, k0: usize, k1: usize, out: &mut PackedInputs) {
        let row = |r: usize| if r < k1 { &cols[r * p..(r + 1) * p] } else { &[][..] };
        match self {
            PackedWeights::Bytes { .. } => {
                // Four rows interleaved as little-endian words, zero-padding
                // the last quad (a loop that vectorises). Every byte is
                // written below: no need to clear what is already there.
                let quads = (k1 - k0).div_ceil(4);
                out.x.resize(quads * p * 4, 0);
                out.stride = p;
                let zeros = vec![0u8; p];
                for q in 0..quads {
                    let rows: [&[u8]; 4] = std::array::from_fn(|lane| if k0 + q * 4 + lane < k1 { row(k0 + q * 4 + lane) } else { &zeros[..] });
                    let dst = &mut out.x[q * p * 4..(q + 1) * p * 4];
                    for (j, d) in dst.chunks_exact_mut(4).enumerate() {
                        let w = rows[0][j] as u32 | (rows[1][j] as u32) << 8 | (rows[2][j] as u32) << 16 | (rows[3][j] as u32) << 24;
                        d.copy_from_slice(&w.to_le_bytes());
                    }
                }
            }
            PackedWeights::Bits { groups, .. } => {
                let stride = p.div_ceil(BLOCK) * BLOCK;
                out.x.clear();
                out.x.resize(groups * stride, 0);
                out.stride = stride;
                for g in 0..*groups {
                    let dst = &mut out.x[g * stride..g * stride + p];
                    for b in 0..8 {
                        let r = k0 + g * 8 + b;
                        if r < k1 {
                            for (d, &x) in dst.iter_mut().zip(row(r)) {
                                *d |= (x & 1) << b;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `ps[o][j] = Σ_k w[o][k]·x[k][j]` as f32 (exact), for `p` columns.
pub fn mvm(w: &PackedWeights, x: &PackedInputs, p: usize, ps: &mut [f32]) {
    match w {
        PackedWeights::Bytes { w, out, quads } => {
            let done = vectorised(w, *quads, *out, &x.x, p, ps);
            scalar(w, *quads, &x.x, p, done..*out, 0..p, ps);
        }
        PackedWeights::Bits { pos, neg, out, groups } => bits(pos, neg, *out, *groups, x, p, ps),
    }
}

/// The bits kernel: per output, blocks of 64 pixels; per group of eight
/// rows, byte popcounts of the input against the +1 and −1 masks, counted in
/// u8 lanes and flushed to f32 before they can overflow. Plain loops over
/// fixed arrays that the compiler turns into byte popcounts.
fn bits(pos: &[u8], neg: &[u8], out: usize, groups: usize, x: &PackedInputs, p: usize, ps: &mut [f32]) {
    for o in 0..out {
        let w = (&pos[o * groups..(o + 1) * groups], &neg[o * groups..(o + 1) * groups]);
        for j0 in (0..p).step_by(BLOCK) {
            let dst = &mut ps[o * p + j0..o * p + (j0 + BLOCK).min(p)];
            match <&mut [f32; BLOCK]>::try_from(&mut *dst) {
                Ok(d) => bits_block(w, x, j0, d),
                Err(_) => {
                    let mut d = [0f32; BLOCK];
                    bits_block(w, x, j0, &mut d);
                    dst.copy_from_slice(&d[..dst.len()]);
                }
            }
        }
    }
}

/// One output's partial sums of pixels `j0..j0 + 64`, written into `d`
/// lane by lane (a whole-array copy became a `memmove` call per block).
#[inline(always)]
fn bits_block((wp, wn): (&[u8], &[u8]), x: &PackedInputs, j0: usize, d: &mut [f32; BLOCK]) {
    for g0 in (0..wp.len()).step_by(FLUSH) {
        let (cp, cn) = counts(wp, wn, x, g0..(g0 + FLUSH).min(wp.len()), j0);
        // Exact in f32: |sums| ≤ rows < 2^24.
        for l in 0..BLOCK {
            let v = cp[l] as f32 - cn[l] as f32;
            d[l] = if g0 == 0 { v } else { d[l] + v };
        }
    }
}

/// Set cells of groups `gs` met by set inputs, +1 and −1 cells apart, per
/// pixel of the block. One 512-bit register holds the 64 pixels: written
/// with AVX-512 BITALG where available, since the compiler's choice of
/// 256-bit registers doubled the instructions.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512bitalg", target_feature = "avx512bw"))]
#[inline(always)]
fn counts(wp: &[u8], wn: &[u8], x: &PackedInputs, gs: std::ops::Range<usize>, j0: usize) -> ([u8; BLOCK], [u8; BLOCK]) {
    use std::arch::x86_64::*;
    assert!(gs.end <= wp.len() && gs.end <= wn.len() && (gs.end - 1) * x.stride + j0 + BLOCK <= x.x.len());
    // SAFETY: the features are enabled at compile time; the loads stay
    // inside `x` (asserted above) and the stores fill the two arrays.
    unsafe {
        let (mut cp, mut cn) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        for g in gs {
            let xb = _mm512_loadu_si512(x.x.as_ptr().add(g * x.stride + j0) as *const _);
            cp = _mm512_add_epi8(cp, _mm512_popcnt_epi8(_mm512_and_si512(xb, _mm512_set1_epi8(wp[g] as i8))));
            cn = _mm512_add_epi8(cn, _mm512_popcnt_epi8(_mm512_and_si512(xb, _mm512_set1_epi8(wn[g] as i8))));
        }
        let (mut p, mut n) = ([0u8; BLOCK], [0u8; BLOCK]);
        _mm512_storeu_si512(p.as_mut_ptr() as *mut _, cp);
        _mm512_storeu_si512(n.as_mut_ptr() as *mut _, cn);
        (p, n)
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512bitalg", target_feature = "avx512bw")))]
#[inline(always)]
fn counts(wp: &[u8], wn: &[u8], x: &PackedInputs, gs: std::ops::Range<usize>, j0: usize) -> ([u8; BLOCK], [u8; BLOCK]) {
    let (mut cp, mut cn) = ([0u8; BLOCK], [0u8; BLOCK]);
    for g in gs {
        let xb: &[u8; BLOCK] = x.x[g * x.stride + j0..g * x.stride + j0 + BLOCK].try_into().unwrap();
        for l in 0..BLOCK {
            cp[l] += (xb[l] & wp[g]).count_ones() as u8;
            cn[l] += (xb[l] & wn[g]).count_ones() as u8;
        }
    }
    (cp, cn)
}

/// Rows of four outputs with the VNNI kernel (and their column tail);
/// returns how many outputs it covered.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512vnni", target_feature = "avx512f"))]
fn vectorised(w: &[i8], quads: usize, out: usize, x: &[u8], p: usize, ps: &mut [f32]) -> usize {
    let rows = out / 4 * 4;
    for o in (0..rows).step_by(4) {
        let mut j = 0;
        while j + 32 <= p {
            // SAFETY: the target features are enabled at compile time and
            // every load stays inside `x` and `w` (bounds asserted in block).
            unsafe { vnni::block(w, quads, x, p, o, j, ps) };
            j += 32;
        }
        scalar(w, quads, x, p, o..o + 4, j..p, ps);
    }
    rows
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512vnni", target_feature = "avx512f")))]
fn vectorised(_: &[i8], _: usize, _: usize, _: &[u8], _: usize, _: &mut [f32]) -> usize {
    0
}

fn scalar(w: &[i8], quads: usize, x: &[u8], p: usize, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, ps: &mut [f32]) {
    for o in rows {
        let wr = &w[o * quads * 4..(o + 1) * quads * 4];
        for j in cols.clone() {
            let mut acc = 0i32;
            for q in 0..quads {
                for l in 0..4 {
                    acc += wr[q * 4 + l] as i32 * x[(q * p + j) * 4 + l] as i32;
                }
            }
            ps[o * p + j] = acc as f32;
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx512vnni", target_feature = "avx512f"))]
mod vnni {
    use std::arch::x86_64::*;

    /// Four outputs × 32 columns.
    #[inline(always)]
    pub unsafe fn block(w: &[i8], quads: usize, x: &[u8], p: usize, o0: usize, j0: usize, ps: &mut [f32]) {
        assert!((o0 + 4) * quads * 4 <= w.len() && ((quads - 1) * p + j0 + 32) * 4 <= x.len() && (o0 + 3) * p + j0 + 32 <= ps.len());
        let mut acc = [[_mm512_setzero_si512(); 2]; 4];
        let wp = w.as_ptr();
        let xp = x.as_ptr();
        for q in 0..quads {
            let x0 = _mm512_loadu_si512(xp.add((q * p + j0) * 4) as *const _);
            let x1 = _mm512_loadu_si512(xp.add((q * p + j0 + 16) * 4) as *const _);
            for r in 0..4 {
                let wq = (wp.add(((o0 + r) * quads + q) * 4) as *const i32).read_unaligned();
                let wb = _mm512_set1_epi32(wq);
                acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], x0, wb);
                acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], x1, wb);
            }
        }
        for r in 0..4 {
            let dst = ps.as_mut_ptr().add((o0 + r) * p + j0);
            _mm512_storeu_ps(dst, _mm512_cvtepi32_ps(acc[r][0]));
            _mm512_storeu_ps(dst.add(16), _mm512_cvtepi32_ps(acc[r][1]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kernels against the f32 GEMM, on shapes that exercise every
    /// tail: outputs not a multiple of 4, pixels not a multiple of 32 or 64,
    /// rows not a multiple of 4 or 8, and (bits) more groups than a u8
    /// counter holds before a flush (rows 300 = 38 groups > 31).
    #[test]
    fn equals_the_f32_gemm() {
        for binary in [false, true] {
            let (levels, offset) = if binary { (3, 1.0) } else { (17, 8.0) };
            let digit_max = if binary { 2 } else { 16 };
            for &(out, rows, p) in &[(4, 72, 1024), (7, 13, 33), (64, 116, 64), (10, 64, 1), (16, 5, 40), (5, 300, 130)] {
                let w: Vec<f32> = (0..out * rows).map(|i| ((i * 7919 % levels) as f32) - offset).collect();
                let digits: Vec<u8> = (0..(rows + 3) * p).map(|i| (i * 104729 % digit_max) as u8).collect();
                let cols: Vec<f32> = digits.iter().map(|&d| d as f32).collect();
                let k0 = 3;
                let packed = PackedWeights::new(&w, out, rows, binary);
                let mut xq = PackedInputs::default();
                packed.pack_inputs(&digits, p, k0, k0 + rows, &mut xq);
                let mut ps = vec![f32::NAN; out * p];
                mvm(&packed, &xq, p, &mut ps);
                let mut want = vec![0f32; out * p];
                crate::gemm::gemm(&w, &cols[k0 * p..(k0 + rows) * p], &mut want, out, rows, p);
                assert_eq!(ps, want, "binary {binary}: {out}x{rows}x{p}");
            }
        }
    }
}
