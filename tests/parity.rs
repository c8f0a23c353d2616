//! Parity with the reference (`transformers` `HubertModel`, eager attention) on the committed
//! tiny fixtures written by `tests/reference/gen_mert.py`, plus the loaders' guarantees.
//! Tolerance: max|a-b| / max|b| <= 1e-4 per hidden state, f32.
//!
//! The real 95M / 330M shapes: generate with `gen_mert.py --preset 95m --out DIR` and run
//! `MERT_FIXTURE_DIRS=DIR cargo test --release -p mert-core --test parity -- --ignored`.

use std::path::{Path, PathBuf};

use mert_core::burn::tensor::{Device, Tensor, TensorData};
use mert_core::load::tensors::{HostTensor, TensorMap, read_safetensors};
use mert_core::load::{Checkpoint, kit};
use mert_core::{MertError, load_path};

const TOL: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn reference(dir: &Path) -> TensorMap {
    let path = dir.join("reference.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    read_safetensors(&bytes, &path.display().to_string())
        .unwrap()
        .0
}

fn to_tensor<const D: usize>(t: &HostTensor, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

fn host<const D: usize>(t: Tensor<D>) -> HostTensor {
    let shape = t.dims().to_vec();
    HostTensor::new(shape, t.into_data().try_into_vec::<f32>().unwrap())
}

/// max|a-b| / max|b|, over frames `[0, frames)` of every row when `valid` is given.
fn rel_err(a: &HostTensor, b: &HostTensor, valid: Option<&[usize]>) -> f64 {
    assert_eq!(a.shape, b.shape);
    let (rows, t, d) = (a.shape[0], a.shape[1], a.shape[2]);
    let (mut diff, mut scale) = (0f64, 0f64);
    for r in 0..rows {
        let keep = valid.map_or(t, |v| v[r]);
        for i in r * t * d..(r * t + keep) * d {
            diff = diff.max((a.data[i] as f64 - b.data[i] as f64).abs());
            scale = scale.max((b.data[i] as f64).abs());
        }
    }
    diff / scale
}

fn fmt_errs(errs: &[f64]) -> String {
    errs.iter()
        .map(|e| format!("{e:.2e}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run the model on the fixture input and compare every hidden state; returns the errors.
fn check_hidden_states(dir: &Path, checkpoint: &Checkpoint) -> Vec<f64> {
    let device = Device::flex();
    let refs = reference(dir);
    let model = checkpoint.build(&device).unwrap();
    let input = to_tensor::<2>(refs.get("input").unwrap(), &device);
    let out = model.forward(input);
    let n = checkpoint.config.num_hidden_states();
    assert_eq!(out.hidden_states.len(), n);
    let e = rel_err(
        &host(out.extract_features),
        refs.get("extract_features").unwrap(),
        None,
    );
    assert!(
        e <= TOL,
        "{}: extract_features rel err {e:e}",
        dir.display()
    );
    let mut errs = Vec::new();
    for (i, h) in out.hidden_states.into_iter().enumerate() {
        let want = refs
            .get(&format!("hidden_states.{i}"))
            .unwrap_or_else(|| panic!("reference lacks hidden_states.{i}"));
        let e = rel_err(&host(h), want, None);
        assert!(
            e <= TOL,
            "{}: hidden_states[{i}] rel err {e:e} > {TOL:e}",
            dir.display()
        );
        errs.push(e);
    }
    errs
}

#[test]
fn tiny_post_ln_matches_reference_on_every_layer() {
    let dir = fixture("mert_tiny");
    let errs = check_hidden_states(&dir, &load_path(&dir).unwrap());
    eprintln!("tiny post-LN per-layer rel err: {}", fmt_errs(&errs));
}

#[test]
fn tiny_pre_ln_matches_reference_on_every_layer() {
    let dir = fixture("mert_tiny_preln");
    let checkpoint = load_path(&dir).unwrap();
    assert!(checkpoint.config.do_stable_layer_norm);
    let errs = check_hidden_states(&dir, &checkpoint);
    eprintln!("tiny pre-LN per-layer rel err: {}", fmt_errs(&errs));
}

#[test]
fn tiny_layer_norm_feature_encoder_matches_reference() {
    let dir = fixture("mert_tiny_layer");
    let checkpoint = load_path(&dir).unwrap();
    assert!(checkpoint.config.conv_bias);
    check_hidden_states(&dir, &checkpoint);
}

#[test]
fn padded_batch_matches_reference_on_valid_frames() {
    let dir = fixture("mert_tiny");
    let device = Device::flex();
    let refs = reference(&dir);
    let model = load_path(&dir).unwrap().build(&device).unwrap();
    let mask = refs.get("masked.attention_mask").unwrap();
    let len = mask.shape[1];
    let lengths: Vec<usize> = mask
        .data
        .chunks(len)
        .map(|row| row.iter().filter(|&&m| m > 0.5).count())
        .collect();
    assert!(lengths[1] < lengths[0], "fixture row 1 is the padded one");
    let input = to_tensor::<2>(refs.get("masked.input").unwrap(), &device);
    let out = model.forward_masked(input, Some(&lengths));
    let valid: Vec<usize> = lengths.iter().map(|&l| model.frames_for(l)).collect();
    for (i, h) in out.hidden_states.into_iter().enumerate() {
        let e = rel_err(
            &host(h),
            refs.get(&format!("masked.hidden_states.{i}")).unwrap(),
            Some(&valid),
        );
        assert!(e <= TOL, "masked hidden_states[{i}] rel err {e:e}");
    }
}

#[test]
fn pytorch_bin_in_both_weight_norm_spellings_loads_the_same_tensors() {
    let st = load_path(&fixture("mert_tiny")).unwrap();
    let legacy = load_path(&fixture("mert_tiny/pytorch_model.bin")).unwrap();
    let param = load_path(&fixture("mert_tiny_param")).unwrap();
    assert_eq!(st.tensors.tensors, legacy.tensors.tensors);
    assert_eq!(
        st.tensors.tensors.keys().collect::<Vec<_>>(),
        param.tensors.tensors.keys().collect::<Vec<_>>()
    );
    for (k, t) in &st.tensors.tensors {
        let p = &param.tensors.tensors[k];
        let max = t
            .data
            .iter()
            .zip(&p.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max <= 1e-6, "{k}: {max}");
    }
    // masked_spec_embed is not a weight of the model, but is kept for further pretraining
    assert!(st.skipped.is_empty(), "{:?}", st.skipped);
    for c in [&st, &legacy, &param] {
        let m = c.mask_embedding.as_ref().expect("masked_spec_embed kept");
        assert_eq!(m.shape, vec![st.config.hidden_size]);
        assert_eq!(m.data, st.mask_embedding.as_ref().unwrap().data);
    }
}

/// fairseq training checkpoints (tests/reference/gen_fairseq.py: the same weights under
/// fairseq's module names, beside `cfg`, optimizer state and numpy scalars) load with the
/// shape from `cfg` and give the reference hidden states.
#[test]
fn fairseq_checkpoints_match_reference_on_every_layer() {
    for name in ["mert_tiny", "mert_tiny_preln", "mert_tiny_layer"] {
        let dir = fixture(name);
        let hf = load_path(&dir).unwrap();
        let fs = load_path(&dir.join("checkpoint_fairseq.pt")).unwrap();
        let (a, b) = (&hf.config, &fs.config);
        assert_eq!(
            (a.hidden_size, a.num_hidden_layers, a.num_attention_heads),
            (b.hidden_size, b.num_hidden_layers, b.num_attention_heads),
            "{name}"
        );
        assert_eq!(
            (&a.conv_dim, &a.conv_kernel, &a.conv_stride, a.conv_bias),
            (&b.conv_dim, &b.conv_kernel, &b.conv_stride, b.conv_bias),
            "{name}"
        );
        assert_eq!(a.feat_extract_norm, b.feat_extract_norm, "{name}");
        assert_eq!(a.do_stable_layer_norm, b.do_stable_layer_norm, "{name}");
        assert_eq!(a.sample_rate, b.sample_rate, "{name}");
        assert_eq!(hf.tensors.tensors, fs.tensors.tensors, "{name}");
        assert_eq!(
            hf.mask_embedding.as_ref().unwrap().data,
            fs.mask_embedding.as_ref().unwrap().data
        );
        // pretraining heads and the CQT teacher's buffers are listed, not loaded
        for k in [
            "encoder_cqt_model.fc.weight",
            "encoder_cqt_model.spec_layer.cqt_kernels_real",
            "final_proj.weight",
            "label_embs_concat",
        ] {
            assert!(
                fs.skipped.iter().any(|s| s == k),
                "{name}: {k} in {:?}",
                fs.skipped
            );
        }
        let errs = check_hidden_states(&dir, &fs);
        eprintln!("{name} (fairseq) per-layer rel err: {}", fmt_errs(&errs));
    }
}

/// Sharded folders as `save_pretrained(max_shard_size=...)` writes them
/// (`tests/reference/gen_sharded.py`): the same tensors as the one-file folder, from the
/// folder or from the index given directly.
#[test]
fn sharded_checkpoints_load_the_same_tensors() {
    let dir = fixture("mert_tiny");
    let whole = load_path(&dir).unwrap();
    let sharded = fixture("mert_tiny_sharded");
    for (folder, index) in [
        ("safetensors", "model.safetensors.index.json"),
        ("bin", "pytorch_model.bin.index.json"),
    ] {
        for path in [sharded.join(folder), sharded.join(folder).join(index)] {
            let c = load_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                c.tensors.tensors,
                whole.tensors.tensors,
                "{}",
                path.display()
            );
            assert_eq!(
                c.mask_embedding.as_ref().map(|t| &t.data),
                whole.mask_embedding.as_ref().map(|t| &t.data)
            );
        }
    }
    let errs = check_hidden_states(&dir, &load_path(&sharded.join("safetensors")).unwrap());
    eprintln!("mert_tiny (sharded) per-layer rel err: {}", fmt_errs(&errs));

    // A broken index is named with what is wrong.
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(sharded.join("safetensors")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let index_path = tmp.path().join("model.safetensors.index.json");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let refused = |edit: &dyn Fn(&mut serde_json::Value), needles: &[&str]| {
        let mut bad = index.clone();
        edit(&mut bad);
        std::fs::write(&index_path, bad.to_string()).unwrap();
        let e = load_path(tmp.path()).unwrap_err().to_string();
        for n in needles {
            assert!(e.contains(n), "`{n}` not in: {e}");
        }
    };
    let map = |v: &mut serde_json::Value, key: &str, shard: &str| {
        v["weight_map"][key] = serde_json::json!(shard);
    };
    refused(
        &|v| map(v, "encoder.layer_norm.bias", "../model.safetensors"),
        &["encoder.layer_norm.bias", "not a file name"],
    );
    refused(
        &|v| {
            map(
                v,
                "encoder.layer_norm.bias",
                "model-00009-of-00009.safetensors",
            )
        },
        &["model-00009-of-00009.safetensors"],
    );
    refused(
        &|v| {
            map(
                v,
                "encoder.layer_norm.bias",
                "model-00003-of-00003.safetensors",
            )
        },
        &[
            "model-00003-of-00003.safetensors",
            "encoder.layer_norm.bias",
            "places there",
        ],
    );
    refused(
        &|v| *v = serde_json::json!({"metadata": {}}),
        &["weight_map"],
    );
    // As in transformers, a listed shard's tensors load whole, even one the index forgets.
    let mut forgetful = index.clone();
    forgetful["weight_map"]
        .as_object_mut()
        .unwrap()
        .remove("encoder.layer_norm.bias");
    std::fs::write(&index_path, forgetful.to_string()).unwrap();
    assert_eq!(
        load_path(tmp.path()).unwrap().tensors.tensors,
        whole.tensors.tensors
    );
}

#[test]
fn bad_fairseq_checkpoints_are_refused_by_name() {
    let marker = Path::new("/tmp/mert_pwned");
    let _ = std::fs::remove_file(marker);
    for (file, wants) in [
        ("args_only.pt", &["args_only.pt", "without a `cfg`"][..]),
        ("conformer.pt", &["cfg.model.layer_type", "conformer"][..]),
        (
            "unknown_key.pt",
            &["target_glu.0.weight", "not a tensor"][..],
        ),
        ("payload_model.pt", &["system", "refused"][..]),
        ("payload_extra.pt", &["system", "refused"][..]),
        ("payload_nested.pt", &["system", "refused"][..]),
        ("payload_state.pt", &["system", "refused"][..]),
    ] {
        let err = load_path(&fixture("fairseq_bad").join(file)).unwrap_err();
        let msg = err.to_string();
        for want in wants {
            assert!(msg.contains(want), "{file}: {msg}");
        }
        assert!(!msg.contains('\n'), "{file}: {msg}");
        if file.starts_with("payload") {
            assert!(
                matches!(err, MertError::UnsafePickle { .. }),
                "{file}: {err}"
            );
        }
    }
    assert!(!marker.exists(), "the payload ran");
}

#[test]
fn kit_file_round_trip_is_bit_identical() {
    let dir = fixture("mert_tiny_preln");
    let device = Device::flex();
    let source = load_path(&dir).unwrap();
    let bytes = kit::to_bytes(&source).unwrap();
    let back = kit::from_bytes(&bytes, "roundtrip.safetensors").unwrap();
    assert_eq!(back.config, source.config);
    assert_eq!(back.tensors.tensors, source.tensors.tensors);
    assert!(source.mask_embedding.is_some());
    assert_eq!(back.mask_embedding, source.mask_embedding);
    let refs = reference(&dir);
    let input = to_tensor::<2>(refs.get("input").unwrap(), &device);
    let a = source.build(&device).unwrap().forward(input.clone());
    let b = back.build(&device).unwrap().forward(input);
    for (x, y) in a.hidden_states.into_iter().zip(b.hidden_states) {
        assert_eq!(host(x).data, host(y).data);
    }
}

#[test]
fn malicious_pickles_are_refused_and_never_run() {
    let marker = Path::new("/tmp/mert_pwned");
    let _ = std::fs::remove_file(marker);
    for file in ["pytorch_model.bin", "eval.bin"] {
        let path = fixture("malicious_bin").join(file);
        let err = load_path(&path).unwrap_err();
        assert!(
            matches!(err, MertError::UnsafePickle { .. }),
            "{file}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(file) && msg.contains("refused"), "{msg}");
        assert!(msg.contains("system") || msg.contains("eval"), "{msg}");
    }
    assert!(!marker.exists(), "the payload ran");
}

#[test]
fn missing_extra_and_misshapen_tensors_are_named() {
    let source = load_path(&fixture("mert_tiny")).unwrap();
    let key = "encoder.layers.1.attention.k_proj.weight";

    let mut t = source.tensors.clone();
    t.remove(key);
    let e = Checkpoint::from_reference(source.config.clone(), t)
        .unwrap_err()
        .to_string();
    assert!(e.contains(key) && e.contains("missing"), "{e}");

    let mut t = source.tensors.clone();
    t.insert(key, HostTensor::new(vec![64, 32], vec![0.0; 64 * 32]));
    let e = Checkpoint::from_reference(source.config.clone(), t)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(key) && e.contains("[64, 64]") && e.contains("[64, 32]"),
        "{e}"
    );

    let mut t = source.tensors.clone();
    let mut nan = t.get(key).unwrap().clone();
    nan.data[5] = f32::NAN;
    t.insert(key, nan);
    let e = Checkpoint::from_reference(source.config.clone(), t)
        .unwrap_err()
        .to_string();
    assert!(e.contains(key) && e.contains("NaN"), "{e}");

    let mut t = source.tensors.clone();
    t.insert(
        "encoder.layers.7.extra.weight",
        HostTensor::new(vec![1], vec![0.0]),
    );
    let e = Checkpoint::from_reference(source.config.clone(), t)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("encoder.layers.7.extra.weight") && e.contains("unexpected"),
        "{e}"
    );

    let mut config = source.config.clone();
    config.num_hidden_layers = 3;
    let e = Checkpoint::from_reference(config, source.tensors.clone())
        .unwrap_err()
        .to_string();
    assert!(e.contains("encoder.layers.2."), "{e}");
}

/// The real model shapes, generated on demand (see the module doc).
#[test]
#[ignore = "needs MERT_FIXTURE_DIRS pointing at gen_mert.py --preset 95m/330m outputs"]
fn real_shapes_match_reference_on_every_layer() {
    let dirs = std::env::var("MERT_FIXTURE_DIRS").expect("set MERT_FIXTURE_DIRS=dir1:dir2");
    for dir in dirs.split(':').filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        for weights in ["model.safetensors", "pytorch_model.bin"] {
            let checkpoint = load_path(&dir.join(weights)).unwrap();
            let errs = check_hidden_states(&dir, &checkpoint);
            let max = errs.iter().cloned().fold(0f64, f64::max);
            println!(
                "{} ({weights}): max rel err {max:.2e}; per layer {}",
                dir.display(),
                fmt_errs(&errs)
            );
        }
    }
}

#[test]
fn a_model_exports_to_a_checkpoint_that_rebuilds_it_exactly() {
    let device = Device::flex();
    let source = load_path(&fixture("mert_tiny_layer")).unwrap();
    let model = source.build(&device).unwrap();
    let exported = Checkpoint::from_model(&source.config, &model, "exported").unwrap();
    assert_eq!(exported.tensors.tensors, source.tensors.tensors);
    // A fresh random model of a preset exports and reloads too.
    let config = mert_core::MertConfig::tiny();
    let fresh = mert_core::Mert::init(&config, &device);
    let ck = Checkpoint::from_model(&config, &fresh, "random").unwrap();
    let back = kit::from_bytes(&kit::to_bytes(&ck).unwrap(), "random.safetensors").unwrap();
    assert_eq!(back.tensors.tensors, ck.tensors.tensors);
}
