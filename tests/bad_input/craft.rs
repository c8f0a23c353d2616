//! The crafted inputs of the matrix: broken audio, model folders, kit files, probe lists and
//! run files, written once into a temporary folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A WAV file: `format` 1 = PCM, 3 = IEEE float; `claimed` overrides the data chunk's size.
pub fn wav(
    format: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    data: &[u8],
    claimed: Option<u32>,
) -> Vec<u8> {
    let block = channels.wrapping_mul(bits / 8);
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    for v in [format, channels] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&rate.wrapping_mul(block as u32).to_le_bytes());
    for v in [block, bits] {
        w.extend_from_slice(&v.to_le_bytes());
    }
    w.extend_from_slice(b"data");
    w.extend_from_slice(&claimed.unwrap_or(data.len() as u32).to_le_bytes());
    w.extend_from_slice(data);
    w
}

/// `n` samples of a 16-bit sine.
pub fn pcm16(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (((i as f32 * 0.05).sin() * 8000.0) as i16).to_le_bytes())
        .collect()
}

/// `n` float samples of a sine with `bad` at sample 1000.
fn f32_with(n: usize, bad: f32) -> Vec<u8> {
    (0..n)
        .map(|i| {
            if i == 1000 {
                bad
            } else {
                (i as f32 * 0.05).sin() * 0.3
            }
        })
        .flat_map(f32::to_le_bytes)
        .collect()
}

/// What [`rebuild`] may do to each tensor (name, dtype, shape, bytes); `false` drops it.
type Edit = fn(&str, &mut Dtype, &mut Vec<usize>, &mut Vec<u8>) -> bool;

/// Rewrite a safetensors file: `edit` each tensor, `meta` the string metadata.
fn rebuild(bytes: &[u8], edit: Edit, meta: impl FnOnce(&mut HashMap<String, String>)) -> Vec<u8> {
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap_or_default();
    meta(&mut metadata);
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut kept = Vec::new();
    for (name, view) in st.tensors() {
        let (mut dtype, mut shape) = (view.dtype(), view.shape().to_vec());
        let mut data = view.data().to_vec();
        if edit(&name, &mut dtype, &mut shape, &mut data) {
            kept.push((name, dtype, shape, data));
        }
    }
    let views = kept.iter().map(|(n, d, s, b)| {
        let view = safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap();
        (n.clone(), view)
    });
    safetensors::serialize(views, Some(metadata)).unwrap()
}

fn keep(_: &str, _: &mut Dtype, _: &mut Vec<usize>, _: &mut Vec<u8>) -> bool {
    true
}

/// A metadata edit: set `key` to `value`, or remove it.
fn set(
    key: &'static str,
    value: Option<&'static str>,
) -> impl FnOnce(&mut HashMap<String, String>) {
    move |m| match value {
        Some(v) => drop(m.insert(key.to_string(), v.to_string())),
        None => drop(m.remove(key)),
    }
}

/// A Hugging Face folder: the tiny model's config (edited) and its weights (rewritten).
fn hf_folder(
    dir: &Path,
    config: impl FnOnce(&mut serde_json::Value),
    weights: impl FnOnce(&[u8]) -> Vec<u8>,
) {
    let tiny = fixtures().join("mert_tiny");
    std::fs::create_dir_all(dir).unwrap();
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tiny.join("config.json")).unwrap()).unwrap();
    config(&mut c);
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    let w = std::fs::read(tiny.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), weights(&w)).unwrap();
}

/// Write every crafted input into `w`.
pub fn craft(w: &Path) {
    let write = |name: &str, bytes: &[u8]| std::fs::write(w.join(name), bytes).unwrap();
    let good = std::fs::read(fixtures().join("mert_tiny/input0.wav")).unwrap();

    // audio
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let random: Vec<u8> = (0..20_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    let tone = pcm16(24_000);
    for (name, bytes) in [
        ("empty.wav", Vec::new()),
        ("random.wav", random.clone()),
        ("random.flac", random),
        ("truncated.wav", good[..30].to_vec()),
        ("header_only.wav", wav(1, 1, 24_000, 16, &[], Some(1 << 20))),
        ("mpeg_in_wav.wav", wav(0x0050, 1, 24_000, 16, &tone, None)),
        (
            "nan.wav",
            wav(3, 1, 24_000, 32, &f32_with(24_000, f32::NAN), None),
        ),
        (
            "inf.wav",
            wav(3, 1, 24_000, 32, &f32_with(24_000, f32::INFINITY), None),
        ),
        ("rate0.wav", wav(1, 1, 0, 16, &tone, None)),
        ("rate1.wav", wav(1, 1, 1, 16, &tone, None)),
        ("rate_max.wav", wav(1, 1, u32::MAX, 16, &tone, None)),
        ("channels0.wav", wav(1, 0, 24_000, 16, &tone, None)),
        (
            "channels_max.wav",
            wav(1, u16::MAX, 24_000, 16, &pcm16(65_535), None),
        ),
        (
            "channels27.wav",
            wav(1, 27, 24_000, 16, &pcm16(27 * 4800), None),
        ),
        ("rf64.wav", {
            let mut b = wav(1, 1, 24_000, 16, &tone, None);
            b[..4].copy_from_slice(b"RF64");
            b
        }),
        ("rifx.wav", {
            let mut b = wav(1, 1, 24_000, 16, &tone, None);
            b[..4].copy_from_slice(b"RIFX");
            b
        }),
        ("short.wav", wav(1, 1, 24_000, 16, &pcm16(100), None)),
    ] {
        write(name, &bytes);
    }

    // Hugging Face folders
    let tiny = fixtures().join("mert_tiny");
    let same = |b: &[u8]| b.to_vec();
    let dir = w.join("no_config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        tiny.join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    hf_folder(&w.join("bad_json"), |_| {}, same);
    std::fs::write(w.join("bad_json/config.json"), "{\"hidden_size\": 64,").unwrap();
    hf_folder(
        &w.join("heads_mismatch"),
        |c| c["num_attention_heads"] = 5.into(),
        same,
    );
    hf_folder(
        &w.join("more_layers"),
        |c| c["num_hidden_layers"] = 3.into(),
        same,
    );
    hf_folder(
        &w.join("truncated_weights"),
        |_| {},
        |b| b[..b.len() / 2].to_vec(),
    );
    hf_folder(
        &w.join("huge_header"),
        |_| {},
        |b| {
            let mut b = b.to_vec();
            b[..8].copy_from_slice(&(40u64 << 30).to_le_bytes());
            b
        },
    );
    hf_folder(
        &w.join("hidden_size_string"),
        |c| c["hidden_size"] = "64".into(),
        same,
    );
    hf_folder(
        &w.join("wide_kernel"),
        |c| c["conv_kernel"][0] = 200_000.into(),
        same,
    );
    // a model path that is a device, not a file
    #[cfg(unix)]
    std::os::unix::fs::symlink("/dev/zero", w.join("zero.safetensors")).unwrap();
    let edits: [(&str, Edit); 3] = [
        ("wrong_shape", |n, _, s, _| {
            if n == "encoder.layers.0.attention.q_proj.weight" {
                // [64, 64] -> [32, 128]: as many values, the wrong shape
                (s[0], s[1]) = (s[0] / 2, s[1] * 2);
            }
            true
        }),
        ("missing_key", |n, _, _, _| {
            n != "encoder.layers.1.feed_forward.output_dense.weight"
        }),
        ("wrong_dtype", |n, d, _, _| {
            if n == "encoder.layer_norm.weight" {
                *d = Dtype::I32;
            }
            true
        }),
    ];
    for (name, edit) in edits {
        hf_folder(&w.join(name), |_| {}, |b| rebuild(b, edit, |_| {}));
    }
    let bin = w.join("pickle_eval");
    std::fs::create_dir_all(&bin).unwrap();
    let malicious = fixtures().join("malicious_bin");
    std::fs::copy(malicious.join("config.json"), bin.join("config.json")).unwrap();
    std::fs::copy(malicious.join("eval.bin"), bin.join("pytorch_model.bin")).unwrap();

    // kit files: the tiny model, and the default tagger (a model with a head)
    let kit = mert_core::load::kit::to_bytes(&mert_core::load_path(&tiny).unwrap()).unwrap();
    write("tiny.safetensors", &kit);
    let ck = mert_core::load_path(&tiny).unwrap();
    let q8 = mert_core::quant::Layout::new(mert_core::quant::Scheme::Q8);
    write(
        "tiny-q8.safetensors",
        &mert_core::load::kit::to_bytes_quantized(&ck, q8).unwrap(),
    );
    write("kit_truncated.safetensors", &kit[..kit.len() - 1000]);
    write(
        "kit_bad_config.safetensors",
        &rebuild(&kit, keep, set("mert.config", Some("{\"hidden_size\": "))),
    );
    write(
        "kit_no_config.safetensors",
        &rebuild(&kit, keep, set("mert.config", None)),
    );
    // header edits the safetensors crate refuses without naming the tensor
    let header_edit = |edit: fn(&mut serde_json::Value)| {
        let len = u64::from_le_bytes(kit[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&kit[8..8 + len]).unwrap();
        edit(&mut header["encoder.layer_norm.weight"]);
        let text = serde_json::to_vec(&header).unwrap();
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend(text);
        out.extend(&kit[8 + len..]);
        out
    };
    write(
        "kit_shape_vs_bytes.safetensors",
        &header_edit(|t| t["shape"] = serde_json::json!([65])),
    );
    write(
        "kit_unknown_dtype.safetensors",
        &header_edit(|t| t["dtype"] = serde_json::json!("Q7")),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tagger = std::fs::read(root.join("models/default/mert-tag-default.safetensors")).unwrap();
    let head = |edit: fn(&mut serde_json::Value)| {
        move |m: &mut HashMap<String, String>| {
            let mut h: serde_json::Value = serde_json::from_str(&m["mert.head"]).unwrap();
            edit(&mut h);
            m.insert("mert.head".into(), h.to_string());
        }
    };
    write(
        "head_states.safetensors",
        &rebuild(&tagger, keep, head(|h| h["states"] = 9.into())),
    );
    write(
        "head_huge.safetensors",
        &rebuild(&tagger, keep, head(|h| h["dim"] = (1u64 << 40).into())),
    );
    write(
        "head_unknown_field.safetensors",
        &rebuild(&tagger, keep, head(|h| h["temperature"] = 2.into())),
    );
    write(
        "head_no_config.safetensors",
        &rebuild(&tagger, keep, set("mert.head", None)),
    );
    let shorter: Edit = |n, _, s, b| {
        if n == "head.fc2.bias" {
            s[0] -= 1;
            b.truncate(b.len() - 4);
        }
        true
    };
    write(
        "head_wrong_shape.safetensors",
        &rebuild(&tagger, shorter, |_| {}),
    );
    // a head trained into NaN (as a diverged probe would have written it)
    let nan: Edit = |n, _, _, b| {
        if n == "head.fc2.weight" {
            b[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        true
    };
    write("head_nan.safetensors", &rebuild(&tagger, nan, |_| {}));
    let std_zero: Edit = |n, _, _, b| {
        if n == "head.feat_std" {
            b[..4].copy_from_slice(&0f32.to_le_bytes());
        }
        true
    };
    write(
        "head_std_zero.safetensors",
        &rebuild(&tagger, std_zero, |_| {}),
    );
    let transposed: Edit = |n, _, s, _| {
        if n == "head.fc1.weight" {
            s.reverse();
        }
        true
    };
    write(
        "head_transposed.safetensors",
        &rebuild(&tagger, transposed, |_| {}),
    );
    write(
        "head_window.safetensors",
        &rebuild(&tagger, keep, head(|h| h["window_seconds"] = (-5).into())),
    );
    write(
        "head_dup_tags.safetensors",
        &rebuild(&tagger, keep, head(|h| h["tags"][1] = h["tags"][0].clone())),
    );
    // a quantized kit file inside a Hugging Face folder
    hf_folder(&w.join("q8_folder"), |_| {}, same);
    write(
        "q8_folder/model.safetensors",
        &mert_core::load::kit::to_bytes_quantized(&ck, q8).unwrap(),
    );

    // probe lists
    let a = fixtures().join("mert_tiny/input0.wav");
    write("list.csv", format!("{},piano\n", a.display()).as_bytes());
    write("list_bad.csv", b"just one column\n");
    write("list_empty.csv", b"# nothing\n");
    write("list_missing_audio.csv", b"/no/such/clip.wav,piano\n");

    // run files: a good one, and one fault each
    let run = |model: &str, data: &str, rest: &str| {
        let train = a.display();
        format!(
            "[model]\n{model}\n[data]\ntrain = [\"{train}\"]\n{data}\n[train]\nmax_steps = 2\n{rest}"
        )
    };
    for (name, text) in [
        ("run_ok.toml", run("", "", "")),
        ("run_syntax.toml", "[train\nmax_steps = 2\n".to_string()),
        ("run_unknown_key.toml", run("", "", "lrr = 0.1")),
        (
            "run_unknown_table.toml",
            run("", "", "[optimizer]\nkind = \"adam\""),
        ),
        ("run_wrong_type.toml", run("", "", "batch_size = \"eight\"")),
        ("run_lr.toml", run("", "", "lr = -1.0")),
        ("run_precision.toml", run("", "", "precision = \"fp16\"")),
        ("run_betas.toml", run("", "", "adam_betas = [0.9, 1.5]")),
        ("run_model_key.toml", run("hidden_sise = 64", "", "")),
        (
            "run_model_heads.toml",
            run("hidden_size = 30\nnum_attention_heads = 4", "", ""),
        ),
        ("run_preset.toml", run("preset = \"mert-v9\"", "", "")),
        (
            "run_huge_model.toml",
            run("hidden_size = 1048576\nintermediate_size = 4194304", "", ""),
        ),
        ("run_crop.toml", run("", "crop_seconds = nan", "")),
        ("run_segment.toml", run("", "segment_seconds = 1e300", "")),
        ("run_augment.toml", run("", "", "[augment]\nprob = 2.0")),
        ("run_heads.toml", run("", "", "[heads]\ncodebook_size = 0")),
        (
            "run_no_data.toml",
            "[model]\n[data]\ntrain = [\"/no/such/folder\"]\n[train]\n".into(),
        ),
        (
            "run_codec.toml",
            run("", "", "[teachers]\ncodec = \"/no/such/codec.safetensors\""),
        ),
    ] {
        write(name, text.as_bytes());
    }
}
