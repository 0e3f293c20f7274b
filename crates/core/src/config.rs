//! What a crossbar layer is asked to be (`LayerSpec`, open fields
//! calibrated) and what it is once resolved (`LayerConfig`): the mapping of
//! weights and inputs onto subarrays, the converter, device noise and the
//! per-column converter parameters. Validation of these lives here.

use crate::bail;
use crate::converter::Converter;
use crate::error::Result;
use crate::quant::WeightQuant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// S = ceil(K/rows) equal chunks, as torch.chunk (the authors' code).
    Balanced,
    /// Full subarrays of `rows` plus a remainder.
    Filled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedMapping {
    /// A positive and a negative column per weight column; their currents
    /// are subtracted before the converter.
    Differential,
    /// Weights stored offset-binary (q + 2^(b−1)) in one column; one
    /// reference column per subarray holds the offset and is subtracted
    /// before the converter.
    Offset,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub rows: usize,
    /// Physical columns per subarray (tiling of wide layers; cost only).
    pub cols: usize,
    pub split: Split,
    pub weight_bits: u32,
    pub weight_slice_bits: u32,
    pub input_bits: u32,
    pub input_stream_bits: u32,
    pub weight_quant: WeightQuant,
    pub signed: SignedMapping,
}

impl Mapping {
    /// Bits of the magnitudes the cells store: symmetric uniform levels reach
    /// ±(2^(b−1) − 1), so b − 1 bits (one for binary ±1); 'away' levels reach
    /// ±2^(b−1) and offset-binary codes 2^b − 1, so b bits. Slicing only
    /// these bits leaves no slice that is zero by design.
    pub fn magnitude_bits(&self) -> u32 {
        match (self.signed, self.weight_quant) {
            (SignedMapping::Differential, WeightQuant::Uniform) => (self.weight_bits - 1).max(1),
            _ => self.weight_bits,
        }
    }

    pub fn slices(&self) -> usize {
        self.magnitude_bits().div_ceil(self.weight_slice_bits) as usize
    }

    pub fn streams(&self) -> usize {
        self.input_bits.div_ceil(self.input_stream_bits) as usize
    }

    /// The weight of (weight slice `slice`, input stream `stream`) in the
    /// shift-and-add: 2^(slice·weight slice bits + stream·input stream bits).
    pub fn shift(&self, slice: usize, stream: usize) -> f32 {
        (1u64 << (slice as u32 * self.weight_slice_bits + stream as u32 * self.input_stream_bits)) as f32
    }

    pub fn validate(&self, at: &str) -> Result<()> {
        if self.rows == 0 || self.cols == 0 {
            bail!("{at}: rows and cols must be > 0 (rows {}, cols {})", self.rows, self.cols);
        }
        for (name, v, max) in [("weight bits", self.weight_bits, 16), ("input bits", self.input_bits, 16)] {
            if v == 0 || v > max {
                bail!("{at}: {name} must be in 1..={max}, got {v}");
            }
        }
        if self.weight_slice_bits == 0 || self.weight_slice_bits > self.weight_bits {
            bail!("{at}: weight slice bits must be in 1..={}, got {}", self.weight_bits, self.weight_slice_bits);
        }
        if self.input_stream_bits == 0 || self.input_stream_bits > self.input_bits {
            bail!("{at}: input stream bits must be in 1..={}, got {}", self.input_bits, self.input_stream_bits);
        }
        if self.weight_quant == WeightQuant::Away && self.signed == SignedMapping::Offset {
            bail!("{at}: weight quantiser 'away' needs the differential mapping (its levels ±1…±2^(b−1) have no offset-binary code in b bits)");
        }
        // Integer partial sums stay exact in f32 below 2^24.
        let bound = self.rows as f64 * ((1u64 << self.weight_slice_bits) - 1) as f64 * ((1u64 << self.input_stream_bits) - 1) as f64;
        if bound >= (1u64 << 24) as f64 {
            bail!("{at}: rows × slice levels × stream levels = {bound} reaches 2^24; partial sums would not be exact in f32");
        }
        Ok(())
    }

    /// The fewest ADC bits that convert every partial sum this mapping can
    /// produce for a layer of `k` rows exactly, on the signed range
    /// [−bound, bound] a full-range ADC spans: bound = the largest subarray's
    /// real rows × the largest digit a slice can hold (the top slice may hold
    /// fewer bits) × the largest stream digit. Balanced 1-bit slices and
    /// streams on 72–116 rows need 8 bits, not the 9 of log2(128) + 1 + 1.
    pub fn lossless_adc_bits(&self, k: usize, input_signed: bool) -> u32 {
        let rows = split_rows(k, self.rows, self.split).iter().map(|(a, b)| b - a).max().unwrap_or(0) as f64;
        // Largest digit when `bits` are cut into pieces of `width` (the first piece is the widest).
        let widest = |bits: u32, width: u32| ((1u64 << width.min(bits)) - 1) as f64;
        let input_bits = if input_signed { (self.input_bits - 1).max(1) } else { self.input_bits };
        let bound = rows * widest(self.magnitude_bits(), self.weight_slice_bits) * widest(input_bits, self.input_stream_bits);
        (2.0 * bound + 1.0).log2().ceil() as u32
    }
}

/// Row ranges `[k0, k1)` of the subarrays for a layer with `k` rows.
pub fn split_rows(k: usize, rows: usize, split: Split) -> Vec<(usize, usize)> {
    let chunk = match split {
        Split::Balanced => k.div_ceil(k.div_ceil(rows)),
        Split::Filled => rows,
    };
    (0..k).step_by(chunk).map(|k0| (k0, (k0 + chunk).min(k))).collect()
}

/// Device non-idealities, all drawn from the seed (rng.rs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Noise {
    /// Relative σ of each programmed cell's conductance: g·(1 + σ·N(0,1)).
    pub cell: f32,
    /// σ of additive Gaussian read noise per conversion, in partial-sum LSB
    /// (one cell level × one input level).
    pub read: f32,
    /// σ of each MTJ's transfer-curve offset (in normalised x units).
    pub mtj_offset: f32,
    /// Relative σ of each MTJ's transfer-curve slope.
    pub mtj_slope: f32,
}

/// Per-column converter parameters, each `S × slices × streams × out` long
/// in canonical order, or empty for the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnParams {
    pub adc_lo: Vec<f32>,
    pub adc_step: Vec<f32>,
    pub norm_scale: Vec<f32>,
    pub norm_shift: Vec<f32>,
    pub readout_gain: Vec<f32>,
    pub readout_offset: Vec<f32>,
}

/// A layer's crossbar configuration, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerConfig {
    pub mapping: Mapping,
    pub converter: Converter,
    pub input_clip: f32,
    pub input_signed: bool,
    pub noise: Noise,
    pub params: ColumnParams,
    /// MTJ samples per input stream, least significant stream first; empty:
    /// the converter's T in every stream. A stream's errors are scaled by
    /// its shift in the shift-and-add, so weighting T by significance puts
    /// the samples where the noise counts (crossbar.rs validates it).
    pub samples_per_stream: Vec<u32>,
}

impl LayerConfig {
    /// The converter of input stream `j`: the MTJ at that stream's T when T
    /// is given per stream.
    pub fn stream_converter(&self, j: usize) -> Converter {
        match (self.converter, self.samples_per_stream.get(j)) {
            (Converter::Mtj { curve, .. }, Some(&samples)) => Converter::Mtj { curve, samples },
            (c, _) => c,
        }
    }

    /// Read pulses per read of input stream `j`: an MTJ's every sample is
    /// driven by the column current; other converters read once.
    pub fn pulses(&self, j: usize) -> u32 {
        match self.stream_converter(j) {
            Converter::Mtj { samples, .. } => samples,
            _ => 1,
        }
    }

    /// Read pulses over one read of every input stream.
    pub fn pulses_all_streams(&self) -> u32 {
        (0..self.mapping.streams()).map(|j| self.pulses(j)).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConverterSpec {
    Ideal,
    /// `calibrated`: range from the observed partial sums; else the full
    /// range. `bits` `None`: lossless for the layer (`Mapping::lossless_adc_bits`).
    Adc {
        bits: Option<u32>,
        calibrated: bool,
    },
    SparseAdc,
    SenseAmp,
    Mtj(Converter),
}

/// What the user asked for one layer; `None` fields are calibrated.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub mapping: Mapping,
    pub converter: ConverterSpec,
    pub input_clip: Option<f32>,
    pub input_signed: bool,
    pub noise: Noise,
    /// Given parameters (a trained model's); empty vectors are calibrated.
    pub params: ColumnParams,
    /// As `LayerConfig::samples_per_stream`.
    pub samples_per_stream: Vec<u32>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn mapping(split: Split, weight_slice_bits: u32, input_stream_bits: u32, weight_quant: WeightQuant, signed: SignedMapping) -> Mapping {
        Mapping { rows: 128, cols: 128, split, weight_bits: 4, weight_slice_bits, input_bits: 4, input_stream_bits, weight_quant, signed }
    }

    #[test]
    fn lossless_bits_follow_the_real_rows() {
        use {SignedMapping::*, Split::*, WeightQuant::*};
        // 1-bit slices and streams, balanced over ResNet20's 144, 288, 576 rows
        // (72, 96, 116 per subarray): at most 2·116 + 1 = 233 levels, 8 bits.
        for k in [144, 288, 576] {
            assert_eq!(mapping(Balanced, 1, 1, Uniform, Differential).lossless_adc_bits(k, false), 8, "k = {k}");
        }
        // Filled 128-row subarrays: 2·128 + 1 = 257 levels, 9 bits.
        assert_eq!(mapping(Filled, 1, 1, Uniform, Differential).lossless_adc_bits(576, false), 9);
        // One 4-bit slice (magnitudes ≤ 7) and one 4-bit stream (≤ 15): 2·116·7·15 + 1 = 24361 → 15 bits; 2·72·7·15 + 1 = 15121 → 14.
        assert_eq!(mapping(Balanced, 4, 4, Uniform, Differential).lossless_adc_bits(576, false), 15);
        assert_eq!(mapping(Balanced, 4, 4, Uniform, Differential).lossless_adc_bits(144, false), 14);
        // 2-bit slices of 3 magnitude bits: the first slice holds digits ≤ 3; 2-bit streams ≤ 3: 2·96·3·3 + 1 = 1729 → 11 bits.
        assert_eq!(mapping(Balanced, 2, 2, Uniform, Differential).lossless_adc_bits(288, false), 11);
        // Signed inputs have 3 magnitude bits: 2·116·7·7 + 1 = 11369 → 14 bits.
        assert_eq!(mapping(Balanced, 4, 4, Uniform, Differential).lossless_adc_bits(576, true), 14);
        // Offset-binary 4-bit codes in 1-bit slices: 1-bit digits, 8 bits on 116 rows.
        assert_eq!(mapping(Balanced, 1, 1, Uniform, Offset).lossless_adc_bits(576, false), 8);
    }

    /// Slicing the magnitudes the quantiser produces leaves every slice used.

    #[test]
    fn splits_match_the_authors_chunks() {
        let sizes = |k, split| split_rows(k, 128, split).iter().map(|(a, b)| b - a).collect::<Vec<_>>();
        assert_eq!(sizes(144, Split::Balanced), vec![72, 72]);
        assert_eq!(sizes(288, Split::Balanced), vec![96, 96, 96]);
        assert_eq!(sizes(576, Split::Balanced), vec![116, 116, 116, 116, 112]);
        assert_eq!(sizes(144, Split::Filled), vec![128, 16]);
        assert_eq!(sizes(27, Split::Balanced), vec![27]);
        // torch.chunk can return fewer chunks than requested: 9 rows, 4 wanted → 3+3+3.
        assert_eq!(split_rows(9, 3, Split::Balanced).len(), 3);
    }
}
