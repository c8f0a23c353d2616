//! The subcommands. Each module parses nothing itself: clap fills the args, `run` dispatches.

mod bench;
pub use bench::BenchArgs;
mod convert;
mod embed;
mod init;
pub(crate) mod inputs;
mod labels;
mod prefetch;
mod pretrain;
mod probe;
mod quantize;
mod run_args;
mod tag;
mod train_codec;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// MERT music understanding: embeddings, teacher labels, conversion of official checkpoints.
#[derive(Debug, Parser)]
#[command(name = "mert", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log debug detail (skipped tensors, timings) to stderr.
    #[arg(long, global = true)]
    pub verbose: bool,
    /// No progress output.
    #[arg(long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hidden states of audio files, as .npy or .safetensors.
    Embed(embed::EmbedArgs),
    /// Teacher targets MERT is pretrained on (the CQT; with --codec the codes too), as .safetensors.
    Labels(labels::LabelsArgs),
    /// Time a forward pass (median/min, frames/s, real-time factor, peak RSS).
    Bench(bench::BenchArgs),
    /// A randomly initialised model of a named shape, as a kit file.
    Init(init::InitArgs),
    /// Convert a Hugging Face MERT folder (or a kit file) to the kit's model file.
    Convert(convert::ConvertArgs),
    /// Pretrain a MERT model with its masked-prediction recipe (resumable).
    Pretrain(pretrain::PretrainArgs),
    /// Train a tagging head on frozen features (MARBLE protocol); prints ROC-AUC/PR-AUC JSON.
    Probe(probe::ProbeArgs),
    /// Tags with probabilities (default: the embedded tagger), optionally over time.
    Tag(tag::TagArgs),
    /// Store a model's large weights as f16, 8-bit or 4-bit codes (a smaller kit file).
    Quantize(quantize::QuantizeArgs),
    /// Train an EnCodec-style RVQ codec on your audio (resumable); writes a kit codec file.
    TrainCodec(train_codec::TrainCodecArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Embed(args) => embed::run(args, cli.quiet),
        Command::Convert(args) => convert::run(args),
        Command::Labels(args) => labels::run(args, cli.quiet),
        Command::Bench(args) => bench::run(args),
        Command::Init(args) => init::run(args),
        Command::Pretrain(args) => pretrain::run(args, cli.quiet),
        Command::Probe(args) => probe::run(args, cli.quiet),
        Command::Tag(args) => tag::run(args, cli.quiet),
        Command::Quantize(args) => quantize::run(args),
        Command::TrainCodec(args) => train_codec::run(args, cli.quiet),
    }
}
