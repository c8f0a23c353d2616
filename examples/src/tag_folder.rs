//! Tag every audio file in a folder (recursively) with a tagging model and print the top
//! tags of each, as `mert tag` prints them; a file that fails is reported and skipped.
//!
//!     cargo run --release -p mert-examples --bin tag-folder -- FOLDER [MODEL] [TOP]
//!
//! MODEL defaults to the kit's default tagger (`models/default/mert-tag-default.safetensors`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mert_mobile::Model;

mod common;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(folder) = args.first() else {
        eprintln!("usage: tag-folder FOLDER [MODEL] [TOP]");
        return ExitCode::from(2);
    };
    let default_model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/default/mert-tag-default.safetensors");
    let model_path = args.get(1).map_or(default_model, PathBuf::from);
    let top: usize = match args.get(2).map(|t| t.parse()) {
        None => 3,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("error: TOP must be a positive integer");
            return ExitCode::from(2);
        }
    };
    let model = match Model::from_path(&model_path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let files = match common::audio_files(Path::new(folder)) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {folder}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = 0;
    for file in &files {
        match model.tag_file(file) {
            Ok(tags) => {
                let best: Vec<String> = tags
                    .iter()
                    .take(top)
                    .map(|t| format!("{} {:.3}", t.name, t.p))
                    .collect();
                println!("{}\t{}", file.display(), best.join(", "));
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    eprintln!("{} files tagged, {failed} failed", files.len() - failed);
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
