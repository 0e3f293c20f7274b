//! Fixed vectors of the portable math (pmath.rs): the exact f32 bits of
//! exp, sigmoid, ln, cos 2π·u and the Box–Muller deviate on inputs that are
//! exact in f32 and in a JavaScript double. test/reference.test.ts asserts
//! the same bits for ts/reference/pmath.ts: together they hold the two
//! engines' math to one result, bit for bit (a last-bit difference could
//! flip an MTJ sample).

use stoxnet_core::pmath::{cos_2pi, exp, gaussian, ln, sigmoid};

fn bits(v: impl IntoIterator<Item = f32>) -> Vec<u32> {
    v.into_iter().map(f32::to_bits).collect()
}

#[test]
fn portable_math_fixed_vectors() {
    // Outside [−87, 88] exp clamps; sigmoid(−87.5) is subnormal.
    let xs = [-87.5f32, -20.25, -1.75, -0.125, 0.0, 0.3125, 1.0, 5.25, 88.75];
    assert_eq!(bits(xs.map(exp)), [0x00b33687, 0x30dc9ef1, 0x3e31f1cc, 0x3f61eb51, 0x3f800000, 0x3faef48c, 0x402df854, 0x433e90f7, 0x7ef882b7]);
    assert_eq!(bits(xs.map(sigmoid)), [0x006cb2bb, 0x30dc9ef0, 0x3e1799b0, 0x3ef00553, 0x3f000000, 0x3f13d6bc, 0x3f3b26a8, 0x3f7ea9e6, 0x3f800000]);
    let ys = [2f32.powi(-100), 2f32.powi(-10), 0.5, 1.0, 1.5, 2.0, 1000.0];
    assert_eq!(bits(ys.map(ln)), [0xc28aa123, 0xc0ddce9e, 0xbf317218, 0x00000000, 0x3ecf9920, 0x3f317218, 0x40dd0c55]);
    let us = [0f32, 0.125, 0.25, 0.3125, 0.5, 0.75, 1.0 - 2f32.powi(-14)];
    assert_eq!(bits(us.map(cos_2pi)), [0x3f800000, 0x3f3504f2, 0x00000000, 0xbec3ef16, 0xbf800000, 0x00000000, 0x3f7fffff]);
    // gaussian(1, 0) is −0: sqrt(−2·ln 1) = sqrt(−0).
    let gs = [(1f32, 0f32), (0.5, 0.25), (2f32.powi(-10), 0.125), (0.875, 0.625), (2f32.powi(-24), 1.0 - 2f32.powi(-10))];
    assert_eq!(bits(gs.map(|(a, b)| gaussian(a, b))), [0x80000000, 0x00000000, 0x40287f48, 0xbebb1842, 0x40b89372]);
}
