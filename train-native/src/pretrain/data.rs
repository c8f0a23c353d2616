//! The training corpus: audio folders decoded once into fixed-length segments at the model's
//! rate, each stored with its teacher labels (CQT, codec codes) in `cache/NNNNN-SSSS.safetensors`,
//! so no epoch recomputes a teacher. Batches are random crops of random segments, drawn from
//! `(seed, step)` alone: any step's batch can be rebuilt, which makes resume exact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use anyhow::{Context, Result, bail};
use mert_core::MertConfig;
use mert_core::audio::{decode_file, resample};
use mert_core::pretrain::StepRng;
use mert_core::teachers::Cqt;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::cli::inputs::collect_inputs;
use crate::output::{ArrayData, safetensors_multi_bytes, write_atomic};

/// Codes `[frames, codebooks]` (row-major) of a mono signal at the model's rate.
pub type CodesFn<'a> = dyn Fn(&[f32]) -> Result<(usize, Vec<i64>)> + 'a;

/// What the cached labels were made with; a cache built otherwise is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheMeta {
    pub sample_rate: u32,
    pub segment_samples: usize,
    pub cqt: bool,
    pub codec: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segment {
    pub file: String,
    pub source: PathBuf,
    pub samples: usize,
    pub frames: usize,
    /// The source's size and modification time when it was labelled: a cached segment is
    /// reused only for the same file, unchanged (older caches have none and are rebuilt).
    #[serde(default)]
    pub stamp: Option<(u64, u128)>,
}

/// A file's size and modification time (ns since the epoch), if the filesystem gives them.
fn stamp(path: &Path) -> Option<(u64, u128)> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?;
    let ns = modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((meta.len(), ns))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Corpus {
    pub dir: PathBuf,
    pub meta: CacheMeta,
    pub segments: Vec<Segment>,
    /// Input files that could not be read (reported, skipped).
    pub skipped: Vec<String>,
}

impl Corpus {
    pub fn seconds(&self) -> f64 {
        self.segments.iter().map(|s| s.samples).sum::<usize>() as f64 / self.meta.sample_rate as f64
    }
}

/// Decode `inputs` into `dir` (resumable: finished segments are kept), labels included.
pub fn prepare(
    inputs: &[PathBuf],
    dir: &Path,
    model: &MertConfig,
    meta: CacheMeta,
    cqt: Option<&Cqt>,
    codes: Option<&CodesFn<'_>>,
    progress: impl FnMut(&str),
) -> Result<Corpus> {
    let frames_for = |samples: usize| model.frames_for(samples);
    prepare_with(inputs, dir, &frames_for, meta, cqt, codes, progress)
}

/// Every named folder or file of a run's `train` and `valid` lists exists and holds audio: a run
/// checks this before it creates its folder.
pub fn require_inputs(train: &[PathBuf], valid: &[PathBuf], config: &Path) -> Result<()> {
    for (name, list) in [("train", train), ("valid", valid)] {
        if !list.is_empty() {
            collect_inputs(list)
                .with_context(|| format!("[data] {name} in {}", config.display()))?;
        }
    }
    Ok(())
}

/// [`prepare`] with a segment's frame count (crops are whole frames) given by `frames_for`
/// instead of the MERT model's formula: `mert train-codec` counts whole codec frames.
pub fn prepare_with(
    inputs: &[PathBuf],
    dir: &Path,
    frames_for: &dyn Fn(usize) -> usize,
    meta: CacheMeta,
    cqt: Option<&Cqt>,
    codes: Option<&CodesFn<'_>>,
    mut progress: impl FnMut(&str),
) -> Result<Corpus> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let meta_path = dir.join("meta.json");
    if meta_path.exists() {
        let text = std::fs::read_to_string(&meta_path)?;
        let found: CacheMeta = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a label cache", meta_path.display()))?;
        if found != meta {
            bail!(
                "{}: this label cache was built with other settings ({text}); delete it or point [data] cache elsewhere",
                dir.display()
            );
        }
    } else {
        write_atomic(&meta_path, serde_json::to_string(&meta)?.as_bytes())?;
    }
    let files = collect_inputs(inputs)?;
    let index_path = dir.join("index.json");
    let mut known: HashMap<String, Segment> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(&index_path)
        && let Ok(old) = serde_json::from_str::<Corpus>(&text)
    {
        known = old
            .segments
            .into_iter()
            .map(|s| (s.file.clone(), s))
            .collect();
    }
    let mut corpus = Corpus {
        dir: dir.to_path_buf(),
        meta: meta.clone(),
        segments: Vec::new(),
        skipped: Vec::new(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (i, input) in files.iter().enumerate() {
        // Entry `i` of an earlier run is this input's only if it came from the same file,
        // unchanged (the list may have changed since: files added, removed, edited).
        let now = stamp(&input.path);
        let first = format!("{i:05}-0000.safetensors");
        let same = known
            .get(&first)
            .is_some_and(|seg| seg.source == input.path && seg.stamp.is_some() && seg.stamp == now);
        if same {
            let mut s = 0;
            while let Some(seg) = known.remove(&format!("{i:05}-{s:04}.safetensors")) {
                corpus.segments.push(seg);
                s += 1;
            }
            continue;
        }
        progress(&format!(
            "labels {}/{}: {}",
            i + 1,
            files.len(),
            input.path.display()
        ));
        let audio = match decode_file(&input.path)
            .and_then(|a| resample(&a.samples, a.sample_rate, meta.sample_rate))
        {
            Ok(a) => a,
            Err(e) => {
                corpus
                    .skipped
                    .push(format!("{}: {e}", input.path.display()));
                continue;
            }
        };
        if audio.iter().any(|x| !x.is_finite()) {
            corpus
                .skipped
                .push(format!("{}: non-finite samples", input.path.display()));
            continue;
        }
        for (s, chunk) in audio.chunks(meta.segment_samples).enumerate() {
            let frames = frames_for(chunk.len());
            if frames == 0 {
                continue;
            }
            let file = format!("{i:05}-{s:04}.safetensors");
            let cqt_rows = match cqt {
                Some(cqt) => {
                    let bins = cqt.config().n_bins;
                    let mut m = cqt.magnitudes(chunk, threads)?;
                    m.truncate(frames * bins);
                    Some((m, bins))
                }
                None => None,
            };
            let code_rows = match codes {
                Some(codes) => {
                    let (code_frames, mut c) = codes(chunk)?;
                    if code_frames < frames {
                        bail!(
                            "{}: the codec gave {code_frames} frames for {frames} model frames",
                            input.path.display()
                        );
                    }
                    let k = c.len() / code_frames;
                    c.truncate(frames * k);
                    Some((c, k))
                }
                None => None,
            };
            let audio_shape = [chunk.len()];
            let cqt_shape = cqt_rows.as_ref().map(|(_, bins)| [frames, *bins]);
            let code_shape = code_rows.as_ref().map(|(_, k)| [frames, *k]);
            let mut tensors = vec![("audio", &audio_shape[..], ArrayData::F32(chunk))];
            if let (Some((m, _)), Some(shape)) = (&cqt_rows, &cqt_shape) {
                tensors.push(("cqt", &shape[..], ArrayData::F32(m)));
            }
            if let (Some((c, _)), Some(shape)) = (&code_rows, &code_shape) {
                tensors.push(("codes", &shape[..], ArrayData::I64(c)));
            }
            let bytes = safetensors_multi_bytes(&tensors, HashMap::new())?;
            write_atomic(&dir.join(&file), &bytes)?;
            corpus.segments.push(Segment {
                file,
                source: input.path.clone(),
                samples: chunk.len(),
                frames,
                stamp: now,
            });
        }
        // Keep the index current so an interrupted preparation resumes where it stopped.
        write_atomic(&index_path, serde_json::to_string(&corpus)?.as_bytes())?;
    }
    write_atomic(&index_path, serde_json::to_string(&corpus)?.as_bytes())?;
    if corpus.segments.is_empty() {
        let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "no usable audio in {} ({} files skipped)",
            names.join(", "),
            corpus.skipped.len()
        );
    }
    Ok(corpus)
}

/// One micro-batch: clean crops and their labels for the crops' model frames.
#[derive(Debug, Clone)]
pub struct Batch {
    pub audio: Vec<Vec<f32>>,
    pub frames: usize,
    /// `[batch * frames * bins]`
    pub cqt: Option<Vec<f32>>,
    pub bins: usize,
    /// `[batch * frames * codebooks]`
    pub codes: Option<Vec<i64>>,
    pub codebooks: usize,
}

/// Crop geometry: `frames` model frames need `samples` samples.
#[derive(Debug, Clone, Copy)]
pub struct Crop {
    pub frames: usize,
    pub samples: usize,
    pub hop: usize,
}

impl Crop {
    pub fn new(model: &MertConfig, seconds: f64) -> Result<Self> {
        let (receptive, hop) = model.conv_geometry();
        let want = (seconds * model.sample_rate as f64).round() as usize;
        let frames = model.frames_for(want);
        if frames == 0 {
            bail!("[data] crop_seconds: shorter than one model frame");
        }
        Ok(Self {
            frames,
            samples: (frames - 1) * hop + receptive,
            hop,
        })
    }
}

/// The crops of one micro-batch, drawn from `rng`.
pub fn draw_batch(corpus: &Corpus, crop: Crop, size: usize, rng: &mut StepRng) -> Result<Batch> {
    let usable: Vec<&Segment> = corpus
        .segments
        .iter()
        .filter(|s| s.frames >= crop.frames)
        .collect();
    if usable.is_empty() {
        let rate = corpus.meta.sample_rate as f64;
        let longest = corpus.segments.iter().map(|s| s.samples).max().unwrap_or(0);
        bail!(
            "[data] crop_seconds: a crop is {:.2} s but the longest audio is {:.2} s (corpus {}); expected shorter crops or longer files",
            crop.samples as f64 / rate,
            longest as f64 / rate,
            corpus.dir.display()
        );
    }
    let mut batch = Batch {
        audio: Vec::with_capacity(size),
        frames: crop.frames,
        cqt: corpus.meta.cqt.then(Vec::new),
        bins: 0,
        codes: corpus.meta.codec.is_some().then(Vec::new),
        codebooks: 0,
    };
    for _ in 0..size {
        let seg = usable[rng.range(0, usable.len() - 1)];
        let offset = rng.range(0, seg.frames - crop.frames);
        let path = corpus.dir.join(&seg.file);
        let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a label segment", path.display()))?;
        // A cache edited or left by another build must fail here, not index out of range.
        let short = |what: &str| {
            format!(
                "{}: `{what}` is shorter than the cache index says; delete the cache to rebuild it",
                path.display()
            )
        };
        let audio = f32_tensor(&st, "audio", &path)?;
        let start = offset * crop.hop;
        let piece = audio
            .get(start..start + crop.samples)
            .with_context(|| short("audio"))?;
        batch.audio.push(piece.to_vec());
        if let Some(out) = batch.cqt.as_mut() {
            let cqt = f32_tensor(&st, "cqt", &path)?;
            let bins = cqt.len() / seg.frames.max(1);
            batch.bins = bins;
            let rows = cqt
                .get(offset * bins..(offset + crop.frames) * bins)
                .with_context(|| short("cqt"))?;
            out.extend_from_slice(rows);
        }
        if let Some(out) = batch.codes.as_mut() {
            let t = st
                .tensor("codes")
                .with_context(|| format!("{}: no codes", path.display()))?;
            let (Dtype::I64, &[_, k]) = (t.dtype(), t.shape()) else {
                bail!(
                    "{}: `codes`: expected i64 [frames, codebooks]",
                    path.display()
                );
            };
            batch.codebooks = k;
            let data = t
                .data()
                .get(offset * k * 8..(offset + crop.frames) * k * 8)
                .with_context(|| short("codes"))?;
            out.extend(
                data.chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
            );
        }
    }
    Ok(batch)
}

fn f32_tensor(st: &SafeTensors, name: &str, path: &Path) -> Result<Vec<f32>> {
    let t = st
        .tensor(name)
        .with_context(|| format!("{}: no tensor {name}", path.display()))?;
    if t.dtype() != Dtype::F32 {
        bail!("{}: {name}: expected f32", path.display());
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Micro-batches for steps `start..end` (`update_freq` per step), prepared on a worker thread
/// two steps ahead of the training loop.
pub fn prefetch(
    corpus: Arc<Corpus>,
    crop: Crop,
    batch_size: usize,
    update_freq: usize,
    seed: u64,
    start: u64,
    end: u64,
) -> Receiver<Result<Vec<Batch>>> {
    let (tx, rx) = sync_channel(2);
    std::thread::spawn(move || {
        for step in start..end {
            let micro = (0..update_freq)
                .map(|m| {
                    let mut rng = StepRng::for_step(seed, step, 100 + m as u64);
                    draw_batch(&corpus, crop, batch_size, &mut rng)
                })
                .collect::<Result<Vec<_>>>();
            let failed = micro.is_err();
            if tx.send(micro).is_err() || failed {
                return;
            }
        }
    });
    rx
}
