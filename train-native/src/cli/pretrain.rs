//! `mert pretrain --config run.toml --out RUN_DIR [--resume]`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::Backend;
use crate::pretrain::pretrain;

#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// The run file (TOML): [model], [data], [train], [teachers], [masking], [augment], [heads].
    #[arg(long)]
    pub config: PathBuf,
    /// The run folder: checkpoints/, metrics.jsonl, config.toml, model.safetensors.
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

pub fn run(args: PretrainArgs, quiet: bool) -> Result<()> {
    let show = !quiet && std::io::stderr().is_terminal();
    let bar: Option<ProgressBar> = show.then(|| {
        let b = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps ({eta})")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b
    });
    let summary = pretrain(
        &args.config,
        &args.out,
        args.resume,
        args.stop_at,
        args.backend,
        |m, max| match &bar {
            Some(b) => {
                b.set_length(max);
                b.set_position(m.step);
                b.set_message(format!(
                    "loss {:.3} lr {:.2e} {:.1} samples/s",
                    m.loss, m.lr, m.samples_per_s
                ));
            }
            None if !quiet => eprintln!(
                "step {} loss {:.4} (codes {:.4} cqt {:.4}) lr {:.2e} grad {:.3} {:.1} samples/s",
                m.step, m.loss, m.loss_codes, m.loss_cqt, m.lr, m.grad_norm, m.samples_per_s
            ),
            None => {}
        },
        |note| {
            if !quiet {
                match &bar {
                    Some(b) => b.set_message(note.to_string()),
                    None => eprintln!("{note}"),
                }
            }
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if !quiet {
        eprintln!(
            "done: {} steps, model {}",
            summary.steps,
            summary.model.display()
        );
    }
    Ok(())
}
