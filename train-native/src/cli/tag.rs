//! `mert tag AUDIO... [--model MODEL] [--top K] [--threshold P] [--timeline SECONDS] [--json]`:
//! multi-label tags with sigmoid probabilities, for the whole file and optionally per segment
//! (a taggram). Without --model: the default tagger compiled into the binary.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use clap::Args;
use mert_core::embed::EmbedOptions;
use mert_core::load::Checkpoint;
use mert_core::probe::{HeadConfig, SegmentMeans, TagHead};

use super::inputs::collect_inputs;
use crate::backend::Backend;
use crate::probe::features::mert_pooled;
use crate::probe::train::head_from;
use crate::progress::WithProgress;

/// The default tagger: a small MERT pretrained and probed by this kit on open data
/// (models/default/MODEL_CARD.md; rebuilt by scripts/train-default).
pub const DEFAULT_MODEL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/default/mert-tag-default.safetensors"
));
pub const DEFAULT_NAME: &str = "mert-tag-default (embedded)";

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Audio files or folders.
    #[arg(required = true)]
    pub audio: Vec<PathBuf>,
    /// A kit model file with a tagging head (from `mert probe --model`; a head on CQT features
    /// is a baseline for `probe` only); default: the embedded tagger.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print at most this many tags per file (by probability); default: every tag.
    #[arg(long)]
    pub top: Option<usize>,
    /// Print only tags with probability at least this.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Also tag consecutive segments of this many seconds (a tag-by-time table).
    #[arg(long)]
    pub timeline: Option<f64>,
    /// One JSON object per file on stdout.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
}

struct Tagger {
    model: mert_core::Mert,
    head: TagHead,
    config: HeadConfig,
    device: Device,
    name: String,
}

impl Tagger {
    fn load(path: Option<&PathBuf>, backend: Backend) -> Result<Self> {
        let (checkpoint, name) = match path {
            Some(p) => (mert_core::load_path(p)?, p.display().to_string()),
            None => (
                mert_core::load::kit::from_bytes(DEFAULT_MODEL, DEFAULT_NAME)?,
                DEFAULT_NAME.to_string(),
            ),
        };
        let Checkpoint { head, .. } = &checkpoint;
        let Some(head) = head.clone() else {
            bail!("{name}: the model has no tagging head (train one with `mert probe`)");
        };
        if head.config.features != "mert" {
            bail!(
                "{name}: the head was trained on `{}` features, not on this model",
                head.config.features
            );
        }
        let device = backend.device()?;
        let (_, model) = checkpoint.into_model(&device)?;
        let config = head.config.clone();
        let head = head_from(&config, head.tensors, &device)?;
        Ok(Self {
            model,
            head,
            config,
            device,
            name,
        })
    }

    /// Probabilities `[tags]` for one `[states * dim]` feature vector.
    fn probabilities(&self, pooled: Vec<f32>) -> Vec<f32> {
        let (s, d) = (self.config.states, self.config.dim);
        let x = Tensor::<3>::from_data(TensorData::new(pooled, [1, s, d]), &self.device);
        self.head
            .probabilities(&self.config, x)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap_or_default()
    }
}

pub fn run(args: TagArgs, quiet: bool) -> Result<()> {
    if let Some(t) = args.threshold
        && !(0.0..=1.0).contains(&t)
    {
        bail!("--threshold {t}: expected a probability in [0, 1]");
    }
    if args.top == Some(0) {
        bail!("--top 0: expected at least 1 tag per file");
    }
    if let Some(t) = args.timeline
        && !(t.is_finite() && t > 0.0)
    {
        bail!("--timeline {t}: expected a positive number of seconds");
    }
    let inputs = collect_inputs(&args.audio)?;
    let tagger = Tagger::load(args.model.as_ref(), args.backend)?;
    let options = EmbedOptions {
        normalize: tagger.config.normalize,
        window_seconds: tagger.config.window_seconds,
        hop_seconds: None,
    };
    let frame_rate = tagger.model.frame_rate();
    if let Some(t) = args.timeline
        && t * frame_rate < 1.0
    {
        bail!(
            "--timeline {t}: expected at least one model frame ({:.4} s)",
            (1e4 / frame_rate).ceil() / 1e4
        );
    }
    let mut failed = 0;
    let progress = crate::progress::files_bar(quiet, inputs.len());
    for input in &inputs {
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        let result = (|| -> Result<()> {
            let mut sink = SegmentMeans::seconds(args.timeline.unwrap_or(0.0), frame_rate);
            // one file: a bar over its frames (several: the files bar above)
            let frames_bar = match progress {
                None if inputs.len() == 1 => {
                    crate::progress::bar(quiet, &input.path.display().to_string())
                }
                _ => None,
            };
            let mut shown = WithProgress {
                inner: &mut sink,
                bar: frames_bar,
            };
            mert_pooled(
                &tagger.model,
                &options,
                &tagger.device,
                &input.path,
                &mut shown,
            )?;
            drop(shown); // (clears the bar)
            let probs = tagger.probabilities(sink.mean());
            let chosen = pick(
                &tagger.config.tags,
                &probs,
                args.top.unwrap_or(usize::MAX),
                args.threshold,
            );
            let timeline: Vec<(f64, f64, Vec<f32>)> = sink
                .segment_means()
                .into_iter()
                .map(|(start, n, m)| {
                    let (a, b) = (start as f64 / frame_rate, (start + n) as f64 / frame_rate);
                    (a, b, tagger.probabilities(m))
                })
                .collect();
            let print = || print_result(&args, &tagger, &input.path, &chosen, &timeline);
            match &progress {
                Some(bar) => bar.suspend(print),
                None => print(),
            }
            Ok(())
        })()
        .with_context(|| input.path.display().to_string());
        if let Err(e) = result {
            if inputs.len() == 1 {
                return Err(e);
            }
            let line = format!("error: {}", crate::one_line(&e));
            match &progress {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
            failed += 1;
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if failed > 0 {
        bail!("{failed} of {} files failed", inputs.len());
    }
    Ok(())
}

/// Tags by falling probability, at most `top`, at least `threshold`.
fn pick(tags: &[String], probs: &[f32], top: usize, threshold: Option<f64>) -> Vec<(String, f32)> {
    let mut all: Vec<(String, f32)> = tags.iter().cloned().zip(probs.iter().copied()).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.into_iter()
        .filter(|(_, p)| threshold.is_none_or(|t| *p as f64 >= t))
        .take(top)
        .collect()
}

fn print_result(
    args: &TagArgs,
    tagger: &Tagger,
    path: &std::path::Path,
    chosen: &[(String, f32)],
    timeline: &[(f64, f64, Vec<f32>)],
) {
    let tags = &tagger.config.tags;
    if args.json {
        let obj = serde_json::json!({
            "file": path.display().to_string(),
            "model": tagger.name,
            "tags": chosen.iter().map(|(t, p)| serde_json::json!({"tag": t, "p": p})).collect::<Vec<_>>(),
            "timeline": timeline.iter().map(|(a, b, p)| serde_json::json!({
                "start": a,
                "end": b,
                "tags": tags.iter().cloned().zip(p.iter().map(|v| serde_json::json!(v))).collect::<serde_json::Map<String, serde_json::Value>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{obj}");
        return;
    }
    println!("{}", path.display());
    for (t, p) in chosen {
        println!("  {t:<12} {p:.3}");
    }
    if !timeline.is_empty() {
        let width = tags.iter().map(|t| t.len()).max().unwrap_or(4).max(4);
        print!("  {:>15}", "time (s)");
        for t in tags {
            print!(" {t:>width$}");
        }
        println!();
        // enough decimals to tell the rows apart, the last (shorter) one included
        let step = timeline.iter().map(|(a, b, _)| b - a).fold(1.0, f64::min);
        let digits = if step >= 0.5 {
            1
        } else if step >= 0.05 {
            2
        } else {
            3
        };
        for (a, b, p) in timeline {
            print!("  {a:>7.digits$}-{b:<7.digits$}");
            for v in p {
                print!(" {v:>width$.2}");
            }
            println!();
        }
    }
}
