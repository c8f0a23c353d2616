//! `mert`: the native command line of the MERT kit. One reporting point: every error ends here
//! as one line on stderr and a non-zero exit code.

mod backend;
mod cli;
mod output;
mod progress;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    // burn's CPU backend sizes its thread pool from RAYON_NUM_THREADS at first use.
    if let cli::Command::Bench(cli::BenchArgs {
        threads: Some(n), ..
    }) = &args.command
    {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    env_logger::Builder::new()
        .filter_level(if args.verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        })
        .format_timestamp(None)
        .init();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
