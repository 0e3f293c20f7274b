//! Digital FP32 layers on one image's activations (`c × h × w`, row-major).
//! Each defines its rounding sequence exactly, so that the pure-JS reference
//! (ts/reference/layers.ts) produces the same bits.

use crate::buffers::Buf;
use crate::cpu::{self, multiversion};
use crate::gemm::{gemm, gemm_rows, gemm_shifted, gemm_windows};
use crate::graph::{Activation, Arith, BatchNorm, Binary, Conv, Linear, Pool, Shape, Slice};
use crate::pmath;

/// Unfolds `x` into `cols[k × p]` with `k = (c, ky, kx)` (the ONNX weight
/// order) and `p = (oy, ox)`; padding contributes zeros. Pure data
/// movement, for float activations and integer input digits alike.
/// `taps`: the unfold's rows (`taps`, made once per layer: made per image
/// they were a twelfth of an ideal crossbar's inference). Inlined so that
/// the crossbar's clones (cpu.rs) vectorise it.
#[inline(always)]
pub fn im2col<T: Copy + Default>(conv: &Conv, taps: &[Tap], x: &[T], xs: Shape, os: Shape, cols: &mut [T]) {
    let p = os.h * os.w;
    for (kk, tap) in taps.iter().enumerate() {
        unfold_row(tap, conv, x, xs, os, 0, &mut cols[kk * p..(kk + 1) * p]);
    }
}

/// One row `(c, ky, kx)` of the unfold: where it reads and which outputs
/// read inside the image (computed once per layer: the divisions cost more
/// than the copies when the unfold is made a few output rows at a time).
#[derive(Debug, Clone)]
pub struct Tap {
    c: usize,
    ky: usize,
    kx: usize,
    /// Output columns `lo..hi` and rows `y0..y1` read inside the image.
    lo: usize,
    hi: usize,
    y0: usize,
    y1: usize,
}

/// The unfold's rows, in order (no allocation: the crossbar's unfold takes
/// them once per image).
pub fn taps(conv: &Conv, xs: Shape, os: Shape) -> impl Iterator<Item = Tap> + '_ {
    let [kh, kw] = conv.kernel;
    (0..conv.in_channels).flat_map(move |c| {
        (0..kh).flat_map(move |ky| {
            let (y0, y1) = valid_rows(conv, xs, os, ky);
            (0..kw).map(move |kx| {
                let (lo, hi) = valid_columns(conv, xs, os, kx);
                Tap { c, ky, kx, lo, hi, y0, y1 }
            })
        })
    })
}

/// Row `tap` of the unfold for the output rows `ya ..` that `row` spans
/// (whole rows of `os.w` pixels): what `im2col` writes there.
#[inline(always)]
pub fn unfold_row<T: Copy + Default>(tap: &Tap, conv: &Conv, x: &[T], xs: Shape, os: Shape, ya: usize, row: &mut [T]) {
    let &Tap { c, ky, kx, lo, hi, .. } = tap;
    let (sh, sw) = (conv.stride[0], conv.stride[1]);
    let zero = T::default();
    let plane = &x[c * xs.h * xs.w..(c + 1) * xs.h * xs.w];
    // Output rows (of these) whose input row lies inside the image.
    let yb = ya + row.len() / os.w.max(1);
    let (y0, y1) = (tap.y0.clamp(ya, yb), tap.y1.clamp(ya, yb));
    let at = |oy: usize| (oy - ya) * os.w;
    row[..at(y0)].fill(zero);
    row[at(y1)..].fill(zero);
    if sh == 1 && sw == 1 && os.w == xs.w {
        // A shifted copy of the plane: one run for all valid rows, then
        // the columns that wrapped around from a neighbouring row
        // (they read padding) are cleared.
        if y1 > y0 {
            let start = (y0 + ky - conv.pads[0]) * xs.w + kx;
            let len = (y1 - y0) * os.w;
            let dst = &mut row[at(y0)..at(y1)];
            if kx >= conv.pads[1] {
                let from = start - conv.pads[1];
                let n = len.min(plane.len() - from);
                dst[..n].copy_from_slice(&plane[from..from + n]);
                dst[n..].fill(zero);
            } else {
                let skip = conv.pads[1] - kx;
                dst[skip..].copy_from_slice(&plane[start + skip - conv.pads[1]..start + len - conv.pads[1]]);
            }
            clear_columns(dst, os.w, lo, hi, zero);
        }
        return;
    }
    clear_columns(&mut row[at(y0)..at(y1)], os.w, lo, hi, zero);
    for oy in y0..y1 {
        let dst = &mut row[at(oy)..at(oy + 1)];
        let iy = oy * sh + ky - conv.pads[0];
        let src = &plane[iy * xs.w..(iy + 1) * xs.w];
        match sw {
            1 => dst[lo..hi].copy_from_slice(&src[lo + kx - conv.pads[1]..hi + kx - conv.pads[1]]),
            2 => every_second(&mut dst[lo..hi], &src[lo * 2 + kx - conv.pads[1]..]),
            _ => {
                for (ox, d) in dst.iter_mut().enumerate().take(hi).skip(lo) {
                    *d = src[ox * sw + kx - conv.pads[1]];
                }
            }
        }
    }
}

/// `dst[j] = src[2j]`: whole pairs first, so that the compiler turns the
/// copy into shuffles (index by index it stayed a scalar loop, 2 % of an
/// ideal crossbar model's inference); the last value may have no partner.
#[inline(always)]
fn every_second<T: Copy>(dst: &mut [T], src: &[T]) {
    let pairs = dst.len().min(src.len() / 2);
    let (whole, rest) = dst.split_at_mut(pairs);
    for (d, s) in whole.iter_mut().zip(src.chunks_exact(2)) {
        *d = s[0];
    }
    for (j, d) in rest.iter_mut().enumerate() {
        *d = src[2 * (pairs + j)];
    }
}

/// Zeroes columns `..lo` and `hi..` of every `w`-wide line: a padding
/// column or two, column by column down the lines (one memset call per line
/// cost more than the copy).
fn clear_columns<T: Copy>(lines: &mut [T], w: usize, lo: usize, hi: usize, zero: T) {
    for c in (0..lo).chain(hi..w) {
        for v in lines.iter_mut().skip(c).step_by(w) {
            *v = zero;
        }
    }
}

/// Outputs `lo..hi` along one axis whose input `o·stride + tap − pad`
/// lies inside an input of `size` (the rest read padding).
fn valid_outputs(stride: usize, pad: usize, size: usize, outputs: usize, tap: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(tap).div_ceil(stride).min(outputs);
    let hi = if size + pad > tap { ((size - 1 + pad - tap) / stride + 1).min(outputs) } else { 0 };
    (lo, hi.max(lo))
}

/// Output rows `y0..y1` whose input row `oy·stride + ky − pad` lies inside
/// the image.
pub fn valid_rows(conv: &Conv, xs: Shape, os: Shape, ky: usize) -> (usize, usize) {
    valid_outputs(conv.stride[0], conv.pads[0], xs.h, os.h, ky)
}

/// Output columns `lo..hi` whose input column `ox·stride + kx − pad` lies
/// inside the image (the rest read padding).
pub fn valid_columns(conv: &Conv, xs: Shape, os: Shape, kx: usize) -> (usize, usize) {
    valid_outputs(conv.stride[1], conv.pads[1], xs.w, os.w, kx)
}

pub fn conv_rows(conv: &Conv) -> usize {
    conv.in_channels * conv.kernel[0] * conv.kernel[1]
}

/// `out = W · im2col(x) + bias`, every output the product's sequential
/// fused sum (gemm.rs) whichever way the unfold is read.
/// `relu`: the ReLU after the convolution too (`Network::relu_after`), in the
/// same pass as its bias, the bits of the separate passes. (In the shifted
/// product's store, session 26, the two slowed the product itself by a
/// tenth.)
pub fn conv(conv: &Conv, geometry: &Geometry, x: &[f32], xs: Shape, out: &mut [f32], os: Shape, relu: bool) {
    match &geometry.shifted {
        Some(s) => {
            let padded = pad_planes(x, (xs.h, xs.w), (s.hp, s.wp), (conv.pads[0], conv.pads[1]));
            gemm_shifted(&conv.weight, out, conv.out_channels, conv_rows(conv), &padded, &s.offs, &s.corners);
        }
        None => conv_unfolded(conv, &geometry.taps, x, xs, out, os),
    }
    match (&conv.bias, relu) {
        (Some(bias), false) => add_channel_bias(out, bias, os.h * os.w),
        (Some(bias), true) => bias_relu(out, bias, os.h * os.w),
        (None, true) => relu_in_place(out),
        (None, false) => {}
    }
}

/// `relu(v + bias of v's plane)` in place, one pass, the bits of the two
/// (`add_channel_bias`, `relu`), in the clone of `cpu::level()`.
fn bias_relu(out: &mut [f32], bias: &[f32], p: usize) {
    bias_relu_at(cpu::level(), out, bias, p)
}

multiversion! {
    fn bias_relu_at(out: &mut [f32], bias: &[f32], p: usize) {
        _I => {
            for (plane, &b) in out.chunks_exact_mut(p).zip(bias) {
                plane.iter_mut().for_each(|v| *v = relu_of(*v + b));
            }
        }
    }
}

/// The ReLU in place (a layer's output, when the ReLU after it is fused:
/// `Network::relu_after`), in the clone of `cpu::level()`.
pub fn relu_in_place(v: &mut [f32]) {
    relu_in_place_at(cpu::level(), v)
}

multiversion! {
    fn relu_in_place_at(v: &mut [f32]) {
        _I => v.iter_mut().for_each(|v| *v = relu_of(*v))
    }
}

/// How a convolution reads its input, made once per layer (`Network::new`):
/// the unfold's rows, and for a stride-1 convolution whose output rows are
/// whole vectors of 8 the shifted product's plan — the product then reads
/// its unfold in place from a zero-padded copy of the input
/// (`gemm_shifted`), a fraction of the unfold's size (9 times smaller for a
/// 3 × 3 kernel). Made per image, the offsets and rows were 3 % of FP32
/// inference.
#[derive(Debug, Clone, Default)]
pub struct Geometry {
    pub taps: Vec<Tap>,
    shifted: Option<Shifted>,
}

/// The padded extent the outputs read (stride 1: output + kernel − 1), each
/// unfold row's offset in it and each group of 8 outputs' corner.
#[derive(Debug, Clone)]
struct Shifted {
    hp: usize,
    wp: usize,
    offs: Vec<usize>,
    corners: Vec<usize>,
}

impl Geometry {
    pub fn new(conv: &Conv, xs: Shape, os: Shape) -> Geometry {
        let shifted = (conv.stride == [1, 1] && os.w > 0 && os.w.is_multiple_of(8)).then(|| {
            let [kh, kw] = conv.kernel;
            let (hp, wp) = (os.h + kh - 1, os.w + kw - 1);
            let offs = (0..conv.in_channels).flat_map(|c| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (c * hp + ky) * wp + kx))).collect();
            Shifted { hp, wp, offs, corners: vector_corners(os.h, os.w, wp) }
        });
        Geometry { taps: taps(conv, xs, os).collect(), shifted }
    }

    /// Where a stride-1 convolution's unfold rows lie in its padded input
    /// (`pad_planes` to `(hp, wp)`): row kk is the `h × w` window at
    /// `offs[kk]`, its lines `wp` apart (`gemm_windows`). `None`: the
    /// unfold must be made.
    pub fn windows(&self) -> Option<Windows<'_>> {
        self.shifted.as_ref().map(|s| Windows { hp: s.hp, wp: s.wp, offs: &s.offs })
    }
}

/// A convolution's unfold rows as windows of its padded input (`Geometry::windows`).
pub struct Windows<'a> {
    pub hp: usize,
    pub wp: usize,
    pub offs: &'a [usize],
}

/// A convolution's unfold (`k × p`, row kk for (c, ky, kx)) as a product
/// reads it: made by `im2col`, or windows of the padded input
/// (`place_planes` to the `Windows` extent), never made.
#[derive(Clone, Copy)]
pub enum Unfolded<'a> {
    Made { cols: &'a [f32], p: usize },
    Windows { padded: &'a [f32], offs: &'a [usize], output: Shape, wp: usize },
}

impl Unfolded<'_> {
    /// `c[rows × n] = unfold[rows] · b[p × n]`, the same bits either way.
    pub fn product(&self, rows: std::ops::Range<usize>, b: &[f32], c: &mut [f32], n: usize) {
        match *self {
            Unfolded::Made { cols, p } => gemm(&cols[rows.start * p..rows.end * p], b, c, rows.len(), p, n),
            Unfolded::Windows { padded, offs, output, wp } => gemm_windows(padded, &offs[rows], (output.h, output.w, wp), b, c, n),
        }
    }
}

/// Every `h × w` plane of `x` placed at row `top`, column `left` of an
/// `hp × wp` plane of zeros (it must fit): what the shifted products read.
pub fn pad_planes(x: &[f32], (h, w): (usize, usize), (hp, wp): (usize, usize), (top, left): (usize, usize)) -> Buf {
    let mut padded = Buf::zeroed(x.len() / (h * w).max(1) * hp * wp);
    place_planes(x, (h, w), (hp, wp), (top, left), &mut padded);
    padded
}

/// Writes `pad_planes`'s planes of `x` into `padded`, whose margins must be
/// zero already: a buffer reused for images of one layer keeps them so.
pub fn place_planes(x: &[f32], (h, w): (usize, usize), (hp, wp): (usize, usize), (top, left): (usize, usize), padded: &mut [f32]) {
    assert!(top + h <= hp && left + w <= wp, "a {h} × {w} plane at ({top}, {left}) exceeds {hp} × {wp}");
    assert_eq!(padded.len(), x.len() / (h * w).max(1) * hp * wp);
    for (plane, src) in padded.chunks_exact_mut(hp * wp).zip(x.chunks_exact(h * w)) {
        for (y, line) in src.chunks_exact(w).enumerate() {
            plane[(top + y) * wp + left..][..w].copy_from_slice(line);
        }
    }
}

/// The corner, in a padded plane `wp` wide, of each group of 8 pixels of
/// an `h × w` image (`w` a multiple of 8).
pub fn vector_corners(h: usize, w: usize, wp: usize) -> Vec<usize> {
    (0..h * w / 8).map(|v| (8 * v / w) * wp + 8 * v % w).collect()
}

/// Any other convolution: its unfold made and multiplied a group of output
/// rows at a time (`gemm_rows`): groups of about 128 KB of unfold
/// (k × columns), whole output rows, a multiple of 8 columns where a few
/// rows more make one (the product's column tail is scalar).
fn conv_unfolded(conv: &Conv, taps: &[Tap], x: &[f32], xs: Shape, out: &mut [f32], os: Shape) {
    let (k, w) = (conv_rows(conv), os.w.max(1));
    let step = 8 >> w.trailing_zeros().min(3);
    let rows = ((32 * 1024 / k.max(1)).max(w) / w).div_ceil(step) * step;
    gemm_rows(&conv.weight, out, conv.out_channels, k, os.h * os.w, rows * w, |kk, j0, row| unfold_row(&taps[kk], conv, x, xs, os, j0 / w, row));
}

pub fn add_channel_bias(out: &mut [f32], bias: &[f32], p: usize) {
    for (plane, &b) in out.chunks_exact_mut(p).zip(bias) {
        for v in plane {
            *v += b;
        }
    }
}

/// Eval-mode BatchNorm: `(x - mean) * (scale / sqrt(var + eps)) + bias`,
/// each step rounded to f32.
pub fn batch_norm(bn: &BatchNorm, x: &[f32], out: &mut [f32], p: usize) {
    batch_norm_then(bn, x, out, p, |v| v)
}

/// `relu(batch_norm(x))` in one pass, the same bits as the two (each step
/// still rounded to f32), in the clone of `cpu::level()`: the two passes
/// were a twentieth of an ideal crossbar model's inference
/// (`Network::relu_after`).
pub fn batch_norm_relu(bn: &BatchNorm, x: &[f32], out: &mut [f32], p: usize) {
    batch_norm_relu_at(cpu::level(), bn, x, out, p)
}

multiversion! {
    fn batch_norm_relu_at(bn: &BatchNorm, x: &[f32], out: &mut [f32], p: usize) {
        _I => batch_norm_then(bn, x, out, p, relu_of)
    }
}

#[inline(always)]
fn batch_norm_then(bn: &BatchNorm, x: &[f32], out: &mut [f32], p: usize, then: impl Fn(f32) -> f32) {
    for c in 0..bn.scale.len() {
        let g = bn.scale[c] / (bn.var[c] + bn.eps).sqrt();
        let (m, b) = (bn.mean[c], bn.bias[c]);
        for (o, &v) in out[c * p..(c + 1) * p].iter_mut().zip(&x[c * p..(c + 1) * p]) {
            *o = then((v - m) * g + b);
        }
    }
}

/// ReLU of one value: `v > 0 ? v : 0`.
#[inline(always)]
pub(crate) fn relu_of(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

/// `x > 0 ? x : 0` (so NaN and -0 become +0, as in the reference), in the
/// clone of `cpu::level()` (the baseline moves four floats at a time).
pub fn relu(x: &[f32], out: &mut [f32]) {
    relu_at(cpu::level(), x, out)
}

multiversion! {
    fn relu_at(x: &[f32], out: &mut [f32]) {
        _I => out.iter_mut().zip(x).for_each(|(o, &v)| *o = relu_of(v))
    }
}

/// `x < min ? min : x > max ? max : x`.
pub fn hardtanh(x: &[f32], min: f32, max: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = if v < min {
            min
        } else if v > max {
            max
        } else {
            v
        };
    }
}

/// ONNX HardSwish's HardSigmoid: alpha 1/6, beta 1/2.
pub const HARD_SWISH: (f32, f32) = (1.0 / 6.0, 0.5);

/// `alpha·x + beta`, rounded after the product and after the sum (no fused
/// multiply-add, as in the reference); HardSigmoid clamps it to [0, 1].
#[inline(always)]
pub fn hard_sigmoid_input((alpha, beta): (f32, f32), v: f32) -> f32 {
    alpha * v + beta
}

/// `t < 0 ? 0 : t > 1 ? 1 : t` (NaN stays NaN, as in the reference).
#[inline(always)]
fn unit_clamp(t: f32) -> f32 {
    t.clamp(0.0, 1.0)
}

#[inline(always)]
pub fn activate(a: Activation, v: f32) -> f32 {
    match a {
        Activation::Sigmoid => pmath::sigmoid(v),
        Activation::HardSigmoid { alpha, beta } => unit_clamp(hard_sigmoid_input((alpha, beta), v)),
        Activation::HardSwish => v * unit_clamp(hard_sigmoid_input(HARD_SWISH, v)),
        Activation::LeakyRelu { alpha } => {
            if v >= 0.0 {
                v
            } else {
                alpha * v
            }
        }
    }
}

pub fn activation(a: Activation, x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = activate(a, v);
    }
}

/// Index into an operand of shape `s` broadcast to position `(c, y, x)` of
/// the output: an axis of size 1 is read at 0.
#[inline(always)]
pub fn broadcast_index(s: Shape, c: usize, y: usize, x: usize) -> usize {
    let pick = |size: usize, i: usize| if size == 1 { 0 } else { i };
    (pick(s.c, c) * s.h + pick(s.h, y)) * s.w + pick(s.w, x)
}

/// One image's values of an operand, and their shape.
pub type Operand<'a> = (&'a [f32], Shape);

/// `a ∘ b` per output value, one f32 operation each. Each operation has its
/// own instance of the loops: with the `match` inside one loop, the
/// residual Add stayed scalar (7 % of FP32 inference).
pub fn binary(arith: Arith, a: Operand, b: Operand, out: &mut [f32], os: Shape) {
    binary_then(arith, a, b, out, os, |v| v)
}

/// `relu(binary(…))` in one pass, the same bits as the two, in the clone of
/// `cpu::level()` (the residual Add and the ReLU after it, as
/// `batch_norm_relu`).
pub fn binary_relu(arith: Arith, a: Operand, b: Operand, out: &mut [f32], os: Shape) {
    binary_relu_at(cpu::level(), arith, a, b, out, os)
}

multiversion! {
    fn binary_relu_at(arith: Arith, a: Operand, b: Operand, out: &mut [f32], os: Shape) {
        _I => binary_then(arith, a, b, out, os, relu_of)
    }
}

#[inline(always)]
fn binary_then(arith: Arith, a: Operand, b: Operand, out: &mut [f32], os: Shape, then: impl Fn(f32) -> f32) {
    match arith {
        Arith::Add => binary_with(|x, y| then(x + y), a, b, out, os),
        Arith::Sub => binary_with(|x, y| then(x - y), a, b, out, os),
        Arith::Mul => binary_with(|x, y| then(x * y), a, b, out, os),
        Arith::Div => binary_with(|x, y| then(x / y), a, b, out, os),
    }
}

/// `binary` for one operation. When the operand shapes are equal (the
/// residual Add) the broadcast indexing is skipped.
#[inline(always)]
fn binary_with(op: impl Fn(f32, f32) -> f32, (a, sa): Operand, (b, sb): Operand, out: &mut [f32], os: Shape) {
    if sa == os && sb == os {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = op(x, y);
        }
        return;
    }
    for c in 0..os.c {
        for y in 0..os.h {
            for x in 0..os.w {
                out[(c * os.h + y) * os.w + x] = op(a[broadcast_index(sa, c, y, x)], b[broadcast_index(sb, c, y, x)]);
            }
        }
    }
}

/// The two operands of a `Binary` in order: the node's inputs `x` and `y`,
/// or `x` and its constant.
pub fn operands<'a>(b: &'a Binary, x: Operand<'a>, y: Option<Operand<'a>>) -> (Operand<'a>, Operand<'a>) {
    match (&b.constant, y) {
        (Some(k), _) if k.first => ((&k.values, k.shape), x),
        (Some(k), _) => (x, (&k.values, k.shape)),
        (None, Some(y)) => (x, y),
        (None, None) => unreachable!("a Binary without a constant has two inputs (Network::new)"),
    }
}

pub fn slice(s: &Slice, x: &[f32], xs: Shape, out: &mut [f32], os: Shape) {
    for c in 0..xs.c {
        for oy in 0..os.h {
            let iy = s.start[0] + oy * s.step[0];
            for ox in 0..os.w {
                let ix = s.start[1] + ox * s.step[1];
                out[(c * os.h + oy) * os.w + ox] = x[(c * xs.h + iy) * xs.w + ix];
            }
        }
    }
}

pub fn pad_channels(before: usize, x: &[f32], p: usize, out: &mut [f32]) {
    out.fill(0.0);
    out[before * p..before * p + x.len()].copy_from_slice(x);
}

/// Channels `start..` of `x` (`p` values per channel), as many as `out` holds.
pub fn slice_channels(start: usize, x: &[f32], p: usize, out: &mut [f32]) {
    out.copy_from_slice(&x[start * p..start * p + out.len()]);
}

/// `x` (of shape `xs`) with its axes permuted: output axis `k` is input
/// axis `perm[k]` (`Op::Transpose`). Pure data movement, in output order;
/// with `graph::inverse_perm` it carries a gradient back.
pub fn transpose(perm: [usize; 3], x: &[f32], xs: Shape, out: &mut [f32]) {
    let (dims, strides) = ([xs.c, xs.h, xs.w], [xs.h * xs.w, xs.w, 1]);
    let ([d0, d1, d2], [s0, s1, s2]) = (perm.map(|a| dims[a]), perm.map(|a| strides[a]));
    let mut o = out[..xs.len()].iter_mut();
    for i in 0..d0 {
        for j in 0..d1 {
            let row = i * s0 + j * s1;
            for (k, v) in o.by_ref().take(d2).enumerate() {
                *v = x[row + k * s2];
            }
        }
    }
}

/// The inputs one after the other: with channels outermost, that is their
/// channels in order.
pub fn concat<'a>(inputs: impl Iterator<Item = &'a [f32]>, out: &mut [f32]) {
    let mut at = 0;
    for x in inputs {
        out[at..at + x.len()].copy_from_slice(x);
        at += x.len();
    }
}

/// Mean over each channel's pixels: a sequential f32 sum divided by the count.
pub fn global_avg_pool(x: &[f32], p: usize, out: &mut [f32]) {
    for (o, plane) in out.iter_mut().zip(x.chunks_exact(p)) {
        let mut acc = 0f32;
        for &v in plane {
            acc += v;
        }
        *o = acc / p as f32;
    }
}

/// Input rows (or columns) `lo..hi` under output `o`'s window, and the
/// window's size clipped to the padded input (AvgPool's count_include_pad
/// divisor). Windows start at `o·stride − pad_a`; `pad_a` is below the kernel.
pub fn pool_window(o: usize, stride: usize, k: usize, pad_a: usize, pad_b: usize, size: usize) -> (usize, usize, usize) {
    let start = o * stride;
    let lo = start.max(pad_a) - pad_a;
    let hi = (start + k).min(pad_a + size) - pad_a;
    (lo, hi, (start + k).min(pad_a + size + pad_b) - start)
}

/// Index in `plane` (rows `w` wide) of the maximum of rows `y0..y1`,
/// columns `x0..x1`: scanned row by row from `-inf` with a strict `>`, so
/// the first of equal maxima (padding is ignored, NaN never wins; None when
/// nothing beats `-inf`). The forward value and the gradient's route both
/// come from here, in the order the reference follows.
pub fn window_argmax(plane: &[f32], w: usize, (y0, y1): (usize, usize), (x0, x1): (usize, usize)) -> Option<usize> {
    let (mut best, mut at) = (f32::NEG_INFINITY, None);
    for iy in y0..y1 {
        for (ix, &v) in plane[iy * w + x0..iy * w + x1].iter().enumerate() {
            if v > best {
                (best, at) = (v, Some(iy * w + x0 + ix));
            }
        }
    }
    at
}

/// Each window's maximum (`window_argmax`).
pub fn max_pool(pool: &Pool, x: &[f32], xs: Shape, out: &mut [f32], os: Shape) {
    let ([kh, kw], [sh, sw], [pt, pl, pb, pr]) = (pool.kernel, pool.stride, pool.pads);
    for (plane, outs) in x.chunks_exact(xs.h * xs.w).zip(out.chunks_exact_mut(os.h * os.w)) {
        for (oy, line) in outs.chunks_exact_mut(os.w).enumerate() {
            let (y0, y1, _) = pool_window(oy, sh, kh, pt, pb, xs.h);
            for (ox, o) in line.iter_mut().enumerate() {
                let (x0, x1, _) = pool_window(ox, sw, kw, pl, pr, xs.w);
                *o = window_argmax(plane, xs.w, (y0, y1), (x0, x1)).map_or(f32::NEG_INFINITY, |i| plane[i]);
            }
        }
    }
}

/// Each window's mean: a sequential f32 sum of its input pixels, row by
/// row, divided by their count (or by the padded window's size with
/// count_include_pad; padding adds zeros, which leave the sum unchanged).
pub fn avg_pool(pool: &Pool, x: &[f32], xs: Shape, out: &mut [f32], os: Shape) {
    let ([kh, kw], [sh, sw], [pt, pl, pb, pr]) = (pool.kernel, pool.stride, pool.pads);
    for (plane, outs) in x.chunks_exact(xs.h * xs.w).zip(out.chunks_exact_mut(os.h * os.w)) {
        for (oy, line) in outs.chunks_exact_mut(os.w).enumerate() {
            let (y0, y1, wh) = pool_window(oy, sh, kh, pt, pb, xs.h);
            for (ox, o) in line.iter_mut().enumerate() {
                let (x0, x1, ww) = pool_window(ox, sw, kw, pl, pr, xs.w);
                let mut acc = 0f32;
                for row in plane[y0 * xs.w..y1 * xs.w].chunks_exact(xs.w) {
                    for &v in &row[x0..x1] {
                        acc += v;
                    }
                }
                *o = acc / avg_pool_count(pool, (y0, y1, wh), (x0, x1, ww)) as f32;
            }
        }
    }
}

/// The divisor of one AvgPool window, from the two `pool_window`s.
pub fn avg_pool_count(pool: &Pool, (y0, y1, wh): (usize, usize, usize), (x0, x1, ww): (usize, usize, usize)) -> usize {
    if pool.count_include_pad {
        wh * ww
    } else {
        (y1 - y0) * (x1 - x0)
    }
}

/// Each channel's maximum (`window_argmax` over the whole plane).
pub fn global_max_pool(x: &[f32], h: usize, w: usize, out: &mut [f32]) {
    for (o, plane) in out.iter_mut().zip(x.chunks_exact(h * w)) {
        *o = window_argmax(plane, w, (0, h), (0, w)).map_or(f32::NEG_INFINITY, |i| plane[i]);
    }
}

pub fn linear(l: &Linear, x: &[f32], out: &mut [f32]) {
    gemm(&l.weight, x, out, l.out_features, l.in_features, 1);
    if let Some(bias) = &l.bias {
        add_channel_bias(out, bias, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel, stride and padding shape (including the shifted-copy
    /// path of stride-1 "same" convolutions) equals the definition.
    #[test]
    fn im2col_matches_its_definition() {
        let cases = [
            ([3, 3], [1, 1], [1, 1, 1, 1]),
            ([3, 3], [1, 1], [0, 0, 0, 0]),
            ([3, 3], [2, 2], [1, 1, 1, 1]),
            ([1, 1], [1, 1], [0, 0, 0, 0]),
            ([5, 5], [1, 1], [2, 2, 2, 2]),
            ([3, 3], [1, 1], [0, 2, 2, 0]),
            ([2, 3], [1, 2], [1, 0, 0, 1]),
        ];
        for (kernel, stride, pads) in cases {
            let (ci, h, w) = (3, 7, 6);
            let cv = Conv { weight: vec![], bias: None, out_channels: 1, in_channels: ci, kernel, stride, pads };
            let xs = Shape { c: ci, h, w };
            let os = Shape { c: 1, h: (h + pads[0] + pads[2] - kernel[0]) / stride[0] + 1, w: (w + pads[1] + pads[3] - kernel[1]) / stride[1] + 1 };
            let x: Vec<u8> = (0..xs.len()).map(|i| (i % 251 + 1) as u8).collect();
            let p = os.h * os.w;
            let mut cols = vec![255u8; ci * kernel[0] * kernel[1] * p];
            im2col(&cv, &taps(&cv, xs, os).collect::<Vec<_>>(), &x, xs, os, &mut cols);
            for c in 0..ci {
                for ky in 0..kernel[0] {
                    for kx in 0..kernel[1] {
                        for oy in 0..os.h {
                            for ox in 0..os.w {
                                let iy = (oy * stride[0] + ky) as isize - pads[0] as isize;
                                let ix = (ox * stride[1] + kx) as isize - pads[1] as isize;
                                let inside = iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize;
                                let want = if inside { x[(c * h + iy as usize) * w + ix as usize] } else { 0 };
                                let got = cols[((c * kernel[0] + ky) * kernel[1] + kx) * p + oy * os.w + ox];
                                assert_eq!(got, want, "{kernel:?} {stride:?} {pads:?} at c{c} k({ky},{kx}) o({oy},{ox})");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn conv_equals_unfold_then_product() {
        // 64 input channels make groups of a few output rows (k = 576), so
        // the unfold is split; strides 1 and 2, symmetric and uneven pads,
        // widths that are and are not a multiple of 8. Stride 1 with output
        // rows of whole vectors of 8 takes the shifted read (`conv_shifted`):
        // an even and an odd number of vectors, 1 × 1, 3 × 3 and 5 × 5
        // kernels, uneven pads, 7 output channels (blocks of 6 and 1).
        let cases = [
            (10, 12, 1, [1, 1, 1, 1], 3),
            (9, 7, 2, [1, 0, 1, 2], 3),
            (16, 16, 1, [0, 1, 2, 0], 3),
            (8, 8, 1, [1, 1, 1, 1], 3),
            (7, 16, 1, [0, 2, 2, 0], 3),
            (5, 8, 1, [1, 1, 1, 1], 3),
            (6, 8, 1, [0, 0, 0, 0], 1),
            (9, 16, 1, [2, 1, 2, 3], 5),
        ];
        for (h, w, stride, pads, kernel) in cases {
            let (ci, co) = (64, 7);
            let weight: Vec<f32> = (0..co * ci * kernel * kernel).map(|i| (i as f32 * 0.37).sin()).collect();
            let bias = vec![0.5, -1.0, 0.25, 0.0, 2.0, -0.5, 1.5];
            let cv = Conv { weight, bias: Some(bias), out_channels: co, in_channels: ci, kernel: [kernel, kernel], stride: [stride, stride], pads };
            let xs = Shape { c: ci, h, w };
            let os = Shape { c: co, h: (h + pads[0] + pads[2] - kernel) / stride + 1, w: (w + pads[1] + pads[3] - kernel) / stride + 1 };
            let x: Vec<f32> = (0..xs.len()).map(|i| (i as f32 * 0.11).cos()).collect();
            let (k, p) = (conv_rows(&cv), os.h * os.w);
            let mut cols = vec![0f32; k * p];
            im2col(&cv, &taps(&cv, xs, os).collect::<Vec<_>>(), &x, xs, os, &mut cols);
            let mut want = vec![0f32; os.len()];
            gemm(&cv.weight, &cols, &mut want, co, k, p);
            add_channel_bias(&mut want, cv.bias.as_ref().unwrap(), p);
            let mut got = vec![f32::NAN; os.len()];
            conv(&cv, &Geometry::new(&cv, xs, os), &x, xs, &mut got, os, false);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{h}x{w} kernel {kernel} stride {stride} pads {pads:?}");
            // With the ReLU after it fused into the bias pass: the bits of the ReLU pass.
            let mut fused = vec![f32::NAN; os.len()];
            conv(&cv, &Geometry::new(&cv, xs, os), &x, xs, &mut fused, os, true);
            let mut relu_of_want = vec![f32::NAN; os.len()];
            relu(&want, &mut relu_of_want);
            assert!(relu_of_want.contains(&0.0) && relu_of_want.iter().any(|&v| v > 0.0));
            assert!(fused.iter().zip(&relu_of_want).all(|(a, b)| a.to_bits() == b.to_bits()), "relu: {h}x{w} kernel {kernel} stride {stride} pads {pads:?}");
        }
    }

    #[test]
    fn conv_matches_direct_definition() {
        // 2 in-channels, 3 out-channels, 3x3 kernel, stride 2, asymmetric pads.
        let (ci, co, h, w) = (2, 3, 5, 6);
        let weight: Vec<f32> = (0..co * ci * 9).map(|i| (i as f32 * 0.37).sin()).collect();
        let bias = vec![0.5, -1.0, 0.25];
        let cv = Conv { weight, bias: Some(bias), out_channels: co, in_channels: ci, kernel: [3, 3], stride: [2, 2], pads: [1, 0, 1, 2] };
        let xs = Shape { c: ci, h, w };
        let os = Shape { c: co, h: (h + 2 - 3) / 2 + 1, w: (w + 2 - 3) / 2 + 1 };
        let x: Vec<f32> = (0..xs.len()).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut out = vec![0f32; os.len()];
        conv(&cv, &Geometry::new(&cv, xs, os), &x, xs, &mut out, os, false);
        for o in 0..co {
            for oy in 0..os.h {
                for ox in 0..os.w {
                    let mut acc = 0f32;
                    for c in 0..ci {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy * 2 + ky) as isize - 1;
                                let ix = ox as isize * 2 + kx as isize;
                                let v = if iy >= 0 && iy < h as isize && ix < w as isize { x[(c * h + iy as usize) * w + ix as usize] } else { 0.0 };
                                acc = cv.weight[((o * ci + c) * 3 + ky) * 3 + kx].mul_add(v, acc);
                            }
                        }
                    }
                    acc += cv.bias.as_ref().unwrap()[o];
                    assert_eq!(out[(o * os.h + oy) * os.w + ox].to_bits(), acc.to_bits());
                }
            }
        }
    }

    /// MaxPool and AvgPool equal their definition (windows at `o·stride −
    /// pad`, input pixels only, the divisor clipped to the padded input with
    /// count_include_pad), ceil_mode's dropped last window included.
    #[test]
    fn pooling_matches_its_definition() {
        let cases = [([2, 2], [2, 2], [0, 0, 0, 0], false), ([3, 3], [2, 2], [1, 1, 1, 1], true), ([2, 3], [3, 1], [1, 0, 1, 2], true), ([3, 2], [1, 2], [2, 1, 0, 1], false)];
        for (kernel, stride, pads, ceil_mode) in cases {
            for count_include_pad in [false, true] {
                let pool = Pool { kernel, stride, pads, ceil_mode, count_include_pad };
                let xs = Shape { c: 2, h: 7, w: 8 };
                let h = crate::graph::pool_out(xs.h, pads[0], pads[2], kernel[0], stride[0], ceil_mode).unwrap();
                let w = crate::graph::pool_out(xs.w, pads[1], pads[3], kernel[1], stride[1], ceil_mode).unwrap();
                let os = Shape { c: 2, h, w };
                let x: Vec<f32> = (0..xs.len()).map(|i| (i as f32 * 0.73).sin()).collect();
                let (mut max, mut avg) = (vec![0f32; os.len()], vec![0f32; os.len()]);
                max_pool(&pool, &x, xs, &mut max, os);
                avg_pool(&pool, &x, xs, &mut avg, os);
                for c in 0..2 {
                    for oy in 0..h {
                        for ox in 0..w {
                            let (mut m, mut sum, mut n, mut padded) = (f32::NEG_INFINITY, 0f32, 0, 0);
                            for ky in 0..kernel[0] {
                                for kx in 0..kernel[1] {
                                    let iy = (oy * stride[0] + ky) as isize - pads[0] as isize;
                                    let ix = (ox * stride[1] + kx) as isize - pads[1] as isize;
                                    if iy < (xs.h + pads[2]) as isize && ix < (xs.w + pads[3]) as isize {
                                        padded += 1;
                                    }
                                    if iy >= 0 && iy < xs.h as isize && ix >= 0 && ix < xs.w as isize {
                                        let v = x[(c * xs.h + iy as usize) * xs.w + ix as usize];
                                        m = m.max(v);
                                        sum += v;
                                        n += 1;
                                    }
                                }
                            }
                            assert!(n > 0, "{pool:?}: window ({oy},{ox}) reads no pixel");
                            let o = (c * h + oy) * w + ox;
                            assert_eq!(max[o], m, "{pool:?} max at c{c} ({oy},{ox})");
                            assert_eq!(avg[o].to_bits(), (sum / if count_include_pad { padded } else { n } as f32).to_bits(), "{pool:?} avg at c{c} ({oy},{ox})");
                        }
                    }
                }
            }
        }
        // ceil_mode keeps a last window that starts inside the input (7 → 4), drops one starting in the padding (5 → 2).
        assert_eq!(crate::graph::pool_out(7, 1, 1, 3, 2, true), Some(4));
        assert_eq!(crate::graph::pool_out(5, 1, 1, 2, 3, true), Some(2));
        assert_eq!(crate::graph::pool_out(5, 1, 1, 2, 3, false), Some(2));
        assert_eq!(crate::graph::pool_out(5, 2, 0, 2, 1, false), None);
    }

    /// The activations equal ONNX's definitions: exactly where they are
    /// products and clamps, within pmath's 2 ulp for the sigmoid.
    #[test]
    fn activations_match_their_definitions() {
        for i in -400..=400 {
            let v = i as f32 * 0.02;
            let sigmoid = 1.0 / (1.0 + (-(v as f64)).exp());
            assert!((activate(Activation::Sigmoid, v) as f64 - sigmoid).abs() <= 2.5e-7 * sigmoid, "sigmoid({v})");
            assert_eq!(activate(Activation::HardSigmoid { alpha: 0.2, beta: 0.5 }, v), (0.2 * v + 0.5).clamp(0.0, 1.0), "hard sigmoid({v})");
            assert_eq!(activate(Activation::HardSwish, v), v * (v * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0), "hard swish({v})");
            assert_eq!(activate(Activation::LeakyRelu { alpha: 0.01 }, v), if v < 0.0 { 0.01 * v } else { v }, "leaky relu({v})");
        }
        assert_eq!(activate(Activation::HardSwish, -3.0), 0.0);
        assert_eq!(activate(Activation::HardSwish, 3.0), 3.0);
    }

    /// Broadcast arithmetic equals its definition: each output reads each
    /// operand at its own index, or at 0 along an axis of size 1.
    #[test]
    fn binary_broadcasts_like_numpy() {
        let os = Shape { c: 3, h: 2, w: 4 };
        let shapes = [os, Shape { c: 3, h: 1, w: 1 }, Shape { c: 1, h: 1, w: 1 }, Shape { c: 1, h: 2, w: 4 }, Shape { c: 3, h: 2, w: 1 }, Shape { c: 1, h: 1, w: 4 }];
        let values = |s: Shape, k: f32| (0..s.len()).map(|i| (i as f32 * k).sin() + 1.5).collect::<Vec<f32>>();
        for arith in [Arith::Add, Arith::Sub, Arith::Mul, Arith::Div] {
            for sa in shapes {
                for sb in shapes {
                    let Some(s) = crate::graph::broadcast(sa, sb) else { continue };
                    let (a, b) = (values(sa, 0.37), values(sb, 0.91));
                    let mut out = vec![0f32; s.len()];
                    binary(arith, (&a, sa), (&b, sb), &mut out, s);
                    for (i, &o) in out.iter().enumerate() {
                        let (c, y, x) = (i / (s.h * s.w), i / s.w % s.h, i % s.w);
                        let at = |t: Shape| (if t.c == 1 { 0 } else { c } * t.h + if t.h == 1 { 0 } else { y }) * t.w + if t.w == 1 { 0 } else { x };
                        let (u, v) = (a[at(sa)], b[at(sb)]);
                        let want = match arith {
                            Arith::Add => u + v,
                            Arith::Sub => u - v,
                            Arith::Mul => u * v,
                            Arith::Div => u / v,
                        };
                        assert_eq!(o.to_bits(), want.to_bits(), "{arith:?} {sa:?} {sb:?} at {i}");
                    }
                }
            }
        }
        assert_eq!(crate::graph::broadcast(Shape { c: 3, h: 2, w: 4 }, Shape { c: 2, h: 1, w: 1 }), None);
        assert_eq!(crate::graph::broadcast(Shape { c: 3, h: 1, w: 4 }, Shape { c: 1, h: 2, w: 1 }), Some(Shape { c: 3, h: 2, w: 4 }));
    }

    /// Every permutation of a 2×3×4 tensor puts input `(a0, a1, a2)` at
    /// output `(a[perm[0]], a[perm[1]], a[perm[2]])`, and the inverse
    /// permutation brings it back.
    #[test]
    fn transpose_matches_its_definition() {
        let xs = Shape { c: 2, h: 3, w: 4 };
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        for perm in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
            let os = crate::graph::transposed(xs, perm).unwrap();
            let mut out = vec![0f32; 24];
            transpose(perm, &x, xs, &mut out);
            for c in 0..xs.c {
                for y in 0..xs.h {
                    for w in 0..xs.w {
                        let a = [c, y, w];
                        let at = (a[perm[0]] * os.h + a[perm[1]]) * os.w + a[perm[2]];
                        assert_eq!(out[at], x[(c * xs.h + y) * xs.w + w], "{perm:?} at {a:?}");
                    }
                }
            }
            let mut back = vec![0f32; 24];
            transpose(crate::graph::inverse_perm(perm), &out, os, &mut back);
            assert_eq!(back, x, "{perm:?}");
        }
        assert_eq!(crate::graph::transposed(xs, [0, 1, 1]), None);
        assert_eq!(crate::graph::transposed(xs, [0, 1, 3]), None);
    }

    #[test]
    fn small_layers() {
        let mut out = vec![0f32; 4];
        relu(&[-1.0, 2.0, f32::NAN, -0.0], &mut out);
        assert_eq!(out.map_or_bits(), [0f32, 2.0, 0.0, 0.0].map_or_bits());
        let mut pooled = vec![0f32; 2];
        global_avg_pool(&[1.0, 2.0, 3.0, 4.0], 2, &mut pooled);
        assert_eq!(pooled, vec![1.5, 3.5]);
        let s = Slice { start: [0, 0], end: [4, 4], step: [2, 2] };
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut sub = vec![0f32; 4];
        slice(&s, &x, Shape { c: 1, h: 4, w: 4 }, &mut sub, Shape { c: 1, h: 2, w: 2 });
        assert_eq!(sub, vec![0.0, 2.0, 8.0, 10.0]);
        let mut padded = vec![9f32; 12];
        pad_channels(1, &sub, 4, &mut padded[..]);
        padded.truncate(8);
        assert_eq!(padded, vec![0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 8.0, 10.0]);
    }

    trait Bits {
        fn map_or_bits(&self) -> Vec<u32>;
    }
    impl Bits for Vec<f32> {
        fn map_or_bits(&self) -> Vec<u32> {
            self.iter().map(|v| v.to_bits()).collect()
        }
    }
    impl<const N: usize> Bits for [f32; N] {
        fn map_or_bits(&self) -> Vec<u32> {
            self.iter().map(|v| v.to_bits()).collect()
        }
    }
}
