//! Small networks and seeded data built in code, shared by the integration
//! tests (no external data). Each test crate uses a part of it.
#![allow(dead_code)]

use rand_core::RngCore;
use stoxnet_core::config::{ColumnParams, ConverterSpec, LayerSpec, Mapping, Noise, SignedMapping, Split};
use stoxnet_core::graph::{BatchNorm, Conv, Linear, Network, Node, Op, Shape};
use stoxnet_core::quant::WeightQuant;
use stoxnet_core::rng::{self, unit24};

/// `n` values uniform in [lo, hi), from a stream keyed by `seed`.
pub fn uniforms(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = rng::stream(seed, &[0x7e57]);
    (0..n).map(|_| lo + (hi - lo) * unit24(r.next_u32())).collect()
}

pub fn mapping(rows: usize, weight_bits: u32, weight_slice_bits: u32, input_bits: u32, input_stream_bits: u32) -> Mapping {
    Mapping { rows, cols: 128, split: Split::Balanced, weight_bits, weight_slice_bits, input_bits, input_stream_bits, weight_quant: WeightQuant::Uniform, signed: SignedMapping::Differential }
}

pub fn spec(mapping: Mapping, converter: ConverterSpec, input_clip: Option<f32>, input_signed: bool, noise: Noise) -> LayerSpec {
    LayerSpec { mapping, converter, input_clip, input_signed, noise, params: ColumnParams::default(), samples_per_stream: Vec::new() }
}

/// Conv(3→8, 3×3, pad 1) → BN → ReLU → Conv(8→8, 3×3, stride 2, pad 1, bias)
/// → BN → ReLU → GAP → Flatten → Linear(8→10, bias), on 3×8×8 inputs.
/// Crossbar-capable nodes: 0, 3 and 8.
pub fn small_cnn(seed: u64) -> Network {
    let conv = |o: usize, c: usize, stride: usize, bias: bool, key: u64| Conv {
        weight: uniforms(seed ^ key, o * c * 9, -0.5, 0.5),
        bias: bias.then(|| uniforms(seed ^ key ^ 1, o, -0.1, 0.1)),
        out_channels: o,
        in_channels: c,
        kernel: [3, 3],
        stride: [stride, stride],
        pads: [1, 1, 1, 1],
    };
    let bn = |c: usize, key: u64| BatchNorm {
        scale: uniforms(seed ^ key, c, 0.5, 1.5),
        bias: uniforms(seed ^ key ^ 1, c, -0.2, 0.2),
        mean: uniforms(seed ^ key ^ 2, c, -0.3, 0.3),
        var: uniforms(seed ^ key ^ 3, c, 0.5, 2.0),
        eps: 1e-5,
    };
    let node = |name: &str, op, inputs: Vec<usize>| Node { name: name.into(), op, inputs };
    let nodes = vec![
        node("conv1", Op::Conv(conv(8, 3, 1, false, 10)), vec![0]),
        node("bn1", Op::BatchNorm(bn(8, 20)), vec![1]),
        node("relu1", Op::Relu, vec![2]),
        node("conv2", Op::Conv(conv(8, 8, 2, true, 30)), vec![3]),
        node("bn2", Op::BatchNorm(bn(8, 40)), vec![4]),
        node("relu2", Op::Relu, vec![5]),
        node("gap", Op::GlobalAvgPool, vec![6]),
        node("flat", Op::Flatten, vec![7]),
        node("fc", Op::Linear(Linear { weight: uniforms(seed ^ 50, 80, -0.6, 0.6), bias: Some(uniforms(seed ^ 51, 10, -0.1, 0.1)), out_features: 10, in_features: 8 }), vec![8]),
    ];
    Network::new(Shape { c: 3, h: 8, w: 8 }, nodes, 9).unwrap()
}

/// One linear layer `out × k` on a `k × 1 × 1` input (the crossbar sees the
/// network input unchanged, so its partial sums can be computed directly).
pub fn single_linear(seed: u64, k: usize, out: usize, bias: bool) -> Network {
    let fc = Linear { weight: uniforms(seed, out * k, -1.0, 1.0), bias: bias.then(|| uniforms(seed ^ 1, out, -0.1, 0.1)), out_features: out, in_features: k };
    Network::new(Shape { c: k, h: 1, w: 1 }, vec![Node { name: "fc".into(), op: Op::Linear(fc), inputs: vec![0] }], 1).unwrap()
}
