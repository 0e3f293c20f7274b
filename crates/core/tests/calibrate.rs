//! What `calibrate::prepare` decides, against a direct computation of the
//! calibration partial sums: a linear layer on the network input (so its
//! partial sums follow from the quantised weights and inputs alone, with a
//! given input clip), in 16-row subarrays, 2-bit weight slices and 2-bit
//! input streams.

mod common;

use common::{mapping, single_linear, spec, uniforms};
use stoxnet_core::calibrate::{prepare, Resolved};
use stoxnet_core::config::{split_rows, ConverterSpec, LayerSpec, Mapping, Noise};
use stoxnet_core::converter::Converter;
use stoxnet_core::engine::{self, Cancel, Crossbars};
use stoxnet_core::graph::{Network, Op};
use stoxnet_core::mtj::Curve;
use stoxnet_core::quant::{quantize_weights, InputQuant};

const K: usize = 48;
const OUT: usize = 6;
const CLIP: f32 = 1.0;

fn setup() -> (Network, Mapping, Vec<f32>) {
    // 48 rows → three 16-row subarrays; 4-bit weights → 3 magnitude bits in
    // two slices; 4-bit inputs → two 2-bit streams: 3·2·2·6 = 72 columns.
    // Inputs in [−0.2, 1.3): some clip at 0, some at the clip.
    (single_linear(3, K, OUT, true), mapping(16, 4, 2, 4, 2), uniforms(4, 64 * K, -0.2, 1.3))
}

fn digit(level: f32, index: usize, width: u32) -> f64 {
    let d = ((level.abs() as u32 >> (index as u32 * width)) & ((1 << width) - 1)) as f64;
    if level < 0.0 {
        -d
    } else {
        d
    }
}

/// The partial sum of every column for every image, `[image][column]`,
/// columns in canonical order (subarray, slice, stream, output): the sum over
/// the subarray's rows of weight digit × input digit.
fn partial_sums(net: &Network, m: &Mapping, images: &[f32]) -> Vec<Vec<f64>> {
    let Op::Linear(fc) = &net.nodes[0].op else { unreachable!() };
    let q = quantize_weights(&fc.weight, OUT, m.weight_bits, m.weight_quant).q;
    let input = InputQuant::new(m.input_bits, CLIP, false);
    let ranges = split_rows(K, m.rows, m.split);
    images
        .chunks(K)
        .map(|x| {
            let levels: Vec<f32> = x.iter().map(|&v| input.level(v)).collect();
            let mut ps = Vec::new();
            for &(k0, k1) in &ranges {
                for i in 0..m.slices() {
                    for j in 0..m.streams() {
                        for o in 0..OUT {
                            ps.push((k0..k1).map(|r| digit(q[o * K + r], i, m.weight_slice_bits) * digit(levels[r], j, m.input_stream_bits)).sum());
                        }
                    }
                }
            }
            ps
        })
        .collect()
}

fn resolve(net: &Network, s: LayerSpec, images: &[f32]) -> (Crossbars, Resolved) {
    let (stox, mut resolved) = prepare(net, &[Some(s)], 0, images, &Cancel::default()).unwrap();
    (stox, resolved.remove(0).unwrap())
}

fn logits(net: &Network, stox: &Crossbars, images: &[f32]) -> Vec<u32> {
    engine::forward(net, Some(stox), images, 0).unwrap().0.iter().map(|v| v.to_bits()).collect()
}

/// sparse-adc: lo = the smallest partial sum the layer showed, step 1, and
/// the fewest bits b with 2^b ≥ hi − lo + 1, below the mapping's lossless
/// bits. It is then lossless on the calibration images (the ideal
/// converter's logits), and b − 1 bits on the same range are not.
#[test]
fn sparse_adc_picks_the_fewest_bits_covering_the_observed_range() {
    let (net, m, images) = setup();
    let ps = partial_sums(&net, &m, &images);
    let columns = ps[0].len();
    assert_eq!(columns, 72);
    let lo = ps.iter().flatten().fold(f64::INFINITY, |a, &b| a.min(b));
    let hi = ps.iter().flatten().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let bits = (1..=24).find(|&b| (1u64 << b) as f64 >= hi - lo + 1.0).unwrap();
    let lossless = m.lossless_adc_bits(K, false);
    assert!(bits < lossless, "the observed range [{lo}, {hi}] needs {bits} bits, not fewer than the lossless {lossless}");

    let (sparse, r) = resolve(&net, spec(m.clone(), ConverterSpec::SparseAdc, Some(CLIP), false, Noise::default()), &images);
    assert_eq!(r.converter, Converter::Adc { bits }, "observed range [{lo}, {hi}]");
    assert_eq!(r.params.adc_lo, vec![lo as f32; columns]);
    assert_eq!(r.params.adc_step, vec![1.0; columns]);

    let (ideal, _) = resolve(&net, spec(m.clone(), ConverterSpec::Ideal, Some(CLIP), false, Noise::default()), &images);
    assert_eq!(logits(&net, &sparse, &images), logits(&net, &ideal, &images), "sparse-adc is not lossless on its calibration images");
    let mut fewer = spec(m, ConverterSpec::Adc { bits: Some(bits - 1), calibrated: true }, Some(CLIP), false, Noise::default());
    fewer.params = r.params.clone();
    let (fewer, _) = resolve(&net, fewer, &images);
    assert_ne!(logits(&net, &fewer, &images), logits(&net, &ideal, &images), "{} bits would do", bits - 1);
}

/// A calibrated b-bit ADC spans, per (slice, stream), the smallest and
/// largest partial sum of all the layer's columns of that slice and stream:
/// lo = min, step = (max − min)/(2^b − 1).
#[test]
fn calibrated_adc_spans_the_observed_range_per_slice_and_stream() {
    let (net, m, images) = setup();
    let ps = partial_sums(&net, &m, &images);
    let groups = m.slices() * m.streams();
    let group = |c: usize| (c / OUT) % groups;
    let (mut lo, mut hi) = (vec![f64::INFINITY; groups], vec![f64::NEG_INFINITY; groups]);
    for row in &ps {
        for (c, &v) in row.iter().enumerate() {
            lo[group(c)] = lo[group(c)].min(v);
            hi[group(c)] = hi[group(c)].max(v);
        }
    }
    // The groups differ (the high slice holds smaller digits), so a per-layer range would fail.
    assert!(hi.iter().any(|&h| h != hi[0]), "{hi:?}");
    let (_, r) = resolve(&net, spec(m, ConverterSpec::Adc { bits: Some(3), calibrated: true }, Some(CLIP), false, Noise::default()), &images);
    assert_eq!(r.converter, Converter::Adc { bits: 3 });
    for c in 0..ps[0].len() {
        let g = group(c);
        assert_eq!(r.params.adc_lo[c], lo[g] as f32, "column {c}");
        assert_eq!(r.params.adc_step[c], ((hi[g] - lo[g]) / 7.0) as f32, "column {c}");
    }
}

/// Normalising converters: per column, x = (ps − mean)/std over the
/// calibration partial sums (population std), then the readout gain·c +
/// offset is the least-squares fit of ps on E[c | ps]: gain = cov(c, ps) /
/// var(c), offset = mean(ps) − gain·mean(c), with E[c] = sign(x) for the
/// sense amp and 2·sigmoid(s·(x − x0)) − 1 = tanh(s·(x − x0)/2) on x clamped
/// for the MTJ (T does not enter). The fit is also checked to be a minimum
/// of the squared error against nearby gains and offsets.
#[test]
fn normalisation_and_readout_are_the_closed_form_least_squares_fit() {
    let (net, m, images) = setup();
    let ps = partial_sums(&net, &m, &images);
    let n = ps.len() as f64;
    let mtj = |curve: Curve, samples| ConverterSpec::Mtj(Converter::Mtj { curve, samples });
    for (name, converter) in [("sense-amp", ConverterSpec::SenseAmp), ("mtj sigmoid(4)", mtj(Curve::sigmoid(4.0), 4)), ("mtj fitted", mtj(Curve::fitted(), 1))] {
        let (_, r) = resolve(&net, spec(m.clone(), converter, Some(CLIP), false, Noise::default()), &images);
        let p = &r.params;
        assert_eq!(p.norm_scale.len(), ps[0].len(), "{name}");
        for c in 0..ps[0].len() {
            let v: Vec<f64> = ps.iter().map(|row| row[c]).collect();
            let mean = v.iter().sum::<f64>() / n;
            let std = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
            assert!(std > 0.0, "{name}, column {c}: constant partial sums");
            let close = |got: f32, want: f64, tol: f64| (got as f64 - want).abs() <= tol * (want.abs() + 1e-3);
            assert!(close(p.norm_scale[c], 1.0 / std, 1e-6), "{name}, column {c}: scale {} vs 1/std {}", p.norm_scale[c], 1.0 / std);
            assert!(close(p.norm_shift[c], -mean / std, 1e-5), "{name}, column {c}: shift {} vs −mean/std {}", p.norm_shift[c], -mean / std);
            // E[c | ps], with x computed as the engine does (f32, the resolved scale and shift).
            let expected: Vec<f64> = v
                .iter()
                .map(|&ps| {
                    let x = ps as f32 * p.norm_scale[c] + p.norm_shift[c];
                    match converter {
                        ConverterSpec::Mtj(Converter::Mtj { curve, .. }) => (curve.slope as f64 * (x.clamp(-curve.clamp, curve.clamp) - curve.center) as f64 / 2.0).tanh(),
                        _ => {
                            if x >= 0.0 {
                                1.0
                            } else {
                                -1.0
                            }
                        }
                    }
                })
                .collect();
            let mc = expected.iter().sum::<f64>() / n;
            let var = expected.iter().map(|e| (e - mc) * (e - mc)).sum::<f64>() / n;
            let cov = expected.iter().zip(&v).map(|(e, x)| (e - mc) * (x - mean)).sum::<f64>() / n;
            assert!(var > 1e-6, "{name}, column {c}: E[c] does not vary");
            let gain = cov / var;
            let offset = mean - gain * mc;
            assert!(gain > 0.0, "{name}, column {c}: gain {gain}");
            let (g, o) = (p.readout_gain[c] as f64, p.readout_offset[c] as f64);
            assert!((g - gain).abs() <= 1e-4 * gain, "{name}, column {c}: gain {g} vs {gain}");
            assert!((o - offset).abs() <= 1e-4 * (offset.abs() + std), "{name}, column {c}: offset {o} vs {offset}");
            let sse = |g: f64, o: f64| expected.iter().zip(&v).map(|(e, x)| (x - g * e - o).powi(2)).sum::<f64>();
            for (dg, dof) in [(0.01, 0.0), (-0.01, 0.0), (0.0, 0.01), (0.0, -0.01)] {
                assert!(sse(g, o) < sse(g * (1.0 + dg), o + dof * std), "{name}, column {c}: not a least-squares minimum");
            }
        }
    }
}
