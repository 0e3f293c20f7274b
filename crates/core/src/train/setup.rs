//! A training run as the user describes it (optimiser settings in epochs,
//! the training set, PS-QAT layer specs, distillation, EMA), validated here
//! once and assembled into a `Trainer`: the learning-rate schedule in steps,
//! the crossbar layers calibrated on training images, learned clips sized to
//! their layers.

use super::augment::{Augment, Normalize};
use super::qat::{MtjGrad, QatLayer};
use super::sgd::{Schedule, Sgd};
use super::{Dataset, Distill, TrainConfig, Trainer};
use crate::bail;
use crate::calibrate;
use crate::config::LayerSpec;
use crate::engine::Cancel;
use crate::error::{Error, Result};
use crate::graph::Network;

/// The optimiser and data settings of a run, as given.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    pub schedule: Schedule,
    /// Warm-up length in epochs (fractions allowed).
    pub warmup_epochs: f64,
    pub label_smoothing: f32,
    pub augment: Augment,
    pub seed: u64,
    /// Per input channel.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Initialise the weights from the seed (training from scratch).
    pub init: bool,
}

/// PS-QAT: the crossbar layer per node (`None` = digital) and how it learns.
#[derive(Debug, Clone, PartialEq)]
pub struct QatOptions {
    pub layers: Vec<Option<LayerSpec>>,
    pub grad: MtjGrad,
    pub learn_clip: bool,
}

/// A distillation teacher and where it came from (named in its errors).
pub struct Teacher {
    pub net: Network,
    pub source: String,
    pub alpha: f32,
    pub temperature: f32,
}

/// A validated run, ready to build its trainer (which calibrates, and so
/// takes seconds).
pub struct Run {
    net: Network,
    config: TrainConfig,
    init: bool,
    qat: Option<QatOptions>,
    teacher: Option<(Network, Distill, String)>,
    ema: Option<f32>,
    samples_random: Option<Vec<u32>>,
}

impl Dataset {
    /// A training set of `labels.len()` CHW byte images of `dims`, whose
    /// labels must all be below `classes`.
    pub fn new(images: Vec<u8>, labels: Vec<u8>, dims: [usize; 3], classes: usize) -> Result<Dataset> {
        let len: usize = dims.iter().product();
        if labels.is_empty() || images.len() != labels.len() * len {
            bail!("training set: {} image bytes for {} labels, expected {} per image", images.len(), labels.len(), len);
        }
        if let Some(bad) = labels.iter().position(|&l| l as usize >= classes) {
            bail!("training set: label {} of image {bad} is not below the network's {classes} classes", labels[bad]);
        }
        Ok(Dataset { images, labels, dims })
    }
}

impl Run {
    /// Checks every setting against the network and the training set.
    /// `samples_random`: each step, every MTJ layer trains at a T drawn from
    /// this set.
    pub fn new(net: Network, o: RunOptions, data: &Dataset, qat: Option<QatOptions>, teacher: Option<Teacher>, ema: Option<f32>, samples_random: Option<Vec<u32>>) -> Result<Run> {
        if [net.input.c, net.input.h, net.input.w] != data.dims {
            bail!("training set: images are {:?} (channels, height, width), the network takes {:?}", data.dims, [net.input.c, net.input.h, net.input.w]);
        }
        let c = net.input.c;
        if o.mean.len() != c || o.std.len() != c {
            bail!("train: mean and std need {c} values each (one per input channel), got {} and {}", o.mean.len(), o.std.len());
        }
        if o.augment.pad >= net.input.h.min(net.input.w) {
            bail!("train: augmentation padding {} must be below the image's {}x{} pixels", o.augment.pad, net.input.h, net.input.w);
        }
        if o.std.iter().any(|&s| !(s > 0.0 && s.is_finite())) || o.mean.iter().any(|m| !m.is_finite()) {
            bail!("train: mean must be finite and std positive, got mean {:?} std {:?}", o.mean, o.std);
        }
        if !(o.warmup_epochs >= 0.0 && o.warmup_epochs.is_finite()) {
            bail!("train: warm-up epochs must be >= 0, got {}", o.warmup_epochs);
        }
        if let Some(t) = &teacher {
            if !((0.0..=1.0).contains(&t.alpha) && t.temperature > 0.0 && t.temperature.is_finite()) {
                bail!("train: distillation needs alpha in [0, 1] and a positive temperature, got alpha {} temperature {}", t.alpha, t.temperature);
            }
        }
        if let Some(q) = &qat {
            if q.layers.len() != net.nodes.len() {
                bail!("PS-QAT layer list covers {} nodes, the network has {}", q.layers.len(), net.nodes.len());
            }
        }
        let batches = data.len().div_ceil(o.batch.max(1));
        let config = TrainConfig {
            epochs: o.epochs,
            batch: o.batch,
            sgd: Sgd {
                lr: o.lr,
                momentum: o.momentum,
                nesterov: o.nesterov,
                weight_decay: o.weight_decay,
                schedule: o.schedule,
                warmup: (o.warmup_epochs * batches as f64).round() as usize,
                total: batches * o.epochs,
            },
            label_smoothing: o.label_smoothing,
            augment: o.augment,
            seed: o.seed,
            normalize: Normalize { mean: o.mean, std: o.std },
        };
        let teacher = teacher.map(|t| (t.net, Distill { alpha: t.alpha, temperature: t.temperature }, t.source));
        Ok(Run { net, config, init: o.init, qat, teacher, ema, samples_random })
    }

    /// The trainer: initialises the weights if asked, calibrates the PS-QAT
    /// layers on `calibration` (normalised training images; `cancel` stops
    /// it), then adds random T, the EMA and the teacher.
    pub fn build(self, calibration: &[f32], cancel: &Cancel) -> Result<Trainer> {
        let Run { mut net, config, init, qat, teacher, ema, samples_random } = self;
        if init {
            super::init(&mut net, config.seed);
        }
        let layers = match qat {
            None => Vec::new(),
            Some(q) => {
                let (crossbars, _) = calibrate::prepare(&net, &q.layers, config.seed, calibration, cancel)?;
                let layer = |i: usize, l: &crate::crossbar::CrossbarLayer| {
                    let layer = QatLayer::new(&net.nodes[i], l.config.clone(), q.grad)?;
                    Ok(if q.learn_clip { layer.with_learned_clip(net.shapes[net.nodes[i].inputs[0]].len()) } else { layer })
                };
                crossbars.layers.iter().enumerate().map(|(i, l)| l.as_ref().map(|l| layer(i, l)).transpose()).collect::<Result<Vec<_>>>()?
            }
        };
        let mut trainer = Trainer::new(net, config)?.with_qat(layers)?;
        if let Some(choices) = samples_random {
            trainer = trainer.with_random_samples(choices)?;
        }
        if let Some(decay) = ema {
            trainer = trainer.with_ema(decay)?;
        }
        match teacher {
            Some((t, d, source)) => trainer.with_teacher(t, d).map_err(|e| Error::new(format!("{source}: {}", e.0))),
            None => Ok(trainer),
        }
    }
}
