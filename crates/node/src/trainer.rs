//! Training runs: the run's settings converted for the core (which checks
//! and assembles them), batches trained off the JS thread, the model's
//! evaluation engine built on the Rust side, and checkpoint state.

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stoxnet_core::config::LayerSpec;
use stoxnet_core::engine;
use stoxnet_core::error::Error;
use stoxnet_core::graph::Network;
use stoxnet_core::rng::seed_from_f64;
use stoxnet_core::simulator::Simulator;
use stoxnet_core::train::augment::Augment;
use stoxnet_core::train::qat::MtjGrad;
use stoxnet_core::train::setup::{QatOptions, Run, RunOptions, Teacher};
use stoxnet_core::train::sgd::Schedule;
use stoxnet_core::train::{Dataset, Progress, Trainer};

use crate::guard::{cancel_of, guarded, lock, AbortHandle};
use crate::layer::{learned_js, LayerSpecJs, LearnedJs};
use crate::network::NetworkSpec;
use crate::simulator::NativeSimulator;

#[napi(string_enum = "kebab-case")]
pub enum ScheduleJs {
    Cosine,
    Onecycle,
}

#[napi(string_enum = "kebab-case")]
pub enum MtjGradJs {
    /// Identity inside the clamp range (the authors').
    Ste,
    /// The derivative of the expected transfer curve.
    Expected,
}

#[napi(object)]
pub struct TrainConfigJs {
    pub epochs: u32,
    pub batch: u32,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub schedule: ScheduleJs,
    pub warmup_epochs: f64,
    pub label_smoothing: f64,
    pub augment: AugmentJs,
    pub seed: f64,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Initialise the weights from the seed (training from scratch).
    pub init: bool,
    /// PS-QAT; absent = FP32 training.
    pub qat: Option<QatJs>,
    /// Knowledge distillation from a teacher network.
    pub distill: Option<DistillJs>,
    /// Keep an exponential moving average of the model with this decay per step.
    pub ema: Option<f64>,
    /// PS-QAT: each step, every MTJ layer trains at a T drawn from this set.
    pub samples_random: Option<Vec<u32>>,
}

/// Random translation by up to `pad` pixels each way, and a horizontal flip if `flip`.
#[napi(object)]
pub struct AugmentJs {
    pub pad: u32,
    pub flip: bool,
}

#[napi(object)]
pub struct QatJs {
    /// Crossbar spec per node (null = digital).
    pub layers: Vec<Option<LayerSpecJs>>,
    pub mtj_grad: MtjGradJs,
    /// Learn each crossbar layer's input clip (LSQ/PACT gradient).
    pub learn_clip: bool,
}

#[napi(object)]
pub struct DistillJs {
    pub teacher: NetworkSpec,
    /// Where the teacher came from (a file path), named in its errors.
    pub source: String,
    /// Weight of the soft (teacher) term.
    pub alpha: f64,
    pub temperature: f64,
}

#[napi(object)]
pub struct TrainProgress {
    pub loss_sum: f64,
    pub correct: f64,
    pub images: f64,
    pub step: f64,
}

#[napi(object)]
pub struct TrainState {
    pub values: Float32Array,
    pub step: f64,
}

fn run(spec: &NetworkSpec, c: &TrainConfigJs, data: &Dataset) -> stoxnet_core::Result<Run> {
    let options = RunOptions {
        epochs: c.epochs as usize,
        batch: c.batch as usize,
        lr: c.lr as f32,
        momentum: c.momentum as f32,
        nesterov: c.nesterov,
        weight_decay: c.weight_decay as f32,
        schedule: match c.schedule {
            ScheduleJs::Cosine => Schedule::Cosine,
            ScheduleJs::Onecycle => Schedule::OneCycle,
        },
        warmup_epochs: c.warmup_epochs,
        label_smoothing: c.label_smoothing as f32,
        augment: Augment { pad: c.augment.pad as usize, flip: c.augment.flip },
        seed: seed_from_f64(c.seed)?,
        mean: c.mean.iter().map(|&v| v as f32).collect(),
        std: c.std.iter().map(|&v| v as f32).collect(),
        init: c.init,
    };
    let qat = c.qat.as_ref().map(|q| QatOptions {
        layers: q.layers.iter().map(|l| l.as_ref().map(LayerSpec::from)).collect(),
        grad: match q.mtj_grad {
            MtjGradJs::Ste => MtjGrad::Ste,
            MtjGradJs::Expected => MtjGrad::Expected,
        },
        learn_clip: q.learn_clip,
    });
    let teacher = match &c.distill {
        None => None,
        Some(d) => Some(Teacher {
            net: Network::try_from(&d.teacher).map_err(|e| Error::new(format!("teacher {}: {}", d.source, e.0)))?,
            source: d.source.clone(),
            alpha: d.alpha as f32,
            temperature: d.temperature as f32,
        }),
    };
    Run::new(Network::try_from(spec)?, options, data, qat, teacher, c.ema.map(|d| d as f32), c.samples_random.clone())
}

/// Starts a training run off the JS thread (initialisation and PS-QAT
/// calibration take seconds). `images`/`labels`: the training set, CHW
/// bytes; `calibration`: normalised training images for PS-QAT's initial
/// clips, normalisation and readout (may be empty for FP32 training);
/// `abort.abort()` stops that calibration. The settings are checked before
/// the promise is returned.
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
    let (run, data) = guarded(|| {
        let [c, h, w] = spec.input[..].try_into().map_err(|_| Error::new(format!("network input must be [channels, height, width], got {} dims", spec.input.len())))?;
        let classes = Network::try_from(&spec)?.classes();
        let data = Dataset::new(images.to_vec(), labels.to_vec(), [c as usize, h as usize, w as usize], classes)?;
        Ok((run(&spec, &config, &data)?, data))
    })?;
    Ok(AsyncTask::new(CreateTrainer { run: Some(run), data: Arc::new(data), calibration: calibration.to_vec(), threads: threads as usize, cancel: cancel_of(abort) }))
}

pub struct CreateTrainer {
    run: Option<Run>,
    data: Arc<Dataset>,
    calibration: Vec<f32>,
    threads: usize,
    cancel: engine::Cancel,
}

impl Task for CreateTrainer {
    type Output = Trainer;
    type JsValue = NativeTrainer;

    fn compute(&mut self) -> napi::Result<Trainer> {
        guarded(|| {
            let run = self.run.take().ok_or_else(|| Error::new("trainer already created"))?;
            engine::thread_pool(self.threads)?.install(|| run.build(&self.calibration, &self.cancel))
        })
    }

    fn resolve(&mut self, _env: Env, trainer: Trainer) -> napi::Result<NativeTrainer> {
        Ok(NativeTrainer { trainer: Arc::new(Mutex::new(trainer)), data: self.data.clone() })
    }
}

/// A training run: the network, the optimiser state and the training set.
#[napi]
pub struct NativeTrainer {
    trainer: Arc<Mutex<Trainer>>,
    data: Arc<Dataset>,
}

const TRAINER: &str = "trainer";

#[napi]
impl NativeTrainer {
    #[napi(getter)]
    pub fn batches_per_epoch(&self) -> napi::Result<u32> {
        guarded(|| Ok(lock(&self.trainer, TRAINER)?.batches_per_epoch(self.data.len()) as u32))
    }

    /// Floating-point operations of one image's training step in its matrix products.
    #[napi(getter)]
    pub fn flops_per_image(&self) -> napi::Result<f64> {
        guarded(|| Ok(lock(&self.trainer, TRAINER)?.flops_per_image() as f64))
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
            let t = lock(&self.trainer, TRAINER)?;
            Ok(t.config.sgd.lr_at(t.step) as f64)
        })
    }

    /// The model the run produces (its EMA if it keeps one), to export;
    /// eval-mode BatchNorm uses the running statistics.
    #[napi]
    pub fn network(&self) -> napi::Result<NetworkSpec> {
        guarded(|| Ok(NetworkSpec::from(&lock(&self.trainer, TRAINER)?.model().0)))
    }

    /// The learned state of each PS-QAT crossbar layer of that model.
    #[napi]
    pub fn learned(&self) -> napi::Result<Vec<LearnedJs>> {
        guarded(|| Ok(lock(&self.trainer, TRAINER)?.model().1.iter().enumerate().filter_map(|(i, l)| Some(learned_js(i, &l.as_ref()?.config))).collect()))
    }

    /// That model ready to classify, built here from the trainer's state
    /// (no weights pass through JavaScript); `seed` keys its random draws.
    #[napi]
    pub fn evaluator(&self, seed: f64) -> napi::Result<NativeSimulator> {
        guarded(|| {
            let seed = seed_from_f64(seed)?;
            let (net, crossbars) = lock(&self.trainer, TRAINER)?.evaluator(seed)?;
            Ok(NativeSimulator::new(Simulator::new(Arc::new(net), crossbars), Vec::new()))
        })
    }

    /// Parameters, BatchNorm statistics, momentum and the EMA (if kept), for a checkpoint.
    #[napi]
    pub fn state(&self) -> napi::Result<TrainState> {
        guarded(|| {
            let mut t = lock(&self.trainer, TRAINER)?;
            Ok(TrainState { values: Float32Array::new(t.state()), step: t.step as f64 })
        })
    }

    #[napi]
    pub fn load_state(&self, state: TrainState) -> napi::Result<()> {
        guarded(|| lock(&self.trainer, TRAINER)?.load_state(&state.values, state.step as usize))
    }
}

pub struct TrainTask {
    trainer: Arc<Mutex<Trainer>>,
    data: Arc<Dataset>,
    epoch: usize,
    from: usize,
    to: usize,
    threads: usize,
}

impl Task for TrainTask {
    type Output = (Progress, usize);
    type JsValue = TrainProgress;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded(|| {
            let mut t = lock(&self.trainer, TRAINER)?;
            let trainer: &mut Trainer = &mut t;
            let p = engine::thread_pool(self.threads)?.install(|| trainer.train_batches(&self.data, self.epoch, self.from, self.to))?;
            Ok((p, trainer.step))
        })
    }

    fn resolve(&mut self, _env: Env, (p, step): Self::Output) -> napi::Result<TrainProgress> {
        Ok(TrainProgress { loss_sum: p.loss_sum, correct: p.correct as f64, images: p.images as f64, step: step as f64 })
    }
}
