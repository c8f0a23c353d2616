//! Matrix products on resident 8-bit weights: `y = x·Wᵀ + b` with `W` kept as its q8/q4 codes
//! and scales, never widened to f32.
//!
//! `x` is quantized on the fly to 8 bits in blocks of [`ABLOCK`] values along each row, one
//! scale per block (symmetric, max |x| to 127): a few large channels then coarsen only their
//! own block, not the whole row (one scale per row cost the conv layers, whose inputs have such
//! channels, a min hidden-state cosine of 0.99899 on real music; see the README). Products
//! are summed exactly in i32 over each block, and each block's sum is scaled back in f32 by
//! its activation scale times the weight's. On x86-64 with AVX-512 VNNI one instruction
//! multiplies 64 byte pairs and adds them in fours into 16 i32 lanes, four times the
//! multiply-adds of an f32 FMA: that is where the speed over f32 comes from. VNNI multiplies
//! unsigned by signed bytes, so activations are stored offset by 128 (`u = q + 128`) and the
//! offset's share, `128·Σ codes` per block and output (precomputed), is subtracted from each
//! block's sum.
//!
//! Layout: the weight is cut into panels of [`NR`] outputs; a panel holds, for each group of 4
//! inputs, 4 codes per output (`[k / 4][NR][4]`), so one 64-byte load feeds 16 outputs. Rows
//! of `x` are processed [`MR`] at a time against one panel, `MR × NR` sums kept in registers.

/// Rows of `x` per microkernel call.
pub const MR: usize = 6;
/// Outputs per weight panel (two 16-lane vectors).
pub const NR: usize = 32;
/// Values per activation scale (and per i32 partial sum): 8 groups of 4.
pub const ABLOCK: usize = 32;
const GROUPS_PER_BLOCK: usize = ABLOCK / 4;
/// Rows of `x` per parallel task: the task's quantized rows stay in L2 while every panel
/// streams past them.
const ROWS_PER_TASK: usize = 8 * MR;
/// The unsigned offset of a quantized activation.
const OFFSET: i32 = 128;

/// A weight `[n, k]` (n outputs, k inputs) in the kernel's layout.
#[derive(Debug, Clone)]
pub struct PackedQ8 {
    n: usize,
    k: usize,
    /// Activation blocks per row (`k` rounded up to [`ABLOCK`]).
    blocks: usize,
    /// `[panels][blocks · 8 groups][NR][4]`, zero past `n` and `k`.
    codes: Vec<i8>,
    /// `[panels][blocks][NR]`: the weight scale over each activation block, zero past `n`.
    scales: Vec<f32>,
    /// `[panels][blocks][NR]`: `128·Σ codes` of each block, the offset's share.
    offset: Vec<i32>,
}

impl PackedQ8 {
    /// Pack codes stored row-major `[n, k]` (one row per output, as in a kit file) with
    /// `scales` `[n, ceil(k / block)]`. `None` when a weight block would split an activation
    /// block (a block neither a multiple of [`ABLOCK`] nor the whole row), or the sizes
    /// disagree.
    pub fn new(codes: &[i8], scales: &[f32], n: usize, k: usize, block: usize) -> Option<Self> {
        Self::with_order(codes, scales, n, k, block, |i| i)
    }

    /// As [`new`](Self::new), with the kernel's input `i` read from stored column `order(i)`
    /// (a conv's taps in another order). Only one weight block per row is allowed then, since
    /// blocks are contiguous in stored order.
    pub fn with_order(
        codes: &[i8],
        scales: &[f32],
        n: usize,
        k: usize,
        block: usize,
        order: impl Fn(usize) -> usize,
    ) -> Option<Self> {
        let block = block.max(1);
        let wblocks = k.div_ceil(block);
        let whole_row = wblocks == 1;
        let reordered = (0..k).any(|i| order(i) != i);
        if n == 0
            || k == 0
            || codes.len() != n * k
            || scales.len() != n * wblocks
            || (!whole_row && (!block.is_multiple_of(ABLOCK) || reordered))
        {
            return None;
        }
        let blocks = k.div_ceil(ABLOCK);
        let groups = blocks * GROUPS_PER_BLOCK;
        let panels = n.div_ceil(NR);
        let mut packed = vec![0i8; panels * groups * NR * 4];
        let mut packed_scales = vec![0f32; panels * blocks * NR];
        let mut offset = vec![0i32; panels * blocks * NR];
        for o in 0..n {
            let (p, c) = (o / NR, o % NR);
            let row = &codes[o * k..(o + 1) * k];
            for i in 0..k {
                let q = row[order(i)];
                packed[((p * groups + i / 4) * NR + c) * 4 + i % 4] = q;
                offset[(p * blocks + i / ABLOCK) * NR + c] += OFFSET * i32::from(q);
            }
            for b in 0..blocks {
                let wb = if whole_row { 0 } else { b * ABLOCK / block };
                packed_scales[(p * blocks + b) * NR + c] = scales[o * wblocks + wb];
            }
        }
        Some(Self {
            n,
            k,
            blocks,
            codes: packed,
            scales: packed_scales,
            offset,
        })
    }

    /// Outputs.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inputs.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held (codes, scales and offsets).
    pub fn bytes(&self) -> usize {
        self.codes.len() + 4 * (self.scales.len() + self.offset.len())
    }
}

/// Whether this CPU runs the 8-bit kernel faster than f32 (x86-64 with AVX-512 VNNI). Elsewhere
/// [`matmul`] still gives the same result, through a portable loop that is slower than f32.
pub fn fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Quantize one row to `dst` (`blocks · ABLOCK` bytes, offset by 128; the padding is 128,
/// which meets zero weights) with one scale per block into `scales`. Built for AVX-512 where
/// the kernel runs, and in a form that vectorises (lane-wise max, rounding by the 1.5·2^23
/// trick rather than a `roundf` call).
fn quantize_row(x: &[f32], dst: &mut [u8], scales: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fast() {
        // SAFETY: `fast` saw AVX-512 (F, BW, VL).
        return unsafe { quantize_row_avx512(x, dst, scales) };
    }
    quantize_row_generic(x, dst, scales)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize_row_avx512(x: &[f32], dst: &mut [u8], scales: &mut [f32]) {
    quantize_row_generic(x, dst, scales)
}

#[inline(always)]
fn quantize_row_generic(x: &[f32], dst: &mut [u8], scales: &mut [f32]) {
    const ROUND: f32 = 12_582_912.0;
    dst[x.len()..].fill(128);
    for ((block, d), scale) in x.chunks(ABLOCK).zip(dst.chunks_mut(ABLOCK)).zip(scales) {
        let mut lanes = [0f32; ABLOCK];
        // `v · 0` is 0 for finite `v` and NaN for NaN or ±inf: one pass finds both
        let mut poison = [0f32; ABLOCK];
        for ((l, p), &v) in lanes.iter_mut().zip(poison.iter_mut()).zip(block) {
            *l = v.abs();
            *p = v * 0.0;
        }
        let max = lanes.iter().fold(0f32, |m, &v| m.max(v));
        let finite = poison.iter().all(|p| *p == 0.0);
        // a block holding NaN or ±inf gets a NaN scale, so its outputs are NaN as in f32
        let inv = if max > 0.0 && finite {
            127.0 / max
        } else {
            0.0
        };
        for (d, &v) in d.iter_mut().zip(block) {
            // |v · inv| <= 127 (up to rounding), so the rounded value sits in the low bits
            let q = ((v * inv + ROUND).to_bits() as i32)
                .wrapping_sub(ROUND.to_bits() as i32)
                .clamp(-127, 127);
            *d = (q + 128) as u8;
        }
        *scale = if finite { max / 127.0 } else { f32::NAN };
    }
}

/// `x` `[m, k]` (row-major) times the packed weight's transpose, plus `bias` `[n]`:
/// `[m, n]` row-major. Rows run in parallel with the `flex` feature on native targets.
pub fn matmul(x: &[f32], m: usize, w: &PackedQ8, bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(
        x.len(),
        m * w.k,
        "input of {} values, expected {m}x{}",
        x.len(),
        w.k
    );
    let mut out = vec![0f32; m * w.n];
    if w.n == 0 || m == 0 {
        return out;
    }
    let task = |(t, out): (usize, &mut [f32])| {
        let rows = out.len() / w.n;
        rows_task(
            &x[t * ROWS_PER_TASK * w.k..][..rows * w.k],
            rows,
            w,
            bias,
            out,
        );
    };
    #[cfg(all(feature = "flex", not(target_family = "wasm")))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(ROWS_PER_TASK * w.n)
            .enumerate()
            .for_each(task);
    }
    #[cfg(not(all(feature = "flex", not(target_family = "wasm"))))]
    out.chunks_mut(ROWS_PER_TASK * w.n)
        .enumerate()
        .for_each(task);
    out
}

/// Up to [`ROWS_PER_TASK`] rows: quantize them, then every panel against every `MR` rows.
fn rows_task(x: &[f32], rows: usize, w: &PackedQ8, bias: Option<&[f32]>, out: &mut [f32]) {
    let lda = w.blocks * ABLOCK;
    let padded = rows.div_ceil(MR) * MR;
    let mut a = vec![128u8; padded * lda];
    // [row][block]; padding rows keep scale 0
    let mut a_scales = vec![0f32; padded * w.blocks];
    for r in 0..rows {
        quantize_row(
            &x[r * w.k..(r + 1) * w.k],
            &mut a[r * lda..(r + 1) * lda],
            &mut a_scales[r * w.blocks..(r + 1) * w.blocks],
        );
    }
    let q = Quantized {
        codes: &a,
        scales: &a_scales,
        lda,
        sda: w.blocks,
    };
    product(&q, rows, w, bias, out);
}

/// Quantized rows for [`product`]: row `r` at `r · lda` (codes) and `r · sda` (scales), with
/// at least `ceil(rows / MR) · MR` rows readable.
struct Quantized<'a> {
    codes: &'a [u8],
    scales: &'a [f32],
    lda: usize,
    sda: usize,
}

/// `rows` quantized rows times every panel, plus `bias`, into `out` (`[rows][n]`).
fn product(a: &Quantized, rows: usize, w: &PackedQ8, bias: Option<&[f32]>, out: &mut [f32]) {
    let kernel = pick_kernel();
    let mut tile = [0f32; MR * NR];
    let panel_codes = w.blocks * ABLOCK * NR;
    let panel_blocks = w.blocks * NR;
    let tiles = rows.div_ceil(MR);
    for p in 0..w.n.div_ceil(NR) {
        let panel = Panel {
            codes: &w.codes[p * panel_codes..(p + 1) * panel_codes],
            scales: &w.scales[p * panel_blocks..(p + 1) * panel_blocks],
            offset: &w.offset[p * panel_blocks..(p + 1) * panel_blocks],
        };
        let cols = NR.min(w.n - p * NR);
        for t in 0..tiles {
            let rows_a = Rows {
                codes: &a.codes[t * MR * a.lda..],
                scales: &a.scales[t * MR * a.sda..],
                blocks: w.blocks,
                lda: a.lda,
                sda: a.sda,
            };
            kernel(&rows_a, &panel, &mut tile);
            for r in 0..MR.min(rows - t * MR) {
                let row = t * MR + r;
                let dst = &mut out[row * w.n + p * NR..][..cols];
                let sums = &tile[r * NR..r * NR + cols];
                match bias {
                    Some(b) => {
                        for ((d, s), b) in dst.iter_mut().zip(sums).zip(&b[p * NR..]) {
                            *d = s + b;
                        }
                    }
                    None => dst.copy_from_slice(sums),
                }
            }
        }
    }
}

/// A conv as a product without its im2col matrix: `x` is one clip's `[frames, channels]`, and
/// output row `t` is the window of `taps` frames from frame `stride · t`, tap-major, which is
/// contiguous in `x`. Each frame is quantized once (its channels in blocks of [`ABLOCK`]) and
/// the windows are read from those codes with a row stride of `stride` frames. `w` holds the
/// conv's codes with inputs tap-major (`PackedQ8::with_order`). `None` unless `channels` is a
/// multiple of [`ABLOCK`] and `w` takes `taps · channels` inputs; else `[out_len, n]`.
pub fn conv_matmul(
    x: &[f32],
    channels: usize,
    (taps, stride): (usize, usize),
    w: &PackedQ8,
    bias: Option<&[f32]>,
) -> Option<Vec<f32>> {
    let frames = x.len() / channels.max(1);
    if channels == 0
        || !channels.is_multiple_of(ABLOCK)
        || w.k != taps * channels
        || frames < taps
        || stride == 0
    {
        return None;
    }
    let out_len = (frames - taps) / stride + 1;
    let mut out = vec![0f32; out_len * w.n];
    let per_frame = channels / ABLOCK;
    let task = |(t, out): (usize, &mut [f32])| {
        let rows = out.len() / w.n;
        let padded = rows.div_ceil(MR) * MR;
        let first = t * ROWS_PER_TASK * stride;
        // frames the padded rows read; those past the clip stay 128 with scale 0
        let span = (padded - 1) * stride + taps;
        let mut codes = vec![128u8; span * channels];
        let mut scales = vec![0f32; span * per_frame];
        for f in 0..span.min(frames - first) {
            let src = &x[(first + f) * channels..(first + f + 1) * channels];
            quantize_row(
                src,
                &mut codes[f * channels..(f + 1) * channels],
                &mut scales[f * per_frame..(f + 1) * per_frame],
            );
        }
        let q = Quantized {
            codes: &codes,
            scales: &scales,
            lda: stride * channels,
            sda: stride * per_frame,
        };
        product(&q, rows, w, bias, out);
    };
    #[cfg(all(feature = "flex", not(target_family = "wasm")))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(ROWS_PER_TASK * w.n)
            .enumerate()
            .for_each(task);
    }
    #[cfg(not(all(feature = "flex", not(target_family = "wasm"))))]
    out.chunks_mut(ROWS_PER_TASK * w.n)
        .enumerate()
        .for_each(task);
    Some(out)
}

/// `MR` quantized rows of `blocks · ABLOCK` codes (offset by 128) and `blocks` scales each,
/// row `r` at `r · lda` and `r · sda` (rows may overlap: a conv's windows).
pub(crate) struct Rows<'a> {
    codes: &'a [u8],
    scales: &'a [f32],
    blocks: usize,
    lda: usize,
    sda: usize,
}

/// One panel of the packed weight (see [`PackedQ8`]'s fields).
pub(crate) struct Panel<'a> {
    codes: &'a [i8],
    scales: &'a [f32],
    offset: &'a [i32],
}

/// `tile[r][c]` = `Σ_b a_scale[r][b] · w_scale[b][c] · (Σ_{i in b} u[r][i] · w[c][i] -
/// offset[b][c])`: the product of `MR` rows with one panel.
type Kernel = fn(&Rows, &Panel, &mut [f32; MR * NR]);

fn pick_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    if fast() {
        return vnni::tile;
    }
    tile_portable
}

/// The kernel in plain Rust: exact i32 sums, the same result as the VNNI kernel up to the
/// order of f32 roundings.
pub(crate) fn tile_portable(a: &Rows, w: &Panel, tile: &mut [f32; MR * NR]) {
    let lda = a.lda;
    tile.fill(0.0);
    for b in 0..a.blocks {
        let mut acc = [[0i32; NR]; MR];
        for g in b * GROUPS_PER_BLOCK..(b + 1) * GROUPS_PER_BLOCK {
            let wg = &w.codes[g * NR * 4..(g + 1) * NR * 4];
            for (r, acc) in acc.iter_mut().enumerate() {
                let ar = &a.codes[r * lda + g * 4..r * lda + g * 4 + 4];
                for (c, acc) in acc.iter_mut().enumerate() {
                    let wc = &wg[c * 4..c * 4 + 4];
                    *acc += (0..4)
                        .map(|j| i32::from(ar[j]) * i32::from(wc[j]))
                        .sum::<i32>();
                }
            }
        }
        let (s, off) = (
            &w.scales[b * NR..(b + 1) * NR],
            &w.offset[b * NR..(b + 1) * NR],
        );
        for (r, acc) in acc.iter().enumerate() {
            let sa = a.scales[r * a.sda + b];
            for c in 0..NR {
                tile[r * NR + c] += (acc[c] - off[c]) as f32 * (s[c] * sa);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{ABLOCK, GROUPS_PER_BLOCK, MR, NR, Panel, Rows};
    use std::arch::x86_64::*;

    /// Safe entry: only picked when [`super::fast`] saw AVX-512 VNNI, BW and VL.
    pub(super) fn tile(a: &Rows, w: &Panel, tile: &mut [f32; MR * NR]) {
        let (lda, len) = (a.lda, a.blocks * ABLOCK);
        assert!(a.codes.len() >= (MR - 1) * lda + len);
        assert!(a.scales.len() >= (MR - 1) * a.sda + a.blocks);
        assert!(w.codes.len() >= len * NR && w.scales.len() >= a.blocks * NR);
        assert!(w.offset.len() >= a.blocks * NR);
        // SAFETY: the CPU has the features (checked by the caller through `fast`), and the
        // asserts above bound every read: `MR` rows of `blocks · ABLOCK` bytes `lda` apart and
        // `blocks` scales `sda` apart in `a`; `blocks · 8` groups of `NR · 4` codes and
        // `blocks` rows of `NR` scales and offsets in `w`.
        unsafe { tile_avx512(a, w, lda, tile) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_avx512(a: &Rows, w: &Panel, lda: usize, tile: &mut [f32; MR * NR]) {
        let (ap, wp) = (a.codes.as_ptr(), w.codes.as_ptr());
        let mut sums = [[_mm512_setzero_ps(); 2]; MR];
        for b in 0..a.blocks {
            let mut acc = [[_mm512_setzero_si512(); 2]; MR];
            for g in b * GROUPS_PER_BLOCK..(b + 1) * GROUPS_PER_BLOCK {
                // SAFETY (whole loop): in bounds per `tile`'s asserts.
                unsafe {
                    let wg = wp.add(g * NR * 4);
                    let w0 = _mm512_loadu_si512(wg as *const __m512i);
                    let w1 = _mm512_loadu_si512(wg.add(64) as *const __m512i);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let four = (ap.add(r * lda + g * 4) as *const i32).read_unaligned();
                        let av = _mm512_set1_epi32(four);
                        acc[0] = _mm512_dpbusd_epi32(acc[0], av, w0);
                        acc[1] = _mm512_dpbusd_epi32(acc[1], av, w1);
                    }
                }
            }
            // SAFETY: one `NR` row of scales and offsets per block.
            let (s0, s1, o0, o1) = unsafe {
                let (s, o) = (w.scales.as_ptr().add(b * NR), w.offset.as_ptr().add(b * NR));
                (
                    _mm512_loadu_ps(s),
                    _mm512_loadu_ps(s.add(16)),
                    _mm512_loadu_si512(o as *const __m512i),
                    _mm512_loadu_si512(o.add(16) as *const __m512i),
                )
            };
            for (r, (sum, acc)) in sums.iter_mut().zip(&acc).enumerate() {
                let sa = _mm512_set1_ps(a.scales[r * a.sda + b]);
                let x0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[0], o0));
                let x1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[1], o1));
                sum[0] = _mm512_fmadd_ps(x0, _mm512_mul_ps(s0, sa), sum[0]);
                sum[1] = _mm512_fmadd_ps(x1, _mm512_mul_ps(s1, sa), sum[1]);
            }
        }
        for (r, sum) in sums.iter().enumerate() {
            // SAFETY: `tile` holds MR rows of NR floats.
            unsafe {
                _mm512_storeu_ps(tile.as_mut_ptr().add(r * NR), sum[0]);
                _mm512_storeu_ps(tile.as_mut_ptr().add(r * NR + 16), sum[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::blocks::quantize_q8;

    /// A deterministic pseudo-random stream in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The same arithmetic in f64 from the dequantized operands (activations rounded per block
    /// of ABLOCK values): the kernel's only rounding after the i32 sums is f32 scaling, so
    /// they agree to f32 precision.
    fn reference(
        x: &[f32],
        m: usize,
        codes: &[i8],
        scales: &[f32],
        (n, k, block): (usize, usize, usize),
        bias: &[f32],
    ) -> Vec<f64> {
        let blocks = k.div_ceil(block);
        let mut out = vec![0f64; m * n];
        for r in 0..m {
            let row = &x[r * k..(r + 1) * k];
            let mut q = vec![0f64; k];
            for (j, chunk) in row.chunks(ABLOCK).enumerate() {
                let max = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
                let inv = if max > 0.0 { 127.0 / max } else { 0.0 };
                for (i, v) in chunk.iter().enumerate() {
                    let code = ((v * inv).round_ties_even() as i32).clamp(-127, 127);
                    q[j * ABLOCK + i] = f64::from(code) * f64::from(max / 127.0);
                }
            }
            for o in 0..n {
                let mut acc = 0f64;
                for i in 0..k {
                    let s = f64::from(scales[o * blocks + i / block]);
                    acc += q[i] * f64::from(codes[o * k + i]) * s;
                }
                out[r * n + o] = acc + f64::from(bias[o]);
            }
        }
        out
    }

    fn check(m: usize, n: usize, k: usize, block: usize) {
        let x = values(m * k, 1);
        let wf = values(n * k, 2);
        let bias = values(n, 3);
        let (codes, scales) = quantize_q8(&wf, k, block);
        let w = PackedQ8::new(&codes, &scales, n, k, block).expect("packable");
        let got = matmul(&x, m, &w, Some(&bias));
        let want = reference(&x, m, &codes, &scales, (n, k, block), &bias);
        let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (f64::from(*g) - w).abs())
            .fold(0f64, f64::max);
        assert!(
            worst / scale < 1e-5,
            "{m}x{n}x{k} block {block}: rel err {}",
            worst / scale
        );
        // and the f32 product, within the two roundings (about 1% of the largest output here)
        let mut exact = 0f64;
        for r in 0..m.min(3) {
            for o in 0..n {
                let d: f64 = (0..k)
                    .map(|i| f64::from(x[r * k + i]) * f64::from(wf[o * k + i]))
                    .sum();
                exact = exact.max((d + f64::from(bias[o]) - f64::from(got[r * n + o])).abs());
            }
        }
        assert!(exact / scale < 0.02, "{m}x{n}x{k}: {exact} vs f32 product");
    }

    #[test]
    fn matches_reference_per_block_and_per_channel() {
        check(13, 70, 96, 32);
        check(13, 70, 192, 64);
        check(50, 33, 100, 100);
        check(7, 64, 768, 32);
        check(1, 5, 6, 6);
        check(ROWS_PER_TASK * 2 + 5, 40, 64, 1 << 20);
    }

    #[test]
    fn portable_and_simd_kernels_agree() {
        let (n, k, block) = (64, 256, 32);
        let (codes, scales) = quantize_q8(&values(n * k, 4), k, block);
        let w = PackedQ8::new(&codes, &scales, n, k, block).expect("packable");
        let codes: Vec<u8> = values(MR * k, 5)
            .iter()
            .map(|v| ((v + 1.0) * 127.0) as u8)
            .collect();
        let a_scales: Vec<f32> = values(MR * w.blocks, 6).iter().map(|v| v.abs()).collect();
        let rows = Rows {
            codes: &codes,
            scales: &a_scales,
            blocks: w.blocks,
            lda: k,
            sda: w.blocks,
        };
        let panel = Panel {
            codes: &w.codes[..k * NR],
            scales: &w.scales[..w.blocks * NR],
            offset: &w.offset[..w.blocks * NR],
        };
        let mut want = [0f32; MR * NR];
        tile_portable(&rows, &panel, &mut want);
        let mut got = [0f32; MR * NR];
        pick_kernel()(&rows, &panel, &mut got);
        // the i32 sums are exact; only the f32 scaling differs (FMA or not)
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-5 * scale, "{g} vs {e}");
        }
    }

    #[test]
    fn refuses_blocks_that_split_activation_blocks() {
        let (codes, scales) = quantize_q8(&values(4 * 30, 6), 30, 10);
        assert!(PackedQ8::new(&codes, &scales, 4, 30, 10).is_none());
        let (codes, scales) = quantize_q8(&values(4 * 30, 6), 30, 30);
        assert!(PackedQ8::new(&codes, &scales, 4, 30, 30).is_some());
        assert!(PackedQ8::new(&codes, &scales, 4, 31, 30).is_none());
        let (codes, scales) = quantize_q8(&values(4 * 128, 6), 128, 16);
        assert!(PackedQ8::new(&codes, &scales, 4, 128, 16).is_none());
        let (codes, scales) = quantize_q8(&values(4 * 128, 6), 128, 64);
        assert!(PackedQ8::new(&codes, &scales, 4, 128, 64).is_some());
    }

    /// The conv path (windows read in place from per-frame codes) equals the product on the
    /// im2col matrix built by hand: per-frame activation blocks are the row's blocks.
    #[test]
    fn conv_windows_equal_im2col() {
        let (channels, taps, stride, frames, n) = (64, 3, 2, 101, 40);
        let x = values(frames * channels, 8);
        let k = taps * channels;
        let (codes, scales) = quantize_q8(&values(n * k, 9), k, k);
        let w = PackedQ8::new(&codes, &scales, n, k, k).expect("packable");
        let bias = values(n, 10);
        let got = conv_matmul(&x, channels, (taps, stride), &w, Some(&bias)).expect("fits");
        let out_len = (frames - taps) / stride + 1;
        let cols: Vec<f32> = (0..out_len)
            .flat_map(|t| x[t * stride * channels..(t * stride + taps) * channels].to_vec())
            .collect();
        let want = matmul(&cols, out_len, &w, Some(&bias));
        assert_eq!(got.len(), want.len());
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-6 * e.abs().max(1.0), "{g} vs {e}");
        }
        assert!(conv_matmul(&x[..40 * 50], 40, (taps, stride), &w, None).is_none());
    }

    #[test]
    fn zero_and_nan_rows() {
        let (codes, scales) = quantize_q8(&values(8 * 16, 7), 16, 16);
        let w = PackedQ8::new(&codes, &scales, 8, 16, 16).expect("packable");
        let mut x = vec![0f32; 3 * 16];
        x[16] = f32::NAN;
        let y = matmul(&x, 3, &w, None);
        assert!(y[..8].iter().all(|&v| v == 0.0));
        assert!(y[8..16].iter().all(|v| v.is_nan()));
        assert!(y[16..].iter().all(|&v| v == 0.0));
    }
}
