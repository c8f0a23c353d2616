//! `mert labels AUDIO... --out FILE|DIR`: the teacher targets MERT is pretrained on, as
//! safetensors: `cqt` `[frames, bins]` f32 (75 Hz for MERT-v1). CQT frame `t` pairs with model
//! frame `t`; the metadata states both counts.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use mert_core::MertConfig;
use mert_core::audio::{decode_file, resample};
use mert_core::teachers::{Cqt, CqtConfig};

use super::inputs::{collect_inputs, output_for};
use crate::output::{safetensors_bytes, write_atomic};

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
}

pub fn run(args: LabelsArgs) -> Result<()> {
    let inputs = collect_inputs(&args.audio)?;
    let single =
        inputs.len() == 1 && args.audio.len() == 1 && !args.audio[0].is_dir() && !args.out.is_dir();
    if single {
        if args.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            bail!("{}: labels are written as .safetensors", args.out.display());
        }
    } else if !args.out.is_dir() {
        bail!(
            "{}: with several inputs --out must be an existing folder",
            args.out.display()
        );
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let config = CqtConfig::default();
    let cqt = Cqt::cached(&config)?;
    let mut failed = 0;
    for input in &inputs {
        let out = if single {
            args.out.clone()
        } else {
            output_for(input, &args.out, "safetensors")?
        };
        if !single && out.exists() {
            continue;
        }
        let result = (|| -> Result<()> {
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
            let mags = cqt.magnitudes(&samples, threads)?;
            let frames = config.frames_for(samples.len());
            let metadata = HashMap::from([
                ("mert.cqt".to_string(), serde_json::to_string(&config)?),
                ("mert.source".to_string(), input.path.display().to_string()),
                ("mert.samples".to_string(), samples.len().to_string()),
                ("mert.model_frames".to_string(), model_frames.to_string()),
            ]);
            let bytes = safetensors_bytes("cqt", &[frames, config.n_bins], &mags, metadata)?;
            write_atomic(&out, &bytes)
        })()
        .with_context(|| input.path.display().to_string());
        match result {
            Ok(()) => {}
            Err(e) if !single => {
                eprintln!("error: {}", crate::one_line(&e));
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if failed > 0 {
        bail!("{failed} of {} files failed", inputs.len());
    }
    Ok(())
}
