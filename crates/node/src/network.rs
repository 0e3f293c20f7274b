//! The network IR as the TypeScript facade describes it (ts/network.ts),
//! converted to and from the core's `Network`.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stoxnet_core::graph::{self, Network, Node, Op, Shape};

/// One IR node.
#[napi(object)]
#[derive(Default)]
pub struct NodeSpec {
    pub name: String,
    pub op: String,
    pub inputs: Vec<u32>,
    pub shape: Option<Vec<u32>>,
    pub weight: Option<Float32Array>,
    pub bias: Option<Float32Array>,
    pub mean: Option<Float32Array>,
    pub var: Option<Float32Array>,
    pub eps: Option<f64>,
    pub stride: Option<Vec<u32>>,
    pub pads: Option<Vec<u32>>,
    pub start: Option<Vec<u32>>,
    pub end: Option<Vec<u32>>,
    pub step: Option<Vec<u32>>,
    pub before: Option<u32>,
    pub after: Option<u32>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// MaxPool / AvgPool window `[kh, kw]`.
    pub kernel: Option<Vec<u32>>,
    /// MaxPool / AvgPool; absent = false.
    pub ceil_mode: Option<bool>,
    /// AvgPool; absent = false.
    pub count_include_pad: Option<bool>,
    /// Add / Sub / Mul / Div with a constant operand: its values, its
    /// `[c, h, w]`, and whether it is the left operand (absent = false).
    pub constant: Option<Float32Array>,
    pub constant_shape: Option<Vec<u32>>,
    pub constant_first: Option<bool>,
    /// HardSigmoid and LeakyRelu.
    pub alpha: Option<f64>,
    /// HardSigmoid.
    pub beta: Option<f64>,
    /// Transpose: output axis k of `[c, h, w]` is input axis `perm[k]`.
    pub perm: Option<Vec<u32>>,
}

#[napi(object)]
pub struct NetworkSpec {
    /// `[channels, height, width]` of one image.
    pub input: Vec<u32>,
    pub nodes: Vec<NodeSpec>,
    pub output: u32,
}

fn field<'a, T>(n: &NodeSpec, name: &str, v: &'a Option<T>) -> stoxnet_core::Result<&'a T> {
    v.as_ref().ok_or_else(|| stoxnet_core::Error::new(format!("node '{}' ({}): missing field '{}'", n.name, n.op, name)))
}
fn dims<const N: usize>(n: &NodeSpec, name: &str, v: &Option<Vec<u32>>) -> stoxnet_core::Result<[usize; N]> {
    let v = field(n, name, v)?;
    if v.len() != N {
        stoxnet_core::bail!("node '{}' ({}): field '{}' needs {} values, got {}", n.name, n.op, name, N, v.len());
    }
    Ok(std::array::from_fn(|i| v[i] as usize))
}
fn floats(v: &Float32Array) -> Vec<f32> {
    v.to_vec()
}
fn pool(n: &NodeSpec) -> stoxnet_core::Result<graph::Pool> {
    Ok(graph::Pool {
        kernel: dims::<2>(n, "kernel", &n.kernel)?,
        stride: dims::<2>(n, "stride", &n.stride)?,
        pads: dims::<4>(n, "pads", &n.pads)?,
        ceil_mode: n.ceil_mode.unwrap_or(false),
        count_include_pad: n.count_include_pad.unwrap_or(false),
    })
}
fn binary(n: &NodeSpec, arith: graph::Arith) -> stoxnet_core::Result<Op> {
    let constant = match &n.constant {
        Some(values) => {
            let [c, h, w] = dims::<3>(n, "constantShape", &n.constant_shape)?;
            Some(graph::Constant { values: floats(values), shape: Shape { c, h, w }, first: n.constant_first.unwrap_or(false) })
        }
        None => None,
    };
    Ok(Op::Binary(graph::Binary { arith, constant }))
}
fn node(n: &NodeSpec) -> stoxnet_core::Result<Node> {
    let op = match n.op.as_str() {
        "Conv" => {
            let [o, c, kh, kw] = dims::<4>(n, "shape", &n.shape)?;
            Op::Conv(graph::Conv {
                weight: floats(field(n, "weight", &n.weight)?),
                bias: n.bias.as_ref().map(floats),
                out_channels: o,
                in_channels: c,
                kernel: [kh, kw],
                stride: dims::<2>(n, "stride", &n.stride)?,
                pads: dims::<4>(n, "pads", &n.pads)?,
            })
        }
        "BatchNorm" => Op::BatchNorm(graph::BatchNorm {
            scale: floats(field(n, "weight", &n.weight)?),
            bias: floats(field(n, "bias", &n.bias)?),
            mean: floats(field(n, "mean", &n.mean)?),
            var: floats(field(n, "var", &n.var)?),
            eps: *field(n, "eps", &n.eps)? as f32,
        }),
        "Relu" => Op::Relu,
        "Hardtanh" => Op::Hardtanh { min: *field(n, "min", &n.min)? as f32, max: *field(n, "max", &n.max)? as f32 },
        "Add" => binary(n, graph::Arith::Add)?,
        "Sub" => binary(n, graph::Arith::Sub)?,
        "Mul" => binary(n, graph::Arith::Mul)?,
        "Div" => binary(n, graph::Arith::Div)?,
        "Sigmoid" => Op::Activation(graph::Activation::Sigmoid),
        "HardSigmoid" => Op::Activation(graph::Activation::HardSigmoid { alpha: *field(n, "alpha", &n.alpha)? as f32, beta: *field(n, "beta", &n.beta)? as f32 }),
        "HardSwish" => Op::Activation(graph::Activation::HardSwish),
        "LeakyRelu" => Op::Activation(graph::Activation::LeakyRelu { alpha: *field(n, "alpha", &n.alpha)? as f32 }),
        "Slice" => Op::Slice(graph::Slice { start: dims::<2>(n, "start", &n.start)?, end: dims::<2>(n, "end", &n.end)?, step: dims::<2>(n, "step", &n.step)? }),
        "PadChannels" => Op::PadChannels { before: *field(n, "before", &n.before)? as usize, after: *field(n, "after", &n.after)? as usize },
        "SliceChannels" => {
            let ([start], [end]) = (dims::<1>(n, "start", &n.start)?, dims::<1>(n, "end", &n.end)?);
            Op::SliceChannels { start, end }
        }
        "Transpose" => Op::Transpose { perm: dims::<3>(n, "perm", &n.perm)? },
        "MaxPool" => Op::MaxPool(pool(n)?),
        "AvgPool" => Op::AvgPool(pool(n)?),
        "GlobalAvgPool" => Op::GlobalAvgPool,
        "GlobalMaxPool" => Op::GlobalMaxPool,
        "Concat" => Op::Concat,
        "Flatten" => Op::Flatten,
        "Linear" => {
            let [o, i] = dims::<2>(n, "shape", &n.shape)?;
            Op::Linear(graph::Linear { weight: floats(field(n, "weight", &n.weight)?), bias: n.bias.as_ref().map(floats), out_features: o, in_features: i })
        }
        other => stoxnet_core::bail!("node '{}': unknown IR op '{}'", n.name, other),
    };
    Ok(Node { name: n.name.clone(), op, inputs: n.inputs.iter().map(|&i| i as usize).collect() })
}

impl TryFrom<&NetworkSpec> for Network {
    type Error = stoxnet_core::Error;

    fn try_from(spec: &NetworkSpec) -> stoxnet_core::Result<Network> {
        if spec.input.len() != 3 {
            stoxnet_core::bail!("network input must be [channels, height, width], got {} dims", spec.input.len());
        }
        let input = Shape { c: spec.input[0] as usize, h: spec.input[1] as usize, w: spec.input[2] as usize };
        let nodes = spec.nodes.iter().map(node).collect::<stoxnet_core::Result<Vec<_>>>()?;
        Network::new(input, nodes, spec.output as usize)
    }
}

impl From<&Network> for NetworkSpec {
    fn from(net: &Network) -> NetworkSpec {
        let arr = |v: &Vec<f32>| Float32Array::new(v.clone());
        let dims = |v: &[usize]| v.iter().map(|&d| d as u32).collect::<Vec<u32>>();
        let nodes = net
            .nodes
            .iter()
            .map(|n| {
                let mut s = NodeSpec { name: n.name.clone(), op: n.op.kind().into(), inputs: n.inputs.iter().map(|&i| i as u32).collect(), ..Default::default() };
                match &n.op {
                    Op::Conv(c) => {
                        s.shape = Some(dims(&[c.out_channels, c.in_channels, c.kernel[0], c.kernel[1]]));
                        s.weight = Some(arr(&c.weight));
                        s.bias = c.bias.as_ref().map(arr);
                        s.stride = Some(dims(&c.stride));
                        s.pads = Some(dims(&c.pads));
                    }
                    Op::BatchNorm(b) => {
                        s.weight = Some(arr(&b.scale));
                        s.bias = Some(arr(&b.bias));
                        s.mean = Some(arr(&b.mean));
                        s.var = Some(arr(&b.var));
                        s.eps = Some(b.eps as f64);
                    }
                    Op::Slice(sl) => {
                        s.start = Some(dims(&sl.start));
                        s.end = Some(dims(&sl.end));
                        s.step = Some(dims(&sl.step));
                    }
                    Op::SliceChannels { start, end } => {
                        s.start = Some(vec![*start as u32]);
                        s.end = Some(vec![*end as u32]);
                    }
                    Op::PadChannels { before, after } => {
                        s.before = Some(*before as u32);
                        s.after = Some(*after as u32);
                    }
                    Op::Transpose { perm } => s.perm = Some(dims(perm)),
                    Op::Linear(l) => {
                        s.shape = Some(dims(&[l.out_features, l.in_features]));
                        s.weight = Some(arr(&l.weight));
                        s.bias = l.bias.as_ref().map(arr);
                    }
                    Op::Hardtanh { min, max } => {
                        s.min = Some(*min as f64);
                        s.max = Some(*max as f64);
                    }
                    Op::MaxPool(p) | Op::AvgPool(p) => {
                        s.kernel = Some(dims(&p.kernel));
                        s.stride = Some(dims(&p.stride));
                        s.pads = Some(dims(&p.pads));
                        s.ceil_mode = Some(p.ceil_mode);
                        if matches!(n.op, Op::AvgPool(_)) {
                            s.count_include_pad = Some(p.count_include_pad);
                        }
                    }
                    Op::Binary(b) => {
                        if let Some(k) = &b.constant {
                            s.constant = Some(arr(&k.values));
                            s.constant_shape = Some(dims(&[k.shape.c, k.shape.h, k.shape.w]));
                            s.constant_first = Some(k.first);
                        }
                    }
                    Op::Activation(a) => match *a {
                        graph::Activation::HardSigmoid { alpha, beta } => {
                            s.alpha = Some(alpha as f64);
                            s.beta = Some(beta as f64);
                        }
                        graph::Activation::LeakyRelu { alpha } => s.alpha = Some(alpha as f64),
                        graph::Activation::Sigmoid | graph::Activation::HardSwish => {}
                    },
                    Op::Relu | Op::GlobalAvgPool | Op::GlobalMaxPool | Op::Concat | Op::Flatten => {}
                }
                s
            })
            .collect();
        NetworkSpec { input: dims(&[net.input.c, net.input.h, net.input.w]), nodes, output: net.output as u32 }
    }
}
