//! Thin N-API binding: converts arguments, runs the core off the JS thread,
//! and turns core errors and panics into JavaScript exceptions.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stoxnet_core::calibrate::{self, ConverterSpec, LayerSpec, Resolved};
use stoxnet_core::converter::Converter;
use stoxnet_core::crossbar::{ColumnParams, LayerConfig, Mapping, Noise, SignedMapping, Split};
use stoxnet_core::engine::{self, Stox};
use stoxnet_core::graph::{self, Network, Node, Op, Shape};
use stoxnet_core::mtj::Curve;
use stoxnet_core::ops::LayerOps;
use stoxnet_core::quant::WeightQuant;

fn js_err(e: stoxnet_core::Error) -> napi::Error {
    napi::Error::new(Status::InvalidArg, e.0)
}

/// Runs `f`, turning a panic into an error carrying the panic message.
fn guarded<T>(f: impl FnOnce() -> stoxnet_core::Result<T>) -> napi::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(js_err),
        Err(payload) => {
            let msg = payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "unknown panic".into());
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
    pub min: Option<f64>,
    pub max: Option<f64>,
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
        "Hardtanh" => Op::Hardtanh { min: *field(n, "min", &n.min)? as f32, max: *field(n, "max", &n.max)? as f32 },
        "Add" => Op::Add,
        "Slice" => Op::Slice(graph::Slice { start: dims::<2>(n, "start", &n.start)?, end: dims::<2>(n, "end", &n.end)?, step: dims::<2>(n, "step", &n.step)? }),
        "PadChannels" => Op::PadChannels { before: *field(n, "before", &n.before)? as usize, after: *field(n, "after", &n.after)? as usize },
        "GlobalAvgPool" => Op::GlobalAvgPool,
        "Flatten" => Op::Flatten,
        "Linear" => {
            let [o, i] = dims::<2>(n, "shape", &n.shape)?;
            Op::Linear(graph::Linear { weight: floats(field(n, "weight", &n.weight)?), bias: n.bias.as_ref().map(floats), out_features: o, in_features: i })
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

/// One crossbar layer as ts/stox.ts resolves it from the user's config.
#[napi(object)]
pub struct LayerSpecJs {
    pub rows: u32,
    pub cols: u32,
    pub split: String,
    pub weight_bits: u32,
    pub weight_slice_bits: u32,
    pub input_bits: u32,
    pub input_stream_bits: u32,
    pub weight_quant: String,
    pub signed: String,
    pub converter: String,
    pub adc_bits: Option<u32>,
    pub adc_range: Option<String>,
    pub transfer: Option<String>,
    pub sensitivity: Option<f64>,
    pub samples: Option<u32>,
    pub input_clip: Option<f64>,
    pub input_signed: bool,
    pub cell_noise: f64,
    pub read_noise: f64,
    pub mtj_offset_sigma: f64,
    pub mtj_slope_sigma: f64,
    pub params: Option<ColumnParamsJs>,
}

#[napi(object)]
pub struct ColumnParamsJs {
    pub adc_lo: Option<Float32Array>,
    pub adc_step: Option<Float32Array>,
    pub norm_scale: Option<Float32Array>,
    pub norm_shift: Option<Float32Array>,
    pub readout_gain: Option<Float32Array>,
    pub readout_offset: Option<Float32Array>,
}

/// What calibration decided for one crossbar layer.
#[napi(object)]
pub struct ResolvedJs {
    pub node: u32,
    pub input_clip: f64,
    pub converter: String,
    pub adc_bits: Option<u32>,
    pub samples: Option<u32>,
    pub subarrays: u32,
    pub physical_subarrays: u32,
    pub subarray_rows: Vec<u32>,
    pub params: ColumnParamsJs,
}

/// Operation counts of one node (see crates/core/src/ops.rs).
#[napi(object)]
pub struct LayerOpsJs {
    pub images: f64,
    pub subarray_reads: f64,
    pub cell_reads: f64,
    pub dac_drives: f64,
    pub active_rows: f64,
    pub drive_sq: f64,
    pub cell_load: f64,
    pub conversions: f64,
    pub mtj_samples: f64,
    pub shift_adds: f64,
    pub digital_macs: f64,
    pub digital_ops: f64,
    pub ps_min: Option<f64>,
    pub ps_max: Option<f64>,
}

#[napi(object)]
pub struct ForwardResult {
    pub logits: Float32Array,
    pub ops: Vec<LayerOpsJs>,
}

fn ops_js(o: &LayerOps) -> LayerOpsJs {
    let finite = |v: f32| v.is_finite().then_some(v as f64);
    LayerOpsJs {
        images: o.images as f64,
        subarray_reads: o.subarray_reads as f64,
        cell_reads: o.cell_reads as f64,
        dac_drives: o.dac_drives as f64,
        active_rows: o.active_rows as f64,
        drive_sq: o.drive_sq as f64,
        cell_load: o.cell_load as f64,
        conversions: o.conversions as f64,
        mtj_samples: o.mtj_samples as f64,
        shift_adds: o.shift_adds as f64,
        digital_macs: o.digital_macs as f64,
        digital_ops: o.digital_ops as f64,
        ps_min: finite(o.ps_min),
        ps_max: finite(o.ps_max),
    }
}

fn choice<T: Copy>(at: &str, field: &str, v: &str, options: &[(&str, T)]) -> stoxnet_core::Result<T> {
    options
        .iter()
        .find(|(k, _)| *k == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| stoxnet_core::Error::new(format!("{at}: {field} must be one of {}, got '{v}'", options.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "))))
}

fn params(p: &Option<ColumnParamsJs>) -> ColumnParams {
    let v = |a: &Option<Float32Array>| a.as_ref().map_or(Vec::new(), floats);
    match p {
        None => ColumnParams::default(),
        Some(p) => ColumnParams {
            adc_lo: v(&p.adc_lo),
            adc_step: v(&p.adc_step),
            norm_scale: v(&p.norm_scale),
            norm_shift: v(&p.norm_shift),
            readout_gain: v(&p.readout_gain),
            readout_offset: v(&p.readout_offset),
        },
    }
}

fn layer_spec(at: &str, l: &LayerSpecJs) -> stoxnet_core::Result<LayerSpec> {
    let mapping = Mapping {
        rows: l.rows as usize,
        cols: l.cols as usize,
        split: choice(at, "split", &l.split, &[("balanced", Split::Balanced), ("filled", Split::Filled)])?,
        weight_bits: l.weight_bits,
        weight_slice_bits: l.weight_slice_bits,
        input_bits: l.input_bits,
        input_stream_bits: l.input_stream_bits,
        weight_quant: choice(at, "weightQuant", &l.weight_quant, &[("uniform", WeightQuant::Uniform), ("away", WeightQuant::Away)])?,
        signed: choice(at, "signed", &l.signed, &[("differential", SignedMapping::Differential), ("offset", SignedMapping::Offset)])?,
    };
    let need = |name: &str, v: Option<u32>| v.ok_or_else(|| stoxnet_core::Error::new(format!("{at}: converter '{}' needs {name}", l.converter)));
    let converter = match l.converter.as_str() {
        "ideal" => ConverterSpec::Ideal,
        "adc" => ConverterSpec::Adc { bits: l.adc_bits, calibrated: choice(at, "adcRange", l.adc_range.as_deref().unwrap_or("full"), &[("full", false), ("calibrated", true)])? },
        "sparse-adc" => ConverterSpec::SparseAdc,
        "sense-amp" => ConverterSpec::SenseAmp,
        "mtj" => {
            let a = l.sensitivity.unwrap_or(4.0) as f32;
            let curve = match l.transfer.as_deref().unwrap_or("sigmoid") {
                "sigmoid" => Curve::sigmoid(a),
                "tanh" => Curve::tanh(a),
                "fitted" => Curve::fitted(),
                other => stoxnet_core::bail!("{at}: transfer must be one of sigmoid, tanh, fitted, got '{other}'"),
            };
            ConverterSpec::Mtj(Converter::Mtj { curve, samples: need("samples", l.samples)? })
        }
        other => stoxnet_core::bail!("{at}: converter must be one of ideal, adc, sparse-adc, sense-amp, mtj, got '{other}'"),
    };
    Ok(LayerSpec {
        mapping,
        converter,
        input_clip: l.input_clip.map(|c| c as f32),
        input_signed: l.input_signed,
        noise: Noise { cell: l.cell_noise as f32, read: l.read_noise as f32, mtj_offset: l.mtj_offset_sigma as f32, mtj_slope: l.mtj_slope_sigma as f32 },
        params: params(&l.params),
    })
}

fn resolved_js(node: usize, r: &Resolved, stox: &Stox) -> ResolvedJs {
    let layer = stox.layers[node].as_ref().expect("resolved layers are crossbar layers");
    let (name, bits, samples) = match r.converter {
        Converter::Ideal => ("ideal", None, None),
        Converter::Adc { bits } => ("adc", Some(bits), None),
        Converter::SenseAmp => ("sense-amp", None, None),
        Converter::Mtj { samples, .. } => ("mtj", None, Some(samples)),
    };
    let arr = |v: &Vec<f32>| (!v.is_empty()).then(|| Float32Array::new(v.clone()));
    ResolvedJs {
        node: node as u32,
        input_clip: r.input_clip as f64,
        converter: name.into(),
        adc_bits: bits,
        samples,
        subarrays: layer.subarrays() as u32,
        physical_subarrays: layer.physical_subarrays() as u32,
        subarray_rows: layer.ranges.iter().map(|(a, b)| (b - a) as u32).collect(),
        params: ColumnParamsJs {
            adc_lo: arr(&r.params.adc_lo),
            adc_step: arr(&r.params.adc_step),
            norm_scale: arr(&r.params.norm_scale),
            norm_shift: arr(&r.params.norm_shift),
            readout_gain: arr(&r.params.readout_gain),
            readout_offset: arr(&r.params.readout_offset),
        },
    }
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

    /// Digital FP32 logits and op counts for a batch of images
    /// (`n × c × h × w` floats) numbered from `first`, on `threads` workers
    /// (0 = one per core), off the JS thread.
    #[napi(ts_return_type = "Promise<ForwardResult>")]
    pub fn forward(&self, images: Float32Array, first: u32, threads: u32) -> AsyncTask<Forward> {
        AsyncTask::new(Forward { net: self.net.clone(), stox: None, images: images.to_vec(), first: first as usize, threads: threads as usize })
    }

    /// Programs the crossbar layers (`layers[i]` for node i, null = digital),
    /// calibrating on `calibration` images what the specs leave open.
    /// `abort.abort()` stops the calibration between images.
    #[napi(ts_return_type = "Promise<NativeSimulator>")]
    pub fn simulator(&self, layers: Vec<Option<LayerSpecJs>>, seed: f64, calibration: Float32Array, threads: u32, abort: Option<&AbortHandle>) -> napi::Result<AsyncTask<Prepare>> {
        let specs = guarded(|| {
            if !(seed >= 0.0 && seed.fract() == 0.0 && seed <= 9_007_199_254_740_991.0) {
                stoxnet_core::bail!("seed must be an integer in [0, 2^53), got {seed}");
            }
            layers
                .iter()
                .enumerate()
                .map(|(i, l)| l.as_ref().map(|l| layer_spec(&format!("layer '{}'", self.net.nodes.get(i).map_or("?", |n| n.name.as_str())), l)).transpose())
                .collect::<stoxnet_core::Result<Vec<_>>>()
        })?;
        Ok(AsyncTask::new(Prepare {
            net: self.net.clone(),
            specs,
            seed: seed as u64,
            images: calibration.to_vec(),
            threads: threads as usize,
            cancel: abort.map(|a| a.cancel.clone()).unwrap_or_default(),
        }))
    }
}

pub struct Forward {
    net: Arc<Network>,
    stox: Option<Arc<Stox>>,
    images: Vec<f32>,
    first: usize,
    threads: usize,
}

impl Task for Forward {
    type Output = (Vec<f32>, Vec<LayerOps>);
    type JsValue = ForwardResult;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded(|| {
            let pool = engine::thread_pool(self.threads)?;
            pool.install(|| engine::forward(&self.net, self.stox.as_deref(), &self.images, self.first))
        })
    }

    fn resolve(&mut self, _env: Env, (logits, ops): Self::Output) -> napi::Result<ForwardResult> {
        Ok(ForwardResult { logits: Float32Array::new(logits), ops: ops.iter().map(ops_js).collect() })
    }
}

/// Lets JavaScript stop a long native call (an `AbortSignal` listener calls
/// `abort()`); the call then rejects with "cancelled".
#[napi]
pub struct AbortHandle {
    cancel: engine::Cancel,
}

#[napi]
impl AbortHandle {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        AbortHandle { cancel: engine::Cancel::default() }
    }

    #[napi]
    pub fn abort(&self) {
        self.cancel.cancel();
    }
}

pub struct Prepare {
    net: Arc<Network>,
    specs: Vec<Option<LayerSpec>>,
    seed: u64,
    images: Vec<f32>,
    threads: usize,
    cancel: engine::Cancel,
}

impl Task for Prepare {
    type Output = (Stox, Vec<Option<Resolved>>);
    type JsValue = NativeSimulator;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded(|| {
            let pool = engine::thread_pool(self.threads)?;
            pool.install(|| calibrate::prepare(&self.net, &self.specs, self.seed, &self.images, &self.cancel))
        })
    }

    fn resolve(&mut self, _env: Env, (stox, resolved): Self::Output) -> napi::Result<NativeSimulator> {
        Ok(NativeSimulator { net: self.net.clone(), stox: Arc::new(stox), resolved })
    }
}

/// A technology in canonical units (pJ, ns, µm²); ts/cost.ts loads and
/// validates the JSON files and converts units.
#[napi(object)]
pub struct TechJs {
    pub read_voltage: f64,
    pub cell_on_resistance: f64,
    pub cell_off_resistance: f64,
    pub read_pulse: f64,
    pub read_settling: f64,
    pub cell_area: f64,
    pub dac_power: f64,
    pub dac_area: f64,
    pub adc_architecture: String,
    pub adc_bits: Vec<u32>,
    pub adc_energy: Vec<f64>,
    pub adc_area: Vec<f64>,
    pub adc_cycle: f64,
    pub adc_sharing: u32,
    pub sample_hold_energy: f64,
    pub sample_hold_area: f64,
    pub sense_amp_energy: f64,
    pub sense_amp_area: f64,
    pub sense_amp_latency: f64,
    pub mtj_write_current: f64,
    pub mtj_resistance: f64,
    pub mtj_read_energy: f64,
    pub mtj_reset_energy: f64,
    pub mtj_sample_latency: f64,
    pub mtj_area: f64,
    pub shift_add_energy: f64,
    pub shift_add_area: f64,
    pub buffer_energy: f64,
    pub digital_mac_energy: f64,
    pub digital_op_energy: f64,
    pub digital_rate: f64,
    pub digital_area: f64,
    pub pipeline: String,
}

/// One node's cost per image: energy (pJ), area (µm²) and latency (ns) per
/// component (names in `costComponents()`).
#[napi(object)]
pub struct LayerCostJs {
    pub energy: Vec<f64>,
    pub area: Vec<f64>,
    pub latency: Vec<f64>,
}

/// A test hook, not API: panics with `message` on one of the engine's worker
/// threads, off the JS thread, to show that the panic reaches JavaScript as
/// a rejected promise carrying the message.
#[napi(js_name = "__panicForTest", ts_return_type = "Promise<void>")]
pub fn panic_for_test(message: String) -> AsyncTask<PanicTask> {
    AsyncTask::new(PanicTask { message })
}

pub struct PanicTask {
    message: String,
}

impl Task for PanicTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        guarded(|| engine::thread_pool(2)?.install(|| panic!("{}", self.message)))
    }

    fn resolve(&mut self, _env: Env, _: ()) -> napi::Result<()> {
        Ok(())
    }
}

#[napi]
pub fn cost_components() -> Vec<String> {
    stoxnet_core::cost::COMPONENTS.iter().map(|s| s.to_string()).collect()
}

/// The components of the `macro` scope (crossbars and their periphery); the
/// `system` scope is all of `costComponents()`.
#[napi]
pub fn macro_components() -> Vec<String> {
    stoxnet_core::cost::COMPONENTS[..stoxnet_core::cost::MACRO].iter().map(|s| s.to_string()).collect()
}

fn tech(t: &TechJs) -> stoxnet_core::Result<stoxnet_core::cost::Tech> {
    let tech = stoxnet_core::cost::Tech {
        read_voltage: t.read_voltage,
        cell_on_resistance: t.cell_on_resistance,
        cell_off_resistance: t.cell_off_resistance,
        read_pulse: t.read_pulse,
        read_settling: t.read_settling,
        cell_area: t.cell_area,
        dac_power: t.dac_power,
        dac_area: t.dac_area,
        adc_architecture: t.adc_architecture.parse()?,
        adc_bits: t.adc_bits.clone(),
        adc_energy: t.adc_energy.clone(),
        adc_area: t.adc_area.clone(),
        adc_cycle: t.adc_cycle,
        adc_sharing: t.adc_sharing,
        sample_hold_energy: t.sample_hold_energy,
        sample_hold_area: t.sample_hold_area,
        sense_amp_energy: t.sense_amp_energy,
        sense_amp_area: t.sense_amp_area,
        sense_amp_latency: t.sense_amp_latency,
        mtj_write_current: t.mtj_write_current,
        mtj_resistance: t.mtj_resistance,
        mtj_read_energy: t.mtj_read_energy,
        mtj_reset_energy: t.mtj_reset_energy,
        mtj_sample_latency: t.mtj_sample_latency,
        mtj_area: t.mtj_area,
        shift_add_energy: t.shift_add_energy,
        shift_add_area: t.shift_add_area,
        buffer_energy: t.buffer_energy,
        digital_mac_energy: t.digital_mac_energy,
        digital_op_energy: t.digital_op_energy,
        digital_rate: t.digital_rate,
        digital_area: t.digital_area,
        pipeline: t.pipeline.parse()?,
    };
    tech.check()?;
    Ok(tech)
}

fn ops_core(o: &LayerOpsJs) -> LayerOps {
    LayerOps {
        images: o.images as u64,
        subarray_reads: o.subarray_reads as u64,
        cell_reads: o.cell_reads as u64,
        dac_drives: o.dac_drives as u64,
        active_rows: o.active_rows as u64,
        drive_sq: o.drive_sq as u128,
        cell_load: o.cell_load as u128,
        conversions: o.conversions as u64,
        mtj_samples: o.mtj_samples as u64,
        shift_adds: o.shift_adds as u64,
        digital_macs: o.digital_macs as u64,
        digital_ops: o.digital_ops as u64,
        ps_min: o.ps_min.map_or(f32::INFINITY, |v| v as f32),
        ps_max: o.ps_max.map_or(f32::NEG_INFINITY, |v| v as f32),
    }
}

/// A network with its crossbar layers programmed.
#[napi]
pub struct NativeSimulator {
    net: Arc<Network>,
    stox: Arc<Stox>,
    resolved: Vec<Option<Resolved>>,
}

#[napi]
impl NativeSimulator {
    /// What calibration decided for each crossbar layer.
    #[napi]
    pub fn resolved(&self) -> Vec<ResolvedJs> {
        self.resolved.iter().enumerate().filter_map(|(i, r)| r.as_ref().map(|r| resolved_js(i, r, &self.stox))).collect()
    }

    /// Cost per node of one image, from op counts summed over the evaluated
    /// images (as `forward` returned them, merged).
    #[napi]
    pub fn cost(&self, ops: Vec<LayerOpsJs>, technology: TechJs) -> napi::Result<Vec<LayerCostJs>> {
        guarded(|| {
            if ops.len() != self.net.nodes.len() {
                stoxnet_core::bail!("cost: {} op records for {} nodes", ops.len(), self.net.nodes.len());
            }
            let ops: Vec<LayerOps> = ops.iter().map(ops_core).collect();
            let costs = stoxnet_core::cost::cost(&self.net, Some(&self.stox), &ops, &tech(&technology)?);
            Ok(costs.into_iter().map(|c| LayerCostJs { energy: c.energy.to_vec(), area: c.area.to_vec(), latency: c.latency.to_vec() }).collect())
        })
    }

    #[napi(ts_return_type = "Promise<ForwardResult>")]
    pub fn forward(&self, images: Float32Array, first: u32, threads: u32) -> AsyncTask<Forward> {
        AsyncTask::new(Forward { net: self.net.clone(), stox: Some(self.stox.clone()), images: images.to_vec(), first: first as usize, threads: threads as usize })
    }
}

fn spec_of(net: &Network) -> NetworkSpec {
    let arr = |v: &Vec<f32>| Float32Array::new(v.clone());
    let dims = |v: &[usize]| v.iter().map(|&d| d as u32).collect::<Vec<u32>>();
    let nodes = net
        .nodes
        .iter()
        .map(|n| {
            let mut s = NodeSpec {
                name: n.name.clone(),
                op: n.op.kind().into(),
                inputs: n.inputs.iter().map(|&i| i as u32).collect(),
                shape: None,
                weight: None,
                bias: None,
                mean: None,
                var: None,
                eps: None,
                stride: None,
                pads: None,
                start: None,
                end: None,
                step: None,
                before: None,
                after: None,
                min: None,
                max: None,
            };
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
                Op::PadChannels { before, after } => {
                    s.before = Some(*before as u32);
                    s.after = Some(*after as u32);
                }
                Op::Linear(l) => {
                    s.shape = Some(dims(&[l.out_features, l.in_features]));
                    s.weight = Some(arr(&l.weight));
                    s.bias = l.bias.as_ref().map(arr);
                }
                Op::Hardtanh { min, max } => {
                    s.min = Some(*min as f64);
                    s.max = Some(*max as f64);
                }
                Op::Relu | Op::Add | Op::GlobalAvgPool | Op::Flatten => {}
            }
            s
        })
        .collect();
    NetworkSpec { input: dims(&[net.input.c, net.input.h, net.input.w]), nodes, output: net.output as u32 }
}

#[napi(object)]
pub struct TrainConfigJs {
    pub epochs: u32,
    pub batch: u32,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// "cosine" or "onecycle"
    pub schedule: String,
    pub warmup_epochs: f64,
    pub label_smoothing: f64,
    pub augment: bool,
    pub seed: f64,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Initialise the weights from the seed (training from scratch).
    pub init: bool,
    /// PS-QAT: crossbar spec per node (null = digital); absent = FP32 training.
    pub layers: Option<Vec<Option<LayerSpecJs>>>,
    /// "ste" (identity inside the clamp range) or "expected" (derivative of the expected transfer curve).
    pub mtj_grad: Option<String>,
    /// Knowledge distillation from a teacher network.
    pub distill: Option<DistillJs>,
    /// PS-QAT: learn each crossbar layer's input clip (LSQ/PACT gradient).
    pub learn_clip: Option<bool>,
    /// Keep an exponential moving average of the model with this decay per step.
    pub ema: Option<f64>,
    /// PS-QAT: each step, every MTJ layer trains at a T drawn from this set.
    pub samples_random: Option<Vec<u32>>,
}

#[napi(object)]
pub struct DistillJs {
    pub teacher: NetworkSpec,
    /// Where the teacher came from (a file path), named in its errors.
    pub source: String,
    /// Weight of the soft (teacher) term, in [0, 1].
    pub alpha: f64,
    pub temperature: f64,
}

/// A crossbar layer's learned state: input clip, per-column parameters and,
/// for an ADC layer, its resolution (a sparse-adc's calibrated bits).
#[napi(object)]
pub struct LearnedJs {
    pub node: u32,
    pub input_clip: f64,
    pub adc_bits: Option<u32>,
    pub params: ColumnParamsJs,
}

#[napi(object)]
pub struct TrainProgress {
    pub loss_sum: f64,
    pub correct: f64,
    pub images: f64,
    pub step: f64,
}

/// A training run: the network, the optimiser state and the training set.
#[napi]
pub struct NativeTrainer {
    trainer: Arc<std::sync::Mutex<Trainer>>,
    data: Arc<Dataset>,
}

use stoxnet_core::train::{
    augment::Normalize,
    qat::{MtjGrad, QatLayer},
    sgd::{Schedule, Sgd},
    Dataset, Distill, TrainConfig, Trainer,
};

/// Starts a training run off the JS thread (initialisation and PS-QAT
/// calibration take seconds). `calibration`: normalised training images for
/// PS-QAT's initial clips, normalisation and readout (may be empty for FP32
/// training); `abort.abort()` stops that calibration. Arguments are checked
/// before the promise is returned.
#[napi(ts_return_type = "Promise<NativeTrainer>")]
pub fn create_trainer(
    spec: NetworkSpec,
    config: TrainConfigJs,
    images: Uint8Array,
    labels: Uint8Array,
    calibration: Float32Array,
    threads: u32,
    abort: Option<&AbortHandle>,
) -> napi::Result<AsyncTask<CreateTrainer>> {
    let setup = guarded(|| {
        let net = network(&spec)?;
        let dims = [net.input.c, net.input.h, net.input.w];
        let len: usize = dims.iter().product();
        if labels.is_empty() || images.len() != labels.len() * len {
            stoxnet_core::bail!("training set: {} image bytes for {} labels, expected {} per image", images.len(), labels.len(), len);
        }
        if let Some(bad) = labels.iter().position(|&l| l as usize >= net.classes()) {
            stoxnet_core::bail!("training set: label {} of image {bad} is not below the network's {} classes", labels[bad], net.classes());
        }
        let schedule = choice("train", "schedule", &config.schedule, &[("cosine", Schedule::Cosine), ("onecycle", Schedule::OneCycle)])?;
        if config.mean.len() != 3 || config.std.len() != 3 {
            stoxnet_core::bail!("train: mean and std need 3 values each");
        }
        if !(config.seed >= 0.0 && config.seed.fract() == 0.0 && config.seed <= 9_007_199_254_740_991.0) {
            stoxnet_core::bail!("seed must be an integer in [0, 2^53), got {}", config.seed);
        }
        let batches = labels.len().div_ceil(config.batch.max(1) as usize);
        let total = batches * config.epochs as usize;
        let cfg = TrainConfig {
            epochs: config.epochs as usize,
            batch: config.batch as usize,
            sgd: Sgd {
                lr: config.lr as f32,
                momentum: config.momentum as f32,
                nesterov: config.nesterov,
                weight_decay: config.weight_decay as f32,
                schedule,
                warmup: (config.warmup_epochs * batches as f64).round() as usize,
                total,
            },
            label_smoothing: config.label_smoothing as f32,
            augment: config.augment,
            seed: config.seed as u64,
            normalize: Normalize { mean: std::array::from_fn(|i| config.mean[i] as f32), std: std::array::from_fn(|i| config.std[i] as f32) },
        };
        if let Some(d) = &config.distill {
            if !((0.0..=1.0).contains(&d.alpha) && d.temperature > 0.0 && d.temperature.is_finite()) {
                stoxnet_core::bail!("train: distillation needs alpha in [0, 1] and a positive temperature, got alpha {} temperature {}", d.alpha, d.temperature);
            }
        }
        let teacher = config
            .distill
            .as_ref()
            .map(|d| {
                network(&d.teacher)
                    .map(|n| (n, Distill { alpha: d.alpha as f32, temperature: d.temperature as f32 }, d.source.clone()))
                    .map_err(|e| stoxnet_core::Error::new(format!("teacher {}: {}", d.source, e.0)))
            })
            .transpose()?;
        let qat = match &config.layers {
            None => None,
            Some(layers) => {
                let grad = choice("train", "mtjGrad", config.mtj_grad.as_deref().unwrap_or("ste"), &[("ste", MtjGrad::Ste), ("expected", MtjGrad::Expected)])?;
                let specs = layers
                    .iter()
                    .enumerate()
                    .map(|(i, l)| l.as_ref().map(|l| layer_spec(&format!("layer '{}'", net.nodes.get(i).map_or("?", |n| n.name.as_str())), l)).transpose())
                    .collect::<stoxnet_core::Result<Vec<_>>>()?;
                Some((specs, grad, config.learn_clip.unwrap_or(false)))
            }
        };
        Ok(CreateTrainer {
            net: Some(net),
            teacher,
            cfg,
            init: config.init,
            qat,
            ema: config.ema.map(|d| d as f32),
            samples_random: config.samples_random.clone(),
            calibration: calibration.to_vec(),
            data: Arc::new(Dataset { images: images.to_vec(), labels: labels.to_vec(), dims }),
            threads: threads as usize,
            cancel: abort.map(|a| a.cancel.clone()).unwrap_or_default(),
        })
    })?;
    Ok(AsyncTask::new(setup))
}

pub struct CreateTrainer {
    net: Option<Network>,
    teacher: Option<(Network, Distill, String)>,
    cfg: TrainConfig,
    init: bool,
    qat: Option<(Vec<Option<LayerSpec>>, MtjGrad, bool)>,
    ema: Option<f32>,
    samples_random: Option<Vec<u32>>,
    calibration: Vec<f32>,
    data: Arc<Dataset>,
    threads: usize,
    cancel: engine::Cancel,
}

impl Task for CreateTrainer {
    type Output = Trainer;
    type JsValue = NativeTrainer;

    fn compute(&mut self) -> napi::Result<Trainer> {
        guarded(|| {
            let mut net = self.net.take().ok_or_else(|| stoxnet_core::Error::new("trainer already created"))?;
            if self.init {
                stoxnet_core::train::init(&mut net, self.cfg.seed);
            }
            let qat = match &self.qat {
                None => Vec::new(),
                Some((specs, grad, learn_clip)) => {
                    let pool = engine::thread_pool(self.threads)?;
                    let (stox, _) = pool.install(|| calibrate::prepare(&net, specs, self.cfg.seed, &self.calibration, &self.cancel))?;
                    let layer = |i: usize, config: &LayerConfig| {
                        let q = QatLayer::new(&net.nodes[i], config.clone(), *grad)?;
                        Ok(if *learn_clip { q.with_learned_clip(net.shapes[net.nodes[i].inputs[0]].len()) } else { q })
                    };
                    stox.layers.iter().enumerate().map(|(i, l)| l.as_ref().map(|l| layer(i, &l.config)).transpose()).collect::<stoxnet_core::Result<Vec<_>>>()?
                }
            };
            let mut trainer = Trainer::new(net, self.cfg.clone())?.with_qat(qat)?;
            if let Some(choices) = self.samples_random.take() {
                trainer = trainer.with_random_samples(choices)?;
            }
            if let Some(decay) = self.ema {
                trainer = trainer.with_ema(decay)?;
            }
            match self.teacher.take() {
                Some((t, d, source)) => trainer.with_teacher(t, d).map_err(|e| stoxnet_core::Error::new(format!("{source}: {}", e.0))),
                None => Ok(trainer),
            }
        })
    }

    fn resolve(&mut self, _env: Env, trainer: Trainer) -> napi::Result<NativeTrainer> {
        Ok(NativeTrainer { trainer: Arc::new(std::sync::Mutex::new(trainer)), data: self.data.clone() })
    }
}

#[napi]
impl NativeTrainer {
    #[napi(getter)]
    pub fn batches_per_epoch(&self) -> u32 {
        self.trainer.lock().map(|t| t.batches_per_epoch(self.data.len()) as u32).unwrap_or(0)
    }

    /// Trains batches `from..to` of `epoch` off the JS thread.
    #[napi(ts_return_type = "Promise<TrainProgress>")]
    pub fn train_batches(&self, epoch: u32, from: u32, to: u32, threads: u32) -> AsyncTask<TrainTask> {
        AsyncTask::new(TrainTask { trainer: self.trainer.clone(), data: self.data.clone(), epoch: epoch as usize, from: from as usize, to: to as usize, threads: threads as usize })
    }

    /// The learning rate of the next step.
    #[napi]
    pub fn learning_rate(&self) -> napi::Result<f64> {
        guarded(|| {
            let t = self.trainer.lock().map_err(|_| stoxnet_core::Error::new("trainer is poisoned by an earlier panic"))?;
            Ok(t.config.sgd.lr_at(t.step) as f64)
        })
    }

    /// The network the run produces (its EMA if it keeps one); eval-mode
    /// BatchNorm uses the running statistics.
    #[napi]
    pub fn network(&self) -> napi::Result<NetworkSpec> {
        guarded(|| {
            let mut t = self.trainer.lock().map_err(|_| stoxnet_core::Error::new("trainer is poisoned by an earlier panic"))?;
            Ok(spec_of(&t.model().0))
        })
    }

    /// The learned state of each PS-QAT crossbar layer of that network.
    #[napi]
    pub fn learned(&self) -> napi::Result<Vec<LearnedJs>> {
        guarded(|| {
            let mut t = self.trainer.lock().map_err(|_| stoxnet_core::Error::new("trainer is poisoned by an earlier panic"))?;
            let arr = |v: &Vec<f32>| (!v.is_empty()).then(|| Float32Array::new(v.clone()));
            Ok(t.model()
                .1
                .iter()
                .enumerate()
                .filter_map(|(i, l)| {
                    l.as_ref().map(|l| {
                        let p = &l.config.params;
                        LearnedJs {
                            node: i as u32,
                            input_clip: l.config.input_clip as f64,
                            adc_bits: match l.config.converter {
                                Converter::Adc { bits } => Some(bits),
                                _ => None,
                            },
                            params: ColumnParamsJs {
                                adc_lo: arr(&p.adc_lo),
                                adc_step: arr(&p.adc_step),
                                norm_scale: arr(&p.norm_scale),
                                norm_shift: arr(&p.norm_shift),
                                readout_gain: arr(&p.readout_gain),
                                readout_offset: arr(&p.readout_offset),
                            },
                        }
                    })
                })
                .collect())
        })
    }

    /// Parameters, BatchNorm statistics, momentum and the EMA (if kept), for a checkpoint.
    #[napi]
    pub fn state(&self) -> napi::Result<TrainState> {
        guarded(|| {
            let mut t = self.trainer.lock().map_err(|_| stoxnet_core::Error::new("trainer is poisoned by an earlier panic"))?;
            Ok(TrainState { values: Float32Array::new(t.state()), step: t.step as f64 })
        })
    }

    #[napi]
    pub fn load_state(&self, state: TrainState) -> napi::Result<()> {
        guarded(|| {
            let mut t = self.trainer.lock().map_err(|_| stoxnet_core::Error::new("trainer is poisoned by an earlier panic"))?;
            t.load_state(&state.values, state.step as usize)
        })
    }
}

#[napi(object)]
pub struct TrainState {
    pub values: Float32Array,
    pub step: f64,
}

pub struct TrainTask {
    trainer: Arc<std::sync::Mutex<Trainer>>,
    data: Arc<Dataset>,
    epoch: usize,
    from: usize,
    to: usize,
    threads: usize,
}

impl Task for TrainTask {
    type Output = (stoxnet_core::train::Progress, usize);
    type JsValue = TrainProgress;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded(|| {
            let mut t = self.trainer.lock().map_err(|_| stoxnet_core::Error::new("trainer is poisoned by an earlier panic"))?;
            let pool = engine::thread_pool(self.threads)?;
            let trainer: &mut Trainer = &mut t;
            let p = pool.install(|| trainer.train_batches(&self.data, self.epoch, self.from, self.to))?;
            Ok((p, t.step))
        })
    }

    fn resolve(&mut self, _env: Env, (p, step): Self::Output) -> napi::Result<TrainProgress> {
        Ok(TrainProgress { loss_sum: p.loss_sum, correct: p.correct as f64, images: p.images as f64, step: step as f64 })
    }
}
