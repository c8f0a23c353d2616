//! `mert`: the native command line of the MERT kit. One reporting point: every error ends here
//! as one line on stderr and a non-zero exit code.

// Library and binary code returns errors instead of unwrapping (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod backend;
mod cli;
mod codec;
mod output;
mod pretrain;
mod probe;
mod progress;

use clap::Parser;
use clap::error::ErrorKind;

/// The most threads `--threads` may ask for (a thread each; more only exhausts the system).
pub(crate) const MAX_THREADS: usize = 1024;

fn main() {
    install_panic_hook();
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `mert help [COMMAND] --help` (clap refuses it): the same as without `--help`.
    if argv.get(1).is_some_and(|a| a == "help") {
        argv.retain(|a| a != "--help" && a != "-h");
    }
    let args = match cli::Cli::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            // One line, like every other error: clap's message without its usage block.
            // (a list of missing arguments follows its first line: keep it on the line)
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            let message = if message.is_empty() {
                "invalid arguments".to_string()
            } else {
                message.join(" ")
            };
            eprintln!("{message} (see mert --help)");
            std::process::exit(2);
        }
    };
    // burn's CPU backend sizes its thread pool from RAYON_NUM_THREADS at first use.
    if let cli::Command::Bench(cli::BenchArgs {
        threads: Some(n), ..
    }) = &args.command
    {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    // burn materialises state it loads without a device (the optimiser's, on --resume) on its
    // default device, a GPU in a wgpu build; a CPU run keeps it on the CPU.
    let run_backend = match &args.command {
        cli::Command::Pretrain(a) => Some(a.run.backend),
        cli::Command::TrainCodec(a) => Some(a.run.backend),
        _ => None,
    };
    if run_backend == Some(backend::Backend::Cpu) && std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    env_logger::Builder::new()
        .filter_level(if args.verbose {
            log::LevelFilter::Debug
        } else if args.quiet {
            // one line per failure: warnings (skipped packets) only without --quiet
            log::LevelFilter::Error
        } else {
            log::LevelFilter::Warn
        })
        // symphonia logs each failed format probe at error level; the CLI's own one-line
        // error already says the file is not audio it can read.
        .filter_module(
            "symphonia",
            if args.verbose {
                log::LevelFilter::Debug
            } else {
                log::LevelFilter::Off
            },
        )
        .format_timestamp(None)
        .init();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// A panic (a bug, or a failure deep inside a dependency) still ends as one line on stderr and
/// exit code 1, like every other error. Output into a closed pipe (`mert tag ... | head -1`)
/// panics inside `println!`: that ends quietly, as the shell tools do.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".to_string());
        if message.contains("failed printing to stdout") {
            // a closed pipe (`| head`) ends quietly; a failing disk (`> /dev/full`) does not
            if !message.contains("Broken pipe") {
                eprintln!(
                    "error: cannot write to stdout: {}",
                    message.replace('\n', " ")
                );
            }
            std::process::exit(1);
        }
        let place = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error: {}{place}; please report it",
            message.replace('\n', " ")
        );
        std::process::exit(1);
    }));
}

/// The error and its causes on one line.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            // a cause that already names the context (`file: why`) replaces the bare `file`
            parts.retain(|p| !s.contains(p.as_str()));
            parts.push(s);
        }
    }
    parts.join(": ")
}
