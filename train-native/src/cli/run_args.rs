//! What `mert pretrain` and `mert train-codec` share: the run arguments, the step bar and the
//! notes (bar message on a terminal, stderr lines otherwise, nothing with `--quiet`).

use std::path::PathBuf;

use clap::Args;
use indicatif::ProgressBar;

use crate::backend::Backend;
use crate::progress;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The run file (TOML); unknown keys are an error naming the key.
    #[arg(long)]
    pub config: PathBuf,
    /// The run folder: checkpoints/, metrics.jsonl, config.toml and the final model file.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many steps with a checkpoint, as an interrupted run would (resume later).
    #[arg(long)]
    pub stop_at: Option<u64>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
    /// Print a JSON summary on stdout at the end.
    #[arg(long)]
    pub json: bool,
}

/// Progress of a training run over its steps.
pub struct Reporter {
    pub bar: Option<ProgressBar>,
    pub quiet: bool,
}

impl Reporter {
    pub fn new(quiet: bool) -> Self {
        Self {
            bar: progress::steps_bar(quiet),
            quiet,
        }
    }

    /// A logged step: the bar moves to `step` of `max` with `short`; without a bar, `long`
    /// goes to stderr.
    pub fn step(
        &self,
        step: u64,
        max: u64,
        short: impl FnOnce() -> String,
        long: impl FnOnce() -> String,
    ) {
        match &self.bar {
            Some(b) => {
                b.set_length(max);
                b.set_position(step);
                b.set_message(short());
            }
            None if !self.quiet => eprintln!("{}", long()),
            None => {}
        }
    }

    pub fn note(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.set_message(text.to_string()),
            None => eprintln!("{text}"),
        }
    }

    /// Clears the bar, then prints `summary` as JSON on stdout (`json`) or `done` on stderr.
    pub fn finish(
        self,
        json: bool,
        summary: &impl serde::Serialize,
        done: &str,
    ) -> anyhow::Result<()> {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        if json {
            println!("{}", serde_json::to_string(summary)?);
        } else if !self.quiet {
            eprintln!("{done}");
        }
        Ok(())
    }
}
