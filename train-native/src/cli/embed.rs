//! `mert embed AUDIO... --model M --out FILE|DIR`: hidden states per file.
//! Output shapes: `--layers all` or a list -> `[layers, frames, dim]`; `last` or one index ->
//! `[frames, dim]`; `--pool mean` drops the frames axis.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use mert_core::embed::{EmbedOptions, FrameSink, MeanSink, run_windows};

use super::inputs::{collect_inputs, names_a_folder, output_dir_for_many, output_for};
use super::prefetch::Prefetch;
use crate::backend::Backend;
use crate::output::{ArrayFileSink, ArrayFormat, npy_bytes, safetensors_bytes, write_atomic};
use crate::progress::{WithProgress, bar};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pool {
    None,
    Mean,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Audio files or folders.
    #[arg(required = true)]
    pub audio: Vec<PathBuf>,
    /// Model: a kit .safetensors file, a Hugging Face folder, or its weights file.
    #[arg(long)]
    pub model: PathBuf,
    /// Output file (.npy or .safetensors) for one input, or a folder for several.
    #[arg(long)]
    pub out: PathBuf,
    /// File format in an output folder (default npy); a single output file takes its extension's.
    #[arg(long, value_enum)]
    pub format: Option<ArrayFormat>,
    /// Hidden states to keep: `all`, `last`, or indices `N[,M..]` (0 = before the first layer).
    #[arg(long, default_value = "all")]
    pub layers: String,
    #[arg(long, value_enum, default_value = "none")]
    pub pool: Pool,
    /// Window length in seconds; 0 = the whole clip in one pass.
    #[arg(long, default_value_t = 5.0)]
    pub window: f64,
    /// Hop between windows in seconds (default: half a window).
    #[arg(long)]
    pub hop: Option<f64>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
    /// Skip the reference input normalisation (zero mean, unit variance per window).
    #[arg(long)]
    pub no_normalize: bool,
    /// Print a JSON summary (files, seconds of audio, frames, time, peak RSS) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Which hidden states, and whether the result keeps a layer axis.
fn parse_layers(spec: &str, available: usize) -> Result<(Vec<usize>, bool)> {
    match spec {
        "all" => Ok(((0..available).collect(), true)),
        "last" => Ok((vec![available - 1], false)),
        _ => {
            let list = spec
                .split(',')
                .map(|s| {
                    let i: usize = s.trim().parse().with_context(|| {
                        format!("--layers `{spec}`: expected all, last or indices like 0,6,12")
                    })?;
                    if i >= available {
                        bail!(
                            "--layers {i}: out of range, the model has hidden states 0..={}",
                            available - 1
                        );
                    }
                    Ok(i)
                })
                .collect::<Result<Vec<_>>>()?;
            let keep_axis = list.len() > 1;
            Ok((list, keep_axis))
        }
    }
}

pub fn run(args: EmbedArgs, quiet: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let (mut seconds_audio, mut frames_out, mut written) = (0f64, 0usize, Vec::new());
    let inputs = collect_inputs(&args.audio)?;
    // `--format` with an --out without extension also means a folder
    let folder =
        names_a_folder(&args.out) || (args.format.is_some() && args.out.extension().is_none());
    let single = inputs.len() == 1 && !folder && args.audio.len() == 1 && !args.audio[0].is_dir();
    if single {
        let format = ArrayFormat::from_path(&args.out)?;
        if let Some(asked) = args.format.filter(|&f| f != format) {
            bail!(
                "{}: --format {} but the file name ends in .{}; expected matching names",
                args.out.display(),
                asked.extension(),
                format.extension()
            );
        }
        // never write the embedding over the model or the audio it is made from
        if let Ok(out) = std::fs::canonicalize(&args.out) {
            let same = |p: &PathBuf| std::fs::canonicalize(p).is_ok_and(|p| p == out);
            if same(&args.model) || same(&inputs[0].path) {
                bail!(
                    "{}: --out is an input of this run; expected a new file",
                    args.out.display()
                );
            }
        }
    } else {
        output_dir_for_many(&args.out)?;
    }
    let checkpoint = mert_core::load_path(&args.model)?;
    let (layers, keep_axis) = parse_layers(&args.layers, checkpoint.config.num_hidden_states())?;
    let device = args.backend.device()?;
    let (config, model) = checkpoint.into_model(&device)?;
    let options = EmbedOptions {
        normalize: !args.no_normalize,
        window_seconds: args.window,
        hop_seconds: args.hop,
    };
    // The files to do, with their outputs; existing outputs are skipped so a rerun resumes.
    let mut jobs = Vec::new();
    for input in &inputs {
        let out = if single {
            args.out.clone()
        } else {
            let ext = args.format.unwrap_or(ArrayFormat::Npy).extension();
            let out = output_for(input, &args.out, ext)?;
            if out.exists() {
                log::info!("{}: exists, skipped", out.display());
                continue;
            }
            out
        };
        jobs.push((input, out));
    }
    let mut failed = 0;
    // The next file is decoded on a worker thread while the model runs on this one.
    let mut ahead = jobs
        .first()
        .map(|(input, _)| Prefetch::spawn(input.path.clone(), model.sample_rate));
    for (k, (input, out)) in jobs.iter().enumerate() {
        let Some(mut source) = ahead.take() else {
            break;
        };
        ahead = jobs
            .get(k + 1)
            .map(|(next, _)| Prefetch::spawn(next.path.clone(), model.sample_rate));
        let out = out.clone();
        let result = (|| -> Result<()> {
            let total = source.total()?;
            let label = input
                .path
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned());
            seconds_audio += total as f64 / model.sample_rate as f64;
            frames_out += model.frames_for(total);
            let metadata = HashMap::from([
                ("mert.model".to_string(), args.model.display().to_string()),
                ("mert.layers".to_string(), format!("{layers:?}")),
                (
                    "mert.frame_rate".to_string(),
                    config.frame_rate().to_string(),
                ),
            ]);
            // The window runner, showing progress, into a given sink.
            let mut run = |sink: &mut dyn FrameSink| -> Result<()> {
                let mut shown = WithProgress {
                    inner: sink,
                    bar: bar(quiet, &label),
                };
                run_windows(
                    &model,
                    &mut || {
                        source
                            .next_chunk()
                            .map_err(|e| mert_core::MertError::Invalid(crate::one_line(&e)))
                    },
                    total,
                    &options,
                    &layers,
                    &device,
                    &mut shown,
                )?;
                Ok(())
            };
            match args.pool {
                Pool::None => {
                    let mut sink = ArrayFileSink::new(&out, keep_axis, metadata)?;
                    run(&mut sink)?;
                    sink.finish()
                }
                Pool::Mean => {
                    let mut sink = MeanSink::default();
                    run(&mut sink)?;
                    let mut shape = vec![sink.layers, sink.dim];
                    if !keep_axis {
                        shape.remove(0);
                    }
                    let means = sink.means();
                    let bytes = match ArrayFormat::from_path(&out)? {
                        ArrayFormat::Npy => npy_bytes(&shape, &means),
                        ArrayFormat::Safetensors => {
                            safetensors_bytes("hidden_states", &shape, &means, metadata)?
                        }
                    };
                    write_atomic(&out, &bytes)
                }
            }
        })()
        .with_context(|| input.path.display().to_string());
        match result {
            Ok(()) => written.push(out.display().to_string()),
            // In folder mode a bad file is reported and the others go on.
            Err(e) if !single => {
                eprintln!("error: {}", crate::one_line(&e));
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if args.json {
        let summary = serde_json::json!({
            "files": inputs.len(),
            "written": written,
            "failed": failed,
            "seconds_audio": seconds_audio,
            "frames": frames_out,
            "elapsed_s": started.elapsed().as_secs_f64(),
            "peak_rss_mb": super::bench::peak_rss_mb(),
        });
        println!("{summary}");
    }
    if failed > 0 {
        bail!("{failed} of {} files failed", inputs.len());
    }
    Ok(())
}
