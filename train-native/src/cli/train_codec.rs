//! `mert train-codec --config codec.toml --out RUN_DIR [--resume] [--stop-at N]`.

use anyhow::Result;
use clap::Args;

use super::run_args::{Reporter, RunArgs};
use crate::codec::train_codec;

/// The run file has [codec], [data], [train], [quantizer], [loss]; the run folder gets
/// codec.safetensors at the end.
#[derive(Debug, Args)]
pub struct TrainCodecArgs {
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(args: TrainCodecArgs, quiet: bool) -> Result<()> {
    let a = args.run;
    let report = Reporter::new(quiet);
    let summary = train_codec(
        &a.config,
        &a.out,
        a.resume,
        a.stop_at,
        a.backend,
        |m, max| {
            let scores = match (m.valid_snr_db, m.valid_mel_distance, m.valid_codes_used) {
                (Some(snr), Some(d), Some(used)) => {
                    format!(" held-out SNR {snr:.2} dB mel {d:.3} codes {used}")
                }
                _ => String::new(),
            };
            report.step(
                m.step,
                max,
                || format!("loss {:.3}{scores}", m.loss.unwrap_or(f64::NAN)),
                || match m.loss {
                    Some(loss) => format!(
                        "step {} loss {loss:.4} (time {:.4} mel {:.4} commit {:.4}) lr {:.2e} {:.1} crops/s{scores}",
                        m.step,
                        m.loss_time.unwrap_or(f64::NAN),
                        m.loss_mel.unwrap_or(f64::NAN),
                        m.loss_commit.unwrap_or(f64::NAN),
                        m.lr.unwrap_or(0.0),
                        m.samples_per_s.unwrap_or(0.0)
                    ),
                    // step 0: the untrained codec's held-out scores alone
                    None => format!("step {}: untrained codec{scores}", m.step),
                },
            )
        },
        |note| report.note(note),
    )?;
    let done = format!(
        "done: {} steps, codec {}",
        summary.steps,
        summary.codec.display()
    );
    report.finish(a.json, &summary, &done)
}
