//! The engine's determinism contract (engine.rs, rng.rs) on a small CNN
//! built in code: for a fixed seed the logits and the operation counts are
//! bit-identical on 1, 2 and 3 threads and for any split of the images into
//! batches (images numbered by `first`), for every converter, with read
//! noise, cell variation and MTJ device spread; the seed is what the MTJ's
//! draws depend on.

mod common;

use std::sync::Arc;

use common::{mapping, small_cnn, spec, uniforms};
use stoxnet_core::calibrate::prepare;
use stoxnet_core::config::{ConverterSpec, LayerSpec, Noise};
use stoxnet_core::converter::Converter;
use stoxnet_core::counts::OpCounts;
use stoxnet_core::engine::{self, Cancel, Crossbars};
use stoxnet_core::graph::Network;
use stoxnet_core::mtj::Curve;
use stoxnet_core::simulator::Simulator;

const SEED: u64 = 11;
/// Test images are numbered from here (not 0, so that `first` matters).
const FIRST: usize = 100;
/// 13 test images: one full chunk of 8 and a partial one.
const IMAGES: usize = 13;
const CROSSBARS: [usize; 3] = [0, 3, 8];

fn mtj(samples: u32) -> ConverterSpec {
    ConverterSpec::Mtj(Converter::Mtj { curve: Curve::sigmoid(4.0), samples })
}

/// (name, converter, noise): every converter, noise-free and noisy.
fn cases() -> Vec<(&'static str, ConverterSpec, Noise)> {
    let spread = Noise { cell: 0.05, read: 0.5, mtj_offset: 0.1, mtj_slope: 0.1 };
    vec![
        ("ideal", ConverterSpec::Ideal, Noise::default()),
        ("ideal, read and cell noise", ConverterSpec::Ideal, Noise { cell: 0.05, read: 0.5, ..Noise::default() }),
        ("adc 5 bits calibrated", ConverterSpec::Adc { bits: Some(5), calibrated: true }, Noise::default()),
        ("adc 4 bits full range, read noise", ConverterSpec::Adc { bits: Some(4), calibrated: false }, Noise { read: 0.5, ..Noise::default() }),
        ("sense-amp", ConverterSpec::SenseAmp, Noise::default()),
        ("sense-amp, read and cell noise", ConverterSpec::SenseAmp, Noise { cell: 0.05, read: 0.5, ..Noise::default() }),
        ("mtj T = 1", mtj(1), Noise::default()),
        ("mtj T = 3", mtj(3), Noise::default()),
        ("mtj T = 3, read and cell noise, device spread", mtj(3), spread),
    ]
}

/// Every Conv/Linear on crossbars: 16-row subarrays (2, 5 and 1 of them),
/// 2-bit weight slices and input streams; the first layer's inputs are signed
/// (the f32 path), the others unsigned (the integer path when noise-free).
fn specs(net: &Network, converter: ConverterSpec, noise: Noise) -> Vec<Option<LayerSpec>> {
    (0..net.nodes.len()).map(|i| CROSSBARS.contains(&i).then(|| spec(mapping(16, 4, 2, 4, 2), converter, None, i == 0, noise))).collect()
}

fn images(seed: u64, n: usize) -> Vec<f32> {
    uniforms(seed, n * 3 * 8 * 8, -2.0, 2.0)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn merged(parts: &[Vec<OpCounts>]) -> Vec<OpCounts> {
    let mut total = vec![OpCounts::default(); parts[0].len()];
    for p in parts {
        total.iter_mut().zip(p).for_each(|(a, b)| a.merge(b));
    }
    total
}

fn run(threads: usize, net: &Network, stox: &Crossbars, images: &[f32], first: usize) -> (Vec<f32>, Vec<OpCounts>) {
    engine::thread_pool(threads).unwrap().install(|| engine::forward(net, Some(stox), images, first)).unwrap()
}

#[test]
fn same_seed_same_bits_on_any_thread_count_and_batch_split() {
    let net = Arc::new(small_cnn(5));
    let calibration = images(1, 16);
    let test = images(2, IMAGES);
    let len = net.input.len();
    let classes = net.classes();
    for (name, converter, noise) in cases() {
        let (stox, resolved) = prepare(&net, &specs(&net, converter, noise), SEED, &calibration, &Cancel::default()).unwrap();
        let (logits, ops) = run(1, &net, &stox, &test, FIRST);
        assert_eq!(logits.len(), IMAGES * classes, "{name}");
        assert!(logits.iter().all(|v| v.is_finite()), "{name}: {logits:?}");
        // The images are told apart: not one logit row repeated.
        assert!(logits.chunks(classes).any(|row| bits(row) != bits(&logits[..classes])), "{name}: every image gave the same logits");
        for &i in &CROSSBARS {
            let o = &ops[i];
            assert_eq!(o.images, IMAGES as u64, "{name}, node {i}");
            assert!(o.conversions > 0 && o.shift_adds == o.conversions, "{name}, node {i}: {o:?}");
            let samples = match resolved[i].as_ref().unwrap().converter {
                Converter::Mtj { samples, .. } => samples as u64,
                _ => 0,
            };
            assert_eq!(o.mtj_samples, o.conversions * samples, "{name}, node {i}");
        }
        for threads in [2, 3] {
            let (l, o) = run(threads, &net, &stox, &test, FIRST);
            assert_eq!(bits(&l), bits(&logits), "{name}: {threads} threads");
            assert_eq!(o, ops, "{name}: {threads} threads");
        }
        // Batch splits (images keep their numbers through `first`), on 2 threads.
        let singles: Vec<usize> = (0..=IMAGES).collect();
        for cuts in [vec![0, 5, IMAGES], vec![0, 1, 9, IMAGES], vec![0, 8, 12, IMAGES], singles] {
            let parts: Vec<(Vec<f32>, Vec<OpCounts>)> = cuts.windows(2).map(|w| run(2, &net, &stox, &test[w[0] * len..w[1] * len], FIRST + w[0])).collect();
            let l: Vec<f32> = parts.iter().flat_map(|(l, _)| l.iter().copied()).collect();
            assert_eq!(bits(&l), bits(&logits), "{name}: batches cut at {cuts:?}");
            assert_eq!(merged(&parts.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>()), ops, "{name}: batches cut at {cuts:?}");
        }
        // The simulator, fed the batches in reverse order, keeps the same counts.
        let sim = Simulator::new(net.clone(), Some(stox));
        let tail = sim.forward(&test[7 * len..], FIRST + 7).unwrap();
        let head = sim.forward(&test[..7 * len], FIRST).unwrap();
        assert_eq!(bits(&[head, tail].concat()), bits(&logits), "{name}: simulator");
        assert_eq!(sim.counts(), ops, "{name}: simulator counts");
    }
}

/// Numbering matters: the same pixels as image 0 or as image 1 draw
/// different MTJ samples (and the same ones again as image 0).
#[test]
fn image_numbers_key_the_draws() {
    let net = small_cnn(5);
    let (stox, _) = prepare(&net, &specs(&net, mtj(1), Noise::default()), SEED, &images(1, 16), &Cancel::default()).unwrap();
    let one = images(2, 1);
    let at = |first| bits(&engine::forward(&net, Some(&stox), &one, first).unwrap().0);
    assert_eq!(at(0), at(0));
    assert_ne!(at(0), at(1));
}

/// The MTJ's draws come from the seed: another seed for the same programmed
/// layers changes the logits, while the deterministic converters ignore it.
/// Through `prepare`, the seed also draws the device spread and cells.
#[test]
fn the_seed_changes_mtj_logits_only() {
    let net = small_cnn(5);
    let calibration = images(1, 16);
    let test = images(2, IMAGES);
    for (name, converter, noise) in cases() {
        let (mut stox, _) = prepare(&net, &specs(&net, converter, noise), SEED, &calibration, &Cancel::default()).unwrap();
        let base = engine::forward(&net, Some(&stox), &test, FIRST).unwrap().0;
        stox.seed = SEED + 1;
        let other = engine::forward(&net, Some(&stox), &test, FIRST).unwrap().0;
        let changed = bits(&base).iter().zip(bits(&other)).filter(|(a, b)| *a != b).count();
        let stochastic = matches!(converter, ConverterSpec::Mtj(_)) || noise.read > 0.0;
        if stochastic {
            // Most logits move (each depends on hundreds of draws).
            assert!(changed > base.len() / 2, "{name}: only {changed} of {} logits changed with the seed", base.len());
        } else {
            assert_eq!(changed, 0, "{name}: a deterministic converter depends on the seed");
        }
        if matches!(converter, ConverterSpec::Mtj(_)) {
            let (again, _) = prepare(&net, &specs(&net, converter, noise), SEED + 1, &calibration, &Cancel::default()).unwrap();
            let reseeded = engine::forward(&net, Some(&again), &test, FIRST).unwrap().0;
            assert_ne!(bits(&reseeded), bits(&base), "{name}: prepare with another seed");
            if noise == Noise::default() {
                // Without cell variation or device spread, the seed only keys the samples.
                assert_eq!(bits(&reseeded), bits(&other), "{name}: prepare with another seed");
            }
        }
    }
}
