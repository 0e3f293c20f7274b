// The float32 fused multiply-add of crates/core/src/gemm.rs (Rust's
// f32::mul_add): `a·b + c` computed exactly and rounded once to float32
// (to nearest, ties to even), for a, b, c float32 values held in doubles.
//
// Exact emulation in float64:
// - p = a·b is exact: 24 + 24 significant bits fit in 53, and the exponent
//   range of float32 products lies well inside float64's.
// - s = p + c rounds once, to float64; TwoSum gives its exact error e
//   (p + c = s + e exactly).
// - r = fround(s) rounds twice. Rounding to float64 is monotone and every
//   float32 midpoint (the point halfway between two adjacent float32 values)
//   is a float64 value, so s lies on the same side of each midpoint as the
//   exact sum, or on it. Only when s is exactly a midpoint can r be wrong:
//   fround breaks the tie to even, while the exact sum s + e (e ≠ 0) lies
//   strictly on one side of it. The answer is then the neighbour on e's side.
// - Signed zeros follow from float64 arithmetic, whose rules are IEEE 754's:
//   an exact zero sum is +0 unless both terms are −0, and a sum that
//   underflows to zero keeps its sign. Infinite and NaN operands give what
//   the FMA gives (NaN for 0·∞ or ∞ − ∞, else the infinity); a finite sum
//   beyond the float32 range becomes ±Infinity as the FMA's overflow does.

const f = Math.fround;

/** The largest float32, and the midpoint between it and 2^128 (where float32 rounding overflows). */
const F32_MAX = f(3.4028234663852886e38);
const OVERFLOW_MIDPOINT = 2 ** 128 - 2 ** 103;

/** `a·b + c` rounded once to float32: the bits of f32::mul_add (and the FMA instruction). */
export function fmaf32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f(s);
  // s is a float32 value (zeros and infinities included): the exact sum is
  // within half a float64 ulp of it, so it rounds to s as well.
  if (r === s) return r;
  if (s !== s) return s; // NaN
  if (r === Infinity || r === -Infinity) {
    // Only the overflow threshold itself is a midpoint here: below it (the
    // exact sum short of it) the result is the largest float32.
    return Math.abs(s) === OVERFLOW_MIDPOINT && twoSumError(p, c, s) * s < 0 ? Math.sign(s) * F32_MAX : r;
  }
  // When s is a midpoint, q = 2s − r is the other float32 neighbour of s
  // (exact in float64: it lies between r and that neighbour, in their binade).
  // Otherwise q lies strictly between r and that neighbour, so it is no float32.
  const q = 2 * s - r;
  if (f(q) !== q) return r;
  const e = twoSumError(p, c, s);
  // e and q − r (the direction from r through s) agree: the exact sum is past the midpoint.
  return e === 0 || e > 0 !== q > r ? r : q;
}

/** The exact error of the float64 sum s = x + y (Knuth's TwoSum): x + y = s + error. */
function twoSumError(x: number, y: number, s: number): number {
  const yy = s - x;
  return x - (s - yy) + (y - yy);
}
