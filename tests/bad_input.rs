//! The bad-input matrix of issue 12: every command of the `mert` binary, fed broken audio,
//! broken models, broken configs, impossible outputs and out-of-range options
//! (`bad_input/cases.rs`, inputs from `bad_input/craft.rs`). Each case must fail cleanly: exit
//! code 1 (never a panic's 101), nothing on stdout, one line on stderr that names the culprit,
//! and no file left behind. Every case with an output file runs twice, the second time over an
//! existing output, which must come out byte-identical.

#[path = "bad_input/cases.rs"]
mod cases;
#[path = "bad_input/craft.rs"]
mod craft;
#[path = "common/mert_cli.rs"]
mod mert_cli;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use craft::{fixtures, pcm16, wav};

/// The `--out` argument, if the case has one.
fn out_arg(args: &[String]) -> Option<PathBuf> {
    let i = args.iter().position(|a| a == "--out")?;
    args.get(i + 1).map(PathBuf::from)
}

fn listing(dir: &Path) -> BTreeSet<String> {
    walk(dir, dir)
}

fn walk(root: &Path, dir: &Path) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        all.insert(p.strip_prefix(root).unwrap().display().to_string());
        if p.is_dir() {
            all.extend(walk(root, &p));
        }
    }
    all
}

/// Run case `(name, args, culprits)` in `dir`; `previous`: over an existing output file,
/// which must be left untouched.
fn check_case(
    (name, args, culprits): (&str, &str, &str),
    dir: &Path,
    vars: &[(&str, String)],
    previous: bool,
) -> Result<(), String> {
    let mut line = cases::expand(args);
    for (k, v) in vars {
        line = line.replace(k, v);
    }
    let line = line.replace("{c}", &dir.display().to_string());
    let args: Vec<String> = line
        .split(' ')
        .map(|a| {
            if a == "~" {
                String::new()
            } else {
                a.to_string()
            }
        })
        .collect();
    let out_file = out_arg(&args).filter(|p| p.extension().is_some());
    let sentinel = b"an output from an earlier run\n";
    let mut existing = false;
    if previous {
        match &out_file {
            Some(p) if p.parent().is_some_and(Path::is_dir) => {
                std::fs::write(p, sentinel).unwrap();
                existing = true;
            }
            _ => return Ok(()),
        }
    }
    let before = listing(dir);
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_mert"))
        .args(&args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .map_err(|e| format!("cannot run mert: {e}"))?;
    let took = started.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&run.stderr);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let what = format!("{name} (mert {line}) [{took:.1} s]");
    if std::env::var_os("MERT_MATRIX_SHOW").is_some() && !previous {
        eprintln!("{name}: {}", err.trim_end());
    }
    if err.contains("panicked") || run.status.code() == Some(101) {
        return Err(format!("{what}: panicked: {err}"));
    }
    if run.status.code() != Some(1) {
        return Err(format!(
            "{what}: exit {:?}, expected 1; stderr: {err}",
            run.status.code()
        ));
    }
    if err.trim_end().lines().count() != 1 || !err.starts_with("error: ") {
        return Err(format!("{what}: stderr is not one `error:` line: {err:?}"));
    }
    if let Some(n) = culprits.split('|').find(|n| !err.contains(n)) {
        return Err(format!("{what}: `{n}` not named in: {}", err.trim_end()));
    }
    if !stdout.is_empty() {
        return Err(format!("{what}: printed on stdout: {stdout}"));
    }
    if existing {
        let now = out_file.as_ref().map(std::fs::read);
        if !matches!(now, Some(Ok(b)) if b == sentinel) {
            return Err(format!("{what}: the existing output was changed"));
        }
    }
    let after = listing(dir);
    let new: Vec<&String> = after.difference(&before).collect();
    if !new.is_empty() {
        return Err(format!("{what}: left behind {new:?}"));
    }
    Ok(())
}

/// Run every case twice (without and with an existing output);
/// panics listing the failures.
fn run_matrix() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let w = root.path().join("w");
    std::fs::create_dir(&w).unwrap();
    craft::craft(&w);
    let fx = fixtures();
    let vars = [
        ("{w}", w.display().to_string()),
        ("{fx}", fx.display().to_string()),
        ("{m}", fx.join("mert_tiny").display().to_string()),
        ("{k}", w.join("tiny.safetensors").display().to_string()),
        ("{a}", fx.join("mert_tiny/input0.wav").display().to_string()),
    ];
    let cases: Vec<_> = cases::CASES.iter().collect();
    let (mut failures, mut runs) = (Vec::new(), 0);
    for (i, case) in cases.iter().enumerate() {
        for previous in [false, true] {
            let dir = root.path().join(format!("case{i}-{}", previous as u8));
            std::fs::create_dir(&dir).unwrap();
            runs += 1;
            if let Err(e) = check_case(**case, &dir, &vars, previous) {
                failures.push(e);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{} cases, {runs} runs, {secs:.1} s", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_bad_input_fails_with_one_line_naming_the_culprit_and_leaves_no_file() {
    assert!(cases::CASES.len() >= 54, "{} cases", cases::CASES.len());
    run_matrix();
}

/// Edge inputs that are not errors: silence and a coprime sample rate give finite embeddings.
#[test]
fn silence_and_odd_rates_embed_to_finite_values() {
    let root = tempfile::tempdir().unwrap();
    let w = root.path();
    std::fs::write(
        w.join("silence.wav"),
        wav(1, 1, 24_000, 16, &vec![0; 96_000], None),
    )
    .unwrap();
    std::fs::write(
        w.join("odd_rate.wav"),
        wav(1, 1, 24_001, 16, &pcm16(24_001), None),
    )
    .unwrap();
    std::fs::write(
        w.join("coprime.wav"),
        wav(1, 1, 97_001, 16, &pcm16(97_001), None),
    )
    .unwrap();
    let model = fixtures().join("mert_tiny");
    for (name, frames) in [
        ("silence.wav", 149),
        ("odd_rate.wav", 74),
        ("coprime.wav", 74),
    ] {
        let out = w.join(format!("{name}.npy"));
        let run = Command::new(env!("CARGO_BIN_EXE_mert"))
            .args(["embed", "--model"])
            .arg(&model)
            .arg(w.join(name))
            .args(["--layers", "last", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let b = std::fs::read(&out).unwrap();
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(
            header.contains(&format!("'shape': ({frames}, 64)")),
            "{name}: {header}"
        );
        let values: Vec<f32> = b[10 + hlen..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(values.len(), frames * 64);
        assert!(
            values.iter().all(|v| v.is_finite()),
            "{name}: non-finite output"
        );
    }
}

/// A file cut short (its header states 2 s, 1 s is there) is embedded as far as it goes, with
/// one warning line saying so; `--quiet` hides it.
#[test]
fn truncated_file_embeds_what_is_there_and_warns() {
    let root = tempfile::tempdir().unwrap();
    let model = fixtures().join("mert_tiny").display().to_string();
    let s = |name: &str| root.path().join(name).display().to_string();
    // `mert embed INPUT --out NAME.npy` (the last layer), stdin piped from `piped` for `-`
    let embed = |input: &str, name: &str, extra: &[&str], piped: Option<Vec<u8>>| {
        let out = s(name);
        let mut args = vec![
            "embed", input, "--model", &model, "--layers", "last", "--out", &out,
        ];
        args.extend_from_slice(extra);
        match piped {
            Some(bytes) => mert_cli::mert_piped(&args, bytes),
            None => mert_cli::mert(&args),
        }
    };
    // a download cut short: both the RIFF and the data chunk state the full length
    let mut cut = wav(1, 1, 24_000, 16, &pcm16(24_000), Some(96_000));
    cut[4..8].copy_from_slice(&(36u32 + 96_000).to_le_bytes());
    std::fs::write(s("cut.wav"), &cut).unwrap();
    for quiet in [false, true] {
        let name = format!("cut{quiet}.npy");
        let run = embed(
            &s("cut.wav"),
            &name,
            if quiet { &["--quiet"] } else { &[] },
            None,
        );
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{err}");
        if quiet {
            assert!(err.is_empty(), "{err}");
        } else {
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(
                err.contains("cut.wav") && err.contains("decoded 1.00 s of the 2.00 s"),
                "{err}"
            );
        }
        let b = std::fs::read(s(&name)).unwrap();
        let header = String::from_utf8_lossy(&b[10..80]);
        assert!(header.contains("'shape': (74, 64)"), "{header}");
    }
    // A WAV streamed by a tool that could not know its length is whole: no warning. Sizes
    // 0xFFFFFFFF (ffmpeg) and sox's placeholder 0x7ffff000.
    for (riff, data) in [(u32::MAX, u32::MAX), (0x7fff_f024, 0x7fff_f000)] {
        let mut bytes = wav(1, 1, 24_000, 16, &pcm16(24_000), Some(data));
        bytes[4..8].copy_from_slice(&riff.to_le_bytes());
        std::fs::write(s("streamed.wav"), bytes).unwrap();
        let run = embed(
            &s("streamed.wav"),
            &format!("streamed{data}.npy"),
            &[],
            None,
        );
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success() && err.is_empty(), "{data:#x}: {err}");
    }
    // Through a pipe a header's length is not checked (a streaming writer cannot know it).
    let run = embed("-", "piped.npy", &[], Some(cut));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success() && err.is_empty(), "{err}");
}
