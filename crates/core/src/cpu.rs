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
