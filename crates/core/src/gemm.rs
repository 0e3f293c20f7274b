//! Float matrix products.
//!
//! `gemm` defines the simulator's rounding for float products, in inference
//! and training alike: every output is
//! `acc = 0; for k ascending { acc = fma(a[i][k], b[k][j], acc) }` in f32,
//! each step one fused multiply-add (`f32::mul_add`: the exact
//! `a·b + acc` rounded once). Vectorisation is across `j`, which never
//! reorders a sum, so the result is the same bits at any vector width,
//! thread count or blocking, and at every instruction-set level (cpu.rs):
//! `mul_add` is exactly rounded with the FMA instruction or without it
//! (libm's `fmaf` on the portable level of x86-64, a call per term: about 25
//! times slower there than the unfused product was; an exact emulation in
//! SSE2 f64 arithmetic reached only 3 times libm's speed, so x86-64 CPUs
//! without FMA, older than Haswell, pay that in the float products).
//!
//! The pure-JS reference (ts/reference/fma.ts) repeats the bits with an
//! exact emulation of the f32 FMA in f64: the product of two f32 values is
//! exact in f64, the sum's rounding error is exact by TwoSum, and the one
//! case where rounding the f64 sum to f32 differs from rounding the exact
//! value once (the sum lands on a midpoint between two f32 values) is
//! settled by the error's sign. Fused products are also what lets this
//! kernel run at the FMA units' rate: a separate multiply and add issue two
//! instructions per term (on one Zen 4 core, ResNet20's layer shapes, about
//! 85 GFLOP/s fused against 65 unfused).

use crate::cpu::{self, multiversion, Isa, Level};

/// `c[m×n] = a[m×k] · b[k×n]`, all row-major and densely packed.
pub fn gemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    blocked_at(cpu::level(), a, k, b, n, c, n, m, k, n)
}

multiversion! {
    /// The product in `level`'s clone (cpu.rs): the same bits at every level.
    fn blocked_at(a: &[f32], lda: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, m: usize, k: usize, n: usize) {
        I => match I::LEVEL {
            // 32 zmm registers: 4 rows × 32 columns is 8 accumulators.
            Level::Avx512 => blocked::<4, 32>(a, lda, b, ldb, c, ldc, m, k, n),
            // AVX2's 16 ymm registers: 6 rows × 16 columns is 12 accumulators,
            // 2 for the row of b and 1 for the broadcast (4 × 32 would spill).
            // The portable level takes the same blocking.
            _ => blocked::<6, 16>(a, lda, b, ldb, c, ldc, m, k, n),
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn blocked<const MR: usize, const NR: usize>(a: &[f32], lda: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, m: usize, k: usize, n: usize) {
    let fits = |len: usize, rows: usize, ld: usize, cols: usize| rows == 0 || cols == 0 || len >= (rows - 1) * ld + cols;
    assert!(fits(a.len(), m, lda, k) && fits(b.len(), k, ldb, n) && fits(c.len(), m, ldc, n));
    // Panels are at most NR wide, and none is taken below 8 columns.
    let mut panel = vec![0f32; k * NR.min(n / 8 * 8)];
    let mut j = 0;
    while j + NR <= n {
        column_panel::<MR, NR>(a, lda, b, ldb, c, ldc, m, k, j, &mut panel);
        j += NR;
    }
    // 16 columns: a narrow layer's output channels (the transposed weight gradient).
    while j + 16 <= n {
        column_panel::<MR, 16>(a, lda, b, ldb, c, ldc, m, k, j, &mut panel);
        j += 16;
    }
    while j + 8 <= n {
        column_panel::<MR, 8>(a, lda, b, ldb, c, ldc, m, k, j, &mut panel);
        j += 8;
    }
    scalar(a, lda, b, ldb, c, ldc, 0..m, j..n, k);
}

/// Columns `j0 .. j0 + W` of the product, every row. The panel of b is first
/// copied to contiguous memory, then read by every block of rows: read in
/// place, its rows lie `ldb` apart, and a power-of-two stride (1,024 pixels)
/// maps them all to the same few L1 sets. Blocks of `MR` rows, then of 4, 2
/// and 1 (16 output channels are 6 + 6 + 4).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn column_panel<const MR: usize, const W: usize>(a: &[f32], lda: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, m: usize, k: usize, j0: usize, panel: &mut [f32]) {
    let panel = &mut panel[..k * W];
    for (kk, row) in panel.chunks_exact_mut(W).enumerate() {
        row.copy_from_slice(&b[kk * ldb + j0..kk * ldb + j0 + W]);
    }
    let mut i = 0;
    while i + MR <= m {
        block::<MR, W>(a, lda, panel, c, ldc, i, j0, k);
        i += MR;
    }
    while i + 4 <= m {
        block::<4, W>(a, lda, panel, c, ldc, i, j0, k);
        i += 4;
    }
    while i + 2 <= m {
        block::<2, W>(a, lda, panel, c, ldc, i, j0, k);
        i += 2;
    }
    if i < m {
        block::<1, W>(a, lda, panel, c, ldc, i, j0, k);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block<const MR: usize, const W: usize>(a: &[f32], lda: usize, panel: &[f32], c: &mut [f32], ldc: usize, i0: usize, j0: usize, k: usize) {
    let mut acc = [[0f32; W]; MR];
    let rows: [&[f32]; MR] = std::array::from_fn(|r| &a[(i0 + r) * lda..(i0 + r) * lda + k]);
    for kk in 0..k {
        let bv: &[f32; W] = panel[kk * W..kk * W + W].try_into().unwrap();
        for r in 0..MR {
            let av = rows[r][kk];
            for j in 0..W {
                acc[r][j] = av.mul_add(bv[j], acc[r][j]);
            }
        }
    }
    for r in 0..MR {
        c[(i0 + r) * ldc + j0..(i0 + r) * ldc + j0 + W].copy_from_slice(&acc[r]);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scalar(a: &[f32], lda: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, k: usize) {
    for i in rows {
        for j in cols.clone() {
            let mut acc = 0f32;
            for kk in 0..k {
                acc = a[i * lda + kk].mul_add(b[kk * ldb + j], acc);
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

    /// The definition: one fused multiply-add per term, in ascending k.
    fn sequential(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f32;
                for kk in 0..k {
                    acc = a[i * k + kk].mul_add(b[kk * n + j], acc);
                }
                c[i * n + j] = acc;
            }
        }
        c
    }

    #[test]
    fn blocked_equals_sequential_bit_for_bit() {
        // Odd sizes exercise every block: rows in blocks of 6 (AVX2) or 4
        // (AVX-512) and their tails of 4, 2 and 1, each against panels 32,
        // 16 and 8 wide, and the column tail.
        for &(m, k, n) in &[(1, 1, 1), (4, 7, 32), (5, 27, 33), (16, 144, 1024), (9, 3, 70), (8, 20, 27), (7, 5, 40), (14, 9, 48), (5, 6, 24)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729 % 1000) as f32 - 500.0) / 89.0).collect();
            let want = sequential(&a, &b, m, k, n);
            let mut c = vec![f32::NAN; m * n];
            gemm(&a, &b, &mut c, m, k, n);
            assert!(c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "{m}x{k}x{n}");
            // Every level this CPU runs (FMA instruction or libm's exactly rounded fmaf).
            for level in cpu::available() {
                let mut at = vec![f32::NAN; m * n];
                blocked_at(level, &a, k, &b, n, &mut at, n, m, k, n);
                assert!(at.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "{level:?}: {m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn products_are_fused() {
        // -(1 + 2^-11) + (1 + 2^-12)²: the square is 1 + 2^-11 + 2^-24, so the fused sum is
        // 2^-24; a separately rounded square (a tie, to even: 1 + 2^-11) would give 0.
        let x = 1.0 + 2f32.powi(-12);
        let (a, b) = ([1.0, x], [-(1.0 + 2f32.powi(-11)), x]);
        for level in cpu::available() {
            let mut c = [f32::NAN];
            blocked_at(level, &a, 2, &b, 1, &mut c, 1, 1, 2, 1);
            assert_eq!(c[0], 2f32.powi(-24), "{level:?}");
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
