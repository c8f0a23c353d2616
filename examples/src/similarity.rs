//! Similarity search: embed every audio file of a folder once (the last layer's time mean),
//! then rank them by cosine similarity to a query file.
//!
//!     cargo run --release -p mert-examples --bin similarity -- MODEL FOLDER QUERY [K]
//!
//! Prints the K (default 5) nearest files with their cosine similarity, nearest first. The
//! query itself, if it is in the folder, comes first with similarity 1.

use std::path::Path;
use std::process::ExitCode;

use mert_mobile::Model;

mod common;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-12)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model_path, folder, query, k) = match args.as_slice() {
        [m, f, q] => (m, f, q, Ok(5)),
        [m, f, q, k] => (m, f, q, k.parse::<usize>()),
        _ => {
            eprintln!("usage: similarity MODEL FOLDER QUERY [K]");
            return ExitCode::from(2);
        }
    };
    let Ok(k) = k else {
        eprintln!("error: K must be a non-negative integer");
        return ExitCode::from(2);
    };
    let run = || -> Result<(), String> {
        let model = Model::from_path(Path::new(model_path)).map_err(|e| e.to_string())?;
        let embed = |path: &Path| -> Result<Vec<f32>, String> {
            let e = model.embed_file(path).map_err(|e| e.to_string())?;
            Ok(common::time_mean(&e))
        };
        let q = embed(Path::new(query))?;
        let files = common::audio_files(Path::new(folder)).map_err(|e| format!("{folder}: {e}"))?;
        let mut ranked = Vec::with_capacity(files.len());
        for file in files {
            match embed(&file) {
                Ok(v) => ranked.push((cosine(&q, &v), file)),
                Err(e) => eprintln!("skipped: {e}"),
            }
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (sim, file) in ranked.iter().take(k) {
            println!("{sim:.4}\t{}", file.display());
        }
        Ok(())
    };
    common::exit(run())
}
