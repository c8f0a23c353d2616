//! `mert init --preset NAME|--like MODEL --out FILE.safetensors [--seed N]`: a randomly initialised model
//! of a named shape, as a kit file: the starting point for pretraining from scratch, and a
//! model of the real size for benchmarks where official weights are not at hand.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Args;
use mert_core::load::Checkpoint;
use mert_core::{Mert, MertConfig};

use crate::output::{output_folder, write_kit_model};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// mert-v1-95m, mert-v1-330m, mert-v0 or tiny.
    #[arg(long, required_unless_present = "like", conflicts_with = "like")]
    pub preset: Option<String>,
    /// Take the shape from this model (kit file, Hugging Face folder or weights file): e.g. a random-init baseline
    /// for a trained model.
    #[arg(long)]
    pub like: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print a JSON summary (output, bytes, source, seed) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InitArgs) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: the kit model file must end in .safetensors",
            args.out.display()
        );
    }
    output_folder(&args.out)?;
    let (config, shape) = match (&args.preset, &args.like) {
        (Some(name), _) => (MertConfig::preset(name)?, format!("preset {name}")),
        (None, Some(path)) => (
            mert_core::load_path(path)?.config,
            format!("shape of {}", path.display()),
        ),
        (None, None) => bail!("give --preset or --like"),
    };
    let device = Device::flex();
    device.seed(args.seed);
    let model = Mert::init(&config, &device);
    let mut checkpoint = Checkpoint::from_model(
        &config,
        &model,
        &format!("random init, {shape}, seed {}", args.seed),
    )?;
    checkpoint.license = Some("CC0-1.0 (random weights)".into());
    let extra = serde_json::json!({ "seed": args.seed });
    write_kit_model(&args.out, &checkpoint, args.json, extra)
}
