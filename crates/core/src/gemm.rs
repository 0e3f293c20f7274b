//! Float matrix products.
//!
//! `gemm` is the inference kernel and defines the simulator's rounding:
//! every output is `acc = 0; for k ascending { acc = acc + a[i][k] * b[k][j] }`
//! in f32, with a separate multiply and add (Rust never fuses them). The
//! result is therefore the same bits at any vector width, thread count or
//! blocking, and the pure-JS reference reproduces it with `Math.fround`
//! (an f32 product of two f32 values is exact in f64, and f64 addition
//! rounded to f32 equals f32 addition). Vectorisation is across `j`, which
//! never reorders a sum.
//!
//! Training has no reference to match, so `gemm_fused` is the same kernel
//! with fused multiply-adds (still deterministic for fixed sizes).

use crate::cpu::{self, multiversion};

const MR: usize = 4;
const NR: usize = 32;

/// `c[m×n] = a[m×k] · b[k×n]`, all row-major and densely packed.
pub fn gemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    blocked_at::<false>(cpu::level(), a, k, b, n, c, n, m, k, n)
}

/// As `gemm`, with fused multiply-adds (training only).
pub fn gemm_fused(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    blocked_at::<true>(cpu::level(), a, k, b, n, c, n, m, k, n)
}

multiversion! {
    /// The product in `level`'s clone (cpu.rs): the same bits at every level.
    fn blocked_at<const FUSED: bool>(a: &[f32], lda: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, m: usize, k: usize, n: usize) {
        _I => blocked::<FUSED>(a, lda, b, ldb, c, ldc, m, k, n)
    }
}

#[inline(always)]
fn mac<const FUSED: bool>(acc: f32, a: f32, b: f32) -> f32 {
    if FUSED {
        a.mul_add(b, acc)
    } else {
        acc + a * b
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn blocked<const FUSED: bool>(a: &[f32], lda: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, m: usize, k: usize, n: usize) {
    let fits = |len: usize, rows: usize, ld: usize, cols: usize| rows == 0 || cols == 0 || len >= (rows - 1) * ld + cols;
    assert!(fits(a.len(), m, lda, k) && fits(b.len(), k, ldb, n) && fits(c.len(), m, ldc, n));
    let mut i = 0;
    while i + MR <= m {
        let mut j = 0;
        while j + NR <= n {
            block::<FUSED, NR>(a, lda, b, ldb, c, ldc, i, j, k);
            j += NR;
        }
        // 16 columns: a narrow layer's output channels (the transposed weight gradient).
        while j + 16 <= n {
            block::<FUSED, 16>(a, lda, b, ldb, c, ldc, i, j, k);
            j += 16;
        }
        while j + 8 <= n {
            block::<FUSED, 8>(a, lda, b, ldb, c, ldc, i, j, k);
            j += 8;
        }
        scalar::<FUSED>(a, lda, b, ldb, c, ldc, i..i + MR, j..n, k);
        i += MR;
    }
    scalar::<FUSED>(a, lda, b, ldb, c, ldc, i..m, 0..n, k);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block<const FUSED: bool, const W: usize>(a: &[f32], lda: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, i0: usize, j0: usize, k: usize) {
    let mut acc = [[0f32; W]; MR];
    let rows: [&[f32]; MR] = std::array::from_fn(|r| &a[(i0 + r) * lda..(i0 + r) * lda + k]);
    for kk in 0..k {
        let bv: &[f32; W] = b[kk * ldb + j0..kk * ldb + j0 + W].try_into().unwrap();
        for r in 0..MR {
            let av = rows[r][kk];
            for j in 0..W {
                acc[r][j] = mac::<FUSED>(acc[r][j], av, bv[j]);
            }
        }
    }
    for r in 0..MR {
        c[(i0 + r) * ldc + j0..(i0 + r) * ldc + j0 + W].copy_from_slice(&acc[r]);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scalar<const FUSED: bool>(a: &[f32], lda: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, k: usize) {
    for i in rows {
        for j in cols.clone() {
            let mut acc = 0f32;
            for kk in 0..k {
                acc = mac::<FUSED>(acc, a[i * lda + kk], b[kk * ldb + j]);
            }
            c[i * ldc + j] = acc;
        }
    }
}

/// `out[cols × rows]` = `a[rows × cols]` transposed, in 16 × 16 tiles so that
/// both the reads and the writes stay within a few cache lines (a row at a
/// time wrote one cache line per value).
pub fn transpose(a: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    const T: usize = 16;
    assert!(a.len() >= rows * cols && out.len() >= rows * cols);
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for c in c0..(c0 + T).min(cols) {
                for r in r0..(r0 + T).min(rows) {
                    out[c * rows + r] = a[r * cols + c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f32;
                for kk in 0..k {
                    acc += a[i * k + kk] * b[kk * n + j];
                }
                c[i * n + j] = acc;
            }
        }
        c
    }

    #[test]
    fn blocked_equals_sequential_bit_for_bit() {
        // Odd sizes exercise the 32-, 16- and 8-wide blocks, the column tail and the row tail.
        for &(m, k, n) in &[(1, 1, 1), (4, 7, 32), (5, 27, 33), (16, 144, 1024), (9, 3, 70), (8, 20, 27)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729 % 1000) as f32 - 500.0) / 89.0).collect();
            let mut c = vec![f32::NAN; m * n];
            gemm(&a, &b, &mut c, m, k, n);
            let r = reference(&a, &b, m, k, n);
            assert!(c.iter().zip(&r).all(|(x, y)| x.to_bits() == y.to_bits()), "{m}x{k}x{n}");
            // Every level this CPU runs, fused too (FMA instruction or libm's exactly rounded fmaf).
            let mut fused = vec![f32::NAN; m * n];
            gemm_fused(&a, &b, &mut fused, m, k, n);
            for level in cpu::available() {
                for (f, want) in [(false, &c), (true, &fused)] {
                    let mut at = vec![f32::NAN; m * n];
                    if f {
                        blocked_at::<true>(level, &a, k, &b, n, &mut at, n, m, k, n);
                    } else {
                        blocked_at::<false>(level, &a, k, &b, n, &mut at, n, m, k, n);
                    }
                    assert!(at.iter().zip(want.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "{level:?} fused {f}: {m}x{k}x{n}");
                }
            }
        }
    }

    #[test]
    fn transpose_moves_every_value() {
        for &(rows, cols) in &[(1, 1), (16, 1024), (17, 33), (3, 40)] {
            let a: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut t = vec![f32::NAN; rows * cols];
            transpose(&a, rows, cols, &mut t);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], a[r * cols + c], "{rows}x{cols} at {r},{c}");
                }
            }
        }
    }
}
