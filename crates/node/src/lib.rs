//! Thin N-API binding: converts arguments, runs the core off the JS thread,
//! and turns core errors and panics into JavaScript exceptions.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stoxnet_core::graph::{self, Network, Node, Op, Shape};

fn js_err(e: stoxnet_core::Error) -> napi::Error {
    napi::Error::new(Status::InvalidArg, e.0)
}

/// Runs `f`, turning a panic into an error carrying the panic message.
fn guarded<T>(f: impl FnOnce() -> stoxnet_core::Result<T>) -> napi::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(js_err),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(napi::Error::new(Status::GenericFailure, format!("stoxnet internal error (panic): {msg}")))
        }
    }
}

/// One IR node as the TypeScript facade describes it (ts/network.ts).
#[napi(object)]
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
        "Add" => Op::Add,
        "Slice" => Op::Slice(graph::Slice {
            start: dims::<2>(n, "start", &n.start)?,
            end: dims::<2>(n, "end", &n.end)?,
            step: dims::<2>(n, "step", &n.step)?,
        }),
        "PadChannels" => Op::PadChannels {
            before: *field(n, "before", &n.before)? as usize,
            after: *field(n, "after", &n.after)? as usize,
        },
        "GlobalAvgPool" => Op::GlobalAvgPool,
        "Flatten" => Op::Flatten,
        "Linear" => {
            let [o, i] = dims::<2>(n, "shape", &n.shape)?;
            Op::Linear(graph::Linear {
                weight: floats(field(n, "weight", &n.weight)?),
                bias: n.bias.as_ref().map(floats),
                out_features: o,
                in_features: i,
            })
        }
        other => stoxnet_core::bail!("node '{}': unknown IR op '{}'", n.name, other),
    };
    Ok(Node { name: n.name.clone(), op, inputs: n.inputs.iter().map(|&i| i as usize).collect() })
}

fn network(spec: &NetworkSpec) -> stoxnet_core::Result<Network> {
    if spec.input.len() != 3 {
        stoxnet_core::bail!("network input must be [channels, height, width], got {} dims", spec.input.len());
    }
    let input = Shape { c: spec.input[0] as usize, h: spec.input[1] as usize, w: spec.input[2] as usize };
    let nodes = spec.nodes.iter().map(node).collect::<stoxnet_core::Result<Vec<_>>>()?;
    Network::new(input, nodes, spec.output as usize)
}

#[napi]
pub struct NativeNetwork {
    net: Arc<Network>,
}

#[napi]
impl NativeNetwork {
    #[napi(constructor)]
    pub fn new(spec: NetworkSpec) -> napi::Result<Self> {
        guarded(|| network(&spec)).map(|net| NativeNetwork { net: Arc::new(net) })
    }

    #[napi(getter)]
    pub fn classes(&self) -> u32 {
        self.net.classes() as u32
    }

    /// Logits for a batch of images (`n × c × h × w` floats), computed on a
    /// pool of `threads` workers (0 = one per core) off the JS thread.
    #[napi(ts_return_type = "Promise<Float32Array>")]
    pub fn forward(&self, images: Float32Array, threads: u32) -> AsyncTask<Forward> {
        AsyncTask::new(Forward { net: self.net.clone(), images: images.to_vec(), threads: threads as usize })
    }
}

pub struct Forward {
    net: Arc<Network>,
    images: Vec<f32>,
    threads: usize,
}

impl Task for Forward {
    type Output = Vec<f32>;
    type JsValue = Float32Array;

    fn compute(&mut self) -> napi::Result<Vec<f32>> {
        guarded(|| {
            let pool = stoxnet_core::engine::thread_pool(self.threads)?;
            pool.install(|| stoxnet_core::engine::forward(&self.net, &self.images))
        })
    }

    fn resolve(&mut self, _env: Env, output: Vec<f32>) -> napi::Result<Float32Array> {
        Ok(Float32Array::new(output))
    }
}
