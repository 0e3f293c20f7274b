//! `converter::convert_row` on rows of partial sums built by hand: what each
//! converter adds to the accumulator and records, the ADC's levels and
//! lossless range, the sense amp's sign, and the MTJ's sample means against
//! the transfer curve and the RNG contract (rng.rs).

mod common;

use std::collections::BTreeSet;

use common::{mapping, uniforms};
use rand_core::RngCore;
use stoxnet_core::config::{ColumnParams, LayerConfig, Noise};
use stoxnet_core::converter::{convert_row, Column, Converter, Draws};
use stoxnet_core::crossbar::CrossbarLayer;
use stoxnet_core::mtj::{Curve, Device, Thresholds};
use stoxnet_core::rng::{self, Domain, Lanes};

const SEED: u64 = 2024;

fn column(lo: f32, step: f32, scale: f32, shift: f32, gain: f32, offset: f32) -> Column {
    Column { lo, step, scale, shift, gain, offset, device: Device::NOMINAL }
}

fn draws(image: usize, read: f32) -> Draws {
    Draws { samples: Lanes::new(SEED, Domain::MtjSample, 0, image), read: (read > 0.0).then(|| (Lanes::new(SEED, Domain::ReadNoise, 0, image), read)), thresholds: Vec::new() }
}

/// Runs one row; returns (accumulator, record). The accumulator starts at `init`.
fn convert(conv: &Converter, col: &Column, table: Option<&Thresholds>, ps: &[f32], init: &[f32], factor: f32, d: &mut Draws) -> (Vec<f32>, Vec<f32>) {
    let mut acc = init.to_vec();
    let mut record = vec![f32::NAN; ps.len()];
    convert_row(conv, col, table, ps, &mut acc, factor, d, Some(&mut record));
    (acc, record)
}

#[test]
fn ideal_passes_values_through() {
    let ps = uniforms(1, 37, -50.0, 50.0);
    let init = uniforms(2, 37, -1.0, 1.0);
    let (acc, record) = convert(&Converter::Ideal, &column(0.0, 1.0, 1.0, 0.0, 1.0, 0.0), None, &ps, &init, 4.0, &mut draws(0, 0.0));
    assert_eq!(record, ps);
    for p in 0..ps.len() {
        assert_eq!(acc[p], init[p] + ps[p] * 4.0, "pixel {p}");
    }
    // Read noise (σ = 2 LSB) moves every value, by about σ.
    let (_, noisy) = convert(&Converter::Ideal, &column(0.0, 1.0, 1.0, 0.0, 1.0, 0.0), None, &ps, &init, 4.0, &mut draws(0, 2.0));
    let d: Vec<f64> = noisy.iter().zip(&ps).map(|(a, b)| (a - b) as f64).collect();
    assert!(d.iter().all(|&x| x != 0.0));
    let rms = (d.iter().map(|x| x * x).sum::<f64>() / d.len() as f64).sqrt();
    assert!((1.0..4.0).contains(&rms), "read noise rms {rms}");
}

/// A `b`-bit ADC on [lo, lo + step·(2^b − 1)]: every output is one of its
/// 2^b levels (all of them used by a row that spans the range), inside the
/// range it rounds to the nearest level, outside it clamps.
#[test]
fn adc_has_at_most_two_to_the_bits_levels() {
    let (lo, step) = (-7.3f32, 0.9f32);
    for b in [1u32, 2, 3, 5, 8] {
        let top = lo + step * ((1u32 << b) - 1) as f32;
        let ps = uniforms(b as u64, 4000, lo - 5.0, top + 5.0);
        let (acc, record) = convert(&Converter::Adc { bits: b }, &column(lo, step, 1.0, 0.0, 1.0, 0.0), None, &ps, &vec![0.0; ps.len()], 2.0, &mut draws(0, 0.0));
        let levels: BTreeSet<u32> = record.iter().map(|v| v.to_bits()).collect();
        assert_eq!(levels.len(), 1 << b, "{b} bits");
        for (p, (&v, &r)) in ps.iter().zip(&record).enumerate() {
            assert_eq!(acc[p], r * 2.0);
            let code = (r - lo) / step;
            assert!((code - code.round()).abs() < 1e-3 && (0.0..=((1u32 << b) - 1) as f32).contains(&code.round()), "{b} bits: output {r} is not a level");
            if v < lo {
                assert_eq!(r, lo, "{b} bits: {v} below the range");
            } else if v > top {
                assert!((r - top).abs() < 1e-5, "{b} bits: {v} above the range gave {r}");
            } else {
                assert!((r - v).abs() <= step / 2.0 + 1e-4, "{b} bits: {v} → {r}");
            }
        }
    }
}

/// On a programmed layer, the lossless bits of its mapping set a full-range
/// ADC with step 1 on [−bound, bound]: every integer partial sum there comes
/// out exact; one bit fewer does not.
#[test]
fn lossless_adc_is_exact_on_integer_partial_sums() {
    // 40 rows in 16-row balanced subarrays (14, 14, 12), 4-bit weights in
    // 2-bit slices (digits ≤ 3, then ≤ 1), 4-bit inputs in 2-bit streams (≤ 3).
    let m = mapping(16, 4, 2, 4, 2);
    let (k, out) = (40, 3);
    // Weights that reach every level, so the largest digits are programmed.
    let w: Vec<f32> = (0..out * k).map(|i| ((i % 15) as f32 - 7.0) / 7.0).collect();
    let bits = m.lossless_adc_bits(k, false);
    let bound = 14 * 3 * 3;
    assert_eq!(bits, 8, "2·126 + 1 = 253 levels");
    let layer = |bits| {
        let config = LayerConfig {
            mapping: m.clone(),
            converter: Converter::Adc { bits },
            input_clip: 1.0,
            input_signed: false,
            noise: Noise::default(),
            params: ColumnParams::default(),
            samples_per_stream: Vec::new(),
        };
        CrossbarLayer::new(0, "fc", &w, None, out, config, 0).unwrap()
    };
    let lossless = layer(bits);
    // Column 0: subarray 0 (14 rows), slice 0 (digits ≤ 3), stream 0.
    let col = lossless.columns[0];
    assert_eq!((col.lo, col.step), (-(bound as f32), 1.0));
    let ps: Vec<f32> = (-bound..=bound).map(|v| v as f32).collect();
    let (acc, record) = convert(&lossless.config.converter, &col, None, &ps, &vec![0.0; ps.len()], 8.0, &mut draws(0, 0.0));
    assert_eq!(record, ps);
    assert_eq!(acc, ps.iter().map(|v| v * 8.0).collect::<Vec<_>>());
    let fewer = layer(bits - 1);
    let (_, record) = convert(&fewer.config.converter, &fewer.columns[0], None, &ps, &vec![0.0; ps.len()], 8.0, &mut draws(0, 0.0));
    assert!(record.iter().zip(&ps).any(|(r, v)| r != v), "{} bits would be lossless too", bits - 1);
}

/// The sense amp reports the sign of the normalised sum (0 counts as +1)
/// through the readout gain·c + offset.
#[test]
fn sense_amp_gives_the_sign() {
    let ps: Vec<f32> = (-20..=20).map(|v| v as f32 * 0.5).collect();
    // x = 0.5·ps − 1: the sign flips at ps = 2.
    let col = column(0.0, 1.0, 0.5, -1.0, 3.0, 0.25);
    let init = vec![1.0; ps.len()];
    let (acc, record) = convert(&Converter::SenseAmp, &col, None, &ps, &init, 2.0, &mut draws(0, 0.0));
    for (p, &v) in ps.iter().enumerate() {
        let c = if v >= 2.0 { 1.0 } else { -1.0 };
        assert_eq!(record[p], c, "ps {v}");
        assert_eq!(acc[p], 1.0 + (3.0 * c + 0.25) * 2.0, "ps {v}");
    }
}

/// The MTJ's record for pixel p is the mean of T samples, sample t being +1
/// when the (n·T + t)-th output of lane p % 8 (n = p / 8) is below the
/// threshold, lane l being the stream keyed [MtjSample, layer, image, l]:
/// the RNG contract, in the eight-pixel blocks and in the tail, with and
/// without the threshold table, and the T = 1 select path gives the same
/// accumulator as the recorded one.
#[test]
fn mtj_samples_follow_the_rng_contract() {
    let curve = Curve::sigmoid(4.0);
    let (scale, shift) = (0.08f32, -0.1f32);
    // 29 pixels: three blocks of eight and a tail of five; integer sums.
    let ps: Vec<f32> = (0..29).map(|p| ((p * 7) % 31) as f32 - 15.0).collect();
    let col = column(0.0, 1.0, scale, shift, 1.5, -0.25);
    let table = Thresholds::new(&Device::NOMINAL, &curve, scale, shift).unwrap();
    for samples in [1u32, 3, 8] {
        let conv = Converter::Mtj { curve, samples };
        let image = 5;
        let (acc, record) = convert(&conv, &col, None, &ps, &vec![0.0; ps.len()], 4.0, &mut draws(image, 0.0));
        let mut lanes: Vec<_> = (0..8).map(|l| rng::stream(SEED, &[Domain::MtjSample as u64, 0, image as u64, l])).collect();
        let mut drawn = vec![Vec::new(); 8];
        for (l, lane) in lanes.iter_mut().enumerate() {
            drawn[l] = (0..4 * samples).map(|_| lane.next_u32()).collect::<Vec<u32>>();
        }
        for (p, &v) in ps.iter().enumerate() {
            let thr = Device::NOMINAL.threshold(&curve, v * scale + shift);
            let n = p / 8;
            let count: f32 = (0..samples as usize).map(|t| if ((drawn[p % 8][n * samples as usize + t] >> 8) as f32) < thr { 1.0 } else { -1.0 }).sum();
            let c = count * (1.0 / samples as f32);
            assert_eq!(record[p], c, "T = {samples}, pixel {p}");
            assert_eq!(acc[p], (1.5 * c - 0.25) * 4.0, "T = {samples}, pixel {p}");
        }
        // The table of integer sums gives the same bits.
        let (acc_t, record_t) = convert(&conv, &col, Some(&table), &ps, &vec![0.0; ps.len()], 4.0, &mut draws(image, 0.0));
        assert_eq!((&acc_t, &record_t), (&acc, &record));
        // Without a record (T = 1: a select of two readouts), the same accumulator.
        let mut acc_n = vec![0.0; ps.len()];
        convert_row(&conv, &col, Some(&table), &ps, &mut acc_n, 4.0, &mut draws(image, 0.0), None);
        assert_eq!(acc_n, acc, "T = {samples} without a record");
        // Another image number draws other samples.
        let (_, other) = convert(&conv, &col, None, &ps, &vec![0.0; ps.len()], 4.0, &mut draws(image + 1, 0.0));
        assert_ne!(other, record, "T = {samples}");
    }
}

/// The mean of T samples lies in [−1, 1] on the grid count/T (count ≡ T
/// mod 2), and its average over N pixels converges to E[c] = 2·sigmoid(a·x)
/// − 1 = tanh(a·x/2) (x clamped to ±1).
///
/// Tolerance: each pixel's c is the mean of T independent ±1 draws with
/// P(+1) = (1 + m)/2, so Var(c) = (1 − m²)/T and the average of N pixels has
/// standard deviation sqrt((1 − m²)/(T·N)) ≤ 1/sqrt(T·N) (0.0039 for T = 1,
/// N = 65,536). We allow 5 of these (two-sided p ≈ 6e-7 per point, 8 points
/// × 3 values of T, fixed seed), plus 1e-5 for the f32 sigmoid (pmath,
/// ~2e-7) and the 2^-24 threshold grid. With read noise (σ = 0.01 sums, so
/// 0.0008 in x) the mean moves by at most (a/2)²·σx² ≈ 3e-6, inside it.
#[test]
fn mtj_mean_matches_tanh_of_half_a_x() {
    let a = 4.0f32;
    let curve = Curve::sigmoid(a);
    let n = 65_536;
    let scale = 0.08f32;
    for samples in [1u32, 3, 8] {
        let conv = Converter::Mtj { curve, samples };
        for (k, x) in [-1.5f32, -0.6, -0.2, 0.0, 0.05, 0.3, 0.8, 2.0].into_iter().enumerate() {
            for read in [0.0, 0.01] {
                // ps = 10 for every pixel, shifted so that x = 10·scale + shift.
                let col = column(0.0, 1.0, scale, x - 10.0 * scale, 1.0, 0.0);
                let ps = vec![10.0f32; n];
                let (_, record) = convert(&conv, &col, None, &ps, &vec![0.0; n], 1.0, &mut draws(1000 * samples as usize + 10 * k + (read > 0.0) as usize, read));
                for &c in &record {
                    assert!((-1.0..=1.0).contains(&c), "T = {samples}: mean {c}");
                    let count = c * samples as f32;
                    assert!(count == count.round() && (count as i64 - samples as i64) % 2 == 0, "T = {samples}: mean {c} is not a count / T");
                }
                let mean = record.iter().map(|&c| c as f64).sum::<f64>() / n as f64;
                let xc = x.clamp(-1.0, 1.0) as f64;
                let m = (a as f64 * xc / 2.0).tanh();
                let sd = ((1.0 - m * m) / (samples as f64 * n as f64)).sqrt();
                assert!((mean - m).abs() <= 5.0 * sd + 1e-5, "T = {samples}, x = {x}, read σ {read}: mean {mean}, tanh(a·x/2) = {m}, sd {sd}");
            }
        }
    }
}
