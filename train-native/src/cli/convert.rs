//! `mert convert SRC --out FILE.safetensors`: any model source the loaders read, written as
//! the kit's model file (weight norm folded, metadata with config, licence and source).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::output::{output_folder, write_kit_model};

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Hugging Face folder (config.json + model.safetensors or pytorch_model.bin), one of those
    /// weights files (config.json beside it), a fairseq checkpoint (.pt with `cfg` and
    /// `model`), or a kit file.
    pub src: PathBuf,
    /// Output kit model file (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Licence of the weights to record (default: the model card's `license:`, else `unknown`).
    #[arg(long)]
    pub license: Option<String>,
    /// Print a JSON summary (output, bytes, source, licence, tensors left out) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: the kit model file must end in .safetensors",
            args.out.display()
        );
    }
    output_folder(&args.out)?;
    let mut checkpoint = mert_core::load_path(&args.src)?;
    if let Some(scheme) = &checkpoint.quantized {
        bail!(
            "{}: a {scheme} kit file; convert reads reference checkpoints and f32 kit files (its rounding would be written as f32 weights)",
            args.src.display()
        );
    }
    if let Some(license) = args.license {
        if license.trim().is_empty() {
            bail!("--license: expected a licence name, e.g. CC-BY-NC-4.0");
        }
        checkpoint.license = Some(license);
    }
    // Building the model proves every tensor fits before anything is written.
    checkpoint.build(&burn::tensor::Device::flex())?;
    let extra = serde_json::json!({ "skipped": checkpoint.skipped });
    write_kit_model(&args.out, &checkpoint, args.json, extra)?;
    if !checkpoint.skipped.is_empty() {
        log::info!(
            "not converted (training only): {}",
            checkpoint.skipped.join(", ")
        );
    }
    Ok(())
}
