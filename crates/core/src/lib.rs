//! stoxnet-core: a simulator of in-memory-computing DNN accelerators whose
//! crossbar partial sums are converted by stochastic SOT-MTJs (StoX-Net).
//! Pure Rust, no FFI; the Node binding lives in `crates/node`.

pub mod engine;
pub mod error;
pub mod gemm;
pub mod graph;
pub mod layers;

pub use error::{Error, Result};
