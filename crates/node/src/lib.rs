//! Thin N-API binding of stoxnet-core: converts values between JavaScript
//! and the core, runs the core off the JS thread, and turns core errors and
//! panics into JavaScript exceptions. Every rule (validation, defaults,
//! assembly) is the core's.

pub mod guard;
pub mod layer;
pub mod network;
pub mod simulator;
pub mod tech;
pub mod trainer;

/// The instruction-set level the core's kernels run at on this CPU, after
/// `STOXNET_CPU`: `portable`, `avx2` or `avx512` (see core/src/cpu.rs).
#[napi_derive::napi]
pub fn cpu_level() -> String {
    format!("{:?}", stoxnet_core::cpu::level()).to_lowercase()
}

/// This machine's FP32 fused multiply-add throughput in GFLOP/s on
/// `threads` threads at once, measured for about `seconds` (core/src/cpu.rs).
#[napi_derive::napi]
pub fn fma_peak_gflops(threads: u32, seconds: f64) -> napi::Result<f64> {
    guard::guarded(|| stoxnet_core::cpu::fma_peak_gflops(threads as usize, seconds))
}
