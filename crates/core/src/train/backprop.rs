//! Batch forward in training mode (BatchNorm on batch statistics) and the
//! backward pass of every IR op. Activations are `[n][c][h][w]` per value.
//! Parallel over images (or channels for BatchNorm); reductions over images
//! run in fixed chunks of 8 summed in order, so gradients do not depend on
//! the thread count.

use rayon::prelude::*;

use crate::buffers::Buf;
use crate::cpu::{self, multiversion};
use crate::crossbar::{CrossbarLayer, Scratch, Unfold};
use crate::gemm::{gemm, gemm_taps, transpose};
use crate::graph::{inverse_perm, Activation, Arith, Binary, Conv, Network, Op, Pool, Shape};
use crate::layers;
use crate::train::qat::{self, QatLayer};
use crate::winograd;

/// Crossbar layers under PS-QAT (by node) and the RNG image index of each
/// batch row.
pub struct Qat<'a> {
    pub layers: &'a [Option<QatLayer>],
    pub seed: u64,
    pub images: &'a [usize],
    /// Most bytes one crossbar layer keeps for backward (`TAPE_BYTES`).
    pub tape_bytes: usize,
}

/// A crossbar layer as programmed for this step, with every image's partial
/// sums and converter outputs (`columns × p` each) when they fit in
/// `TAPE_BYTES`. Otherwise (fine bit slicing) backward replays each image's
/// forward, a pure function of seed and image index, to get them again.
struct XbarTape {
    layer: CrossbarLayer,
    recorded: Option<(Buf, Buf)>,
    /// The unfold's rows of the layer's crossbar view (a linear layer's is
    /// a 1 × 1 convolution, which has no node geometry), for the backward.
    taps: Vec<layers::Tap>,
}

/// Default of `Qat::tape_bytes`: fits 4-bit unsliced mappings of ResNets at
/// batch 128; 1-bit slicing and streaming (16× more) replays instead.
pub const TAPE_BYTES: usize = 256 << 20;

const CHUNK: usize = 8;

/// What backward needs from forward beyond the values themselves.
pub struct Tape {
    pub n: usize,
    pub values: Vec<Buf>,
    /// BatchNorm: normalised input and 1/std per channel.
    bn: Vec<Option<(Buf, Vec<f32>)>>,
    xbar: Vec<Option<XbarTape>>,
}

/// Parameter gradients per node, in the node's parameter order
/// (Conv: weight, bias; BatchNorm: scale, bias; Linear: weight, bias).
pub type Grads = Vec<Vec<Vec<f32>>>;

/// Momentum of the running BatchNorm statistics (PyTorch's default).
const BN_MOMENTUM: f32 = 0.1;

fn per_image<'a>(v: &'a mut [f32], len: usize) -> rayon::slice::ChunksExactMut<'a, f32> {
    v.par_chunks_exact_mut(len)
}

/// Elementwise ops run on the batch in chunks of this many values.
const ELEMENTWISE: usize = 4096;

/// Σ f(v) over `xs` in f64, in eight lanes (lane l takes the values ≡ l mod
/// 8, lanes added in order): one long dependent chain of f64 additions was
/// a tenth of a training step, and the lanes keep the result independent of
/// threads. Inlined into the clone of each level that calls it.
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    lane_sum_pairs(xs, xs, |v, _| f(v as f64))
}

/// Σ f(a, b) over pairs, in the lanes of `lane_sum`.
#[inline(always)]
fn lane_sum_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            lanes[l] += f(x[l], y[l]);
        }
    }
    for (l, (&x, &y)) in lanes.iter_mut().zip(ca.remainder().iter().zip(cb.remainder())) {
        *l += f(x, y);
    }
    lanes.iter().sum()
}

/// Forward pass over a batch `x` (`n` images); updates BatchNorm running
/// statistics when `train`. Crossbar layers of `qat` run the StoX engine.
pub fn forward(net: &mut Network, x: impl Into<Buf>, n: usize, train: bool, qat: Option<&Qat>) -> crate::error::Result<Tape> {
    let mut values: Vec<Buf> = Vec::with_capacity(net.shapes.len());
    values.push(x.into());
    let mut bn = Vec::with_capacity(net.nodes.len());
    let mut xbar = Vec::with_capacity(net.nodes.len());
    for i in 0..net.nodes.len() {
        if train && i > 0 && relu_fused(net, i - 1) {
            // The BatchNorm before applied this ReLU: its value (read by
            // nothing else) moves here.
            let v = std::mem::take(&mut values[i]);
            values.push(v);
            bn.push(None);
            xbar.push(None);
            continue;
        }
        let relu = train && relu_fused(net, i);
        let (xs, os) = (net.shapes[net.nodes[i].inputs[0]], net.shapes[i + 1]);
        let ys = net.nodes[i].inputs.get(1).map(|&v| net.shapes[v]);
        // Outputs these ops write whole skip the clearing pass.
        let whole = matches!(net.nodes[i].op, Op::Conv(_) | Op::BatchNorm(_) | Op::Relu | Op::Hardtanh { .. } | Op::Activation(_) | Op::Transpose { .. });
        let mut out = if whole { Buf::for_overwrite(n * os.len()) } else { Buf::zeroed(n * os.len()) };
        let mut cache = None;
        let mut record = None;
        {
            let geometry = &net.geometry[i];
            let node = &mut net.nodes[i];
            let input = &values[node.inputs[0]];
            let crossbar = qat.and_then(|q| q.layers[i].as_ref().map(|l| (l, q)));
            match &mut node.op {
                Op::Conv(_) | Op::Linear(_) if crossbar.is_some() => {
                    let (ql, q) = crossbar.unwrap();
                    let (c, xs) = crossbar_view(&node.op, xs);
                    let c = &*c;
                    let layer = CrossbarLayer::new(i, &node.name, &c.weight, c.bias.as_deref(), c.out_channels, ql.config.clone(), q.seed)?;
                    let p = os.h * os.w;
                    let per = layer.columns.len() * p;
                    // The forward writes every partial sum and converter output of the tape.
                    let mut recorded = (2 * n * per * 4 <= q.tape_bytes).then(|| (Buf::for_overwrite(n * per), Buf::for_overwrite(n * per)));
                    let slots: Vec<Option<(&mut [f32], &mut [f32])>> = match &mut recorded {
                        Some((ps, cs)) => ps.chunks_exact_mut(per).zip(cs.chunks_exact_mut(per)).map(Some).collect(),
                        None => (0..n).map(|_| None).collect(),
                    };
                    let conv: &Conv = c;
                    let taps: Vec<layers::Tap> = layers::taps(conv, xs, os).collect();
                    out.par_chunks_exact_mut(os.len()).zip(input.par_chunks_exact(xs.len())).zip(q.images.par_iter()).zip(slots).for_each_init(Scratch::reused, |scratch, (((o, x), &image), slot)| {
                        let unfold = Unfold::Conv { conv, input: xs, output: os, taps: &taps };
                        layer.forward(x, p, unfold, scratch, image, q.seed, o, None, None, slot);
                    });
                    record = Some(XbarTape { layer, recorded, taps });
                }
                // Training-mode products of wide 3 × 3 stride-1 convolutions
                // take Winograd's 16 multiplications per tile instead of 36;
                // every evaluation keeps the direct product (winograd.rs).
                Op::Conv(c) if train && winograd::fits(c, xs) => {
                    let u = winograd::kernels(&c.weight, c.out_channels, c.in_channels, winograd::Pass::Forward);
                    per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| {
                        winograd::conv(&u, c.out_channels, c.in_channels, xs.h, xs.w, x, o);
                        if let Some(bias) = &c.bias {
                            layers::add_channel_bias(o, bias, os.h * os.w);
                        }
                    })
                }
                Op::Conv(c) => per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::conv(c, geometry, x, xs, o, os, false)),
                Op::BatchNorm(b) => {
                    if train {
                        cache = Some(batch_norm_train(b, input, &mut out, n, xs, relu));
                    } else {
                        per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::batch_norm(b, x, o, xs.h * xs.w));
                    }
                }
                Op::Relu => out.par_chunks_mut(ELEMENTWISE).zip(input.par_chunks(ELEMENTWISE)).for_each(|(o, x)| layers::relu(x, o)),
                Op::Hardtanh { min, max } => {
                    let (lo, hi) = (*min, *max);
                    out.par_chunks_mut(ELEMENTWISE).zip(input.par_chunks(ELEMENTWISE)).for_each(|(o, x)| layers::hardtanh(x, lo, hi, o))
                }
                Op::Binary(b) => {
                    let b: &Binary = b;
                    let y = node.inputs.get(1).map(|&v| &values[v][..]).zip(ys);
                    per_image(&mut out, os.len()).enumerate().for_each(|(j, o)| {
                        let y = y.map(|(v, s)| (&v[j * s.len()..(j + 1) * s.len()], s));
                        let (p, q) = layers::operands(b, (&input[j * xs.len()..(j + 1) * xs.len()], xs), y);
                        layers::binary(b.arith, p, q, o, os)
                    })
                }
                Op::Activation(a) => {
                    let a = *a;
                    out.par_chunks_mut(ELEMENTWISE).zip(input.par_chunks(ELEMENTWISE)).for_each(|(o, x)| layers::activation(a, x, o))
                }
                Op::Slice(s) => per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::slice(s, x, xs, o, os)),
                Op::PadChannels { before, .. } => {
                    let b = *before;
                    per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::pad_channels(b, x, xs.h * xs.w, o))
                }
                Op::SliceChannels { start, .. } => {
                    let s = *start;
                    per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::slice_channels(s, x, xs.h * xs.w, o))
                }
                Op::Transpose { perm } => {
                    let perm = *perm;
                    per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::transpose(perm, x, xs, o))
                }
                Op::MaxPool(p) => per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::max_pool(p, x, xs, o, os)),
                Op::AvgPool(p) => per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::avg_pool(p, x, xs, o, os)),
                Op::GlobalAvgPool => per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::global_avg_pool(x, xs.h * xs.w, o)),
                Op::GlobalMaxPool => per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::global_max_pool(x, xs.h, xs.w, o)),
                Op::Concat => {
                    let parts: Vec<(&[f32], usize)> = node.inputs.iter().map(|&v| (&values[v][..], values[v].len() / n)).collect();
                    per_image(&mut out, os.len()).enumerate().for_each(|(j, o)| layers::concat(parts.iter().map(|&(v, len)| &v[j * len..(j + 1) * len]), o))
                }
                Op::Flatten => out.copy_from_slice(input),
                Op::Linear(l) => per_image(&mut out, os.len()).zip(input.par_chunks_exact(xs.len())).for_each(|(o, x)| layers::linear(l, x, o)),
            }
        }
        bn.push(cache);
        xbar.push(record);
        values.push(out);
    }
    Ok(Tape { n, values, bn, xbar })
}

/// Whether training applies node i + 1, a ReLU, in the pass of node i, a
/// BatchNorm (`Network::relu_after`): the forward writes relu(BatchNorm)
/// at once, and the backward takes the ReLU's mask from x̂ (where
/// x̂·scale + bias, the value the forward's ReLU saw, is positive) in the
/// BatchNorm's own passes, where each was a pass over the activations of
/// its own.
fn relu_fused(net: &Network, i: usize) -> bool {
    net.relu_after[i] && matches!(net.nodes[i].op, Op::BatchNorm(_))
}

/// BatchNorm's affine step, x̂·scale + bias: the forward's output and the
/// fused ReLU's mask in the backward compute it the same way.
#[inline(always)]
fn affine(xh: f32, scale: f32, bias: f32) -> f32 {
    xh * scale + bias
}

/// Train-mode BatchNorm over the batch, and the ReLU after it if `relu`;
/// returns (x̂, 1/std) for backward.
// `ch` indexes the statistics of several per-channel arrays.
#[allow(clippy::needless_range_loop)]
fn batch_norm_train(b: &mut crate::graph::BatchNorm, x: &[f32], out: &mut [f32], n: usize, s: Shape, relu: bool) -> (Buf, Vec<f32>) {
    let (c, p) = (s.c, s.h * s.w);
    let m = (n * p) as f64;
    let level = cpu::level();
    let stats: Vec<(f64, f64)> = (0..c).into_par_iter().map(|ch| channel_stats(level, x, n, c, p, ch)).collect();
    let inv_std: Vec<f32> = stats.iter().map(|&(_, var)| (1.0 / (var + b.eps as f64).sqrt()) as f32).collect();
    let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
    let mut xhat = Buf::for_overwrite(x.len());
    let (scale, bias) = (&b.scale[..], &b.bias[..]);
    xhat.par_chunks_exact_mut(c * p).zip(out.par_chunks_exact_mut(c * p)).zip(x.par_chunks_exact(c * p)).for_each(|((xh, o), x)| {
        if relu {
            normalize::<true>(level, x, &mean, &inv_std, scale, bias, p, xh, o)
        } else {
            normalize::<false>(level, x, &mean, &inv_std, scale, bias, p, xh, o)
        }
    });
    for ch in 0..c {
        let unbiased = if m > 1.0 { stats[ch].1 * m / (m - 1.0) } else { stats[ch].1 };
        b.mean[ch] = (1.0 - BN_MOMENTUM) * b.mean[ch] + BN_MOMENTUM * stats[ch].0 as f32;
        b.var[ch] = (1.0 - BN_MOMENTUM) * b.var[ch] + BN_MOMENTUM * unbiased as f32;
    }
    (xhat, inv_std)
}

// BatchNorm's passes in the clone of `cpu::level()`: the baseline build
// converts and adds two f64 per instruction in the lane sums, and moves
// four floats at a time in the elementwise passes.
multiversion! {
    /// Mean and biased variance of channel `ch` over the batch's `n` images (`c × p` each).
    fn channel_stats(x: &[f32], n: usize, c: usize, p: usize, ch: usize) -> (f64, f64) {
        _I => {
            let m = (n * p) as f64;
            let plane = |img: usize| &x[(img * c + ch) * p..(img * c + ch + 1) * p];
            let mut sum = 0f64;
            for img in 0..n {
                sum += lane_sum(plane(img), |v| v);
            }
            let mean = sum / m;
            let mut ss = 0f64;
            for img in 0..n {
                ss += lane_sum(plane(img), |v| (v - mean) * (v - mean));
            }
            (mean, ss / m)
        }
    }
}

multiversion! {
    /// One image: x̂ = (x − mean)·(1/std), out = x̂·scale + bias (its ReLU if `RELU`).
    fn normalize<const RELU: bool>(x: &[f32], mean: &[f32], inv_std: &[f32], scale: &[f32], bias: &[f32], p: usize, xh: &mut [f32], o: &mut [f32]) {
        _I => {
            for ch in 0..mean.len() {
                let (mean, is, g, b) = (mean[ch], inv_std[ch], scale[ch], bias[ch]);
                let r = ch * p..(ch + 1) * p;
                for ((xh, o), &x) in xh[r.clone()].iter_mut().zip(&mut o[r.clone()]).zip(&x[r]) {
                    *xh = (x - mean) * is;
                    let v = affine(*xh, g, b);
                    *o = if RELU { layers::relu_of(v) } else { v };
                }
            }
        }
    }
}

multiversion! {
    /// Σ dy and Σ dy·x̂ of channel `ch` over the batch's `n` images, dy
    /// through the fused ReLU if `RELU` (`relu_fused`; `scale`, `bias`: the
    /// channel's).
    fn channel_grad_sums<const RELU: bool>(dy: &[f32], xhat: &[f32], n: usize, c: usize, p: usize, ch: usize, scale: f32, bias: f32) -> (f32, f32) {
        _I => {
            let (mut sb, mut sg) = (0f64, 0f64);
            for img in 0..n {
                let r = (img * c + ch) * p..(img * c + ch + 1) * p;
                sb += lane_sum_pairs(&dy[r.clone()], &xhat[r.clone()], |g, xh| relu_grad_of::<RELU>(g, xh, scale, bias) as f64);
                sg += lane_sum_pairs(&dy[r.clone()], &xhat[r], |g, xh| (relu_grad_of::<RELU>(g, xh, scale, bias) * xh) as f64);
            }
            (sb as f32, sg as f32)
        }
    }
}

multiversion! {
    /// One image's BatchNorm input gradient, dx = k·(m·dy − Σdy − x̂·Σdy·x̂)
    /// per channel, dy through the fused ReLU if `RELU`.
    fn batch_norm_input_grad<const RELU: bool>(dy: &[f32], xhat: &[f32], sums: &[(f32, f32)], k: &[f32], m: f32, p: usize, scale: &[f32], bias: &[f32], dx: &mut [f32]) {
        _I => {
            for (ch, &(db, dg)) in sums.iter().enumerate() {
                let (k, r, sc, bi) = (k[ch], ch * p..(ch + 1) * p, scale[ch], bias[ch]);
                for ((d, &g), &xh) in dx[r.clone()].iter_mut().zip(&dy[r.clone()]).zip(&xhat[r]) {
                    *d = k * (m * relu_grad_of::<RELU>(g, xh, sc, bi) - db - xh * dg);
                }
            }
        }
    }
}

/// dy through the ReLU fused after a BatchNorm (if `RELU`): dy where the
/// ReLU's input x̂·scale + bias was positive, else 0 — `relu_grad`'s value
/// (y > 0 exactly where that input is).
#[inline(always)]
fn relu_grad_of<const RELU: bool>(g: f32, xh: f32, scale: f32, bias: f32) -> f32 {
    if !RELU || affine(xh, scale, bias) > 0.0 {
        g
    } else {
        0.0
    }
}

multiversion! {
    /// `acc += g`: a value's gradients from its several consumers, an
    /// image's parameter gradients into its chunk's, the chunks' in order
    /// (in the baseline build four floats per instruction: a thirtieth of
    /// a PS-QAT step).
    fn accumulate(g: &[f32], acc: &mut [f32]) {
        _I => acc.iter_mut().zip(g).for_each(|(a, &b)| *a += b)
    }
}

multiversion! {
    /// An Add's (or a Sub's left) operand gradient: dy itself, as `0 + dy` (the bits of `+=` onto zeros: −0 becomes +0).
    fn pass_grad(dy: &[f32], dx: &mut [f32]) {
        _I => dx.iter_mut().zip(dy).for_each(|(d, &g)| *d = 0.0 + g)
    }
}

multiversion! {
    /// ReLU's gradient from its output: dy where y > 0, else 0.
    fn relu_grad(dy: &[f32], y: &[f32], dx: &mut [f32]) {
        _I => dx.iter_mut().zip(dy.iter().zip(y)).for_each(|(d, (&g, &v))| *d = if v > 0.0 { g } else { 0.0 })
    }
}

/// Adds `dcols` (`k × p`) back into the image gradient (inverse of im2col),
/// in the clone of `cpu::level()` (its row additions vectorise).
fn col2im(conv: &Conv, dcols: &[f32], xs: Shape, os: Shape, dx: &mut [f32]) {
    col2im_at(cpu::level(), conv, dcols, xs, os, dx)
}

multiversion! {
    fn col2im_at(conv: &Conv, dcols: &[f32], xs: Shape, os: Shape, dx: &mut [f32]) {
        _I => col2im_in(conv, dcols, xs, os, dx)
    }
}

#[inline(always)]
fn col2im_in(conv: &Conv, dcols: &[f32], xs: Shape, os: Shape, dx: &mut [f32]) {
    let [kh, kw] = conv.kernel;
    let p = os.h * os.w;
    for c in 0..xs.c {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &dcols[((c * kh + ky) * kw + kx) * p..][..p];
                let (lo, hi) = layers::valid_columns(conv, xs, os, kx);
                let (y0, y1) = layers::valid_rows(conv, xs, os, ky);
                for oy in y0..y1 {
                    let iy = oy * conv.stride[0] + ky - conv.pads[0];
                    let dst = &mut dx[(c * xs.h + iy) * xs.w..(c * xs.h + iy + 1) * xs.w];
                    let src = &row[oy * os.w..(oy + 1) * os.w];
                    if conv.stride[1] == 1 {
                        dst[lo + kx - conv.pads[1]..hi + kx - conv.pads[1]].iter_mut().zip(&src[lo..hi]).for_each(|(d, &v)| *d += v);
                    } else {
                        for ox in lo..hi {
                            dst[ox * conv.stride[1] + kx - conv.pads[1]] += src[ox];
                        }
                    }
                }
            }
        }
    }
}

/// `dx += col2im(Wᵀ · dy)`, a convolution's input gradient, where rows
/// `k0..k1` of the unfold's gradient take the output gradient `dys[s]`
/// (`o × p`) for the `s`-th range of `ranges` (one range for a digital
/// conv; PS-QAT: one per subarray, each with its own d ps) and `wt`
/// (`k × o`) is Wᵀ. Stride-1 convolutions whose input rows are whole
/// vectors of 8 (pads smaller than the kernel) fuse the product and col2im
/// (`gemm_taps`: the same bits); the others write the unfold's gradient
/// into `dcols` (`k × p`) first.
#[allow(clippy::too_many_arguments)]
fn input_grad(c: &Conv, wt: &[f32], dys: &[f32], ranges: &[(usize, usize)], xs: Shape, os: Shape, dx: &mut [f32], dcols: &mut [f32]) {
    let [kh, kw] = c.kernel;
    let (p, k) = (os.h * os.w, layers::conv_rows(c));
    let o = dys.len() / (ranges.len() * p).max(1);
    let fused = c.stride == [1, 1] && xs.w > 0 && xs.w.is_multiple_of(8) && c.pads[0].max(c.pads[2]) < kh && c.pads[1].max(c.pads[3]) < kw;
    if !fused {
        for (s, &(k0, k1)) in ranges.iter().enumerate() {
            gemm(&wt[k0 * o..k1 * o], &dys[s * o * p..(s + 1) * o * p], &mut dcols[k0 * p..k1 * p], k1 - k0, o, p);
        }
        col2im(c, &dcols[..k * p], xs, os, dx);
        return;
    }
    // Each output gradient placed so that input pixel (iy, ix) at tap
    // (ky, kx) reads it at (iy + kh − 1 − ky, ix + kw − 1 − kx): output
    // (oy, ox) = (iy + pad − ky, ix + pad − kx) sits at (oy + kh − 1 − pad,
    // ox + kw − 1 − pad); zeros around it.
    let (hq, wq) = (xs.h + kh - 1, xs.w + kw - 1);
    let plane = hq * wq;
    let padded = layers::pad_planes(dys, (os.h, os.w), (hq, wq), (kh - 1 - c.pads[0], kw - 1 - c.pads[1]));
    let source = |kk: usize| ranges.iter().position(|&(k0, k1)| (k0..k1).contains(&kk)).expect("the ranges cover every row");
    let offs: Vec<usize> = (0..k).map(|kk| source(kk) * o * plane + (kh - 1 - kk / kw % kh) * wq + (kw - 1 - kk % kw)).collect();
    gemm_taps(wt, o, kh * kw, &padded, plane, &offs, &layers::vector_corners(xs.h, xs.w, wq), dx);
}

/// The shared shape of every weighted layer's backward: images in fixed
/// chunks of `CHUNK` (in parallel), each chunk summing its images' parameter
/// gradients in order into its own zeroed accumulators of the `grads`
/// sizes, chunks then summed in order — so the result does not depend on
/// the thread count. `image(acc, scratch, dx, dy, x, i)` handles image `i`
/// of the batch; `scratch` is allocated once per chunk. Every chunk's
/// accumulators lie in one buffer taken and dropped on the calling thread,
/// so its free list gives it back next step (fresh per chunk, they were
/// page-faulted and cleared by the kernel every time).
fn chunked_backward<S>(
    x: &[f32],
    dy: &[f32],
    n: usize,
    (xl, yl): (usize, usize),
    grads: &[usize],
    scratch: impl Fn() -> S + Sync,
    image: impl Fn(&mut [&mut [f32]], &mut S, &mut [f32], &[f32], &[f32], usize) + Sync,
) -> (Buf, Vec<Vec<f32>>) {
    let per: usize = grads.iter().sum();
    // One chunk's accumulators (at least one float, so that every chunk has a part).
    let part_len = per.max(1);
    let mut dx = Buf::zeroed(n * xl);
    let mut parts = Buf::zeroed(n.div_ceil(CHUNK) * part_len);
    dx.par_chunks_mut(CHUNK * xl).zip(dy.par_chunks(CHUNK * yl)).zip(x.par_chunks(CHUNK * xl)).zip(parts.par_chunks_mut(part_len)).enumerate().for_each(|(c, (((dxc, dyc), xc), part))| {
        let mut acc = split(part, grads);
        let mut s = scratch();
        for (j, ((dxi, dyi), xi)) in dxc.chunks_exact_mut(xl).zip(dyc.chunks_exact(yl)).zip(xc.chunks_exact(xl)).enumerate() {
            image(&mut acc, &mut s, dxi, dyi, xi, c * CHUNK + j);
        }
    });
    // Chunks summed in chunk order.
    let mut chunks = parts.chunks_exact(part_len);
    let mut total = chunks.next().map_or_else(|| vec![0f32; per], |first| first[..per].to_vec());
    for part in chunks {
        accumulate(cpu::level(), part, &mut total);
    }
    (dx, split(&mut total, grads).into_iter().map(|g| g.to_vec()).collect())
}

/// `v` cut into consecutive pieces of the given lengths.
fn split<'a>(mut v: &'a mut [f32], lens: &[usize]) -> Vec<&'a mut [f32]> {
    lens.iter()
        .map(|&len| {
            let (head, rest) = std::mem::take(&mut v).split_at_mut(len);
            v = rest;
            head
        })
        .collect()
}

/// Scratch for `unfold_image` of `copies` inputs: (the made unfolds, the
/// padded inputs, zeroed: their margins stay zero from image to image).
fn unfold_scratch(c: &Conv, windows: Option<&layers::Windows>, k: usize, p: usize, copies: usize) -> (Buf, Buf) {
    match windows {
        Some(w) => (Buf::for_overwrite(0), Buf::zeroed(copies * c.in_channels * w.hp * w.wp)),
        None => (Buf::for_overwrite(copies * k * p), Buf::zeroed(0)),
    }
}

/// The unfold of one image's input `x` for a weight gradient: windows of
/// `padded` (`unfold_scratch`) where the layer has them, else made in
/// `cols` from `taps`.
#[allow(clippy::too_many_arguments)]
fn unfold_image<'a>(c: &Conv, taps: &[layers::Tap], windows: Option<&layers::Windows<'a>>, x: &[f32], xs: Shape, os: Shape, cols: &'a mut [f32], padded: &'a mut [f32]) -> layers::Unfolded<'a> {
    match windows {
        Some(w) => {
            layers::place_planes(x, (xs.h, xs.w), (w.hp, w.wp), (c.pads[0], c.pads[1]), padded);
            layers::Unfolded::Windows { padded, offs: w.offs, output: os, wp: w.wp }
        }
        None => {
            layers::im2col(c, taps, x, xs, os, cols);
            layers::Unfolded::Made { cols, p: os.h * os.w }
        }
    }
}

/// Conv backward: returns (dx, [dW, db?]). The weight gradient is summed
/// transposed, `dWᵀ = cols · dYᵀ` (`k × o`), on the unfold of the input
/// (`unfold_image`: read in place where it can be): its long dimension is
/// then the product's row count, where the kernel is fastest, and no
/// transposed unfold is needed.
fn conv_backward(c: &Conv, geometry: &layers::Geometry, x: &[f32], dy: &[f32], n: usize, xs: Shape, os: Shape) -> (Buf, Vec<Vec<f32>>) {
    let k = layers::conv_rows(c);
    let p = os.h * os.w;
    let o = c.out_channels;
    let nb = if c.bias.is_some() { o } else { 0 };
    let fast = winograd::fits(c, xs).then(|| winograd::kernels(&c.weight, o, c.in_channels, winograd::Pass::InputGrad));
    // The direct input gradient's transposed weights and scratch (`dcols`),
    // only without Winograd's. Every scratch is written whole before it is
    // read (the unfold, transpose, products), but for the padded input's
    // margins, zero throughout.
    let mut wt = Vec::new();
    if fast.is_none() {
        wt = vec![0f32; k * o];
        transpose(&c.weight, o, k, &mut wt);
    }
    let dcols = if fast.is_some() { 0 } else { k * p };
    let windows = geometry.windows();
    let scratch = || {
        let (cols, padded) = unfold_scratch(c, windows.as_ref(), k, p, 1);
        (cols, padded, Buf::for_overwrite(dcols), Buf::for_overwrite(p * o), Buf::for_overwrite(k * o))
    };
    let (dx, mut g) = chunked_backward(x, dy, n, (xs.len(), os.len()), &[k * o, nb], scratch, |acc, (cols, padded, dcols, dyt, tmp), dxi, dyi, xi, _| {
        transpose(dyi, o, p, dyt);
        unfold_image(c, &geometry.taps, windows.as_ref(), xi, xs, os, cols, padded).product(0..k, dyt, tmp, o);
        accumulate(cpu::level(), tmp, acc[0]);
        for (ch, row) in dyi.chunks_exact(p).enumerate().take(nb) {
            acc[1][ch] += row.iter().sum::<f32>();
        }
        match &fast {
            Some(u) => winograd::conv(u, c.in_channels, o, xs.h, xs.w, dyi, dxi),
            None => input_grad(c, &wt, dyi, &[(0, k)], xs, os, dxi, dcols),
        }
    });
    let mut dw = vec![0f32; o * k];
    transpose(&g[0], k, o, &mut dw);
    g[0] = dw;
    g.truncate(if nb > 0 { 2 } else { 1 });
    (dx, g)
}

fn linear_backward(l: &crate::graph::Linear, x: &[f32], dy: &[f32], n: usize) -> (Buf, Vec<Vec<f32>>) {
    let (fi, fo) = (l.in_features, l.out_features);
    let mut wt = vec![0f32; fi * fo];
    transpose(&l.weight, fo, fi, &mut wt);
    let (dx, mut g) = chunked_backward(
        x,
        dy,
        n,
        (fi, fo),
        &[fo * fi, fo],
        || (),
        |acc, _, dxi, dyi, xi, _| {
            for (oo, &g) in dyi.iter().enumerate() {
                acc[0][oo * fi..(oo + 1) * fi].iter_mut().zip(xi).for_each(|(a, &v)| *a += g * v);
                acc[1][oo] += g;
            }
            gemm(&wt, dyi, dxi, fi, fo, 1);
        },
    );
    g.truncate(if l.bias.is_some() { 2 } else { 1 });
    (dx, g)
}

/// A crossbar layer as a convolution: a linear layer is the 1×1 convolution
/// of its input vector seen as a 1×1 image, so PS-QAT has one crossbar path
/// (forward, replay and backward) for both. The copy of a linear layer's
/// weights per step is small beside the layer's own work.
fn crossbar_view(op: &Op, xs: Shape) -> (std::borrow::Cow<'_, Conv>, Shape) {
    match op {
        Op::Conv(c) => (std::borrow::Cow::Borrowed(c), xs),
        Op::Linear(l) => (
            std::borrow::Cow::Owned(Conv { weight: l.weight.clone(), bias: l.bias.clone(), out_channels: l.out_features, in_channels: l.in_features, kernel: [1, 1], stride: [1, 1], pads: [0; 4] }),
            Shape { c: l.in_features, h: 1, w: 1 },
        ),
        _ => unreachable!("crossbar layers are Conv or Linear (QatLayer::new)"),
    }
}

/// Gradients of the learned state of crossbar layers, by node.
pub type QatGrads = Vec<Option<qat::XbarGrads>>;

/// Backward of a crossbar conv under PS-QAT (see qat.rs): (dx, [dW, db?], learned-state gradients).
#[allow(clippy::too_many_arguments)]
fn crossbar_backward(ql: &QatLayer, t: &XbarTape, q: &Qat, c: &Conv, windows: Option<&layers::Windows>, x: &[f32], dy: &[f32], n: usize, xs: Shape, os: Shape) -> (Buf, Vec<Vec<f32>>, qat::XbarGrads) {
    let layer = &t.layer;
    let (p, k, o) = (os.h * os.w, layer.k, layer.out);
    let cols = layer.columns.len();
    let has_bias = c.bias.is_some();
    let grads = [o * k, if has_bias { o } else { 0 }, cols, cols, cols, cols, 1];
    let per = cols * p;
    // Replay buffers: partial sums, converter outputs, the (unused) layer output.
    let replay = if t.recorded.is_some() { [0; 3] } else { [per, per, os.len()] };
    let wt = qat::transposed_cells(layer);
    let m = &layer.config.mapping;
    let (slices, streams) = (m.slices(), m.streams());
    // Every scratch is written whole before it is read (levels, the
    // unfolds, col2im's, the cleared dlevels, the replay), but for the
    // padded inputs' margins, zero throughout.
    let scratch = || {
        let (cols, padded) = unfold_scratch(c, windows, k, p, streams);
        (
            Buf::for_overwrite(xs.len()),
            (cols, padded),
            Buf::for_overwrite(k * p),
            Buf::for_overwrite(xs.len()),
            replay.map(Buf::for_overwrite),
            Scratch::reused(),
            qat::ImageGrads::new(ql, layer, p, has_bias),
        )
    };
    let taps = &t.taps[..];
    let unfold = Unfold::Conv { conv: c, input: xs, output: os, taps };
    let (dx, mut total) = chunked_backward(x, dy, n, (xs.len(), os.len()), &grads, scratch, |acc, (levels, (cols, padded), dcols, dlevels, [ps_buf, c_buf, y_buf], sc, g), dxi, dyi, xi, i| {
        let (psi, ci): (&[f32], &[f32]) = match &t.recorded {
            Some((ps, cs)) => (&ps[i * per..(i + 1) * per], &cs[i * per..(i + 1) * per]),
            None => {
                layer.forward(xi, p, unfold, sc, q.images[i], q.seed, y_buf, None, None, Some((&mut ps_buf[..], &mut c_buf[..])));
                (ps_buf, c_buf)
            }
        };
        qat::input_levels(&layer.input, xi, levels);
        // Each stream's digits unfolded (`dlevels`, cleared below, holds them meanwhile).
        let (mut cols, mut padded) = (&mut cols[..], &mut padded[..]);
        let (cols_len, padded_len) = (cols.len() / streams, padded.len() / streams);
        let units: Vec<layers::Unfolded> = (0..streams)
            .map(|j| {
                let (made, rest) = std::mem::take(&mut cols).split_at_mut(cols_len);
                cols = rest;
                let (plane, rest) = std::mem::take(&mut padded).split_at_mut(padded_len);
                padded = rest;
                let digits: &[f32] = if streams == 1 {
                    levels
                } else {
                    dlevels.iter_mut().zip(levels.iter()).for_each(|(d, &l)| *d = crate::crossbar::digit(l, j, m.input_stream_bits));
                    dlevels
                };
                unfold_image(c, taps, windows, digits, xs, os, made, plane)
            })
            .collect();
        qat::backward_image(ql, layer, &units, psi, ci, dyi, p, g);
        dlevels.fill(0.0);
        for (i, wt) in wt.iter().enumerate() {
            input_grad(c, wt, g.input_source(i, slices), &layer.ranges, xs, os, dlevels, dcols);
        }
        // Straight through the input quantiser inside its range; the clip's
        // gradient with q = step·level (qat.rs).
        let range = if layer.input.signed { (-ql.config.input_clip, ql.config.input_clip) } else { (0.0, ql.config.input_clip) };
        acc[6][0] += qat::input_ste(&layer.input, range, xi, levels, dlevels, dxi);
        let level = cpu::level();
        accumulate(level, &g.dw, acc[0]);
        accumulate(level, &g.db, acc[1]);
        for (a, d) in acc[2..].iter_mut().zip(&g.dparams) {
            accumulate(level, d, a);
        }
    });
    let learned = qat::XbarGrads { params: std::array::from_fn(|j| std::mem::take(&mut total[2 + j])), clip: total[6][0] };
    total.truncate(2);
    let mut dw = vec![0f32; o * k];
    transpose(&total[0], k, o, &mut dw);
    total[0] = dw;
    // Straight-through the weight quantiser: dw = d level / scale.
    for (oo, &s) in layer.weight_scale.iter().enumerate() {
        total[0][oo * k..(oo + 1) * k].iter_mut().for_each(|g| *g /= s);
    }
    if !has_bias {
        total.truncate(1);
    }
    (dx, total, learned)
}

/// Backward from the gradient of the output value; returns parameter
/// gradients per node, and those of PS-QAT's learned normalisation.
pub fn backward(net: &Network, tape: &Tape, d_out: Vec<f32>, qat: Option<&Qat>) -> (Grads, QatGrads) {
    let mut qgrads: QatGrads = vec![None; net.nodes.len()];
    let n = tape.n;
    let mut grads: Vec<Option<Buf>> = (0..net.shapes.len()).map(|_| None).collect();
    grads[net.output] = Some(Buf::from(d_out));
    let mut params: Grads = vec![Vec::new(); net.nodes.len()];
    let add_grad = |grads: &mut Vec<Option<Buf>>, v: usize, g: Buf| match &mut grads[v] {
        Some(acc) => {
            let level = cpu::level();
            acc.par_chunks_mut(ELEMENTWISE).zip(g.par_chunks(ELEMENTWISE)).for_each(|(a, g)| accumulate(level, g, a))
        }
        slot => *slot = Some(g),
    };
    for i in (0..net.nodes.len()).rev() {
        let Some(dy) = grads[i + 1].take() else { continue };
        let node = &net.nodes[i];
        let (xin, xs, os) = (node.inputs[0], net.shapes[node.inputs[0]], net.shapes[i + 1]);
        let x = &tape.values[xin];
        let crossbar = qat.and_then(|q| q.layers[i].as_ref().map(|l| (l, q))).zip(tape.xbar[i].as_ref());
        match &node.op {
            Op::Conv(_) | Op::Linear(_) if crossbar.is_some() => {
                let ((ql, q), t) = crossbar.unwrap();
                let (c, xs) = crossbar_view(&node.op, xs);
                let (dx, g, dp) = crossbar_backward(ql, t, q, &c, net.geometry[i].windows().as_ref(), x, &dy, n, xs, os);
                params[i] = g;
                qgrads[i] = Some(dp);
                if xin != 0 {
                    add_grad(&mut grads, xin, dx);
                }
            }
            Op::Conv(c) => {
                let (dx, g) = conv_backward(c, &net.geometry[i], x, &dy, n, xs, os);
                params[i] = g;
                if xin != 0 {
                    add_grad(&mut grads, xin, dx);
                }
            }
            Op::Linear(l) => {
                let (dx, g) = linear_backward(l, x, &dy, n);
                params[i] = g;
                add_grad(&mut grads, xin, dx);
            }
            Op::BatchNorm(b) => {
                let (xhat, inv_std) = tape.bn[i].as_ref().expect("BatchNorm backward needs a training forward");
                let (c, p) = (xs.c, xs.h * xs.w);
                let m = (n * p) as f32;
                let level = cpu::level();
                // dy is the ReLU's output gradient if the ReLU is fused.
                let relu = relu_fused(net, i);
                let (sc, bi) = (&b.scale[..], &b.bias[..]);
                let sums: Vec<(f32, f32)> = (0..c)
                    .into_par_iter()
                    .map(|ch| if relu { channel_grad_sums::<true>(level, &dy, xhat, n, c, p, ch, sc[ch], bi[ch]) } else { channel_grad_sums::<false>(level, &dy, xhat, n, c, p, ch, sc[ch], bi[ch]) })
                    .collect();
                let k: Vec<f32> = (0..c).map(|ch| b.scale[ch] * inv_std[ch] / m).collect();
                let mut dx = Buf::for_overwrite(dy.len());
                dx.par_chunks_exact_mut(c * p).zip(dy.par_chunks_exact(c * p)).zip(xhat.par_chunks_exact(c * p)).for_each(|((dxi, dyi), xh)| {
                    if relu {
                        batch_norm_input_grad::<true>(level, dyi, xh, &sums, &k, m, p, sc, bi, dxi)
                    } else {
                        batch_norm_input_grad::<false>(level, dyi, xh, &sums, &k, m, p, sc, bi, dxi)
                    }
                });
                params[i] = vec![sums.iter().map(|s| s.1).collect(), sums.iter().map(|s| s.0).collect()];
                add_grad(&mut grads, xin, dx);
            }
            Op::Hardtanh { min, max } => {
                let (lo, hi) = (*min, *max);
                let mut dx = Buf::for_overwrite(dy.len());
                dx.par_chunks_mut(ELEMENTWISE)
                    .zip(dy.par_chunks(ELEMENTWISE))
                    .zip(x.par_chunks(ELEMENTWISE))
                    .for_each(|((d, g), xv)| d.iter_mut().zip(g.iter().zip(xv)).for_each(|(d, (&g, &v))| *d = if v > lo && v < hi { g } else { 0.0 }));
                add_grad(&mut grads, xin, dx);
            }
            // The BatchNorm before takes the ReLU's gradient in its own passes.
            Op::Relu if i > 0 && relu_fused(net, i - 1) => add_grad(&mut grads, xin, dy),
            Op::Relu => {
                let y = &tape.values[i + 1];
                let mut dx = Buf::for_overwrite(dy.len());
                let level = cpu::level();
                dx.par_chunks_mut(ELEMENTWISE).zip(dy.par_chunks(ELEMENTWISE)).zip(y.par_chunks(ELEMENTWISE)).for_each(|((d, g), yv)| relu_grad(level, g, yv, d));
                add_grad(&mut grads, xin, dx);
            }
            Op::Activation(a) => {
                let y = &tape.values[i + 1];
                let mut dx = Buf::for_overwrite(dy.len());
                dx.par_chunks_mut(ELEMENTWISE).zip(dy.par_chunks(ELEMENTWISE)).zip(x.par_chunks(ELEMENTWISE)).zip(y.par_chunks(ELEMENTWISE)).for_each(|(((d, g), xv), yv)| {
                    for (((d, &g), &v), &o) in d.iter_mut().zip(g).zip(xv).zip(yv) {
                        *d = g * activation_slope(*a, v, o);
                    }
                });
                add_grad(&mut grads, xin, dx);
            }
            Op::Binary(b) => {
                for (k, &v) in node.inputs.iter().enumerate().rev() {
                    let dv = binary_backward(net, tape, i, b, k, &dy);
                    add_grad(&mut grads, v, dv);
                }
            }
            Op::Slice(s) => {
                let mut dx = Buf::zeroed(n * xs.len());
                dx.par_chunks_exact_mut(xs.len()).zip(dy.par_chunks_exact(os.len())).for_each(|(dxi, dyi)| {
                    for c in 0..xs.c {
                        for oy in 0..os.h {
                            for ox in 0..os.w {
                                dxi[(c * xs.h + s.start[0] + oy * s.step[0]) * xs.w + s.start[1] + ox * s.step[1]] += dyi[(c * os.h + oy) * os.w + ox];
                            }
                        }
                    }
                });
                add_grad(&mut grads, xin, dx);
            }
            // Each is the other's adjoint.
            Op::PadChannels { before, .. } => {
                let mut dx = Buf::zeroed(n * xs.len());
                dx.par_chunks_exact_mut(xs.len()).zip(dy.par_chunks_exact(os.len())).for_each(|(o, d)| layers::slice_channels(*before, d, xs.h * xs.w, o));
                add_grad(&mut grads, xin, dx);
            }
            Op::SliceChannels { start, .. } => {
                let mut dx = Buf::zeroed(n * xs.len());
                dx.par_chunks_exact_mut(xs.len()).zip(dy.par_chunks_exact(os.len())).for_each(|(o, d)| layers::pad_channels(*start, d, xs.h * xs.w, o));
                add_grad(&mut grads, xin, dx);
            }
            // Each output value is one input value: the gradient goes back by the inverse permutation.
            Op::Transpose { perm } => {
                let inv = inverse_perm(*perm);
                let mut dx = Buf::for_overwrite(n * xs.len());
                dx.par_chunks_exact_mut(xs.len()).zip(dy.par_chunks_exact(os.len())).for_each(|(d, g)| layers::transpose(inv, g, os, d));
                add_grad(&mut grads, xin, dx);
            }
            Op::GlobalAvgPool => {
                let p = xs.h * xs.w;
                let mut dx = Buf::zeroed(n * xs.len());
                dx.chunks_exact_mut(p).zip(dy.iter()).for_each(|(o, &g)| o.fill(g / p as f32));
                add_grad(&mut grads, xin, dx);
            }
            Op::Flatten => add_grad(&mut grads, xin, dy),
            // Each input's gradient is its part of each image's.
            Op::Concat => {
                let offsets: Vec<usize> = node.inputs.iter().scan(0, |at, &v| Some(std::mem::replace(at, *at + net.shapes[v].len()))).collect();
                for (&v, &at) in node.inputs.iter().zip(&offsets).rev() {
                    let len = net.shapes[v].len();
                    let mut dx = Buf::zeroed(n * len);
                    dx.par_chunks_exact_mut(len).zip(dy.par_chunks_exact(os.len())).for_each(|(d, g)| d.copy_from_slice(&g[at..at + len]));
                    add_grad(&mut grads, v, dx);
                }
            }
            Op::MaxPool(pool) => {
                let mut dx = Buf::zeroed(n * xs.len());
                dx.par_chunks_exact_mut(xs.len()).zip(dy.par_chunks_exact(os.len())).zip(x.par_chunks_exact(xs.len())).for_each(|((dxi, dyi), xi)| max_pool_backward(pool, xi, xs, dyi, os, dxi));
                add_grad(&mut grads, xin, dx);
            }
            Op::AvgPool(pool) => {
                let mut dx = Buf::zeroed(n * xs.len());
                dx.par_chunks_exact_mut(xs.len()).zip(dy.par_chunks_exact(os.len())).for_each(|(dxi, dyi)| avg_pool_backward(pool, xs, dyi, os, dxi));
                add_grad(&mut grads, xin, dx);
            }
            Op::GlobalMaxPool => {
                let p = xs.h * xs.w;
                let mut dx = Buf::zeroed(n * xs.len());
                // Each channel's gradient goes to the pixel that gave its maximum.
                dx.chunks_exact_mut(p).zip(x.chunks_exact(p)).zip(dy.iter()).for_each(|((d, plane), &g)| {
                    if let Some(at) = layers::window_argmax(plane, xs.w, (0, xs.h), (0, xs.w)) {
                        d[at] += g;
                    }
                });
                add_grad(&mut grads, xin, dx);
            }
        }
    }
    (params, qgrads)
}

/// The derivative of an activation at input `x` with output `y` (one-sided
/// where the function has a kink, on the side the forward pass takes).
pub(crate) fn activation_slope(a: Activation, x: f32, y: f32) -> f32 {
    match a {
        Activation::Sigmoid => y * (1.0 - y),
        Activation::HardSigmoid { alpha, beta } => {
            let t = layers::hard_sigmoid_input((alpha, beta), x);
            if t > 0.0 && t < 1.0 {
                alpha
            } else {
                0.0
            }
        }
        // d/dx x·t(x) = t + x·alpha on the slope; 0 below it, where y = 0, and 1 above it, where y = x.
        Activation::HardSwish => {
            let t = layers::hard_sigmoid_input(layers::HARD_SWISH, x);
            if t <= 0.0 {
                0.0
            } else if t >= 1.0 {
                1.0
            } else {
                t + x * layers::HARD_SWISH.0
            }
        }
        Activation::LeakyRelu { alpha } => {
            if x >= 0.0 {
                1.0
            } else {
                alpha
            }
        }
    }
}

/// The gradient of input `k` of Binary node `i`: per image, `dy` times the
/// operation's partial derivative with respect to that operand, summed over
/// the axes along which the operand was broadcast.
fn binary_backward(net: &Network, tape: &Tape, i: usize, b: &Binary, k: usize, dy: &[f32]) -> Buf {
    let node = &net.nodes[i];
    let (xs, os, ds) = (net.shapes[node.inputs[0]], net.shapes[i + 1], net.shapes[node.inputs[k]]);
    let ys = node.inputs.get(1).map(|&v| net.shapes[v]);
    // Which operand input k is: a constant on the left makes input 0 the right operand.
    let left = k == 0 && !b.constant.as_ref().is_some_and(|c| c.first);
    // ∂(u ∘ v)/∂(operand k) times the output's gradient `g`; `o` = u ∘ v.
    let partial = |g: f32, u: f32, v: f32, o: f32| match (b.arith, left) {
        (Arith::Add, _) | (Arith::Sub, true) => g,
        (Arith::Sub, false) => -g,
        (Arith::Mul, true) => g * v,
        (Arith::Mul, false) => g * u,
        (Arith::Div, true) => g / v,
        // d(u / v)/dv = −(u / v) / v
        (Arith::Div, false) => -(g * o) / v,
    };
    // Equal shapes (the residual Add): no broadcast indexing, one pass that
    // writes every value (`0.0 + …` keeps the bits of `+=` onto zeros), and
    // an Add reads only `dy`.
    let ((_, sa), (_, sb)) = layers::operands(b, (&[], xs), ys.map(|s| (&[][..], s)));
    let equal = sa == os && sb == os && ds == os;
    let pass_through = matches!((b.arith, left), (Arith::Add, _) | (Arith::Sub, true));
    let mut dx = if equal { Buf::for_overwrite(tape.n * ds.len()) } else { Buf::zeroed(tape.n * ds.len()) };
    dx.par_chunks_exact_mut(ds.len()).enumerate().for_each(|(j, d)| {
        let x = (&tape.values[node.inputs[0]][j * xs.len()..(j + 1) * xs.len()], xs);
        let y = node.inputs.get(1).zip(ys).map(|(&v, s)| (&tape.values[v][j * s.len()..(j + 1) * s.len()], s));
        let ((a, sa), (bv, sb)) = layers::operands(b, x, y);
        let (o, g) = (&tape.values[i + 1][j * os.len()..(j + 1) * os.len()], &dy[j * os.len()..(j + 1) * os.len()]);
        if equal && pass_through {
            pass_grad(cpu::level(), g, d);
            return;
        }
        if equal {
            for ((((d, &g), &u), &v), &o) in d.iter_mut().zip(g).zip(a).zip(bv).zip(o) {
                *d = 0.0 + partial(g, u, v, o);
            }
            return;
        }
        for c in 0..os.c {
            for oy in 0..os.h {
                for ox in 0..os.w {
                    let at = (c * os.h + oy) * os.w + ox;
                    let (u, v) = (a[layers::broadcast_index(sa, c, oy, ox)], bv[layers::broadcast_index(sb, c, oy, ox)]);
                    d[layers::broadcast_index(ds, c, oy, ox)] += partial(g[at], u, v, o[at]);
                }
            }
        }
    });
    dx
}

/// One image's MaxPool gradient: each output's to the input pixel that
/// gave its maximum (the forward pass's `window_argmax`), summed where
/// windows overlap.
fn max_pool_backward(pool: &Pool, x: &[f32], xs: Shape, dy: &[f32], os: Shape, dx: &mut [f32]) {
    let ([kh, kw], [sh, sw], [pt, pl, pb, pr]) = (pool.kernel, pool.stride, pool.pads);
    for ((plane, d), g) in x.chunks_exact(xs.h * xs.w).zip(dx.chunks_exact_mut(xs.h * xs.w)).zip(dy.chunks_exact(os.h * os.w)) {
        for (oy, line) in g.chunks_exact(os.w).enumerate() {
            let (y0, y1, _) = layers::pool_window(oy, sh, kh, pt, pb, xs.h);
            for (ox, &gv) in line.iter().enumerate() {
                let (x0, x1, _) = layers::pool_window(ox, sw, kw, pl, pr, xs.w);
                if let Some(at) = layers::window_argmax(plane, xs.w, (y0, y1), (x0, x1)) {
                    d[at] += gv;
                }
            }
        }
    }
}

/// One image's AvgPool gradient: each output's, divided by its window's
/// divisor, to every input pixel of the window.
fn avg_pool_backward(pool: &Pool, xs: Shape, dy: &[f32], os: Shape, dx: &mut [f32]) {
    let ([kh, kw], [sh, sw], [pt, pl, pb, pr]) = (pool.kernel, pool.stride, pool.pads);
    for (d, g) in dx.chunks_exact_mut(xs.h * xs.w).zip(dy.chunks_exact(os.h * os.w)) {
        for (oy, line) in g.chunks_exact(os.w).enumerate() {
            let wy = layers::pool_window(oy, sh, kh, pt, pb, xs.h);
            for (ox, &gv) in line.iter().enumerate() {
                let wx = layers::pool_window(ox, sw, kw, pl, pr, xs.w);
                let share = gv / layers::avg_pool_count(pool, wy, wx) as f32;
                for row in d[wy.0 * xs.w..wy.1 * xs.w].chunks_exact_mut(xs.w) {
                    row[wx.0..wx.1].iter_mut().for_each(|v| *v += share);
                }
            }
        }
    }
}

/// Mutable views of a node's trainable parameters, in gradient order.
pub fn params_mut(op: &mut Op) -> Vec<&mut Vec<f32>> {
    match op {
        Op::Conv(c) => std::iter::once(&mut c.weight).chain(c.bias.as_mut()).collect(),
        Op::Linear(l) => std::iter::once(&mut l.weight).chain(l.bias.as_mut()).collect(),
        Op::BatchNorm(b) => vec![&mut b.scale, &mut b.bias],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused input gradient equals the product into the unfold's
    /// gradient then col2im, bit for bit: one range and uneven subarray
    /// ranges (a tap's channels then read different sources), 1 × 1,
    /// 3 × 3 and 5 × 5 kernels, symmetric and uneven pads, widths of one,
    /// two and three vectors, output gradients with exact zeros (as after
    /// a ReLU) against negative weights.
    #[test]
    fn fused_input_grad_equals_product_then_col2im() {
        let cases = [([3, 3], [1, 1, 1, 1], 16, 16), ([1, 1], [0, 0, 0, 0], 8, 8), ([5, 5], [2, 1, 1, 2], 7, 24), ([3, 3], [0, 2, 2, 0], 5, 8), ([3, 3], [1, 1, 1, 1], 4, 40)];
        for (kernel, pads, h, w) in cases {
            let (ci, co) = (11, 7);
            let cv = Conv { weight: vec![], bias: None, out_channels: co, in_channels: ci, kernel, stride: [1, 1], pads };
            let xs = Shape { c: ci, h, w };
            let os = Shape { c: co, h: h + pads[0] + pads[2] + 1 - kernel[0], w: w + pads[1] + pads[3] + 1 - kernel[1] };
            let (k, p) = (layers::conv_rows(&cv), os.h * os.w);
            let wt: Vec<f32> = (0..k * co).map(|i| (i as f32 * 0.37).sin()).collect();
            for ranges in [vec![(0, k)], vec![(0, k / 3), (k / 3, k / 3 + 5), (k / 3 + 5, k)]] {
                let dys: Vec<f32> = (0..ranges.len() * co * p).map(|i| if i % 3 == 0 { 0.0 } else { (i as f32 * 0.11).cos() }).collect();
                let mut want = vec![0f32; xs.len()];
                let mut dcols = vec![0f32; k * p];
                for (s, &(k0, k1)) in ranges.iter().enumerate() {
                    gemm(&wt[k0 * co..k1 * co], &dys[s * co * p..(s + 1) * co * p], &mut dcols[k0 * p..k1 * p], k1 - k0, co, p);
                }
                col2im(&cv, &dcols, xs, os, &mut want);
                let mut got = vec![0f32; xs.len()];
                input_grad(&cv, &wt, &dys, &ranges, xs, os, &mut got, &mut vec![f32::NAN; k * p]);
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "kernel {kernel:?} pads {pads:?} {h}x{w}, {} ranges", ranges.len());
            }
        }
    }
}
