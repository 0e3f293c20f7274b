//! Portable math: `exp`, `sigmoid`, `ln` and `cos` built only from IEEE
//! operations that are correctly rounded everywhere (+, −, ×, ÷, sqrt,
//! floor, exponent bit tricks), each step rounded to f32.
//!
//! The libm `exp`/`tanh`/`log` of Rust and of V8 may differ in the last bit,
//! and a last-bit difference can flip a stochastic sample. Every value that
//! decides a sample or a noise draw is therefore computed here, and
//! ts/reference/pmath.ts repeats the same sequence with `Math.fround`, so the
//! native engine and the JS reference agree bit for bit. Accuracy is about
//! 2 ulp in f32, far below anything the simulation can resolve.

const LOG2E: f32 = std::f32::consts::LOG2_E;
// Cody–Waite split of ln 2: the high part has few mantissa bits, so n·LN2_HI is exact.
const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0.693145751953125
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e); // 1.4286068e-6

/// `2^n` for integer `n` in [-126, 127]: adding 2^23 + 127 puts n + 127 in
/// the low mantissa bits, and shifting them into the exponent field gives
/// exactly 2^n without a float-to-int conversion (so it vectorises).
#[inline(always)]
fn pow2(n: f32) -> f32 {
    f32::from_bits((n + 8_388_735.0).to_bits() << 23)
}

/// e^x, with x clamped to [-87, 88] (outside it f32 over/underflows anyway).
#[inline(always)]
// Not `clamp`: max/min map NaN to -87 as the JS reference does; clamp keeps NaN.
#[allow(clippy::manual_clamp)]
pub fn exp(x: f32) -> f32 {
    let x = x.max(-87.0).min(88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor terms to r^7 on |r| <= ln2/2: error < 2e-8 relative.
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    p * pow2(n)
}

/// An integer-valued `x` in [0, 2^23) as u32 without a float-to-int
/// conversion: adding 2^23 puts it in the low mantissa bits, exactly, and
/// loops of it vectorise.
#[inline(always)]
pub fn small_uint(x: f32) -> u32 {
    (x + 8_388_608.0).to_bits() & 0x7f_ffff
}

/// 1 / (1 + e^-z).
#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// Natural log of x > 0 (x <= 0 gives -87.3, the log of the smallest normal).
pub fn ln(x: f32) -> f32 {
    let x = if x > f32::MIN_POSITIVE { x } else { f32::MIN_POSITIVE };
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = 1.0 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    let ef = e as f32;
    ef * LN2_HI + (ef * LN2_LO + 2.0 * s * p)
}

/// cos(2π·u) for u in [0, 1).
pub fn cos_2pi(u: f32) -> f32 {
    // Reduce to t in [-1/2, 1/2] turns, then to x = 2πt in [-π, π] and fold to [0, π/2].
    let t = u - (u + 0.5).floor();
    let a = if t < 0.0 { -t } else { t }; // cos is even: a in [0, 1/2]
    let (a, sign) = if a > 0.25 { (0.5 - a, -1.0f32) } else { (a, 1.0) };
    let x = a * std::f32::consts::TAU; // [0, π/2]
    let x2 = x * x;
    let mut p = 1.0 / 479_001_600.0; // 1/12!
    p = p * -x2 + 1.0 / 3_628_800.0;
    p = p * -x2 + 1.0 / 40_320.0;
    p = p * -x2 + 1.0 / 720.0;
    p = p * -x2 + 1.0 / 24.0;
    p = p * -x2 + 0.5;
    p = p * -x2 + 1.0;
    sign * p
}

/// A standard normal deviate from two uniforms in (0, 1] and [0, 1)
/// (Box–Muller, cosine branch).
pub fn gaussian(u1: f32, u2: f32) -> f32 {
    (-2.0 * ln(u1)).sqrt() * cos_2pi(u2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_libm() {
        let mut worst = [0f64; 4];
        for i in 0..=20_000 {
            let x = -20.0 + i as f32 * 0.002;
            worst[0] = worst[0].max(((exp(x) as f64) / (x as f64).exp() - 1.0).abs());
            let z = -8.0 + i as f32 * 0.0008;
            let s = 1.0 / (1.0 + (-(z as f64)).exp());
            worst[1] = worst[1].max((sigmoid(z) as f64 - s).abs());
            let y = 1e-6 + i as f32 * 0.05;
            worst[2] = worst[2].max((ln(y) as f64 - (y as f64).ln()).abs());
            let u = i as f32 / 20_001.0;
            worst[3] = worst[3].max((cos_2pi(u) as f64 - (std::f64::consts::TAU * u as f64).cos()).abs());
        }
        assert!(worst[0] < 4e-7, "exp rel err {}", worst[0]);
        assert!(worst[1] < 2e-7, "sigmoid abs err {}", worst[1]);
        assert!(worst[2] < 2e-6, "ln abs err {}", worst[2]);
        assert!(worst[3] < 5e-7, "cos abs err {}", worst[3]);
    }

    #[test]
    fn gaussian_moments() {
        // 200k deviates from a fixed stream: mean within 5 sigma/sqrt(n) of 0
        // (5/447 = 0.011), variance within 5·sqrt(2/n) of 1 (0.016).
        let mut r = crate::rng::stream(3, &[9]);
        let n = 200_000;
        let (mut s, mut s2) = (0f64, 0f64);
        for _ in 0..n {
            use rand_core::RngCore;
            let u1 = 1.0 - crate::rng::unit24(r.next_u32());
            let u2 = crate::rng::unit24(r.next_u32());
            let g = gaussian(u1, u2) as f64;
            s += g;
            s2 += g * g;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.011, "mean {mean}");
        assert!((var - 1.0).abs() < 0.016, "var {var}");
    }
}
