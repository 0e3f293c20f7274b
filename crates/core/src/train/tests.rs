use super::sgd::{Schedule, Sgd};
use super::*;
use crate::graph::{Activation, Arith, BatchNorm, Binary, Constant, Conv, Linear, Node, Pool, Shape, Slice};

/// Conv+bias → BN → ReLU → {Conv stride 2, Slice+Pad shortcut} → Add →
/// Hardtanh → GAP → Flatten → Linear: every op of the IR on a tiny input.
pub(crate) fn tiny() -> Network {
    let node = |name: &str, op, inputs: Vec<usize>| Node { name: name.into(), op, inputs };
    let conv = |o, c, stride, bias: bool| Conv {
        weight: vec![0.0; o * c * 9],
        bias: bias.then(|| vec![0.0; o]),
        out_channels: o,
        in_channels: c,
        kernel: [3, 3],
        stride: [stride, stride],
        pads: [1, 1, 1, 1],
    };
    let nodes = vec![
        node("c1", Op::Conv(conv(4, 2, 1, true)), vec![0]),
        node("bn", Op::BatchNorm(BatchNorm { scale: vec![1.0; 4], bias: vec![0.0; 4], mean: vec![0.0; 4], var: vec![1.0; 4], eps: 1e-5 }), vec![1]),
        node("relu", Op::Relu, vec![2]),
        node("c2", Op::Conv(conv(8, 4, 2, false)), vec![3]),
        node("slice", Op::Slice(Slice { start: [0, 0], end: [6, 6], step: [2, 2] }), vec![3]),
        node("pad", Op::PadChannels { before: 2, after: 2 }, vec![5]),
        node("add", Op::Binary(Binary { arith: Arith::Add, constant: None }), vec![4, 6]),
        node("hardtanh", Op::Hardtanh { min: -1.0, max: 1.0 }, vec![7]),
        node("gap", Op::GlobalAvgPool, vec![8]),
        node("flat", Op::Flatten, vec![9]),
        node("fc", Op::Linear(Linear { weight: vec![0.0; 24], bias: Some(vec![0.0; 3]), out_features: 3, in_features: 8 }), vec![10]),
    ];
    let mut net = Network::new(Shape { c: 2, h: 6, w: 6 }, nodes, 11).unwrap();
    init(&mut net, 11);
    // Non-trivial BatchNorm affine and biases, so their gradients matter.
    if let Op::BatchNorm(b) = &mut net.nodes[1].op {
        b.scale = vec![1.2, 0.8, 1.0, 0.5];
        b.bias = vec![0.1, -0.2, 0.3, 0.0];
    }
    net
}

fn batch(n: usize) -> (Vec<f32>, Vec<u8>) {
    let x = (0..n * 72).map(|i| ((i * 7919 % 101) as f32 / 50.0) - 1.0).collect();
    let labels = (0..n).map(|i| (i % 3) as u8).collect();
    (x, labels)
}

fn loss(net: &Network, x: &[f32], labels: &[u8]) -> f64 {
    let mut net = net.clone();
    let tape = backprop::forward(&mut net, x.to_vec(), labels.len(), true, None).unwrap();
    softmax_cross_entropy(&tape.values[net.output], labels, 3, 0.1, None).0 / labels.len() as f64
}

/// Central differences of the mean loss against the analytic gradient of
/// every third parameter of every layer (train-mode BatchNorm included).
/// With h = 2e-3 the truncation error is O(h^2) (below 1e-5 here), and f32
/// rounding of a loss near 1 adds about 1e-7/h = 5e-5; a ReLU or hardtanh
/// kink crossed by the step can add more for single entries, so we allow
/// 3e-3 + 3 % of the gradient.
#[test]
fn gradients_match_finite_differences() {
    let net = tiny();
    let (x, labels) = batch(6);
    let mut work = net.clone();
    let tape = backprop::forward(&mut work, x.clone(), 6, true, None).unwrap();
    // The hardtanh clips some values and passes others: both paths are checked.
    let clipped = tape.values[8].iter().filter(|v| v.abs() == 1.0).count();
    assert!(clipped > 0 && clipped < tape.values[8].len(), "{clipped} clipped");
    assert!(check_gradients(&net, &x, &labels, 3e-3) > 100);
}

/// Conv → ReLU → a 32-channel 3 × 3 convolution (Winograd's products in
/// training: its forward and input gradient) → BatchNorm → ReLU → GAP →
/// Linear, on the input of `tiny`.
fn wide() -> Network {
    let node = |name: &str, op, inputs: Vec<usize>| Node { name: name.into(), op, inputs };
    let conv = |o, c| Conv { weight: vec![0.0; o * c * 9], bias: Some(vec![0.0; o]), out_channels: o, in_channels: c, kernel: [3, 3], stride: [1, 1], pads: [1; 4] };
    let nodes = vec![
        node("c1", Op::Conv(conv(32, 2)), vec![0]),
        node("relu1", Op::Relu, vec![1]),
        node("c2", Op::Conv(conv(32, 32)), vec![2]),
        node("bn", Op::BatchNorm(BatchNorm { scale: vec![1.1; 32], bias: vec![0.1; 32], mean: vec![0.0; 32], var: vec![1.0; 32], eps: 1e-5 }), vec![3]),
        node("relu2", Op::Relu, vec![4]),
        node("gap", Op::GlobalAvgPool, vec![5]),
        node("flat", Op::Flatten, vec![6]),
        node("fc", Op::Linear(Linear { weight: vec![0.0; 96], bias: Some(vec![0.0; 3]), out_features: 3, in_features: 32 }), vec![7]),
    ];
    let mut net = Network::new(Shape { c: 2, h: 6, w: 6 }, nodes, 8).unwrap();
    init(&mut net, 5);
    let Op::Conv(c2) = &net.nodes[2].op else { unreachable!() };
    assert!(crate::winograd::fits(c2, net.shapes[2]), "the middle convolution takes Winograd's products");
    net
}

/// `wide`'s gradients, the first conv's through the Winograd input
/// gradient, against finite differences of the Winograd forward.
#[test]
fn winograd_gradients_match_finite_differences() {
    let net = wide();
    // The training forward takes Winograd's products, an evaluation the
    // direct ones: the same values up to rounding, not the same bits.
    let (x, labels) = batch(4);
    let train = backprop::forward(&mut net.clone(), x.clone(), 4, true, None).unwrap().values.swap_remove(3);
    let eval = backprop::forward(&mut net.clone(), x.clone(), 4, false, None).unwrap().values.swap_remove(3);
    let scale = eval.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(train.iter().zip(&eval).all(|(a, b)| (a - b).abs() <= 1e-5 * scale), "Winograd's forward is the convolution");
    assert!(train.iter().zip(&eval).any(|(a, b)| a.to_bits() != b.to_bits()), "training took the direct product");
    assert!(check_gradients(&net, &x, &labels, 3e-3) > 3000);
}

/// Checks every third parameter of every layer as above, with an absolute
/// tolerance of `abs` (3e-3 above); returns how many.
fn check_gradients(net: &Network, x: &[f32], labels: &[u8], abs: f64) -> usize {
    let mut work = net.clone();
    let tape = backprop::forward(&mut work, x.to_vec(), labels.len(), true, None).unwrap();
    let (_, _, d) = softmax_cross_entropy(&tape.values[net.output], labels, 3, 0.1, None);
    let (grads, _) = backprop::backward(net, &tape, d, None);
    let h = 2e-3f32;
    let mut checked = 0;
    for (i, g) in grads.iter().enumerate() {
        for (pi, gp) in g.iter().enumerate() {
            for j in (0..gp.len()).step_by(3) {
                let mut plus = net.clone();
                backprop::params_mut(&mut plus.nodes[i].op)[pi][j] += h;
                let mut minus = net.clone();
                backprop::params_mut(&mut minus.nodes[i].op)[pi][j] -= h;
                let num = (loss(&plus, x, labels) - loss(&minus, x, labels)) / (2.0 * h as f64);
                let ana = gp[j] as f64;
                assert!((num - ana).abs() <= abs + 0.03 * ana.abs(), "node {} param {pi}[{j}]: numeric {num} analytic {ana}", net.nodes[i].name);
                checked += 1;
            }
        }
    }
    checked
}

/// Conv → ReLU → MaxPool (padded, ceil_mode) → Conv → AvgPool (asymmetric
/// pads, ceil_mode, with and without count_include_pad) → GlobalMaxPool →
/// Flatten → Linear: the pooling gradients against finite differences.
#[test]
fn pooling_gradients_match_finite_differences() {
    for count_include_pad in [false, true] {
        let node = |name: &str, op, inputs: Vec<usize>| Node { name: name.into(), op, inputs };
        let conv = |o, c| Op::Conv(Conv { weight: vec![0.0; o * c * 9], bias: Some(vec![0.0; o]), out_channels: o, in_channels: c, kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] });
        let nodes = vec![
            node("c1", conv(4, 2), vec![0]),
            node("relu", Op::Relu, vec![1]),
            node("max", Op::MaxPool(Pool { kernel: [3, 3], stride: [2, 2], pads: [1, 1, 1, 1], ceil_mode: true, count_include_pad: false }), vec![2]),
            node("c2", conv(4, 4), vec![3]),
            node("avg", Op::AvgPool(Pool { kernel: [3, 3], stride: [2, 2], pads: [1, 0, 1, 1], ceil_mode: true, count_include_pad }), vec![4]),
            node("gmax", Op::GlobalMaxPool, vec![5]),
            node("flat", Op::Flatten, vec![6]),
            node("fc", Op::Linear(Linear { weight: vec![0.0; 12], bias: Some(vec![0.0; 3]), out_features: 3, in_features: 4 }), vec![7]),
        ];
        let mut net = Network::new(Shape { c: 2, h: 6, w: 6 }, nodes, 8).unwrap();
        // 6×6 → 4×4 (the last window covers one pixel) → 3×2.
        assert_eq!([net.shapes[3], net.shapes[5]], [Shape { c: 4, h: 4, w: 4 }, Shape { c: 4, h: 3, w: 2 }]);
        init(&mut net, 12);
        let (x, labels) = batch(6);
        assert!(check_gradients(&net, &x, &labels, 3e-3) > 40);
    }
}

/// Elementwise arithmetic against finite differences: Add, Sub, Mul and Div
/// with a constant on either side (per channel, scalar, per pixel) and
/// between two values broadcast either way ([C,1,1] ∘ [C,H,W] as in a
/// squeeze-excitation block, and back), the denominator kept away from 0.
#[test]
fn elementwise_gradients_match_finite_differences() {
    let node = |name: &str, op, inputs: Vec<usize>| Node { name: name.into(), op, inputs };
    let conv = |o, c| Op::Conv(Conv { weight: vec![0.0; o * c * 9], bias: Some(vec![0.0; o]), out_channels: o, in_channels: c, kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] });
    let binary = |arith, constant: Option<(Vec<f32>, [usize; 3], bool)>| {
        let constant = constant.map(|(values, [c, h, w], first)| Constant { values, shape: Shape { c, h, w }, first });
        Op::Binary(Binary { arith, constant })
    };
    let per_pixel = (0..36).map(|i| 1.0 + i as f32 / 36.0).collect();
    let nodes = vec![
        node("c1", conv(4, 2), vec![0]),
        node("scale", binary(Arith::Mul, Some((vec![0.5, -1.5, 1.0, 2.0], [4, 1, 1], false))), vec![1]),
        node("flip", binary(Arith::Sub, Some((vec![0.5], [1, 1, 1], true))), vec![2]),
        node("div", binary(Arith::Div, Some((per_pixel, [1, 6, 6], false))), vec![3]),
        node("c2", conv(4, 4), vec![4]),
        node("gap", Op::GlobalAvgPool, vec![5]),
        node("se", binary(Arith::Mul, None), vec![6, 5]),
        node("relu", Op::Relu, vec![7]),
        node("denom", binary(Arith::Add, Some((vec![2.0], [1, 1, 1], true))), vec![8]),
        node("ratio", binary(Arith::Div, None), vec![5, 9]),
        node("centre", binary(Arith::Sub, None), vec![10, 6]),
        node("gap2", Op::GlobalAvgPool, vec![11]),
        node("flat", Op::Flatten, vec![12]),
        node("fc", Op::Linear(Linear { weight: vec![0.0; 12], bias: Some(vec![0.0; 3]), out_features: 3, in_features: 4 }), vec![13]),
    ];
    let mut net = Network::new(Shape { c: 2, h: 6, w: 6 }, nodes, 14).unwrap();
    assert_eq!([net.shapes[7], net.shapes[11]], [Shape { c: 4, h: 6, w: 6 }; 2]);
    init(&mut net, 13);
    let (x, labels) = batch(6);
    // Gradients here are about 1e-3: a tolerance of 3e-3 would pass a wrong slope.
    assert!(check_gradients(&net, &x, &labels, 3e-4) > 40);
}

/// Conv → Sigmoid → Conv → HardSigmoid → Conv → HardSwish → Conv →
/// LeakyRelu → GAP → Flatten → Linear: the activation gradients against
/// finite differences, on both sides of each kink.
#[test]
fn activation_gradients_match_finite_differences() {
    let node = |name: &str, op, inputs: Vec<usize>| Node { name: name.into(), op, inputs };
    let conv = |o, c| Op::Conv(Conv { weight: vec![0.0; o * c * 9], bias: Some(vec![0.0; o]), out_channels: o, in_channels: c, kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] });
    let nodes = vec![
        node("c1", conv(4, 2), vec![0]),
        node("sigmoid", Op::Activation(Activation::Sigmoid), vec![1]),
        node("c2", conv(4, 4), vec![2]),
        node("hsig", Op::Activation(Activation::HardSigmoid { alpha: 0.5, beta: 0.4 }), vec![3]),
        node("c3", conv(4, 4), vec![4]),
        node("hswish", Op::Activation(Activation::HardSwish), vec![5]),
        node("c4", conv(4, 4), vec![6]),
        node("leaky", Op::Activation(Activation::LeakyRelu { alpha: 0.1 }), vec![7]),
        node("gap", Op::GlobalAvgPool, vec![8]),
        node("flat", Op::Flatten, vec![9]),
        node("fc", Op::Linear(Linear { weight: vec![0.0; 12], bias: Some(vec![0.0; 3]), out_features: 3, in_features: 4 }), vec![10]),
    ];
    let mut net = Network::new(Shape { c: 2, h: 6, w: 6 }, nodes, 11).unwrap();
    init(&mut net, 14);
    let (x, labels) = batch(6);
    // HardSigmoid clips some values and passes others; LeakyRelu sees both signs.
    let tape = backprop::forward(&mut net.clone(), x.clone(), labels.len(), true, None).unwrap();
    let clipped = tape.values[4].iter().filter(|&&v| v == 0.0 || v == 1.0).count();
    assert!(clipped > 0 && clipped < tape.values[4].len(), "{clipped} clipped");
    let negative = tape.values[7].iter().filter(|&&v| v < 0.0).count();
    assert!(negative > 0 && negative < tape.values[7].len(), "{negative} negative");
    // Steps across HardSigmoid's kinks blur the differences here: each slope is checked on its own below.
    assert!(check_gradients(&net, &x, &labels, 3e-3) > 40);
}

/// Each activation's slope against central differences of its forward
/// value, at points whose step crosses no kink.
#[test]
fn activation_slopes_match_finite_differences() {
    let h = 1e-2f32;
    let cases = [
        (Activation::Sigmoid, vec![]),
        (Activation::HardSigmoid { alpha: 0.3, beta: 0.6 }, vec![-2.0, 4.0 / 3.0]),
        (Activation::HardSwish, vec![-3.0, 3.0]),
        (Activation::LeakyRelu { alpha: 0.1 }, vec![0.0]),
    ];
    for (a, kinks) in cases {
        for i in -400..=400 {
            let x = i as f32 * 0.0123 + 0.0037;
            if kinks.iter().any(|&k: &f32| (x - k).abs() <= 2.0 * h) {
                continue;
            }
            let num = (crate::layers::activate(a, x + h) as f64 - crate::layers::activate(a, x - h) as f64) / (2.0 * h as f64);
            let ana = backprop::activation_slope(a, x, crate::layers::activate(a, x)) as f64;
            // Exact for the piecewise-linear ones but for f32 rounding; the sigmoid's truncation error is below 1e-5.
            assert!((num - ana).abs() <= 2e-4, "{a:?} at {x}: numeric {num} analytic {ana}");
        }
    }
}

/// A DenseNet-style block: Conv → ReLU → Conv, Concat of the two, Conv,
/// then a Concat of four values (one of them twice) → GAP → Flatten →
/// Linear: the Concat gradients against finite differences.
#[test]
fn concat_gradients_match_finite_differences() {
    let node = |name: &str, op, inputs: Vec<usize>| Node { name: name.into(), op, inputs };
    let conv = |o, c| Op::Conv(Conv { weight: vec![0.0; o * c * 9], bias: Some(vec![0.0; o]), out_channels: o, in_channels: c, kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] });
    let nodes = vec![
        node("c1", conv(3, 2), vec![0]),
        node("relu", Op::Relu, vec![1]),
        node("c2", conv(2, 3), vec![2]),
        node("cat1", Op::Concat, vec![2, 3]),
        node("c3", conv(2, 5), vec![4]),
        node("cat2", Op::Concat, vec![2, 3, 5, 5]),
        node("gap", Op::GlobalAvgPool, vec![6]),
        node("flat", Op::Flatten, vec![7]),
        node("fc", Op::Linear(Linear { weight: vec![0.0; 27], bias: Some(vec![0.0; 3]), out_features: 3, in_features: 9 }), vec![8]),
    ];
    let mut net = Network::new(Shape { c: 2, h: 6, w: 6 }, nodes, 9).unwrap();
    assert_eq!([net.shapes[4], net.shapes[6]], [Shape { c: 5, h: 6, w: 6 }, Shape { c: 9, h: 6, w: 6 }]);
    init(&mut net, 15);
    let (x, labels) = batch(6);
    assert!(check_gradients(&net, &x, &labels, 3e-4) > 30);
}

/// A grouped convolution as the importer splits it: channel slices of one
/// value, a conv per group, their Concat (two groups of 2 input channels,
/// overlapping slices too) → GAP → Flatten → Linear: the SliceChannels
/// gradients (its adjoint scatters into zeros) against finite differences.
#[test]
fn channel_slice_gradients_match_finite_differences() {
    let node = |name: &str, op, inputs: Vec<usize>| Node { name: name.into(), op, inputs };
    let conv = |o, c| Op::Conv(Conv { weight: vec![0.0; o * c * 9], bias: Some(vec![0.0; o]), out_channels: o, in_channels: c, kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] });
    let nodes = vec![
        node("c0", conv(4, 2), vec![0]),
        node("g0.in", Op::SliceChannels { start: 0, end: 2 }, vec![1]),
        node("g1.in", Op::SliceChannels { start: 2, end: 4 }, vec![1]),
        node("g0", conv(2, 2), vec![2]),
        node("g1", conv(2, 2), vec![3]),
        node("mid", Op::SliceChannels { start: 1, end: 3 }, vec![1]),
        node("cat", Op::Concat, vec![4, 5, 6]),
        node("gap", Op::GlobalAvgPool, vec![7]),
        node("flat", Op::Flatten, vec![8]),
        node("fc", Op::Linear(Linear { weight: vec![0.0; 18], bias: Some(vec![0.0; 3]), out_features: 3, in_features: 6 }), vec![9]),
    ];
    let mut net = Network::new(Shape { c: 2, h: 6, w: 6 }, nodes, 10).unwrap();
    assert_eq!(net.shapes[7], Shape { c: 6, h: 6, w: 6 });
    init(&mut net, 16);
    let (x, labels) = batch(6);
    assert!(check_gradients(&net, &x, &labels, 3e-4) > 30);
    let bad = Network::new(Shape { c: 2, h: 6, w: 6 }, vec![node("s", Op::SliceChannels { start: 1, end: 3 }, vec![0])], 1);
    assert!(bad.unwrap_err().0.contains("channels 1..3 are not a non-empty range of the input's 2"));
}

/// Conv → Transpose NCHW → NHWC → Conv (over the old W and C as H and W)
/// → Transpose [2, 0, 1] → ReLU → Flatten → Linear: the Transpose gradient
/// (the inverse permutation of the output's) against finite differences.
/// The Flatten keeps every position apart, and no permutation here is its
/// own inverse, so a gradient sent back by the forward permutation (or
/// none) would fail.
#[test]
fn transpose_gradients_match_finite_differences() {
    let node = |name: &str, op, inputs: Vec<usize>| Node { name: name.into(), op, inputs };
    let conv = |o, c| Op::Conv(Conv { weight: vec![0.0; o * c * 9], bias: Some(vec![0.0; o]), out_channels: o, in_channels: c, kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] });
    let nodes = vec![
        node("c1", conv(4, 2), vec![0]),
        node("nhwc", Op::Transpose { perm: [1, 2, 0] }, vec![1]),
        node("c2", conv(3, 6), vec![2]),
        node("back", Op::Transpose { perm: [2, 0, 1] }, vec![3]),
        node("relu", Op::Relu, vec![4]),
        node("flat", Op::Flatten, vec![5]),
        node("fc", Op::Linear(Linear { weight: vec![0.0; 216], bias: Some(vec![0.0; 3]), out_features: 3, in_features: 72 }), vec![6]),
    ];
    let mut net = Network::new(Shape { c: 2, h: 6, w: 6 }, nodes, 7).unwrap();
    assert_eq!(net.shapes[2..5], [Shape { c: 6, h: 6, w: 4 }, Shape { c: 3, h: 6, w: 4 }, Shape { c: 4, h: 3, w: 6 }]);
    init(&mut net, 17);
    let (x, labels) = batch(6);
    assert!(check_gradients(&net, &x, &labels, 3e-4) > 60);
    let bad = Network::new(Shape { c: 2, h: 6, w: 6 }, vec![node("t", Op::Transpose { perm: [0, 2, 2] }, vec![0])], 1);
    assert!(bad.unwrap_err().0.contains("node 't' (Transpose): perm [0, 2, 2] is not a permutation of the axes 0, 1, 2"));
}

#[test]
fn loss_gradient_is_softmax_minus_target() {
    let logits = [1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0];
    let (l, correct, g) = softmax_cross_entropy(&logits, &[1, 0], 3, 0.0, None);
    assert_eq!(correct, 1);
    let h = 1e-3f32;
    for j in 0..6 {
        let (mut p, mut m) = (logits, logits);
        p[j] += h;
        m[j] -= h;
        let num = (softmax_cross_entropy(&p, &[1, 0], 3, 0.0, None).0 - softmax_cross_entropy(&m, &[1, 0], 3, 0.0, None).0) / (2.0 * h as f64) / 2.0;
        assert!((num - g[j] as f64).abs() < 1e-4, "{j}: {num} vs {}", g[j]);
    }
    assert!(l > 0.0);
}

/// The distillation loss: central differences in f64 of a loss near 1
/// (h = 1e-3, truncation O(h²) ≈ 1e-6) against the analytic gradient; and at
/// α = 1 a student that equals its teacher has zero loss and zero gradient.
#[test]
fn distillation_gradient_matches_finite_differences() {
    let logits = [1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0];
    let teacher = [0.2f32, 1.5, 1.0, 2.0, -0.5, 0.5];
    let d = Distill { alpha: 0.7, temperature: 3.0 };
    let f = |l: &[f32]| softmax_cross_entropy(l, &[1, 0], 3, 0.1, Some((&teacher, d)));
    let (_, _, g) = f(&logits);
    let h = 1e-3f32;
    for j in 0..6 {
        let (mut p, mut m) = (logits, logits);
        p[j] += h;
        m[j] -= h;
        let num = (f(&p).0 - f(&m).0) / (2.0 * h as f64) / 2.0;
        assert!((num - g[j] as f64).abs() < 1e-4, "{j}: {num} vs {}", g[j]);
    }
    let same = softmax_cross_entropy(&teacher, &[1, 0], 3, 0.0, Some((&teacher, Distill { alpha: 1.0, temperature: 4.0 })));
    assert!(same.0.abs() < 1e-12 && same.2.iter().all(|g| g.abs() < 1e-7), "{:?}", same);
    // α = 0 is plain cross-entropy, bit for bit.
    assert_eq!(softmax_cross_entropy(&logits, &[1, 0], 3, 0.1, Some((&teacher, Distill { alpha: 0.0, temperature: 3.0 }))), softmax_cross_entropy(&logits, &[1, 0], 3, 0.1, None));
}

/// The teacher runs on the inference engine (image by image, no tape): its
/// logits equal the eval-mode batch forward's bit for bit, so distillation
/// does not depend on which of the two computes them.
#[test]
fn teacher_logits_equal_the_eval_mode_batch_forward() {
    let mut net = tiny();
    if let Op::BatchNorm(b) = &mut net.nodes[1].op {
        b.mean = vec![0.3, -0.1, 0.2, 0.05];
        b.var = vec![0.7, 1.3, 0.9, 2.0];
    }
    let n = 5;
    let x: Vec<f32> = (0..n * net.input.len()).map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 1.3).collect();
    let (engine, _) = crate::engine::forward(&net, None, &x, 0).unwrap();
    let tape = backprop::forward(&mut net, x.clone(), n, false, None).unwrap();
    let batch = &tape.values[net.output];
    assert!(engine.iter().any(|&v| v != 0.0));
    assert_eq!(engine.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), batch.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
}

/// Pure distillation (α = 1) from a trained teacher: the loss (the KL to the
/// teacher) falls below half, and a resumed run equals an uninterrupted one.
#[test]
fn distillation_trains_toward_the_teacher_and_resumes_bit_for_bit() {
    let data = dataset();
    let mut teacher = Trainer::new(tiny(), TrainConfig { augment: Augment::NONE, ..config(30) }).unwrap();
    for e in 0..30 {
        teacher.train_batches(&data, e, 0, 3).unwrap();
    }
    let teacher = teacher.net;
    let cfg = TrainConfig { augment: Augment::NONE, ..config(20) };
    let distill = Distill { alpha: 1.0, temperature: 2.0 };
    let mut student = tiny();
    init(&mut student, 99);
    let fresh = || Trainer::new(student.clone(), cfg.clone()).unwrap().with_teacher(teacher.clone(), distill).unwrap();
    let mut t = fresh();
    let first = t.train_batches(&data, 0, 0, 3).unwrap();
    for e in 1..20 {
        t.train_batches(&data, e, 0, 3).unwrap();
    }
    let last = t.train_batches(&data, 19, 0, 3).unwrap();
    assert!(last.loss_sum < 0.5 * first.loss_sum, "{} -> {}", first.loss_sum, last.loss_sum);
    assert_resume_is_bit_identical(fresh, &data, 10, 20);
    // The teacher must take the student's input.
    let mut other = teacher.clone();
    other.input.h = 8;
    let err = Trainer::new(tiny(), cfg.clone()).unwrap().with_teacher(other, distill).err().unwrap();
    assert!(err.0.contains("teacher: takes 2x8x6"), "{}", err.0);
}

/// Trains `make()` for `epochs` epochs straight through, and again with a
/// save and a fresh trainer resuming after epoch `stop`: the states must be
/// equal bit for bit. Returns the straight-through trainer.
fn assert_resume_is_bit_identical(make: impl Fn() -> Trainer, data: &Dataset, stop: usize, epochs: usize) -> Trainer {
    let mut straight = make();
    for e in 0..epochs {
        straight.train_batches(data, e, 0, 3).unwrap();
    }
    let mut first = make();
    for e in 0..stop {
        first.train_batches(data, e, 0, 3).unwrap();
    }
    let mut resumed = make();
    resumed.load_state(&first.state(), first.step).unwrap();
    for e in stop..epochs {
        resumed.train_batches(data, e, 0, 3).unwrap();
    }
    assert_eq!(resumed.state(), straight.state());
    straight
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch: 4,
        sgd: Sgd { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5e-4, schedule: Schedule::Cosine, warmup: 2, total: epochs * 3 },
        label_smoothing: 0.1,
        augment: Augment { pad: 4, flip: true },
        seed: 5,
        normalize: Normalize { mean: vec![0.5; 2], std: vec![0.25; 2] },
    }
}

/// Twelve images whose class sets their brightness: learnable.
fn dataset() -> Dataset {
    let labels: Vec<u8> = (0..12).map(|i| (i % 3) as u8).collect();
    let images = (0..12 * 72).map(|i| (40 + 80 * labels[i / 72] as usize + i * 37 % 30) as u8).collect();
    Dataset { images, labels, dims: [2, 6, 6] }
}

/// The state after training `net` for `epochs` epochs on `threads` threads.
fn trained_on(threads: usize, net: &Network, data: &Dataset, epochs: usize) -> Vec<f32> {
    crate::engine::thread_pool(threads).unwrap().install(|| {
        let mut t = Trainer::new(net.clone(), config(epochs)).unwrap();
        for e in 0..epochs {
            t.train_batches(data, e, 0, 3).unwrap();
        }
        t.state()
    })
}

#[test]
fn same_seed_same_weights_and_resume_is_bit_identical() {
    let data = dataset();
    let a = trained_on(2, &tiny(), &data, 3);
    assert_eq!(a, trained_on(2, &tiny(), &data, 3));
    assert_eq!(a, trained_on(1, &tiny(), &data, 3), "chunked reductions make the weights independent of the thread count");
    // Stop after epoch 1 batch 1, save, resume in a fresh trainer.
    let mut t = Trainer::new(tiny(), config(3)).unwrap();
    t.train_batches(&data, 0, 0, 3).unwrap();
    t.train_batches(&data, 1, 0, 1).unwrap();
    let (state, step) = (t.state(), t.step);
    let mut r = Trainer::new(tiny(), config(3)).unwrap();
    r.load_state(&state, step).unwrap();
    r.train_batches(&data, 1, 1, 3).unwrap();
    r.train_batches(&data, 2, 0, 3).unwrap();
    assert_eq!(r.state(), a);
}

/// Training through Winograd's products gives the same weights at any
/// thread count, and a resumed run equals an uninterrupted one.
#[test]
fn winograd_training_is_independent_of_threads_and_resumes_bit_for_bit() {
    let data = dataset();
    assert_eq!(trained_on(2, &wide(), &data, 2), trained_on(1, &wide(), &data, 2));
    let mut straight = assert_resume_is_bit_identical(|| Trainer::new(wide(), config(4)).unwrap(), &data, 2, 4);
    assert_ne!(straight.state(), flat(&wide()), "the weights trained");
}

/// The model's floats in checkpoint order (a fresh trainer's momentum is zero).
fn flat(net: &Network) -> Vec<f32> {
    Trainer::new(net.clone(), config(3)).unwrap().state()
}

/// The EMA: after each step every parameter and BatchNorm statistic is
/// e + (1 − d)·(x − e) of the previous EMA e and the new weights x (the same
/// f32 operations, so equality is exact); the raw weights train as without
/// an EMA; and a resumed run keeps the EMA bit for bit.
#[test]
fn ema_averages_the_model_and_resumes_bit_for_bit() {
    let data = dataset();
    let d = 0.75;
    let make = || Trainer::new(tiny(), config(3)).unwrap().with_ema(d).unwrap();
    let (mut t, mut plain) = (make(), Trainer::new(tiny(), config(3)).unwrap());
    let mut expected = flat(&tiny());
    assert_eq!(flat(&t.model().0), expected, "the EMA starts at the initial model");
    for b in 0..3 {
        t.train_batches(&data, 0, b, b + 1).unwrap();
        plain.train_batches(&data, 0, b, b + 1).unwrap();
        assert_eq!(flat(&t.net), flat(&plain.net));
        let now = flat(&t.net);
        expected.iter_mut().zip(&now).for_each(|(e, &x)| *e += (1.0 - d) * (x - *e));
        assert_eq!(flat(&t.model().0), expected, "step {b}");
    }
    assert_ne!(expected, flat(&t.net));
    assert_resume_is_bit_identical(make, &data, 1, 3);
    for bad in [0.0, 1.0, f32::NAN] {
        let err = Trainer::new(tiny(), config(3)).unwrap().with_ema(bad).err().unwrap();
        assert!(err.0.contains("EMA decay must be in (0, 1)"), "{}", err.0);
    }
}

#[test]
fn training_reduces_the_loss_and_a_nan_stops_it() {
    let data = dataset();
    let mut t = Trainer::new(tiny(), TrainConfig { augment: Augment::NONE, ..config(30) }).unwrap();
    let first = t.train_batches(&data, 0, 0, 3).unwrap();
    for e in 1..30 {
        t.train_batches(&data, e, 0, 3).unwrap();
    }
    let last = t.train_batches(&data, 29, 0, 3).unwrap();
    assert!(last.loss_sum < 0.7 * first.loss_sum, "{} -> {}", first.loss_sum, last.loss_sum);
    if let Op::Linear(l) = &mut t.net.nodes[10].op {
        l.weight[0] = f32::NAN;
    }
    let step = t.step;
    let err = t.train_batches(&data, 30, 0, 1).unwrap_err();
    assert!(err.0.contains("loss is NaN"), "{}", err.0);
    assert_eq!(t.step, step, "no step was taken");
}

mod qat_tests {
    use super::*;
    use crate::config::{ColumnParams, LayerConfig, Mapping, Noise, SignedMapping, Split};
    use crate::converter::Converter;
    use crate::mtj::Curve;
    use crate::quant::WeightQuant;
    use crate::train::qat::{MtjGrad, QatLayer};

    /// c2 (4→8, K = 36) on three balanced 12-row subarrays with an MTJ, T = 4.
    fn qat_layers(net: &Network, grad: MtjGrad) -> Vec<Option<QatLayer>> {
        qat_layers_with(net, grad, |_| {})
    }

    /// `qat_layers` with its configuration changed by `edit`.
    fn qat_layers_with(net: &Network, grad: MtjGrad, edit: impl Fn(&mut LayerConfig)) -> Vec<Option<QatLayer>> {
        let config = LayerConfig {
            mapping: Mapping {
                rows: 16,
                cols: 128,
                split: Split::Balanced,
                weight_bits: 4,
                weight_slice_bits: 4,
                input_bits: 4,
                input_stream_bits: 4,
                weight_quant: WeightQuant::Uniform,
                signed: SignedMapping::Differential,
            },
            converter: Converter::Mtj { curve: Curve::sigmoid(4.0), samples: 4 },
            input_clip: 2.0,
            input_signed: false,
            noise: Noise::default(),
            params: params(3 * 8),
            samples_per_stream: Vec::new(),
        };
        let mut config = config;
        edit(&mut config);
        net.nodes.iter().enumerate().map(|(i, n)| (i == 3).then(|| QatLayer::new(n, config.clone(), grad).unwrap())).collect()
    }

    /// Normalisation and readout of `cols` converter columns, each its own.
    fn params(cols: usize) -> ColumnParams {
        ColumnParams {
            norm_scale: (0..cols).map(|i| 0.02 + 0.001 * (i % 24) as f32).collect(),
            norm_shift: (0..cols).map(|i| 0.01 * (i % 5) as f32 - 0.02).collect(),
            readout_gain: (0..cols).map(|i| 5.0 + 0.1 * (i % 24) as f32).collect(),
            readout_offset: vec![0.5; cols],
            ..ColumnParams::default()
        }
    }

    /// c2 mapped bit-sliced: 1-bit weight slices (three of the 4-bit
    /// weight's magnitude) and 2-bit input streams (two), so twelve times
    /// the columns (the normalising converters' parameters regrown for them).
    fn sliced(c: &mut LayerConfig) {
        c.mapping.weight_slice_bits = 1;
        c.mapping.input_stream_bits = 2;
        if !c.params.norm_scale.is_empty() {
            c.params = params(3 * 8 * 3 * 2);
        }
    }

    fn qat_loss(net: &Network, layers: &[Option<QatLayer>], x: &[f32], labels: &[u8]) -> f64 {
        let mut net = net.clone();
        let images: Vec<usize> = (0..labels.len()).collect();
        let q = backprop::Qat { layers, seed: 9, images: &images, tape_bytes: backprop::TAPE_BYTES };
        let tape = backprop::forward(&mut net, x.to_vec(), labels.len(), true, Some(&q)).unwrap();
        softmax_cross_entropy(&tape.values[net.output], labels, 3, 0.0, None).0 / labels.len() as f64
    }

    /// One PS-QAT forward and backward over `x` (images numbered 0..n).
    fn qat_grads(net: &Network, layers: &[Option<QatLayer>], x: &[f32], labels: &[u8], tape_bytes: usize) -> (backprop::Grads, backprop::QatGrads) {
        let images: Vec<usize> = (0..labels.len()).collect();
        let q = backprop::Qat { layers, seed: 9, images: &images, tape_bytes };
        let mut work = net.clone();
        let tape = backprop::forward(&mut work, x.to_vec(), labels.len(), true, Some(&q)).unwrap();
        let (_, _, d) = softmax_cross_entropy(&tape.values[net.output], labels, 3, 0.0, None);
        backprop::backward(net, &tape, d, Some(&q))
    }

    /// The readout gain and offset act linearly on fixed samples (the samples,
    /// or the sense amp's signs, do not depend on them), so their PS-QAT
    /// gradients are true gradients: central differences with h = 1e-2 agree
    /// to f32 rounding (1e-4 + 1 %).
    #[test]
    fn readout_gradients_are_exact() {
        for converter in [Converter::Mtj { curve: Curve::sigmoid(4.0), samples: 4 }, Converter::SenseAmp] {
            readout_gradients_are_exact_for(converter, false);
            // Bit-sliced: each (slice, stream) column's readout is scaled by its shift.
            readout_gradients_are_exact_for(converter, true);
        }
    }

    fn readout_gradients_are_exact_for(converter: Converter, bit_sliced: bool) {
        let net = tiny();
        let layers = qat_layers_with(&net, MtjGrad::Ste, |c| {
            c.converter = converter;
            if bit_sliced {
                sliced(c);
            }
        });
        let (x, labels) = batch(4);
        let (_, qg) = qat_grads(&net, &layers, &x, &labels, backprop::TAPE_BYTES);
        let layer = layers[3].as_ref().unwrap();
        let g = layer.learned_grads(qg[3].as_ref().unwrap());
        let cols = g[2].len();
        for which in [2usize, 3] {
            for col in [0, 7, 13, cols / 2 + 5, cols - 1] {
                let h = 1e-2f32;
                let shifted = |delta: f32| {
                    let mut l = layers.clone();
                    let q = l[3].as_mut().unwrap();
                    q.learned[which][col] += delta;
                    q.compose();
                    qat_loss(&net, &l, &x, &labels)
                };
                let num = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
                let ana = g[which][col] as f64;
                assert!((num - ana).abs() <= 1e-4 + 0.01 * ana.abs(), "{converter:?} sliced {bit_sliced} param {which} col {col}: numeric {num} analytic {ana}");
            }
        }
    }

    /// Through the ideal converter a bit-sliced layer computes the unsliced
    /// layer's outputs exactly (integer partial sums, shift-added), and the
    /// digit surrogate (qat.rs) gives back its gradients: the weights', the
    /// input clip's and, through the input gradient, the layers' before it,
    /// to f32 rounding (the shares 1/3 and 1/2 round; 1e-5 of each node's
    /// largest gradient).
    #[test]
    fn bit_sliced_ideal_gradients_are_the_unsliced_ones() {
        let net = tiny();
        let ideal = |c: &mut LayerConfig| {
            c.converter = Converter::Ideal;
            c.params = ColumnParams::default();
        };
        let (x, labels) = batch(4);
        for tape_bytes in [backprop::TAPE_BYTES, 0] {
            let mut whole = qat_layers_with(&net, MtjGrad::Ste, ideal);
            let mut cut = qat_layers_with(&net, MtjGrad::Ste, |c| {
                ideal(c);
                sliced(c);
            });
            for l in [&mut whole, &mut cut] {
                let q = l[3].take().unwrap();
                l[3] = Some(q.with_learned_clip(4 * 8 * 8));
            }
            let (a, qa) = qat_grads(&net, &whole, &x, &labels, tape_bytes);
            let (b, qb) = qat_grads(&net, &cut, &x, &labels, tape_bytes);
            // Relative to the node's largest gradient: a bias before a
            // BatchNorm has none, only rounding (1e-8), either way.
            for (node, grads) in a.iter().enumerate() {
                let top = grads.iter().flatten().fold(0f32, |m, &g| m.max(g.abs()));
                assert!(grads.is_empty() || top > 0.0, "node {node}: no gradient");
                for (j, g) in grads.iter().enumerate() {
                    for (k, (&u, &v)) in g.iter().zip(&b[node][j]).enumerate() {
                        assert!((u - v).abs() <= 1e-5 * top, "node {node} gradient {j}[{k}]: unsliced {u}, sliced {v}");
                    }
                }
            }
            let (ca, cb) = (qa[3].as_ref().unwrap().clip, qb[3].as_ref().unwrap().clip);
            assert!(ca != 0.0 && (ca - cb).abs() <= 1e-5 * ca.abs(), "clip: unsliced {ca}, sliced {cb}");
        }
    }

    /// A crossbar Linear layer (tiny's fc: 8 inputs, one subarray, 3 columns)
    /// trains through the same path as a conv, as the 1×1 convolution of a
    /// 1×1 image: its readout gradients are exact (as for convs, above), and
    /// its straight-through weight gradient is the ideal layer's where the
    /// converter passes partial sums unchanged.
    #[test]
    fn linear_crossbar_layers_train() {
        let net = tiny();
        let mut config = qat_layers(&net, MtjGrad::Ste)[3].as_ref().unwrap().config.clone();
        config.converter = Converter::SenseAmp;
        config.input_signed = true;
        config.params =
            ColumnParams { norm_scale: vec![0.05, 0.04, 0.06], norm_shift: vec![0.01, -0.02, 0.0], readout_gain: vec![1.5, 2.0, 1.0], readout_offset: vec![0.1, 0.0, -0.1], ..ColumnParams::default() };
        let layers: Vec<Option<QatLayer>> = net.nodes.iter().enumerate().map(|(i, n)| (i == 10).then(|| QatLayer::new(n, config.clone(), MtjGrad::Ste).unwrap())).collect();
        let (x, labels) = batch(4);
        let (grads, qg) = qat_grads(&net, &layers, &x, &labels, backprop::TAPE_BYTES);
        let g = layers[10].as_ref().unwrap().learned_grads(qg[10].as_ref().unwrap());
        let mut moved = 0;
        for which in [2usize, 3] {
            for (col, &ana) in g[which].iter().enumerate() {
                let h = 1e-2f32;
                let shifted = |delta: f32| {
                    let mut l = layers.clone();
                    let q = l[10].as_mut().unwrap();
                    q.learned[which][col] += delta;
                    q.compose();
                    qat_loss(&net, &l, &x, &labels)
                };
                let num = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
                let ana = ana as f64;
                assert!((num - ana).abs() <= 1e-4 + 0.01 * ana.abs(), "param {which} col {col}: numeric {num} analytic {ana}");
                moved += (ana.abs() > 1e-4) as usize;
            }
        }
        assert!(moved >= 4, "the readout gradients are mostly zero");
        // Weights and bias get gradients of the layer's shapes, finite and not all zero.
        assert_eq!(grads[10].iter().map(|v| v.len()).collect::<Vec<_>>(), vec![24, 3]);
        assert!(grads[10][0].iter().all(|v| v.is_finite()) && grads[10][0].iter().any(|&v| v != 0.0));
        // A Softmax layer is no crossbar layer.
        assert!(QatLayer::new(&net.nodes[9], config, MtjGrad::Ste).unwrap_err().0.contains("PS-QAT trains crossbar Conv and Linear layers (got Flatten)"));
    }

    /// With the `expected` surrogate and many samples, the loss is close to
    /// a smooth function of the normalisation; its finite difference over a
    /// wide step (h = 0.2 of the shift) must agree in sign and magnitude
    /// with the surrogate gradient where the gradient is large.
    #[test]
    fn expected_surrogate_tracks_the_mean_loss() {
        let net = tiny();
        let mut layers = qat_layers(&net, MtjGrad::Expected);
        if let Some(l) = layers[3].as_mut() {
            l.config.converter = Converter::Mtj { curve: Curve::sigmoid(4.0), samples: 4096 };
        }
        let (x, labels) = batch(4);
        let (_, qg) = qat_grads(&net, &layers, &x, &labels, backprop::TAPE_BYTES);
        let g = &layers[3].as_ref().unwrap().learned_grads(qg[3].as_ref().unwrap())[1];
        let col = (0..g.len()).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap();
        let h = 0.2f32;
        let shifted = |delta: f32| {
            let mut l = layers.clone();
            let q = l[3].as_mut().unwrap();
            q.learned[1][col] += delta;
            q.compose();
            qat_loss(&net, &l, &x, &labels)
        };
        let num = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
        let ana = g[col] as f64;
        assert!(num * ana > 0.0 && (num - ana).abs() < 0.35 * ana.abs(), "numeric {num} analytic {ana}");
    }

    /// `tiny` with the hardtanh after c2 opened to ±100: the loss is then
    /// smooth in c2's output, so a finite difference in the clip only meets
    /// the kinks the clip itself makes.
    fn smooth_tiny() -> Network {
        let mut net = tiny();
        net.nodes[7].op = Op::Hardtanh { min: -100.0, max: 100.0 };
        net
    }

    /// c2's input (a ReLU output) quantised to 16 bits, some of it above the
    /// clip, and the clip learned. The loss is then piecewise smooth in the
    /// clip, with a kink wherever the clip crosses an input value; a finite
    /// difference must stay inside one smooth piece. So the clip is put in
    /// the middle of the widest gap between input values in 0.8…1.2 and h is
    /// a quarter of that gap. Moving the clip by h moves each inside level by
    /// at most one step (clip/65535), so rounding adds under 1 % of the
    /// clipped inputs' gradient; f64 loss from f32 logits adds about
    /// 1e-7 / h.
    fn clip_setup(net: &Network, x: &[f32], grad: MtjGrad, converter: Converter, norm: f32) -> (Vec<Option<QatLayer>>, f32) {
        let mut work = net.clone();
        let tape = backprop::forward(&mut work, x.to_vec(), x.len() / 72, true, None).unwrap();
        let mut near: Vec<f32> = tape.values[net.nodes[3].inputs[0]].iter().cloned().filter(|v| (0.8..1.2).contains(v)).collect();
        near.sort_by(f32::total_cmp);
        let (gap, at) = near.windows(2).map(|w| (w[1] - w[0], 0.5 * (w[0] + w[1]))).max_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
        let mut layers = qat_layers_with(net, grad, |c| {
            let levels = 65535.0;
            c.mapping.input_bits = 16;
            c.mapping.input_stream_bits = 16;
            // The normalisation and readout were set for 15 levels over a
            // clip of 2.0 (the layer's output is scaled by the step).
            let ratio = 15.0 * at / (2.0 * levels);
            c.params.norm_scale.iter_mut().for_each(|s| *s *= norm * ratio);
            c.params.readout_gain.iter_mut().for_each(|g| *g /= ratio);
            c.params.readout_offset.iter_mut().for_each(|h| *h /= ratio);
            c.input_clip = at;
            c.converter = converter;
        });
        let inputs = net.shapes[net.nodes[3].inputs[0]].len();
        layers[3] = layers[3].take().map(|l| l.with_learned_clip(inputs));
        (layers, gap / 4.0)
    }

    /// (finite difference, analytic) gradient of the mean loss in the clip.
    fn clip_gradient(net: &Network, layers: &[Option<QatLayer>], x: &[f32], labels: &[u8], h: f32) -> (f64, f64) {
        let (_, qg) = qat_grads(net, layers, x, labels, backprop::TAPE_BYTES);
        let moved = |delta: f32| {
            let mut l = layers.to_vec();
            let q = l[3].as_mut().unwrap();
            q.clip.as_mut().unwrap().value += delta;
            q.compose();
            qat_loss(net, &l, x, labels)
        };
        ((moved(h) - moved(-h)) / (2.0 * h as f64), qg[3].as_ref().unwrap().clip as f64)
    }

    /// Ideal conversion: the loss depends on the inputs only through
    /// q = step·level, so the LSQ + PACT gradient is its derivative.
    #[test]
    fn learned_clip_gradient_matches_finite_differences() {
        let net = smooth_tiny();
        let (x, labels) = batch(4);
        let (layers, h) = clip_setup(&net, &x, MtjGrad::Ste, Converter::Ideal, 1.0);
        let clip = layers[3].as_ref().unwrap().config.input_clip;
        let mut work = net.clone();
        let input = backprop::forward(&mut work, x.clone(), 4, true, None).unwrap().values.swap_remove(3);
        assert!(input.iter().filter(|&&v| v > clip).count() > 10 && input.iter().any(|&v| v > 0.0 && v < clip));
        let (num, ana) = clip_gradient(&net, &layers, &x, &labels, h);
        assert!(ana.abs() > 1e-3 && (num - ana).abs() <= 0.01 * ana.abs(), "numeric {num} analytic {ana} (h {h})");
    }

    /// An MTJ layer with the `expected` surrogate and 4096 samples (a nearly
    /// smooth loss, as in `expected_surrogate_tracks_the_mean_loss`, with
    /// its tolerance): the gradient holds only because the normalisation
    /// follows the clip. Without that, a wider clip would shrink every
    /// partial sum the normalisation sees, an effect the gradient leaves out.
    #[test]
    fn learned_clip_gradient_through_the_mtj_tracks_the_mean_loss() {
        let net = smooth_tiny();
        let (x, labels) = batch(4);
        let (layers, h) = clip_setup(&net, &x, MtjGrad::Expected, Converter::Mtj { curve: Curve::sigmoid(4.0), samples: 4096 }, 1.0);
        let (num, ana) = clip_gradient(&net, &layers, &x, &labels, h);
        assert!(num * ana > 0.0 && (num - ana).abs() < 0.35 * ana.abs(), "numeric {num} analytic {ana} (h {h})");
    }

    /// Backward reads the recorded partial sums and converter outputs, or
    /// replays the forward when they exceed the tape budget: the same
    /// gradients, bit for bit.
    #[test]
    fn replayed_and_recorded_tapes_give_the_same_gradients() {
        let net = tiny();
        let layers = qat_layers(&net, MtjGrad::Ste);
        let (x, labels) = batch(4);
        let cut = qat_layers_with(&net, MtjGrad::Ste, sliced);
        for layers in [&layers, &cut] {
            let grads = |tape_bytes| qat_grads(&net, layers, &x, &labels, tape_bytes);
            let (recorded, replayed) = (grads(backprop::TAPE_BYTES), grads(0));
            assert!(recorded.0[3].iter().flatten().any(|&g| g != 0.0));
            assert_eq!(recorded, replayed);
        }
    }

    #[test]
    fn qat_training_learns_and_resumes_bit_for_bit() {
        let data = dataset();
        let make = || Trainer::new(tiny(), TrainConfig { augment: Augment::NONE, ..config(20) }).unwrap().with_qat(qat_layers(&tiny(), MtjGrad::Ste)).unwrap();
        let mut t = make();
        let first = t.train_batches(&data, 0, 0, 3).unwrap();
        for e in 1..20 {
            t.train_batches(&data, e, 0, 3).unwrap();
        }
        let last = t.train_batches(&data, 19, 0, 3).unwrap();
        assert!(last.loss_sum < 0.8 * first.loss_sum, "{} -> {}", first.loss_sum, last.loss_sum);
        let a = assert_resume_is_bit_identical(make, &data, 1, 2);
        // The learned normalisation moved.
        assert_ne!(a.qat[3].as_ref().unwrap().config.params.norm_shift, qat_layers(&tiny(), MtjGrad::Ste)[3].as_ref().unwrap().config.params.norm_shift);
        // With a learned clip: the clip moves, and resume stays bit for bit.
        let features = tiny().shapes[3].len();
        let make = || {
            let mut layers = qat_layers(&tiny(), MtjGrad::Ste);
            layers[3] = layers[3].take().map(|l| l.with_learned_clip(features));
            Trainer::new(tiny(), TrainConfig { augment: Augment::NONE, ..config(20) }).unwrap().with_qat(layers).unwrap()
        };
        let mut a = assert_resume_is_bit_identical(make, &data, 1, 2);
        let q = a.qat[3].as_ref().unwrap();
        assert_ne!(q.config.input_clip, 2.0);
        assert_eq!(q.config.input_clip, q.clip.as_ref().unwrap().value);
        // With an EMA too: it averages the clip and the learned normalisation,
        // its layers are composed from them, and resume stays bit for bit.
        let raw = a.qat[3].clone().unwrap();
        let mut e = assert_resume_is_bit_identical(|| make().with_ema(0.5).unwrap(), &data, 1, 2);
        assert_eq!(e.qat[3].as_ref().unwrap().config, raw.config, "the EMA does not change the training");
        let avg = e.model().1[3].clone().unwrap();
        let clip = avg.clip.as_ref().unwrap().value;
        assert!(clip != raw.config.input_clip && clip != 2.0 && avg.config.input_clip == clip);
        assert_ne!(avg.learned[1], raw.learned[1]);
        let mut composed = avg.clone();
        composed.compose();
        assert_eq!(composed.config, avg.config);
        assert_eq!(a.model().1[3].as_ref().unwrap().config, raw.config, "without an EMA the model is the current one");
        let err = Trainer::new(tiny(), config(2)).unwrap().with_ema(0.5).unwrap().with_qat(qat_layers(&tiny(), MtjGrad::Ste)).err().unwrap();
        assert!(err.0.contains("before the EMA"), "{}", err.0);
    }

    /// Sampling-length-aware training: every step draws T for each MTJ
    /// layer from the set, keyed by (seed, step, node), the layer trains at
    /// that T, and a resumed run draws the same T (bit-identical state).
    #[test]
    fn random_samples_are_drawn_per_step_and_resume_bit_for_bit() {
        let data = dataset();
        let make = |seed: u64| Trainer::new(tiny(), TrainConfig { augment: Augment::NONE, seed, ..config(4) }).unwrap().with_qat(qat_layers(&tiny(), MtjGrad::Ste)).unwrap();
        let t = make(5).with_random_samples(vec![1, 2, 4]).unwrap();
        let draws: Vec<u32> = (0..60).map(|s| t.samples_at(s)[3].unwrap()).collect();
        assert!(t.samples_at(0).iter().enumerate().all(|(i, d)| d.is_some() == (i == 3)), "only the MTJ layer draws");
        for v in [1, 2, 4] {
            // 60 uniform draws from 3 values: each appears 20 ± 3.7 times; below 8 is 3.3 σ out.
            let n = draws.iter().filter(|&&d| d == v).count();
            assert!(n >= 8, "T = {v} drawn {n} times in 60 steps: {draws:?}");
        }
        let other: Vec<u32> = (0..60).map(|s| make(6).with_random_samples(vec![1, 2, 4]).unwrap().samples_at(s)[3].unwrap()).collect();
        assert_ne!(draws, other, "the draws follow the seed");
        // The layer trains at the drawn T: after step s, its converter holds draws[s].
        let mut t = t;
        for (step, &drawn) in draws.iter().enumerate().take(3) {
            t.train_batches(&data, 0, step, step + 1).unwrap();
            assert!(matches!(t.qat[3].as_ref().unwrap().config.converter, Converter::Mtj { samples, .. } if samples == drawn));
        }
        let random = assert_resume_is_bit_identical(|| make(5).with_random_samples(vec![1, 2, 4]).unwrap(), &data, 1, 3);
        let fixed = assert_resume_is_bit_identical(|| make(5), &data, 1, 3);
        let (mut random, mut fixed) = (random, fixed);
        assert_ne!(random.state(), fixed.state(), "random T trains differently from the configured T");
        for bad in [vec![], vec![0, 2]] {
            assert!(make(5).with_random_samples(bad).err().unwrap().0.contains("T >= 1"));
        }
        let fp32 = Trainer::new(tiny(), config(2)).unwrap().with_random_samples(vec![1, 2]).err().unwrap();
        assert!(fp32.0.contains("no MTJ crossbar layer"), "{}", fp32.0);
    }

    /// Training at T per input stream (sliced c2: two 2-bit streams at T = 1
    /// and 3): replayed tapes give the recorded gradients, a resumed run the
    /// same bits, the run differs from one at the layer's uniform T, and
    /// random T is refused beside it (it would be overridden).
    #[test]
    fn samples_per_stream_train_and_resume_bit_for_bit() {
        let data = dataset();
        let per_stream = |c: &mut LayerConfig| {
            sliced(c);
            c.samples_per_stream = vec![1, 3];
        };
        let make = |edit: &dyn Fn(&mut LayerConfig)| {
            Trainer::new(tiny(), TrainConfig { augment: Augment::NONE, seed: 5, ..config(4) }).unwrap().with_qat(qat_layers_with(&tiny(), MtjGrad::Ste, edit)).unwrap()
        };
        let net = tiny();
        let layers = qat_layers_with(&net, MtjGrad::Ste, per_stream);
        let (x, labels) = batch(4);
        assert_eq!(qat_grads(&net, &layers, &x, &labels, backprop::TAPE_BYTES), qat_grads(&net, &layers, &x, &labels, 0));
        let mut streams = assert_resume_is_bit_identical(|| make(&per_stream), &data, 1, 3);
        let mut uniform = assert_resume_is_bit_identical(|| make(&sliced), &data, 1, 3);
        assert_ne!(streams.state(), uniform.state(), "T per stream trains differently from the layer's T = 4");
        let refused = make(&per_stream).with_random_samples(vec![1, 2]).err().unwrap();
        assert!(refused.0.contains("samples per input stream"), "{}", refused.0);
    }

    /// c2 with an ADC of `bits` over [lo, lo + (2^bits − 1)] in unit steps.
    fn adc_layers(net: &Network, bits: u32, lo: f32) -> Vec<Option<QatLayer>> {
        qat_layers_with(net, MtjGrad::Ste, |c| {
            c.converter = Converter::Adc { bits };
            c.params = ColumnParams { adc_lo: vec![lo; 24], adc_step: vec![1.0; 24], ..ColumnParams::default() };
        })
    }

    /// An ADC passes the gradient straight through where it converts and
    /// stops it where it clips. c2's partial sums are integers in
    /// ±12·7·15 = ±1260: a 12-bit ADC from −2048 in unit steps converts each
    /// exactly, so its forward values and gradients are the ideal
    /// converter's, bit for bit; an ADC whose range starts just above every
    /// partial sum saturates all of them, and no gradient reaches c2's
    /// weights (the opened hardtanh of `smooth_tiny` lets the rest of the
    /// network still learn); a range that cuts through the partial sums
    /// gives gradients between the two.
    #[test]
    fn adc_gradients_pass_straight_through_inside_the_range_and_stop_where_it_clips() {
        let net = smooth_tiny();
        let (x, labels) = batch(4);
        let ideal = qat_layers_with(&net, MtjGrad::Ste, |c| {
            c.converter = Converter::Ideal;
            c.params = ColumnParams::default();
        });
        let g = |layers: &[Option<QatLayer>]| qat_grads(&net, layers, &x, &labels, backprop::TAPE_BYTES).0;
        let exact = g(&ideal);
        assert!(exact[3][0].iter().any(|&v| v != 0.0));
        assert_eq!(g(&adc_layers(&net, 12, -2048.0)), exact);
        let saturated = g(&adc_layers(&net, 4, 1261.0));
        assert!(saturated[3][0].iter().all(|&v| v == 0.0), "no gradient through saturated codes");
        assert!(saturated[0][0].iter().any(|&v| v != 0.0), "c1 still learns through the shortcut");
        // Codes 0..15 from −4: partial sums of 0..11 convert, the rest clip.
        let cut = g(&adc_layers(&net, 4, -4.0));
        assert!(cut[3][0] != exact[3][0] && cut[3][0].iter().any(|&v| v != 0.0));
    }

    /// PS-QAT through every converter: training moves c2's weights, and a
    /// resumed run is the uninterrupted one, bit for bit.
    #[test]
    fn training_through_each_converter_resumes_bit_for_bit() {
        let data = dataset();
        type Layers = Box<dyn Fn(&Network) -> Vec<Option<QatLayer>>>;
        let converters: [(&str, Layers); 4] = [
            (
                "ideal",
                Box::new(|n: &Network| {
                    qat_layers_with(n, MtjGrad::Ste, |c| {
                        c.converter = Converter::Ideal;
                        c.params = ColumnParams::default();
                    })
                }),
            ),
            ("adc", Box::new(|n: &Network| adc_layers(n, 4, -4.0))),
            ("sense-amp", Box::new(|n: &Network| qat_layers_with(n, MtjGrad::Ste, |c| c.converter = Converter::SenseAmp))),
            ("mtj, bit-sliced", Box::new(|n: &Network| qat_layers_with(n, MtjGrad::Ste, sliced))),
        ];
        for (name, layers) in &converters {
            let make = || Trainer::new(tiny(), TrainConfig { augment: Augment::NONE, ..config(3) }).unwrap().with_qat(layers(&tiny())).unwrap();
            let trained = assert_resume_is_bit_identical(make, &data, 1, 3);
            let before = match &tiny().nodes[3].op {
                Op::Conv(c) => c.weight.clone(),
                _ => unreachable!(),
            };
            assert!(matches!(&trained.net.nodes[3].op, Op::Conv(c) if c.weight != before), "{name}: c2 did not train");
        }
    }
}
