//! Writing outputs atomically: a temp file in the target folder, fsync, then rename, so a
//! failed run never leaves a partial file or clobbers an existing one. Array formats: `.npy`
//! (float32, C order) and `.safetensors`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("output");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
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

/// The output array formats, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayFormat {
    Npy,
    Safetensors,
}

impl ArrayFormat {
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
