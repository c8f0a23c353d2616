//! The conv feature encoder in frames-by-channels layout, each conv as one GEMM.
//!
//! A conv with kernel `k` and stride `s` and no padding reads, for output frame `t`, input
//! frames `s·t + j` for taps `j < k`. Viewing the input `[L, C]` as rows of `s` frames
//! (`[L/s, s·C]`, a reshape), the taps `q·s .. q·s + s` of frame `t` are row `t + q` of that
//! view, so the im2col matrix `[L_out, k·C]` is a concatenation of `⌈k/s⌉` shifted row
//! ranges, and the conv is one product with the weight laid out `[k·C, C_out]`. For MERT's
//! stack (kernels 10/3/2, strides 5/2) that is one or two copies per layer and a large GEMM,
//! where burn's CPU conv spends about three times PyTorch's time on the same layers. The
//! layout also saves the transposes around LayerNorm and the final swap to frames-first.

use burn::nn::conv::Conv1d;
use burn::tensor::Tensor;

use super::dense::forward_int8;
use crate::quant::gemm::PackedQ8;

/// `x` `[B, L, C_in]` → `[B, L_out, C_out]`, equal to `conv.forward` on `[B, C_in, L]`
/// transposed. Only unpadded, undilated, ungrouped convs (MERT's feature encoder). With
/// `int8`, the weight's packed codes (inputs `j·C_in + c`) replace `conv.weight`.
pub fn conv_frames(conv: &Conv1d, int8: Option<&PackedQ8>, x: Tensor<3>) -> Tensor<3> {
    let [batch, len, channels] = x.dims();
    let (k, s) = (conv.kernel_size, conv.stride);
    let [c_out, c_in, _] = conv.weight.dims();
    debug_assert_eq!(c_in, channels);
    let out_len = if len < k { 0 } else { (len - k) / s + 1 };
    if out_len == 0 {
        return Tensor::zeros([batch, 0, c_out], &x.device());
    }
    #[cfg(feature = "flex")]
    if super::activation::on_cpu_inference(&x) {
        match int8 {
            None => return cpu::conv_gemm(conv, x, out_len),
            Some(w)
                if channels.is_multiple_of(crate::quant::gemm::ABLOCK) && w.k() == k * channels =>
            {
                return cpu::conv_int8(conv, w, x, out_len);
            }
            Some(_) => {}
        }
    }
    let shifts = (k - 1) / s;
    let rows = out_len + shifts;
    // exactly rows·s frames: cut the unread tail, or pad (< s frames no tap reads)
    let x = if len >= rows * s {
        x.narrow(1, 0, rows * s)
    } else {
        let pad = Tensor::zeros([batch, rows * s - len, channels], &x.device());
        Tensor::cat(vec![x, pad], 1)
    };
    let view = x.reshape([batch, rows, s * channels]);
    let pieces: Vec<Tensor<3>> = (0..=shifts)
        .map(|q| {
            let width = (k - q * s).min(s) * channels;
            let rows = view.clone().narrow(1, q, out_len);
            if width == s * channels {
                rows
            } else {
                rows.narrow(2, 0, width)
            }
        })
        .collect();
    let cols = if pieces.len() == 1 {
        pieces.into_iter().next().unwrap_or(view)
    } else {
        Tensor::cat(pieces, 2)
    };
    let cols = cols.reshape([batch * out_len, k * channels]);
    if let Some(w) = int8 {
        let y = forward_int8(w, conv.bias.as_ref().map(|b| b.val()), cols);
        return y.reshape([batch, out_len, c_out]);
    }
    // [C_out, C_in, k] -> [k, C_in, C_out] -> [k·C_in, C_out]: row j·C_in + c is tap j, channel c
    let w = conv
        .weight
        .val()
        .permute([2, 1, 0])
        .reshape([k * c_in, c_out]);
    let y = cols.matmul(w).reshape([batch, out_len, c_out]);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, 1, c_out]),
        None => y,
    }
}

/// On burn's CPU backend: the im2col matrix is never built. Its row `t` is input frames
/// `s·t .. s·t + k`, which lie contiguously in `[L, C]` memory, so the matrix is the input
/// itself read with a row stride of `s·C` (rows overlap when `k > s`), and the conv is one
/// GEMM per block of rows straight from the input buffer (the `gemm` crate takes any strides).
#[cfg(feature = "flex")]
mod cpu {
    use burn::nn::conv::Conv1d;
    use burn::tensor::{Tensor, TensorData};
    use rayon::prelude::*;

    use crate::quant::gemm::{self as int8, PackedQ8};

    /// Output rows per GEMM call: big enough for the GEMM's own blocking, small enough to
    /// give every thread several.
    const ROWS: usize = 512;

    pub(super) fn conv_gemm(conv: &Conv1d, x: Tensor<3>, out_len: usize) -> Tensor<3> {
        let [batch, len, c_in] = x.dims();
        let (k, s) = (conv.kernel_size, conv.stride);
        let c_out = conv.weight.dims()[0];
        let device = x.device();
        // [C_out, C_in, k] -> [k, C_in, C_out]: row j·C_in + c is tap j, channel c
        let w = conv
            .weight
            .val()
            .permute([2, 1, 0])
            .reshape([k * c_in, c_out])
            .into_data();
        let bias = conv.bias.as_ref().map(|b| b.val().into_data());
        let x = x.into_data();
        let (Ok(x), Ok(w)) = (x.as_slice::<f32>(), w.as_slice::<f32>()) else {
            unreachable!("f32 checked by the caller")
        };
        let bias = bias.as_ref().and_then(|b| b.as_slice::<f32>().ok());
        let mut out = vec![0f32; batch * out_len * c_out];
        out.par_chunks_mut(out_len * c_out)
            .enumerate()
            .for_each(|(b, item)| {
                item.par_chunks_mut(ROWS * c_out)
                    .enumerate()
                    .for_each(|(j, dst)| {
                        let rows = dst.len() / c_out;
                        let first = b * len * c_in + j * ROWS * s * c_in;
                        // the last row read ends at frame s·(out_len - 1) + k <= len
                        assert!(first + ((rows - 1) * s + k) * c_in <= x.len());
                        // SAFETY: `dst` holds rows × c_out values; `w` holds k·c_in × c_out;
                        // the rows of `x` read (stride s·c_in, k·c_in long) end inside `x`
                        // (assert above).
                        unsafe {
                            gemm::gemm(
                                rows,
                                c_out,
                                k * c_in,
                                dst.as_mut_ptr(),
                                1,
                                c_out as isize,
                                false,
                                x.as_ptr().add(first),
                                1,
                                (s * c_in) as isize,
                                w.as_ptr(),
                                1,
                                c_out as isize,
                                0.0,
                                1.0,
                                false,
                                false,
                                false,
                                gemm::Parallelism::None,
                            );
                        }
                        if let Some(bias) = bias {
                            for row in dst.chunks_exact_mut(c_out) {
                                for (v, b) in row.iter_mut().zip(bias) {
                                    *v += b;
                                }
                            }
                        }
                    });
            });
        Tensor::from_data(TensorData::new(out, [batch, out_len, c_out]), &device)
    }

    /// The same on packed 8-bit codes ([`int8::conv_matmul`]: each frame quantized once, the
    /// windows read in place). The caller checked the channels and the weight's width.
    pub(super) fn conv_int8(
        conv: &Conv1d,
        w: &PackedQ8,
        x: Tensor<3>,
        out_len: usize,
    ) -> Tensor<3> {
        let [batch, len, c_in] = x.dims();
        let (k, s) = (conv.kernel_size, conv.stride);
        let device = x.device();
        let bias = conv.bias.as_ref().map(|b| b.val().into_data());
        let x = x.into_data();
        let Ok(x) = x.as_slice::<f32>() else {
            unreachable!("f32 checked by the caller")
        };
        let bias = bias.as_ref().and_then(|b| b.as_slice::<f32>().ok());
        let mut out = Vec::with_capacity(batch * out_len * w.n());
        for clip in x.chunks_exact(len * c_in) {
            match int8::conv_matmul(clip, c_in, (k, s), w, bias) {
                Some(y) => out.extend(y),
                None => unreachable!("channels and width checked by the caller"),
            }
        }
        Tensor::from_data(TensorData::new(out, [batch, out_len, w.n()]), &device)
    }
}
