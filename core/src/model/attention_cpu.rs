//! Self-attention on burn's CPU backend for inference, blocked by queries so the `[T, T]`
//! scores never exist: for each (batch, head, block of [`QUERY_BLOCK`] queries) one task
//! computes the block's scores `q kᵀ / √d` with a GEMM, their softmax numerators in place
//! (a vectorised `exp`), the product with `v` with a second GEMM, then divides by the row
//! sums. Tasks run on all threads, each GEMM on one; q, k and v are read where the
//! projections left them (`[batch, frames, hidden]`, heads side by side), so there are no
//! transposes. burn's CPU attention (tiled, online softmax) took about 0.33 s of a 0.55 s
//! layer on 30 s of audio here; see the README's benchmark notes for what this one takes.
//!
//! `exp(x)` is `2^n · e^r` with `n = round(x / ln 2)`, `r = x - n ln 2` (ln 2 split in two
//! parts so `r` is exact enough) and a degree-6 Taylor polynomial for `e^r`, `|r| <= ln 2 / 2`:
//! relative error below 5e-7 for the non-positive arguments a shifted softmax uses (tested
//! against `f64::exp`).

use super::shared_out::SharedOut;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Queries per task: the block's scores (`QUERY_BLOCK × T` floats, 1.1 MB at 30 s of audio)
/// stay in L2 between the two products.
const QUERY_BLOCK: usize = 128;

/// `e^r` on [-ln 2 / 2, ln 2 / 2]: Taylor coefficients `1 / k!`.
const EXP: [f32; 7] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
];
/// ln 2 in two parts: the first has few significant bits, so `n · LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` for `x <= 0` (below `-87`, where f32 underflows, about `1.6e-38`).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    // 1.5·2^23: adding it rounds to an integer, which then sits in the low mantissa bits
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let rounded = x * std::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = EXP[0]
        + r * (EXP[1] + r * (EXP[2] + r * (EXP[3] + r * (EXP[4] + r * (EXP[5] + r * EXP[6])))));
    let exponent = (rounded.to_bits().wrapping_sub(ROUND.to_bits()) as i32 + 127) << 23;
    p * f32::from_bits(exponent as u32)
}

/// Largest value, 16 lanes at a time (a plain fold does not vectorise).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = row.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = l.max(v);
        }
    }
    tail.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// `row[i] = e^(row[i] - max)` in place; returns their sum.
#[inline(always)]
fn exp_row(row: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = row.chunks_exact_mut(16);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c.iter_mut()) {
            *v = exp_nonpositive(*v - max);
            *l += *v;
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_nonpositive(*v - max);
        sum += *v;
    }
    sum
}

/// Each row of `scores` (rows of `width`) to `e^(x - max)`, its sum into `sums`; built for
/// AVX-512 where the CPU has it (16 lanes), else for the baseline.
fn softmax_numerators(scores: &mut [f32], width: usize, sums: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { softmax_numerators_avx512(scores, width, sums) };
    }
    softmax_numerators_generic(scores, width, sums);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_numerators_avx512(scores: &mut [f32], width: usize, sums: &mut [f32]) {
    softmax_numerators_generic(scores, width, sums);
}

#[inline(always)]
fn softmax_numerators_generic(scores: &mut [f32], width: usize, sums: &mut [f32]) {
    for (row, sum) in scores.chunks_exact_mut(width).zip(sums) {
        *sum = exp_row(row, row_max(row));
    }
}

/// `softmax(q kᵀ / √(hidden / heads)) v` per head; `q`, `k`, `v` and the result are
/// `[batch, frames, hidden]` f32 tensors on the CPU backend.
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
    let [batch, frames, hidden] = q.dims();
    let device = q.device();
    let head_dim = hidden / heads;
    let (q, k, v) = (q.into_data(), k.into_data(), v.into_data());
    let (Ok(q), Ok(k), Ok(v)) = (
        q.as_slice::<f32>(),
        k.as_slice::<f32>(),
        v.as_slice::<f32>(),
    ) else {
        unreachable!("the caller checked f32 on the CPU backend")
    };
    let mut out = vec![0f32; batch * frames * hidden];
    let scale = 1.0 / (head_dim as f32).sqrt();
    let blocks = frames.div_ceil(QUERY_BLOCK);
    let dst = SharedOut::new(&mut out);
    let (t, d) = (frames as isize, hidden as isize);
    (0..batch * heads * blocks).into_par_iter().for_each_init(
        || vec![0f32; QUERY_BLOCK * frames],
        |scores, task| {
            let (bh, block) = (task / blocks, task % blocks);
            let (b, h) = (bh / heads, bh % heads);
            let q0 = block * QUERY_BLOCK;
            let rows = QUERY_BLOCK.min(frames - q0);
            // this head's columns of batch item b
            let base = b * frames * hidden + h * head_dim;
            // SAFETY: every pointer below stays inside its buffer: q, k, v and out hold
            // `batch · frames · hidden` values, read at `base + row · hidden + col` with
            // row < frames, col < head_dim; `scores` holds QUERY_BLOCK · frames values.
            // Tasks write disjoint rectangles of `out` (rows q0.., columns of head h, item b).
            unsafe {
                gemm::gemm(
                    rows,
                    frames,
                    head_dim,
                    scores.as_mut_ptr(),
                    1,
                    t,
                    false,
                    q.as_ptr().add(base + q0 * hidden),
                    1,
                    d,
                    k.as_ptr().add(base),
                    d,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            let mut sums = [0f32; QUERY_BLOCK];
            softmax_numerators(&mut scores[..rows * frames], frames, &mut sums);
            // SAFETY: `base + q0 · hidden` is the block's first value, inside `out`.
            let o = unsafe { dst.at(base + q0 * hidden) };
            // SAFETY: as above.
            unsafe {
                gemm::gemm(
                    rows,
                    head_dim,
                    frames,
                    o,
                    1,
                    d,
                    false,
                    scores.as_ptr(),
                    1,
                    t,
                    v.as_ptr().add(base),
                    1,
                    d,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
                for (r, &sum) in sums.iter().enumerate().take(rows) {
                    let row = std::slice::from_raw_parts_mut(o.add(r * hidden), head_dim);
                    let inv = 1.0 / sum;
                    for x in row {
                        *x *= inv;
                    }
                }
            }
        },
    );
    Tensor::from_data(TensorData::new(out, [batch, frames, hidden]), &device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn exp_matches_f64() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = f64::from(x).exp();
            let got = f64::from(exp_nonpositive(x));
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 5e-7, "max relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) < 1e-37);
    }

    /// Against burn's attention on the same inputs, odd sizes included (a partial query
    /// block, rows not a multiple of 16).
    #[test]
    fn matches_burn_attention() {
        let device = Device::flex();
        for (batch, frames, heads, head_dim) in [(2, 301, 3, 16), (1, 7, 2, 64), (1, 128, 1, 8)] {
            let hidden = heads * head_dim;
            let x = || {
                Tensor::<3>::random(
                    [batch, frames, hidden],
                    Distribution::Normal(0.0, 2.0),
                    &device,
                )
            };
            let (q, k, v) = (x(), x(), x());
            let split = |t: Tensor<3>| t.reshape([batch, frames, heads, head_dim]).swap_dims(1, 2);
            let want = burn_attention(
                split(q.clone()),
                split(k.clone()),
                split(v.clone()),
                None,
                None,
                AttentionModuleOptions::default(),
            )
            .swap_dims(1, 2)
            .reshape([batch, frames, hidden])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
            let got = attention(q, k, v, heads)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let rel = crate::test_util::max_rel_err(&want, &got);
            assert!(rel < 1e-5, "{batch}x{frames}x{heads}x{head_dim}: {}", rel);
        }
    }
}
