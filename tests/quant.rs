//! Quantized kit files (`mert.quant` f16, q8, q4): round trips on the tiny fixture and on a
//! bigger random model, the quality bars of DESIGN.md (cosine of every hidden state against
//! the f32 model on a deterministic signal: >= 0.9999 for f16, >= 0.999 for q8; q4 printed
//! and held to a stated floor), file sizes, a head kept as it is, and corrupt files whose
//! error names the key.
//!
//! The 95M shape (sizes and per-layer cosines of every scheme, random init):
//! `cargo test --release -p mert-core --test quant -- --ignored --nocapture`;
//! `MERT_QUANT_MODEL=PATH` measures any model the loaders read instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mert_core::burn::tensor::Device;
use mert_core::load::{Checkpoint, HeadWeights, kit};
use mert_core::quant::{self, Layout, Scheme, hidden_state_cosines, test_signal};
use mert_core::{Mert, MertConfig, load_path};
use safetensors::{Dtype, SafeTensors};

const F16_BAR: f64 = 0.9999;
const Q8_BAR: f64 = 0.999;
/// q4 is not held to a DESIGN bar; this floor catches a broken codec, not a weak one.
const Q4_FLOOR: f64 = 0.995;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn layouts() -> [Layout; 3] {
    [
        Layout::new(Scheme::F16),
        Layout::new(Scheme::Q8),
        Layout::new(Scheme::Q4),
    ]
}

fn bar(scheme: Scheme) -> f64 {
    match scheme {
        Scheme::F32 => 1.0 - 1e-12,
        Scheme::F16 => F16_BAR,
        Scheme::Q8 => Q8_BAR,
        Scheme::Q4 => Q4_FLOOR,
    }
}

fn fmt(c: &[f64]) -> String {
    c.iter()
        .map(|v| format!("{v:.6}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every tensor back with its shape: untouched ones bit-identical, f16 ones the f16 rounding,
/// q8 ones within half a step of their row's largest value, q4 ones within a stated RMS error.
fn check_tensors(src: &Checkpoint, back: &Checkpoint, layout: Layout) {
    assert_eq!(
        src.tensors.tensors.keys().collect::<Vec<_>>(),
        back.tensors.tensors.keys().collect::<Vec<_>>()
    );
    for (k, a) in &src.tensors.tensors {
        let b = &back.tensors.tensors[k];
        assert_eq!(a.shape, b.shape, "{k}");
        if layout.scheme == Scheme::F32 || !quant::quantizes(k, &a.shape) {
            assert_eq!(a.data, b.data, "{k}: should be stored as is");
            continue;
        }
        let row = a.data.len() / a.shape[0];
        match quant::codes_for(k, layout.scheme) {
            Scheme::F16 => {
                for (x, y) in a.data.iter().zip(&b.data) {
                    assert_eq!(half::f16::from_f32(*x).to_f32(), *y, "{k}");
                }
            }
            Scheme::Q8 => {
                for (ra, rb) in a.data.chunks(row).zip(b.data.chunks(row)) {
                    let m = ra.iter().fold(0f32, |m, v| m.max(v.abs()));
                    for (x, y) in ra.iter().zip(rb) {
                        assert!(
                            (x - y).abs() <= m / 254.0 * 1.0001 + 1e-12,
                            "{k}: {x} vs {y}"
                        );
                    }
                }
            }
            _ => {
                let err: f64 = a
                    .data
                    .iter()
                    .zip(&b.data)
                    .map(|(x, y)| ((x - y) as f64).powi(2))
                    .sum();
                let norm: f64 = a.data.iter().map(|x| (*x as f64).powi(2)).sum();
                let rel = (err / norm).sqrt();
                assert!(rel < 0.15, "{k}: q4 relative RMS error {rel}");
            }
        }
    }
}

/// Quantize, reload from bytes, check tensors, and measure every hidden state's cosine.
/// Returns the file size and the cosines.
fn round_trip(
    ck: &Checkpoint,
    reference: &Mert,
    layout: Layout,
    audio: &[f32],
    device: &Device,
) -> (usize, Vec<f64>) {
    let bytes = kit::to_bytes_quantized(ck, layout).unwrap();
    let back = kit::from_bytes(&bytes, "quantized.safetensors").unwrap();
    assert_eq!(back.config, ck.config);
    check_tensors(ck, &back, layout);
    let model = back.build(device).unwrap();
    (
        bytes.len(),
        hidden_state_cosines(reference, &model, audio, device),
    )
}

fn assert_bars(what: &str, layout: Layout, cos: &[f64]) {
    for (i, c) in cos.iter().enumerate() {
        assert!(
            *c >= bar(layout.scheme),
            "{what} {}: hidden_states[{i}] cosine {c} < {}",
            layout.scheme,
            bar(layout.scheme)
        );
    }
}

#[test]
fn tiny_fixture_round_trips_every_scheme_within_the_bars() {
    let path = fixture("mert_tiny");
    let ck = load_path(&path).unwrap();
    let device = Device::flex();
    let reference = ck.build(&device).unwrap();
    let audio = test_signal(ck.config.sample_rate, 2.0);
    let f32_len = kit::to_bytes(&ck).unwrap().len();
    for layout in layouts() {
        let (len, cos) = round_trip(&ck, &reference, layout, &audio, &device);
        eprintln!(
            "tiny {}: {len} bytes ({:.3} of f32 {f32_len}); cosine per hidden state {}",
            layout.scheme,
            len as f64 / f32_len as f64,
            fmt(&cos)
        );
        assert_bars("tiny", layout, &cos);
    }
}

#[test]
fn quantized_files_load_from_disk_with_the_stated_layout() {
    let ck = load_path(&fixture("mert_tiny")).unwrap();
    let key = "encoder.layers.1.feed_forward.intermediate_dense.weight";
    let dir = std::env::temp_dir().join(format!("mert_quant_test_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for layout in layouts() {
        let bytes = kit::to_bytes_quantized(&ck, layout).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        assert_eq!(meta[kit::META_QUANT], layout.scheme.name());
        // Small tensors and the first conv stay f32 in every scheme.
        for small in [
            "encoder.layers.1.feed_forward.intermediate_dense.bias",
            "encoder.layer_norm.weight",
            "feature_extractor.conv_layers.0.conv.weight",
        ] {
            assert_eq!(st.tensor(small).unwrap().dtype(), Dtype::F32, "{small}");
        }
        match layout.scheme {
            Scheme::F16 => {
                assert_eq!(st.tensor(key).unwrap().dtype(), Dtype::F16);
                assert!(!meta.contains_key(kit::META_QUANT_BLOCK));
            }
            s => {
                assert!(st.tensor(key).is_err());
                let q = st.tensor(&format!("{key}.q")).unwrap();
                let scale = st.tensor(&format!("{key}.scale")).unwrap();
                // [128, 64]: q8 one scale per output channel, q4 2 blocks of 32.
                if s == Scheme::Q8 {
                    assert_eq!(meta[kit::META_QUANT_BLOCK], "channel");
                    assert_eq!(scale.shape(), &[128, 1]);
                } else {
                    assert_eq!(meta[kit::META_QUANT_BLOCK], "32");
                    assert_eq!(scale.shape(), &[128, 2]);
                }
                assert_eq!(scale.dtype(), Dtype::F32);
                if s == Scheme::Q8 {
                    assert_eq!((q.dtype(), q.shape()), (Dtype::I8, &[128usize, 64][..]));
                } else {
                    assert_eq!((q.dtype(), q.shape()), (Dtype::U8, &[128usize, 32][..]));
                }
                // The front end keeps 8-bit codes under q4 too.
                let p = st.tensor("feature_projection.projection.weight.q").unwrap();
                assert_eq!((p.dtype(), p.shape()), (Dtype::I8, &[64usize, 32][..]));
            }
        }
        // Through the path every command uses.
        let file = dir.join(format!("tiny-{}.safetensors", layout.scheme));
        std::fs::write(&file, &bytes).unwrap();
        let back = load_path(&file).unwrap();
        assert_eq!(back.config, ck.config);
        let model = back.build(&Device::flex()).unwrap();
        // Where the 8-bit kernel is fast, the codes stay resident: every Linear, and with a
        // channel scale (q8) the quantized convs.
        if mert_core::quant::gemm::fast() && layout.scheme != Scheme::F16 {
            let layer = &model.encoder.layers[1];
            assert!(layer.attention.q_proj.int8.is_some());
            assert!(layer.feed_forward.output_dense.int8.is_some());
            assert_eq!(layer.attention.q_proj.weight.dims()[0], 0);
            let convs = &model.feature_extractor.conv_layers;
            assert!(convs[0].int8.is_none(), "the first conv stays f32");
            assert_eq!(convs[1].int8.is_some(), layout.scheme == Scheme::Q8);
        }
        // A quantized file quantizes again (dequantized at load), e.g. q8 -> q4.
        let again = kit::to_bytes_quantized(&back, Layout::new(Scheme::Q4)).unwrap();
        kit::from_bytes(&again, "again.safetensors").unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model of a more realistic aspect (4 layers, 256 wide, 1024 feed-forward), random init.
fn bigger_config() -> MertConfig {
    MertConfig {
        hidden_size: 256,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        intermediate_size: 1024,
        conv_dim: vec![256; 7],
        num_conv_pos_embeddings: 64,
        num_conv_pos_embedding_groups: 16,
        ..MertConfig::mert_v1_95m()
    }
}

#[test]
fn bigger_random_model_meets_the_bars_and_shrinks() {
    let device = Device::flex();
    device.seed(7);
    let config = bigger_config();
    let model = Mert::init(&config, &device);
    let ck = Checkpoint::from_model(&config, &model, "random 4x256").unwrap();
    let audio = test_signal(config.sample_rate, 2.0);
    let f32_len = kit::to_bytes(&ck).unwrap().len();
    for layout in layouts() {
        let (len, cos) = round_trip(&ck, &model, layout, &audio, &device);
        let ratio = len as f64 / f32_len as f64;
        eprintln!(
            "4x256 {}: {:.2} MB ({ratio:.3} of f32 {:.2} MB); cosine per hidden state {}",
            layout.scheme,
            len as f64 / 1e6,
            f32_len as f64 / 1e6,
            fmt(&cos)
        );
        assert_bars("4x256", layout, &cos);
        // Nearly every value is in a quantized weight: f16 1/2, q8 about 1/4 of f32 (a scale
        // per output channel); q4 (0.5 + 4/32) / 4 for the transformer, 8-bit codes with
        // blocks of 32 for the front end (a quarter of this model's values, under 5% of the
        // 95M model's).
        let (lo, hi) = match layout.scheme {
            Scheme::F16 => (0.49, 0.51),
            Scheme::Q8 => (0.24, 0.27),
            _ => (0.18, 0.20),
        };
        assert!(
            (lo..hi).contains(&ratio),
            "{}: size ratio {ratio}",
            layout.scheme
        );
    }
}

#[test]
fn a_tagging_head_survives_quantization_unchanged() {
    use mert_core::probe::{HeadConfig, LayerChoice, TagHead};
    let device = Device::flex();
    let mut ck = load_path(&fixture("mert_tiny")).unwrap();
    let config = HeadConfig {
        tags: vec!["rock".into(), "piano".into()],
        pooling: "mean".into(),
        layer: LayerChoice::All,
        states: ck.config.num_hidden_states(),
        dim: ck.config.hidden_size,
        hidden: 64,
        features: "mert".into(),
        window_seconds: 5.0,
        normalize: true,
        layer_weights: None,
    };
    let head = TagHead::init(&config, &device);
    let tensors = mert_core::load::weights::export_module(&head, "head").unwrap();
    ck.head = Some(HeadWeights {
        config: config.clone(),
        tensors: tensors.clone(),
    });
    for layout in layouts() {
        let bytes = kit::to_bytes_quantized(&ck, layout).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("head.fc1.weight").unwrap().dtype(), Dtype::F32);
        let back = kit::from_bytes(&bytes, "tagger.safetensors").unwrap();
        let mut h = back.head.expect("head kept");
        // the file also states the softmaxed layer weights (all equal for a fresh head)
        let weights = h.config.layer_weights.take().expect("layer weights stated");
        assert_eq!(weights.len(), config.states - 1);
        for w in &weights {
            assert!((w - 1.0 / weights.len() as f32).abs() < 1e-6, "{weights:?}");
        }
        assert_eq!(h.config, config);
        assert_eq!(h.tensors.tensors, tensors.tensors);
    }
}

/// One stored tensor: name, dtype, shape, bytes.
type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

/// Re-serialise a kit file with its tensor list and metadata edited.
fn rewrite(
    bytes: &[u8],
    edit: impl Fn(&mut Vec<Entry>),
    meta: impl Fn(&mut HashMap<String, String>),
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    meta(&mut metadata);
    let mut entries: Vec<Entry> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut entries);
    let views = entries.iter().map(|(n, d, s, b)| {
        (
            n.clone(),
            safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
        )
    });
    safetensors::serialize(views, Some(metadata)).unwrap()
}

/// Apply `f` to the entry named `name`.
fn with(name: &str, f: impl Fn(&mut Entry)) -> impl Fn(&mut Vec<Entry>) {
    move |entries| entries.iter_mut().filter(|e| e.0 == name).for_each(&f)
}

fn without(name: &str) -> impl Fn(&mut Vec<Entry>) {
    move |entries| entries.retain(|e| e.0 != name)
}

fn same(_: &mut Vec<Entry>) {}

fn no_meta(_: &mut HashMap<String, String>) {}

fn load_err(bytes: &[u8]) -> String {
    kit::from_bytes(bytes, "corrupt.safetensors")
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

fn assert_names(e: &str, needles: &[&str]) {
    for n in needles {
        assert!(e.contains(n), "`{n}` not in: {e}");
    }
    assert!(e.contains("corrupt.safetensors"), "{e}");
}

#[test]
fn corrupt_quantized_files_name_the_key() {
    let ck = load_path(&fixture("mert_tiny")).unwrap();
    let q8 = kit::to_bytes_quantized(&ck, Layout::new(Scheme::Q8).with_block(32)).unwrap();
    let q4 = kit::to_bytes_quantized(&ck, Layout::new(Scheme::Q4)).unwrap();
    let k = "encoder.layers.0.attention.k_proj.weight";
    // A channel-scaled file whose scales are cut in blocks.
    let q8c = kit::to_bytes_quantized(&ck, Layout::new(Scheme::Q8)).unwrap();
    let ks = format!("{k}.scale");
    let e = load_err(&rewrite(&q8c, with(&ks, |e| e.2 = vec![32, 2]), no_meta));
    assert_names(&e, &[&ks, "[64, 1]", "[32, 2]"]);
    let (kq, ks) = (format!("{k}.q"), format!("{k}.scale"));

    // Missing scales; missing codes.
    let e = load_err(&rewrite(&q8, without(&ks), no_meta));
    assert_names(&e, &[&ks, "missing"]);
    let e = load_err(&rewrite(&q8, without(&kq), no_meta));
    assert_names(&e, &[&kq, "missing"]);
    // Codes of the wrong dtype or shape (same bytes).
    let e = load_err(&rewrite(&q8, with(&kq, |e| e.1 = Dtype::U8), no_meta));
    assert_names(&e, &[&kq, "dtype U8", "I8"]);
    let e = load_err(&rewrite(&q8, with(&kq, |e| e.2 = vec![32, 128]), no_meta));
    assert_names(&e, &[&kq, "[64, 64]", "[32, 128]"]);
    let e = load_err(&rewrite(&q4, with(&kq, |e| e.2 = vec![64, 16, 2]), no_meta));
    assert_names(&e, &[&kq, "[64, 32]", "[64, 16, 2]"]);
    // Scales of the wrong shape or dtype, or not finite.
    let e = load_err(&rewrite(&q8, with(&ks, |e| e.2 = vec![128, 1]), no_meta));
    assert_names(&e, &[&ks, "[64, 2]", "[128, 1]"]);
    let e = load_err(&rewrite(&q8, with(&ks, |e| e.1 = Dtype::I32), no_meta));
    assert_names(&e, &[&ks, "dtype I32"]);
    let nan = |e: &mut Entry| e.3 = f32::NAN.to_le_bytes().repeat(e.3.len() / 4);
    let e = load_err(&rewrite(&q8, with(&ks, nan), no_meta));
    assert_names(&e, &[&ks, "NaN"]);
    // Both plain and quantized.
    let plain = ck.tensors.get(k).unwrap().clone();
    let add_plain = |entries: &mut Vec<Entry>| {
        let raw = plain.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        entries.push((k.to_string(), Dtype::F32, plain.shape.clone(), raw));
    };
    let e = load_err(&rewrite(&q8, add_plain, no_meta));
    assert_names(&e, &[k, "both plain and quantized"]);
    // Codes for something that is not a weight of the model.
    let rename = |entries: &mut Vec<Entry>| {
        for e in entries.iter_mut() {
            e.0 = e.0.replace("layers.1.", "layers.9.");
        }
    };
    let e = load_err(&rewrite(&q8, rename, no_meta));
    assert_names(&e, &["encoder.layers.9.", "not a weight of this model"]);
    // A plain tensor of an integer dtype.
    let b = "encoder.layer_norm.bias";
    let e = load_err(&rewrite(&q8, with(b, |e| e.1 = Dtype::I32), no_meta));
    assert_names(&e, &[b, "dtype I32", "not a float type"]);

    // Metadata: a q4 file called q8 fails on the first codes' dtype; a q8 file called f32
    // on its codes; a block that disagrees with the scales' shape; no block; no scheme.
    let e = load_err(&rewrite(&q4, same, |m| {
        m.insert(kit::META_QUANT.into(), "q8".into());
    }));
    assert_names(&e, &[".q", "dtype U8"]);
    let e = load_err(&rewrite(&q8, same, |m| {
        m.insert(kit::META_QUANT.into(), "f32".into());
    }));
    assert_names(&e, &[".q", "`mert.quant` is `f32`"]);
    let e = load_err(&rewrite(&q8, same, |m| {
        m.insert(kit::META_QUANT_BLOCK.into(), "16".into());
    }));
    assert_names(&e, &[".scale", "blocks of 16"]);
    // Without `mert.quant.block` the scales' shape implies the block: the same tensors load.
    for (bytes, block) in [(&q8, 32), (&q4, 32)] {
        let want = kit::from_bytes(bytes, "a.safetensors").unwrap();
        let back = kit::from_bytes(
            &rewrite(bytes, same, |m| {
                m.remove(kit::META_QUANT_BLOCK);
            }),
            "b.safetensors",
        )
        .unwrap();
        assert_eq!(back.tensors.tensors, want.tensors.tensors, "block {block}");
    }
    let per_channel = kit::to_bytes_quantized(&ck, Layout::new(Scheme::Q8)).unwrap();
    let want = kit::from_bytes(&per_channel, "a.safetensors").unwrap();
    let back = kit::from_bytes(
        &rewrite(&per_channel, same, |m| {
            m.remove(kit::META_QUANT_BLOCK);
        }),
        "b.safetensors",
    )
    .unwrap();
    assert_eq!(back.tensors.tensors, want.tensors.tensors);
    // ... unless no scale is left to imply it.
    let drop_scales = |entries: &mut Vec<Entry>| entries.retain(|e| !e.0.ends_with(".scale"));
    let e = load_err(&rewrite(&q8, drop_scales, |m| {
        m.remove(kit::META_QUANT_BLOCK);
    }));
    assert_names(&e, &["mert.quant.block", "missing"]);
    let e = load_err(&rewrite(&q8, same, |m| {
        m.insert(kit::META_QUANT.into(), "q3".into());
    }));
    assert_names(&e, &["mert.quant", "q3"]);
}

#[test]
fn mutated_quantized_files_fail_cleanly() {
    // Byte flips and overwrites, mostly in the header (names, dtypes, shapes, offsets,
    // metadata): every load returns Ok or an Err of one line, and never panics.
    let ck = load_path(&fixture("mert_tiny")).unwrap();
    for layout in [Layout::new(Scheme::Q8), Layout::new(Scheme::Q4)] {
        let bytes = kit::to_bytes_quantized(&ck, layout).unwrap();
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..400 {
            let mut b = bytes.clone();
            let span = if case % 4 == 3 { b.len() } else { header };
            for _ in 0..1 + next() % 3 {
                let at = 8 + (next() as usize) % (span - 8);
                b[at] = match next() % 3 {
                    0 => b[at] ^ (1 << (next() % 8)),
                    1 => b"0123456789[],\"IU"[(next() % 16) as usize],
                    _ => next() as u8,
                };
            }
            let result = std::panic::catch_unwind(|| kit::from_bytes(&b, "mutated.safetensors"));
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    assert!(!msg.is_empty() && !msg.contains('\n'), "{case}: {msg}");
                }
                Err(_) => panic!("{} case {case}: the loader panicked", layout.scheme),
            }
        }
    }
}

/// The 95M shape (random init, or `MERT_QUANT_MODEL`): sizes and per-layer cosines of each
/// scheme and of a few block sizes, on 5 s of the test signal.
#[test]
#[ignore = "95M model: cargo test --release -p mert-core --test quant -- --ignored --nocapture"]
fn measure_the_95m_shape() {
    let device = Device::flex();
    let ck = match std::env::var("MERT_QUANT_MODEL") {
        Ok(p) => load_path(Path::new(&p)).unwrap(),
        Err(_) => {
            device.seed(0);
            let config = MertConfig::mert_v1_95m();
            let model = Mert::init(&config, &device);
            Checkpoint::from_model(&config, &model, "random init, mert-v1-95m, seed 0").unwrap()
        }
    };
    let reference = ck.build(&device).unwrap();
    let audio = test_signal(ck.config.sample_rate, 5.0);
    let f32_len = kit::to_bytes(&ck).unwrap().len();
    println!("{}: f32 {:.1} MB", ck.source, f32_len as f64 / 1e6);
    let per_channel = 1 << 30;
    let runs = [
        Layout::new(Scheme::F16),
        Layout::new(Scheme::Q8),
        Layout::new(Scheme::Q8).with_block(128),
        Layout::new(Scheme::Q8).with_block(per_channel),
        Layout::new(Scheme::Q4),
        Layout::new(Scheme::Q4).with_block(128),
        Layout::new(Scheme::Q4).with_block(per_channel),
    ];
    for layout in runs {
        let t = std::time::Instant::now();
        let bytes = kit::to_bytes_quantized(&ck, layout).unwrap();
        let took = t.elapsed().as_secs_f64();
        let back = kit::from_bytes(&bytes, "95m.safetensors").unwrap();
        let model = back.build(&device).unwrap();
        let cos = hidden_state_cosines(&reference, &model, &audio, &device);
        let min = cos.iter().cloned().fold(1.0, f64::min);
        let block = if !layout.scheme.is_blocked() {
            "-".to_string()
        } else if layout.block == per_channel {
            "channel".to_string()
        } else {
            layout.block.to_string()
        };
        println!(
            "{} block {block}: {:.1} MB ({:.3} of f32), quantized in {took:.1} s; min cosine {min:.6}; per hidden state {}",
            layout.scheme,
            bytes.len() as f64 / 1e6,
            bytes.len() as f64 / f32_len as f64,
            fmt(&cos)
        );
    }
}
