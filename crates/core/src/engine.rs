//! Runs a network over a batch of images, digitally or with crossbar layers.
//! Images are independent and each is computed by one thread with a fixed
//! operation order, and every random draw is keyed by the image's index
//! (rng.rs), so the logits do not depend on the thread count or the batch
//! size.

use rayon::prelude::*;

use crate::bail;
use crate::counts::OpCounts;
use crate::crossbar::{self, CrossbarLayer, Unfold};
use crate::error::Result;
use crate::graph::{Network, Op};
use crate::layers;

/// A network's programmed crossbar layers (by node index; `None` = digital
/// FP32) and the seed of every random draw they make.
pub struct Crossbars {
    pub layers: Vec<Option<CrossbarLayer>>,
    pub seed: u64,
}

thread_local! {
    static CACHE: std::cell::RefCell<Vec<Workspace>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Calibration hook: (node, column index, raw partial sums of one row).
pub type Observer<'a, 'b> = &'a mut (dyn FnMut(usize, usize, &[f32]) + 'b);

/// Per-thread buffers, sized once from the network's shapes. `take` and
/// `give` keep a few per thread for the next batch: allocating them per
/// batch (zeroed pages, fresh scratch) cost a tenth of simulation time.
pub struct Workspace {
    values: Vec<Vec<f32>>,
    scratch: crossbar::Scratch,
}

impl Workspace {
    pub fn new(net: &Network) -> Workspace {
        Workspace { values: net.shapes.iter().map(|s| vec![0f32; s.len()]).collect(), scratch: crossbar::Scratch::default() }
    }

    /// A workspace for `net` from this thread's cache (any one sized for the
    /// same shapes), or a new one.
    pub fn take(net: &Network) -> Workspace {
        let cached = CACHE.try_with(|c| {
            let mut c = c.borrow_mut();
            let i = c.iter().position(|w| w.values.len() == net.shapes.len() && w.values.iter().zip(&net.shapes).all(|(v, s)| v.len() == s.len()))?;
            Some(c.swap_remove(i))
        });
        cached.ok().flatten().unwrap_or_else(|| Workspace::new(net))
    }

    /// Returns a workspace to this thread's cache.
    pub fn give(self) {
        let _ = CACHE.try_with(|c| {
            let mut c = c.borrow_mut();
            if c.len() < 4 {
                c.push(self);
            }
        });
    }

    /// A value of the last forward pass (value 0 = input, node i → i + 1);
    /// the value of a node fused with the ReLU after it
    /// (`Network::relu_after`) is not written.
    pub fn value(&self, v: usize) -> &[f32] {
        &self.values[v]
    }

    /// Forward pass of image number `index`; returns the output value.
    pub fn forward(&mut self, net: &Network, stox: Option<&Crossbars>, image: &[f32], index: usize, ops: &mut [OpCounts], mut observe: Option<Observer<'_, '_>>) -> &[f32] {
        self.values[0].copy_from_slice(image);
        for (i, node) in net.nodes.iter().enumerate() {
            let (done, rest) = self.values.split_at_mut(i + 1);
            // A Conv, BatchNorm or Binary fused with the ReLU after it
            // (`Network::relu_after`) writes the ReLU's value, and the ReLU
            // then has nothing to do.
            let fused = net.relu_after[i];
            let relu_done = i > 0 && net.relu_after[i - 1];
            let out = &mut rest[fused as usize][..];
            let x = &done[node.inputs[0]][..];
            let xs = net.shapes[node.inputs[0]];
            let os = net.shapes[i + 1];
            let crossbar = stox.and_then(|s| s.layers[i].as_ref().map(|l| (l, s.seed)));
            match (&node.op, crossbar) {
                (Op::Conv(c), Some((layer, seed))) => {
                    let p = os.h * os.w;
                    let unfold = Unfold::Conv { conv: c, input: xs, output: os, taps: &net.geometry[i].taps };
                    let f = observe.as_deref_mut();
                    run_crossbar(layer, x, p, unfold, &mut self.scratch, index, seed, out, &mut ops[i], i, f);
                    if fused {
                        layers::relu_in_place(out);
                    }
                }
                (Op::Linear(_), Some((layer, seed))) => {
                    let f = observe.as_deref_mut();
                    run_crossbar(layer, x, 1, Unfold::Identity, &mut self.scratch, index, seed, out, &mut ops[i], i, f);
                }
                (Op::Conv(c), None) => {
                    layers::conv(c, &net.geometry[i], x, xs, out, os, fused);
                    ops[i].digital_macs += (c.out_channels * layers::conv_rows(c) * os.h * os.w) as u64;
                    ops[i].images += 1;
                }
                (Op::Linear(l), None) => {
                    layers::linear(l, x, out);
                    ops[i].digital_macs += (l.out_features * l.in_features) as u64;
                    ops[i].images += 1;
                }
                (op, _) => {
                    match op {
                        Op::BatchNorm(b) if fused => layers::batch_norm_relu(b, x, out, xs.h * xs.w),
                        Op::BatchNorm(b) => layers::batch_norm(b, x, out, xs.h * xs.w),
                        Op::Relu if relu_done => {}
                        Op::Relu => layers::relu(x, out),
                        Op::Hardtanh { min, max } => layers::hardtanh(x, *min, *max, out),
                        Op::Binary(b) => {
                            let y = node.inputs.get(1).map(|&v| (&done[v][..], net.shapes[v]));
                            let (p, q) = layers::operands(b, (x, xs), y);
                            if fused {
                                layers::binary_relu(b.arith, p, q, out, os)
                            } else {
                                layers::binary(b.arith, p, q, out, os)
                            }
                        }
                        Op::Activation(a) => layers::activation(*a, x, out),
                        Op::Slice(s) => layers::slice(s, x, xs, out, os),
                        Op::PadChannels { before, .. } => layers::pad_channels(*before, x, xs.h * xs.w, out),
                        Op::SliceChannels { start, .. } => layers::slice_channels(*start, x, xs.h * xs.w, out),
                        Op::Transpose { perm } => layers::transpose(*perm, x, xs, out),
                        Op::MaxPool(p) => layers::max_pool(p, x, xs, out, os),
                        Op::AvgPool(p) => layers::avg_pool(p, x, xs, out, os),
                        Op::GlobalAvgPool => layers::global_avg_pool(x, xs.h * xs.w, out),
                        Op::GlobalMaxPool => layers::global_max_pool(x, xs.h, xs.w, out),
                        Op::Concat => layers::concat(node.inputs.iter().map(|&v| &done[v][..]), out),
                        Op::Flatten => out.copy_from_slice(x),
                        Op::Conv(_) | Op::Linear(_) => unreachable!(),
                    }
                    ops[i].digital_ops += match op {
                        // A pooling reads (compares or adds) every value of its window once.
                        Op::MaxPool(p) | Op::AvgPool(p) => (os.len() * p.kernel[0] * p.kernel[1]) as u64,
                        Op::GlobalAvgPool | Op::GlobalMaxPool => xs.len() as u64,
                        Op::Activation(a) => os.len() as u64 * a.digital_ops(),
                        _ => os.len() as u64,
                    };
                    ops[i].images += 1;
                }
            }
        }
        &self.values[net.output]
    }
}

#[allow(clippy::too_many_arguments)]
fn run_crossbar(
    layer: &CrossbarLayer,
    x: &[f32],
    p: usize,
    unfold: Unfold,
    scratch: &mut crossbar::Scratch,
    index: usize,
    seed: u64,
    out: &mut [f32],
    ops: &mut OpCounts,
    node: usize,
    observe: Option<Observer<'_, '_>>,
) {
    match observe {
        Some(f) => {
            let mut g = |col: usize, ps: &[f32]| f(node, col, ps);
            layer.forward(x, p, unfold, scratch, index, seed, out, Some(ops), Some(&mut g), None);
        }
        None => layer.forward(x, p, unfold, scratch, index, seed, out, Some(ops), None, None),
    }
}

/// Stops a long call from another thread (an aborted JavaScript promise):
/// the call skips its remaining images and returns a "cancelled" error.
#[derive(Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn check(&self) -> Result<()> {
        if self.is_set() {
            bail!("cancelled");
        }
        Ok(())
    }
}

/// Folds `images` in fixed chunks of 8 (in parallel), then reduces the
/// chunk results in image order: deterministic for any thread count even
/// when the accumulator is a float sum. Once `cancel` is set the remaining
/// images are skipped: the caller checks it and drops the partial result.
pub fn ordered_fold<A: Send>(net: &Network, images: &[f32], cancel: &Cancel, init: impl Fn() -> A + Sync, step: impl Fn(&mut A, &mut Workspace, usize, &[f32]) + Sync, merge: impl Fn(&mut A, A)) -> A {
    let len = net.input.len();
    let parts: Vec<A> = images
        .par_chunks(8 * len)
        .enumerate()
        .map(|(c, chunk)| {
            let mut ws = Workspace::take(net);
            let mut acc = init();
            for (i, image) in chunk.chunks(len).enumerate() {
                if cancel.is_set() {
                    break;
                }
                step(&mut acc, &mut ws, c * 8 + i, image);
            }
            ws.give();
            acc
        })
        .collect();
    let mut total = init();
    for p in parts {
        merge(&mut total, p);
    }
    total
}

/// Logits `[n × classes]` and per-node operation counts for `n` images
/// packed in `images`, numbered `first, first + 1, …` for the RNG.
pub fn forward(net: &Network, stox: Option<&Crossbars>, images: &[f32], first: usize) -> Result<(Vec<f32>, Vec<OpCounts>)> {
    let len = net.input.len();
    if !images.len().is_multiple_of(len) {
        bail!("image buffer has {} values, not a multiple of the input size {}", images.len(), len);
    }
    if let Some(s) = stox {
        if s.layers.len() != net.nodes.len() {
            bail!("crossbar configuration covers {} nodes, the network has {}", s.layers.len(), net.nodes.len());
        }
    }
    let classes = net.classes();
    let nodes = net.nodes.len();
    let mut logits = vec![0f32; images.len() / len * classes];
    let ops = logits
        .par_chunks_mut(classes)
        .zip(images.par_chunks(len))
        .enumerate()
        .fold(
            || (Workspace::take(net), vec![OpCounts::default(); nodes]),
            |(mut ws, mut ops), (i, (out, image))| {
                out.copy_from_slice(ws.forward(net, stox, image, first + i, &mut ops, None));
                (ws, ops)
            },
        )
        .map(|(ws, ops)| {
            ws.give();
            ops
        })
        .reduce(
            || vec![OpCounts::default(); nodes],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| x.merge(y));
                a
            },
        );
    Ok((logits, ops))
}

/// A rayon pool of exactly `threads` workers (0 = one per core), shared by
/// every call that asks for that many: starting threads per call cost time,
/// and per-thread state (`buffers::Buf` free lists) lives as long as the pool.
pub fn thread_pool(threads: usize) -> Result<std::sync::Arc<rayon::ThreadPool>> {
    static POOLS: std::sync::Mutex<Vec<(usize, std::sync::Arc<rayon::ThreadPool>)>> = std::sync::Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(p.clone());
    }
    let pool = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| crate::error::Error::new(format!("cannot start {threads} threads: {e}")))?);
    pools.push((threads, pool.clone()));
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{bn, relu};
    use crate::graph::{Arith, Binary, Conv, Node, Op, Shape};

    #[test]
    fn fused_relus_give_the_bits_of_the_two_passes() {
        let s = Shape { c: 2, h: 3, w: 3 };
        // BatchNorm + ReLU, then a residual Add of the input + ReLU, then BatchNorm + ReLU: each pair fused.
        let add = Node { name: "add".into(), op: Op::Binary(Binary { arith: Arith::Add, constant: None }), inputs: vec![2, 0] };
        let net = Network::new(s, vec![bn(0), relu(1), add, relu(3), bn(4), relu(5)], 6).unwrap();
        assert_eq!(net.relu_after, [true, false, true, false, true, false]);
        let image = [-1.0, -0.0, 0.0, 0.1, 0.1000001, 3.5, f32::NAN, -7.25, 1e-30, 2.0, -2.0, 0.3, -0.3, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e-30, 0.75];
        let mut ops = vec![OpCounts::default(); net.nodes.len()];
        let got = Workspace::new(&net).forward(&net, None, &image, 0, &mut ops, None).to_vec();
        let Op::BatchNorm(b) = &net.nodes[0].op else { unreachable!() };
        let (mut t, mut u) = (vec![0f32; s.len()], vec![0f32; s.len()]);
        layers::batch_norm(b, &image, &mut t, 9);
        layers::relu(&t, &mut u);
        layers::binary(Arith::Add, (&u, s), (&image, s), &mut t, s);
        layers::relu(&t, &mut u);
        layers::batch_norm(b, &u, &mut t, 9);
        layers::relu(&t, &mut u);
        assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), u.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        // Every node still counts its operations.
        assert!(ops.iter().all(|o| o.images == 1 && o.digital_ops == s.len() as u64));
    }

    #[test]
    fn a_conv_fused_with_its_relu_gives_the_bits_of_the_two_passes() {
        // 3 × 3 convolutions with a bias, 8 wide (the shifted product) and
        // 5 wide (the unfolded product), each then one bias-and-ReLU pass.
        for w in [8, 5] {
            let s = Shape { c: 2, h: 4, w };
            let weight: Vec<f32> = (0..3 * 2 * 9).map(|i| (i as f32 * 0.37).sin()).collect();
            let cv = Conv { weight, bias: Some(vec![2.0, -3.0, 0.1]), out_channels: 3, in_channels: 2, kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] };
            let nodes = vec![Node { name: "c".into(), op: Op::Conv(cv.clone()), inputs: vec![0] }, relu(1)];
            let net = Network::new(s, nodes, 2).unwrap();
            assert_eq!(net.relu_after, [true, false]);
            let image: Vec<f32> = (0..s.len()).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut ops = vec![OpCounts::default(); 2];
            let got = Workspace::new(&net).forward(&net, None, &image, 0, &mut ops, None).to_vec();
            let os = Shape { c: 3, h: 4, w };
            let (mut t, mut u) = (vec![0f32; os.len()], vec![0f32; os.len()]);
            layers::conv(&cv, &layers::Geometry::new(&cv, s, os), &image, s, &mut t, os, false);
            layers::relu(&t, &mut u);
            assert!(u.contains(&0.0) && u.iter().any(|&v| v > 0.0));
            assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), u.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "width {w}");
        }
    }
}
