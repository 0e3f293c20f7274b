//! Hardware cost: energy, latency and area per layer and per component,
//! from the operation counts the engine produced (ops.rs) and the mapping of
//! the programmed crossbar layers. Units: pJ, ns, µm² (areas reported in
//! mm²). Every number comes from a technology file (ts/cost/tech/*.json),
//! where each carries its source.

use crate::converter::Converter;
use crate::crossbar::{CrossbarLayer, SignedMapping};
use crate::engine::Stox;
use crate::graph::Network;
use crate::ops::LayerOps;

/// A technology, in canonical units (pJ, ns, µm²).
#[derive(Debug, Clone, PartialEq)]
pub struct Tech {
    pub cell_read_energy: f64,
    pub cell_area: f64,
    pub crossbar_read_latency: f64,
    /// Per drive of a 1-bit DAC; a b-bit drive costs b times as much.
    pub dac_energy: f64,
    pub dac_area: f64,
    /// ADC resolution table (ascending bits) with energy per conversion,
    /// area and latency per conversion; outside the table, see `adc`.
    pub adc_bits: Vec<u32>,
    pub adc_energy: Vec<f64>,
    pub adc_area: Vec<f64>,
    pub adc_latency: Vec<f64>,
    /// Columns sharing one ADC (their conversions are serialised).
    pub adc_sharing: u32,
    pub sample_hold_energy: f64,
    pub sample_hold_area: f64,
    pub sense_amp_energy: f64,
    pub sense_amp_area: f64,
    pub sense_amp_latency: f64,
    pub mtj_write_energy: f64,
    pub mtj_read_energy: f64,
    pub mtj_reset_energy: f64,
    pub mtj_sample_latency: f64,
    pub mtj_area: f64,
    pub counter_energy: f64,
    pub counter_area: f64,
    pub shift_add_energy: f64,
    pub shift_add_area: f64,
    /// Activation buffer energy per bit read or written.
    pub buffer_energy: f64,
    pub digital_mac_energy: f64,
    pub digital_op_energy: f64,
    /// Digital throughput, multiply-accumulates (or element ops) per ns.
    pub digital_rate: f64,
    pub digital_area: f64,
}

impl Tech {
    /// What `adc` and the latency model rely on (ts/cost/tech.ts checks the
    /// same, naming the file and field).
    pub fn check(&self) -> crate::Result<()> {
        let n = self.adc_bits.len();
        if n < 2 || self.adc_energy.len() != n || self.adc_area.len() != n || self.adc_latency.len() != n {
            crate::bail!("technology: the ADC table needs at least two resolutions with energy, area and latency each");
        }
        if self.adc_bits.windows(2).any(|w| w[0] >= w[1]) || self.adc_sharing == 0 || self.digital_rate <= 0.0 {
            crate::bail!("technology: ADC bits must ascend, adcSharing and digitalRate must be positive");
        }
        Ok(())
    }

    /// (energy, area, latency) of a `bits`-bit ADC: the table entry, or
    /// beyond the table geometric extrapolation of energy and area from the
    /// last two entries per bit and linear extrapolation of latency.
    pub fn adc(&self, bits: u32) -> (f64, f64, f64) {
        let b = &self.adc_bits;
        let n = b.len();
        if let Some(i) = b.iter().position(|&x| x == bits) {
            return (self.adc_energy[i], self.adc_area[i], self.adc_latency[i]);
        }
        let (i, j) = if bits > b[n - 1] { (n - 2, n - 1) } else if bits < b[0] { (1, 0) } else {
            let hi = b.iter().position(|&x| x > bits).unwrap();
            (hi - 1, hi)
        };
        let t = (bits as f64 - b[i] as f64) / (b[j] as f64 - b[i] as f64);
        let geo = |v: &[f64]| v[i] * (v[j] / v[i]).powf(t);
        let lin = |v: &[f64]| v[i] + (v[j] - v[i]) * t;
        (geo(&self.adc_energy), geo(&self.adc_area), lin(&self.adc_latency))
    }
}

pub const COMPONENTS: [&str; 10] = ["cells", "dac", "adc", "sampleHold", "senseAmp", "mtj", "counter", "shiftAdd", "buffer", "digital"];

/// Cost of one layer per image: energy, area and latency by component
/// (index as `COMPONENTS`). Latency parts are in series: crossbar reads
/// (cells), conversions (adc, senseAmp or mtj) and digital work.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LayerCost {
    pub energy: [f64; 10],
    pub area: [f64; 10],
    pub latency: [f64; 10],
}

impl LayerCost {
    pub fn energy_total(&self) -> f64 {
        self.energy.iter().sum()
    }
    pub fn area_total(&self) -> f64 {
        self.area.iter().sum()
    }
    pub fn latency_total(&self) -> f64 {
        self.latency.iter().sum()
    }
}

fn crossbar_cost(layer: &CrossbarLayer, o: &LayerOps, t: &Tech) -> LayerCost {
    let m = &layer.config.mapping;
    let per = |v: u64| v as f64 / o.images.max(1) as f64;
    let mut c = LayerCost::default();
    let [cells, dac, adc, sh, sa, mtj, counter, shift, buffer] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    let stream_bits = m.input_stream_bits as f64;
    // Only rows driven with a nonzero digit draw current through their cells
    // and cost driver energy; idle rows cost nothing (data-dependent).
    let columns = layer.physical_columns() as f64;
    let tiles = columns / m.cols as f64;
    c.energy[cells] = per(o.active_rows) * columns * t.cell_read_energy;
    c.energy[dac] = per(o.active_rows) * tiles.ceil() * t.dac_energy * stream_bits;
    c.energy[shift] = per(o.shift_adds) * t.shift_add_energy;
    // Inputs read for every row drive, outputs (16-bit) written once.
    c.energy[buffer] = (per(o.dac_drives) * stream_bits + per(o.digital_ops) * 16.0) * t.buffer_energy;
    let subarrays = layer.physical_subarrays() as f64;
    let activations = per(o.subarray_reads) / subarrays;
    // Logical columns (converter inputs) per physical subarray.
    let logical = match m.signed {
        SignedMapping::Differential => m.cols / 2,
        SignedMapping::Offset => m.cols - 1,
    }
    .min(layer.out * m.slices()) as f64;
    let groups = (logical / t.adc_sharing as f64).ceil();
    let (conv, conv_latency) = match layer.config.converter {
        Converter::Adc { bits } => {
            let (e, a, l) = t.adc(bits);
            c.energy[adc] = per(o.conversions) * e;
            c.energy[sh] = per(o.conversions) * t.sample_hold_energy;
            c.area[adc] = subarrays * groups * a;
            c.area[sh] = subarrays * logical * t.sample_hold_area;
            (adc, logical.min(t.adc_sharing as f64) * l)
        }
        Converter::SenseAmp => {
            c.energy[sa] = per(o.conversions) * t.sense_amp_energy;
            c.area[sa] = subarrays * logical * t.sense_amp_area;
            (sa, t.sense_amp_latency)
        }
        Converter::Mtj { samples, .. } => {
            c.energy[mtj] = per(o.mtj_samples) * (t.mtj_write_energy + t.mtj_read_energy + t.mtj_reset_energy);
            c.energy[counter] = per(o.mtj_samples) * t.counter_energy;
            c.area[mtj] = subarrays * logical * t.mtj_area;
            c.area[counter] = subarrays * logical * t.counter_area;
            (mtj, samples as f64 * t.mtj_sample_latency)
        }
        // An ideal converter is not hardware: no cost, reported as such.
        Converter::Ideal => (adc, 0.0),
    };
    c.area[cells] = subarrays * (m.rows * m.cols) as f64 * t.cell_area;
    c.area[dac] = subarrays * m.rows as f64 * t.dac_area;
    c.area[shift] = subarrays * groups * t.shift_add_area;
    c.latency[cells] = activations * t.crossbar_read_latency;
    c.latency[conv] = activations * conv_latency;
    c
}

fn digital_cost(o: &LayerOps, t: &Tech) -> LayerCost {
    let per = |v: u64| v as f64 / o.images.max(1) as f64;
    let mut c = LayerCost::default();
    c.energy[9] = per(o.digital_macs) * t.digital_mac_energy + per(o.digital_ops) * t.digital_op_energy;
    c.latency[9] = (per(o.digital_macs) + per(o.digital_ops)) / t.digital_rate;
    c
}

/// Per-node cost (digital nodes, crossbar layers) of one image, and the
/// digital units' area once for the chip.
pub fn cost(net: &Network, stox: Option<&Stox>, ops: &[LayerOps], t: &Tech) -> Vec<LayerCost> {
    let mut costs: Vec<LayerCost> = net
        .nodes
        .iter()
        .enumerate()
        .map(|(i, _)| match stox.and_then(|s| s.layers[i].as_ref()) {
            Some(layer) => crossbar_cost(layer, &ops[i], t),
            None => digital_cost(&ops[i], t),
        })
        .collect();
    if let Some(first) = costs.iter_mut().find(|c| c.energy[9] > 0.0) {
        first.area[9] = t.digital_area;
    }
    costs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::{prepare, ConverterSpec, LayerSpec};
    use crate::crossbar::{ColumnParams, Mapping, Noise, Split};
    use crate::graph::{Conv, Node, Op, Shape};
    use crate::mtj::Curve;
    use crate::quant::WeightQuant;

    pub(crate) fn tech() -> Tech {
        Tech {
            cell_read_energy: 0.01,
            cell_area: 0.1,
            crossbar_read_latency: 10.0,
            dac_energy: 0.5,
            dac_area: 1.0,
            adc_bits: vec![4, 8],
            adc_energy: vec![1.0, 4.0],
            adc_area: vec![100.0, 400.0],
            adc_latency: vec![2.0, 4.0],
            adc_sharing: 8,
            sample_hold_energy: 0.1,
            sample_hold_area: 2.0,
            sense_amp_energy: 0.02,
            sense_amp_area: 1.0,
            sense_amp_latency: 1.0,
            mtj_write_energy: 0.01,
            mtj_read_energy: 0.002,
            mtj_reset_energy: 0.01,
            mtj_sample_latency: 2.0,
            mtj_area: 1.0,
            counter_energy: 0.001,
            counter_area: 5.0,
            shift_add_energy: 0.02,
            shift_add_area: 60.0,
            buffer_energy: 0.001,
            digital_mac_energy: 4.0,
            digital_op_energy: 1.0,
            digital_rate: 10.0,
            digital_area: 0.5,
        }
    }

    /// One 2→4 3x3 conv (K = 18) on a 4x4 image, pad 1: p = 16 pixels.
    fn tiny(converter: ConverterSpec) -> (Network, Stox, Vec<LayerOps>) {
        let w: Vec<f32> = (0..4 * 18).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
        let conv = Conv { weight: w, bias: None, out_channels: 4, in_channels: 2, kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] };
        let net = Network::new(Shape { c: 2, h: 4, w: 4 }, vec![Node { name: "c".into(), op: Op::Conv(conv), inputs: vec![0] }], 1).unwrap();
        let mapping = Mapping { rows: 10, cols: 8, split: Split::Balanced, weight_bits: 4, weight_slice_bits: 4, input_bits: 4, input_stream_bits: 4, weight_quant: WeightQuant::Uniform, signed: SignedMapping::Differential };
        let cols = 2 * 4;
        let params = ColumnParams { norm_scale: vec![0.1; cols], norm_shift: vec![0.0; cols], readout_gain: vec![1.0; cols], readout_offset: vec![0.0; cols], ..Default::default() };
        let spec = LayerSpec { mapping, converter, input_clip: Some(1.0), input_signed: false, noise: Noise::default(), params };
        let (stox, _) = prepare(&net, &[Some(spec)], 1, &[], &Default::default()).unwrap();
        let images: Vec<f32> = (0..2 * 32).map(|i| (i % 5) as f32 * 0.2).collect();
        let (_, ops) = crate::engine::forward(&net, Some(&stox), &images, 0).unwrap();
        (net, stox, ops)
    }

    /// Counts × unit costs by hand: K = 18 rows → balanced 9 + 9; 4 outputs
    /// × 2 (differential) = 8 physical columns = one 8-wide subarray per row
    /// tile; 16 pixels, one stream.
    #[test]
    fn closed_form_on_a_tiny_layer() {
        let t = tech();
        let (net, stox, ops) = tiny(ConverterSpec::Mtj(Converter::Mtj { curve: Curve::sigmoid(4.0), samples: 3 }));
        let c = &cost(&net, Some(&stox), &ops, &t)[0];
        let conversions = 16.0 * 2.0 * 4.0; // pixels × subarrays × outputs
        assert_eq!(ops[0].conversions as f64 / 2.0, conversions);
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1.0);
        // Rows driven with a nonzero input: some of the 16 × 18 (padding and zero inputs are idle).
        let active = ops[0].active_rows as f64 / 2.0;
        assert!(active > 0.0 && active < 16.0 * 18.0, "{active}");
        assert!(near(c.energy[0], active * 8.0 * 0.01)); // 8 cells on every active row
        assert!(near(c.energy[1], active * 0.5 * 4.0)); // one 4-bit DAC drive per active row
        assert!(near(c.energy[5], conversions * 3.0 * 0.022));
        assert!(near(c.energy[6], conversions * 3.0 * 0.001));
        assert!(near(c.energy[7], conversions * 0.02));
        assert!(near(c.energy[8], (16.0 * 18.0 * 4.0 + 64.0 * 16.0) * 0.001));
        // 2 physical subarrays, each activated 16 times: 10 ns read + 3 samples × 2 ns.
        assert!(near(c.latency[0], 16.0 * 10.0) && near(c.latency[5], 16.0 * 6.0) && near(c.latency_total(), 16.0 * (10.0 + 6.0)));
        // Per subarray: 10×8 cells, 10 DACs, 4 logical columns with an MTJ and a counter, one shift-add group.
        assert!(near(c.area[0], 2.0 * 80.0 * 0.1));
        assert!(near(c.area[1], 2.0 * 10.0));
        assert!(near(c.area[5], 2.0 * 4.0 * 1.0));
        assert!(near(c.area[6], 2.0 * 4.0 * 5.0));
        assert!(near(c.area[7], 2.0 * 60.0));
    }

    #[test]
    fn more_samples_and_bits_cost_more() {
        let t = tech();
        let mtj = |samples| {
            let (net, stox, ops) = tiny(ConverterSpec::Mtj(Converter::Mtj { curve: Curve::sigmoid(4.0), samples }));
            cost(&net, Some(&stox), &ops, &t)[0].clone()
        };
        let (a, b) = (mtj(1), mtj(4));
        assert!(b.energy[5] > a.energy[5] && b.latency[5] > a.latency[5]);
        let adc = |bits| {
            let (net, stox, ops) = tiny(ConverterSpec::Adc { bits, calibrated: false });
            cost(&net, Some(&stox), &ops, &t)[0].clone()
        };
        let (lo, hi) = (adc(4), adc(8));
        assert!(hi.energy[2] > lo.energy[2] && hi.area[2] > lo.area[2] && hi.latency[2] > lo.latency[2]);
        assert!(near_rel(hi.energy[2] / lo.energy[2], 4.0));
    }

    fn near_rel(a: f64, b: f64) -> bool {
        (a / b - 1.0).abs() < 1e-12
    }

    #[test]
    fn adc_table_interpolates_and_extrapolates() {
        let t = tech();
        assert_eq!(t.adc(4), (1.0, 100.0, 2.0));
        let (e6, _, l6) = t.adc(6);
        assert!(near_rel(e6, 2.0) && near_rel(l6, 3.0)); // geometric midpoint of 1 and 4; linear latency
        let (e10, a10, l10) = t.adc(10);
        assert!(near_rel(e10, 8.0) && near_rel(a10, 800.0) && near_rel(l10, 5.0));
    }
}
