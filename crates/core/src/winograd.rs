//! Winograd F(2×2, 3×3) convolutions for training (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", CVPR 2016).
//!
//! A 3 × 3, stride-1, pad-1 convolution computes each 2 × 2 tile of outputs
//! from the 4 × 4 input patch under it as Aᵀ[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]A: 16
//! multiplications per tile and channel pair where the direct product takes
//! 36. Summed over input channels, the 16 elementwise products are 16
//! matrix products (`gemm`'s kernel) of the transformed kernels by the
//! transformed patches; the transforms around them are additions. In
//! training, such a convolution computes its forward and its input gradient
//! this way when it has channels enough for the transforms to pay
//! (`MIN_CHANNELS`: ten of ResNet20's nineteen convolutions); its weight
//! gradient keeps the direct product.
//!
//! Rounding: the transforms are elementwise sums in a fixed order, so the
//! results are the same bits at every instruction-set level, thread count
//! and batch split, but not the bits of the direct product. That is why
//! only training-mode passes take this path: inference and every evaluation
//! (which the pure-JS reference repeats bit for bit) keep `gemm`'s direct
//! products. The two differ within f32 rounding of the sums (tested against
//! an f64 convolution).

use std::cell::RefCell;

use crate::cpu::{self, multiversion};
use crate::gemm::{gemm_packed, Packed};
use crate::graph::{Conv, Shape};

/// Fewest input and output channels for which the transforms pay: they
/// cost in proportion to (in + out) channels per tile, the products they
/// save to in · out. Measured on ResNet20's FP32 training step (2 threads):
/// on every stride-1 convolution 467–479 images/s, on the 32- and
/// 64-channel ones only 495–507, on none 448–461.
pub const MIN_CHANNELS: usize = 32;

/// Whether `conv` applied to inputs of shape `xs` is a convolution this
/// module computes: a 3 × 3 kernel, stride 1, padding 1 on every side, an
/// even height and width (whole 2 × 2 output tiles) and at least
/// `MIN_CHANNELS` channels in and out.
pub fn fits(conv: &Conv, xs: Shape) -> bool {
    conv.in_channels.min(conv.out_channels) >= MIN_CHANNELS
        && conv.kernel == [3, 3]
        && conv.stride == [1, 1]
        && conv.pads == [1; 4]
        && xs.h > 0
        && xs.w > 0
        && xs.h.is_multiple_of(2)
        && xs.w.is_multiple_of(2)
}

/// Which product the transformed kernels serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The forward: `m` = output channels, `k` = input channels.
    Forward,
    /// The input gradient, a convolution of the output gradient by the
    /// kernels turned by 180° with input and output swapped: `m` = input
    /// channels, `k` = output channels.
    InputGrad,
}

/// The kernels `weight` (`[out][inp][3][3]`) in the transformed domain,
/// `[16][m][k]`: position `4i + j` of G·g·Gᵀ for every channel pair, G =
/// [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]. Made once per step.
pub fn kernels(weight: &[f32], out: usize, inp: usize, pass: Pass) -> Vec<f32> {
    assert_eq!(weight.len(), out * inp * 9, "winograd: a 3 × 3 kernel per channel pair");
    let (m, k) = match pass {
        Pass::Forward => (out, inp),
        Pass::InputGrad => (inp, out),
    };
    let mut u = vec![0f32; 16 * m * k];
    // G applied to a column (or row) of three.
    let g3 = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    for o in 0..out {
        for c in 0..inp {
            let w = &weight[(o * inp + c) * 9..(o * inp + c + 1) * 9];
            let g: [f32; 9] = std::array::from_fn(|t| if pass == Pass::InputGrad { w[8 - t] } else { w[t] });
            // G·g (4 × 3), column by column, then (G·g)·Gᵀ row by row.
            let cols: [[f32; 4]; 3] = std::array::from_fn(|x| g3(g[x], g[3 + x], g[6 + x]));
            let (mi, ki) = if pass == Pass::InputGrad { (c, o) } else { (o, c) };
            for i in 0..4 {
                let row = g3(cols[0][i], cols[1][i], cols[2][i]);
                for (j, &v) in row.iter().enumerate() {
                    u[((4 * i + j) * m + mi) * k + ki] = v;
                }
            }
        }
    }
    u
}

/// One thread's buffers for a group of tile rows, kept across images and
/// steps as the crossbar's `Scratch` is (rayon's workers live as long as
/// the process): the input's even and odd columns of its even and odd rows,
/// their column transforms (·B), the transformed input (Bᵀ·d·B) by
/// position, the same packed for the product, the 16 products and their
/// four output transforms. Taken per call from the free list instead
/// (buffers.rs), the small ones and the packed positions were allocated and
/// zeroed per image: FP32 training 3.5 % slower (3 of 4 pairs).
#[derive(Default)]
struct Scratch {
    split: Vec<f32>,
    cols: Vec<f32>,
    v: Vec<f32>,
    /// The packed input's shape (k, columns) and its 16 positions.
    packed: Option<((usize, usize), Vec<Packed>)>,
    products: Vec<f32>,
    y: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Tiles per group (about): the planes go through the transforms and the
/// products a group of tile rows at a time, so that a group's buffers
/// (about 350 KB for 32 channels) stay in L2. A whole plane's buffers went
/// out to L3 and back between the passes (1.2 MB for 16 channels of 32 × 32),
/// and the transforms then cost more than the multiplications saved.
const GROUP_TILES: usize = 64;

/// `out[m][h][w]` = the convolution of `x[k][h][w]` (zero padding 1) by
/// the kernels `u` of `kernels` (of the same `m` and `k`).
pub fn conv(u: &[f32], m: usize, k: usize, h: usize, w: usize, x: &[f32], out: &mut [f32]) {
    SCRATCH.with_borrow_mut(|s| conv_with(cpu::level(), u, m, k, h, w, x, out, s))
}

/// `conv` with the transforms in `level`'s clone (the products in
/// `cpu::level()`'s: the same bits at every level).
#[allow(clippy::too_many_arguments)]
fn conv_with(level: cpu::Level, u: &[f32], m: usize, k: usize, h: usize, w: usize, x: &[f32], out: &mut [f32], s: &mut Scratch) {
    assert!(h > 0 && w > 0 && h.is_multiple_of(2) && w.is_multiple_of(2), "winograd: an even height and width, got {h} × {w}");
    assert!(u.len() == 16 * m * k && x.len() == k * h * w && out.len() == m * h * w);
    let (th, tw) = (h / 2, w / 2);
    let group = (GROUP_TILES / tw).clamp(1, th);
    for g0 in (0..th).step_by(group) {
        let rows = group.min(th - g0);
        // The group's tile rows and one more above and below (zero outside
        // the plane), whose input rows the edge tiles read. Each pass writes
        // every value the next one reads.
        let n = k * (rows + 2) * tw;
        s.split.resize(4 * n, 0.0);
        s.cols.resize(8 * n, 0.0);
        s.v.resize(16 * n, 0.0);
        let xs = (k, h, w, g0, rows);
        match width(w) {
            4 => input_at::<4>(level, x, xs, &mut s.split, &mut s.cols, &mut s.v),
            8 => input_at::<8>(level, x, xs, &mut s.split, &mut s.cols, &mut s.v),
            16 => input_at::<16>(level, x, xs, &mut s.split, &mut s.cols, &mut s.v),
            32 => input_at::<32>(level, x, xs, &mut s.split, &mut s.cols, &mut s.v),
            _ => input_at::<0>(level, x, xs, &mut s.split, &mut s.cols, &mut s.v),
        }
        // Packed for the product: the group's own tile rows of each channel
        // (every row of a position is written before the product reads it).
        let cols = rows * tw;
        let packed = match &mut s.packed {
            Some((shape, p)) if *shape == (k, cols) => p,
            slot => &mut slot.insert(((k, cols), (0..16).map(|_| Packed::new(k, cols)).collect())).1,
        };
        for (p, vp) in packed.iter_mut().zip(s.v.chunks_exact(n)) {
            for (c, plane) in vp.chunks_exact((rows + 2) * tw).enumerate() {
                p.row(c, &plane[tw..tw + cols]);
            }
        }
        s.products.resize(16 * m * cols, 0.0);
        for (pos, (p, c)) in packed.iter().zip(s.products.chunks_exact_mut(m * cols)).enumerate() {
            gemm_packed(&u[pos * m * k..(pos + 1) * m * k], p, c, cols, m);
        }
        s.y.resize(4 * m * cols, 0.0);
        let os = (m, h, w, g0, rows);
        match width(w) {
            4 => output_at::<4>(level, &s.products, os, &mut s.y, out),
            8 => output_at::<8>(level, &s.products, os, &mut s.y, out),
            16 => output_at::<16>(level, &s.products, os, &mut s.y, out),
            32 => output_at::<32>(level, &s.products, os, &mut s.y, out),
            _ => output_at::<0>(level, &s.products, os, &mut s.y, out),
        }
    }
}

/// Tile-row widths (w / 2) with loops of their own: the per-row loops are
/// 16 tiles or fewer in ResNets on 32 × 32 images, too short for the
/// compiler's vector loops unless their length is a constant. 0: any width.
fn width(w: usize) -> usize {
    match w / 2 {
        tw @ (4 | 8 | 16 | 32) => tw,
        _ => 0,
    }
}

/// `outs[o][i] = f([ins[0][i], …])[o]` for every i (every slice as long as
/// `outs[0]`), in blocks of 16 lanes held in fixed arrays, which the
/// compiler keeps in vector registers, the rest one by one.
#[inline(always)]
fn lanes<const I: usize, const O: usize>(ins: [&[f32]; I], mut outs: [&mut [f32]; O], f: impl Fn([f32; I]) -> [f32; O]) {
    const L: usize = 16;
    let n = outs[0].len();
    assert!(ins.iter().all(|v| v.len() == n) && outs.iter().all(|v| v.len() == n));
    for b in 0..n / L {
        let x: [&[f32; L]; I] = std::array::from_fn(|s| ins[s][b * L..(b + 1) * L].try_into().unwrap());
        let mut y = [[0f32; L]; O];
        for l in 0..L {
            let r = f(std::array::from_fn(|s| x[s][l]));
            for o in 0..O {
                y[o][l] = r[o];
            }
        }
        for (out, y) in outs.iter_mut().zip(&y) {
            out[b * L..(b + 1) * L].copy_from_slice(y);
        }
    }
    for i in n / L * L..n {
        let r = f(std::array::from_fn(|s| ins[s][i]));
        for (out, r) in outs.iter_mut().zip(r) {
            out[i] = r;
        }
    }
}

/// `v` cut into `N` consecutive pieces of `len`.
fn pieces<const N: usize>(v: &mut [f32], len: usize) -> [&mut [f32]; N] {
    let mut rest = &mut v[..N * len];
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        head
    })
}

multiversion! {
    /// Bᵀ·d·B of the 4 × 4 patches of tile rows `g0 .. g0 + rows` of the
    /// zero-padded input planes (`xs` = (k, h, w, g0, rows)), B = [[1, 0, 0,
    /// 0], [0, 1, −1, 1], [−1, 1, 1, 0], [0, 0, 0, −1]], into
    /// `v[pos][channel][row][tile]` for tile rows g0 − 1 … g0 + rows (the
    /// first and last are scratch: the edge tiles' neighbours). `TW`: the tile-row width, or 0.
    /// Indices i = (channel · (rows + 2) + row) · tw + tile run over every
    /// channel at once, so that each pass is one long elementwise loop.
    fn input_at<const TW: usize>(x: &[f32], xs: (usize, usize, usize, usize, usize), split: &mut [f32], cols: &mut [f32], v: &mut [f32]) {
        _I => input::<TW>(x, xs, split, cols, v)
    }
}

#[inline(always)]
fn input<const TW: usize>(x: &[f32], (k, h, w, g0, rows): (usize, usize, usize, usize, usize), split: &mut [f32], cols: &mut [f32], v: &mut [f32]) {
    let (th, tw) = (h / 2, if TW > 0 { TW } else { w / 2 });
    assert_eq!(tw, w / 2);
    let n = k * (rows + 2) * tw;
    // Input (2·ty + a, 2·t + b) of each channel into split[2a + b][i], for
    // tile rows ty = g0 − 1 … g0 + rows.
    let [e0, o0, e1, o1] = pieces::<4>(split, n);
    let blocks = e0.chunks_exact_mut(tw).zip(o0.chunks_exact_mut(tw)).zip(e1.chunks_exact_mut(tw)).zip(o1.chunks_exact_mut(tw));
    for (b, (((e0, o0), e1), o1)) in blocks.enumerate() {
        let (c, r) = (b / (rows + 2), b % (rows + 2));
        match (g0 + r).checked_sub(1).filter(|&ty| ty < th) {
            Some(ty) => {
                let (r0, r1) = x[(c * h + 2 * ty) * w..(c * h + 2 * ty + 2) * w].split_at(w);
                for t in 0..tw {
                    e0[t] = r0[2 * t];
                    o0[t] = r0[2 * t + 1];
                    e1[t] = r1[2 * t];
                    o1[t] = r1[2 * t + 1];
                }
            }
            None => [e0, o0, e1, o1].into_iter().for_each(|v| v.fill(0.0)),
        }
    }
    // ·B along each row, rows of either parity alike: a tile's columns are
    // input columns 2t − 1 … 2t + 2, i.e. o[t − 1], e[t], o[t], e[t + 1]
    // (zero past the plane's edges): c0 − c2, c1 + c2, c2 − c1, c1 − c3.
    let split = &split[..4 * n];
    let [c0, c1, c2, c3, c4, c5, c6, c7] = pieces::<8>(cols, n);
    for (a, [q0, q1, q2, q3]) in [[c0, c1, c2, c3], [c4, c5, c6, c7]].into_iter().enumerate() {
        let (e, o) = (&split[2 * a * n..(2 * a + 1) * n], &split[(2 * a + 1) * n..(2 * a + 2) * n]);
        lanes([e, o], [&mut *q1, &mut *q2], |[e, o]| [e + o, o - e]);
        lanes([&o[..n - 1], &o[1..]], [&mut q0[1..]], |[p, o]| [p - o]);
        lanes([&e[..n - 1], &e[1..]], [&mut q3[..n - 1]], |[e, f]| [e - f]);
        for t0 in (0..n).step_by(tw) {
            q0[t0] = -o[t0];
            q3[t0 + tw - 1] = e[t0 + tw - 1];
        }
    }
    // Bᵀ· down each column of tiles: a tile's rows are input rows 2ty − 1 …
    // 2ty + 2, i.e. the odd row of the tile row above, the even and odd rows
    // of its own and the even row of the one below: d0 − d2, d1 + d2,
    // d2 − d1, d1 − d3, into positions 4i + j (the first and last row of
    // each channel's group read past it: scratch, never packed).
    let cols = &cols[..8 * n];
    // Row i of the positions (4i … 4i + 3) is piece i.
    let [mut r0, mut r1, mut r2, mut r3] = pieces::<4>(v, 4 * n);
    for j in 0..4 {
        let (ev, od) = (&cols[j * n..(j + 1) * n], &cols[(4 + j) * n..(5 + j) * n]);
        let [v0, v1, v2, v3] = [&mut r0, &mut r1, &mut r2, &mut r3].map(|r| &mut r[j * n..(j + 1) * n]);
        lanes([ev, od], [&mut *v1, &mut *v2], |[d1, d2]| [d1 + d2, d2 - d1]);
        lanes([&od[..n - tw], &od[tw..]], [&mut v0[tw..]], |[d0, d2]| [d0 - d2]);
        lanes([&ev[..n - tw], &ev[tw..]], [&mut v3[..n - tw]], |[d1, d3]| [d1 - d3]);
    }
}

multiversion! {
    /// Aᵀ·M·A of the products of a group of tile rows (`os` = (m, h, w, g0,
    /// rows)) into the output planes, Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]:
    /// one elementwise pass over every output channel and tile into
    /// `y[2a + b][i]` (output 2·ty + a, 2·t + b), then the interleave of the
    /// columns into the planes' rows.
    fn output_at<const TW: usize>(products: &[f32], os: (usize, usize, usize, usize, usize), y: &mut [f32], out: &mut [f32]) {
        _I => output::<TW>(products, os, y, out)
    }
}

#[inline(always)]
fn output<const TW: usize>(products: &[f32], (m, h, w, g0, rows): (usize, usize, usize, usize, usize), y: &mut [f32], out: &mut [f32]) {
    let tw = if TW > 0 { TW } else { w / 2 };
    assert_eq!(tw, w / 2);
    let n = m * rows * tw;
    let mm: [&[f32]; 16] = std::array::from_fn(|p| &products[p * n..(p + 1) * n]);
    let [y00, y01, y10, y11] = pieces::<4>(y, n);
    lanes(mm, [&mut *y00, &mut *y01, &mut *y10, &mut *y11], |v| {
        // M·A, row i of the tile: s[i] = (m0 + m1 + m2, m1 − m2 − m3).
        let s: [[f32; 2]; 4] = std::array::from_fn(|i| [v[4 * i] + v[4 * i + 1] + v[4 * i + 2], v[4 * i + 1] - v[4 * i + 2] - v[4 * i + 3]]);
        [s[0][0] + s[1][0] + s[2][0], s[0][1] + s[1][1] + s[2][1], s[1][0] - s[2][0] - s[3][0], s[1][1] - s[2][1] - s[3][1]]
    });
    let ys = y00.chunks_exact(tw).zip(y01.chunks_exact(tw)).zip(y10.chunks_exact(tw)).zip(y11.chunks_exact(tw));
    for (b, (((y00, y01), y10), y11)) in ys.enumerate() {
        let (o, ty) = (b / rows, g0 + b % rows);
        let (top, bottom) = out[(o * h + 2 * ty) * w..(o * h + 2 * ty + 2) * w].split_at_mut(w);
        for t in 0..tw {
            top[2 * t] = y00[t];
            top[2 * t + 1] = y01[t];
            bottom[2 * t] = y10[t];
            bottom[2 * t + 1] = y11[t];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution in f64, directly: `y[o][oy][ox] = Σ x[c][oy + ky − 1][ox + kx − 1]·w[o][c][ky][kx]`.
    fn direct(x: &[f32], w: &[f32], out: usize, inp: usize, h: usize, wd: usize) -> Vec<f64> {
        let mut y = vec![0f64; out * h * wd];
        for o in 0..out {
            for c in 0..inp {
                for oy in 0..h {
                    for ox in 0..wd {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (oy as isize + ky as isize - 1, ox as isize + kx as isize - 1);
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    y[(o * h + oy) * wd + ox] += x[(c * h + iy as usize) * wd + ix as usize] as f64 * w[((o * inp + c) * 3 + ky) * 3 + kx] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        y
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed.wrapping_mul(40503)) >> 8) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    /// Largest error against the f64 convolution, in units of the largest
    /// possible term sum (Σ|x·w| over a window), which bounds f32 rounding.
    fn check(out: usize, inp: usize, h: usize, w: usize, pass: Pass) -> f64 {
        let (m, k) = if pass == Pass::Forward { (out, inp) } else { (inp, out) };
        let x = values(k * h * w, 1 + m as u32);
        let weight = values(out * inp * 9, 7 + h as u32);
        // The input gradient is the direct convolution of its input by the
        // turned, swapped kernels.
        let as_forward: Vec<f32> = match pass {
            Pass::Forward => weight.clone(),
            Pass::InputGrad => (0..m * k * 9).map(|i| (i / (k * 9), i / 9 % k, i % 9)).map(|(c, o, t)| weight[(o * inp + c) * 9 + 8 - t]).collect(),
        };
        let want = direct(&x, &as_forward, m, k, h, w);
        let u = kernels(&weight, out, inp, pass);
        let mut got = vec![f32::NAN; m * h * w];
        conv(&u, m, k, h, w, &x, &mut got);
        let scale = 9.0 * k as f64;
        got.iter().zip(&want).map(|(&g, &v)| (g as f64 - v).abs() / scale).fold(0.0, f64::max)
    }

    #[test]
    fn forward_and_input_gradient_match_the_direct_convolution() {
        // Shapes of ResNet20's stages, narrow, single and odd channel counts,
        // the smallest plane (one tile), non-square planes, several groups of
        // tile rows with a shorter last one (at a width with loops of its own
        // and at one without), tile rows longer than a group; both passes.
        for &(out, inp, h, w) in &[
            (16, 16, 32, 32),
            (32, 32, 16, 16),
            (64, 64, 8, 8),
            (16, 3, 32, 32),
            (5, 7, 2, 2),
            (3, 2, 6, 10),
            (9, 17, 4, 2),
            (4, 3, 20, 32),
            (2, 3, 18, 8),
            (1, 1, 4, 4),
            (2, 3, 26, 12),
            (3, 2, 6, 130),
        ] {
            for pass in [Pass::Forward, Pass::InputGrad] {
                let err = check(out, inp, h, w, pass);
                // f32 has a relative precision of 6e-8; the transforms add a
                // handful of roundings on each side of the product.
                assert!(err < 2e-6, "{out}×{inp} {h}×{w} {pass:?}: error {err:e} of the largest sum");
            }
        }
    }

    #[test]
    fn the_same_bits_at_every_level() {
        // Each tile-row width with a clone of its own (4, 8, 16, 32) and two
        // without, one group and several (a shorter last one included).
        for &(m, k, h, w) in &[(16, 8, 8, 8), (8, 16, 4, 16), (16, 5, 20, 32), (3, 4, 2, 64), (5, 3, 4, 6), (4, 7, 10, 2), (3, 4, 26, 12)] {
            let x = values(k * h * w, 3);
            let u = kernels(&values(m * k * 9, 5), m, k, Pass::Forward);
            let run = |level| {
                let mut out = vec![0f32; m * h * w];
                conv_with(level, &u, m, k, h, w, &x, &mut out, &mut Scratch::default());
                out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            let base = run(cpu::Level::Portable);
            for level in cpu::available() {
                assert!(run(level) == base, "{m}×{k} {h}×{w}: {level:?} differs from the portable build");
            }
        }
    }

    #[test]
    fn fits_only_3x3_stride_1_pad_1_on_even_planes_of_32_channels_or_more() {
        let conv = |kernel, stride, pads| Conv { weight: Vec::new(), bias: None, out_channels: 32, in_channels: 64, kernel, stride, pads };
        let s = |h, w| Shape { c: 64, h, w };
        assert!(fits(&conv([3, 3], [1, 1], [1; 4]), s(32, 32)));
        let narrow = Conv { in_channels: 16, ..conv([3, 3], [1, 1], [1; 4]) };
        assert!(!fits(&narrow, Shape { c: 16, h: 32, w: 32 }));
        assert!(!fits(&conv([3, 3], [2, 2], [1; 4]), s(32, 32)));
        assert!(!fits(&conv([3, 3], [1, 1], [0; 4]), s(32, 32)));
        assert!(!fits(&conv([1, 1], [1, 1], [1; 4]), s(32, 32)));
        assert!(!fits(&conv([3, 3], [1, 1], [1; 4]), s(7, 8)));
    }
}
