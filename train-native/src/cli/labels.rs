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
use mert_core::audio::{decode_file, resample};
use mert_core::teachers::{Codec, Cqt, CqtConfig, load_codec_path};

use super::inputs::{collect_inputs, names_a_folder, output_dir_for_many, output_for};
use crate::output::{ArrayData, output_folder, safetensors_multi_bytes, write_atomic};

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
    /// Print a JSON summary (files, outputs written, failures) on stdout.
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
    let (mut failed, mut written) = (0, Vec::new());
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
        if !single && out.exists() {
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
            at("decoding");
            let audio = decode_file(&input.path)?;
            let samples = resample(&audio.samples, audio.sample_rate, config.sample_rate)?;
            // The model's frames for the same audio (MERT-v1's conv stack, which the CQT's
            // hop and rate are paired with).
            let model_frames = MertConfig::mert_v1_95m().frames_for(samples.len());
            if model_frames == 0 {
                bail!(
                    "too short: {} samples at {} Hz, the model needs at least 400 for one frame",
                    samples.len(),
                    config.sample_rate
                );
            }
            at("constant-Q transform");
            let mut mags = cqt.magnitudes(&samples, threads)?;
            let cqt_frames = config.frames_for(samples.len());
            // 1 + L / 320 >= floor((L - 400) / 320) + 1: keep the model's frames.
            mags.truncate(model_frames * config.n_bins);
            let mut metadata = HashMap::from([
                ("mert.cqt".to_string(), serde_json::to_string(&config)?),
                ("mert.source".to_string(), input.path.display().to_string()),
                ("mert.samples".to_string(), samples.len().to_string()),
                ("mert.model_frames".to_string(), model_frames.to_string()),
                ("mert.cqt_frames".to_string(), cqt_frames.to_string()),
            ]);
            let cqt_shape = [model_frames, config.n_bins];
            let mut tensors = vec![("cqt", &cqt_shape[..], ArrayData::F32(&mags))];
            let codes = match &codec {
                Some((codec, codec_json, codec_source)) => {
                    at("codec");
                    let mut codes = codec.encode(&samples)?;
                    metadata.insert("mert.codec".to_string(), codec_json.clone());
                    metadata.insert("mert.codec.source".to_string(), codec_source.clone());
                    metadata.insert("mert.codec_frames".to_string(), codes.frames.to_string());
                    // ceil(L / 320) >= floor((L - 400) / 320) + 1: keep the model's frames.
                    codes.truncate(model_frames);
                    Some(codes)
                }
                None => None,
            };
            let codes_shape = codes.as_ref().map(|c| [c.frames, c.n_q]);
            if let (Some(codes), Some(shape)) = (&codes, &codes_shape) {
                tensors.push(("codes", &shape[..], ArrayData::I64(&codes.data)));
            }
            let bytes = safetensors_multi_bytes(&tensors, metadata)?;
            at("writing");
            write_atomic(&out, &bytes)
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
        });
        println!("{summary}");
    }
    if failed > 0 {
        bail!("{failed} of {} files failed", inputs.len());
    }
    Ok(())
}
