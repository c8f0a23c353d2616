//! `mert quantize MODEL --scheme f16|q8|q4 --out FILE.safetensors [--block N] [--no-check]`:
//! any model the loaders read, written as a kit file with its large weights in f16, 8-bit or
//! 4-bit codes (see `mert_core::quant`). Prints one JSON line: sizes, and the cosine of every
//! hidden state of the written file's model against the f32 model on a deterministic signal.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Args;
use mert_core::load::kit;
use mert_core::quant::{self, Layout, Scheme};

use crate::output::{output_folder, write_atomic};

/// Seconds of the test signal the check runs on.
const CHECK_SECONDS: f64 = 5.0;

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Hugging Face folder, weights file or f32 kit file (an f16, q8 or q4 file is refused:
    /// quantize the f32 model, or each pass adds its rounding).
    pub model: PathBuf,
    /// f16, q8 (8-bit codes, a scale per output channel by default) or q4 (4-bit codes in
    /// blocks of 32; 8-bit for the conv front end); f32 writes the weights back as f32.
    #[arg(long, value_parser = parse_scheme)]
    pub scheme: Scheme,
    /// Output kit model file (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Values per scale (q8, q4) along each output channel's inputs, or `channel` for one
    /// scale per output channel. Default: `channel` for q8, 32 for q4.
    #[arg(long)]
    pub block: Option<String>,
    /// Skip comparing the hidden states with the f32 model.
    #[arg(long)]
    pub no_check: bool,
    /// The report on stdout is JSON in any case; accepted like the other commands' `--json`.
    #[arg(long)]
    pub json: bool,
}

/// `mert.quant` of a kit model file, read from its safetensors header alone; `None` for
/// folders, other files, or a header this cannot read (the loader then says what is wrong).
fn stored_scheme(model: &Path) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(model)
        .ok()
        .filter(|_| model.is_file())?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    if len > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; len];
    file.read_exact(&mut header).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
    json.get("__metadata__")?
        .get(kit::META_QUANT)?
        .as_str()
        .map(str::to_string)
}

fn parse_scheme(s: &str) -> std::result::Result<Scheme, String> {
    Scheme::from_name(s).ok_or_else(|| format!("unknown scheme `{s}`; expected f16, q8, q4 or f32"))
}

/// Size in bytes of the model file read: the file given, or for a Hugging Face folder the
/// weights file the loader chose.
fn input_size(model: &Path, source: &str) -> u64 {
    let file = if model.is_dir() {
        Path::new(source)
    } else {
        model
    };
    std::fs::metadata(file).map_or(0, |m| m.len())
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1e6 * 1000.0).round() / 1000.0
}

pub fn run(args: QuantizeArgs) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: the kit model file must end in .safetensors",
            args.out.display()
        );
    }
    // Fail before the work, not after it (write_atomic checks again).
    output_folder(&args.out)?;
    if let Some(scheme) = stored_scheme(&args.model)
        && scheme != "f32"
    {
        bail!(
            "{}: already {scheme}; quantize the f32 model (each pass would add its rounding)",
            args.model.display()
        );
    }
    let mut layout = Layout::new(args.scheme);
    if let Some(text) = &args.block {
        if matches!(args.scheme, Scheme::F32 | Scheme::F16) {
            bail!("--block {text}: only q8 and q4 have scales; f32 and f16 take no --block");
        }
        let Some(block) = Layout::parse_block(text) else {
            bail!("--block `{text}`: expected a positive integer or `channel`");
        };
        layout = layout.with_block(block);
    }
    let checkpoint = mert_core::load_path(&args.model)?;
    // (a folder holding a quantized kit file, which the header check above does not open)
    if let Some(scheme) = &checkpoint.quantized {
        bail!(
            "{}: already {scheme}; quantize the f32 model (each pass would add its rounding)",
            args.model.display()
        );
    }
    let input = input_size(&args.model, &checkpoint.source);
    let bytes = kit::to_bytes_quantized(&checkpoint, layout)?;
    let values: usize = checkpoint
        .tensors
        .tensors
        .values()
        .chain(
            checkpoint
                .head
                .iter()
                .flat_map(|h| h.tensors.tensors.values()),
        )
        .map(|t| t.data.len())
        .sum();
    let (n_quantized, v_quantized) = checkpoint
        .tensors
        .tensors
        .iter()
        .filter(|(k, t)| args.scheme != Scheme::F32 && quant::quantizes(k, &t.shape))
        .fold((0usize, 0usize), |(n, v), (_, t)| (n + 1, v + t.data.len()));

    // The check loads the bytes about to be written, so what is measured is the file.
    let out_name = args.out.display().to_string();
    let written = kit::from_bytes(&bytes, &out_name)?;
    let device = Device::flex();
    let (_, model) = written.into_model(&device)?;
    let cosines = if args.no_check {
        None
    } else {
        let audio = quant::test_signal(checkpoint.config.sample_rate, CHECK_SECONDS);
        let (_, reference) = checkpoint.into_model(&device)?;
        Some(quant::hidden_state_cosines(
            &reference, &model, &audio, &device,
        ))
    };
    write_atomic(&args.out, &bytes)?;

    let output = bytes.len() as u64;
    let report = serde_json::json!({
        "model": args.model.display().to_string(),
        "out": out_name,
        "scheme": args.scheme.name(),
        "block": args.scheme.is_blocked().then(|| match layout.block {
            quant::PER_CHANNEL.. => serde_json::json!("channel"),
            n => serde_json::json!(n),
        }),
        "input_mb": mb(input),
        "output_mb": mb(output),
        "ratio": (input > 0).then(|| output as f64 / input as f64),
        "f32_mb": mb(values as u64 * 4),
        "quantized_tensors": n_quantized,
        "quantized_fraction": v_quantized as f64 / values.max(1) as f64,
        "check_seconds": cosines.as_ref().map(|_| CHECK_SECONDS),
        "cosine_min": cosines.as_ref().map(|c| c.iter().cloned().fold(1.0, f64::min)),
        "cosine_last": cosines.as_ref().and_then(|c| c.last().copied()),
        "cosine_per_layer": cosines,
    });
    println!("{report}");
    Ok(())
}
