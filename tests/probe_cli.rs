//! `mert probe` and `mert tag` end to end: a head learns an audible distinction (tones vs
//! noise, in generated clips) on a small backbone and on the CQT baseline, the model file
//! carries the head, `mert tag` reports it in the JSON contract, and the embedded default
//! tagger runs on the committed example clip.

use std::path::Path;

#[path = "common/mert_cli.rs"]
mod mert_cli;
use mert_cli::{fixture, mert, mert_piped, ok, write_wav};

/// Clips alternating between a pure tone (random pitch) and white noise, with their CSVs.
fn dataset(dir: &Path) {
    let mut state = 12345u64;
    let mut rand = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64) / (1u64 << 31) as f64
    };
    for (split, n) in [("train", 24), ("valid", 8), ("test", 8)] {
        let mut rows = String::new();
        for k in 0..n {
            let tone = k % 2 == 0;
            let f = 200.0 + 600.0 * rand();
            let clip: Vec<f32> = (0..24_000)
                .map(|i| {
                    if tone {
                        (0.3 * (std::f64::consts::TAU * f * i as f64 / 24_000.0).sin()) as f32
                    } else {
                        (0.3 * (2.0 * rand() - 1.0)) as f32
                    }
                })
                .collect();
            let name = format!("{split}{k}.wav");
            write_wav(&dir.join(&name), 24_000, &clip);
            rows += &format!("{name},{}\n", if tone { "tone" } else { "noise" });
        }
        std::fs::write(dir.join(format!("{split}.csv")), rows).unwrap();
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn probe_learns_and_tag_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    dataset(d);
    let s = |p: &str| d.join(p).display().to_string();
    let model = fixture("mert_tiny").display().to_string();
    // `mert probe` on the split in `d`, 40 epochs, quiet; `head` picks the features and layer.
    let probe = |head: &[&str], out: &str| {
        let (train, valid, test, out) = (s("train.csv"), s("valid.csv"), s("test.csv"), s(out));
        let mut args = vec!["probe"];
        args.extend_from_slice(head);
        args.extend_from_slice(&["--train", &train, "--valid", &valid, "--test", &test]);
        args.extend_from_slice(&["--out", &out, "--epochs", "40", "--quiet"]);
        json(&ok(&args))
    };
    let report = probe(&["--model", &model], "tagger.safetensors");
    let auc = report["test"]["roc_auc"].as_f64().unwrap();
    assert!(
        auc >= 0.9,
        "tone vs noise on the tiny backbone: ROC-AUC {auc}"
    );
    assert_eq!(report["tags"], serde_json::json!(["noise", "tone"]));
    // Through a feature cache: the same figures; entries damaged to NaN are recomputed.
    let cache = s("cache");
    let cached = probe(
        &["--model", &model, "--cache", &cache],
        "cached.safetensors",
    );
    assert_eq!(cached["test"], report["test"]);
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!entries.is_empty());
    for e in &entries {
        let n = std::fs::metadata(e).unwrap().len() as usize / 4;
        std::fs::write(e, f32::NAN.to_le_bytes().repeat(n)).unwrap();
    }
    let redone = probe(
        &["--model", &model, "--cache", &cache],
        "cached.safetensors",
    );
    assert_eq!(redone["test"], report["test"]);
    let first = std::fs::read(&entries[0]).unwrap();
    assert!(
        first
            .chunks_exact(4)
            .all(|c| f32::from_le_bytes(c.try_into().unwrap()).is_finite())
    );
    // The CQT baseline needs no model and learns it too.
    let cqt = probe(&["--features", "cqt"], "cqt.safetensors");
    assert!(cqt["test"]["roc_auc"].as_f64().unwrap() >= 0.9, "{cqt}");
    // ... and its head alone is no model to tag with: the error says so
    let head_only = mert(&["tag", &s("test0.wav"), "--model", &s("cqt.safetensors")]);
    let err = String::from_utf8_lossy(&head_only.stderr);
    assert_eq!(head_only.status.code(), Some(1), "{err}");
    assert!(
        err.contains("head alone") && err.contains("cqt.safetensors"),
        "{err}"
    );

    // Tagging a tone with the trained head: "tone" ranks first; the JSON contract holds.
    let out = json(&ok(&[
        "tag",
        &s("test0.wav"),
        "--model",
        &s("tagger.safetensors"),
        "--json",
        "--timeline",
        "0.5",
    ]));
    assert_eq!(out["file"], s("test0.wav"));
    assert_eq!(out["tags"][0]["tag"], "tone", "{out}");
    let timeline = out["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 2, "{out}");
    assert_eq!(timeline[0]["start"], 0.0);
    let p = timeline[1]["tags"]["noise"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    // Every hidden state side by side (`--layer concat`): the head's input is states * dim
    // wide, and the file it writes tags as well.
    let concat = probe(
        &["--model", &model, "--layer", "concat"],
        "concat.safetensors",
    );
    assert_eq!(concat["layer"], "concat");
    assert!(
        concat["test"]["roc_auc"].as_f64().unwrap() >= 0.9,
        "{concat}"
    );
    let out = json(&ok(&[
        "tag",
        &s("test0.wav"),
        "--model",
        &s("concat.safetensors"),
        "--json",
    ]));
    assert_eq!(out["tags"][0]["tag"], "tone", "{out}");
    let bad = mert(&[
        "probe",
        "--model",
        &model,
        "--layer",
        "sum",
        "--train",
        &s("train.csv"),
        "--valid",
        &s("valid.csv"),
        "--out",
        &s("x.safetensors"),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--layer sum"));
    // Undefined and diverged runs: a test split where every clip has the same tags reports a
    // null macro figure; a validation split like that, or a loss gone non-finite, is refused
    // and writes nothing.
    std::fs::write(d.join("same.csv"), "test0.wav,tone\ntest2.wav,tone\n").unwrap();
    let (train, valid, same) = (s("train.csv"), s("valid.csv"), s("same.csv"));
    let head = |valid: &str, test: &str, lr: &str, out: &str| {
        mert(&[
            "probe",
            "--features",
            "cqt",
            "--train",
            &train,
            "--valid",
            valid,
            "--test",
            test,
            "--lr",
            lr,
            "--epochs",
            "3",
            "--quiet",
            "--out",
            out,
        ])
    };
    let null = head(&valid, &same, "1e-3", &s("n.safetensors"));
    assert!(null.status.success());
    let null = json(&String::from_utf8_lossy(&null.stdout));
    assert!(
        null["roc_auc"].is_null() && null["test"]["pr_auc"].is_null(),
        "{null}"
    );
    for (valid, lr, needle) in [(&same, "1e-3", "--valid"), (&valid, "1e30", "not finite")] {
        let out = s("refused.safetensors");
        let run = head(valid, &same, lr, &out);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{err}");
        assert!(
            err.contains(needle) && err.trim_end().lines().count() == 1,
            "{err}"
        );
        assert!(!Path::new(&out).exists());
    }
    // A model without a head is refused in one line.
    let no_head = mert(&["tag", &s("test0.wav"), "--model", &model]);
    assert_eq!(no_head.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_head.stderr).contains("no tagging head"));
}

#[test]
fn embedded_default_tags_the_example_clip() {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/audio/phrase.wav");
    let out = json(&ok(&[
        "tag",
        clip.to_str().unwrap(),
        "--json",
        "--top",
        "3",
    ]));
    let tags = out["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 3, "{out}");
    let mut last = f64::INFINITY;
    for t in tags {
        let p = t["p"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p) && p <= last, "{out}");
        last = p;
    }
    assert!(out["model"].as_str().unwrap().contains("embedded"));
    // The same clip through a pipe (`-` is standard input) gives the same tags.
    let bytes = std::fs::read(&clip).unwrap();
    let piped = mert_piped(&["tag", "-", "--json", "--top", "3"], bytes);
    assert!(piped.status.success());
    let piped = json(&String::from_utf8_lossy(&piped.stdout));
    assert_eq!(piped["file"], "-");
    assert_eq!(piped["tags"], out["tags"]);
    // `- < file` read from where standard input stands: another clip, then this one
    let tmp = tempfile::tempdir().unwrap();
    let first = std::fs::read(fixture("mert_tiny").join("input0.wav")).unwrap();
    let two = tmp.path().join("two.bin");
    std::fs::write(
        &two,
        [first.clone(), std::fs::read(&clip).unwrap()].concat(),
    )
    .unwrap();
    let mut stdin = std::fs::File::open(&two).unwrap();
    std::io::Seek::seek(&mut stdin, std::io::SeekFrom::Start(first.len() as u64)).unwrap();
    let rest = std::process::Command::new(env!("CARGO_BIN_EXE_mert"))
        .args(["tag", "-", "--json", "--top", "3"])
        .stdin(stdin)
        .output()
        .unwrap();
    assert!(rest.status.success());
    assert_eq!(
        json(&String::from_utf8_lossy(&rest.stdout))["tags"],
        out["tags"]
    );
}
