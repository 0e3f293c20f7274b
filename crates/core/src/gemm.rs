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

/// `gemm_fused` on sub-matrices: rows of `a`, `b` and `c` start `lda`,
/// `ldb` and `ldc` floats apart (e.g. a column range of a wider matrix).
#[allow(clippy::too_many_arguments)]
pub fn gemm_fused_strided(a: &[f32], lda: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, m: usize, k: usize, n: usize) {
    blocked_at::<true>(cpu::level(), a, lda, b, ldb, c, ldc, m, k, n)
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

/// Lanes of `gemm_nt_fused`'s dot products.
const LANES: usize = 16;

/// `c[m×n] = a[m×k] · b[n×k]ᵀ` with fused multiply-adds (training only):
/// every output is the dot product of a row of `a` and a row of `b`, both
/// contiguous along `k`. The weight gradient `dY · Xᵀ` takes this form with
/// the unfolded input `X` of the forward pass, so no transposed unfold is
/// needed. Lane `l` sums the terms `k ≡ l (mod 16)`, the lanes are then added
/// in order and the tail last: deterministic for fixed sizes. Rows of `c`
/// start `ldc` floats apart.
pub fn gemm_nt_fused(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, m: usize, k: usize, n: usize) {
    nt_at(cpu::level(), a, b, c, ldc, m, k, n)
}

multiversion! {
    /// `gemm_nt_fused` in `level`'s clone.
    fn nt_at(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, m: usize, k: usize, n: usize) {
        _I => nt(a, b, c, ldc, m, k, n)
    }
}

#[inline(always)]
fn nt(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, m: usize, k: usize, n: usize) {
    assert!(a.len() >= m * k && b.len() >= n * k && (m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n));
    let mut i = 0;
    while i < m {
        let mut j = 0;
        if i + 4 <= m {
            while j + 4 <= n {
                dot_block::<4, 4>(a, b, c, ldc, i, j, k);
                j += 4;
            }
            while j < n {
                dot_block::<4, 1>(a, b, c, ldc, i, j, k);
                j += 1;
            }
            i += 4;
        } else {
            while j < n {
                dot_block::<1, 1>(a, b, c, ldc, i, j, k);
                j += 1;
            }
            i += 1;
        }
    }
}

/// Outputs `i0..i0 + R` × `j0..j0 + S`: `R · S` dot products in 16-lane accumulators.
#[inline(always)]
fn dot_block<const R: usize, const S: usize>(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, i0: usize, j0: usize, k: usize) {
    let mut acc = [[[0f32; LANES]; S]; R];
    let full = k / LANES * LANES;
    let mut p = 0;
    while p < full {
        let av: [&[f32; LANES]; R] = std::array::from_fn(|r| a[(i0 + r) * k + p..][..LANES].try_into().unwrap());
        let bv: [&[f32; LANES]; S] = std::array::from_fn(|s| b[(j0 + s) * k + p..][..LANES].try_into().unwrap());
        for r in 0..R {
            for s in 0..S {
                for l in 0..LANES {
                    acc[r][s][l] = av[r][l].mul_add(bv[s][l], acc[r][s][l]);
                }
            }
        }
        p += LANES;
    }
    for r in 0..R {
        for s in 0..S {
            let mut sum = acc[r][s].iter().fold(0f32, |t, &v| t + v);
            for kk in full..k {
                sum = a[(i0 + r) * k + kk].mul_add(b[(j0 + s) * k + kk], sum);
            }
            c[(i0 + r) * ldc + j0 + s] = sum;
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
        // Odd sizes exercise the block, the column tail and the row tail.
        for &(m, k, n) in &[(1, 1, 1), (4, 7, 32), (5, 27, 33), (16, 144, 1024), (9, 3, 70)] {
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
    fn strided_product_equals_the_product_of_the_sub_matrices() {
        // b is the column range 5..5+n of a 9 × 50 matrix; c lands in columns 3.. of rows 60 wide.
        let (m, k, n) = (6, 9, 37);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 - 6.0).collect();
        let wide: Vec<f32> = (0..k * 50).map(|i| ((i * 31) % 17) as f32 * 0.25).collect();
        let b: Vec<f32> = (0..k).flat_map(|r| wide[r * 50 + 5..r * 50 + 5 + n].to_vec()).collect();
        let mut c = vec![f32::NAN; m * 60];
        gemm_fused_strided(&a, k, &wide[5..], 50, &mut c[3..], 60, m, k, n);
        let mut dense = vec![0f32; m * n];
        gemm_fused(&a, &b, &mut dense, m, k, n);
        for i in 0..m {
            assert_eq!(&c[i * 60 + 3..i * 60 + 3 + n], &dense[i * n..(i + 1) * n]);
            assert!(c[i * 60..i * 60 + 3].iter().all(|v| v.is_nan()), "outside the block untouched");
        }
    }

    #[test]
    fn nt_product_is_the_product_with_the_transpose() {
        // k = 37: two full lane groups and a tail; m, n with block tails; c wider than n.
        for &(m, k, n) in &[(6, 37, 9), (16, 1024, 12), (1, 5, 1), (4, 16, 4)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0).collect();
            let b: Vec<f32> = (0..n * k).map(|i| ((i * 104729 % 1000) as f32 - 500.0) / 89.0).collect();
            let ldc = n + 3;
            let mut c = vec![f32::NAN; m * ldc];
            gemm_nt_fused(&a, &b, &mut c, ldc, m, k, n);
            for i in 0..m {
                for j in 0..n {
                    let exact: f64 = (0..k).map(|kk| a[i * k + kk] as f64 * b[j * k + kk] as f64).sum();
                    let scale: f64 = (0..k).map(|kk| (a[i * k + kk] as f64 * b[j * k + kk] as f64).abs()).sum();
                    // f32 summation error bound: k · eps · Σ|terms|.
                    assert!((c[i * ldc + j] as f64 - exact).abs() <= k as f64 * f32::EPSILON as f64 * scale, "{m}x{k}x{n} at {i},{j}");
                }
                assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan()), "outside the block untouched");
            }
            // The same bits at every level this CPU runs.
            for level in cpu::available() {
                let mut at = vec![f32::NAN; m * ldc];
                nt_at(level, &a, &b, &mut at, ldc, m, k, n);
                assert!(at.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()), "{level:?}: {m}x{k}x{n}");
            }
        }
    }
}
