//! End-to-end tests of the `mert` binary: embeddings equal to the reference through the whole
//! CLI path (WAV decode, normalisation, model, .npy), conversion, backends, and clean errors.

use std::path::Path;

use mert_core::load::tensors::{HostTensor, read_safetensors};

#[path = "common/mert_cli.rs"]
mod mert_cli;
use mert_cli::{fixture, mert, ok, write_wav};

/// Exit code 1 and one line on stderr containing every `needles` entry.
fn fails_with(args: &[&str], needles: &[&str]) {
    let out = mert(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "mert {args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "mert {args:?}: `{n}` not in: {err}");
    }
}

/// Read a float32 C-order .npy.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_txt
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data = b[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, data)
}

fn reference(dir: &Path) -> mert_core::load::TensorMap {
    let p = dir.join("reference.safetensors");
    read_safetensors(&std::fs::read(&p).unwrap(), "reference")
        .unwrap()
        .0
}

/// Row 0 of a `[2, frames, dim]` reference tensor.
fn row0(t: &HostTensor) -> Vec<f32> {
    let n = t.shape[1] * t.shape[2];
    t.data[..n].to_vec()
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs() as f64).fold(0.0, f64::max);
    diff / scale
}

#[test]
fn embed_wav_matches_reference_hidden_states() {
    for name in ["mert_tiny", "mert_tiny_preln"] {
        let dir = fixture(name);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("e.npy");
        let (wav, m, o) = (
            dir.join("input0.wav"),
            dir.to_str().unwrap(),
            out.to_str().unwrap(),
        );
        ok(&[
            "embed",
            wav.to_str().unwrap(),
            "--model",
            m,
            "--out",
            o,
            "--window",
            "0",
        ]);
        let (shape, data) = read_npy(&out);
        let refs = reference(&dir);
        let frames = refs.get("hidden_states.0").unwrap().shape[1];
        assert_eq!(shape, vec![3, frames, 64]);
        let per = frames * 64;
        for l in 0..3 {
            let e = rel_err(
                &data[l * per..(l + 1) * per],
                &row0(refs.get(&format!("hidden_states.{l}")).unwrap()),
            );
            assert!(e <= 1e-4, "{name} layer {l}: rel err {e:e}");
        }
    }
}

#[test]
fn convert_then_embed_gives_bit_identical_output_and_layer_options_shape_it() {
    let dir = fixture("mert_tiny");
    let tmp = tempfile::tempdir().unwrap();
    let kit = tmp.path().join("tiny.safetensors");
    ok(&[
        "convert",
        dir.to_str().unwrap(),
        "--out",
        kit.to_str().unwrap(),
        "--license",
        "test-only",
    ]);
    let wav = dir.join("input0_16k_pcm16.wav"); // 44.1 kHz stereo PCM16: resampled and downmixed
    let wav = wav.to_str().unwrap();
    let a = tmp.path().join("a.npy");
    let b = tmp.path().join("b.npy");
    ok(&[
        "embed",
        wav,
        "--model",
        dir.to_str().unwrap(),
        "--out",
        a.to_str().unwrap(),
    ]);
    ok(&[
        "embed",
        wav,
        "--model",
        kit.to_str().unwrap(),
        "--out",
        b.to_str().unwrap(),
    ]);
    let (sa, da) = read_npy(&a);
    let (sb, db) = read_npy(&b);
    assert_eq!(sa, vec![3, 149, 64]);
    assert_eq!((sa, da), (sb, db));

    let c = tmp.path().join("c.safetensors");
    ok(&[
        "embed",
        wav,
        "--model",
        kit.to_str().unwrap(),
        "--out",
        c.to_str().unwrap(),
        "--layers",
        "last",
        "--pool",
        "mean",
    ]);
    let (t, meta) = read_safetensors(&std::fs::read(&c).unwrap(), "c").unwrap();
    assert_eq!(t.get("hidden_states").unwrap().shape, vec![64]);
    assert!(meta.contains_key("mert.model"));
    let d = tmp.path().join("d.npy");
    ok(&[
        "embed",
        wav,
        "--model",
        kit.to_str().unwrap(),
        "--out",
        d.to_str().unwrap(),
        "--layers",
        "0,2",
    ]);
    assert_eq!(read_npy(&d).0, vec![2, 149, 64]);
}

#[test]
fn windowed_embedding_keeps_the_whole_clip_frame_count() {
    let dir = fixture("mert_tiny");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("w.npy");
    let wav = dir.join("input0.wav");
    let args = [
        "embed",
        wav.to_str().unwrap(),
        "--model",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let extra = [
        "--window", "0.5", "--hop", "0.25", "--layers", "last", "--json",
    ];
    let run = mert(&[&args[..], &extra[..]].concat());
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(read_npy(&out).0, vec![149, 64]);
    let summary: serde_json::Value =
        serde_json::from_slice(&run.stdout).expect("--json prints JSON");
    assert_eq!(summary["frames"], 149);
    assert_eq!(summary["seconds_audio"], 2.0);
    assert_eq!(summary["failed"], 0);
}

#[test]
fn wgpu_backend_agrees_with_cpu() {
    let dir = fixture("mert_tiny_preln");
    let tmp = tempfile::tempdir().unwrap();
    let wav = dir.join("input0.wav");
    let mut outs = Vec::new();
    for backend in ["cpu", "wgpu"] {
        let out = tmp.path().join(format!("{backend}.npy"));
        ok(&[
            "embed",
            wav.to_str().unwrap(),
            "--model",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--window",
            "0",
            "--backend",
            backend,
        ]);
        outs.push(read_npy(&out));
    }
    assert_eq!(outs[0].0, outs[1].0);
    let e = rel_err(&outs[1].1, &outs[0].1);
    assert!(e <= 1e-4, "wgpu vs cpu rel err {e:e}");
}

#[test]
fn bad_inputs_fail_with_one_line_naming_the_culprit() {
    let dir = fixture("mert_tiny");
    let m = dir.to_str().unwrap();
    let wav = dir.join("input0.wav");
    let wav = wav.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.npy");
    let o = out.to_str().unwrap();

    fails_with(
        &["embed", "/no/such.wav", "--model", m, "--out", o],
        &["/no/such.wav"],
    );
    fails_with(
        &["embed", wav, "--model", "/no/model", "--out", o],
        &["/no/model"],
    );
    fails_with(
        &["embed", wav, "--model", m, "--out", "/tmp/x.txt"],
        &["x.txt", ".npy"],
    );
    fails_with(
        &["embed", wav, "--model", m, "--out", "/no/dir/o.npy"],
        &["/no/dir"],
    );
    // the output may not be the model file: it is left as it was
    let own = tempfile::tempdir().unwrap();
    let model_copy = own.path().join("m.safetensors");
    std::fs::copy(dir.join("model.safetensors"), &model_copy).unwrap();
    let before = std::fs::read(&model_copy).unwrap();
    fails_with(
        &[
            "embed",
            wav,
            "--model",
            model_copy.to_str().unwrap(),
            "--out",
            model_copy.to_str().unwrap(),
        ],
        &["m.safetensors", "input of this run"],
    );
    assert_eq!(std::fs::read(&model_copy).unwrap(), before);
    // a missing required argument: usage error (2), named on the one line
    let missing = mert(&["embed", wav, "--out", o]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{err}");
    assert!(
        err.trim_end().lines().count() == 1 && err.contains("--model"),
        "{err}"
    );
    fails_with(
        &["embed", wav, "--model", m, "--out", o, "--layers", "9"],
        &["--layers", "9"],
    );
    fails_with(
        &["embed", wav, "--model", m, "--out", o, "--layers", "x"],
        &["--layers"],
    );
    let junk = tmp.path().join("junk.wav");
    std::fs::write(&junk, b"RIFF\x00\x00\x00\x00WAVEjunkjunk").unwrap();
    fails_with(
        &["embed", junk.to_str().unwrap(), "--model", m, "--out", o],
        &["junk.wav"],
    );
    let no_config = tmp.path().join("noconfig");
    std::fs::create_dir(&no_config).unwrap();
    std::fs::copy(
        dir.join("model.safetensors"),
        no_config.join("model.safetensors"),
    )
    .unwrap();
    fails_with(
        &[
            "embed",
            wav,
            "--model",
            no_config.to_str().unwrap(),
            "--out",
            o,
        ],
        &["config.json"],
    );
    fails_with(
        &[
            "convert",
            fixture("malicious_bin").to_str().unwrap(),
            "--out",
            tmp.path().join("m.safetensors").to_str().unwrap(),
        ],
        &["pytorch_model.bin", "refused"],
    );
    assert!(!out.exists(), "a failed run left an output");

    // A failed convert leaves an existing output untouched.
    let kit = tmp.path().join("kit.safetensors");
    std::fs::write(&kit, b"previous").unwrap();
    fails_with(
        &[
            "convert",
            no_config.to_str().unwrap(),
            "--out",
            kit.to_str().unwrap(),
        ],
        &["config.json"],
    );
    assert_eq!(std::fs::read(&kit).unwrap(), b"previous");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        3,
        "temp files left behind"
    );
}

#[test]
fn folder_mode_reports_bad_files_goes_on_and_resumes() {
    let dir = fixture("mert_tiny");
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("music");
    std::fs::create_dir_all(music.join("album")).unwrap();
    std::fs::copy(dir.join("input0.wav"), music.join("a.wav")).unwrap();
    std::fs::copy(dir.join("input0_16k_pcm16.wav"), music.join("album/b.wav")).unwrap();
    std::fs::write(music.join("album/broken.wav"), b"RIFF....WAVEfmt garbage").unwrap();
    std::fs::write(music.join("notes.txt"), b"not audio").unwrap();
    let out = tmp.path().join("emb");
    std::fs::create_dir(&out).unwrap();
    let args = [
        "embed",
        music.to_str().unwrap(),
        "--model",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--layers",
        "last",
    ];
    let run = mert(&args);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("broken.wav") && err.contains("1 of 3 files failed"),
        "{err}"
    );
    assert_eq!(read_npy(&out.join("a.npy")).0, vec![149, 64]);
    assert_eq!(read_npy(&out.join("album/b.npy")).0, vec![149, 64]);
    assert!(!out.join("album/broken.npy").exists());
    // A rerun skips the finished outputs (their bytes stay as they were).
    let before = std::fs::metadata(out.join("a.npy"))
        .unwrap()
        .modified()
        .unwrap();
    let _ = mert(&args);
    assert_eq!(
        std::fs::metadata(out.join("a.npy"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    // `--format safetensors` names the folder's outputs; a single file's name must agree with it.
    let st = tmp.path().join("emb-st");
    let mut with_format = args.to_vec();
    with_format[5] = st.to_str().unwrap();
    with_format.extend(["--format", "safetensors"]);
    let _ = mert(&with_format);
    let bytes = std::fs::read(st.join("album/b.safetensors")).unwrap();
    let (file, _) = read_safetensors(&bytes, "b.safetensors").unwrap();
    assert_eq!(file.get("hidden_states").unwrap().shape, [149, 64]);
    assert!(!st.join("a.npy").exists());
    let one = music.join("a.wav");
    let npy = tmp.path().join("one.npy");
    fails_with(
        &[
            "embed",
            one.to_str().unwrap(),
            "--model",
            dir.to_str().unwrap(),
            "--out",
            npy.to_str().unwrap(),
            "--format",
            "safetensors",
        ],
        &["one.npy", "--format safetensors"],
    );
}

/// `--model m-a-p/NAME`: a Hugging Face model id loads from the local Hugging Face cache
/// (`$HF_HUB_CACHE/models--m-a-p--NAME/snapshots/<refs/main>/`, files linked to `blobs/` as
/// huggingface_hub lays them out); nothing is downloaded.
#[cfg(unix)]
#[test]
fn a_model_id_loads_from_the_local_hugging_face_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("hub/models--m-a-p--MERT-tiny");
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    for (i, name) in ["config.json", "model.safetensors"].iter().enumerate() {
        let blob = repo.join(format!("blobs/{i:040}"));
        std::fs::copy(fixture("mert_tiny").join(name), &blob).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{i:040}"), snapshot.join(name)).unwrap();
    }
    let input = fixture("mert_tiny").join("input0.wav");
    let run = |model: &str, out: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mert"))
            .args([
                "embed",
                input.to_str().unwrap(),
                "--model",
                model,
                "--out",
                out,
            ])
            .env("HF_HUB_CACHE", tmp.path().join("hub"))
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };
    let by_id = run("m-a-p/MERT-tiny", "by_id.npy");
    assert!(
        by_id.status.success(),
        "{}",
        String::from_utf8_lossy(&by_id.stderr)
    );
    let folder = fixture("mert_tiny");
    assert!(
        run(folder.to_str().unwrap(), "by_path.npy")
            .status
            .success()
    );
    assert_eq!(
        std::fs::read(tmp.path().join("by_id.npy")).unwrap(),
        std::fs::read(tmp.path().join("by_path.npy")).unwrap()
    );
    let refused = |model: &str, needles: &[&str]| {
        let out = run(model, "x.npy");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        for n in needles {
            assert!(err.contains(n), "`{n}` not in: {err}");
        }
    };
    refused(
        "m-a-p/MERT-v1-95M",
        &["models--m-a-p--MERT-v1-95M", "downloads nothing"],
    );
    // refs/main naming a snapshot that is not there: refused, not another snapshot loaded
    std::fs::write(repo.join("refs/main"), "fedcba98").unwrap();
    refused("m-a-p/MERT-tiny", &["refs/main", "fedcba98"]);
    std::fs::write(repo.join("refs/main"), "../../../elsewhere").unwrap();
    refused("m-a-p/MERT-tiny", &["not a revision name"]);
    // no refs/main: the only snapshot; two are ambiguous
    std::fs::remove_file(repo.join("refs/main")).unwrap();
    assert!(run("m-a-p/MERT-tiny", "only.npy").status.success());
    std::fs::create_dir_all(repo.join("snapshots/4567ef01")).unwrap();
    refused("m-a-p/MERT-tiny", &["2 snapshots", "0123abcd", "4567ef01"]);
    // a blob missing behind a snapshot's link: an incomplete download, named
    std::fs::remove_dir(repo.join("snapshots/4567ef01")).unwrap();
    std::fs::remove_file(repo.join(format!("blobs/{:040}", 1))).unwrap();
    refused(
        "m-a-p/MERT-tiny",
        &["model.safetensors", "incomplete download"],
    );
}

/// A file longer than one CQT block (4096 frames, 55 s) is labelled in a stream: the rows
/// written as they come equal the transform of the whole decoded clip.
#[test]
fn long_labels_are_streamed_and_equal_the_whole_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let (wav, out) = (
        tmp.path().join("long.wav"),
        tmp.path().join("long.safetensors"),
    );
    let n = 24_000 * 125 + 777;
    let samples: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f32 / 24_000.0;
            0.4 * (2.0 * std::f32::consts::PI * (110.0 + 3.0 * t) * t).sin()
        })
        .collect();
    write_wav(&wav, 24_000, &samples);
    ok(&[
        "labels",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let (t, meta) = read_safetensors(&std::fs::read(&out).unwrap(), "labels").unwrap();
    let decoded = mert_core::audio::decode_file(&wav).unwrap().samples;
    let model_frames = (n - 400) / 320 + 1;
    let mut want = mert_core::teachers::Cqt::mert()
        .magnitudes(&decoded, 2)
        .unwrap();
    want.truncate(model_frames * 336);
    let cqt = t.get("cqt").unwrap();
    assert_eq!(cqt.shape, vec![model_frames, 336]);
    assert_eq!(meta["mert.samples"], n.to_string());
    assert!(
        cqt.data == want,
        "streamed labels differ from the whole clip's"
    );
}

#[test]
fn labels_write_the_cqt_with_its_frame_alignment() {
    let dir = fixture("mert_tiny");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("l.safetensors");
    ok(&[
        "labels",
        dir.join("input0.wav").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    let (t, meta) = read_safetensors(&std::fs::read(&out).unwrap(), "labels").unwrap();
    let cqt = t.get("cqt").unwrap();
    // nnAudio gives 1 + 48000 / 320 = 151 frames; the model's 149 are kept
    assert_eq!(cqt.shape, vec![149, 336]);
    assert_eq!(meta["mert.model_frames"], "149");
    assert_eq!(meta["mert.cqt_frames"], "151");
    // input0.wav is row 0 of the CQT fixture's deterministic input: compare with nnAudio.
    let refs = read_safetensors(
        &std::fs::read(fixture("cqt/reference.safetensors")).unwrap(),
        "cqt",
    )
    .unwrap()
    .0;
    let want = refs.get("det.cqt").unwrap(); // [2, 336, 151]
    let (mut diff, mut peak) = (0f32, 0f32);
    for b in 0..336 {
        for t in 0..149 {
            let w = want.data[b * 151 + t];
            diff = diff.max((cqt.data[t * 336 + b] - w).abs());
            peak = peak.max(w);
        }
    }
    assert!(diff / peak <= 1e-4, "labels vs nnAudio: {}", diff / peak);
    fails_with(
        &["labels", "/no/such.wav", "--out", out.to_str().unwrap()],
        &["/no/such.wav"],
    );
    fails_with(
        &[
            "labels",
            dir.join("input0.wav").to_str().unwrap(),
            "--out",
            "/tmp/l.npy",
        ],
        &["l.npy", ".safetensors"],
    );
}

#[test]
fn labels_refuse_audio_shorter_than_one_model_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let short = fixture("audio/edge_short10ms_s16_44100_mono.wav");
    let out = tmp.path().join("s.safetensors");
    fails_with(
        &[
            "labels",
            short.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &["edge_short10ms", "too short"],
    );
    assert!(!out.exists());
}

#[test]
fn folder_of_200_files_with_3_bad_ones() {
    let dir = fixture("mert_tiny");
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("music");
    std::fs::create_dir(&music).unwrap();
    // 0.1 s clips keep the test quick.
    let clip = float_wav(2_400);
    for i in 0..197 {
        std::fs::write(music.join(format!("clip{i:03}.wav")), &clip).unwrap();
    }
    std::fs::write(music.join("bad_a.wav"), b"RIFF....WAVE").unwrap();
    std::fs::write(music.join("bad_b.flac"), b"fLaC\0\0\0garbage").unwrap();
    std::fs::copy(
        fixture("audio/bad_empty_s16_44100_mono.wav"),
        music.join("bad_c.wav"),
    )
    .unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let args = [
        "embed",
        music.to_str().unwrap(),
        "--model",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--layers",
        "last",
        "--quiet",
    ];
    let run = mert(&args);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 197);
    for bad in ["bad_a.wav", "bad_b.flac", "bad_c.wav"] {
        assert!(err.contains(bad), "{bad} not reported: {err}");
    }
    assert!(err.contains("3 of 200 files failed"), "{err}");
    // The rerun skips the 197 finished outputs and reports the same 3.
    let rerun = mert(&args);
    let err2 = String::from_utf8_lossy(&rerun.stderr);
    assert!(err2.contains("3 of 200 files failed"), "{err2}");
    assert_eq!(err2.lines().count(), 4, "{err2}");
}

/// A mono 24 kHz IEEE-float WAV of `frames` samples of a sine.
fn float_wav(frames: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..frames)
        .flat_map(|i| ((i as f32 * 0.07).sin() * 0.3).to_le_bytes())
        .collect();
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&24_000u32.to_le_bytes());
    w.extend_from_slice(&(24_000u32 * 4).to_le_bytes());
    w.extend_from_slice(&4u16.to_le_bytes());
    w.extend_from_slice(&32u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}

#[test]
fn usage_errors_are_one_line_too() {
    for args in [
        &["embed"][..],
        &["embed", "x.wav", "--model"][..],
        &["frobnicate"][..],
        &[
            "embed", "a.wav", "--model", "m", "--out", "o.npy", "--window", "abc",
        ][..],
    ] {
        let out = mert(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error:"), "{err}");
    }
    for help in [
        &["--help"][..],
        &["help"],
        &["help", "--help"],
        &["help", "embed"],
        &["help", "embed", "--help"],
    ] {
        let out = mert(help);
        assert!(out.status.success(), "{help:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{help:?}"
        );
    }
    let embed_help = mert(&["help", "embed", "--help"]);
    assert!(String::from_utf8_lossy(&embed_help.stdout).contains("--layers"));
}

#[test]
fn labels_with_codec_write_codes_aligned_with_the_model_frames() {
    // input0.wav is row 0 of the codec fixture's `det` input (2 s, 48 000 samples):
    // 150 codec frames, of which the model's 149 are kept.
    let wav = fixture("mert_tiny").join("input0.wav");
    let codec = fixture("codec/encodec.th");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("l.safetensors");
    ok(&[
        "labels",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--codec",
        codec.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let codes = st.tensor("codes").unwrap();
    assert_eq!(codes.dtype(), safetensors::Dtype::I64);
    assert_eq!(codes.shape(), &[149, 8]);
    assert_eq!(st.tensor("cqt").unwrap().shape(), &[149, 336]);
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["mert.model_frames"], "149");
    assert_eq!(meta["mert.codec_frames"], "150");
    assert!(
        meta["mert.codec"].contains("\"n_q\":8"),
        "{}",
        meta["mert.codec"]
    );
    let got: Vec<i64> = codes
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    // the reference codes `det.codes` (2, 8, 150) from encodec 0.1.1, row 0
    let refs = std::fs::read(fixture("codec/reference.safetensors")).unwrap();
    let refs = safetensors::SafeTensors::deserialize(&refs).unwrap();
    let want: Vec<i64> = refs
        .tensor("det.codes")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let mismatches = (0..149)
        .filter(|&t| (0..8).any(|q| got[t * 8 + q] != want[q * 150 + t]))
        .count();
    assert_eq!(mismatches, 0);

    fails_with(
        &[
            "labels",
            wav.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--codec",
            "/no/such/encodec.th",
        ],
        &["/no/such/encodec.th"],
    );
    fails_with(
        &[
            "labels",
            wav.to_str().unwrap(),
            "--out",
            tmp.path().join("m.safetensors").to_str().unwrap(),
            "--codec",
            fixture("malicious_bin/eval.bin").to_str().unwrap(),
        ],
        &["eval.bin", "refused"],
    );
    assert!(!tmp.path().join("m.safetensors").exists());
}

#[test]
fn init_convert_and_labels_print_json_summaries() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &str| tmp.path().join(p).display().to_string();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = mert(args);
        assert!(out.status.success(), "{args:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let init = json(&[
        "init",
        "--preset",
        "tiny",
        "--out",
        &s("i.safetensors"),
        "--json",
    ]);
    let bytes = std::fs::metadata(s("i.safetensors")).unwrap().len();
    assert_eq!(init["bytes"].as_u64(), Some(bytes));
    assert_eq!(init["seed"], 0);
    let dir = fixture("mert_tiny");
    let convert = json(&[
        "convert",
        dir.to_str().unwrap(),
        "--out",
        &s("c.safetensors"),
        "--json",
    ]);
    assert_eq!(convert["out"], s("c.safetensors"));
    assert!(convert["source"].as_str().unwrap().contains("mert_tiny"));
    let wav = dir.join("input0.wav");
    let labels = json(&[
        "labels",
        wav.to_str().unwrap(),
        "--out",
        &s("l.safetensors"),
        "--json",
    ]);
    assert_eq!(labels["files"], 1);
    assert_eq!(labels["written"][0], s("l.safetensors"));
    assert_eq!(labels["failed"], 0);
}

/// A fairseq checkpoint converts to the same kit model as the Hugging Face folder of the same
/// weights; its pretraining-only tensors are listed in the summary.
#[test]
fn fairseq_checkpoint_converts_like_its_hugging_face_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &str| tmp.path().join(p).display().to_string();
    let dir = fixture("mert_tiny_preln");
    let pt = dir.join("checkpoint_fairseq.pt");
    let out = mert(&[
        "convert",
        pt.to_str().unwrap(),
        "--out",
        &s("fs.safetensors"),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped: Vec<&str> = summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(skipped.contains(&"label_embs_concat"), "{skipped:?}");
    assert!(
        skipped.contains(&"encoder_cqt_model.fc.weight"),
        "{skipped:?}"
    );
    ok(&[
        "convert",
        dir.to_str().unwrap(),
        "--out",
        &s("hf.safetensors"),
    ]);
    let wav = dir.join("input0.wav");
    for name in ["fs", "hf"] {
        ok(&[
            "embed",
            wav.to_str().unwrap(),
            "--model",
            &s(&format!("{name}.safetensors")),
            "--out",
            &s(&format!("{name}.npy")),
        ]);
    }
    assert_eq!(
        std::fs::read(s("fs.npy")).unwrap(),
        std::fs::read(s("hf.npy")).unwrap()
    );
}

/// Opus files (Ogg, WebM) tag like any other audio.
#[test]
fn opus_files_tag() {
    for name in [
        "opus_48000_stereo.opus",
        "opus_48000_stereo.webm",
        "opus_22050_6ch.opus",
    ] {
        let path = fixture("audio").join(name);
        let out = ok(&["tag", path.to_str().unwrap(), "--json", "--top", "100"]);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let tags = json["tags"].as_array().unwrap();
        assert_eq!(tags.len(), 15, "{name}");
        assert!(
            tags.iter()
                .all(|t| t["p"].as_f64().is_some_and(|p| (0.0..=1.0).contains(&p)))
        );
    }
}

/// Temp files that killed runs left in an output folder (their process gone) are removed by
/// the next run writing there; a live process's temp file is left alone.
#[test]
fn stale_temp_files_of_killed_runs_are_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let stale = tmp.path().join(format!(".x.npy.mert-{host}-999999999.tmp"));
    let live = tmp
        .path()
        .join(format!(".y.npy.mert-{host}-{}.tmp", std::process::id()));
    let elsewhere = tmp.path().join(".z.npy.mert-otherhost-999999999.tmp");
    let backup = tmp.path().join(".backup.20240101.tmp");
    let other = tmp.path().join(".notes.tmp");
    for f in [&stale, &live, &elsewhere, &backup, &other] {
        std::fs::write(f, b"partial").unwrap();
    }
    let wav = fixture("mert_tiny/input0.wav");
    let out = tmp.path().join("o.npy");
    ok(&[
        "embed",
        wav.to_str().unwrap(),
        "--model",
        fixture("mert_tiny").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(out.exists());
    assert!(!stale.exists(), "the dead run's temp file stays");
    // a live run's, another machine's and files the kit did not write stay
    for f in [&live, &elsewhere, &backup, &other] {
        assert!(f.exists(), "{}", f.display());
    }
}
