//! Training: batch forward/backward (backprop.rs), SGD with schedules
//! (sgd.rs), seeded shuffling and augmentation (augment.rs), softmax
//! cross-entropy, weight initialisation, and the trainer state that
//! checkpoints save and resume bit for bit.

pub mod augment;
pub mod backprop;
pub mod qat;
pub mod setup;
pub mod sgd;

use rand_core::RngCore;
use rayon::prelude::*;

use crate::bail;
use crate::converter::Converter;
use crate::engine::Crossbars;
use crate::error::Result;
use crate::graph::{Network, Op};
use crate::{pmath, rng};
use augment::{Augment, Normalize};
use sgd::Sgd;

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub sgd: Sgd,
    pub label_smoothing: f32,
    pub augment: Augment,
    pub seed: u64,
    pub normalize: Normalize,
}

/// The training set: CHW bytes and labels.
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub dims: [usize; 3],
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Totals over some batches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub loss_sum: f64,
    pub correct: u64,
    pub images: u64,
}

/// Kaiming-normal (fan-in, ReLU gain) weights, zero biases, BatchNorm at
/// identity — drawn from the seed (domain INIT, node index).
pub fn init(net: &mut Network, seed: u64) {
    for (i, node) in net.nodes.iter_mut().enumerate() {
        let mut r = rng::stream(seed, &[augment::INIT, i as u64]);
        let mut normal = || {
            let u1 = 1.0 - rng::unit24(r.next_u32());
            let u2 = rng::unit24(r.next_u32());
            pmath::gaussian(u1, u2)
        };
        match &mut node.op {
            Op::Conv(c) => {
                let std = (2.0 / (c.in_channels * c.kernel[0] * c.kernel[1]) as f32).sqrt();
                c.weight.iter_mut().for_each(|w| *w = std * normal());
                if let Some(b) = &mut c.bias {
                    b.fill(0.0);
                }
            }
            Op::Linear(l) => {
                let std = (2.0 / l.in_features as f32).sqrt();
                l.weight.iter_mut().for_each(|w| *w = std * normal());
                if let Some(b) = &mut l.bias {
                    b.fill(0.0);
                }
            }
            Op::BatchNorm(b) => {
                b.scale.fill(1.0);
                b.bias.fill(0.0);
                b.mean.fill(0.0);
                b.var.fill(1.0);
            }
            _ => {}
        }
    }
}

/// Distillation (Hinton et al. 2015): the loss is
/// (1 − α)·CE(labels) + α·τ²·KL(softmax(teacher/τ) ‖ softmax(student/τ)),
/// the τ² keeping the soft term's gradient scale independent of τ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distill {
    pub alpha: f32,
    pub temperature: f32,
}

fn softmax(row: &[f32], inv_t: f64, out: &mut [f64]) {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    out.iter_mut().zip(row).for_each(|(o, &v)| *o = ((v - max) as f64 * inv_t).exp());
    let sum: f64 = out.iter().sum();
    out.iter_mut().for_each(|o| *o /= sum);
}

/// Mean softmax cross-entropy with label smoothing, and distillation when a
/// teacher's logits are given; returns (loss sum, correct, dlogits of the
/// mean loss).
pub fn softmax_cross_entropy(logits: &[f32], labels: &[u8], classes: usize, smoothing: f32, teacher: Option<(&[f32], Distill)>) -> (f64, u64, Vec<f32>) {
    let n = labels.len();
    let mut grad = vec![0f32; logits.len()];
    let (mut loss, mut correct) = (0f64, 0u64);
    let (alpha, t) = teacher.map_or((0.0, 1.0), |(_, d)| (d.alpha as f64, d.temperature as f64));
    let (mut p, mut ps, mut pt) = (vec![0f64; classes], vec![0f64; classes], vec![0f64; classes]);
    for (i, &label) in labels.iter().enumerate() {
        let row = &logits[i * classes..(i + 1) * classes];
        if row.iter().any(|v| !v.is_finite()) {
            loss = f64::NAN;
        }
        let arg = (0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        correct += (arg == label as usize) as u64;
        softmax(row, 1.0, &mut p);
        for j in 0..classes {
            let q = (1.0 - smoothing as f64) * (j == label as usize) as u8 as f64 + smoothing as f64 / classes as f64;
            loss -= (1.0 - alpha) * q * p[j].max(1e-300).ln();
            grad[i * classes + j] = ((1.0 - alpha) * (p[j] - q) / n as f64) as f32;
        }
        if let Some((tl, _)) = teacher {
            softmax(row, 1.0 / t, &mut ps);
            softmax(&tl[i * classes..(i + 1) * classes], 1.0 / t, &mut pt);
            for j in 0..classes {
                loss += alpha * t * t * pt[j] * (pt[j].max(1e-300).ln() - ps[j].max(1e-300).ln());
                grad[i * classes + j] += (alpha * t * (ps[j] - pt[j]) / n as f64) as f32;
            }
        }
    }
    (loss, correct, grad)
}

pub struct Trainer {
    pub net: Network,
    pub config: TrainConfig,
    /// Momentum buffers per node and parameter.
    velocity: Vec<Vec<Vec<f32>>>,
    /// Crossbar layers under PS-QAT, by node (empty: FP32 training).
    pub qat: Vec<Option<qat::QatLayer>>,
    /// Optimiser steps taken so far.
    pub step: usize,
    /// The distillation teacher (eval-mode BatchNorm, never updated) and how
    /// its logits enter the loss.
    teacher: Option<(Network, Distill)>,
    ema: Option<Ema>,
    /// Sampling-length-aware training: each step, every MTJ layer draws its T
    /// from this set (empty: the layers keep their configured T).
    samples_choice: Vec<u32>,
}

impl Trainer {
    pub fn new(net: Network, config: TrainConfig) -> Result<Trainer> {
        if config.batch < 2 {
            bail!("batch must be at least 2 (BatchNorm needs batch statistics), got {}", config.batch);
        }
        let mut net = net;
        let velocity = net.nodes.iter_mut().map(|n| backprop::params_mut(&mut n.op).iter().map(|p| vec![0f32; p.len()]).collect()).collect();
        Ok(Trainer { net, config, velocity, qat: Vec::new(), step: 0, teacher: None, ema: None, samples_choice: Vec::new() })
    }

    /// Trains these crossbar layers with PS-QAT (`layers[i]` for node i).
    pub fn with_qat(mut self, layers: Vec<Option<qat::QatLayer>>) -> Result<Trainer> {
        if !layers.is_empty() && layers.len() != self.net.nodes.len() {
            bail!("PS-QAT layer list covers {} nodes, the network has {}", layers.len(), self.net.nodes.len());
        }
        if self.ema.is_some() {
            bail!("PS-QAT layers must be set before the EMA, which averages their learned state too");
        }
        self.qat = layers;
        Ok(self)
    }

    /// Distils from `teacher`, which takes the same input and gives the same classes.
    pub fn with_teacher(mut self, teacher: Network, distill: Distill) -> Result<Trainer> {
        let (a, b) = (&teacher.input, &self.net.input);
        if (a.c, a.h, a.w) != (b.c, b.h, b.w) || teacher.classes() != self.net.classes() {
            bail!("teacher: takes {}x{}x{} inputs and gives {} classes; the trained network takes {}x{}x{} and gives {}", a.c, a.h, a.w, teacher.classes(), b.c, b.h, b.w, self.net.classes());
        }
        self.teacher = Some((teacher, distill));
        Ok(self)
    }

    /// Trains the MTJ layers at a T drawn per step and per layer, uniformly
    /// from `choices`, keyed by (seed, step, node): one model then serves
    /// every per-layer schedule over that set, and a resumed run draws the
    /// same T as an uninterrupted one.
    pub fn with_random_samples(mut self, choices: Vec<u32>) -> Result<Trainer> {
        if choices.is_empty() || choices.contains(&0) {
            bail!("random samples: expected a non-empty set of T >= 1, got {choices:?}");
        }
        if !self.qat.iter().flatten().any(|l| matches!(l.config.converter, Converter::Mtj { .. })) {
            bail!("random samples: no MTJ crossbar layer to train (set the PS-QAT layers first, with the mtj converter)");
        }
        if self.qat.iter().flatten().any(|l| !l.config.samples_per_stream.is_empty()) {
            bail!("random samples: the layers have samples per input stream, which would override the drawn T; give one of the two");
        }
        self.samples_choice = choices;
        Ok(self)
    }

    /// The T each MTJ layer uses at optimiser step `step` (`None`: digital
    /// or not an MTJ layer).
    pub fn samples_at(&self, step: usize) -> Vec<Option<u32>> {
        self.qat
            .iter()
            .enumerate()
            .map(|(i, l)| match l.as_ref()?.config.converter {
                Converter::Mtj { samples, .. } if self.samples_choice.is_empty() => Some(samples),
                Converter::Mtj { .. } => {
                    let r = rng::stream(self.config.seed, &[augment::SAMPLES, step as u64, i as u64]).next_u64();
                    Some(self.samples_choice[(r % self.samples_choice.len() as u64) as usize])
                }
                _ => None,
            })
            .collect()
    }

    /// Keeps an exponential moving average of the model with this decay per
    /// step, starting from the current model; `model()` then returns it.
    pub fn with_ema(mut self, decay: f32) -> Result<Trainer> {
        if !(decay > 0.0 && decay < 1.0) {
            bail!("EMA decay must be in (0, 1), got {decay}");
        }
        let mut values = Vec::new();
        self.for_each_part(|part, x| {
            if part == Part::Model {
                values.extend_from_slice(x)
            }
        });
        self.ema = Some(Ema { decay, values });
        Ok(self)
    }

    /// Floating-point operations of one image's training step in its matrix
    /// products: the forward pass, the input gradient and the weight
    /// gradient each multiply-add as often as the forward pass does.
    pub fn flops_per_image(&self) -> u64 {
        3 * 2 * self.net.macs()
    }

    pub fn batches_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.config.batch)
    }

    /// Trains on batches `from..to` of `epoch` (the epoch's seeded order).
    /// Stops with an error naming the batch if the loss is not finite; the
    /// weights are then those before that batch.
    pub fn train_batches(&mut self, data: &Dataset, epoch: usize, from: usize, to: usize) -> Result<Progress> {
        let c = self.config.clone();
        let order = augment::permutation(c.seed, epoch, data.len());
        let len: usize = data.dims.iter().product();
        let classes = self.net.classes();
        let mut progress = Progress::default();
        for b in from..to.min(self.batches_per_epoch(data.len())) {
            let idx = &order[b * c.batch..((b + 1) * c.batch).min(order.len())];
            if idx.len() < 2 {
                continue;
            }
            let mut x = crate::buffers::Buf::zeroed(idx.len() * len);
            x.par_chunks_exact_mut(len).zip(idx.par_iter()).for_each(|(out, &i)| {
                let i = i as usize;
                augment::prepare(&data.images[i * len..(i + 1) * len], data.dims, &c.normalize, c.augment, (c.seed, epoch, i), out);
            });
            let labels: Vec<u8> = idx.iter().map(|&i| data.labels[i as usize]).collect();
            let saved = self.net.clone();
            if !self.samples_choice.is_empty() {
                let draws = self.samples_at(self.step);
                for (layer, t) in self.qat.iter_mut().zip(draws) {
                    if let (Some(l), Some(t)) = (layer, t) {
                        if let Converter::Mtj { samples, .. } = &mut l.config.converter {
                            *samples = t;
                        }
                    }
                }
            }
            // Stochastic draws of image i in epoch e are keyed e·N + i: fresh every epoch.
            let images: Vec<usize> = idx.iter().map(|&i| epoch * data.len() + i as usize).collect();
            let q = (!self.qat.is_empty()).then(|| backprop::Qat { layers: &self.qat, seed: c.seed, images: &images, tape_bytes: backprop::TAPE_BYTES });
            let soft = match &mut self.teacher {
                // The inference engine runs the whole network image by image, its
                // activations staying in cache, with the ops of an eval-mode batch
                // forward (the same bits) and no tape kept.
                Some((t, d)) => Some((crate::engine::forward(t, None, &x, 0)?.0, *d)),
                None => None,
            };
            let tape = backprop::forward(&mut self.net, x, idx.len(), true, q.as_ref())?;
            let (loss, correct, dlogits) = softmax_cross_entropy(&tape.values[self.net.output], &labels, classes, c.label_smoothing, soft.as_ref().map(|(l, d)| (&l[..], *d)));
            if !loss.is_finite() {
                self.net = saved;
                bail!("loss is {loss} at epoch {epoch}, batch {b}: training stopped (the last checkpoint is kept)");
            }
            let (grads, qgrads) = backprop::backward(&self.net, &tape, dlogits, q.as_ref());
            drop(tape);
            let lr = c.sgd.lr_at(self.step);
            for ((node, g), v) in self.net.nodes.iter_mut().zip(&grads).zip(&mut self.velocity) {
                for ((p, g), v) in backprop::params_mut(&mut node.op).into_iter().zip(g).zip(v) {
                    c.sgd.update(lr, p, g, v);
                }
            }
            // The learned normalisation, readout and clip: same optimiser, no weight decay.
            let plain = sgd::Sgd { weight_decay: 0.0, ..c.sgd };
            for (layer, g) in self.qat.iter_mut().zip(&qgrads) {
                if let (Some(layer), Some(g)) = (layer, g) {
                    if !layer.learned[0].is_empty() {
                        let g = layer.learned_grads(g);
                        for ((p, g), v) in layer.learned.iter_mut().zip(&g).zip(layer.velocity.iter_mut()) {
                            plain.update(lr, p, g, v);
                        }
                    }
                    if let Some(clip) = &mut layer.clip {
                        plain.update(lr, std::slice::from_mut(&mut clip.value), &[g.clip * clip.grad_scale], std::slice::from_mut(&mut clip.velocity));
                        // A clip at or below zero has no levels: keep it positive.
                        clip.value = clip.value.max(1e-3 * clip.base);
                    }
                    layer.compose();
                }
            }
            self.update_ema();
            self.step += 1;
            progress.loss_sum += loss;
            progress.correct += correct;
            progress.images += idx.len() as u64;
        }
        Ok(progress)
    }

    /// Visits every float of the trainer state in checkpoint order, each
    /// slice marked as part of the model or of the optimiser.
    fn for_each_part(&mut self, mut f: impl FnMut(Part, &mut [f32])) {
        for (node, v) in self.net.nodes.iter_mut().zip(&mut self.velocity) {
            if let Op::BatchNorm(b) = &mut node.op {
                f(Part::Model, &mut b.mean);
                f(Part::Model, &mut b.var);
            }
            for p in backprop::params_mut(&mut node.op) {
                f(Part::Model, p);
            }
            for buf in v {
                f(Part::Optimiser, buf);
            }
        }
        for layer in self.qat.iter_mut().flatten() {
            for p in &mut layer.learned {
                f(Part::Model, p);
            }
            for v in &mut layer.velocity {
                f(Part::Optimiser, v);
            }
            if let Some(c) = &mut layer.clip {
                f(Part::Model, std::slice::from_mut(&mut c.value));
                f(Part::Optimiser, std::slice::from_mut(&mut c.velocity));
            }
        }
    }

    /// Averages the model into the EMA: e ← e + (1 − decay)·(x − e).
    fn update_ema(&mut self) {
        let Some(mut ema) = self.ema.take() else { return };
        let (mut at, w) = (0, 1.0 - ema.decay);
        self.for_each_part(|part, x| {
            if part == Part::Model {
                ema.values[at..at + x.len()].iter_mut().zip(x.iter()).for_each(|(e, &x)| *e += w * (x - *e));
                at += x.len();
            }
        });
        self.ema = Some(ema);
    }

    /// Exchanges the model with its EMA (no-op without one).
    fn swap_ema(&mut self) {
        let Some(mut ema) = self.ema.take() else { return };
        let mut at = 0;
        self.for_each_part(|part, x| {
            if part == Part::Model {
                x.swap_with_slice(&mut ema.values[at..at + x.len()]);
                at += x.len();
            }
        });
        self.ema = Some(ema);
        self.qat.iter_mut().flatten().for_each(|l| l.compose());
    }

    /// The model the run produces, with its crossbar layers' learned state:
    /// the EMA if the run keeps one, else the current weights.
    pub fn model(&mut self) -> (Network, Vec<Option<qat::QatLayer>>) {
        self.swap_ema();
        let model = (self.net.clone(), self.qat.clone());
        self.swap_ema();
        model
    }

    /// The model the run produces (as `model`) ready for inference: its
    /// PS-QAT layers programmed on crossbars with their learned state, `seed`
    /// keying every random draw. Evaluation through it takes no weights out
    /// of the trainer's side.
    pub fn evaluator(&mut self, seed: u64) -> Result<(Network, Option<Crossbars>)> {
        let (net, qat) = self.model();
        if qat.is_empty() {
            return Ok((net, None));
        }
        let configs: Vec<_> = qat.iter().map(|l| l.as_ref().map(|l| l.config.clone())).collect();
        let crossbars = crate::calibrate::program(&net, &configs, seed)?;
        Ok((net, Some(crossbars)))
    }

    /// Every float of the trainer state (parameters, BatchNorm statistics,
    /// momentum, then the EMA) in a fixed order, for checkpoints.
    pub fn state(&mut self) -> Vec<f32> {
        let mut out = Vec::new();
        self.for_each_part(|_, x| out.extend_from_slice(x));
        if let Some(ema) = &self.ema {
            out.extend(&ema.values);
        }
        out
    }

    pub fn load_state(&mut self, state: &[f32], step: usize) -> Result<()> {
        let expected = self.state().len();
        if state.len() != expected {
            bail!("checkpoint holds {} values, this network and optimiser need {}", state.len(), expected);
        }
        let mut at = 0;
        self.for_each_part(|_, x| {
            x.copy_from_slice(&state[at..at + x.len()]);
            at += x.len();
        });
        if let Some(ema) = &mut self.ema {
            ema.values.copy_from_slice(&state[at..]);
        }
        self.qat.iter_mut().flatten().for_each(|l| l.compose());
        self.step = step;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    Model,
    Optimiser,
}

/// An exponential moving average of the model's floats (parameters,
/// BatchNorm statistics, learned crossbar state), updated after every step.
/// Averaging the running BatchNorm statistics too matters under PS-QAT: each
/// batch's statistics carry that batch's MTJ draws, and momentum 0.1 keeps
/// only the last few batches.
struct Ema {
    decay: f32,
    values: Vec<f32>,
}

#[cfg(test)]
mod tests;
