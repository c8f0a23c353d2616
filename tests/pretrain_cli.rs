//! `mert pretrain` end to end on the committed example clip: a resumed run continues the
//! unbroken run's loss curve exactly, a `kill -9` leaves only complete checkpoints and the run
//! resumes from the newest, the exported model loads in `mert embed`, and config errors name
//! the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/mert_cli.rs"]
mod mert_cli;
use mert_cli::{example_clip, fails, mert, ok};

/// A run file for the tiny model on the example clip: 1 s crops, 3 s segments.
fn run_file(dir: &Path, steps: u64, checkpoint_every: u64, extra: &str) -> PathBuf {
    run_file_on(dir, &example_clip(), steps, checkpoint_every, extra)
}

/// [`run_file`] training (and validating) on `clip`.
fn run_file_on(dir: &Path, clip: &Path, steps: u64, checkpoint_every: u64, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[model]
preset = "tiny"
num_hidden_layers = 1

[data]
train = ["{clip}"]
valid = ["{clip}"]
crop_seconds = 1.0
segment_seconds = 3.0
cache = "{cache}"

[train]
max_steps = {steps}
batch_size = 2
lr = 1e-3
warmup_steps = 2
checkpoint_every = {checkpoint_every}
keep_checkpoints = 2
log_every = 1
valid_every = 3
valid_batches = 1
seed = 7
license = "CC0-1.0"
{extra}
"#,
        clip = clip.display(),
        cache = dir.join("cache").display(),
    );
    let path = dir.join(format!("run-{steps}-{checkpoint_every}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

/// Runs `a` and `b` logged the same `steps` steps with losses equal to `rel` (relative).
fn same_curve(a: &Path, b: &Path, steps: usize, rel: f64) {
    let (a, b) = (losses(a), losses(b));
    assert_eq!(a.len(), steps, "{a:?}");
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for ((sa, la), (sb, lb)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert!((la - lb).abs() <= rel * la.abs(), "step {sa}: {la} vs {lb}");
    }
}

#[test]
fn resumed_run_continues_the_same_loss_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let config = run_file(tmp.path(), 6, 100, "");
    let cfg = config.to_str().unwrap();
    let whole = tmp.path().join("whole");
    let parts = tmp.path().join("parts");
    ok(&[
        "pretrain",
        "--config",
        cfg,
        "--out",
        whole.to_str().unwrap(),
        "--quiet",
    ]);
    ok(&[
        "pretrain",
        "--config",
        cfg,
        "--out",
        parts.to_str().unwrap(),
        "--quiet",
        "--stop-at",
        "3",
    ]);
    // A stop at or before the step the run is at is refused (it would never be reached).
    let early = fails(&[
        "pretrain",
        "--config",
        cfg,
        "--out",
        parts.to_str().unwrap(),
        "--resume",
        "--quiet",
        "--stop-at",
        "3",
    ]);
    assert!(early.contains("--stop-at 3"), "{early}");
    // Without --resume an existing run is refused rather than overwritten.
    let again = mert(&[
        "pretrain",
        "--config",
        cfg,
        "--out",
        parts.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    ok(&[
        "pretrain",
        "--config",
        cfg,
        "--out",
        parts.to_str().unwrap(),
        "--quiet",
        "--resume",
    ]);
    same_curve(&whole, &parts, 6, 1e-6);
    // A config asking for fewer steps than the run has made is refused before the run's
    // files are touched (they would be rewritten as a shorter run's).
    let before = std::fs::read(parts.join("config.toml")).unwrap();
    let model = std::fs::read(parts.join("model.safetensors")).unwrap();
    let short = run_file(tmp.path(), 3, 100, "");
    let past = fails(&[
        "pretrain",
        "--config",
        short.to_str().unwrap(),
        "--out",
        parts.to_str().unwrap(),
        "--resume",
        "--quiet",
    ]);
    assert!(
        past.contains("step 6") && past.contains("max_steps = 3"),
        "{past}"
    );
    assert_eq!(std::fs::read(parts.join("config.toml")).unwrap(), before);
    assert_eq!(
        std::fs::read(parts.join("model.safetensors")).unwrap(),
        model
    );
    // The exported model is a kit file `mert embed` reads.
    let emb = tmp.path().join("e.npy");
    ok(&[
        "embed",
        example_clip().to_str().unwrap(),
        "--model",
        whole.join("model.safetensors").to_str().unwrap(),
        "--out",
        emb.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(std::fs::metadata(&emb).unwrap().len() > 1000);
}

/// The label cache is keyed by file, not by position in the list: a run whose data differs
/// from what an earlier run cached there labels its own files (it once reused the earlier
/// run's entries position by position and trained on the wrong audio).
#[test]
fn the_label_cache_follows_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let seconds = |config: &Path, out: &str| -> f64 {
        let json = ok(&[
            "pretrain",
            "--config",
            config.to_str().unwrap(),
            "--out",
            tmp.path().join(out).to_str().unwrap(),
            "--quiet",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
        v["train_seconds_of_audio"].as_f64().unwrap()
    };
    let first = seconds(&run_file(tmp.path(), 1, 100, ""), "a");
    // a 4 s clip of its own, cached where the first run's 3 s segments are
    let other = tmp.path().join("other.wav");
    let tone: Vec<f32> = (0..96_000).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
    mert_cli::write_wav(&other, 24_000, &tone);
    let second = seconds(&run_file_on(tmp.path(), &other, 1, 100, ""), "b");
    assert!(
        (second - 4.0).abs() < 1e-6,
        "{second} s (first run: {first} s)"
    );
    assert!((first - second).abs() > 0.5, "{first} vs {second}");
}

/// Data parallel on two CPU replicas (burn's multi-device path: a model copy per device,
/// gradients gathered on the main one) follows the one-device run with the same update_freq:
/// each micro-batch keeps its crops, masks, noise and dropout draws whatever device runs it.
#[test]
fn two_devices_follow_the_one_device_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = run_file(tmp.path(), 4, 100, "update_freq = 2");
    let cfg = config.to_str().unwrap();
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    let run = |out: &Path, devices: &str| {
        ok(&[
            "pretrain",
            "--config",
            cfg,
            "--out",
            out.to_str().unwrap(),
            "--quiet",
            "--devices",
            devices,
        ])
    };
    run(&one, "1");
    run(&two, "2");
    // f32 sums in another order; four optimiser steps later still within 1e-5.
    same_curve(&one, &two, 4, 1e-5);
    // The step's micro-batches must split evenly over the devices.
    let three = mert(&[
        "pretrain",
        "--config",
        cfg,
        "--out",
        tmp.path().join("three").to_str().unwrap(),
        "--devices",
        "3",
    ]);
    assert_eq!(three.status.code(), Some(1));
    let err = String::from_utf8_lossy(&three.stderr);
    assert!(
        err.contains("--devices 3") && err.contains("update_freq"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!tmp.path().join("three").exists());
}

/// Mixed precision: the backbone computes in bfloat16 on f32 master weights. The losses track
/// the f32 run (dropout off) within bfloat16's precision without being equal to it, and the exported model
/// is f32 (`mert embed` reads it).
#[test]
fn bf16_mixed_precision_tracks_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let f32_run = tmp.path().join("f32");
    let bf16_run = tmp.path().join("bf16");
    for (out, precision) in [(&f32_run, "f32"), (&bf16_run, "bf16")] {
        let config = run_file(
            out.parent().unwrap(),
            6,
            100,
            &format!("precision = \"{precision}\""),
        );
        // Without dropout, so that only the number type differs between the runs.
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "num_hidden_layers = 1",
            "num_hidden_layers = 1\nhidden_dropout = 0.0\nattention_dropout = 0.0\nfeat_proj_dropout = 0.0\nlayerdrop = 0.0",
        );
        let renamed = tmp.path().join(format!("{precision}.toml"));
        std::fs::write(&renamed, text).unwrap();
        ok(&[
            "pretrain",
            "--config",
            renamed.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
    }
    let (a, b) = (losses(&f32_run), losses(&bf16_run));
    assert_eq!(a.len(), 6, "{a:?}");
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    let mut largest: f64 = 0.0;
    for ((_, la), (_, lb)) in a.iter().zip(&b) {
        largest = largest.max((la - lb).abs() / la.abs());
    }
    // bfloat16 keeps 8 bits of mantissa (relative step 2^-8 = 0.4%); six steps stay within 3%.
    assert!(largest <= 3e-2, "{a:?} vs {b:?}");
    assert!(largest > 1e-6, "the bf16 run equals the f32 run: {a:?}");
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(bf16_run.join("config.toml")).unwrap()).unwrap();
    assert_eq!(config["train"]["precision"].as_str(), Some("bf16"));
    let emb = tmp.path().join("e.npy");
    ok(&[
        "embed",
        example_clip().to_str().unwrap(),
        "--model",
        bf16_run.join("model.safetensors").to_str().unwrap(),
        "--out",
        emb.to_str().unwrap(),
        "--quiet",
    ]);
}

#[test]
fn kill_9_loses_at_most_one_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let config = run_file(tmp.path(), 400, 1, "");
    let run = tmp.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mert"))
        .args(["pretrain", "--config", config.to_str().unwrap(), "--out"])
        .arg(&run)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoints = run.join("checkpoints");
    let started = Instant::now();
    loop {
        let done = std::fs::read_dir(&checkpoints)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
                    .count()
            })
            .unwrap_or(0);
        if done >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoints"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let metrics = losses(&run);
    let last_logged = metrics.last().map_or(0, |m| m.0);
    // Every finished checkpoint is complete; the newest is at most one interval behind.
    let mut newest = 0;
    for entry in std::fs::read_dir(&checkpoints).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(step) = name.strip_prefix("step-") {
            for f in [
                "model.safetensors",
                "heads.safetensors",
                "optimizer.bpk",
                "state.json",
            ] {
                assert!(path.join(f).is_file(), "{name}: {f} missing");
            }
            newest = newest.max(step.parse::<u64>().unwrap());
        }
    }
    assert!(
        newest + 1 >= last_logged,
        "newest {newest}, logged {last_logged}"
    );
    // Resume from there for a few more steps.
    let short = run_file(tmp.path(), newest + 2, 1, "");
    ok(&[
        "pretrain",
        "--config",
        short.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--resume",
        "--quiet",
    ]);
    let after = losses(&run);
    assert_eq!(after.last().unwrap().0, newest + 2);
    assert!(run.join("model.safetensors").is_file());
}

#[test]
fn config_errors_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = run_file(tmp.path(), 2, 1, "learning_rate = 3");
    let out = mert(&[
        "pretrain",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("learning_rate"), "{err}");
    let text = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("learning_rate = 3", "")
        .replace("num_hidden_layers = 1", "num_hidden_layer = 1");
    std::fs::write(&bad, text).unwrap();
    let out = mert(&[
        "pretrain",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("num_hidden_layer"), "{err}");
}

#[test]
fn codec_teacher_codes_are_predicted() {
    let tmp = tempfile::tempdir().unwrap();
    let codec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/codec/encodec.th");
    // The committed reduced-width codec has 512-entry codebooks.
    let extra = format!(
        "[teachers]\ncqt = true\ncodec = \"{}\"\n[heads]\ncodebook_size = 512\n",
        codec.display()
    );
    let config = run_file(tmp.path(), 2, 100, &extra);
    let run = tmp.path().join("run");
    ok(&[
        "pretrain",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    let line = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    // Cross-entropy over 8 codebooks of 512 classes starts near 8 ln 512 = 49.9.
    let codes = first["loss_codes"].as_f64().unwrap();
    assert!(codes > 30.0 && codes < 70.0, "{first}");
    assert!(first["loss_cqt"].as_f64().unwrap() > 0.0);
    // A codec whose codebooks do not match the heads is refused before training.
    let bad = run_file(
        tmp.path(),
        2,
        100,
        &format!("[teachers]\ncodec = \"{}\"\n", codec.display()),
    );
    let out = mert(&[
        "pretrain",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        tmp.path().join("bad").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("codebook"), "{err}");
}

/// `[model] init`: a run starts from a checkpoint's backbone and `masked_spec_embed` (here
/// the reference-written tiny fixture); a learning rate too small to move any weight keeps them
/// exactly, so the exported model holds the fixture's tensors.
#[test]
fn a_run_can_start_from_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let init = mert_cli::fixture("mert_tiny");
    let text = std::fs::read_to_string(run_file(tmp.path(), 1, 100, "")).unwrap();
    let text = text
        .replace("preset = \"tiny\"\nnum_hidden_layers = 1\n", "")
        .replace(
            "[model]\n",
            &format!("[model]\ninit = \"{}\"\n", init.display()),
        )
        .replace("lr = 1e-3", "lr = 1e-30");
    let config = tmp.path().join("init.toml");
    std::fs::write(&config, &text).unwrap();
    let run = tmp.path().join("run");
    let args = [
        "pretrain",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ];
    ok(&args);
    let want = mert_core::load_path(&init).unwrap();
    let got = mert_core::load_path(&run.join("model.safetensors")).unwrap();
    assert_eq!(got.config.hidden_size, want.config.hidden_size);
    assert_eq!(got.tensors.tensors.len(), want.tensors.tensors.len());
    for (k, w) in &want.tensors.tensors {
        let g = &got.tensors.tensors[k];
        let max = w
            .data
            .iter()
            .zip(&g.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max <= 1e-6, "{k}: moved by {max}");
    }
    let (w, g) = (want.mask_embedding.unwrap(), got.mask_embedding.unwrap());
    assert_eq!(w.shape, g.shape);
    assert!(
        w.data
            .iter()
            .zip(&g.data)
            .all(|(a, b)| (a - b).abs() <= 1e-6)
    );

    // With a preset too, or a checkpoint that is not there: refused, naming `[model] init`.
    let both = tmp.path().join("both.toml");
    std::fs::write(
        &both,
        text.replace("[model]\n", "[model]\npreset = \"tiny\"\n"),
    )
    .unwrap();
    let missing = tmp.path().join("missing.toml");
    std::fs::write(
        &missing,
        text.replace(init.to_str().unwrap(), "/no/such/model"),
    )
    .unwrap();
    for (file, needle) in [(&both, "preset and init"), (&missing, "/no/such/model")] {
        let err = fails(&[
            "pretrain",
            "--config",
            file.to_str().unwrap(),
            "--out",
            tmp.path().join("x").to_str().unwrap(),
        ]);
        assert!(err.contains(needle), "{err}");
    }
}
