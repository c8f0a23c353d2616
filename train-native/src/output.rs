//! Writing outputs atomically: a temp file in the target folder, fsync, then rename, so a
//! failed run never leaves a partial file or clobbers an existing one. Array formats: `.npy`
//! (float32, C order) and `.safetensors`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The folder `path` will be written in, which must exist: commands check it before their
/// work, not after it.
pub fn output_folder(path: &Path) -> Result<&Path> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "{}: the output folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    Ok(dir)
}

/// A temp file name in `path`'s folder (which must exist), unique to this process and host:
/// `.NAME.mert-HOST-PID.tmp`.
fn temp_beside(path: &Path) -> Result<std::path::PathBuf> {
    let dir = output_folder(path)?;
    sweep_stale_temps(dir);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("output");
    Ok(dir.join(format!(
        ".{name}.mert-{}-{}.tmp",
        host(),
        std::process::id()
    )))
}

/// This machine's name as temp files record it (`-` and `.` replaced: they separate fields).
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Remove the temp files that runs killed before they finished left in `dir`: only the
/// kit's own (`.NAME.mert-HOST-PID.tmp`), written on this machine by this user, whose process
/// is gone. Once per folder and process, and only where `/proc` tells which processes live
/// (elsewhere, or from another machine sharing the folder, they stay: hidden and harmless).
fn sweep_stale_temps(dir: &Path) {
    #[cfg(unix)]
    {
        use std::collections::HashSet;
        use std::os::unix::fs::MetadataExt;
        use std::sync::{Mutex, OnceLock};
        static SWEPT: OnceLock<Mutex<HashSet<std::path::PathBuf>>> = OnceLock::new();
        let proc = Path::new("/proc");
        let Ok(me) = std::fs::metadata(proc.join("self")) else {
            return;
        };
        let swept = SWEPT.get_or_init(Default::default);
        if !swept.lock().is_ok_and(|mut s| s.insert(dir.to_path_buf())) {
            return;
        }
        let (host, own) = (host(), std::process::id().to_string());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((file_host, pid)) = name
                .to_str()
                .filter(|n| n.starts_with('.'))
                .and_then(|n| n.strip_suffix(".tmp"))
                .and_then(|n| n.rsplit_once(".mert-"))
                .and_then(|(_, tag)| tag.rsplit_once('-'))
            else {
                continue;
            };
            let ours = entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.uid() == me.uid());
            if ours
                && file_host == host
                && pid != own
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !proc.join(pid).exists()
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Write `checkpoint` as an f32 kit model file at `out`; with `json`, print on stdout what was
/// written (output, bytes, source, licence as recorded) and the fields of `extra`.
pub fn write_kit_model(
    out: &Path,
    checkpoint: &mert_core::load::Checkpoint,
    json: bool,
    extra: serde_json::Value,
) -> Result<()> {
    let bytes = mert_core::load::kit::to_bytes(checkpoint)?;
    write_atomic(out, &bytes)?;
    if json {
        let mut summary = serde_json::json!({
            "out": out.display().to_string(),
            "bytes": bytes.len(),
            "source": checkpoint.source,
            "license": checkpoint.license.as_deref().unwrap_or("unknown"),
        });
        if let (Some(all), serde_json::Value::Object(more)) = (summary.as_object_mut(), extra) {
            all.extend(more);
        }
        println!("{summary}");
    }
    Ok(())
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_beside(path)?;
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("{}: cannot write", path.display()));
    }
    Ok(())
}

/// fsync a finished temp file and rename it to `path`; on failure the temp file is removed
/// (its owner's `Drop` no longer sees it).
fn commit(file: std::fs::File, tmp: &Path, path: &Path) -> Result<()> {
    let done = file.sync_all().and_then(|_| std::fs::rename(tmp, path));
    if done.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    done.with_context(|| format!("{}: cannot write", path.display()))
}

/// The output array formats, chosen by file extension (or `--format` for a folder of outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArrayFormat {
    Npy,
    Safetensors,
}

impl ArrayFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Npy => "npy",
            Self::Safetensors => "safetensors",
        }
    }

    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Ok(Self::Npy),
            Some("safetensors") => Ok(Self::Safetensors),
            _ => bail!(
                "{}: unknown output extension; expected .npy or .safetensors",
                path.display()
            ),
        }
    }
}

/// A `.npy` (version 1.0) file holding little-endian float32 in C order.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// A `.safetensors` file with one f32 tensor and string metadata.
pub fn safetensors_bytes(
    name: &str,
    shape: &[usize],
    data: &[f32],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &raw)
        .context("cannot build the output tensor")?;
    safetensors::serialize([(name, view)], Some(metadata)).context("cannot serialise the output")
}

/// The data of one tensor for [`safetensors_multi_bytes`].
#[derive(Debug, Clone, Copy)]
pub enum ArrayData<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

/// A `.safetensors` file with several tensors (float32 or int64) and string metadata.
pub fn safetensors_multi_bytes(
    tensors: &[(&str, &[usize], ArrayData)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let raw: Vec<(safetensors::Dtype, Vec<u8>)> = tensors
        .iter()
        .map(|(_, _, data)| match data {
            ArrayData::F32(v) => (
                safetensors::Dtype::F32,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            ArrayData::I64(v) => (
                safetensors::Dtype::I64,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let views = tensors
        .iter()
        .zip(&raw)
        .map(|((name, shape, _), (dtype, bytes))| {
            safetensors::tensor::TensorView::new(*dtype, shape.to_vec(), bytes)
                .map(|view| (*name, view))
                .with_context(|| format!("cannot build the output tensor `{name}`"))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(metadata)).context("cannot serialise the output")
}

/// Every tensor of `map` as float32, named `prefix` + key, with string metadata.
pub fn tensor_map_bytes(
    map: &mert_core::load::TensorMap,
    prefix: &str,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let names: Vec<String> = map.tensors.keys().map(|k| format!("{prefix}{k}")).collect();
    let tensors: Vec<(&str, &[usize], ArrayData)> = names
        .iter()
        .zip(map.tensors.values())
        .map(|(n, t)| (n.as_str(), t.shape.as_slice(), ArrayData::F32(&t.data)))
        .collect();
    safetensors_multi_bytes(&tensors, metadata)
}

/// Writes a float32 array of a shape known up front into a temp file, frames in any order,
/// then renames it into place: long outputs never sit in memory, and a failed run leaves
/// nothing behind (the temp file is removed on drop).
pub struct ArrayFileSink {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: Option<std::fs::File>,
    format: ArrayFormat,
    keep_layer_axis: bool,
    metadata: HashMap<String, String>,
    data_offset: u64,
    frames: usize,
    dim: usize,
    layers: usize,
}

impl ArrayFileSink {
    pub fn new(
        path: &Path,
        keep_layer_axis: bool,
        metadata: HashMap<String, String>,
    ) -> Result<Self> {
        let format = ArrayFormat::from_path(path)?;
        let tmp = temp_beside(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file: None,
            format,
            keep_layer_axis,
            metadata,
            data_offset: 0,
            frames: 0,
            dim: 0,
            layers: 0,
        })
    }

    /// fsync and rename into place.
    pub fn finish(mut self) -> Result<()> {
        let file = self.file.take().context("no frames were written")?;
        commit(file, &self.tmp, &self.path)
    }

    fn header(&self, shape: &[usize]) -> Result<Vec<u8>> {
        let bytes = shape.iter().product::<usize>() * 4;
        Ok(match self.format {
            ArrayFormat::Npy => npy_bytes(shape, &[]),
            ArrayFormat::Safetensors => {
                let mut header = serde_json::Map::new();
                header.insert(
                    "hidden_states".into(),
                    serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [0, bytes]}),
                );
                header.insert("__metadata__".into(), serde_json::to_value(&self.metadata)?);
                let mut text = serde_json::to_string(&header)?;
                while (8 + text.len()) % 8 != 0 {
                    text.push(' ');
                }
                let mut out = (text.len() as u64).to_le_bytes().to_vec();
                out.extend_from_slice(text.as_bytes());
                out
            }
        })
    }
}

impl mert_core::embed::FrameSink for ArrayFileSink {
    fn begin(&mut self, layers: usize, frames: usize, dim: usize) -> mert_core::Result<()> {
        let io = |e: anyhow::Error| {
            mert_core::MertError::Invalid(format!("{}: {e}", self.path.display()))
        };
        let mut shape = vec![layers, frames, dim];
        if !self.keep_layer_axis {
            shape.remove(0);
        }
        let header = self.header(&shape).map_err(io)?;
        let total = header.len() as u64 + (layers * frames * dim * 4) as u64;
        let mut file = std::fs::File::create(&self.tmp)
            .and_then(|mut f| {
                f.write_all(&header)?;
                f.set_len(total)?;
                Ok(f)
            })
            .map_err(|e| {
                mert_core::MertError::Invalid(format!("{}: cannot write: {e}", self.path.display()))
            })?;
        file.flush().ok();
        self.data_offset = header.len() as u64;
        (self.layers, self.frames, self.dim) = (layers, frames, dim);
        self.file = Some(file);
        Ok(())
    }

    fn write(&mut self, dest: usize, n: usize, data: &[f32]) -> mert_core::Result<()> {
        use std::io::{Seek, SeekFrom};
        let Some(file) = self.file.as_mut() else {
            return Err(mert_core::MertError::Invalid(
                "frames written before begin".into(),
            ));
        };
        let mut bytes = Vec::with_capacity(n * self.dim * 4);
        for l in 0..self.layers {
            bytes.clear();
            for v in &data[l * n * self.dim..(l + 1) * n * self.dim] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            let at = self.data_offset + (((l * self.frames + dest) * self.dim) * 4) as u64;
            file.seek(SeekFrom::Start(at))
                .and_then(|_| file.write_all(&bytes))
                .map_err(|e| {
                    mert_core::MertError::Invalid(format!(
                        "{}: cannot write: {e}",
                        self.path.display()
                    ))
                })?;
        }
        Ok(())
    }
}

impl Drop for ArrayFileSink {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A `.safetensors` file whose tensors' dtypes and shapes are known up front and whose data
/// is appended tensor by tensor as it is computed, into a temp file renamed into place by
/// [`TensorFileWriter::finish`] (removed on drop otherwise): a long file's labels never sit
/// in memory.
pub struct TensorFileWriter {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: Option<std::fs::File>,
    /// Per tensor: its name, the start of its data, the next byte to write and the end.
    regions: Vec<(String, u64, u64, u64)>,
}

impl TensorFileWriter {
    pub fn create(
        path: &Path,
        tensors: &[(&str, safetensors::Dtype, &[usize])],
        metadata: &HashMap<String, String>,
    ) -> Result<Self> {
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        let mut spans = Vec::new();
        for (name, dtype, shape) in tensors {
            let bytes = shape
                .iter()
                .try_fold(dtype.bitsize() / 8, |n, &d| n.checked_mul(d))
                .filter(|&n| offset.checked_add(n).is_some())
                .with_context(|| format!("{}: `{name}` {shape:?} is too large", path.display()))?;
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
            );
            spans.push((name.to_string(), offset, offset + bytes));
            offset += bytes;
        }
        header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
        let mut text = serde_json::to_string(&header)?;
        while text.len() % 8 != 0 {
            text.push(' ');
        }
        let start = 8 + text.len() as u64;
        let tmp = temp_beside(path)?;
        let mut writer = Self {
            path: path.to_path_buf(),
            tmp,
            file: None,
            regions: spans
                .into_iter()
                .map(|(n, a, b)| (n, start + a as u64, start + a as u64, start + b as u64))
                .collect(),
        };
        let file = std::fs::File::create(&writer.tmp).and_then(|mut f| {
            f.write_all(&(text.len() as u64).to_le_bytes())?;
            f.write_all(text.as_bytes())?;
            f.set_len(start + offset as u64)?;
            Ok(f)
        });
        if file.is_err() {
            let _ = std::fs::remove_file(&writer.tmp);
        }
        writer.file = Some(file.with_context(|| format!("{}: cannot write", path.display()))?);
        Ok(writer)
    }

    /// Append `bytes` (little-endian values) to tensor `index`'s data.
    pub fn append(&mut self, index: usize, bytes: &[u8]) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let (name, _, at, end) = &mut self.regions[index];
        if *at + bytes.len() as u64 > *end {
            bail!(
                "{}: more data than `{name}`'s shape holds",
                self.path.display()
            );
        }
        let file = self.file.as_mut().context("the output is closed")?;
        file.seek(SeekFrom::Start(*at))
            .and_then(|_| file.write_all(bytes))
            .with_context(|| format!("{}: cannot write", self.path.display()))?;
        *at += bytes.len() as u64;
        Ok(())
    }

    /// Check every tensor is complete, fsync and rename into place.
    pub fn finish(mut self) -> Result<()> {
        if let Some((name, start, at, end)) = self.regions.iter().find(|(_, _, at, end)| at != end)
        {
            bail!(
                "{}: `{name}` got {} of its {} bytes",
                self.path.display(),
                at - start,
                end - start
            );
        }
        let file = self.file.take().context("the output is closed")?;
        commit(file, &self.tmp, &self.path)
    }
}

impl Drop for TensorFileWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_well_formed() {
        let b = npy_bytes(&[2, 3], &[0.0; 6]);
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'));
        assert_eq!(b.len(), 10 + hlen + 24);
        let b = npy_bytes(&[5], &[0.0; 5]);
        assert!(String::from_utf8_lossy(&b[10..74]).contains("'shape': (5,)"));
    }

    #[test]
    fn multi_tensor_safetensors_keep_dtypes() {
        let bytes = safetensors_multi_bytes(
            &[
                ("a", &[2], ArrayData::F32(&[1.5, -2.0])),
                ("b", &[1, 3], ArrayData::I64(&[7, 0, 1023])),
            ],
            HashMap::from([("k".to_string(), "v".to_string())]),
        )
        .unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let b = st.tensor("b").unwrap();
        assert_eq!(b.dtype(), safetensors::Dtype::I64);
        assert_eq!(b.shape(), &[1, 3]);
        assert_eq!(&b.data()[16..24], &1023i64.to_le_bytes());
        assert_eq!(st.tensor("a").unwrap().dtype(), safetensors::Dtype::F32);
    }

    #[test]
    fn atomic_write_refuses_missing_folder_and_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.npy");
        write_atomic(&p, b"old").unwrap();
        assert!(write_atomic(&dir.path().join("missing/out.npy"), b"x").is_err());
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
