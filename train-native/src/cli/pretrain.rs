//! `mert pretrain --config run.toml --out RUN_DIR [--resume]`.

use anyhow::Result;
use clap::Args;

use super::run_args::{Reporter, RunArgs};
use crate::pretrain::pretrain;

/// The run file has [model], [data], [train], [teachers], [masking], [augment], [heads]; the
/// run folder gets model.safetensors at the end.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Train data-parallel on this many devices of --backend (the first N GPUs; on cpu, N
    /// replicas sharing the cores). [train] update_freq must be a multiple of N: the step's
    /// micro-batches are spread over the devices, so the run matches a one-device run.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
}

pub fn run(args: PretrainArgs, quiet: bool) -> Result<()> {
    let a = args.run;
    let report = Reporter::new(quiet);
    let summary = pretrain(
        &a.config,
        &a.out,
        a.resume,
        a.stop_at,
        a.backend,
        args.devices,
        |m, max| {
            report.step(
                m.step,
                max,
                || {
                    format!(
                        "loss {:.3} lr {:.2e} {:.1} samples/s",
                        m.loss, m.lr, m.samples_per_s
                    )
                },
                || {
                    format!(
                        "step {} loss {:.4} (codes {:.4} cqt {:.4}) lr {:.2e} grad {:.3} {:.1} samples/s",
                        m.step, m.loss, m.loss_codes, m.loss_cqt, m.lr, m.grad_norm, m.samples_per_s
                    )
                },
            )
        },
        |note| report.note(note),
    )?;
    let done = format!(
        "done: {} steps, model {}",
        summary.steps,
        summary.model.display()
    );
    report.finish(a.json, &summary, &done)
}
