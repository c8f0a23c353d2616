//! Accuracy of each quantization scheme on real audio: per hidden state, the cosine of the
//! quantized model's output to the f32 model's, over an excerpt of every file given.
//! `cargo run --release -p mert-core --example quant_accuracy -- MODEL SECONDS AUDIO...`
//! Prints one JSON object per scheme (file size, per-layer min and mean cosine over clips).
//! The quantized models run as `mert` runs them: on this CPU with the 8-bit kernel where it
//! is fast (`MERT_INT8=0` for the dequantized f32 path). `MERT_QUANT_SCHEMES=q8,q4` picks
//! schemes (`f16`, `q8`, `q8/32` for blocks of 32, `q4`).

use std::path::Path;

use burn::tensor::Device;
use mert_core::audio::{decode_file, normalize, resample};
use mert_core::load::kit;
use mert_core::quant::{Layout, Scheme, hidden_state_cosines};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(seconds)) =
        (args.get(1), args.get(2).and_then(|s| s.parse::<f64>().ok()))
    else {
        eprintln!("usage: quant_accuracy MODEL SECONDS AUDIO...");
        std::process::exit(2);
    };
    let device = Device::flex();
    let ck = mert_core::load_path(Path::new(path)).expect("load the model");
    let rate = ck.config.sample_rate;
    let reference = ck.build(&device).expect("build");
    let f32_len = kit::to_bytes(&ck).expect("f32 bytes").len();
    // the middle `seconds` of each file, at the model's rate, normalised as `mert embed` does
    let clips: Vec<(String, Vec<f32>)> = args[3..]
        .iter()
        .filter_map(|f| {
            let audio = decode_file(Path::new(f)).ok()?;
            let mut x = resample(&audio.samples, audio.sample_rate, rate).ok()?;
            let n = (seconds * f64::from(rate)) as usize;
            if x.len() > n {
                let start = (x.len() - n) / 2;
                x = x[start..start + n].to_vec();
            }
            normalize(&mut x);
            Some((f.clone(), x))
        })
        .collect();
    eprintln!("{} clips of up to {seconds} s", clips.len());
    let layouts = [
        Layout::new(Scheme::F16),
        Layout::new(Scheme::Q8),
        Layout::new(Scheme::Q8).with_block(32),
        Layout::new(Scheme::Q4),
    ];
    // `MERT_QUANT_SCHEMES=q8,q4` (names, `q8/32` for blocks of 32) runs only those
    let only = std::env::var("MERT_QUANT_SCHEMES").ok();
    for layout in layouts {
        let label = match layout.block {
            32 if layout.scheme == Scheme::Q8 => "q8/32".to_string(),
            _ => layout.scheme.name().to_string(),
        };
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|s| s == label))
        {
            continue;
        }
        let bytes = kit::to_bytes_quantized(&ck, layout).expect("quantize");
        let model = kit::from_bytes(&bytes, "quantized.safetensors")
            .and_then(|q| q.build(&device))
            .expect("load the quantized bytes");
        let per_clip: Vec<Vec<f64>> = clips
            .iter()
            .map(|(_, x)| hidden_state_cosines(&reference, &model, x, &device))
            .collect();
        let layers = per_clip.first().map_or(0, Vec::len);
        let min: Vec<f64> = (0..layers)
            .map(|l| per_clip.iter().map(|c| c[l]).fold(1.0, f64::min))
            .collect();
        let mean: Vec<f64> = (0..layers)
            .map(|l| per_clip.iter().map(|c| c[l]).sum::<f64>() / per_clip.len() as f64)
            .collect();
        let worst = min.iter().copied().fold(1.0, f64::min);
        let round = |v: &[f64]| {
            v.iter()
                .map(|c| (c * 1e6).round() / 1e6)
                .collect::<Vec<_>>()
        };
        println!(
            "{}",
            serde_json::json!({
                "scheme": layout.scheme.name(),
                "block": layout.scheme.is_blocked().then(|| layout.block_name()),
                "file_mb": bytes.len() as f64 / 1e6,
                "of_f32": bytes.len() as f64 / f32_len as f64,
                "clips": clips.len(),
                "seconds": seconds,
                "cosine_min": worst,
                "cosine_min_per_layer": round(&min),
                "cosine_mean_per_layer": round(&mean),
            })
        );
    }
}
