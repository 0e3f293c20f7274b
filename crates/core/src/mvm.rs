//! Integer crossbar MVM: exact partial sums of u8 input digits and i8 weight
//! digits. The f32 kernel (gemm.rs) gives the same values whenever the cells
//! hold integer digits (sums below 2^24 are exact in f32), so this is purely
//! a faster way to the same bits. Two kernels:
//! - bytes: with AVX-512 VNNI, `vpdpbusd` does 64 multiply-accumulates per
//!   instruction; with AVX2, `vpmaddwd` on the digits widened to 16 bits
//!   does 16 (exact for any u8 × i8, where `vpmaddubsw` would saturate);
//! - bits, for binary cells (−1, 0, 1) and binary inputs (1-bit slices and
//!   streams): 32 rows per word, `popcount(x & w⁺) − popcount(x & w⁻)`
//!   counted straight into 32-bit lanes, 512 cell reads per instruction with
//!   AVX-512 VPOPCNTDQ.

#[cfg(target_arch = "x86_64")]
use crate::cpu::Level;
use crate::cpu::{self, multiversion, Isa};

/// Weights of one (slice, subarray), packed for one of the kernels.
pub enum PackedWeights {
    /// i8 digits `[out][kq][4]`, rows padded to a multiple of 4 by zeros;
    /// `pairs`: the same digits as i16 pairs `[out][kq][2]` (rows 0, 2 and
    /// rows 1, 3 of each quad), what the AVX2 kernel for large digits
    /// broadcasts (empty when `flush` > 0); `flush`: how many quads the AVX2
    /// kernel for small digits sums in i16 lanes before widening them (0:
    /// digits too large for it).
    Bytes { w: Vec<i8>, pairs: Vec<u32>, out: usize, quads: usize, flush: usize },
    /// Per output and word of 32 rows, the +1 cells and the −1 cells as bit
    /// masks (bit b of word w = row 32·w + b).
    Bits { pos: Vec<u32>, neg: Vec<u32>, out: usize, words: usize },
}

/// One subarray's input digits of one stream, packed for the layer's kernel.
#[derive(Default)]
pub struct PackedInputs {
    /// Bytes kernel: `[kq][p]`, four rows' digits per little-endian word.
    /// Bits kernel: `[words][stride]`, 32 rows' bits per word, pixels
    /// padded by zeros to whole blocks.
    x: Vec<u32>,
    stride: usize,
}

/// Pixels per step of the bits kernel (one AVX-512 register of words).
const BLOCK: usize = 16;
/// Outputs per step of the bits kernel: each input load serves four.
const OUTS: usize = 4;

impl PackedWeights {
    /// `w`: `out × rows` integer digits; input digits lie in `0..=digit_max`.
    /// `binary`: every digit is −1, 0 or 1 and every input digit 0 or 1, so
    /// the bits kernel applies.
    pub fn new(w: &[f32], out: usize, rows: usize, binary: bool, digit_max: u32) -> PackedWeights {
        if binary {
            let words = rows.div_ceil(32);
            let (mut pos, mut neg) = (vec![0u32; out * words], vec![0u32; out * words]);
            for o in 0..out {
                for r in 0..rows {
                    let d = w[o * rows + r];
                    debug_assert!(d == 0.0 || d.abs() == 1.0, "binary cell {d}");
                    let (mask, bit) = (if d > 0.0 { &mut pos } else { &mut neg }, 1u32 << (r % 32));
                    if d != 0.0 {
                        mask[o * words + r / 32] |= bit;
                    }
                }
            }
            return PackedWeights::Bits { pos, neg, out, words };
        }
        let quads = rows.div_ceil(4);
        let mut packed = vec![0i8; out * quads * 4];
        for o in 0..out {
            for r in 0..rows {
                packed[o * quads * 4 + r] = w[o * rows + r] as i8;
            }
        }
        // A quad adds two i16 pair sums per lane, each at most 2·digit·|w|.
        let largest = packed.iter().map(|&d| (d as i32).unsigned_abs()).max().unwrap_or(0).max(1);
        let flush = i16::MAX as usize / (2 * digit_max.max(1) as usize * largest as usize);
        // The pairs only where the small-digit kernel cannot take the digits.
        let pair = |a: i8, b: i8| a as i16 as u16 as u32 | (b as i16 as u16 as u32) << 16;
        let pairs = if flush == 0 { packed.chunks_exact(4).flat_map(|d| [pair(d[0], d[2]), pair(d[1], d[3])]).collect() } else { Vec::new() };
        PackedWeights::Bytes { w: packed, pairs, out, quads, flush }
    }

    /// Packs rows `k0..k1` of `rows` for this kernel (inlined into the
    /// callers' clones, cpu.rs, to vectorise there).
    #[inline(always)]
    pub fn pack_inputs<I: Isa>(&self, rows: &Rows, k0: usize, k1: usize, out: &mut PackedInputs) {
        let p = rows.p;
        // Rows past the subarray read as zeros (padding of the last quad or word).
        let zeros = vec![0u8; p];
        let row = |r: usize| if r < k1 { rows.row(r) } else { &zeros[..] };
        match self {
            PackedWeights::Bytes { .. } => {
                // Four rows interleaved as little-endian words, zero-padding
                // the last quad. Every word is written below: no need to
                // clear what is already there.
                let quads = (k1 - k0).div_ceil(4);
                out.x.resize(quads * p, 0);
                out.stride = p;
                for q in 0..quads {
                    let r = k0 + q * 4;
                    let (a, b, c, d) = (row(r), row(r + 1), row(r + 2), row(r + 3));
                    let mask = rows.mask(r);
                    // Zipped: no bound checks, so the loop vectorises.
                    let lanes = a.iter().zip(b).zip(c.iter().zip(d)).zip(mask);
                    for (w, (((&a, &b), (&c, &d)), &m)) in out.x[q * p..(q + 1) * p].iter_mut().zip(lanes) {
                        *w = (a as u32 | (b as u32) << 8 | (c as u32) << 16 | (d as u32) << 24) & m;
                    }
                }
            }
            PackedWeights::Bits { words, .. } => {
                let stride = p.div_ceil(BLOCK) * BLOCK;
                out.stride = stride;
                #[cfg(target_arch = "x86_64")]
                if I::LEVEL == Level::Avx512 {
                    // Every word up to the stride is written.
                    out.x.resize(words * stride, 0);
                    // SAFETY: this is the AVX-512 clone (the CPU has AVX-512 BW).
                    unsafe { avx512::pack_bits(rows, k0, k1, *words, stride, &mut out.x) };
                    return;
                }
                out.x.clear();
                out.x.resize(words * stride, 0);
                // Eight rows per pass over a word's pixels (a loop that
                // vectorises), then the word's mask of the rows that read
                // inside the input.
                for w in 0..*words {
                    let dst = &mut out.x[w * stride..w * stride + p];
                    for g in (0..4).take_while(|g| k0 + w * 32 + g * 8 < k1) {
                        let src: [&[u8]; 8] = std::array::from_fn(|b| row(k0 + w * 32 + g * 8 + b));
                        for (j, d) in dst.iter_mut().enumerate() {
                            let byte = (0..8).fold(0u32, |acc, b| acc | ((src[b][j] & 1) as u32) << b);
                            *d |= byte << (8 * g);
                        }
                    }
                    for (d, &m) in dst.iter_mut().zip(rows.bits(k0 + w * 32)) {
                        *d &= m;
                    }
                }
            }
        }
    }
}

/// Where each crossbar row reads its `p` input digits. Unfolded (`shift`
/// None): row k is `digits[k·p..]`. Shifted: a stride-1 convolution whose
/// output has its input's size reads its rows in place from the digit
/// planes, each plane `c` at `c·pitch + margin` with zeros around
/// (`margin = pad_top·w + pad_left` before it, the rest of the kernel's
/// reach after it): row (c, ky, kx) is the run at `c·pitch + ky·w + kx`,
/// and the pixels whose read wrapped around from a neighbouring input row
/// are cleared by a mask. No unfolded copy is made.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub digits: &'a [u8],
    pub p: usize,
    /// `kw × p` words: for rows `r..r + 4`, mask `r mod kw` keeps each
    /// row's byte (lane) where its kernel column `(r + lane) mod kw` reads
    /// inside the input. Unfolded: one row of ones.
    pub masks: &'a [u32],
    /// The same for the bits kernel: for rows `r..r + 32`, mask `r mod kw`
    /// keeps bit `b` where row `r + b` reads inside. Unfolded: ones.
    pub bits: &'a [u32],
    pub shift: Option<Shift>,
}

/// A shifted layout's geometry (see `Rows`).
#[derive(Clone, Copy, PartialEq)]
pub struct Shift {
    pub pitch: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub left: usize,
}

impl<'a> Rows<'a> {
    /// `cols` as `k × p` unfolded rows; `ones`: `p` words of all ones.
    pub fn unfolded(cols: &'a [u8], p: usize, ones: &'a [u32]) -> Rows<'a> {
        Rows { digits: cols, p, masks: ones, bits: ones, shift: None }
    }

    /// Row `k`'s run of digits.
    #[inline(always)]
    fn row(&self, k: usize) -> &'a [u8] {
        let p = self.p;
        match self.shift {
            None => &self.digits[k * p..(k + 1) * p],
            Some(Shift { pitch, w, kernel: [kh, kw], .. }) => {
                // Row k's kernel column is k mod kw (kh·kw rows per channel).
                let (c, t) = (k / (kh * kw), k % (kh * kw));
                let at = c * pitch + t / kw * w + t % kw;
                &self.digits[at..at + p]
            }
        }
    }

    /// The mask of rows `k..k + 4`.
    #[inline(always)]
    fn mask(&self, k: usize) -> &'a [u32] {
        let i = self.shift.map_or(0, |s| k % s.kernel[1]);
        &self.masks[i * self.p..(i + 1) * self.p]
    }

    /// The bits kernel's mask of rows `k..k + 32`.
    #[inline(always)]
    fn bits(&self, k: usize) -> &'a [u32] {
        let i = self.shift.map_or(0, |s| k % s.kernel[1]);
        &self.bits[i * self.p..(i + 1) * self.p]
    }
}

impl Shift {
    /// `Rows::masks` and `Rows::bits` for this geometry over `p` pixels.
    pub fn masks(&self, p: usize) -> [Vec<u32>; 2] {
        let (w, kw, left) = (self.w, self.kernel[1], self.left);
        let inside = |kx: usize, j: usize| (j % w + kx).checked_sub(left).is_some_and(|x| x < w);
        // Mask i at pixel j: lane l (`width` bits) is `ones` where row
        // r + l reads inside, for rows r.. with r mod kw = i.
        let mask = |lanes: usize, ones: u32, width: usize| {
            let lane = move |i: usize, j: usize, l: usize| (inside((i + l) % kw, j) as u32 * ones) << (width * l);
            (0..kw).flat_map(|i| (0..p).map(move |j| (0..lanes).fold(0u32, |m, l| m | lane(i, j, l)))).collect()
        };
        [mask(4, 0xff, 8), mask(32, 1, 1)]
    }
}

/// `ps[o][j] = Σ_k w[o][k]·x[k][j]` as f32 (exact), for `p` columns.
pub fn mvm(w: &PackedWeights, x: &PackedInputs, p: usize, ps: &mut [f32]) {
    mvm_at(cpu::level(), w, x, p, ps)
}

multiversion! {
    /// `mvm` in `level`'s clone (cpu.rs): the same values at every level.
    fn mvm_at(w: &PackedWeights, x: &PackedInputs, p: usize, ps: &mut [f32]) {
        I => kernel::<I>(w, x, p, ps)
    }
}

#[inline(always)]
fn kernel<I: Isa>(w: &PackedWeights, x: &PackedInputs, p: usize, ps: &mut [f32]) {
    match w {
        PackedWeights::Bytes { w, pairs, out, quads, flush } => {
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if I::LEVEL >= Level::Avx2 {
                // Rows of four outputs, a block of columns at a time (32
                // with VNNI, 16 with AVX2), and their column tail.
                let width = if I::LEVEL == Level::Avx512 { 32 } else { 16 };
                done = out / 4 * 4;
                for o in (0..done).step_by(4) {
                    let mut j = 0;
                    while j + width <= p {
                        // SAFETY: this is the clone of `I`'s level (the CPU
                        // has VNNI at AVX-512); each block asserts its bounds.
                        unsafe {
                            if I::LEVEL == Level::Avx512 {
                                avx512::vnni_block(w, *quads, &x.x, p, o, j, ps)
                            } else if *flush > 0 {
                                avx2::maddubs_block(w, *quads, *flush, &x.x, p, o, j, ps)
                            } else {
                                avx2::madd_block(pairs, *quads, &x.x, p, o, j, ps)
                            }
                        };
                        j += width;
                    }
                    scalar(w, *quads, &x.x, p, o..o + 4, j..p, ps);
                }
            }
            scalar(w, *quads, &x.x, p, done..*out, 0..p, ps);
        }
        PackedWeights::Bits { pos, neg, out, words } => {
            let full = out / OUTS * OUTS;
            for o0 in (0..full).step_by(OUTS) {
                bits::<I, OUTS>(pos, neg, o0, *words, x, p, ps);
            }
            for o0 in full..*out {
                bits::<I, 1>(pos, neg, o0, *words, x, p, ps);
            }
        }
    }
}

/// The bits kernel for outputs `o0..o0 + N`.
#[inline(always)]
fn bits<I: Isa, const N: usize>(pos: &[u32], neg: &[u32], o0: usize, words: usize, x: &PackedInputs, p: usize, ps: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if I::LEVEL == Level::Avx512 {
        // SAFETY: this is the AVX-512 clone (the CPU has VPOPCNTDQ).
        unsafe { avx512::bits::<N>(pos, neg, o0, words, x, p, ps) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if I::LEVEL == Level::Avx2 {
        // SAFETY: this is the AVX2 clone.
        unsafe { avx2::bits::<N>(pos, neg, o0, words, x, p, ps) };
        return;
    }
    for o in o0..o0 + N {
        let (wp, wn) = (&pos[o * words..(o + 1) * words], &neg[o * words..(o + 1) * words]);
        for j in 0..p {
            let mut acc = 0i32;
            for w in 0..words {
                let xv = x.x[w * x.stride + j];
                acc += (xv & wp[w]).count_ones() as i32 - (xv & wn[w]).count_ones() as i32;
            }
            ps[o * p + j] = acc as f32;
        }
    }
}

#[inline(always)]
fn scalar(w: &[i8], quads: usize, x: &[u32], p: usize, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, ps: &mut [f32]) {
    for o in rows {
        let wr = &w[o * quads * 4..(o + 1) * quads * 4];
        for j in cols.clone() {
            let mut acc = 0i32;
            for q in 0..quads {
                for l in 0..4 {
                    acc += wr[q * 4 + l] as i32 * (x[q * p + j] >> (8 * l) & 0xff) as i32;
                }
            }
            ps[o * p + j] = acc as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PackedInputs, Rows, BLOCK};
    use std::arch::x86_64::*;

    /// The bits kernel's packing, 64 pixels at a time: each group of eight
    /// rows becomes one byte per pixel (bit b set where row b's digit is
    /// odd: a test and a masked add per row), four groups interleave into a
    /// word per pixel (byte unpacks, then a transpose of 128-bit lanes),
    /// and the word takes its mask. The portable loop built each byte in a
    /// 32-bit lane, four times the instructions.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn pack_bits(rows: &Rows, k0: usize, k1: usize, words: usize, stride: usize, x: &mut [u32]) {
        let p = rows.p;
        assert!(words * stride <= x.len() && stride >= p && stride.is_multiple_of(BLOCK));
        let one = _mm512_set1_epi8(1);
        for w in 0..words {
            let bits = rows.bits(k0 + w * 32);
            for j0 in (0..stride).step_by(64) {
                // Pixels past p read as zeros; masked loads do not touch them.
                let n = p.saturating_sub(j0).min(64);
                let (k8, k32) = (if n == 64 { !0u64 } else { (1u64 << n) - 1 }, |v: usize| -> __mmask16 { ((1u32 << n.saturating_sub(v).min(16)) - 1) as u16 });
                let group = |g: usize| {
                    let mut acc = _mm512_setzero_si512();
                    for b in 0..8 {
                        let r = k0 + w * 32 + g * 8 + b;
                        if r < k1 && n > 0 {
                            // A masked load of the row's n pixels from j0.
                            let v = _mm512_maskz_loadu_epi8(k8, rows.row(r).as_ptr().add(j0) as *const i8);
                            acc = _mm512_mask_add_epi8(acc, _mm512_test_epi8_mask(v, one), acc, _mm512_set1_epi8((1u8 << b) as i8));
                        }
                    }
                    acc
                };
                let (b0, b1, b2, b3) = (group(0), group(1), group(2), group(3));
                let (lo01, hi01) = (_mm512_unpacklo_epi8(b0, b1), _mm512_unpackhi_epi8(b0, b1));
                let (lo23, hi23) = (_mm512_unpacklo_epi8(b2, b3), _mm512_unpackhi_epi8(b2, b3));
                // Per 128-bit lane L: pixels 16L + 0..4, 4..8, 8..12, 12..16.
                let v = [_mm512_unpacklo_epi16(lo01, lo23), _mm512_unpackhi_epi16(lo01, lo23), _mm512_unpacklo_epi16(hi01, hi23), _mm512_unpackhi_epi16(hi01, hi23)];
                let t = [
                    _mm512_shuffle_i32x4::<0b01_00_01_00>(v[0], v[1]),
                    _mm512_shuffle_i32x4::<0b01_00_01_00>(v[2], v[3]),
                    _mm512_shuffle_i32x4::<0b11_10_11_10>(v[0], v[1]),
                    _mm512_shuffle_i32x4::<0b11_10_11_10>(v[2], v[3]),
                ];
                let o = [
                    _mm512_shuffle_i32x4::<0b10_00_10_00>(t[0], t[1]),
                    _mm512_shuffle_i32x4::<0b11_01_11_01>(t[0], t[1]),
                    _mm512_shuffle_i32x4::<0b10_00_10_00>(t[2], t[3]),
                    _mm512_shuffle_i32x4::<0b11_01_11_01>(t[2], t[3]),
                ];
                for (q, o) in o.into_iter().enumerate().take_while(|&(q, _)| j0 + 16 * q < stride) {
                    // The masks hold p words: a masked load of those in this block.
                    let m = _mm512_maskz_loadu_epi32(k32(16 * q), bits.as_ptr().add((j0 + 16 * q).min(p)) as *const i32);
                    _mm512_storeu_si512(x.as_mut_ptr().add(w * stride + j0 + 16 * q) as *mut _, _mm512_and_si512(o, m));
                }
            }
        }
    }

    /// The bits kernel in blocks of 16 pixels: per word of 32 rows, the
    /// input bits against the +1 and the −1 masks, counted in 32-bit lanes
    /// (exact: at most `rows` per lane). The byte-wise version needed a
    /// port-5 broadcast per mask and a widening flush of its u8 counters.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub unsafe fn bits<const N: usize>(pos: &[u32], neg: &[u32], o0: usize, words: usize, x: &PackedInputs, p: usize, ps: &mut [f32]) {
        assert!((o0 + N) * words <= pos.len() && (o0 + N) * words <= neg.len());
        assert!(words * x.stride <= x.x.len() && x.stride >= p && x.stride.is_multiple_of(BLOCK) && (o0 + N - 1) * p + p <= ps.len());
        // The input loads stay inside `x` (words × stride, asserted), the
        // weight reads inside the masks, and the masked stores inside the
        // outputs' rows of `ps`.
        for j0 in (0..p).step_by(BLOCK) {
            let (mut cp, mut cn) = ([_mm512_setzero_si512(); N], [_mm512_setzero_si512(); N]);
            for w in 0..words {
                let xv = _mm512_loadu_si512(x.x.as_ptr().add(w * x.stride + j0) as *const _);
                for r in 0..N {
                    let (wp, wn) = (*pos.get_unchecked((o0 + r) * words + w), *neg.get_unchecked((o0 + r) * words + w));
                    cp[r] = _mm512_add_epi32(cp[r], _mm512_popcnt_epi32(_mm512_and_si512(xv, _mm512_set1_epi32(wp as i32))));
                    cn[r] = _mm512_add_epi32(cn[r], _mm512_popcnt_epi32(_mm512_and_si512(xv, _mm512_set1_epi32(wn as i32))));
                }
            }
            let mask: __mmask16 = if p - j0 >= BLOCK { 0xffff } else { (1u16 << (p - j0)) - 1 };
            for r in 0..N {
                let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(cp[r], cn[r]));
                _mm512_mask_storeu_ps(ps.as_mut_ptr().add((o0 + r) * p + j0), mask, v);
            }
        }
    }

    /// Four outputs × 32 columns of the bytes kernel: `vpdpbusd`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vnni")]
    // `r` indexes the accumulator rows and the weight rows together.
    #[allow(clippy::needless_range_loop)]
    pub unsafe fn vnni_block(w: &[i8], quads: usize, x: &[u32], p: usize, o0: usize, j0: usize, ps: &mut [f32]) {
        assert!((o0 + 4) * quads * 4 <= w.len() && (quads - 1) * p + j0 + 32 <= x.len() && (o0 + 3) * p + j0 + 32 <= ps.len());
        let mut acc = [[_mm512_setzero_si512(); 2]; 4];
        let wp = w.as_ptr();
        let xp = x.as_ptr();
        for q in 0..quads {
            let x0 = _mm512_loadu_si512(xp.add(q * p + j0) as *const _);
            let x1 = _mm512_loadu_si512(xp.add(q * p + j0 + 16) as *const _);
            for r in 0..4 {
                let wq = (wp.add(((o0 + r) * quads + q) * 4) as *const i32).read_unaligned();
                let wb = _mm512_set1_epi32(wq);
                acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], x0, wb);
                acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], x1, wb);
            }
        }
        for r in 0..4 {
            let dst = ps.as_mut_ptr().add((o0 + r) * p + j0);
            _mm512_storeu_ps(dst, _mm512_cvtepi32_ps(acc[r][0]));
            _mm512_storeu_ps(dst.add(16), _mm512_cvtepi32_ps(acc[r][1]));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::PackedInputs;
    use std::arch::x86_64::*;

    /// The bits kernel without VPOPCNTDQ, 8 pixels at a time, with one
    /// population count per word of 32 rows where the difference of two
    /// took two: the +1 and −1 masks are disjoint, so
    /// popcount(x & w⁺) − popcount(x & w⁻) = popcount(x ? w⁺ : w⁻) − popcount(w⁻),
    /// the select bitwise as (x & w⁺) | (!x & w⁻), and the last term a
    /// constant per output. The masks are broadcast straight from memory:
    /// a select of the masks made in scalar code (w⁺ ^ w⁻) took a move and
    /// a register broadcast per row and word, on the port of the nibble
    /// lookups, and was no faster. The counts per byte (0…8, two nibble
    /// lookups with `vpshufb`) sum in i8 lanes for up to 15 words (≤ 120),
    /// then widen into one 32-bit lane per pixel: exact. 10 vector
    /// operations per row and word where the two counts took 16.
    #[inline]
    #[target_feature(enable = "avx2")]
    // `r` indexes the counters and the weight rows together.
    #[allow(clippy::needless_range_loop)]
    pub unsafe fn bits<const N: usize>(pos: &[u32], neg: &[u32], o0: usize, words: usize, x: &PackedInputs, p: usize, ps: &mut [f32]) {
        const FLUSH: usize = 15;
        assert!((o0 + N) * words <= pos.len() && (o0 + N) * words <= neg.len());
        assert!(words * x.stride <= x.x.len() && x.stride >= p && x.stride.is_multiple_of(8) && (o0 + N - 1) * p + p <= ps.len());
        let lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
        let nibble = _mm256_set1_epi8(0x0f);
        let count = |v: __m256i| _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, nibble)), _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble)));
        let (ones8, ones16) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
        let negs: [i32; N] = std::array::from_fn(|r| neg[(o0 + r) * words..(o0 + r + 1) * words].iter().map(|w| w.count_ones() as i32).sum());
        // The input loads stay inside `x` (words × stride, asserted; blocks
        // of 8 inside the stride), the weight reads inside the masks, and
        // the stores inside the outputs' rows of `ps` (a partial block
        // through a buffer).
        for j0 in (0..p).step_by(8) {
            let (mut wide, mut narrow) = ([_mm256_setzero_si256(); N], [_mm256_setzero_si256(); N]);
            for w in 0..words {
                let xv = _mm256_loadu_si256(x.x.as_ptr().add(w * x.stride + j0) as *const _);
                for r in 0..N {
                    let (wp, wn) = (*pos.get_unchecked((o0 + r) * words + w), *neg.get_unchecked((o0 + r) * words + w));
                    let select = _mm256_or_si256(_mm256_and_si256(xv, _mm256_set1_epi32(wp as i32)), _mm256_andnot_si256(xv, _mm256_set1_epi32(wn as i32)));
                    narrow[r] = _mm256_add_epi8(narrow[r], count(select));
                }
                if (w + 1) % FLUSH == 0 || w + 1 == words {
                    for r in 0..N {
                        wide[r] = _mm256_add_epi32(wide[r], _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, narrow[r]), ones16));
                        narrow[r] = _mm256_setzero_si256();
                    }
                }
            }
            for r in 0..N {
                let v = _mm256_cvtepi32_ps(_mm256_sub_epi32(wide[r], _mm256_set1_epi32(negs[r])));
                let dst = ps.as_mut_ptr().add((o0 + r) * p + j0);
                if p - j0 >= 8 {
                    _mm256_storeu_ps(dst, v);
                } else {
                    let mut tail = [0f32; 8];
                    _mm256_storeu_ps(tail.as_mut_ptr(), v);
                    std::ptr::copy_nonoverlapping(tail.as_ptr(), dst, p - j0);
                }
            }
        }
    }

    /// Four outputs × 16 columns of the bytes kernel without VNNI, for
    /// small digits: `vpmaddubsw` multiplies the u8 input digits by their i8
    /// weights and adds them in pairs into i16 lanes, which sum `flush`
    /// quads at a time and are then widened into i32 lanes (`vpmaddwd` by
    /// ones). Exact: `flush` (`PackedWeights::new`) keeps every i16 sum
    /// within ±32767, so nothing saturates or wraps. Half the instructions
    /// of `madd_block` per product (4-bit inputs and weights: a subarray of
    /// 128 rows sums all its quads in i16).
    #[inline]
    #[target_feature(enable = "avx2")]
    // `r` indexes the accumulator rows and the weight rows together.
    #[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
    pub unsafe fn maddubs_block(w: &[i8], quads: usize, flush: usize, x: &[u32], p: usize, o0: usize, j0: usize, ps: &mut [f32]) {
        assert!(flush > 0 && (o0 + 4) * quads * 4 <= w.len() && (quads - 1) * p + j0 + 16 <= x.len() && (o0 + 3) * p + j0 + 16 <= ps.len());
        let mut acc = [[_mm256_setzero_si256(); 2]; 4];
        let ones = _mm256_set1_epi16(1);
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        for q0 in (0..quads).step_by(flush) {
            let mut sums = [[_mm256_setzero_si256(); 2]; 4];
            for q in q0..(q0 + flush).min(quads) {
                let x0 = _mm256_loadu_si256(xp.add(q * p + j0) as *const _);
                let x1 = _mm256_loadu_si256(xp.add(q * p + j0 + 8) as *const _);
                for r in 0..4 {
                    let wq = _mm256_set1_epi32((wp.add(((o0 + r) * quads + q) * 4) as *const i32).read_unaligned());
                    sums[r][0] = _mm256_add_epi16(sums[r][0], _mm256_maddubs_epi16(x0, wq));
                    sums[r][1] = _mm256_add_epi16(sums[r][1], _mm256_maddubs_epi16(x1, wq));
                }
            }
            for r in 0..4 {
                for v in 0..2 {
                    acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(sums[r][v], ones));
                }
            }
        }
        for r in 0..4 {
            let dst = ps.as_mut_ptr().add((o0 + r) * p + j0);
            _mm256_storeu_ps(dst, _mm256_cvtepi32_ps(acc[r][0]));
            _mm256_storeu_ps(dst.add(8), _mm256_cvtepi32_ps(acc[r][1]));
        }
    }

    /// Four outputs × 16 columns of the bytes kernel without VNNI: each
    /// word's four u8 digits split into rows 0, 2 and rows 1, 3 as 16-bit
    /// lanes, each against its two weights with `vpmaddwd` (i16 products
    /// summed in pairs into i32: exact for any u8 × i8).
    #[inline]
    #[target_feature(enable = "avx2")]
    // `r` indexes the accumulator rows and the weight rows together.
    #[allow(clippy::needless_range_loop)]
    pub unsafe fn madd_block(pairs: &[u32], quads: usize, x: &[u32], p: usize, o0: usize, j0: usize, ps: &mut [f32]) {
        assert!((o0 + 4) * quads * 2 <= pairs.len() && (quads - 1) * p + j0 + 16 <= x.len() && (o0 + 3) * p + j0 + 16 <= ps.len());
        let mut acc = [[_mm256_setzero_si256(); 2]; 4];
        let low = _mm256_set1_epi32(0x00ff_00ff);
        let (wp, xp) = (pairs.as_ptr(), x.as_ptr());
        for q in 0..quads {
            let x0 = _mm256_loadu_si256(xp.add(q * p + j0) as *const _);
            let x1 = _mm256_loadu_si256(xp.add(q * p + j0 + 8) as *const _);
            let (even0, odd0) = (_mm256_and_si256(x0, low), _mm256_srli_epi16(x0, 8));
            let (even1, odd1) = (_mm256_and_si256(x1, low), _mm256_srli_epi16(x1, 8));
            for r in 0..4 {
                let d = wp.add(((o0 + r) * quads + q) * 2);
                let (we, wo) = (_mm256_set1_epi32(*d as i32), _mm256_set1_epi32(*d.add(1) as i32));
                acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_add_epi32(_mm256_madd_epi16(even0, we), _mm256_madd_epi16(odd0, wo)));
                acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_add_epi32(_mm256_madd_epi16(even1, we), _mm256_madd_epi16(odd1, wo)));
            }
        }
        for r in 0..4 {
            let dst = ps.as_mut_ptr().add((o0 + r) * p + j0);
            _mm256_storeu_ps(dst, _mm256_cvtepi32_ps(acc[r][0]));
            _mm256_storeu_ps(dst.add(8), _mm256_cvtepi32_ps(acc[r][1]));
        }
    }
}

/// `pack_inputs` in `level`'s clone, for the tests.
#[cfg(test)]
impl PackedWeights {
    pub fn pack_at(&self, level: cpu::Level, rows: &Rows, k0: usize, k1: usize, out: &mut PackedInputs) {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => self.pack_inputs::<cpu::Avx2>(rows, k0, k1, out),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => self.pack_inputs::<cpu::Avx512>(rows, k0, k1, out),
            _ => self.pack_inputs::<cpu::Portable>(rows, k0, k1, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kernels at every level against the f32 GEMM, on shapes that exercise every
    /// tail: outputs not a multiple of 4, pixels not a multiple of 16 or 32,
    /// rows not a multiple of 4 or 32, and (bits) many words (rows 300).
    /// Bytes with 4-bit digits, and with the extremes of u8 × i8 (255 ×
    /// −128 in pairs overflows 16 bits: a saturating product would fail).
    #[test]
    fn equals_the_f32_gemm() {
        // Weights −8…8 against 8-bit digits: the small-digit AVX2 kernel
        // widens its i16 sums every 8 quads (several times for 300 rows).
        for (binary, levels, offset, digit_max) in [(false, 17, 8.0, 16), (false, 17, 8.0, 256), (false, 256, 128.0, 256), (true, 3, 1.0, 2)] {
            for &(out, rows, p) in &[(4, 72, 1024), (7, 13, 33), (64, 116, 64), (10, 64, 1), (16, 5, 40), (5, 300, 130)] {
                let w: Vec<f32> = (0..out * rows).map(|i| if levels == 256 && i % 2 == 0 { -128.0 } else { ((i * 7919 % levels) as f32) - offset }).collect();
                let digits: Vec<u8> = (0..(rows + 3) * p).map(|i| if digit_max == 256 && i % 3 == 0 { 255 } else { (i * 104729 % digit_max) as u8 }).collect();
                let cols: Vec<f32> = digits.iter().map(|&d| d as f32).collect();
                let k0 = 3;
                let packed = PackedWeights::new(&w, out, rows, binary, digit_max as u32 - 1);
                let mut want = vec![0f32; out * p];
                crate::gemm::gemm(&w, &cols[k0 * p..(k0 + rows) * p], &mut want, out, rows, p);
                // The portable kernels and every faster one this CPU runs.
                for level in crate::cpu::available() {
                    let mut xq = PackedInputs::default();
                    packed.pack_at(level, &Rows::unfolded(&digits, p, &vec![!0; p]), k0, k0 + rows, &mut xq);
                    let mut ps = vec![f32::NAN; out * p];
                    mvm_at(level, &packed, &xq, p, &mut ps);
                    assert_eq!(ps, want, "{level:?} binary {binary}: {out}x{rows}x{p}");
                }
            }
        }
    }

    /// Bytes: every digit 255 and every weight 8 (or −8): the small-digit
    /// kernel's i16 sums reach ±32,640 (8 quads of 2·255·8) before each
    /// widening, 127 short of wrapping; 300 rows widen ten times.
    #[test]
    fn bytes_sum_up_to_the_i16_bound() {
        let (out, rows, p) = (4, 300, 16);
        for sign in [8.0f32, -8.0] {
            let packed = PackedWeights::new(&vec![sign; out * rows], out, rows, false, 255);
            assert!(matches!(packed, PackedWeights::Bytes { flush: 8, .. }));
            for level in crate::cpu::available() {
                let mut xq = PackedInputs::default();
                packed.pack_at(level, &Rows::unfolded(&vec![255u8; rows * p], p, &vec![!0; p]), 0, rows, &mut xq);
                let mut ps = vec![f32::NAN; out * p];
                mvm_at(level, &packed, &xq, p, &mut ps);
                assert!(ps.iter().all(|&v| v == sign * 255.0 * rows as f32), "{level:?} sign {sign}: {:?}", &ps[..4]);
            }
        }
    }

    /// Bits: every cell and input 1 (or cells −1) over 1,000 rows: each
    /// word adds ±8 per byte, past what the AVX2 kernel's i8 sums hold
    /// without their flush every 15 words.
    #[test]
    fn bits_sum_past_the_byte_counters() {
        let (out, rows, p) = (5, 1000, 20);
        for sign in [1.0f32, -1.0] {
            let packed = PackedWeights::new(&vec![sign; out * rows], out, rows, true, 1);
            for level in crate::cpu::available() {
                let mut xq = PackedInputs::default();
                packed.pack_at(level, &Rows::unfolded(&vec![1u8; rows * p], p, &vec![!0; p]), 0, rows, &mut xq);
                let mut ps = vec![f32::NAN; out * p];
                mvm_at(level, &packed, &xq, p, &mut ps);
                assert!(ps.iter().all(|&v| v == sign * rows as f32), "{level:?} sign {sign}: {:?}", &ps[..4]);
            }
        }
    }
}
