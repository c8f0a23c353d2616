//! `mert train-codec` end to end on the committed example clip: a resumed run continues the
//! unbroken run's metrics exactly, the codec it writes is read by `mert labels --codec` and by
//! `mert pretrain` (`[teachers] codec`), and broken checkpoints and run files are errors that
//! name the file, the key or the field.

use std::path::{Path, PathBuf};

#[path = "common/mert_cli.rs"]
mod mert_cli;
use mert_cli::{example_clip, fails, ok};

/// A run file for a very small codec on the example clip: 0.5 s crops, 3 s segments.
fn run_file(dir: &Path, name: &str, n_filters: usize, steps: u64) -> PathBuf {
    let clip = example_clip();
    let text = format!(
        r#"
[codec]
n_filters = {n_filters}
dimension = 8
codebook_size = 16
n_q = 2
lstm = 1

[data]
train = ["{clip}"]
valid = ["{clip}"]
crop_seconds = 0.5
segment_seconds = 3.0
cache = "{cache}"

[train]
max_steps = {steps}
batch_size = 2
lr = 1e-3
warmup_steps = 1
checkpoint_every = 100
keep_checkpoints = 2
log_every = 1
valid_every = 2
valid_crops = 2
seed = 7
clip_norm = 10.0
license = "CC0-1.0"

[quantizer]
dead_code_threshold = 0.5
kmeans_iters = 5

[loss]
mel_windows = [64, 256]
n_mels = 16
"#,
        clip = clip.display(),
        cache = dir.join("cache").display(),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn newest_checkpoint(run: &Path) -> PathBuf {
    let mut all: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("step-")
        })
        .collect();
    all.sort();
    all.pop().unwrap()
}

#[test]
fn resumed_run_matches_and_the_codec_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let config = run_file(tmp.path(), "codec.toml", 2, 4);
    let cfg = config.to_str().unwrap();
    let whole = tmp.path().join("whole");
    let parts = tmp.path().join("parts");
    let summary = ok(&[
        "train-codec",
        "--config",
        cfg,
        "--out",
        whole.to_str().unwrap(),
        "--quiet",
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["steps"], 4);
    ok(&[
        "train-codec",
        "--config",
        cfg,
        "--out",
        parts.to_str().unwrap(),
        "--quiet",
        "--stop-at",
        "2",
    ]);
    // an existing run is refused without --resume
    let e = fails(&[
        "train-codec",
        "--config",
        cfg,
        "--out",
        parts.to_str().unwrap(),
    ]);
    assert!(e.contains("--resume"), "{e}");
    ok(&[
        "train-codec",
        "--config",
        cfg,
        "--out",
        parts.to_str().unwrap(),
        "--quiet",
        "--resume",
    ]);
    let (a, b) = (metrics(&whole), metrics(&parts));
    // step 0 (the untrained codec's held-out scores), then steps 1..4
    assert_eq!(a.len(), 5, "{a:?}");
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    assert!(a[0]["loss"].is_null() && a[0]["valid_snr_db"].is_number());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["step"], y["step"]);
        for key in [
            "loss",
            "loss_time",
            "loss_mel",
            "loss_commit",
            "valid_snr_db",
            "valid_mel_distance",
        ] {
            match (x[key].as_f64(), y[key].as_f64()) {
                (Some(p), Some(q)) => assert!(
                    (p - q).abs() <= 1e-6 * p.abs().max(1e-6),
                    "step {}: {key} {p} vs {q}",
                    x["step"]
                ),
                (None, None) => {}
                other => panic!("step {}: {key} {other:?}", x["step"]),
            }
        }
    }
    for line in &a[1..] {
        for key in ["lr", "samples_per_s", "grad_norm", "codes_used"] {
            assert!(line[key].is_number(), "{key} missing: {line}");
        }
    }

    // the codec file: `mert labels` reads it ...
    let codec = whole.join("codec.safetensors");
    let labels = tmp.path().join("labels.safetensors");
    ok(&[
        "labels",
        example_clip().to_str().unwrap(),
        "--codec",
        codec.to_str().unwrap(),
        "--out",
        labels.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&labels).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let codes = st.tensor("codes").unwrap();
    assert_eq!(codes.shape()[1], 2);
    assert!(codes.shape()[0] > 100);
    // in folder mode an existing output is skipped, unless a `--codec` run finds it without
    // codes: then it is labelled again
    let folder = tmp.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let clip = example_clip();
    let second = tmp.path().join("second.wav");
    std::fs::copy(&clip, &second).unwrap();
    let two = [clip.to_str().unwrap(), second.to_str().unwrap()];
    ok(&["labels", two[0], two[1], "--out", folder.to_str().unwrap()]);
    let has_codes = |name: &str| {
        let bytes = std::fs::read(folder.join(name)).unwrap();
        safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .tensor("codes")
            .is_ok()
    };
    assert!(!has_codes("second.safetensors"));
    let codec_arg = codec.to_str().unwrap();
    let out_arg = folder.to_str().unwrap();
    ok(&[
        "labels", two[0], two[1], "--codec", codec_arg, "--out", out_arg,
    ]);
    assert!(has_codes("second.safetensors") && has_codes("phrase.safetensors"));
    // ... and so does pretraining, as its acoustic teacher
    let pretrain = tmp.path().join("pretrain.toml");
    std::fs::write(
        &pretrain,
        format!(
            r#"
[model]
preset = "tiny"
num_hidden_layers = 1

[data]
train = ["{clip}"]
crop_seconds = 1.0
segment_seconds = 3.0

[train]
max_steps = 1
batch_size = 1
warmup_steps = 1
license = "CC0-1.0"

[teachers]
cqt = false
codec = "{codec}"

[heads]
codebooks = 2
codebook_size = 16
"#,
            clip = example_clip().display(),
            codec = codec.display()
        ),
    )
    .unwrap();
    let run = tmp.path().join("pretrain");
    ok(&[
        "pretrain",
        "--config",
        pretrain.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(run.join("model.safetensors").is_file());
}

#[test]
fn broken_checkpoints_and_run_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let config = run_file(tmp.path(), "codec.toml", 2, 3);
    let cfg = config.to_str().unwrap();
    let run = tmp.path().join("run");
    let out = run.to_str().unwrap();
    ok(&[
        "train-codec",
        "--config",
        cfg,
        "--out",
        out,
        "--quiet",
        "--stop-at",
        "1",
    ]);
    let file = newest_checkpoint(&run).join("codec.safetensors");
    let good = std::fs::read(&file).unwrap();

    // a checkpoint is itself a codec file `mert labels` reads
    let labels = tmp.path().join("l.safetensors");
    ok(&[
        "labels",
        example_clip().to_str().unwrap(),
        "--codec",
        file.to_str().unwrap(),
        "--out",
        labels.to_str().unwrap(),
    ]);

    // truncated: the file is named
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let e = fails(&["train-codec", "--config", cfg, "--out", out, "--resume"]);
    assert!(e.contains("codec.safetensors"), "{e}");

    // a tensor missing: the key is named
    let st = safetensors::SafeTensors::deserialize(&good).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&good).unwrap();
    let key = "decoder.model.0.conv.conv.weight_g";
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != key)
        .collect();
    assert_eq!(kept.len() + 1, st.len());
    let bytes = safetensors::serialize(kept, header.metadata().clone()).unwrap();
    std::fs::write(&file, bytes).unwrap();
    let e = fails(&["train-codec", "--config", cfg, "--out", out, "--resume"]);
    assert!(e.contains(key) && e.contains("missing"), "{e}");

    // a run file for another codec shape: refused
    std::fs::write(&file, &good).unwrap();
    let wide = run_file(tmp.path(), "wide.toml", 4, 3);
    let e = fails(&[
        "train-codec",
        "--config",
        wide.to_str().unwrap(),
        "--out",
        out,
        "--resume",
    ]);
    assert!(e.contains("differs from [codec]"), "{e}");

    // the intact checkpoint resumes
    ok(&[
        "train-codec",
        "--config",
        cfg,
        "--out",
        out,
        "--quiet",
        "--resume",
    ]);
    assert!(run.join("codec.safetensors").is_file());

    // run-file errors name the key: the good run file with one line replaced
    let refused = |from: &str, to: &str, out: &str| {
        let bad = tmp.path().join("bad.toml");
        let text = std::fs::read_to_string(&config).unwrap().replace(from, to);
        std::fs::write(&bad, text).unwrap();
        let out = tmp.path().join(out);
        fails(&[
            "train-codec",
            "--config",
            bad.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let e = refused("n_q = 2", "n_q = 2\nbandwidth = 6", "x");
    assert!(e.contains("bandwidth"), "{e}");
    // a batch too large to hold is refused before any work
    let e = refused("batch_size = 2", "batch_size = 100000000", "y");
    assert!(e.contains("batch_size") && e.contains("65536"), "{e}");
}
