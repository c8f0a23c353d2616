//! Embed one audio file: the last hidden layer, `[frames, dim]` at 75 frames per second for
//! MERT-v1, as `mert embed FILE --layers last` gives it, then its time mean (one vector per
//! clip, what most downstream probes start from).
//!
//!     cargo run --release -p mert-examples --bin embed-file -- MODEL AUDIO [OUT.f32]
//!
//! MODEL is a kit `.safetensors` file (f32/f16/q8/q4) or a Hugging Face folder; AUDIO any
//! format the kit decodes. With OUT, the frames are written there as raw little-endian f32.

use std::path::PathBuf;
use std::process::ExitCode;

use mert_mobile::Model;

mod common;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (model_path, audio, out) = match args.as_slice() {
        [m, a] => (m, a, None),
        [m, a, o] => (m, a, Some(o)),
        _ => {
            eprintln!("usage: embed-file MODEL AUDIO [OUT.f32]");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<(), String> {
        let model = Model::from_path(model_path).map_err(|e| e.to_string())?;
        let e = model.embed_file(audio).map_err(|e| e.to_string())?;
        println!("{}: {} frames x {} dims", audio.display(), e.frames, e.dim);
        let mean = common::time_mean(&e);
        let head: Vec<String> = mean.iter().take(8).map(|v| format!("{v:.4}")).collect();
        println!("time mean, first values: {}", head.join(" "));
        if let Some(out) = out {
            let bytes: Vec<u8> = e.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(out, bytes).map_err(|err| format!("{}: {err}", out.display()))?;
            println!("wrote {}", out.display());
        }
        Ok(())
    };
    common::exit(run())
}
