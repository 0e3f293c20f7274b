//! Hardware cost: energy, latency and area per layer and per component,
//! from the operation counts the engine produced (counts.rs) and the mapping of
//! the programmed crossbar layers. Units: pJ, ns, µm² (areas reported in
//! mm²). Every number comes from a technology file (ts/cost/tech/*.json),
//! where each carries its source.

use crate::config::SignedMapping;
use crate::converter::Converter;
use crate::counts::OpCounts;
use crate::crossbar::CrossbarLayer;
use crate::engine::Crossbars;
use crate::graph::Network;

/// A technology, in canonical units (pJ, ns, µm², V, Ω, µA, mW = pJ/ns);
/// read from the camelCase names `FIELDS` lists.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tech {
    /// Row voltage of a full-scale input digit.
    pub read_voltage: f64,
    /// Cell resistance at the largest digit a cell holds (on) and at zero (off).
    pub cell_on_resistance: f64,
    pub cell_off_resistance: f64,
    /// How long the column current flows per read (and per MTJ sample, whose
    /// SOT write it drives): it sets the cells' energy and the read's time.
    pub read_pulse: f64,
    /// Row-driver and periphery settling before each read's pulse.
    pub read_settling: f64,
    pub cell_area: f64,
    /// Power of a 1-bit DAC while it drives a row (pJ/ns = mW); a b-bit
    /// drive costs b times as much. A row is driven for the whole read.
    pub dac_power: f64,
    pub dac_area: f64,
    /// How the ADC converts: SAR (energy and area from the table below,
    /// bits + 1 cycles) or flash (2^bits − 1 sense-amp comparators, one
    /// comparator time).
    pub adc_architecture: AdcArchitecture,
    /// SAR ADC resolution table (ascending bits) with energy per conversion
    /// and area; outside the table, see `adc`.
    pub adc_bits: Vec<u32>,
    pub adc_energy: Vec<f64>,
    pub adc_area: Vec<f64>,
    /// One SAR cycle: a b-bit conversion takes b + 1 of them.
    pub adc_cycle: f64,
    /// Columns sharing one ADC (their conversions are serialised).
    pub adc_sharing: u32,
    pub sample_hold_energy: f64,
    pub sample_hold_area: f64,
    pub sense_amp_energy: f64,
    pub sense_amp_area: f64,
    pub sense_amp_latency: f64,
    /// SOT write current and the resistance it flows through, for one read pulse.
    pub mtj_write_current: f64,
    pub mtj_resistance: f64,
    pub mtj_read_energy: f64,
    pub mtj_reset_energy: f64,
    /// Read and reset of the MTJ after each sample's write pulse.
    pub mtj_sample_latency: f64,
    pub mtj_area: f64,
    /// 16-bit shift-and-add into an output's accumulator.
    pub shift_add_energy: f64,
    pub shift_add_area: f64,
    /// Activation buffer energy per bit read or written.
    pub buffer_energy: f64,
    pub digital_mac_energy: f64,
    pub digital_op_energy: f64,
    /// Digital throughput, multiply-accumulates (or element ops) per ns.
    pub digital_rate: f64,
    pub digital_area: f64,
    /// Whether a conversion overlaps the next read.
    pub pipeline: Pipeline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdcArchitecture {
    Sar,
    Flash,
}

/// Read and conversion in series (`None`), or ISAAC's pipeline: the sample-
/// and-hold (or the sense amp's latch) keeps one read's partial sums while
/// they convert, so the next read overlaps the conversion. An MTJ cannot
/// overlap: each of its samples needs the read's column current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pipeline {
    None,
    ReadConvert,
}

/// What a technology value measures, which sets the units a file may give
/// it in (ts/cost/tech.ts converts them to the canonical ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Energy,
    Time,
    Area,
    Count,
    Voltage,
    Resistance,
    Current,
    Power,
    /// One of `TechField::choices`.
    Choice,
}

/// One field of `Tech` as a technology file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TechField {
    pub name: &'static str,
    pub dimension: Dimension,
    /// A list of values (the ADC table) rather than one.
    pub list: bool,
    pub choices: &'static [&'static str],
}

const fn field(name: &'static str, dimension: Dimension) -> TechField {
    TechField { name, dimension, list: false, choices: &[] }
}

const fn list(name: &'static str, dimension: Dimension) -> TechField {
    TechField { name, dimension, list: true, choices: &[] }
}

const fn choice(name: &'static str, choices: &'static [&'static str]) -> TechField {
    TechField { name, dimension: Dimension::Choice, list: false, choices }
}

/// Every field of `Tech`, in its order (a test holds the two together).
pub const FIELDS: &[TechField] = {
    use Dimension::*;
    &[
        field("readVoltage", Voltage),
        field("cellOnResistance", Resistance),
        field("cellOffResistance", Resistance),
        field("readPulse", Time),
        field("readSettling", Time),
        field("cellArea", Area),
        field("dacPower", Power),
        field("dacArea", Area),
        choice("adcArchitecture", &["sar", "flash"]),
        list("adcBits", Count),
        list("adcEnergy", Energy),
        list("adcArea", Area),
        field("adcCycle", Time),
        field("adcSharing", Count),
        field("sampleHoldEnergy", Energy),
        field("sampleHoldArea", Area),
        field("senseAmpEnergy", Energy),
        field("senseAmpArea", Area),
        field("senseAmpLatency", Time),
        field("mtjWriteCurrent", Current),
        field("mtjResistance", Resistance),
        field("mtjReadEnergy", Energy),
        field("mtjResetEnergy", Energy),
        field("mtjSampleLatency", Time),
        field("mtjArea", Area),
        field("shiftAddEnergy", Energy),
        field("shiftAddArea", Area),
        field("bufferEnergy", Energy),
        field("digitalMacEnergy", Energy),
        field("digitalOpEnergy", Energy),
        field("digitalRate", Count),
        field("digitalArea", Area),
        choice("pipeline", &["none", "read-convert"]),
    ]
};

impl Tech {
    /// What `adc` and the latency model rely on, naming the field.
    // `!(x > 0)` on floats is deliberate: it refuses NaN too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn check(&self) -> crate::Result<()> {
        let bits = &self.adc_bits;
        for (name, v) in [("adcEnergy", &self.adc_energy), ("adcArea", &self.adc_area)] {
            if v.len() != bits.len() {
                crate::bail!("field '{name}' has {} entries, adcBits has {}", v.len(), bits.len());
            }
        }
        if bits.len() < 2 || bits.windows(2).any(|w| w[0] >= w[1]) {
            crate::bail!("field 'adcBits' must list at least two ascending integer resolutions");
        }
        if self.adc_sharing == 0 {
            crate::bail!("field 'adcSharing' must be positive");
        }
        if !(self.digital_rate > 0.0) {
            crate::bail!("field 'digitalRate' must be positive");
        }
        if !(self.cell_on_resistance > 0.0) {
            crate::bail!("field 'cellOnResistance' must be positive");
        }
        if self.cell_off_resistance < self.cell_on_resistance {
            crate::bail!("field 'cellOffResistance' ({} Ohm) is below 'cellOnResistance' ({} Ohm)", self.cell_off_resistance, self.cell_on_resistance);
        }
        Ok(())
    }

    /// (energy, area, latency) of one `bits`-bit ADC conversion. SAR: the
    /// table entry, or beyond the table geometric extrapolation of energy
    /// and area from the nearest two entries per bit; bits + 1 cycles
    /// (NeuroSim's SAR model). Flash: 2^bits − 1 comparators (sense amps)
    /// and their thermometer code in one comparator time.
    pub fn adc(&self, bits: u32) -> (f64, f64, f64) {
        if self.adc_architecture == AdcArchitecture::Flash {
            let comparators = ((1u64 << bits) - 1) as f64;
            return (comparators * self.sense_amp_energy, comparators * self.sense_amp_area, self.sense_amp_latency);
        }
        let latency = (bits + 1) as f64 * self.adc_cycle;
        let b = &self.adc_bits;
        let n = b.len();
        if let Some(i) = b.iter().position(|&x| x == bits) {
            return (self.adc_energy[i], self.adc_area[i], latency);
        }
        let (i, j) = if bits > b[n - 1] {
            (n - 2, n - 1)
        } else if bits < b[0] {
            (1, 0)
        } else {
            let hi = b.iter().position(|&x| x > bits).unwrap();
            (hi - 1, hi)
        };
        let t = (bits as f64 - b[i] as f64) / (b[j] as f64 - b[i] as f64);
        let geo = |v: &[f64]| v[i] * (v[j] / v[i]).powf(t);
        (geo(&self.adc_energy), geo(&self.adc_area), latency)
    }

    /// Energy (pJ) of one read pulse through a conductance `g` (S) at the full row voltage: V²·g·t.
    pub fn pulse_energy(&self, g: f64) -> f64 {
        self.read_voltage * self.read_voltage * g * self.read_pulse * 1e3
    }

    /// Energy (pJ) of one SOT write: I²·R over the read pulse that drives it.
    pub fn mtj_write_energy(&self) -> f64 {
        self.mtj_write_current * self.mtj_write_current * self.mtj_resistance * self.read_pulse * 1e-9
    }
}

pub const COMPONENTS: [&str; 9] = ["cells", "dac", "adc", "sampleHold", "senseAmp", "mtj", "shiftAdd", "buffer", "digital"];

/// Components of the `macro` scope (a crossbar and its periphery); the
/// `system` scope adds the activation buffers and the digital layers.
pub const MACRO: usize = 7;

/// Cost of one layer per image: energy, area and latency by component
/// (index as `COMPONENTS`). Latency parts are in series: crossbar reads
/// (cells), conversions (adc, senseAmp or mtj) and digital work.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LayerCost {
    pub energy: [f64; 9],
    pub area: [f64; 9],
    pub latency: [f64; 9],
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

fn crossbar_cost(layer: &CrossbarLayer, o: &OpCounts, t: &Tech) -> LayerCost {
    let m = &layer.config.mapping;
    let per = |v: u128| v as f64 / o.images.max(1) as f64;
    let mut c = LayerCost::default();
    let [cells, dac, adc, sh, sa, mtj, shift, buffer] = [0, 1, 2, 3, 4, 5, 6, 7];
    let stream_bits = m.input_stream_bits as f64;
    let columns = layer.physical_columns() as f64;
    let tiles = (columns / m.cols as f64).ceil();
    // The column current flows once per read, and again for every MTJ
    // sample: each sample's SOT write is driven by it. T may differ between
    // input streams; every stream has as many reads, so their mean T times
    // the reads gives the pulses of data-independent parts (bias rows,
    // latency), and the counts weigh each drive by its own stream's T.
    let pulses = layer.config.pulses_all_streams() as f64 / m.streams() as f64;
    // A row at input digit x sees V·x/x_max (amplitude-coded DAC), a cell
    // holding digit d conducts g_off + (g_on − g_off)·d/d_max, so a pulse
    // costs V²·t·Σ (x/x_max)²·g over the driven rows' cells: the counts give
    // Σ x² and Σ x²·(the row's stored digits).
    let x_max = ((1u64 << m.input_stream_bits) - 1) as f64;
    let d_max = ((1u64 << m.weight_slice_bits) - 1) as f64;
    let (g_on, g_off) = (1.0 / t.cell_on_resistance, 1.0 / t.cell_off_resistance);
    c.energy[cells] = (per(o.pulse_sq) * columns * t.pulse_energy(g_off) + per(o.pulse_load) / d_max * t.pulse_energy(g_on - g_off)) / (x_max * x_max);
    // Only rows driven with a nonzero digit cost driver energy: the driver's
    // power for the whole read (settling, then every pulse; the row stays
    // driven through an MTJ's samples).
    let read_time = t.read_settling + pulses * t.read_pulse;
    let on_time = per(o.active_rows as u128) * t.read_settling + per(o.pulse_rows as u128) * t.read_pulse;
    c.energy[dac] = tiles * t.dac_power * stream_bits * on_time;
    // Inputs read for every row drive, outputs (16-bit) written once.
    c.energy[buffer] = (per(o.dac_drives as u128) * stream_bits + per(o.digital_ops as u128) * 16.0) * t.buffer_energy;
    let subarrays = layer.physical_subarrays() as f64;
    let activations = per(o.subarray_reads as u128) / subarrays;
    // Logical columns (converter inputs) per physical subarray.
    let logical = match m.signed {
        SignedMapping::Differential => m.cols / 2,
        SignedMapping::Offset => m.cols - 1,
    }
    .min(layer.out * m.slices()) as f64;
    let groups = (logical / t.adc_sharing as f64).ceil();
    let conversions = per(o.conversions as u128);
    // One accumulator model: every code is added, shifted by its slice and
    // stream, into its output's accumulator — once per conversion, or for an
    // MTJ once per sample (the column's readout gain, pre-shifted, added for
    // each sample; a ±1 sample needs no counter). Readout offsets sum over an
    // output's columns into one constant, folded into its bias.
    let adds = match layer.config.converter {
        Converter::Mtj { .. } => per(o.mtj_samples as u128),
        Converter::Ideal => 0.0,
        _ => conversions,
    };
    c.energy[shift] = adds * t.shift_add_energy;
    let (conv, conv_latency) = match layer.config.converter {
        Converter::Adc { bits } => {
            let (e, a, l) = t.adc(bits);
            c.energy[adc] = conversions * e;
            c.energy[sh] = conversions * t.sample_hold_energy;
            c.area[adc] = subarrays * groups * a;
            c.area[sh] = subarrays * logical * t.sample_hold_area;
            (adc, logical.min(t.adc_sharing as f64) * l)
        }
        Converter::SenseAmp => {
            c.energy[sa] = conversions * t.sense_amp_energy;
            c.area[sa] = subarrays * logical * t.sense_amp_area;
            (sa, t.sense_amp_latency)
        }
        Converter::Mtj { .. } => {
            c.energy[mtj] = per(o.mtj_samples as u128) * (t.mtj_write_energy() + t.mtj_read_energy + t.mtj_reset_energy);
            c.area[mtj] = subarrays * logical * t.mtj_area;
            (mtj, pulses * t.mtj_sample_latency)
        }
        // An ideal converter is not hardware: no cost, reported as such.
        Converter::Ideal => (adc, 0.0),
    };
    let mut rows = m.rows as f64;
    if layer.config.converter.normalises() {
        // The per-column shift of x = ps·scale + shift is a current of
        // |shift/scale| partial-sum steps, from bias rows whose cells hold it
        // (d_max steps per cell), driven at full scale with every pulse.
        // The per-column scale is folded into the column's programmed
        // conductance window (each level programmed at scale·g, the layer's
        // largest scale at the full window), so it costs nothing at read
        // time; the cells are charged unscaled, an upper bound.
        let bias = |col: &crate::converter::Column| (col.shift / col.scale).abs() as f64;
        let mean = layer.columns.iter().map(bias).sum::<f64>() / layer.columns.len() as f64;
        let bias_rows = (layer.columns.iter().map(bias).fold(0.0, f64::max) / d_max).ceil();
        c.energy[cells] += pulses * conversions * mean / d_max * t.pulse_energy(g_on - g_off);
        c.energy[dac] += activations * subarrays * bias_rows * t.dac_power * stream_bits * read_time;
        rows += bias_rows;
    }
    c.area[cells] = subarrays * rows * m.cols as f64 * t.cell_area;
    c.area[dac] = subarrays * rows * t.dac_area;
    c.area[shift] = subarrays * groups * t.shift_add_area;
    let overlaps = t.pipeline == Pipeline::ReadConvert && !matches!(layer.config.converter, Converter::Mtj { .. } | Converter::Ideal);
    if overlaps && activations > 0.0 {
        // n reads and n conversions overlapped: n × the slower stage, plus the
        // faster one once to fill the pipeline; each stage keeps its share.
        let (slow, fast) = if read_time >= conv_latency { (cells, conv) } else { (conv, cells) };
        c.latency[slow] = activations * read_time.max(conv_latency);
        c.latency[fast] = read_time.min(conv_latency);
    } else {
        c.latency[cells] = activations * read_time;
        c.latency[conv] = activations * conv_latency;
    }
    c
}

fn digital_cost(o: &OpCounts, t: &Tech) -> LayerCost {
    let per = |v: u64| v as f64 / o.images.max(1) as f64;
    let mut c = LayerCost::default();
    c.energy[8] = per(o.digital_macs) * t.digital_mac_energy + per(o.digital_ops) * t.digital_op_energy;
    c.latency[8] = (per(o.digital_macs) + per(o.digital_ops)) / t.digital_rate;
    c
}

/// Per-node cost (digital nodes, crossbar layers) of one image, and the
/// digital units' area once for the chip.
pub fn cost(net: &Network, stox: Option<&Crossbars>, ops: &[OpCounts], t: &Tech) -> Vec<LayerCost> {
    let mut costs: Vec<LayerCost> = net
        .nodes
        .iter()
        .enumerate()
        .map(|(i, _)| match stox.and_then(|s| s.layers[i].as_ref()) {
            Some(layer) => crossbar_cost(layer, &ops[i], t),
            None => digital_cost(&ops[i], t),
        })
        .collect();
    if let Some(first) = costs.iter_mut().find(|c| c.energy[8] > 0.0) {
        first.area[8] = t.digital_area;
    }
    costs
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::calibrate::prepare;
    use crate::config::{ColumnParams, ConverterSpec, LayerSpec, Mapping, Noise, Split};
    use crate::graph::{Conv, Node, Op, Shape};
    use crate::mtj::Curve;
    use crate::quant::{quantize_weights, WeightQuant};

    pub(crate) fn tech() -> Tech {
        Tech {
            read_voltage: 0.2,
            cell_on_resistance: 1000.0,
            cell_off_resistance: 10000.0,
            read_pulse: 1.0,
            read_settling: 9.0,
            cell_area: 0.1,
            dac_power: 0.05,
            dac_area: 1.0,
            adc_architecture: AdcArchitecture::Sar,
            adc_bits: vec![4, 8],
            adc_energy: vec![1.0, 4.0],
            adc_area: vec![100.0, 400.0],
            adc_cycle: 0.5,
            adc_sharing: 8,
            sample_hold_energy: 0.1,
            sample_hold_area: 2.0,
            sense_amp_energy: 0.02,
            sense_amp_area: 1.0,
            sense_amp_latency: 1.0,
            mtj_write_current: 100.0,
            mtj_resistance: 1000.0,
            mtj_read_energy: 0.002,
            mtj_reset_energy: 0.01,
            mtj_sample_latency: 2.0,
            mtj_area: 1.0,
            shift_add_energy: 0.02,
            shift_add_area: 60.0,
            buffer_energy: 0.001,
            digital_mac_energy: 4.0,
            digital_op_energy: 1.0,
            digital_rate: 10.0,
            digital_area: 0.5,
            pipeline: Pipeline::None,
        }
    }

    /// A technology as JSON with every field of `FIELDS` (1 each, the ADC
    /// table ascending, the first choice).
    fn json_of(fields: &[TechField]) -> serde_json::Map<String, serde_json::Value> {
        fields
            .iter()
            .map(|f| {
                let v = if f.list {
                    serde_json::json!([4, 8])
                } else if f.dimension == Dimension::Choice {
                    serde_json::json!(f.choices[0])
                } else {
                    serde_json::json!(1)
                };
                (f.name.to_string(), v)
            })
            .collect()
    }

    #[test]
    fn fields_name_every_tech_field_and_only_those() {
        let all: Tech = serde_json::from_value(serde_json::Value::Object(json_of(FIELDS))).unwrap();
        assert!(all.check().is_ok());
        // Each field is required, and no other name is accepted.
        for f in FIELDS {
            let mut m = json_of(FIELDS);
            m.remove(f.name);
            let err = serde_json::from_value::<Tech>(serde_json::Value::Object(m)).unwrap_err().to_string();
            assert!(err.contains(&format!("missing field `{}`", f.name)), "{err}");
        }
        let mut m = json_of(FIELDS);
        m.insert("cellAreaa".into(), serde_json::json!(1));
        assert!(serde_json::from_value::<Tech>(serde_json::Value::Object(m)).unwrap_err().to_string().contains("unknown field `cellAreaa`"));
        // Every listed choice is a value of its enum.
        for f in FIELDS.iter().filter(|f| f.dimension == Dimension::Choice) {
            for c in f.choices {
                let mut m = json_of(FIELDS);
                m.insert(f.name.into(), serde_json::json!(c));
                assert!(serde_json::from_value::<Tech>(serde_json::Value::Object(m)).is_ok(), "{}: {c}", f.name);
            }
        }
        assert_eq!(FIELDS.len(), std::collections::HashSet::<_>::from_iter(FIELDS.iter().map(|f| f.name)).len());
    }

    /// One 2→4 3x3 conv (K = 18) on a 4x4 image, pad 1: p = 16 pixels.
    fn tiny(converter: ConverterSpec) -> (Network, Crossbars, Vec<OpCounts>) {
        tiny_streams(converter, 4, Vec::new())
    }

    /// `tiny` with its 4-bit inputs in streams of `stream_bits`, T per stream.
    fn tiny_streams(converter: ConverterSpec, stream_bits: u32, samples_per_stream: Vec<u32>) -> (Network, Crossbars, Vec<OpCounts>) {
        let w: Vec<f32> = (0..4 * 18).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
        let conv = Conv { weight: w, bias: None, out_channels: 4, in_channels: 2, kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] };
        let net = Network::new(Shape { c: 2, h: 4, w: 4 }, vec![Node { name: "c".into(), op: Op::Conv(conv), inputs: vec![0] }], 1).unwrap();
        let mapping = Mapping {
            rows: 10,
            cols: 8,
            split: Split::Balanced,
            weight_bits: 4,
            weight_slice_bits: 4,
            input_bits: 4,
            input_stream_bits: stream_bits,
            weight_quant: WeightQuant::Uniform,
            signed: SignedMapping::Differential,
        };
        let cols = 2 * 4 * 4usize.div_ceil(stream_bits as usize);
        let params = ColumnParams {
            norm_scale: vec![0.1; cols],
            norm_shift: (0..cols).map(|c| if c % 2 == 0 { 0.3 } else { -0.6 }).collect(),
            readout_gain: vec![1.0; cols],
            readout_offset: vec![0.0; cols],
            ..Default::default()
        };
        let spec = LayerSpec { mapping, converter, input_clip: Some(1.0), input_signed: false, noise: Noise::default(), params, samples_per_stream };
        let (stox, _) = prepare(&net, &[Some(spec)], 1, &[], &Default::default()).unwrap();
        let images: Vec<f32> = (0..2 * 32).map(|i| (i % 5) as f32 * 0.2).collect();
        let (_, ops) = crate::engine::forward(&net, Some(&stox), &images, 0).unwrap();
        (net, stox, ops)
    }

    /// Σ x² and Σ x²·(row's stored digits) over every row drive of the tiny
    /// layer, by a direct loop over its 3×3 windows (no im2col).
    fn drives_by_hand() -> (f64, f64) {
        let w: Vec<f32> = (0..4 * 18).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
        let q = quantize_weights(&w, 4, 4, WeightQuant::Uniform);
        let load: Vec<f64> = (0..18).map(|r| (0..4).map(|o| q.q[o * 18 + r].abs() as f64).sum()).collect();
        let (mut sq, mut cell) = (0.0, 0.0);
        for image in 0..2 {
            let x = |c: usize, h: usize, w: usize| (((image * 32 + c * 16 + h * 4 + w) % 5) as f64 * 0.2 * 15.0).round();
            for (oh, ow) in (0..4).flat_map(|h| (0..4).map(move |w| (h, w))) {
                for (c, kh, kw) in (0..2).flat_map(|c| (0..3).flat_map(move |kh| (0..3).map(move |kw| (c, kh, kw)))) {
                    let (ih, iw) = (oh + kh as i32 - 1, ow + kw as i32 - 1);
                    if (0..4).contains(&ih) && (0..4).contains(&iw) {
                        let v = x(c, ih as usize, iw as usize);
                        sq += v * v;
                        cell += v * v * load[c * 9 + kh * 3 + kw];
                    }
                }
            }
        }
        (sq / 2.0, cell / 2.0)
    }

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
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
        // Rows driven with a nonzero input: some of the 16 × 18 (padding and zero inputs are idle).
        let active = ops[0].active_rows as f64 / 2.0;
        assert!(active > 0.0 && active < 16.0 * 18.0, "{active}");
        let (sq, load) = drives_by_hand();
        assert!(near(ops[0].drive_sq as f64 / 2.0, sq) && near(ops[0].cell_load as f64 / 2.0, load));
        // V²·g·t: 0.04 V² × 1 mS × 1 ns = 40 fJ on, 4 fJ off; 8 cells per row, digits of 4-bit cells over 15, inputs over 15.
        let (on, off) = (0.04 * 1e-3 * 1e3, 0.04 * 1e-4 * 1e3);
        // Shifts ±0.3, ∓0.6 at scale 0.1: bias currents of 3 and 6 steps, mean 4.5, one bias row of 4-bit cells (≤ 15 steps).
        let bias = conversions * 4.5 / 15.0 * (on - off);
        assert!(near(c.energy[0], 3.0 * ((sq * 8.0 * off + load / 15.0 * (on - off)) / 225.0 + bias)), "{}", c.energy[0]);
        // A 4-bit drive of every active row and of the bias row for the whole read: 9 ns settling + 3 pulses.
        assert!(near(c.energy[1], (active + 32.0) * 0.05 * 4.0 * 12.0));
        // Write (100 µA)²·1 kΩ·1 ns = 10 fJ + read + reset, per sample.
        assert!(near(c.energy[5], conversions * 3.0 * (0.01 + 0.002 + 0.01)));
        // Each sample adds its column's gain into the output's accumulator: no counter, no multiplier.
        assert!(near(c.energy[6], conversions * 3.0 * 0.02));
        assert!(near(c.energy[7], (16.0 * 18.0 * 4.0 + 64.0 * 16.0) * 0.001));
        // 2 physical subarrays, each activated 16 times: settling 9 ns + 3 pulses of 1 ns, then 3 samples × 2 ns (read, reset).
        assert!(near(c.latency[0], 16.0 * 12.0) && near(c.latency[5], 16.0 * 6.0) && near(c.latency_total(), 16.0 * 18.0));
        // Per subarray: (10 + 1 bias row) × 8 cells, 11 DACs, 4 logical columns with an MTJ, one shift-add group.
        assert!(near(c.area[0], 2.0 * 88.0 * 0.1));
        assert!(near(c.area[1], 2.0 * 11.0));
        assert!(near(c.area[5], 2.0 * 4.0 * 1.0));
        assert!(near(c.area[6], 2.0 * 60.0));
    }

    /// Every MTJ sample drives the column current again: T = 2 costs a
    /// second pass of the cells' current and a second pulse of time (and of
    /// the row drivers' power).
    #[test]
    fn each_mtj_sample_is_an_array_pass() {
        let t = tech();
        let mtj = |samples| {
            let (net, stox, ops) = tiny(ConverterSpec::Mtj(Converter::Mtj { curve: Curve::sigmoid(4.0), samples }));
            cost(&net, Some(&stox), &ops, &t)[0].clone()
        };
        let (one, two) = (mtj(1), mtj(2));
        assert!(near(two.energy[0], 2.0 * one.energy[0]));
        // The rows stay driven one pulse longer: settling 9 + 2 pulses against 9 + 1.
        assert!(near(two.energy[1], one.energy[1] * 11.0 / 10.0));
        assert!(near(two.latency[0] - one.latency[0], 16.0 * t.read_pulse));
        // One accumulator add per sample.
        assert!(near(two.energy[6], 2.0 * one.energy[6]));
    }

    /// One pulse sets both the cells' energy and the read time.
    #[test]
    fn the_read_pulse_sets_energy_and_latency() {
        let (net, stox, ops) = tiny(ConverterSpec::Adc { bits: Some(8), calibrated: false });
        let t = tech();
        let long = Tech { read_pulse: 3.0, ..tech() };
        let (a, b) = (&cost(&net, Some(&stox), &ops, &t)[0], &cost(&net, Some(&stox), &ops, &long)[0]);
        assert!(near(b.energy[0], 3.0 * a.energy[0]));
        assert!(near(b.latency[0] - a.latency[0], 16.0 * 2.0));
        // The drivers hold their rows for the longer read: 9 + 3 ns against 9 + 1.
        assert!(near(b.energy[1], 1.2 * a.energy[1]));
        // The ADC's path has no bias row.
        assert!(near(a.area[0], 2.0 * 80.0 * 0.1));
        // One accumulator model: an ADC code is added once per conversion, an MTJ sample once per sample.
        let (net2, stox2, ops2) = tiny(ConverterSpec::Mtj(Converter::Mtj { curve: Curve::sigmoid(4.0), samples: 4 }));
        assert!(near(cost(&net2, Some(&stox2), &ops2, &t)[0].energy[6], 4.0 * a.energy[6]));
    }

    /// T per input stream: every stream has as many reads and conversions,
    /// so MTJ energy and latency follow the mean T, whichever stream takes
    /// it; the cells' read energy follows each stream's own drives.
    #[test]
    fn samples_per_stream_cost_their_own_pulses() {
        let t = tech();
        let mtj = Converter::Mtj { curve: Curve::sigmoid(4.0), samples: 1 };
        let at = |per_stream: Vec<u32>| {
            let (net, stox, ops) = tiny_streams(ConverterSpec::Mtj(mtj), 2, per_stream);
            cost(&net, Some(&stox), &ops, &t)[0].clone()
        };
        let uniform = |samples| {
            let (net, stox, ops) = tiny_streams(ConverterSpec::Mtj(Converter::Mtj { curve: Curve::sigmoid(4.0), samples }), 2, Vec::new());
            cost(&net, Some(&stox), &ops, &t)[0].clone()
        };
        let (u1, u4, lo, hi, same) = (uniform(1), uniform(4), at(vec![4, 1]), at(vec![1, 4]), at(vec![4, 4]));
        for k in 0..9 {
            assert!(near(same.energy[k], u4.energy[k]) && near(same.latency[k], u4.latency[k]), "component {k}");
        }
        let [cells, mtj_, shift] = [0, 5, 6];
        for c in [&lo, &hi] {
            assert!(near(c.energy[mtj_], (u1.energy[mtj_] + u4.energy[mtj_]) / 2.0) && near(c.latency[mtj_], (u1.latency[mtj_] + u4.latency[mtj_]) / 2.0));
            assert!(near(c.energy[shift], (u1.energy[shift] + u4.energy[shift]) / 2.0));
            assert!(near(c.latency[cells], (u1.latency[cells] + u4.latency[cells]) / 2.0));
        }
        // Cells: linear in each stream's T. The streams carry different
        // digits, so T = 4 on the high stream costs other than on the low.
        let (base, high_once) = (at(vec![1, 1]), at(vec![1, 2]));
        assert!(near(hi.energy[cells], base.energy[cells] + 3.0 * (high_once.energy[cells] - base.energy[cells])));
        assert!(near(lo.energy[cells] + hi.energy[cells], u1.energy[cells] + u4.energy[cells]));
        assert!((lo.energy[cells] - hi.energy[cells]).abs() > 1e-6 * u1.energy[cells], "{} {}", lo.energy[cells], hi.energy[cells]);
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
            let (net, stox, ops) = tiny(ConverterSpec::Adc { bits: Some(bits), calibrated: false });
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
        assert_eq!(t.adc(4), (1.0, 100.0, 2.5)); // 4 + 1 SAR cycles of 0.5 ns
        let (e6, _, l6) = t.adc(6);
        assert!(near_rel(e6, 2.0) && near_rel(l6, 3.5)); // geometric midpoint of 1 and 4
        let (e10, a10, l10) = t.adc(10);
        assert!(near_rel(e10, 8.0) && near_rel(a10, 800.0) && near_rel(l10, 5.5));
    }

    /// SAR latency grows with bits (so low-bit and sparse ADCs gain time);
    /// a flash ADC converts in one comparator time with 2^b − 1 comparators.
    #[test]
    fn sar_and_flash_adcs() {
        let sar = tech();
        assert!(sar.adc(3).2 < sar.adc(8).2);
        let flash = Tech { adc_architecture: AdcArchitecture::Flash, ..tech() };
        let (e, a, l) = flash.adc(4);
        assert!(near_rel(e, 15.0 * 0.02) && near_rel(a, 15.0) && l == flash.sense_amp_latency);
        assert!(near_rel(flash.adc(8).0 / flash.adc(4).0, 255.0 / 15.0));
        assert_eq!(serde_json::from_value::<AdcArchitecture>(serde_json::json!("flash")).unwrap(), AdcArchitecture::Flash);
        assert!(serde_json::from_value::<AdcArchitecture>(serde_json::json!("pipelined")).unwrap_err().to_string().contains("unknown variant `pipelined`"));
    }

    /// With the read-convert pipeline an ADC layer takes n × the slower of
    /// read and conversion plus the faster once; an MTJ layer cannot overlap.
    #[test]
    fn read_convert_pipeline() {
        let serial = tech();
        let piped = Tech { pipeline: Pipeline::ReadConvert, ..tech() };
        let (net, stox, ops) = tiny(ConverterSpec::Adc { bits: Some(8), calibrated: false });
        let (a, b) = (&cost(&net, Some(&stox), &ops, &serial)[0], &cost(&net, Some(&stox), &ops, &piped)[0]);
        // 16 activations; read 9 + 1 ns; 4 logical columns share one ADC: 4 × 4.5 ns = 18 ns per activation.
        assert!(near(a.latency_total(), 16.0 * (10.0 + 18.0)));
        assert!(near(b.latency[2], 16.0 * 18.0) && near(b.latency[0], 10.0) && near(b.latency_total(), 16.0 * 18.0 + 10.0));
        assert_eq!(a.energy, b.energy);
        let (net, stox, ops) = tiny(ConverterSpec::Mtj(Converter::Mtj { curve: Curve::sigmoid(4.0), samples: 2 }));
        assert_eq!(cost(&net, Some(&stox), &ops, &serial)[0].latency, cost(&net, Some(&stox), &ops, &piped)[0].latency);
        assert_eq!(serde_json::from_value::<Pipeline>(serde_json::json!("read-convert")).unwrap(), Pipeline::ReadConvert);
    }
}
