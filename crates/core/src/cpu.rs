//! The instruction set of the hot kernels, chosen once at run time.
//!
//! The addon is built for the baseline of its target (x86-64: SSE2) so that
//! one prebuilt binary runs on every machine. The kernels that carry the
//! run time (gemm.rs, mvm.rs, the converters with their generator and
//! threshold lookup) are compiled once more per level below with
//! `#[target_feature]` (`multiversion!`), and each call takes the clone of
//! `level()`: the kernel is `#[inline(always)]` and generic over an [`Isa`]
//! marker (for its intrinsics), so each clone's loops are vectorised for its
//! own instruction set.
//!
//! Every level gives the same bits: Rust never contracts `a * b + c` into an
//! FMA (so vector width changes no rounding), `mul_add` is exactly rounded
//! with or without the FMA instruction, and the integer kernels (VNNI,
//! VPOPCNTDQ) are exact (see the tests in each kernel's module).
//!
//! `STOXNET_CPU=portable` (or `avx2`) caps the level, e.g. to compare paths
//! or to rule the vector code out when chasing a problem.

use std::sync::OnceLock;

/// Instruction-set levels, in increasing order of what they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The build target's baseline.
    Portable,
    /// x86-64-v3: AVX2, FMA, BMI1/2, LZCNT, POPCNT.
    Avx2,
    /// x86-64-v4 with VNNI and VPOPCNTDQ (Ice Lake, Zen 4 and later).
    Avx512,
}

/// Marker types naming a level at compile time, for kernels generic over it.
pub trait Isa {
    const LEVEL: Level;
}
pub struct Portable;
pub struct Avx2;
pub struct Avx512;
impl Isa for Portable {
    const LEVEL: Level = Level::Portable;
}
impl Isa for Avx2 {
    const LEVEL: Level = Level::Avx2;
}
impl Isa for Avx512 {
    const LEVEL: Level = Level::Avx512;
}

/// Defines `fn name(level: Level, args...)` that runs `body` compiled for
/// `level`: a `#[target_feature]` clone per level, in which `I` names the
/// level's marker type (for bodies generic over [`Isa`]). `body` calls
/// `#[inline(always)]` kernels, which inline into each clone and so are
/// vectorised with its features. (A generic clone taking the body as a
/// closure vectorised nothing: the closure was optimised on its own, for
/// the baseline, before it was inlined.) Callers pass a level that
/// `level()` or `available()` gave, which the CPU runs.
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident $(<$(const $g:ident: $gt:ty),*>)? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? { $isa:ident => $body:expr }) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name $(<$(const $g: $gt),*>)? (level: $crate::cpu::Level, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt,avx512f,avx512bw,avx512vl,avx512dq,avx512cd,avx512vnni,avx512vpopcntdq")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512 $(<$(const $g: $gt),*>)? ($($arg: $ty),*) $(-> $ret)? {
                #[allow(dead_code)]
                type $isa = $crate::cpu::Avx512;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2 $(<$(const $g: $gt),*>)? ($($arg: $ty),*) $(-> $ret)? {
                #[allow(dead_code)]
                type $isa = $crate::cpu::Avx2;
                $body
            }
            #[allow(clippy::too_many_arguments)]
            fn portable $(<$(const $g: $gt),*>)? ($($arg: $ty),*) $(-> $ret)? {
                #[allow(dead_code)]
                type $isa = $crate::cpu::Portable;
                $body
            }
            match level {
                // SAFETY: `level()` and `available()` only give levels this CPU runs.
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::Level::Avx512 => unsafe { avx512 $(::<$($g),*>)? ($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::Level::Avx2 => unsafe { avx2 $(::<$($g),*>)? ($($arg),*) },
                _ => portable $(::<$($g),*>)? ($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

/// The highest level this CPU runs.
pub fn best() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let v3 = has!("avx2") && has!("fma") && has!("bmi1") && has!("bmi2") && has!("lzcnt") && has!("popcnt");
        let v4 = has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") && has!("avx512cd") && has!("avx512vnni") && has!("avx512vpopcntdq");
        if v3 && v4 {
            return Level::Avx512;
        }
        if v3 {
            return Level::Avx2;
        }
    }
    Level::Portable
}

/// The level the kernels use: `best()`, capped by `STOXNET_CPU` (read once).
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("STOXNET_CPU").as_deref() {
            Ok("portable") => Level::Portable,
            Ok("avx2") => Level::Avx2,
            Ok("" | "native") | Err(_) => Level::Avx512,
            Ok(other) => {
                eprintln!("stoxnet: ignoring STOXNET_CPU={other} (portable, avx2 or native)");
                Level::Avx512
            }
        };
        best().min(cap)
    })
}

/// Every level this CPU runs, lowest first (for the tests that compare them).
pub fn available() -> Vec<Level> {
    [Level::Portable, Level::Avx2, Level::Avx512].into_iter().filter(|&l| l <= best()).collect()
}

/// This machine's FP32 multiply-add throughput at `level()`, in GFLOP/s:
/// `threads` threads at once, each running twelve independent chains of
/// vector fused multiply-adds (enough to hide their latency) for about
/// `seconds`. The bench sets the trainer's achieved GFLOP/s against it.
pub fn fma_peak_gflops(threads: usize, seconds: f64) -> crate::Result<f64> {
    const ROUND: usize = 1 << 16;
    if !(1..=1024).contains(&threads) {
        crate::bail!("fma peak: threads must be 1..1024, got {threads}");
    }
    if !(seconds > 0.0 && seconds <= 60.0) {
        crate::bail!("fma peak: seconds must be in (0, 60], got {seconds}");
    }
    let level = level();
    Ok(std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let start = std::time::Instant::now();
                    let (mut flops, mut sink) = (0f64, 0f32);
                    while start.elapsed().as_secs_f64() < seconds {
                        let (ops, v) = fma_chains(level, ROUND, t as f32);
                        flops += ops as f64;
                        sink += v;
                    }
                    std::hint::black_box(sink);
                    flops / start.elapsed().as_secs_f64() / 1e9
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0.0)).sum()
    }))
}

/// `rounds` rounds of twelve independent chains of the level's widest fused
/// multiply-add; returns the flops done and a value to keep. Written with
/// intrinsics: the compiler's vectorisation of the same loop over arrays
/// kept the chains in memory.
fn fma_chains(level: Level, rounds: usize, seed: f32) -> (usize, f32) {
    let (a, b) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-7f32));
    match level {
        // SAFETY: `level()` and `available()` only give levels this CPU runs.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::chains512(rounds, seed, a, b) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::chains256(rounds, seed, a, b) },
        _ => {
            let mut acc = [seed; 12];
            for _ in 0..rounds {
                acc.iter_mut().for_each(|v| *v = v.mul_add(a, b));
            }
            (rounds * 12 * 2, acc.iter().sum())
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn chains512(rounds: usize, seed: f32, a: f32, b: f32) -> (usize, f32) {
        let (mut acc, va, vb) = ([_mm512_set1_ps(seed); 12], _mm512_set1_ps(a), _mm512_set1_ps(b));
        for _ in 0..rounds {
            acc.iter_mut().for_each(|v| *v = _mm512_fmadd_ps(*v, va, vb));
        }
        (rounds * 12 * 16 * 2, acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum())
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn chains256(rounds: usize, seed: f32, a: f32, b: f32) -> (usize, f32) {
        let (mut acc, va, vb) = ([_mm256_set1_ps(seed); 12], _mm256_set1_ps(a), _mm256_set1_ps(b));
        for _ in 0..rounds {
            acc.iter_mut().for_each(|v| *v = _mm256_fmadd_ps(*v, va, vb));
        }
        let mut lanes = [0f32; 8];
        let sum = acc.iter().map(|&v| {
            _mm256_storeu_ps(lanes.as_mut_ptr(), v);
            lanes.iter().sum::<f32>()
        });
        (rounds * 12 * 8 * 2, sum.sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fma_peak_counts_flops_and_refuses_bad_arguments() {
        // Twelve chains of the level's lanes (portable: scalar), two flops per multiply-add.
        for level in available() {
            let lanes = match level {
                Level::Portable => 1,
                Level::Avx2 => 8,
                Level::Avx512 => 16,
            };
            assert_eq!(fma_chains(level, 3, 1.0).0, 3 * 12 * lanes * 2, "{level:?}");
        }
        let peak = fma_peak_gflops(1, 0.05).unwrap();
        assert!(peak.is_finite() && peak > 0.0, "{peak}");
        assert!(fma_peak_gflops(0, 0.1).unwrap_err().0.contains("threads"));
        assert!(fma_peak_gflops(1, f64::NAN).unwrap_err().0.contains("seconds"));
    }
}
