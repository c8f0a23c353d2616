//! Host-side tensors read from checkpoint files, before they become model parameters.
//! Every reader converts to f32 and keeps the source's name for error messages.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{MertError, Result};

/// A dense f32 tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self { shape, data }
    }
}

/// Named tensors from one source (a file), ordered by name.
#[derive(Debug, Clone, Default)]
pub struct TensorMap {
    /// File or folder the tensors came from, for error messages.
    pub source: String,
    pub tensors: BTreeMap<String, HostTensor>,
    /// The 8-bit codes of quantized tensors as stored (each also in `tensors`, dequantized),
    /// for layers that compute on them (`quant::gemm`).
    pub codes: BTreeMap<String, crate::quant::Codes>,
}

impl TensorMap {
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            tensors: BTreeMap::new(),
            codes: BTreeMap::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&HostTensor> {
        self.tensors.get(key)
    }

    pub fn remove(&mut self, key: &str) -> Option<HostTensor> {
        self.tensors.remove(key)
    }

    pub fn insert(&mut self, key: impl Into<String>, tensor: HostTensor) {
        self.tensors.insert(key.into(), tensor);
    }
}

/// Decode little-endian bytes of a float dtype to f32; `None` for other dtypes.
fn floats_from_le(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => return None,
    })
}

/// Parse a safetensors buffer: its float tensors and its `__metadata__`.
///
/// The header is validated by the `safetensors` crate (length bounded by the buffer, offsets
/// contiguous and in range) before any tensor is touched.
pub fn read_safetensors(
    bytes: &[u8],
    source: &str,
) -> Result<(TensorMap, HashMap<String, String>)> {
    safetensors_parts(bytes, source).map_err(super::one_line)
}

/// A header naming a tensor twice is refused: JSON readers keep one of the two silently.
pub(crate) fn unique_keys(bytes: &[u8], source: &str) -> Result<()> {
    let text = bytes
        .get(..8)
        .and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok())
        .and_then(|len| bytes.get(8..8usize.checked_add(len)?));
    match text.and_then(repeated_key) {
        Some(key) => Err(MertError::tensor(
            source,
            &key,
            "appears twice in the header",
        )),
        None => Ok(()),
    }
}

fn safetensors_parts(bytes: &[u8], source: &str) -> Result<(TensorMap, HashMap<String, String>)> {
    unique_keys(bytes, source)?;
    let invalid = |e| invalid_safetensors(bytes, source, e);
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(invalid)?;
    let mut map = TensorMap::new(source);
    for (name, view) in st.tensors() {
        let data = floats_from_le(view.dtype(), view.data()).ok_or_else(|| {
            MertError::tensor(
                source,
                &name,
                format!(
                    "dtype {:?} is not a float type (expected F32, F16, BF16 or F64)",
                    view.dtype()
                ),
            )
        })?;
        map.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    Ok((map, metadata))
}

/// The error for bytes the safetensors crate refuses, naming the tensor at fault where the
/// header shows one.
pub(crate) fn invalid_safetensors(
    bytes: &[u8],
    source: &str,
    e: safetensors::SafeTensorError,
) -> MertError {
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    match invalid_entry(bytes) {
        Some((key, why)) => MertError::tensor(source, &key, why),
        // (text, audio or any other file: its first bytes read as a header length do not fit)
        None if header_len.is_none_or(|n| n.saturating_add(8) > bytes.len() as u64) => {
            MertError::format(
                source,
                "not a safetensors model file (it does not open with a header that fits in it)",
            )
        }
        None => MertError::format(source, format!("not a valid safetensors file: {e}")),
    }
}

/// The first header entry that cannot be right (unknown dtype, a byte range that does not match
/// its shape, or data past the end of the file), so an error can name the tensor; the
/// safetensors crate's own errors do not.
fn invalid_entry(bytes: &[u8]) -> Option<(String, String)> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let end = 8usize.checked_add(usize::try_from(len).ok()?)?;
    let text = bytes.get(8..end)?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(text).ok()?;
    let data_len = (bytes.len() - end) as u64;
    let mut entries: Vec<_> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .collect();
    entries.sort_by_key(|(_, v)| v["data_offsets"][0].as_u64());
    for (key, info) in entries {
        let dtype = info["dtype"].as_str().unwrap_or("");
        let Some(size) = dtype_bits(dtype) else {
            return Some((
                key.clone(),
                format!(
                    "unknown dtype `{dtype}` (expected F32, F16, BF16, F64 or an integer type)"
                ),
            ));
        };
        let shape: Option<Vec<u64>> = info["shape"]
            .as_array()
            .and_then(|dims| dims.iter().map(|d| d.as_u64()).collect());
        let offsets: Option<Vec<u64>> = info["data_offsets"]
            .as_array()
            .and_then(|o| o.iter().map(|d| d.as_u64()).collect());
        let Some(shape) = shape else {
            return Some((
                key.clone(),
                format!(
                    "`shape` is {}; expected a list of non-negative integers",
                    info["shape"]
                ),
            ));
        };
        let Some(&[start, stop]) = offsets.as_deref() else {
            return Some((
                key.clone(),
                format!(
                    "`data_offsets` is {}; expected two non-negative integers",
                    info["data_offsets"]
                ),
            ));
        };
        let Some(count) = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)) else {
            return Some((
                key.clone(),
                format!("shape {shape:?} holds more elements than can be addressed"),
            ));
        };
        let want = count.checked_mul(size).map(|b| b.div_ceil(8));
        if stop < start || Some(stop - start) != want {
            return Some((
                key.clone(),
                format!(
                    "shape {shape:?} of {dtype} needs {} bytes but its data_offsets [{start}, {stop}] hold {}",
                    want.map_or("too many".into(), |w| w.to_string()),
                    stop.saturating_sub(start)
                ),
            ));
        }
        if stop > data_len {
            return Some((
                key.clone(),
                format!(
                    "data_offsets end at byte {stop} but the file holds {data_len} data bytes (truncated?)"
                ),
            ));
        }
    }
    None
}

/// The first top-level key a JSON object repeats (a JSON map keeps only the last).
fn repeated_key(text: &[u8]) -> Option<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                if !seen.insert(key.clone()) {
                    return Ok(Some(key));
                }
            }
            Ok(None)
        }
    }
    use serde::Deserializer;
    serde_json::Deserializer::from_slice(text)
        .deserialize_map(Keys)
        .ok()
        .flatten()
}

/// Bits per element of a safetensors dtype name.
fn dtype_bits(name: &str) -> Option<u64> {
    Some(match name {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ"
        | "F8_E5M2FNUZ" => 8,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        _ => return None,
    })
}

/// Read a `pytorch_model.bin` (torch zip or legacy format) without executing it.
///
/// The pickle is parsed by `pytorch-reader`, a stack machine that only rebuilds tensors and
/// plain containers; any other callable in the pickle (`os.system`, `builtins.eval`, a custom
/// class) makes the whole file an error naming that callable.
pub fn read_pytorch(path: &Path) -> Result<TensorMap> {
    pytorch_tensors(path, None).map_err(super::one_line)
}

/// The callables a `torch.save`d state dict names (by module path): the tensor and parameter
/// rebuilders, the storage classes (`torch.FloatStorage`, ...), `OrderedDict`, and
/// `_codecs.encode` (how protocol 2 writes bytes).
const TORCH_CALLABLES: &[&str] = &[
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",
    "collections.OrderedDict",
    "_codecs.encode",
];

/// Refuse a PyTorch file whose pickles name a callable other than those a state dict needs
/// (and `extra`): every call goes through such a name, wherever it hides in the object tree.
pub(crate) fn check_pickle(path: &Path, extra: &[&str]) -> Result<()> {
    let globals = super::pickle_scan::file_globals(path)
        .map_err(|why| MertError::format(path, format!("cannot check the pickle: {why}")))?;
    let allowed = |g: &str| {
        TORCH_CALLABLES.contains(&g)
            || extra.contains(&g)
            || g.strip_prefix("torch.")
                .is_some_and(|s| s.ends_with("Storage") && !s.contains('.'))
    };
    match globals.into_iter().find(|g| !allowed(g)) {
        Some(callable) => Err(MertError::UnsafePickle {
            path: path.to_path_buf(),
            callable,
        }),
        None => Ok(()),
    }
}

/// The tensors of a PyTorch file, or of the dictionary under one of its top-level keys (a
/// training checkpoint's `model`, whose caller has checked the whole pickle with its own
/// allowance, [`check_pickle`]).
pub(crate) fn pytorch_tensors(path: &Path, key: Option<&str>) -> Result<TensorMap> {
    let source = path.display().to_string();
    if key.is_none() {
        check_pickle(path, &[])?;
    }
    let unreadable = |e: pytorch_reader::PytorchError| {
        MertError::format(path, format!("not a readable PyTorch checkpoint: {e}"))
    };
    let reader = match key {
        Some(key) => pytorch_reader::PytorchReader::with_top_level_key(path, key),
        None => pytorch_reader::PytorchReader::new(path),
    }
    .map_err(unreadable)?;
    let mut tensors: Vec<_> = reader.into_tensors().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    // A view may repeat its storage (stride 0, as `expand` makes), so a few bytes of pickle can
    // declare gigabytes (pytorch-reader allows 10 GiB per tensor). A state dict's tensors cover
    // their storages at most a few times (tied weights), so more is refused before any is read.
    let file_len = std::fs::metadata(path)
        .map_err(|e| MertError::io(path, e))?
        .len();
    let budget = file_len.saturating_mul(4).max(1 << 20);
    let mut total = 0u64;
    for (name, tensor) in &tensors {
        total = total.saturating_add(tensor.byte_len() as u64);
        if total > budget {
            return Err(MertError::tensor(
                &source,
                name,
                format!(
                    "the tensors would take {total} bytes or more, from a file of {file_len} bytes (a view repeating its storage); refused"
                ),
            ));
        }
    }
    let mut map = TensorMap::new(source.clone());
    for (name, tensor) in tensors {
        use pytorch_reader::DType as P;
        let dtype = match tensor.dtype() {
            P::F32 => Dtype::F32,
            P::F16 => Dtype::F16,
            P::BF16 => Dtype::BF16,
            P::F64 => Dtype::F64,
            other => {
                return Err(MertError::tensor(
                    &source,
                    &name,
                    format!("dtype {other:?} is not a float type (expected F32, F16, BF16 or F64)"),
                ));
            }
        };
        let bytes = tensor
            .read()
            .map_err(|e| MertError::tensor(&source, &name, format!("cannot read data: {e}")))?;
        // pytorch-reader hands out native-endian bytes; every supported target is little-endian.
        let data = floats_from_le(dtype, &bytes).unwrap_or_default();
        map.insert(name, HostTensor::new(tensor.shape().to_vec(), data));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.extend([0u8; 8]);
        b
    }

    #[test]
    fn a_tensor_named_twice_is_refused() {
        let one = r#""a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
        let two = r#""a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}"#;
        let err = read_safetensors(&file(&format!("{{{one},{two}}}")), "t.safetensors")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`a`") && err.contains("twice"), "{err}");
        let ok = r#""b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}"#;
        assert!(read_safetensors(&file(&format!("{{{one},{ok}}}")), "t").is_ok());
    }
}
