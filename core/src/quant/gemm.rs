//! Matrix products on resident 8-bit weights: `y = x·Wᵀ + b` with `W` kept as its q8/q4 codes
//! and per-block scales, never widened to f32.
//!
//! Each row of `x` is quantized on the fly to 8 bits with one scale per row (symmetric, max
//! |x| to 127), the products are summed exactly in i32 over each weight block, and every
//! block's sum is scaled back in f32. On x86-64 with AVX-512 VNNI one instruction multiplies
//! 64 byte pairs and adds them in fours into 16 i32 lanes, four times the multiply-adds of an
//! f32 FMA: that is where the speed over f32 comes from. VNNI multiplies unsigned by signed
//! bytes, so a row is stored offset by 128 (`u = q + 128`) and the offset's share,
//! `128·Σ codes` per block and output, is subtracted once per output at the end.
//!
//! The error is the activation's rounding (half a step of max|x|/127 per value) on top of the
//! weights' own; the model tests bound the hidden states' cosine to f32.
//!
//! Layout: the weight is cut into panels of [`NR`] outputs; a panel holds, for each group of 4
//! inputs, 4 codes per output (`[k / 4][NR][4]`), so one 64-byte load feeds 16 outputs. Rows
//! of `x` are processed [`MR`] at a time against one panel, `MR × NR` sums kept in registers.

/// Rows of `x` per microkernel call.
pub const MR: usize = 6;
/// Outputs per weight panel (two 16-lane vectors).
pub const NR: usize = 32;
/// Rows of `x` per parallel task: the task's quantized rows stay in L2 while every panel
/// streams past them.
const ROWS_PER_TASK: usize = 8 * MR;
/// The unsigned offset of a quantized activation.
const OFFSET: f32 = 128.0;

/// A weight `[n, k]` (n outputs, k inputs) in the kernel's layout.
#[derive(Debug, Clone)]
pub struct PackedQ8 {
    n: usize,
    k: usize,
    /// Groups of 4 inputs (k rounded up to 4, divided by 4).
    groups: usize,
    /// Groups per scale block.
    groups_per_block: usize,
    blocks: usize,
    /// `[panels][groups][NR][4]`, zero past `n` and `k`.
    codes: Vec<i8>,
    /// `[panels][blocks][NR]`, zero past `n`.
    scales: Vec<f32>,
    /// `[panels · NR]`: `Σ_b scale·128·Σ codes of block b`, the offset's share per output.
    offset: Vec<f32>,
}

impl PackedQ8 {
    /// Pack codes stored row-major `[n, k]` (one row per output, as in a kit file) with
    /// `scales` `[n, ceil(k / block)]`. `None` when the blocks cannot be cut into groups of
    /// 4 inputs (a block neither a multiple of 4 nor the whole row), or the sizes disagree.
    pub fn new(codes: &[i8], scales: &[f32], n: usize, k: usize, block: usize) -> Option<Self> {
        Self::with_order(codes, scales, n, k, block, |i| i)
    }

    /// As [`new`](Self::new), with the kernel's input `i` read from stored column `order(i)`
    /// (a conv's taps in another order). Only one block per row is allowed then, since blocks
    /// are contiguous in stored order.
    pub fn with_order(
        codes: &[i8],
        scales: &[f32],
        n: usize,
        k: usize,
        block: usize,
        order: impl Fn(usize) -> usize,
    ) -> Option<Self> {
        let block = block.max(1);
        let blocks = k.div_ceil(block);
        let whole_row = blocks == 1;
        let reordered = (0..k).any(|i| order(i) != i);
        if n == 0
            || k == 0
            || codes.len() != n * k
            || scales.len() != n * blocks
            || (!whole_row && (!block.is_multiple_of(4) || reordered))
        {
            return None;
        }
        let groups = k.div_ceil(4);
        let groups_per_block = if whole_row { groups } else { block / 4 };
        let panels = n.div_ceil(NR);
        let mut packed = vec![0i8; panels * groups * NR * 4];
        let mut packed_scales = vec![0f32; panels * blocks * NR];
        let mut offset = vec![0f32; panels * NR];
        for o in 0..n {
            let (p, c) = (o / NR, o % NR);
            let row = &codes[o * k..(o + 1) * k];
            for i in 0..k {
                packed[((p * groups + i / 4) * NR + c) * 4 + i % 4] = row[order(i)];
            }
            let mut share = 0f32;
            for b in 0..blocks {
                let s = scales[o * blocks + b];
                packed_scales[(p * blocks + b) * NR + c] = s;
                let stored = &row[(b * block).min(k)..((b + 1) * block).min(k)];
                let sum: i32 = stored.iter().map(|&q| i32::from(q)).sum();
                share += s * OFFSET * sum as f32;
            }
            offset[o] = share;
        }
        Some(Self {
            n,
            k,
            groups,
            groups_per_block,
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
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Quantize one row to `dst` (`groups · 4` bytes, offset by 128; the padding is 128, which
/// meets zero weights) and return its scale. Built for AVX-512 where the kernel runs, and in
/// a form that vectorises (lane-wise max, rounding by the 1.5·2^23 trick rather than a
/// `roundf` call).
fn quantize_row(x: &[f32], dst: &mut [u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if fast() {
        // SAFETY: `fast` saw AVX-512 (F and BW).
        return unsafe { quantize_row_avx512(x, dst) };
    }
    quantize_row_generic(x, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize_row_avx512(x: &[f32], dst: &mut [u8]) -> f32 {
    quantize_row_generic(x, dst)
}

#[inline(always)]
fn quantize_row_generic(x: &[f32], dst: &mut [u8]) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    let mut lanes = [0f32; 16];
    // `v · 0` is 0 for finite `v` and NaN for NaN or ±inf: one pass finds both
    let mut poison = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for ((l, p), &v) in lanes.iter_mut().zip(poison.iter_mut()).zip(c) {
            *l = l.max(v.abs());
            *p += v * 0.0;
        }
    }
    let mut max = lanes.iter().fold(0f32, |m, &v| m.max(v));
    let mut finite = poison.iter().all(|p| *p == 0.0);
    for &v in tail {
        max = max.max(v.abs());
        finite &= v.is_finite();
    }
    // a row holding NaN or ±inf gets a NaN scale, so its outputs are NaN as in f32
    let inv = if max > 0.0 && finite {
        127.0 / max
    } else {
        0.0
    };
    for (d, &v) in dst.iter_mut().zip(x) {
        // |v · inv| <= 127 (up to rounding), so the rounded value sits in the low bits
        let q = ((v * inv + ROUND).to_bits() as i32)
            .wrapping_sub(ROUND.to_bits() as i32)
            .clamp(-127, 127);
        *d = (q + 128) as u8;
    }
    dst[x.len()..].fill(128);
    if finite { max / 127.0 } else { f32::NAN }
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
    if w.n == 0 || m == 0 {
        return out;
    }
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
    let lda = w.groups * 4;
    let padded = rows.div_ceil(MR) * MR;
    let mut a = vec![128u8; padded * lda];
    let mut row_scale = vec![0f32; padded];
    for r in 0..rows {
        row_scale[r] = quantize_row(&x[r * w.k..(r + 1) * w.k], &mut a[r * lda..(r + 1) * lda]);
    }
    let kernel = pick_kernel();
    let mut tile = [0f32; MR * NR];
    let panel_codes = w.groups * NR * 4;
    let panel_scales = w.blocks * NR;
    for p in 0..w.n.div_ceil(NR) {
        let codes = &w.codes[p * panel_codes..(p + 1) * panel_codes];
        let scales = &w.scales[p * panel_scales..(p + 1) * panel_scales];
        let cols = NR.min(w.n - p * NR);
        let offset = &w.offset[p * NR..p * NR + cols];
        for t in 0..padded / MR {
            kernel(
                &a[t * MR * lda..(t + 1) * MR * lda],
                lda,
                codes,
                scales,
                w.groups_per_block,
                &mut tile,
            );
            for r in 0..MR.min(rows - t * MR) {
                let row = t * MR + r;
                let s = row_scale[row];
                let dst = &mut out[row * w.n + p * NR..][..cols];
                let sums = &tile[r * NR..r * NR + cols];
                match bias {
                    Some(b) => {
                        let b = &b[p * NR..p * NR + cols];
                        for c in 0..cols {
                            dst[c] = s * (sums[c] - offset[c]) + b[c];
                        }
                    }
                    None => {
                        for c in 0..cols {
                            dst[c] = s * (sums[c] - offset[c]);
                        }
                    }
                }
            }
        }
    }
}

/// `MR` quantized rows (`lda` bytes apart) against one panel: `tile[r][c]` =
/// `Σ_blocks scale[b][c] · Σ_{i in b} a[r][i] · w[c][i]`, with `a` still offset by 128.
type Kernel = fn(&[u8], usize, &[i8], &[f32], usize, &mut [f32; MR * NR]);

fn pick_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    if fast() {
        return vnni::tile;
    }
    tile_portable
}

/// The kernel in plain Rust: exact i32 sums, the same result as the VNNI kernel.
pub(crate) fn tile_portable(
    a: &[u8],
    lda: usize,
    w: &[i8],
    scales: &[f32],
    groups_per_block: usize,
    tile: &mut [f32; MR * NR],
) {
    let groups = w.len() / (NR * 4);
    tile.fill(0.0);
    let mut g0 = 0;
    let mut b = 0;
    while g0 < groups {
        let g1 = (g0 + groups_per_block).min(groups);
        let mut acc = [[0i32; NR]; MR];
        for g in g0..g1 {
            let wg = &w[g * NR * 4..(g + 1) * NR * 4];
            for (r, acc) in acc.iter_mut().enumerate() {
                let ar = &a[r * lda + g * 4..r * lda + g * 4 + 4];
                for (c, acc) in acc.iter_mut().enumerate() {
                    let wc = &wg[c * 4..c * 4 + 4];
                    *acc += (0..4)
                        .map(|j| i32::from(ar[j]) * i32::from(wc[j]))
                        .sum::<i32>();
                }
            }
        }
        let s = &scales[b * NR..(b + 1) * NR];
        for r in 0..MR {
            for c in 0..NR {
                tile[r * NR + c] += acc[r][c] as f32 * s[c];
            }
        }
        g0 = g1;
        b += 1;
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// Safe entry: only picked when [`super::fast`] saw AVX-512 VNNI and BW.
    pub(super) fn tile(
        a: &[u8],
        lda: usize,
        w: &[i8],
        scales: &[f32],
        groups_per_block: usize,
        tile: &mut [f32; MR * NR],
    ) {
        let groups = w.len() / (NR * 4);
        assert!(a.len() >= (MR - 1) * lda + groups * 4 && groups_per_block > 0);
        assert!(scales.len() >= groups.div_ceil(groups_per_block) * NR);
        // SAFETY: the CPU has the features (checked by the caller through `fast`), and the
        // asserts above bound every read: rows `r < MR` of `groups · 4` bytes in `a`, `groups`
        // 128-byte groups in `w`, one `NR` scale row per block.
        unsafe {
            tile_avx512(
                a.as_ptr(),
                lda,
                w.as_ptr(),
                scales.as_ptr(),
                groups,
                groups_per_block,
                tile,
            )
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_avx512(
        a: *const u8,
        lda: usize,
        w: *const i8,
        scales: *const f32,
        groups: usize,
        groups_per_block: usize,
        tile: &mut [f32; MR * NR],
    ) {
        let mut sums = [[_mm512_setzero_ps(); 2]; MR];
        let mut g0 = 0;
        let mut s = scales;
        while g0 < groups {
            let g1 = (g0 + groups_per_block).min(groups);
            let mut acc = [[_mm512_setzero_si512(); 2]; MR];
            for g in g0..g1 {
                // SAFETY (whole loop): in bounds per `tile`'s asserts.
                unsafe {
                    let wg = w.add(g * NR * 4);
                    let w0 = _mm512_loadu_si512(wg as *const __m512i);
                    let w1 = _mm512_loadu_si512(wg.add(64) as *const __m512i);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let four = (a.add(r * lda + g * 4) as *const i32).read_unaligned();
                        let av = _mm512_set1_epi32(four);
                        acc[0] = _mm512_dpbusd_epi32(acc[0], av, w0);
                        acc[1] = _mm512_dpbusd_epi32(acc[1], av, w1);
                    }
                }
            }
            // SAFETY: one `NR` row of scales per block.
            let (s0, s1) = unsafe { (_mm512_loadu_ps(s), _mm512_loadu_ps(s.add(16))) };
            for (sum, acc) in sums.iter_mut().zip(&acc) {
                sum[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[0]), s0, sum[0]);
                sum[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[1]), s1, sum[1]);
            }
            // SAFETY: stays within (or one past) the scales.
            s = unsafe { s.add(NR) };
            g0 = g1;
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

    /// The same arithmetic in f64 from the dequantized operands: the kernel's only rounding
    /// after the i32 sums is f32 scaling, so they agree to f32 precision.
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
            let max = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            let inv = if max > 0.0 { 127.0 / max } else { 0.0 };
            let sa = f64::from(max / 127.0);
            for o in 0..n {
                let mut acc = 0f64;
                for i in 0..k {
                    let q = ((row[i] * inv).round_ties_even() as i32).clamp(-127, 127);
                    let s = f64::from(scales[o * blocks + i / block]);
                    acc += f64::from(q) * sa * f64::from(codes[o * k + i]) * s;
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
        let a: Vec<u8> = values(MR * w.groups * 4, 5)
            .iter()
            .map(|v| ((v + 1.0) * 127.0) as u8)
            .collect();
        let panel = &w.codes[..w.groups * NR * 4];
        let mut want = [0f32; MR * NR];
        tile_portable(
            &a,
            w.groups * 4,
            panel,
            &w.scales,
            w.groups_per_block,
            &mut want,
        );
        let mut got = [0f32; MR * NR];
        pick_kernel()(
            &a,
            w.groups * 4,
            panel,
            &w.scales,
            w.groups_per_block,
            &mut got,
        );
        // the i32 sums are exact; only the f32 scaling differs (FMA or not)
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-5 * scale, "{g} vs {e}");
        }
    }

    #[test]
    fn refuses_blocks_that_split_groups() {
        let (codes, scales) = quantize_q8(&values(4 * 30, 6), 30, 10);
        assert!(PackedQ8::new(&codes, &scales, 4, 30, 10).is_none());
        let (codes, scales) = quantize_q8(&values(4 * 30, 6), 30, 30);
        assert!(PackedQ8::new(&codes, &scales, 4, 30, 30).is_some());
        assert!(PackedQ8::new(&codes, &scales, 4, 31, 30).is_none());
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
