//! Integer crossbar MVM: exact partial sums of u8 input digits and i8 weight
//! digits. The f32 kernel (gemm.rs) gives the same values whenever the cells
//! hold integer digits (sums below 2^24 are exact in f32), so this is purely
//! a faster way to the same bits. With AVX-512 VNNI, `vpdpbusd` does 64
//! multiply-accumulates per instruction.

/// Weights of one (slice, subarray) as i8, packed `[out][kq][4]` with rows
/// padded to a multiple of 4 by zeros.
pub struct PackedWeights {
    pub w: Vec<i8>,
    pub out: usize,
    pub quads: usize,
}

impl PackedWeights {
    pub fn new(w: &[f32], out: usize, rows: usize) -> PackedWeights {
        let quads = rows.div_ceil(4);
        let mut packed = vec![0i8; out * quads * 4];
        for o in 0..out {
            for r in 0..rows {
                packed[o * quads * 4 + r] = w[o * rows + r] as i8;
            }
        }
        PackedWeights { w: packed, out, quads }
    }
}

/// Packs rows `k0..k1` of `cols` (`k × p` u8 digits) into `[kq][p][4]`,
/// zero-padding the last quad: four rows interleaved as little-endian
/// words (a loop that vectorises).
pub fn pack_inputs(cols: &[u8], p: usize, k0: usize, k1: usize, out: &mut Vec<u8>) {
    let quads = (k1 - k0).div_ceil(4);
    // Every byte is written below: no need to clear what is already there.
    out.resize(quads * p * 4, 0);
    let zeros = vec![0u8; p];
    for q in 0..quads {
        let rows: [&[u8]; 4] = std::array::from_fn(|lane| {
            let r = k0 + q * 4 + lane;
            if r < k1 {
                &cols[r * p..(r + 1) * p]
            } else {
                &zeros[..]
            }
        });
        let dst = &mut out[q * p * 4..(q + 1) * p * 4];
        for (j, d) in dst.chunks_exact_mut(4).enumerate() {
            let w = rows[0][j] as u32 | (rows[1][j] as u32) << 8 | (rows[2][j] as u32) << 16 | (rows[3][j] as u32) << 24;
            d.copy_from_slice(&w.to_le_bytes());
        }
    }
}

/// `ps[o][j] = Σ_k w[o][k]·x[k][j]` as f32 (exact), for `p` columns.
pub fn mvm(w: &PackedWeights, x: &[u8], p: usize, ps: &mut [f32]) {
    let done = vectorised(w, x, p, ps);
    scalar(w, x, p, done..w.out, 0..p, ps);
}

/// Rows of four outputs with the VNNI kernel (and their column tail);
/// returns how many outputs it covered.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512vnni", target_feature = "avx512f"))]
fn vectorised(w: &PackedWeights, x: &[u8], p: usize, ps: &mut [f32]) -> usize {
    let rows = w.out / 4 * 4;
    for o in (0..rows).step_by(4) {
        let mut j = 0;
        while j + 32 <= p {
            // SAFETY: the target features are enabled at compile time and
            // every load stays inside `x` and `w` (bounds asserted in block).
            unsafe { vnni::block(w, x, p, o, j, ps) };
            j += 32;
        }
        scalar(w, x, p, o..o + 4, j..p, ps);
    }
    rows
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512vnni", target_feature = "avx512f")))]
fn vectorised(_: &PackedWeights, _: &[u8], _: usize, _: &mut [f32]) -> usize {
    0
}

fn scalar(w: &PackedWeights, x: &[u8], p: usize, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, ps: &mut [f32]) {
    let quads = w.quads;
    for o in rows {
        let wr = &w.w[o * quads * 4..(o + 1) * quads * 4];
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
    use super::PackedWeights;
    use std::arch::x86_64::*;

    /// Four outputs × 32 columns.
    #[inline(always)]
    pub unsafe fn block(w: &PackedWeights, x: &[u8], p: usize, o0: usize, j0: usize, ps: &mut [f32]) {
        let quads = w.quads;
        assert!((o0 + 4) * quads * 4 <= w.w.len() && ((quads - 1) * p + j0 + 32) * 4 <= x.len() && (o0 + 3) * p + j0 + 32 <= ps.len());
        let mut acc = [[_mm512_setzero_si512(); 2]; 4];
        let wp = w.w.as_ptr();
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

    #[test]
    fn equals_the_f32_gemm() {
        for &(out, rows, p) in &[(4, 72, 1024), (7, 13, 33), (64, 116, 64), (10, 64, 1), (16, 5, 40)] {
            let w: Vec<f32> = (0..out * rows).map(|i| ((i * 7919 % 17) as f32) - 8.0).collect();
            let digits: Vec<u8> = (0..(rows + 3) * p).map(|i| (i * 104729 % 16) as u8).collect();
            let cols: Vec<f32> = digits.iter().map(|&d| d as f32).collect();
            let k0 = 3;
            let mut xq = Vec::new();
            pack_inputs(&digits, p, k0, k0 + rows, &mut xq);
            let mut ps = vec![f32::NAN; out * p];
            mvm(&PackedWeights::new(&w, out, rows), &xq, p, &mut ps);
            let mut want = vec![0f32; out * p];
            crate::gemm::gemm(&w, &cols[k0 * p..(k0 + rows) * p], &mut want, out, rows, p);
            assert_eq!(ps, want, "{out}x{rows}x{p}");
        }
    }
}
