//! Networks and their simulations: programming crossbar layers (calibrating
//! off the JS thread), classifying batches, and the counts and costs the
//! simulation keeps on the Rust side.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stoxnet_core::calibrate::{self, Resolved};
use stoxnet_core::config::LayerSpec;
use stoxnet_core::engine::{self, Crossbars};
use stoxnet_core::graph::Network;
use stoxnet_core::rng::seed_from_f64;
use stoxnet_core::simulator::Simulator;

use crate::guard::{cancel_of, guarded, AbortHandle};
use crate::layer::{resolved_js, LayerSpecJs, OpCountsJs, ResolvedJs};
use crate::network::NetworkSpec;
use crate::tech::{tech, LayerCostJs};

#[napi]
pub struct NativeNetwork {
    net: Arc<Network>,
}

#[napi]
impl NativeNetwork {
    #[napi(constructor)]
    pub fn new(spec: NetworkSpec) -> napi::Result<Self> {
        guarded(|| Network::try_from(&spec)).map(|net| NativeNetwork { net: Arc::new(net) })
    }

    #[napi(getter)]
    pub fn classes(&self) -> u32 {
        self.net.classes() as u32
    }

    /// Whether programming these layers needs calibration images.
    #[napi]
    pub fn needs_calibration(&self, layers: Vec<Option<LayerSpecJs>>) -> bool {
        calibrate::needs_images(&layers.iter().map(|l| l.as_ref().map(LayerSpec::from)).collect::<Vec<_>>())
    }

    /// The network run digitally in FP32.
    #[napi]
    pub fn digital(&self) -> NativeSimulator {
        NativeSimulator::new(Simulator::new(self.net.clone(), None), Vec::new())
    }

    /// Programs the crossbar layers (`layers[i]` for node i, null = digital),
    /// calibrating on `calibration` images what the specs leave open.
    /// `abort.abort()` stops the calibration between images.
    #[napi(ts_return_type = "Promise<NativeSimulator>")]
    pub fn simulator(&self, layers: Vec<Option<LayerSpecJs>>, seed: f64, calibration: Float32Array, threads: u32, abort: Option<&AbortHandle>) -> napi::Result<AsyncTask<Prepare>> {
        let seed = guarded(|| seed_from_f64(seed))?;
        Ok(AsyncTask::new(Prepare {
            net: self.net.clone(),
            specs: layers.iter().map(|l| l.as_ref().map(LayerSpec::from)).collect(),
            seed,
            images: calibration.to_vec(),
            threads: threads as usize,
            cancel: cancel_of(abort),
        }))
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
    type Output = (Crossbars, Vec<Option<Resolved>>);
    type JsValue = NativeSimulator;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded(|| {
            let pool = engine::thread_pool(self.threads)?;
            pool.install(|| calibrate::prepare(&self.net, &self.specs, self.seed, &self.images, &self.cancel))
        })
    }

    fn resolve(&mut self, _env: Env, (crossbars, resolved): Self::Output) -> napi::Result<NativeSimulator> {
        Ok(NativeSimulator::new(Simulator::new(self.net.clone(), Some(crossbars)), resolved))
    }
}

/// A network ready to classify (crossbar layers programmed, or digital),
/// keeping the operation counts of every image it classified.
#[napi]
pub struct NativeSimulator {
    sim: Arc<Simulator>,
    resolved: Vec<Option<Resolved>>,
}

impl NativeSimulator {
    pub fn new(sim: Simulator, resolved: Vec<Option<Resolved>>) -> NativeSimulator {
        NativeSimulator { sim: Arc::new(sim), resolved }
    }
}

#[napi]
impl NativeSimulator {
    #[napi(getter)]
    pub fn classes(&self) -> u32 {
        self.sim.net.classes() as u32
    }

    /// What calibration decided for each crossbar layer.
    #[napi]
    pub fn resolved(&self) -> Vec<ResolvedJs> {
        let layer = |i: usize| self.sim.crossbars.as_ref().and_then(|c| c.layers[i].as_ref());
        self.resolved.iter().enumerate().filter_map(|(i, r)| Some(resolved_js(i, r.as_ref()?, layer(i)?))).collect()
    }

    /// Logits (`n × classes`) of a batch of images (`n × c × h × w` floats)
    /// numbered from `first`, on `threads` workers (0 = one per core), off
    /// the JS thread; their operations add to `counts()`.
    #[napi(ts_return_type = "Promise<Float32Array>")]
    pub fn forward(&self, images: Float32Array, first: u32, threads: u32) -> AsyncTask<Forward> {
        AsyncTask::new(Forward { sim: self.sim.clone(), images: images.to_vec(), first: first as usize, threads: threads as usize })
    }

    /// Operation counts per node, summed over every image classified.
    #[napi]
    pub fn counts(&self) -> Vec<OpCountsJs> {
        self.sim.counts().iter().map(OpCountsJs::from).collect()
    }

    /// Cost per node of one image, averaged over the images classified;
    /// `technology`: canonical values by field name (`techFields()`).
    #[napi(ts_args_type = "technology: Record<string, number | number[] | string>")]
    pub fn cost(&self, technology: serde_json::Value) -> napi::Result<Vec<LayerCostJs>> {
        guarded(|| Ok(self.sim.cost(&tech(technology)?)?.iter().map(LayerCostJs::from).collect()))
    }
}

pub struct Forward {
    sim: Arc<Simulator>,
    images: Vec<f32>,
    first: usize,
    threads: usize,
}

impl Task for Forward {
    type Output = Vec<f32>;
    type JsValue = Float32Array;

    fn compute(&mut self) -> napi::Result<Vec<f32>> {
        guarded(|| engine::thread_pool(self.threads)?.install(|| self.sim.forward(&self.images, self.first)))
    }

    fn resolve(&mut self, _env: Env, logits: Vec<f32>) -> napi::Result<Float32Array> {
        Ok(Float32Array::new(logits))
    }
}
