//! `mert bench --model M [--seconds S] [--threads N] [--backend cpu|wgpu|cuda] [--json]`: time of
//! one forward pass over S seconds of audio (median and min over repeats after a warm-up),
//! frames per second, real-time factor and peak resident memory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Tensor, TensorData};
use clap::Args;

use crate::backend::Backend;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model: a kit .safetensors file, a Hugging Face folder, or its weights file.
    #[arg(long)]
    pub model: PathBuf,
    /// Seconds of audio per forward pass (at most 3600).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
    /// Timed repeats after one warm-up pass.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    #[arg(long)]
    pub json: bool,
}

/// Peak resident set size of this process in MB (Linux `VmHWM`), if the OS tells.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The longest input `--seconds` accepts (one hour).
const MAX_SECONDS: f64 = 3600.0;

pub fn run(args: BenchArgs) -> Result<()> {
    // An hour bounds the synthetic input (and its buffers) to what a benchmark needs.
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= MAX_SECONDS) {
        bail!(
            "--seconds must be in (0, {MAX_SECONDS}], got {:?}",
            args.seconds
        );
    }
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let threads = match args.threads {
        Some(n) if !(1..=crate::MAX_THREADS).contains(&n) => {
            bail!("--threads {n}: expected 1 to {}", crate::MAX_THREADS)
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let checkpoint = mert_core::load_path(&args.model)?;
    let device = args.backend.device()?;
    let (config, model) = checkpoint.into_model(&device)?;
    let rate = config.sample_rate;
    let n = (args.seconds * rate as f64).round() as usize;
    let frames = model.frames_for(n);
    if frames == 0 {
        bail!("--seconds {} is shorter than one frame", args.seconds);
    }
    // Deterministic music-like input: two tones and a little noise, normalised.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut audio: Vec<f32> = (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let t = i as f32 / rate as f32;
            0.4 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                + 0.2 * (2.0 * std::f32::consts::PI * 660.0 * t).sin()
                + 0.05 * ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        })
        .collect();
    mert_core::audio::normalize(&mut audio);
    let input = Tensor::<2>::from_data(TensorData::new(audio, [1, n]), &device);
    let run_once = || -> Result<f64> {
        let t = Instant::now();
        let out = model.forward(input.clone());
        // Reading the result back waits for the device (lazy and GPU backends).
        let last = out.hidden_states.into_iter().last().map(|h| h.into_data());
        std::hint::black_box(last);
        Ok(t.elapsed().as_secs_f64())
    };
    run_once()?;
    let mut times = (0..args.repeats)
        .map(|_| run_once())
        .collect::<Result<Vec<_>>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let report = serde_json::json!({
        "forward_s_median": median,
        "forward_s_min": times[0],
        "frames_per_s": frames as f64 / median,
        "rtf": median / args.seconds,
        "peak_rss_mb": peak_rss_mb(),
        "threads": threads,
        "seconds": args.seconds,
        "backend": format!("{:?}", args.backend).to_lowercase(),
        "model": args.model.display().to_string(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{}: {:.3} s median ({:.3} s min) for {} s of audio, {:.0} frames/s, RTF {:.3}, peak RSS {} MB, {threads} threads, {}",
            args.model.display(),
            median,
            times[0],
            args.seconds,
            frames as f64 / median,
            median / args.seconds,
            peak_rss_mb().map_or("?".into(), |m| format!("{m:.0}")),
            report["backend"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
