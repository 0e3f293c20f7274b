//! Technologies (in canonical units: pJ, ns, µm², V, Ω, µW, µA) and costs.

use napi_derive::napi;
use stoxnet_core::cost::{LayerCost, Tech, COMPONENTS, MACRO};

/// A technology in canonical units; ts/cost/tech.ts loads the JSON files
/// and converts their units.
#[napi(object)]
pub struct TechJs {
    pub read_voltage: f64,
    pub cell_on_resistance: f64,
    pub cell_off_resistance: f64,
    pub read_pulse: f64,
    pub read_settling: f64,
    pub cell_area: f64,
    pub dac_power: f64,
    pub dac_area: f64,
    pub adc_architecture: String,
    pub adc_bits: Vec<u32>,
    pub adc_energy: Vec<f64>,
    pub adc_area: Vec<f64>,
    pub adc_cycle: f64,
    pub adc_sharing: u32,
    pub sample_hold_energy: f64,
    pub sample_hold_area: f64,
    pub sense_amp_energy: f64,
    pub sense_amp_area: f64,
    pub sense_amp_latency: f64,
    pub mtj_write_current: f64,
    pub mtj_resistance: f64,
    pub mtj_read_energy: f64,
    pub mtj_reset_energy: f64,
    pub mtj_sample_latency: f64,
    pub mtj_area: f64,
    pub shift_add_energy: f64,
    pub shift_add_area: f64,
    pub buffer_energy: f64,
    pub digital_mac_energy: f64,
    pub digital_op_energy: f64,
    pub digital_rate: f64,
    pub digital_area: f64,
    pub pipeline: String,
}

/// One node's cost per image: energy (pJ), area (µm²) and latency (ns) per
/// component (names in `costComponents()`).
#[napi(object)]
pub struct LayerCostJs {
    pub energy: Vec<f64>,
    pub area: Vec<f64>,
    pub latency: Vec<f64>,
}

impl From<&LayerCost> for LayerCostJs {
    fn from(c: &LayerCost) -> LayerCostJs {
        LayerCostJs { energy: c.energy.to_vec(), area: c.area.to_vec(), latency: c.latency.to_vec() }
    }
}

#[napi]
pub fn cost_components() -> Vec<String> {
    COMPONENTS.iter().map(|s| s.to_string()).collect()
}

/// The components of the `macro` scope (crossbars and their periphery); the
/// `system` scope is all of `costComponents()`.
#[napi]
pub fn macro_components() -> Vec<String> {
    COMPONENTS[..MACRO].iter().map(|s| s.to_string()).collect()
}

impl TryFrom<&TechJs> for Tech {
    type Error = stoxnet_core::Error;

    fn try_from(t: &TechJs) -> stoxnet_core::Result<Tech> {
        let tech = Tech {
            read_voltage: t.read_voltage,
            cell_on_resistance: t.cell_on_resistance,
            cell_off_resistance: t.cell_off_resistance,
            read_pulse: t.read_pulse,
            read_settling: t.read_settling,
            cell_area: t.cell_area,
            dac_power: t.dac_power,
            dac_area: t.dac_area,
            adc_architecture: t.adc_architecture.parse()?,
            adc_bits: t.adc_bits.clone(),
            adc_energy: t.adc_energy.clone(),
            adc_area: t.adc_area.clone(),
            adc_cycle: t.adc_cycle,
            adc_sharing: t.adc_sharing,
            sample_hold_energy: t.sample_hold_energy,
            sample_hold_area: t.sample_hold_area,
            sense_amp_energy: t.sense_amp_energy,
            sense_amp_area: t.sense_amp_area,
            sense_amp_latency: t.sense_amp_latency,
            mtj_write_current: t.mtj_write_current,
            mtj_resistance: t.mtj_resistance,
            mtj_read_energy: t.mtj_read_energy,
            mtj_reset_energy: t.mtj_reset_energy,
            mtj_sample_latency: t.mtj_sample_latency,
            mtj_area: t.mtj_area,
            shift_add_energy: t.shift_add_energy,
            shift_add_area: t.shift_add_area,
            buffer_energy: t.buffer_energy,
            digital_mac_energy: t.digital_mac_energy,
            digital_op_energy: t.digital_op_energy,
            digital_rate: t.digital_rate,
            digital_area: t.digital_area,
            pipeline: t.pipeline.parse()?,
        };
        tech.check()?;
        Ok(tech)
    }
}
