//! Model tensors to and from their stored form in a kit file: plain floats, f16, or `.q`
//! codes with `.scale`s. Decoding checks every dtype and shape and names the key at fault.

use std::collections::{BTreeMap, HashMap};

use half::{bf16, f16};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::blocks::{
    blocks_per_row, dequantize_q4, dequantize_q8, packed_row_len, quantize_q4, quantize_q8,
    unpack_nibbles,
};
use super::{Layout, Q_SUFFIX, SCALE_SUFFIX, Scheme, codes_for, quantizes};
use crate::error::{MertError, Result};
use crate::load::tensors::{HostTensor, TensorMap};

/// One tensor as written to the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Little-endian data.
    pub bytes: Vec<u8>,
}

impl Stored {
    /// A tensor stored as F32.
    pub fn f32(name: impl Into<String>, t: &HostTensor) -> Self {
        Self {
            name: name.into(),
            dtype: Dtype::F32,
            shape: t.shape.clone(),
            bytes: t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// A quantized weight's codes, widened to one `i8` each (q4's nibbles unpacked), with its
/// scales: row-major `[rows, row_len]`, `scales` `[rows, ceil(row_len / block)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Codes {
    pub rows: usize,
    pub row_len: usize,
    pub block: usize,
    pub q: Vec<i8>,
    pub scales: Vec<f32>,
}

/// `[rows, values per row]` of a weight: rows are output channels (dim 0); `None` when the
/// shape's size overflows.
fn rows_of(shape: &[usize]) -> Option<(usize, usize)> {
    let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    let rows = shape.first().copied().unwrap_or(1).max(1);
    Some((rows, n / rows))
}

/// The stored form of model tensor `key` under `layout`: one plain tensor, or `.q` + `.scale`.
pub fn encode(key: &str, t: &HostTensor, layout: Layout, source: &str) -> Result<Vec<Stored>> {
    if layout.scheme == Scheme::F32 || !quantizes(key, &t.shape) {
        return Ok(vec![Stored::f32(key, t)]);
    }
    if let Some(v) = t.data.iter().find(|v| !v.is_finite()) {
        return Err(MertError::tensor(
            source,
            key,
            format!(
                "holds {v}; only finite weights can be stored as {}",
                layout.scheme
            ),
        ));
    }
    let (rows, row_len) = (t.shape[0].max(1), t.data.len() / t.shape[0].max(1));
    let scales = |s: Vec<f32>| Stored {
        name: format!("{key}{SCALE_SUFFIX}"),
        dtype: Dtype::F32,
        shape: vec![rows, blocks_per_row(row_len, layout.block)],
        bytes: s.iter().flat_map(|x| x.to_le_bytes()).collect(),
    };
    Ok(match codes_for(key, layout.scheme) {
        Scheme::F32 => unreachable!("handled above"),
        Scheme::F16 => {
            let max = f16::MAX.to_f32();
            if let Some(v) = t.data.iter().find(|v| v.abs() > max) {
                return Err(MertError::tensor(
                    source,
                    key,
                    format!("holds {v}, beyond the f16 range (±{max})"),
                ));
            }
            vec![Stored {
                name: key.to_string(),
                dtype: Dtype::F16,
                shape: t.shape.clone(),
                bytes: t
                    .data
                    .iter()
                    .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                    .collect(),
            }]
        }
        Scheme::Q8 => {
            let (q, s) = quantize_q8(&t.data, row_len, layout.block);
            vec![
                Stored {
                    name: format!("{key}{Q_SUFFIX}"),
                    dtype: Dtype::I8,
                    shape: t.shape.clone(),
                    bytes: q.iter().map(|&v| v as u8).collect(),
                },
                scales(s),
            ]
        }
        Scheme::Q4 => {
            let (q, s) = quantize_q4(&t.data, row_len, layout.block);
            vec![
                Stored {
                    name: format!("{key}{Q_SUFFIX}"),
                    dtype: Dtype::U8,
                    shape: vec![rows, packed_row_len(row_len)],
                    bytes: q,
                },
                scales(s),
            ]
        }
    })
}

/// A float tensor's values as f32, or an error naming the key and its dtype.
fn floats(source: &str, key: &str, view: &TensorView) -> Result<Vec<f32>> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => {
            return Err(MertError::tensor(
                source,
                key,
                format!(
                    "dtype {other:?} is not a float type (expected F32, F16, BF16 or F64; quantized codes are stored as `KEY{Q_SUFFIX}`)"
                ),
            ));
        }
    })
}

/// Read a kit file's tensors as f32: plain tensors as they are, each `KEY.q` + `KEY.scale`
/// pair dequantized to `KEY`. `shapes` holds the model's weights and their shapes (a
/// quantized tensor must be one of them); `layout` is the file's stated scheme.
pub fn decode<'a>(
    views: impl IntoIterator<Item = (String, TensorView<'a>)>,
    shapes: &HashMap<String, Vec<usize>>,
    layout: Layout,
    source: &str,
) -> Result<TensorMap> {
    let mut out = TensorMap::new(source);
    let mut codes: BTreeMap<String, TensorView<'a>> = BTreeMap::new();
    let mut scales: BTreeMap<String, TensorView<'a>> = BTreeMap::new();
    for (name, view) in views {
        if let Some(base) = name.strip_suffix(Q_SUFFIX) {
            codes.insert(base.to_string(), view);
        } else if let Some(base) = name.strip_suffix(SCALE_SUFFIX) {
            scales.insert(base.to_string(), view);
        } else {
            let data = floats(source, &name, &view)?;
            out.insert(name, HostTensor::new(view.shape().to_vec(), data));
        }
    }
    if let Some(base) = scales.keys().find(|b| !codes.contains_key(*b)) {
        return Err(MertError::tensor(
            source,
            &format!("{base}{Q_SUFFIX}"),
            format!("missing (its scales `{base}{SCALE_SUFFIX}` are present)"),
        ));
    }
    for (base, q) in codes {
        let q_key = format!("{base}{Q_SUFFIX}");
        if !layout.scheme.is_blocked() {
            return Err(MertError::tensor(
                source,
                &q_key,
                format!(
                    "quantized codes in a file whose `mert.quant` is `{}`",
                    layout.scheme
                ),
            ));
        }
        let Some(shape) = shapes.get(&base) else {
            return Err(MertError::tensor(
                source,
                &q_key,
                format!("unexpected: `{base}` is not a weight of this model"),
            ));
        };
        if out.get(&base).is_some() {
            return Err(MertError::tensor(
                source,
                &base,
                format!("stored both plain and quantized (`{q_key}`)"),
            ));
        }
        let Some(s) = scales.remove(&base) else {
            return Err(MertError::tensor(
                source,
                &format!("{base}{SCALE_SUFFIX}"),
                format!("missing (the codes `{q_key}` are present)"),
            ));
        };
        let (data, codes) = dequantize(&base, shape, &q, &s, layout, source)?;
        out.insert(base.clone(), HostTensor::new(shape.clone(), data));
        out.codes.insert(base, codes);
    }
    Ok(out)
}

/// Check one `.q`/`.scale` pair against the weight's `shape` and dequantize it.
fn dequantize(
    base: &str,
    shape: &[usize],
    q: &TensorView,
    s: &TensorView,
    layout: Layout,
    source: &str,
) -> Result<(Vec<f32>, Codes)> {
    let (q_key, s_key) = (format!("{base}{Q_SUFFIX}"), format!("{base}{SCALE_SUFFIX}"));
    let Some((rows, row_len)) = rows_of(shape) else {
        return Err(MertError::tensor(
            source,
            base,
            format!("the config gives it shape {shape:?}, whose size overflows"),
        ));
    };
    // The dtype says which codes these are: I8 8-bit (q8, q4's front end), U8 packed 4-bit.
    let (bits, want_shape) = match (q.dtype(), layout.scheme) {
        (Dtype::I8, _) => (Scheme::Q8, shape.to_vec()),
        (Dtype::U8, Scheme::Q4) => (Scheme::Q4, vec![rows, packed_row_len(row_len)]),
        (other, scheme) => {
            let expected = if scheme == Scheme::Q4 {
                "U8 (4-bit, two per byte) or I8 (8-bit)"
            } else {
                "I8"
            };
            return Err(MertError::tensor(
                source,
                &q_key,
                format!("dtype {other:?}; {scheme} codes are {expected}"),
            ));
        }
    };
    if q.shape() != want_shape.as_slice() {
        return Err(MertError::tensor(
            source,
            &q_key,
            format!(
                "expected shape {want_shape:?} ({}-bit codes of a {shape:?} weight), found {:?}",
                if bits == Scheme::Q4 { 4 } else { 8 },
                q.shape()
            ),
        ));
    }
    if !matches!(s.dtype(), Dtype::F32 | Dtype::F16) {
        return Err(MertError::tensor(
            source,
            &s_key,
            format!("dtype {:?}; scales are F32 or F16", s.dtype()),
        ));
    }
    let s_shape = [rows, blocks_per_row(row_len, layout.block)];
    if s.shape() != s_shape {
        return Err(MertError::tensor(
            source,
            &s_key,
            format!(
                "expected shape {s_shape:?} ({} along {row_len} values per output channel), found {:?}",
                if layout.block >= super::PER_CHANNEL {
                    "one scale".to_string()
                } else {
                    format!("blocks of {}", layout.block)
                },
                s.shape()
            ),
        ));
    }
    let scales = floats(source, &s_key, s)?;
    if let Some(v) = scales.iter().find(|v| !v.is_finite()) {
        return Err(MertError::tensor(
            source,
            &s_key,
            format!("holds {v}; scales must be finite"),
        ));
    }
    let (data, q) = match bits {
        Scheme::Q4 => {
            let bytes = packed_row_len(row_len);
            let codes = q
                .data()
                .chunks(bytes.max(1))
                .flat_map(|row| unpack_nibbles(row, row_len))
                .collect();
            let data = dequantize_q4(q.data(), &scales, rows, row_len, layout.block);
            (data, codes)
        }
        _ => {
            let codes: Vec<i8> = q.data().iter().map(|&b| b as i8).collect();
            (dequantize_q8(&codes, &scales, row_len, layout.block), codes)
        }
    };
    let codes = Codes {
        rows,
        row_len,
        block: layout.block,
        q,
        scales,
    };
    Ok((data, codes))
}
