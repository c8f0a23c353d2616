//! Clip features for probing and tagging: the time-mean of every MERT hidden state (streamed,
//! so clip length does not matter), or, as a baseline, the log of the time-mean CQT. Cached on
//! disk per (extractor, file) so trying several heads costs one pass over the audio.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;
use mert_core::audio::{decode_file, resample};
use mert_core::embed::{EmbedOptions, FileSource, run_windows};
use mert_core::probe::SegmentMeans;
use mert_core::teachers::Cqt;
use mert_core::{Mert, MertConfig};

use crate::output::write_atomic;

pub enum Extractor {
    Mert(Box<MertFeatures>),
    Cqt(Box<Cqt>),
}

pub struct MertFeatures {
    pub model: Mert,
    pub config: MertConfig,
    pub options: EmbedOptions,
    pub device: Device,
    /// Identifies the weights in cache keys.
    pub id: String,
}

impl Extractor {
    /// `(states, dim)` of one clip's features.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Extractor::Mert(m) => (m.config.num_hidden_states(), m.config.hidden_size),
            Extractor::Cqt(cqt) => (1, cqt.config().n_bins),
        }
    }

    fn key(&self) -> String {
        match self {
            Extractor::Mert(m) => format!("mert:{}:{:?}", m.id, m.options),
            Extractor::Cqt(cqt) => format!("cqt:{:?}", cqt.config()),
        }
    }

    /// Features of one file, `[states * dim]`.
    pub fn clip(&self, path: &Path) -> Result<Vec<f32>> {
        match self {
            Extractor::Mert(m) => {
                let mut sink = SegmentMeans::new(0);
                mert_pooled(&m.model, &m.options, &m.device, path, &mut sink)?;
                Ok(sink.mean())
            }
            Extractor::Cqt(cqt) => {
                let audio = decode_file(path)?;
                let samples =
                    resample(&audio.samples, audio.sample_rate, cqt.config().sample_rate)?;
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let m = cqt.magnitudes(&samples, threads)?;
                let bins = cqt.config().n_bins;
                let frames = (m.len() / bins).max(1);
                let mut mean = vec![0f64; bins];
                for row in m.chunks_exact(bins) {
                    for (s, &v) in mean.iter_mut().zip(row) {
                        *s += v as f64;
                    }
                }
                Ok(mean
                    .iter()
                    .map(|s| (s / frames as f64).ln_1p() as f32)
                    .collect())
            }
        }
    }

    /// As [`Extractor::clip`], through the cache folder when one is given.
    pub fn clip_cached(&self, path: &Path, cache: Option<&Path>) -> Result<Vec<f32>> {
        let Some(dir) = cache else {
            return self.clip(path);
        };
        let file = cache_file(dir, &self.key(), path)?;
        let (s, d) = self.shape();
        // An entry of the wrong size or with non-finite values (damaged or edited) is redone.
        if let Ok(bytes) = std::fs::read(&file)
            && bytes.len() == s * d * 4
        {
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if v.iter().all(|x| x.is_finite()) {
                return Ok(v);
            }
            log::warn!(
                "{}: damaged feature cache entry, recomputed",
                file.display()
            );
        }
        let v = self.clip(path)?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        write_atomic(&file, &bytes)?;
        Ok(v)
    }
}

/// Stream a file through the model into `sink` (every hidden state).
pub fn mert_pooled(
    model: &Mert,
    options: &EmbedOptions,
    device: &Device,
    path: &Path,
    sink: &mut dyn mert_core::embed::FrameSink,
) -> Result<()> {
    let (mut source, total) = FileSource::open(path, model.sample_rate)?;
    let states: Vec<usize> = (0..model.encoder.layers.len() + 1).collect();
    run_windows(
        model,
        &mut || source.next_chunk(),
        total,
        options,
        &states,
        device,
        sink,
    )?;
    Ok(())
}

/// `dir/HASH.f32`, keyed by the extractor and the file's path, size and modification time.
fn cache_file(dir: &Path, key: &str, path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    path.canonicalize()
        .unwrap_or_else(|_| path.to_path_buf())
        .hash(&mut h);
    meta.len().hash(&mut h);
    meta.modified().ok().hash(&mut h);
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    Ok(dir.join(format!("{:016x}.f32", h.finish())))
}

/// A stable id for a model's weights: for a file its length and a hash of its bytes; for a
/// folder (HF layout) the same over its files.
pub fn file_id(path: &Path) -> Result<String> {
    let mut files = vec![path.to_path_buf()];
    if path.is_dir() {
        files = std::fs::read_dir(path)
            .with_context(|| format!("{}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
    }
    let (mut h, mut len) = (DefaultHasher::new(), 0);
    for f in files {
        let bytes = std::fs::read(&f).with_context(|| format!("{}", f.display()))?;
        f.file_name().hash(&mut h);
        bytes.hash(&mut h);
        len += bytes.len();
    }
    Ok(format!("{len}-{:016x}", h.finish()))
}
