//! Crossbar layer settings as the facade resolves them (ts/stox.ts), what
//! calibration decided, and operation counts, converted to and from the
//! core's types. The string enums give TypeScript literal unions.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use stoxnet_core::calibrate::Resolved;
use stoxnet_core::config::{ColumnParams, ConverterSpec, LayerSpec, Mapping, Noise, SignedMapping, Split};
use stoxnet_core::converter::Converter;
use stoxnet_core::counts::OpCounts;
use stoxnet_core::crossbar::CrossbarLayer;
use stoxnet_core::mtj::{Curve, Transfer};
use stoxnet_core::quant::WeightQuant;

#[napi(string_enum = "kebab-case")]
pub enum SplitJs {
    Balanced,
    Filled,
}

#[napi(string_enum = "kebab-case")]
pub enum WeightQuantJs {
    Uniform,
    Away,
}

#[napi(string_enum = "kebab-case")]
pub enum SignedJs {
    Differential,
    Offset,
}

#[napi(string_enum = "kebab-case")]
pub enum ConverterJs {
    Ideal,
    Adc,
    SparseAdc,
    SenseAmp,
    Mtj,
}

#[napi(string_enum = "kebab-case")]
pub enum AdcRangeJs {
    Full,
    Calibrated,
}

#[napi(string_enum = "kebab-case")]
pub enum TransferJs {
    Sigmoid,
    Tanh,
    Fitted,
}

/// One crossbar layer. `adcBits` absent: lossless for the layer; `inputClip`
/// and `params` absent: calibrated.
#[napi(object)]
pub struct LayerSpecJs {
    pub rows: u32,
    pub cols: u32,
    pub split: SplitJs,
    pub weight_bits: u32,
    pub weight_slice_bits: u32,
    pub input_bits: u32,
    pub input_stream_bits: u32,
    pub weight_quant: WeightQuantJs,
    pub signed: SignedJs,
    pub converter: ConverterJs,
    pub adc_bits: Option<u32>,
    pub adc_range: AdcRangeJs,
    pub transfer: TransferJs,
    pub sensitivity: f64,
    pub samples: u32,
    /// T per input stream, least significant first (replaces `samples`).
    pub samples_per_stream: Option<Vec<u32>>,
    pub input_clip: Option<f64>,
    pub input_signed: bool,
    pub cell_noise: f64,
    pub read_noise: f64,
    pub mtj_offset_sigma: f64,
    pub mtj_slope_sigma: f64,
    pub params: Option<ColumnParamsJs>,
}

/// Per-column converter parameters (crates/core/src/config.rs `ColumnParams`); absent = calibrated.
#[napi(object)]
pub struct ColumnParamsJs {
    pub adc_lo: Option<Float32Array>,
    pub adc_step: Option<Float32Array>,
    pub norm_scale: Option<Float32Array>,
    pub norm_shift: Option<Float32Array>,
    pub readout_gain: Option<Float32Array>,
    pub readout_offset: Option<Float32Array>,
}

impl From<&ColumnParamsJs> for ColumnParams {
    fn from(p: &ColumnParamsJs) -> ColumnParams {
        let v = |a: &Option<Float32Array>| a.as_ref().map_or(Vec::new(), |a| a.to_vec());
        ColumnParams {
            adc_lo: v(&p.adc_lo),
            adc_step: v(&p.adc_step),
            norm_scale: v(&p.norm_scale),
            norm_shift: v(&p.norm_shift),
            readout_gain: v(&p.readout_gain),
            readout_offset: v(&p.readout_offset),
        }
    }
}

impl From<&ColumnParams> for ColumnParamsJs {
    fn from(p: &ColumnParams) -> ColumnParamsJs {
        let arr = |v: &Vec<f32>| (!v.is_empty()).then(|| Float32Array::new(v.clone()));
        ColumnParamsJs {
            adc_lo: arr(&p.adc_lo),
            adc_step: arr(&p.adc_step),
            norm_scale: arr(&p.norm_scale),
            norm_shift: arr(&p.norm_shift),
            readout_gain: arr(&p.readout_gain),
            readout_offset: arr(&p.readout_offset),
        }
    }
}

impl From<&LayerSpecJs> for LayerSpec {
    fn from(l: &LayerSpecJs) -> LayerSpec {
        let mapping = Mapping {
            rows: l.rows as usize,
            cols: l.cols as usize,
            split: match l.split {
                SplitJs::Balanced => Split::Balanced,
                SplitJs::Filled => Split::Filled,
            },
            weight_bits: l.weight_bits,
            weight_slice_bits: l.weight_slice_bits,
            input_bits: l.input_bits,
            input_stream_bits: l.input_stream_bits,
            weight_quant: match l.weight_quant {
                WeightQuantJs::Uniform => WeightQuant::Uniform,
                WeightQuantJs::Away => WeightQuant::Away,
            },
            signed: match l.signed {
                SignedJs::Differential => SignedMapping::Differential,
                SignedJs::Offset => SignedMapping::Offset,
            },
        };
        let transfer = match l.transfer {
            TransferJs::Sigmoid => Transfer::Sigmoid,
            TransferJs::Tanh => Transfer::Tanh,
            TransferJs::Fitted => Transfer::Fitted,
        };
        let converter = match l.converter {
            ConverterJs::Ideal => ConverterSpec::Ideal,
            ConverterJs::Adc => ConverterSpec::Adc { bits: l.adc_bits, calibrated: matches!(l.adc_range, AdcRangeJs::Calibrated) },
            ConverterJs::SparseAdc => ConverterSpec::SparseAdc,
            ConverterJs::SenseAmp => ConverterSpec::SenseAmp,
            ConverterJs::Mtj => ConverterSpec::Mtj(Converter::Mtj { curve: Curve::new(transfer, l.sensitivity as f32), samples: l.samples }),
        };
        LayerSpec {
            mapping,
            converter,
            input_clip: l.input_clip.map(|c| c as f32),
            input_signed: l.input_signed,
            noise: Noise { cell: l.cell_noise as f32, read: l.read_noise as f32, mtj_offset: l.mtj_offset_sigma as f32, mtj_slope: l.mtj_slope_sigma as f32 },
            params: l.params.as_ref().map_or_else(ColumnParams::default, ColumnParams::from),
            samples_per_stream: l.samples_per_stream.clone().unwrap_or_default(),
        }
    }
}

/// A converter as resolved: its kind, and the ADC bits or MTJ samples.
fn converter_js(c: &Converter) -> (ConverterJs, Option<u32>, Option<u32>) {
    match *c {
        Converter::Ideal => (ConverterJs::Ideal, None, None),
        Converter::Adc { bits } => (ConverterJs::Adc, Some(bits), None),
        Converter::SenseAmp => (ConverterJs::SenseAmp, None, None),
        Converter::Mtj { samples, .. } => (ConverterJs::Mtj, None, Some(samples)),
    }
}

/// What calibration decided for one crossbar layer, and its geometry.
#[napi(object)]
pub struct ResolvedJs {
    pub node: u32,
    pub input_clip: f64,
    pub converter: ConverterJs,
    pub adc_bits: Option<u32>,
    pub samples: Option<u32>,
    pub subarrays: u32,
    pub physical_subarrays: u32,
    pub subarray_rows: Vec<u32>,
    pub params: ColumnParamsJs,
}

pub fn resolved_js(node: usize, r: &Resolved, layer: &CrossbarLayer) -> ResolvedJs {
    let (converter, adc_bits, samples) = converter_js(&r.converter);
    ResolvedJs {
        node: node as u32,
        input_clip: r.input_clip as f64,
        converter,
        adc_bits,
        samples,
        subarrays: layer.subarrays() as u32,
        physical_subarrays: layer.physical_subarrays() as u32,
        subarray_rows: layer.ranges.iter().map(|(a, b)| (b - a) as u32).collect(),
        params: (&r.params).into(),
    }
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

pub fn learned_js(node: usize, layer: &stoxnet_core::config::LayerConfig) -> LearnedJs {
    LearnedJs { node: node as u32, input_clip: layer.input_clip as f64, adc_bits: converter_js(&layer.converter).1, params: (&layer.params).into() }
}

/// Operation counts of one node (crates/core/src/counts.rs), summed over
/// the images classified; the partial-sum range is absent where none was seen.
#[napi(object)]
pub struct OpCountsJs {
    pub images: f64,
    pub subarray_reads: f64,
    pub cell_reads: f64,
    pub dac_drives: f64,
    pub active_rows: f64,
    pub drive_sq: f64,
    pub cell_load: f64,
    pub pulse_rows: f64,
    pub pulse_sq: f64,
    pub pulse_load: f64,
    pub conversions: f64,
    pub mtj_samples: f64,
    pub shift_adds: f64,
    pub digital_macs: f64,
    pub digital_ops: f64,
    pub ps_min: Option<f64>,
    pub ps_max: Option<f64>,
}

impl From<&OpCounts> for OpCountsJs {
    fn from(o: &OpCounts) -> OpCountsJs {
        let finite = |v: f32| v.is_finite().then_some(v as f64);
        OpCountsJs {
            images: o.images as f64,
            subarray_reads: o.subarray_reads as f64,
            cell_reads: o.cell_reads as f64,
            dac_drives: o.dac_drives as f64,
            active_rows: o.active_rows as f64,
            drive_sq: o.drive_sq as f64,
            cell_load: o.cell_load as f64,
            pulse_rows: o.pulse_rows as f64,
            pulse_sq: o.pulse_sq as f64,
            pulse_load: o.pulse_load as f64,
            conversions: o.conversions as f64,
            mtj_samples: o.mtj_samples as f64,
            shift_adds: o.shift_adds as f64,
            digital_macs: o.digital_macs as f64,
            digital_ops: o.digital_ops as f64,
            ps_min: finite(o.ps_min),
            ps_max: finite(o.ps_max),
        }
    }
}
