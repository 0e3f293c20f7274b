//! Float matrix products.
//!
//! `gemm` defines the simulator's rounding for float products, in inference
//! and training alike (training-mode passes of wide 3 × 3 convolutions
//! excepted: they take Winograd's products, winograd.rs): every output is
//! `acc = 0; for k ascending { acc = fma(a[i][k], b[k][j], acc) }` in f32,
//! each step one fused multiply-add (`f32::mul_add`: the exact
//! `a·b + acc` rounded once). Vectorisation is across `j`, which never
//! reorders a sum, so the result is the same bits at any vector width,
//! thread count or blocking, and at every instruction-set level (cpu.rs):
//! `mul_add` is exactly rounded with the FMA instruction or without it
//! (libm's `fmaf` on the portable level of x86-64, a call per term: about 25
//! times slower there than the unfused product was; an exact emulation in
//! SSE2 f64 arithmetic reached only 3 times libm's speed, so x86-64 CPUs
//! without FMA, older than Haswell, pay that in the float products).
//!
//! The pure-JS reference (ts/reference/fma.ts) repeats the bits with an
//! exact emulation of the f32 FMA in f64: the product of two f32 values is
//! exact in f64, the sum's rounding error is exact by TwoSum, and the one
//! case where rounding the f64 sum to f32 differs from rounding the exact
//! value once (the sum lands on a midpoint between two f32 values) is
//! settled by the error's sign. Fused products are also what lets this
//! kernel run at the FMA units' rate: a separate multiply and add issue two
//! instructions per term (on one Zen 4 core, ResNet20's layer shapes, about
//! 85 GFLOP/s fused against 65 unfused).

use crate::buffers::Buf;
use crate::cpu::{self, multiversion, Isa, Level};

/// `c[m×n] = a[m×k] · b[k×n]`, all row-major and densely packed.
pub fn gemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(a.len() >= m * k);
    product_at(cpu::level(), Rows::Dense { a, lda: k }, &Packed::of(b, k, n), c, n, m)
}

/// `gemm` for an a whose row i is never stored: it is the `lines × w`
/// window at `src[offs[i]..]`, its lines `stride` apart, read line by line
/// (k = lines · w, index y·w + x). A stride-1 convolution's unfold row is
/// such a window of its padded input (`layers::Geometry::windows`): the
/// weight gradient's product then reads the input in place, where the
/// unfold (9 × the input, 590 KB an image in ResNet20's first stage) was
/// written and read back. The same bits as `gemm` on the unfold.
pub fn gemm_windows(src: &[f32], offs: &[usize], (lines, w, stride): (usize, usize, usize), b: &[f32], c: &mut [f32], n: usize) {
    let (m, k) = (offs.len(), lines * w);
    assert!(w <= stride || lines <= 1);
    if let Some(&o) = offs.iter().max() {
        // The last line of the furthest window lies inside `src`.
        assert!(k == 0 || o + (lines - 1) * stride + w <= src.len(), "gemm_windows: a window past the source");
    }
    product_at(cpu::level(), Rows::Windows { src, offs, w, stride }, &Packed::of(b, k, n), c, n, m)
}

/// How the product reads a: dense rows `lda` apart, or windows of a source
/// (`gemm_windows`).
#[derive(Clone, Copy)]
enum Rows<'a> {
    Dense { a: &'a [f32], lda: usize },
    Windows { src: &'a [f32], offs: &'a [usize], w: usize, stride: usize },
}

impl<'a> Rows<'a> {
    /// Row i from its start (its `k` values in `lines(k)` lines).
    #[inline(always)]
    fn row(&self, i: usize) -> &'a [f32] {
        match *self {
            Rows::Dense { a, lda } => &a[i * lda..],
            Rows::Windows { src, offs, .. } => &src[offs[i]..],
        }
    }

    /// A row's `k` values as (line length, line stride): one line when dense.
    #[inline(always)]
    fn lines(&self, k: usize) -> (usize, usize) {
        match *self {
            Rows::Dense { .. } => (k.max(1), k.max(1)),
            Rows::Windows { w, stride, .. } => (w.max(1), stride),
        }
    }
}

/// `gemm` for an operand b produced on demand, in groups of `group`
/// columns: `fill(kk, j0, row)` writes every value of `row`, columns
/// `j0 .. j0 + row.len()` of row `kk`. A group's panels (`k × group`) stay
/// in L2 from the unfold to the product. The whole `k × n` unfold (590 KB
/// for ResNet20's first stage, more than L2), written, packed and read
/// back, was a quarter of FP32 inference.
pub fn gemm_rows(a: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, group: usize, mut fill: impl FnMut(usize, usize, &mut [f32])) {
    assert!(group > 0 && c.len() >= m * n && a.len() >= m * k);
    if m == 0 || n == 0 {
        return;
    }
    let level = cpu::level();
    let mut line = Buf::for_overwrite(group.min(n));
    for j0 in (0..n).step_by(group) {
        let g = group.min(n - j0);
        let mut packed = Packed::new(k, g);
        for kk in 0..k {
            fill(kk, j0, &mut line[..g]);
            packed.row(kk, &line[..g]);
        }
        product_at(level, Rows::Dense { a, lda: k }, &packed, &mut c[j0..], n, m);
    }
}

/// `gemm` for a b that is never stored: its columns come in vectors of 8,
/// and row `kk` of vector `v` is `src[offs[kk] + bases[v] ..][..8]`. A
/// stride-1 convolution's unfold is read so in place from its padded input
/// (`offs`: each tap's offset, `bases`: each group of 8 output pixels'
/// corner): no unfold is written, packed or read back (with `gemm_rows`
/// those were a third of FP32 inference). The same bits as `gemm`.
pub fn gemm_shifted(a: &[f32], c: &mut [f32], m: usize, k: usize, src: &[f32], offs: &[usize], bases: &[usize]) {
    let n = 8 * bases.len();
    assert!(a.len() >= m * k && c.len() >= m * n && offs.len() == k);
    if let (Some(&o), Some(&b)) = (offs.iter().max(), bases.iter().max()) {
        // Every vector read lies inside `src` (what `read8` relies on).
        // (Checked: a sum that wrapped would pass a bound it exceeds.)
        let end = o.checked_add(b).and_then(|e| e.checked_add(8));
        assert!(end.is_some_and(|e| e <= src.len()), "gemm_shifted: a read past the source ({o} + {b} + 8 > {})", src.len());
    } else {
        c[..m * n].fill(0.0);
        return;
    }
    shifted_at(cpu::level(), a, c, m, k, src, offs, bases)
}

// Rows per block: 2·MR accumulators, 2 loads and a broadcast in registers;
// AVX2's 16 hold 6 rows (15), AVX-512's 32 hold 8 (19): 16 channels make two
// blocks of 8 rather than 6 + 6 + 4.
multiversion! {
    fn shifted_at(a: &[f32], c: &mut [f32], m: usize, k: usize, src: &[f32], offs: &[usize], bases: &[usize]) {
        _I => if _I::LEVEL == cpu::Level::Avx512 {
            shifted::<8>(a, c, m, k, src, offs, bases)
        } else {
            shifted::<6>(a, c, m, k, src, offs, bases)
        }
    }
}

/// Two vectors (16 columns) at a time, as `product`'s AVX2 panels, in
/// blocks of MR (8 or 6), then 6, 4, 2 and 1 rows; an odd last vector alone.
#[inline(always)]
fn shifted<const MR: usize>(a: &[f32], c: &mut [f32], m: usize, k: usize, src: &[f32], offs: &[usize], bases: &[usize]) {
    let ldc = 8 * bases.len();
    let pairs = bases.chunks_exact(2);
    let last = pairs.remainder();
    for (t, pair) in pairs.enumerate() {
        shifted_rows::<MR, 2>(a, c, ldc, m, k, src, offs, [pair[0], pair[1]], 16 * t);
    }
    if let &[b] = last {
        shifted_rows::<MR, 1>(a, c, ldc, m, k, src, offs, [b], ldc - 8);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn shifted_rows<const MR: usize, const V: usize>(a: &[f32], c: &mut [f32], ldc: usize, m: usize, k: usize, src: &[f32], offs: &[usize], bases: [usize; V], j0: usize) {
    let mut i = 0;
    while i + MR <= m {
        shifted_block::<MR, V>(a, c, ldc, k, src, offs, bases, i, j0);
        i += MR;
    }
    while i + 6 <= m {
        shifted_block::<6, V>(a, c, ldc, k, src, offs, bases, i, j0);
        i += 6;
    }
    while i + 4 <= m {
        shifted_block::<4, V>(a, c, ldc, k, src, offs, bases, i, j0);
        i += 4;
    }
    while i + 2 <= m {
        shifted_block::<2, V>(a, c, ldc, k, src, offs, bases, i, j0);
        i += 2;
    }
    if i < m {
        shifted_block::<1, V>(a, c, ldc, k, src, offs, bases, i, j0);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn shifted_block<const MR: usize, const V: usize>(a: &[f32], c: &mut [f32], ldc: usize, k: usize, src: &[f32], offs: &[usize], bases: [usize; V], i0: usize, j0: usize) {
    let mut acc = [[[0f32; 8]; V]; MR];
    let rows: [&[f32]; MR] = std::array::from_fn(|r| &a[(i0 + r) * k..(i0 + r + 1) * k]);
    for (kk, &off) in offs.iter().enumerate() {
        // SAFETY: `gemm_shifted` asserted max(offs) + max(bases) + 8 ≤ src.len().
        // (Unchecked: two bounds checks per term row otherwise, in the
        // innermost loop of FP32 inference.)
        let bv: [[f32; 8]; V] = std::array::from_fn(|v| unsafe { read8(src, off + bases[v]) });
        for r in 0..MR {
            let av = rows[r][kk];
            for v in 0..V {
                for j in 0..8 {
                    acc[r][v][j] = av.mul_add(bv[v][j], acc[r][v][j]);
                }
            }
        }
    }
    for r in 0..MR {
        for v in 0..V {
            c[(i0 + r) * ldc + j0 + 8 * v..][..8].copy_from_slice(&acc[r][v]);
        }
    }
}

/// A stride-1 convolution's input gradient, `gemm` into the unfold's rows
/// and col2im fused: for every channel c, each tap t ascending adds
/// `Σ_o a[c·taps + t][o] · src[offs[c·taps + t] + o·plane + base]`, a
/// sequential fused sum from 0 (`gemm`'s rounding), into `dx` (`channels ×
/// 8·bases.len()`, `base`: the corner of each group of 8 pixels of dx).
/// `src` holds each output gradient zero-padded so that every tap of every
/// pixel reads inside it: a tap col2im skips reads zeros and adds +0, which
/// leaves dx as it was (dx starts at +0, and sums from +0 never give −0).
/// So the bits are those of `gemm` then col2im, without the unfold's
/// gradient (`k × p`) written, packed and read back.
#[allow(clippy::too_many_arguments)]
pub fn gemm_taps(a: &[f32], inner: usize, taps: usize, src: &[f32], plane: usize, offs: &[usize], bases: &[usize], dx: &mut [f32]) {
    let channels = offs.len() / taps.max(1);
    let n = 8 * bases.len();
    assert!(taps > 0 && offs.len() == channels * taps && a.len() >= offs.len() * inner && dx.len() >= channels * n);
    if let (Some(&o), Some(&b)) = (offs.iter().max(), bases.iter().max()) {
        if inner > 0 {
            // Every vector read lies inside `src` (what `read8` relies on).
            let end = (inner - 1).checked_mul(plane).and_then(|e| e.checked_add(o)).and_then(|e| e.checked_add(b)).and_then(|e| e.checked_add(8));
            assert!(end.is_some_and(|e| e <= src.len()), "gemm_taps: a read past the source");
        }
    }
    taps_at(cpu::level(), a, inner, taps, src, plane, offs, bases, dx)
}

// Channels per block: a block keeps 2·MR·V vectors (dx and the tap's sums)
// plus V loads (2·V where it reads two sources) and a broadcast in
// registers. AVX2's 16 hold MR = 3 (15; a two-source block's second loads
// may spill or fold into the FMAs); AVX-512's 32 hold MR = 4 (19), whose 8
// independent sums cover the FMA's latency × throughput (4 cycles × 2
// pipes). With the shared loads of a block across a subarray's end, PS-QAT
// steps ran 7 % faster (bench/README, session 29).
multiversion! {
    fn taps_at(a: &[f32], inner: usize, taps: usize, src: &[f32], plane: usize, offs: &[usize], bases: &[usize], dx: &mut [f32]) {
        _I => if _I::LEVEL == cpu::Level::Avx512 {
            taps_all::<4>(a, inner, taps, src, plane, offs, bases, dx)
        } else {
            taps_all::<3>(a, inner, taps, src, plane, offs, bases, dx)
        }
    }
}

/// Two vectors of dx (16 pixels) at a time, as `shifted`, then an odd
/// last vector alone.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn taps_all<const MR: usize>(a: &[f32], inner: usize, taps: usize, src: &[f32], plane: usize, offs: &[usize], bases: &[usize], dx: &mut [f32]) {
    // `taps_tile` has blocks of up to 4 channels.
    const { assert!(MR >= 1 && MR <= 4) };
    let n = 8 * bases.len();
    let pairs = bases.chunks_exact(2);
    let last = pairs.remainder();
    for (p, pair) in pairs.enumerate() {
        taps_tile::<MR>(a, inner, taps, src, plane, offs, pair, dx, n, 16 * p);
    }
    if !last.is_empty() {
        taps_tile::<MR>(a, inner, taps, src, plane, offs, last, dx, n, n - 8);
    }
}

/// One tile of dx (the vectors at `corner`, from column `j0`), channels in
/// blocks of MR, then fewer.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn taps_tile<const MR: usize>(a: &[f32], inner: usize, taps: usize, src: &[f32], plane: usize, offs: &[usize], corner: &[usize], dx: &mut [f32], n: usize, j0: usize) {
    let channels = offs.len() / taps;
    let mut c = 0;
    while c < channels {
        let rows = (channels - c).min(MR);
        match (rows, corner) {
            (4, &[b0, b1]) => taps_block::<4, 2>(a, inner, taps, src, plane, offs, [b0, b1], dx, n, c, j0),
            (3, &[b0, b1]) => taps_block::<3, 2>(a, inner, taps, src, plane, offs, [b0, b1], dx, n, c, j0),
            (2, &[b0, b1]) => taps_block::<2, 2>(a, inner, taps, src, plane, offs, [b0, b1], dx, n, c, j0),
            (1, &[b0, b1]) => taps_block::<1, 2>(a, inner, taps, src, plane, offs, [b0, b1], dx, n, c, j0),
            (4, &[b]) => taps_block::<4, 1>(a, inner, taps, src, plane, offs, [b], dx, n, c, j0),
            (3, &[b]) => taps_block::<3, 1>(a, inner, taps, src, plane, offs, [b], dx, n, c, j0),
            (2, &[b]) => taps_block::<2, 1>(a, inner, taps, src, plane, offs, [b], dx, n, c, j0),
            (1, &[b]) => taps_block::<1, 1>(a, inner, taps, src, plane, offs, [b], dx, n, c, j0),
            _ => unreachable!("1 to 4 channels and one or two vectors per tile"),
        }
        c += rows;
    }
}

/// Channels `c0 .. c0 + MR`, `V` vectors of dx from column `j0`, every
/// tap: the block's dx stays in registers from the first tap to the last.
#[allow(clippy::too_many_arguments)]
// `o` indexes the rows of a and the planes of the source together.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn taps_block<const MR: usize, const V: usize>(a: &[f32], inner: usize, taps: usize, src: &[f32], plane: usize, offs: &[usize], bases: [usize; V], dx: &mut [f32], ldx: usize, c0: usize, j0: usize) {
    // Loops rather than `array::from_fn`: that stayed an outlined baseline
    // function (SSE moves through the stack, 2 % of FP32 training).
    let mut sum = [[[0f32; 8]; V]; MR];
    for r in 0..MR {
        for v in 0..V {
            sum[r][v].copy_from_slice(&dx[(c0 + r) * ldx + j0 + 8 * v..][..8]);
        }
    }
    for t in 0..taps {
        let off: [usize; MR] = std::array::from_fn(|r| offs[(c0 + r) * taps + t]);
        let rows: [&[f32]; MR] = std::array::from_fn(|r| &a[((c0 + r) * taps + t) * inner..][..inner]);
        // Rows read one place, or a first run of rows one place and the rest
        // another (a block across a subarray's end in PS-QAT: the first rows
        // one d ps, the rest the next): the loads are shared by the rows
        // that read the same place. Any other pattern loads per row.
        let split = off.iter().position(|&o| o != off[0]).unwrap_or(MR);
        let two = off[split..].iter().all(|&o| o == off[MR - 1]);
        let at = [off[0], off[MR - 1]];
        let acc = match split {
            _ if split == MR => tap_sums::<MR, V, MR>(&rows, inner, src, plane, at, bases),
            1 if two && MR > 1 => tap_sums::<MR, V, 1>(&rows, inner, src, plane, at, bases),
            2 if two && MR > 2 => tap_sums::<MR, V, 2>(&rows, inner, src, plane, at, bases),
            3 if two && MR > 3 => tap_sums::<MR, V, 3>(&rows, inner, src, plane, at, bases),
            _ => tap_sums_apart(&rows, inner, src, plane, off, bases),
        };
        for r in 0..MR {
            for v in 0..V {
                for j in 0..8 {
                    sum[r][v][j] += acc[r][v][j];
                }
            }
        }
    }
    for r in 0..MR {
        for v in 0..V {
            dx[(c0 + r) * ldx + j0 + 8 * v..][..8].copy_from_slice(&sum[r][v]);
        }
    }
}

/// One tap's sums over `inner` for a block whose rows `..S` read at
/// `at[0]` and the rest at `at[1]` (`S == MR`: all at `at[0]`). The same
/// sums as `tap_sums_apart`, kept apart from it so that the compiler sees
/// which rows share a load.
// `o` indexes the rows of a and the planes of the source together.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn tap_sums<const MR: usize, const V: usize, const S: usize>(rows: &[&[f32]; MR], inner: usize, src: &[f32], plane: usize, at: [usize; 2], bases: [usize; V]) -> [[[f32; 8]; V]; MR] {
    let mut acc = [[[0f32; 8]; V]; MR];
    for o in 0..inner {
        // SAFETY (every `read8`): `gemm_taps` asserted max(offs) + (inner − 1)·plane
        // + max(bases) + 8 ≤ src.len(), and `at` holds two of the offs.
        let b0: [[f32; 8]; V] = std::array::from_fn(|v| unsafe { read8(src, at[0] + o * plane + bases[v]) });
        let b1: [[f32; 8]; V] = if S < MR { std::array::from_fn(|v| unsafe { read8(src, at[1] + o * plane + bases[v]) }) } else { b0 };
        for r in 0..MR {
            let (av, bv) = (rows[r][o], if r < S { &b0 } else { &b1 });
            for v in 0..V {
                for j in 0..8 {
                    acc[r][v][j] = av.mul_add(bv[v][j], acc[r][v][j]);
                }
            }
        }
    }
    acc
}

/// `tap_sums` for rows that read at any places: each row loads its own.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn tap_sums_apart<const MR: usize, const V: usize>(rows: &[&[f32]; MR], inner: usize, src: &[f32], plane: usize, off: [usize; MR], bases: [usize; V]) -> [[[f32; 8]; V]; MR] {
    let mut acc = [[[0f32; 8]; V]; MR];
    for o in 0..inner {
        for r in 0..MR {
            let av = rows[r][o];
            for v in 0..V {
                // SAFETY: as in `tap_sums`.
                let bv = unsafe { read8(src, off[r] + o * plane + bases[v]) };
                for j in 0..8 {
                    acc[r][v][j] = av.mul_add(bv[j], acc[r][v][j]);
                }
            }
        }
    }
    acc
}

/// The 8 floats of `src` from `at`, unchecked.
///
/// # Safety
/// `at + 8 ≤ src.len()`.
#[inline(always)]
unsafe fn read8(src: &[f32], at: usize) -> [f32; 8] {
    debug_assert!(at + 8 <= src.len());
    // SAFETY: inside `src` (the caller's contract); [f32; 8] has f32's alignment.
    unsafe { std::ptr::read(src.as_ptr().add(at) as *const [f32; 8]) }
}

/// The width of the product's panels: 6 rows × 16 columns is 12 vector
/// accumulators of 8, 2 for the row of b and 1 for the broadcast, within
/// AVX2's 16 registers. The AVX-512 clone takes the same blocking: a 4 × 32
/// block of zmm accumulators was not vectorised by LLVM (128 floats of
/// accumulators, kept on the stack, one scalar FMA each: FP32 training 3
/// times slower), and on Zen 4, which splits a zmm FMA in two, 32 columns
/// gain nothing over 16.
const PANEL: usize = 16;

/// b in the kernel's layout: its full panels of `PANEL` columns, each
/// `k × PANEL` and contiguous (read in place, a panel's rows lie a row of b
/// apart: with a power-of-two stride of 1,024 pixels every row on its own
/// page and in the same few L1 sets), then the rest of the columns
/// row-major.
pub struct Packed {
    k: usize,
    n: usize,
    panels: Buf,
    tail: Buf,
}

impl Packed {
    /// An empty b of `k × n`, filled row by row (`row`).
    pub(crate) fn new(k: usize, n: usize) -> Packed {
        let full = n / PANEL * PANEL;
        Packed { k, n, panels: Buf::for_overwrite(k * full), tail: Buf::for_overwrite(k * (n - full)) }
    }

    /// The whole of b (`k × n`, row-major).
    fn of(b: &[f32], k: usize, n: usize) -> Packed {
        assert!(b.len() >= k * n);
        let mut packed = Packed::new(k, n);
        for kk in 0..k {
            packed.row(kk, &b[kk * n..(kk + 1) * n]);
        }
        packed
    }

    /// Stores row `kk` of b.
    pub(crate) fn row(&mut self, kk: usize, line: &[f32]) {
        let full = self.n / PANEL * PANEL;
        for (p, chunk) in line[..full].chunks_exact(PANEL).enumerate() {
            self.panels[(p * self.k + kk) * PANEL..(p * self.k + kk + 1) * PANEL].copy_from_slice(chunk);
        }
        let rest = self.n - full;
        self.tail[kk * rest..(kk + 1) * rest].copy_from_slice(&line[full..self.n]);
    }
}

/// `c[m × n] = a[m × k] · b` for a b built row by row (`Packed::new`,
/// `Packed::row`), into `c` with row stride `ldc`.
pub(crate) fn gemm_packed(a: &[f32], b: &Packed, c: &mut [f32], ldc: usize, m: usize) {
    assert!(a.len() >= m * b.k);
    product_at(cpu::level(), Rows::Dense { a, lda: b.k }, b, c, ldc, m)
}

multiversion! {
    /// The product into `c` (row stride `ldc`) in `level`'s clone (cpu.rs):
    /// the same bits at every level.
    fn product_at(a: Rows, b: &Packed, c: &mut [f32], ldc: usize, m: usize) {
        _I => product::<6, PANEL>(a, b, c, ldc, m)
    }
}

#[inline(always)]
fn product<const MR: usize, const NR: usize>(a: Rows, b: &Packed, c: &mut [f32], ldc: usize, m: usize) {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(NR == PANEL && ldc >= n && c.len() >= (m - 1) * ldc + n);
    let full = n / NR;
    for p in 0..full {
        rows_of_panel::<MR, NR>(a, &b.panels[p * k * NR..(p + 1) * k * NR], c, ldc, m, k, p * NR);
    }
    // The columns past the full panels: narrower panels (16 columns: a
    // narrow layer's output channels), each copied on its own, then one by
    // one. Their outputs start at column `full · NR` of c.
    let (tail, ldt, c) = (&b.tail[..], n - full * NR, &mut c[full * NR..]);
    let mut j = 0;
    let mut panel = vec![0f32; if j + 8 <= ldt { k * 16 } else { 0 }];
    while j + 16 <= ldt {
        column_panel::<MR, 16>(a, tail, ldt, c, ldc, m, k, j, &mut panel);
        j += 16;
    }
    while j + 8 <= ldt {
        column_panel::<MR, 8>(a, tail, ldt, c, ldc, m, k, j, &mut panel);
        j += 8;
    }
    scalar(a, tail, ldt, c, ldc, 0..m, j..ldt, k);
}

/// Columns `j0 .. j0 + W` of the product, every row, with this panel of b
/// copied to contiguous memory first (read in place, its rows lie `ldb`
/// apart).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn column_panel<const MR: usize, const W: usize>(a: Rows, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, m: usize, k: usize, j0: usize, panel: &mut [f32]) {
    let panel = &mut panel[..k * W];
    for (kk, row) in panel.chunks_exact_mut(W).enumerate() {
        row.copy_from_slice(&b[kk * ldb + j0..kk * ldb + j0 + W]);
    }
    rows_of_panel::<MR, W>(a, panel, c, ldc, m, k, j0);
}

/// Columns `j0 .. j0 + W` of the product from the contiguous panel (`k × W`)
/// of b: blocks of `MR` rows, then of 4, 2 and 1 (16 output channels are
/// 6 + 6 + 4).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rows_of_panel<const MR: usize, const W: usize>(a: Rows, panel: &[f32], c: &mut [f32], ldc: usize, m: usize, k: usize, j0: usize) {
    let mut i = 0;
    while i + MR <= m {
        block::<MR, W>(a, panel, c, ldc, i, j0, k);
        i += MR;
    }
    while i + 4 <= m {
        block::<4, W>(a, panel, c, ldc, i, j0, k);
        i += 4;
    }
    while i + 2 <= m {
        block::<2, W>(a, panel, c, ldc, i, j0, k);
        i += 2;
    }
    if i < m {
        block::<1, W>(a, panel, c, ldc, i, j0, k);
    }
}

/// Rows `i0 .. i0 + MR` of the product's columns `j0 .. j0 + W`, a's rows
/// read line by line (a dense row is one line).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block<const MR: usize, const W: usize>(a: Rows, panel: &[f32], c: &mut [f32], ldc: usize, i0: usize, j0: usize, k: usize) {
    let mut acc = [[0f32; W]; MR];
    let (len, stride) = a.lines(k);
    let starts: [&[f32]; MR] = std::array::from_fn(|r| a.row(i0 + r));
    for (y, panel) in panel[..k * W].chunks(len * W).enumerate() {
        let rows: [&[f32]; MR] = std::array::from_fn(|r| &starts[r][y * stride..y * stride + len]);
        for (x, bv) in panel.chunks_exact(W).enumerate() {
            let bv: &[f32; W] = bv.try_into().unwrap();
            for r in 0..MR {
                let av = rows[r][x];
                for j in 0..W {
                    acc[r][j] = av.mul_add(bv[j], acc[r][j]);
                }
            }
        }
    }
    for r in 0..MR {
        c[(i0 + r) * ldc + j0..(i0 + r) * ldc + j0 + W].copy_from_slice(&acc[r]);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scalar(a: Rows, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, k: usize) {
    let (len, stride) = a.lines(k);
    for i in rows {
        let row = a.row(i);
        for j in cols.clone() {
            let mut acc = 0f32;
            for kk in 0..k {
                acc = row[kk / len * stride + kk % len].mul_add(b[kk * ldb + j], acc);
            }
            c[i * ldc + j] = acc;
        }
    }
}

/// `out[cols × rows]` = `a[rows × cols]` transposed. Full 8 × 8 tiles go
/// through fixed-size arrays (no bounds checks, one vector load and store
/// per tile row), in the clone of `cpu::level()`; the edges go one value at
/// a time. (Index-by-index with checks it was a twentieth of a training step.)
pub fn transpose(a: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    assert!(a.len() >= rows * cols && out.len() >= rows * cols);
    transpose_at(cpu::level(), a, rows, cols, out)
}

multiversion! {
    fn transpose_at(a: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
        I => transpose_in::<I>(a, rows, cols, out)
    }
}

#[inline(always)]
fn transpose_in<I: Isa>(a: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    const T: usize = 8;
    let (full_r, full_c) = (rows / T * T, cols / T * T);
    for r0 in (0..full_r).step_by(T) {
        for c0 in (0..full_c).step_by(T) {
            #[cfg(target_arch = "x86_64")]
            if I::LEVEL >= Level::Avx2 {
                // SAFETY: an AVX2 (or AVX-512) clone; the tile lies inside both
                // matrices (asserted by `transpose`, r0 + 8 ≤ rows, c0 + 8 ≤ cols).
                unsafe { avx2::tile8(a.as_ptr().add(r0 * cols + c0), cols, out.as_mut_ptr().add(c0 * rows + r0), rows) };
                continue;
            }
            let tile: [[f32; T]; T] = std::array::from_fn(|r| a[(r0 + r) * cols + c0..][..T].try_into().unwrap());
            for c in 0..T {
                let line: &mut [f32; T] = (&mut out[(c0 + c) * rows + r0..][..T]).try_into().unwrap();
                *line = std::array::from_fn(|r| tile[r][c]);
            }
        }
    }
    for r in 0..rows {
        let edge = if r < full_r { full_c..cols } else { 0..cols };
        for c in edge {
            out[c * rows + r] = a[r * cols + c];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Transposes the 8 × 8 tile at `a` (row stride `lda`) into `out` (row
    /// stride `ldo`): unpack pairs of rows, shuffle pairs of pairs, swap
    /// 128-bit halves.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile8(a: *const f32, lda: usize, out: *mut f32, ldo: usize) {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(a.add(i * lda)));
        let t: [__m256; 8] = std::array::from_fn(|i| {
            let (x, y) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_ps(x, y)
            } else {
                _mm256_unpackhi_ps(x, y)
            }
        });
        // u[j]: columns j and j + 4 of rows 0–3 (j < 4) or 4–7 (j ≥ 4).
        let u: [__m256; 8] = std::array::from_fn(|j| {
            let (x, y) = (t[j / 4 * 4 + j % 4 / 2], t[j / 4 * 4 + j % 4 / 2 + 2]);
            if j % 2 == 0 {
                _mm256_shuffle_ps::<0x44>(x, y)
            } else {
                _mm256_shuffle_ps::<0xEE>(x, y)
            }
        });
        for c in 0..4 {
            _mm256_storeu_ps(out.add(c * ldo), _mm256_permute2f128_ps::<0x20>(u[c], u[c + 4]));
            _mm256_storeu_ps(out.add((c + 4) * ldo), _mm256_permute2f128_ps::<0x31>(u[c], u[c + 4]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: one fused multiply-add per term, in ascending k.
    fn sequential(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f32;
                for kk in 0..k {
                    acc = a[i * k + kk].mul_add(b[kk * n + j], acc);
                }
                c[i * n + j] = acc;
            }
        }
        c
    }

    /// The product at `level`, b packed as `gemm` packs it.
    fn at(level: Level, a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
        product_at(level, Rows::Dense { a, lda: k }, &Packed::of(b, k, n), c, n, m)
    }

    #[test]
    fn blocked_equals_sequential_bit_for_bit() {
        // Odd sizes exercise every block: rows in blocks of 6 and their
        // tails of 4, 2 and 1, each against panels 16 and 8 wide, and the
        // column tail.
        for &(m, k, n) in &[(1, 1, 1), (4, 7, 32), (5, 27, 33), (16, 144, 1024), (9, 3, 70), (8, 20, 27), (7, 5, 40), (14, 9, 48), (5, 6, 24), (3, 0, 20), (0, 4, 8), (3, 4, 0)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729 % 1000) as f32 - 500.0) / 89.0).collect();
            let want = sequential(&a, &b, m, k, n);
            let mut c = vec![f32::NAN; m * n];
            gemm(&a, &b, &mut c, m, k, n);
            assert!(c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "{m}x{k}x{n}");
            // b written a row of a column group at a time, into rows that
            // hold old values: groups of whole panels, of panels and a tail,
            // and narrower than a panel.
            for group in [1, 7, 16, 40, n.max(1)] {
                let mut rows = vec![f32::NAN; m * n];
                gemm_rows(&a, &mut rows, m, k, n, group, |kk, j0, row| row.copy_from_slice(&b[kk * n + j0..kk * n + j0 + row.len()]));
                assert!(rows.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "group {group}: {m}x{k}x{n}");
            }
            // Every level this CPU runs (FMA instruction or libm's exactly rounded fmaf).
            for level in cpu::available() {
                let mut out = vec![f32::NAN; m * n];
                at(level, &a, &b, &mut out, m, k, n);
                assert!(out.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "{level:?}: {m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn shifted_equals_sequential_bit_for_bit() {
        // b's vectors read from overlapping places of one source (as a
        // convolution's taps do): rows in blocks of 8, 6, 4, 2 and 1, an even
        // and an odd number of vectors, at every level (8 only at AVX-512).
        let src: Vec<f32> = (0..400).map(|i| ((i * 7927 % 1000) as f32 - 500.0) / 83.0).collect();
        for &(m, k, vectors) in &[(1, 1, 1), (13, 27, 4), (7, 9, 3), (16, 40, 2), (5, 3, 5)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0).collect();
            let offs: Vec<usize> = (0..k).map(|kk| kk * 37 % 150).collect();
            let bases: Vec<usize> = (0..vectors).map(|v| v * 61 % 200).collect();
            let n = 8 * vectors;
            let b: Vec<f32> = (0..k * n).map(|i| src[offs[i / n] + bases[i % n / 8] + i % 8]).collect();
            let want = sequential(&a, &b, m, k, n);
            for level in cpu::available() {
                let mut c = vec![f32::NAN; m * n];
                shifted_at(level, &a, &mut c, m, k, &src, &offs, &bases);
                assert!(c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "{level:?}: {m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn windows_equal_sequential_bit_for_bit() {
        // a's rows as windows of one source (lines of w, `stride` apart, from
        // overlapping offsets), against the product of the rows written out:
        // one line and several, lines shorter than a vector, b with full
        // panels, narrower ones and a scalar tail, rows in blocks of 6, 4,
        // 2 and 1, at every level.
        let src: Vec<f32> = (0..900).map(|i| ((i * 7927 % 1000) as f32 - 500.0) / 83.0).collect();
        for &(m, (lines, w, stride), n) in &[(1, (1, 1, 1), 1), (13, (4, 8, 10), 16), (7, (3, 5, 7), 43), (16, (1, 30, 30), 32), (11, (6, 3, 3), 25)] {
            let k = lines * w;
            let offs: Vec<usize> = (0..m).map(|i| i * 37 % 150).collect();
            let a: Vec<f32> = (0..m * k).map(|i| src[offs[i / k] + i % k / w * stride + i % w]).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0).collect();
            let want = sequential(&a, &b, m, k, n);
            for level in cpu::available() {
                let mut c = vec![f32::NAN; m * n];
                product_at(level, Rows::Windows { src: &src, offs: &offs, w, stride }, &Packed::of(&b, k, n), &mut c, n, m);
                assert!(c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "{level:?}: {m}x{k}x{n}");
            }
            let mut c = vec![f32::NAN; m * n];
            gemm_windows(&src, &offs, (lines, w, stride), &b, &mut c, n);
            assert!(c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "gemm_windows: {m}x{k}x{n}");
        }
    }

    #[test]
    fn taps_equal_per_tap_sums_at_every_level() {
        // dx += Σ_t (Σ_o a·b from 0, fused), taps ascending, per channel and pixel; the
        // rows of a block reading one source, two (a subarray's end inside the block:
        // blocks of 4 and of 3 both cross it), two interleaved (by channel parity) or
        // three; blocks of 4, 3, 2 and 1 channels; one, two and three vectors.
        let (taps, plane) = (9, 50);
        for &(channels, inner, vectors) in &[(11, 5, 3), (8, 16, 2), (13, 7, 1), (10, 4, 2), (1, 3, 2)] {
            let k = channels * taps;
            let sources = [|_: usize| 0, |kk: usize| kk / 20, |kk: usize| kk / 9 % 2, |kk: usize| kk / 9 % 3];
            for (case, source) in sources.iter().enumerate() {
                let offs: Vec<usize> = (0..k).map(|kk| source(kk) * inner * plane + kk % taps * 3).collect();
                let bases: Vec<usize> = (0..vectors).map(|v| v * 11).collect();
                let len = offs.iter().max().unwrap() + (inner - 1) * plane + bases.iter().max().unwrap() + 8;
                let src: Vec<f32> = (0..len).map(|i| ((i * 7927 % 1000) as f32 - 500.0) / 83.0).collect();
                let a: Vec<f32> = (0..k * inner).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0).collect();
                let n = 8 * vectors;
                let start: Vec<f32> = (0..channels * n).map(|i| (i as f32 * 0.3).sin()).collect();
                let mut want = start.clone();
                for c in 0..channels {
                    for j in 0..n {
                        for t in 0..taps {
                            let row = c * taps + t;
                            let at = offs[row] + bases[j / 8] + j % 8;
                            want[c * n + j] += (0..inner).fold(0f32, |s, o| a[row * inner + o].mul_add(src[at + o * plane], s));
                        }
                    }
                }
                for level in cpu::available() {
                    let mut dx = start.clone();
                    taps_at(level, &a, inner, taps, &src, plane, &offs, &bases, &mut dx);
                    assert!(dx.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "{level:?}: {channels} channels, sources {case}");
                }
            }
        }
    }

    #[test]
    fn products_are_fused() {
        // -(1 + 2^-11) + (1 + 2^-12)²: the square is 1 + 2^-11 + 2^-24, so the fused sum is
        // 2^-24; a separately rounded square (a tie, to even: 1 + 2^-11) would give 0.
        let x = 1.0 + 2f32.powi(-12);
        let (a, b) = ([1.0, x], [-(1.0 + 2f32.powi(-11)), x]);
        for level in cpu::available() {
            let mut c = [f32::NAN];
            at(level, &a, &b, &mut c, 1, 2, 1);
            assert_eq!(c[0], 2f32.powi(-24), "{level:?}");
        }
    }

    #[test]
    fn transpose_moves_every_value() {
        // Full 8 × 8 tiles, edges of rows, of columns and of both, at every level.
        for &(rows, cols) in &[(1, 1), (16, 1024), (17, 33), (3, 40), (8, 8), (24, 13), (9, 16)] {
            let a: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            for level in cpu::available() {
                let mut t = vec![f32::NAN; rows * cols];
                transpose_at(level, &a, rows, cols, &mut t);
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(t[c * rows + r], a[r * cols + c], "{rows}x{cols} at {r},{c}, {level:?}");
                    }
                }
            }
        }
    }
}
