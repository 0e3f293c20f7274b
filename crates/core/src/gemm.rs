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

const MR: usize = 4;
const NR: usize = 32;

/// `c[m×n] = a[m×k] · b[k×n]`, all row-major and densely packed.
pub fn gemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    blocked::<false>(a, b, c, m, k, n)
}

/// As `gemm`, with fused multiply-adds (training only).
pub fn gemm_fused(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    blocked::<true>(a, b, c, m, k, n)
}

#[inline(always)]
fn mac<const FUSED: bool>(acc: f32, a: f32, b: f32) -> f32 {
    if FUSED {
        a.mul_add(b, acc)
    } else {
        acc + a * b
    }
}

fn blocked<const FUSED: bool>(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    let mut i = 0;
    while i + MR <= m {
        let mut j = 0;
        while j + NR <= n {
            block::<FUSED, NR>(a, b, c, i, j, k, n);
            j += NR;
        }
        while j + 8 <= n {
            block::<FUSED, 8>(a, b, c, i, j, k, n);
            j += 8;
        }
        scalar::<FUSED>(a, b, c, i..i + MR, j..n, k, n);
        i += MR;
    }
    scalar::<FUSED>(a, b, c, i..m, 0..n, k, n);
}

#[inline(always)]
fn block<const FUSED: bool, const W: usize>(a: &[f32], b: &[f32], c: &mut [f32], i0: usize, j0: usize, k: usize, n: usize) {
    let mut acc = [[0f32; W]; MR];
    let rows: [&[f32]; MR] = std::array::from_fn(|r| &a[(i0 + r) * k..(i0 + r + 1) * k]);
    for kk in 0..k {
        let bv: &[f32; W] = b[kk * n + j0..kk * n + j0 + W].try_into().unwrap();
        for r in 0..MR {
            let av = rows[r][kk];
            for j in 0..W {
                acc[r][j] = mac::<FUSED>(acc[r][j], av, bv[j]);
            }
        }
    }
    for r in 0..MR {
        c[(i0 + r) * n + j0..(i0 + r) * n + j0 + W].copy_from_slice(&acc[r]);
    }
}

fn scalar<const FUSED: bool>(a: &[f32], b: &[f32], c: &mut [f32], rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, k: usize, n: usize) {
    for i in rows {
        for j in cols.clone() {
            let mut acc = 0f32;
            for kk in 0..k {
                acc = mac::<FUSED>(acc, a[i * k + kk], b[kk * n + j]);
            }
            c[i * n + j] = acc;
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
        }
    }
}
