//! `mert labels AUDIO... --out FILE|DIR [--codec CODEC]`: the teacher targets MERT is
//! pretrained on, as safetensors: `cqt` `[frames, bins]` f32 (75 Hz for MERT-v1) and, with a
//! codec, `codes` `[frames, n_q]` i64 (EnCodec-compatible RVQ codes, 8 codebooks at 6 kbps).
//!
//! Alignment, for `L` samples at 24 kHz: the MERT model's frame `t` spans samples
//! `[320 t, 320 t + 400)` and there are `floor((L - 400) / 320) + 1` of them
//! (`mert.model_frames`). CQT frame `t` is centred on sample `320 t`; the transform gives
//! `1 + L / 320` of them (`mert.cqt_frames`). Codec frame `t` covers samples `[320 t, 320 t +
//! 320)` (computed causally from everything before it); there are `ceil(L / 320)` of them
//! (`mert.codec_frames`). Both counts are never below the model's, and both `cqt` and `codes`
//! keep exactly the first `mert.model_frames` rows: row `t` of each is the target of model
//! frame `t`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use mert_core::MertConfig;
use mert_core::embed::FileSource;
use mert_core::teachers::{Codec, Cqt, CqtConfig, load_codec_path};
use safetensors::Dtype;

use super::inputs::{collect_inputs, names_a_folder, output_dir_for_many, output_for};
use crate::output::{TensorFileWriter, output_folder};

#[derive(Debug, Args)]
pub struct LabelsArgs {
    /// Audio files or folders.
    #[arg(required = true)]
    pub audio: Vec<PathBuf>,
    /// Output .safetensors file for one input, or a folder for several.
    #[arg(long)]
    pub out: PathBuf,
    /// Threads for the CQT (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also write the acoustic teacher's `codes`: an EnCodec 24 kHz checkpoint
    /// (`encodec_24khz-*.th`, read without executing it) or the kit's codec `.safetensors`.
    #[arg(long)]
    pub codec: Option<PathBuf>,
    /// Print a JSON summary (files, outputs written, failures, existing outputs skipped, peak
    /// memory) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Load the codec and check that its frames line up with the CQT's and the model's.
fn load_codec(path: &std::path::Path, cqt: &CqtConfig) -> Result<(Codec, String, String)> {
    let checkpoint = load_codec_path(path)?;
    let config = &checkpoint.config;
    if config.sample_rate != cqt.sample_rate || config.hop_length() != cqt.hop_length {
        bail!(
            "{}: codec frames ({} samples at {} Hz) do not line up with the model's ({} at {} Hz)",
            path.display(),
            config.hop_length(),
            config.sample_rate,
            cqt.hop_length,
            cqt.sample_rate
        );
    }
    let json = serde_json::to_string(config)?;
    let source = checkpoint.source.clone();
    Ok((checkpoint.into_codec(&Device::flex())?, json, source))
}

pub fn run(args: LabelsArgs, quiet: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let inputs = collect_inputs(&args.audio)?;
    let single = inputs.len() == 1
        && args.audio.len() == 1
        && !args.audio[0].is_dir()
        && !names_a_folder(&args.out);
    if single {
        if args.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            bail!("{}: labels are written as .safetensors", args.out.display());
        }
        output_folder(&args.out)?;
    } else {
        output_dir_for_many(&args.out)?;
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if !(1..=crate::MAX_THREADS).contains(&threads) {
        bail!("--threads {threads}: expected 1 to {}", crate::MAX_THREADS);
    }
    let config = CqtConfig::default();
    let cqt = Cqt::cached(&config)?;
    let codec = args
        .codec
        .as_deref()
        .map(|path| load_codec(path, &config))
        .transpose()?;
    let (mut failed, mut skipped, mut written) = (0, 0, Vec::new());
    let progress = crate::progress::files_bar(quiet, inputs.len());
    for input in &inputs {
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        let out = if single {
            args.out.clone()
        } else {
            output_for(input, &args.out, "safetensors")?
        };
        // an existing output is kept when it holds what this run would write (a `--codec`
        // run re-labels one made without codes)
        if !single && out.exists() && (codec.is_none() || has_tensor(&out, "codes")) {
            skipped += 1;
            continue;
        }
        // one file: a spinner naming the stage (several: the files bar above)
        let stage = match progress {
            None if inputs.len() == 1 => {
                crate::progress::stages(quiet, &input.path.display().to_string())
            }
            _ => None,
        };
        let at = |what: &str| {
            if let Some(s) = &stage {
                s.set_message(what.to_string());
            }
        };
        let result = (|| -> Result<()> {
            // A first pass counts the samples (so the output's shapes are known up front);
            // the second decodes, resamples and labels the audio chunk by chunk, writing rows
            // as they come: memory stays flat in the file's length.
            at("decoding");
            let (mut source, samples) = FileSource::open(&input.path, config.sample_rate)?;
            // The model's frames for the same audio (MERT-v1's conv stack, which the CQT's
            // hop and rate are paired with).
            let model_frames = MertConfig::mert_v1_95m().frames_for(samples);
            if model_frames == 0 {
                bail!(
                    "too short: {samples} samples at {} Hz; the labels are made per model frame, and one needs at least 400",
                    config.sample_rate
                );
            }
            let mut metadata = HashMap::from([
                ("mert.cqt".to_string(), serde_json::to_string(&config)?),
                ("mert.source".to_string(), input.path.display().to_string()),
                ("mert.samples".to_string(), samples.to_string()),
                ("mert.model_frames".to_string(), model_frames.to_string()),
                (
                    "mert.cqt_frames".to_string(),
                    config.frames_for(samples).to_string(),
                ),
            ]);
            let cqt_shape = [model_frames, config.n_bins];
            let mut tensors = vec![("cqt", Dtype::F32, &cqt_shape[..])];
            let codes_shape = codec.as_ref().map(|(c, _, _)| [model_frames, c.config().n_q]);
            if let Some((codec, codec_json, codec_source)) = &codec {
                metadata.insert("mert.codec".to_string(), codec_json.clone());
                metadata.insert("mert.codec.source".to_string(), codec_source.clone());
                metadata.insert(
                    "mert.codec_frames".to_string(),
                    codec.config().frames_for(samples).to_string(),
                );
            }
            if let Some(shape) = &codes_shape {
                tensors.push(("codes", Dtype::I64, &shape[..]));
            }
            let mut file = TensorFileWriter::create(&out, &tensors, &metadata)?;
            // Both teachers give at least the model's frames: the first `model_frames` rows
            // of each are kept (row `t` = the target of model frame `t`).
            let mut cqt_rows = Rows::new(config.n_bins, model_frames);
            let mut code_rows = Rows::new(codes_shape.map_or(1, |s| s[1]), model_frames);
            let mut cqt_stream = cqt.stream(threads);
            let mut codec_stream = codec.as_ref().map(|(c, _, _)| c.stream());
            let (mut done, mut step) = (0usize, 0usize);
            at("labels 0%");
            let mut chunk = source.next_chunk()?;
            while let Some(samples_in) = chunk {
                let rows = cqt_stream.push(&samples_in)?;
                file.append(0, &cqt_rows.keep_f32(&rows))?;
                if let Some(stream) = codec_stream.as_mut() {
                    let codes = stream.push(&samples_in)?;
                    file.append(1, &code_rows.keep_i64(&codes))?;
                }
                done += samples_in.len();
                if done * 100 / samples >= step + 5 {
                    step = done * 100 / samples;
                    at(&format!("labels {step}%"));
                }
                chunk = source.next_chunk()?;
            }
            if done != samples {
                bail!("decoded {done} samples, the first pass counted {samples}");
            }
            file.append(0, &cqt_rows.keep_f32(&cqt_stream.finish()?))?;
            if let Some(stream) = codec_stream {
                file.append(1, &code_rows.keep_i64(&stream.finish()?))?;
            }
            at("writing");
            file.finish()
        })()
        .with_context(|| input.path.display().to_string());
        if let Some(s) = stage {
            s.finish_and_clear();
        }
        match result {
            Ok(()) => written.push(out.display().to_string()),
            Err(e) if !single => {
                let line = format!("error: {}", crate::one_line(&e));
                match &progress {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if args.json {
        let summary = serde_json::json!({
            "files": inputs.len(),
            "written": written,
            "failed": failed,
            "skipped_existing": skipped,
            "elapsed_s": started.elapsed().as_secs_f64(),
            "peak_rss_mb": super::bench::peak_rss_mb(),
        });
        println!("{summary}");
    }
    if failed > 0 {
        bail!("{failed} of {} files failed", inputs.len());
    }
    Ok(())
}

/// Counts rows of `width` values and keeps the first `keep`, as little-endian bytes.
struct Rows {
    width: usize,
    keep: usize,
    seen: usize,
}

impl Rows {
    fn new(width: usize, keep: usize) -> Self {
        Self {
            width,
            keep,
            seen: 0,
        }
    }

    /// How many of `values`' leading values are still kept.
    fn take(&mut self, values: usize) -> usize {
        let rows = values / self.width;
        let kept = rows.min(self.keep.saturating_sub(self.seen));
        self.seen += rows;
        kept * self.width
    }

    fn keep_f32(&mut self, values: &[f32]) -> Vec<u8> {
        let n = self.take(values.len());
        values[..n].iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn keep_i64(&mut self, values: &[i64]) -> Vec<u8> {
        let n = self.take(values.len());
        values[..n].iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// Whether the safetensors file at `path` names tensor `name` in its header.
fn has_tensor(path: &std::path::Path, name: &str) -> bool {
    use std::io::Read;
    let header = (|| -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(path)?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len).min(100 << 20);
        let mut header = Vec::new();
        f.take(len).read_to_end(&mut header)?;
        Ok(header)
    })();
    header
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|h| h.get(name).is_some())
}
