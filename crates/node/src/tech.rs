//! Technologies and costs. ts/cost/tech.ts reads the technology files and
//! converts their units to the canonical ones (pJ, ns, µm², V, Ω, µA,
//! mW = pJ/ns); the core names the fields (`techFields()`) and reads them.

use napi_derive::napi;
use stoxnet_core::cost::{Dimension, LayerCost, Tech, COMPONENTS, FIELDS, MACRO};

/// A technology as an object of canonical values by field name.
pub fn tech(value: serde_json::Value) -> stoxnet_core::Result<Tech> {
    // The path names the field (and the list entry) a wrong value sits in.
    let tech: Tech = serde_path_to_error::deserialize(value).map_err(|e| match e.path().to_string().as_str() {
        "." => stoxnet_core::Error::new(e.inner().to_string()),
        path => stoxnet_core::Error::new(format!("field '{path}': {}", e.inner())),
    })?;
    tech.check()?;
    Ok(tech)
}

/// Checks a technology (canonical values by field name) as the cost model
/// will read it; the error names the field.
#[napi(ts_args_type = "technology: Record<string, number | number[] | string>")]
pub fn check_tech(technology: serde_json::Value) -> napi::Result<()> {
    crate::guard::guarded(|| tech(technology).map(|_| ()))
}

/// One field of a technology: its name, what it measures (the units it
/// takes), whether it is a list, and the values a choice may take.
#[napi(object)]
pub struct TechFieldJs {
    pub name: String,
    pub dimension: String,
    pub list: bool,
    pub choices: Vec<String>,
}

/// Every field a technology file gives.
#[napi]
pub fn tech_fields() -> Vec<TechFieldJs> {
    FIELDS
        .iter()
        .map(|f| TechFieldJs {
            name: f.name.into(),
            dimension: match f.dimension {
                Dimension::Energy => "energy",
                Dimension::Time => "time",
                Dimension::Area => "area",
                Dimension::Count => "count",
                Dimension::Voltage => "voltage",
                Dimension::Resistance => "resistance",
                Dimension::Current => "current",
                Dimension::Power => "power",
                Dimension::Choice => "choice",
            }
            .into(),
            list: f.list,
            choices: f.choices.iter().map(|c| c.to_string()).collect(),
        })
        .collect()
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
