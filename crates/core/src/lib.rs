//! stoxnet-core: a simulator of in-memory-computing DNN accelerators whose
//! crossbar partial sums are converted by stochastic SOT-MTJs (StoX-Net).
//! Pure Rust, no FFI; the Node binding lives in `crates/node`.

pub mod buffers;
pub mod calibrate;
pub mod config;
pub mod converter;
pub mod cost;
pub mod counts;
pub mod cpu;
pub mod crossbar;
pub mod engine;
pub mod error;
pub mod gemm;
pub mod graph;
pub mod layers;
pub mod mtj;
pub mod mvm;
pub mod pmath;
pub mod quant;
pub mod rng;
pub mod simulator;
pub mod train;
pub mod winograd;

pub use error::{Error, Result};
