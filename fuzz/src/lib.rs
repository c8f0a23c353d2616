//! Shared by the fuzz targets: the error contract, the extension hints of `audio_decode`,
//! and wrapping a fuzzed `data.pkl` into a torch zip beside the tiny model's storages.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The contract every entry point keeps: `Ok`, or an error that is one non-empty line.
pub fn check<T>(result: Result<T, mert_core::MertError>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.is_empty() && !msg.contains(['\n', '\r']),
                "error is not one line: {msg:?}"
            );
            None
        }
    }
}

/// `audio_decode` inputs start with one byte choosing the extension hint (modulo the count).
pub const AUDIO_HINTS: [Option<&str>; 12] = [
    None,
    Some("wav"),
    Some("flac"),
    Some("mp3"),
    Some("ogg"),
    Some("m4a"),
    Some("mkv"),
    Some("caf"),
    Some("aiff"),
    Some("opus"),
    Some("webm"),
    Some("aac"),
];

/// A scratch file for this process (pickles are read from a path).
pub fn scratch_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mert-fuzz-{}-{name}", std::process::id()))
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// The entries of a stored zip written by `torch.save` (a trusted fixture).
pub fn unzip(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let eocd = (0..=b.len() - 22)
        .rev()
        .find(|&i| b[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .expect("end of central directory");
    let (count, mut at) = (u16_at(b, eocd + 10), u32_at(b, eocd + 16));
    let mut entries = Vec::new();
    for _ in 0..count {
        let size = u32_at(b, at + 20);
        let (n, extra, comment) = (u16_at(b, at + 28), u16_at(b, at + 30), u16_at(b, at + 32));
        let local = u32_at(b, at + 42);
        let name = String::from_utf8_lossy(&b[at + 46..at + 46 + n]).into_owned();
        let data = local + 30 + u16_at(b, local + 26) + u16_at(b, local + 28);
        entries.push((name, b[data..data + size].to_vec()));
        at += 46 + n + extra + comment;
    }
    entries
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A stored zip's local part: the header and data of each entry; `central` collects the
/// central-directory records that point at them.
fn zip_entry(out: &mut Vec<u8>, central: &mut Vec<u8>, name: &str, data: &[u8]) {
    let (crc, size, offset) = (crc32(data), data.len() as u32, out.len() as u32);
    let common = |v: &mut Vec<u8>| {
        v.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        v.extend_from_slice(&crc.to_le_bytes());
        v.extend_from_slice(&size.to_le_bytes());
        v.extend_from_slice(&size.to_le_bytes());
        v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        v.extend_from_slice(&[0, 0]);
    };
    out.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04]);
    common(out);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    central.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 0]);
    common(central);
    central.extend_from_slice(&[0; 10]);
    central.extend_from_slice(&offset.to_le_bytes());
    central.extend_from_slice(name.as_bytes());
}

/// Close a zip: the central directory of `count` entries and its end record.
fn zip_finish(mut out: Vec<u8>, central: &[u8], count: usize) -> Vec<u8> {
    let (cd_offset, cd_size) = (out.len() as u32, central.len() as u32);
    out.extend_from_slice(central);
    out.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
    let count = (count as u16).to_le_bytes();
    out.extend_from_slice(&count);
    out.extend_from_slice(&count);
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// A stored zip of `entries` with valid checksums.
pub fn zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        zip_entry(&mut out, &mut central, name, data);
    }
    zip_finish(out, &central, entries.len())
}

/// A torch zip whose `data.pkl` is `pickle`, beside the tiny model's storages, so a fuzzed
/// pickle reaches the tensor rebuilders with real data behind them. The storages are zipped
/// once; each input adds only its pickle.
pub fn torch_zip_with_pickle(pickle: &[u8]) -> Vec<u8> {
    static STORAGES: OnceLock<(String, Vec<u8>, Vec<u8>, usize)> = OnceLock::new();
    let (pickle_name, local, central, count) = STORAGES.get_or_init(|| {
        let entries = unzip(include_bytes!(
            "../../tests/fixtures/mert_tiny/pytorch_model.bin"
        ));
        let (mut local, mut central) = (Vec::new(), Vec::new());
        let mut pickle_name = String::new();
        for (name, data) in &entries {
            if name.ends_with("/data.pkl") {
                pickle_name = name.clone();
            } else {
                zip_entry(&mut local, &mut central, name, data);
            }
        }
        (pickle_name, local, central, entries.len())
    });
    let (mut out, mut central) = (local.clone(), central.clone());
    zip_entry(&mut out, &mut central, pickle_name, pickle);
    zip_finish(out, &central, *count)
}

/// A micro model (1 layer, width 8) with a tagging head of 3 tags (hidden 4), as a kit file.
fn micro_kit_with_head() -> &'static [u8] {
    use mert_core::load::{Checkpoint, HeadWeights, HostTensor, TensorMap, keys, kit};
    use mert_core::probe::{HeadConfig, LayerChoice};
    static KIT: OnceLock<Vec<u8>> = OnceLock::new();
    KIT.get_or_init(|| {
        let config = mert_core::MertConfig {
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 8,
            conv_dim: vec![4, 4],
            conv_kernel: vec![10, 3],
            conv_stride: vec![5, 2],
            num_feat_extract_layers: Some(2),
            num_conv_pos_embeddings: 4,
            num_conv_pos_embedding_groups: 2,
            ..mert_core::MertConfig::tiny()
        };
        let zeros = |shapes: Vec<(String, Vec<usize>)>| {
            let mut map = TensorMap::new("micro");
            for (k, shape) in shapes {
                let n = shape.iter().product();
                map.insert(k, HostTensor::new(shape, vec![0.25; n]));
            }
            map
        };
        let mut checkpoint =
            Checkpoint::from_reference(config.clone(), zeros(keys::expected_tensors(&config)))
                .expect("the micro model is valid");
        let (states, dim, hidden, tags) = (2, 8, 4, 3);
        let head = zeros(vec![
            ("feat_mean".into(), vec![dim, states]),
            ("feat_std".into(), vec![dim, states]),
            ("layer_weights".into(), vec![states - 1]),
            ("fc1.weight".into(), vec![hidden, dim]),
            ("fc1.bias".into(), vec![hidden]),
            ("fc2.weight".into(), vec![tags, hidden]),
            ("fc2.bias".into(), vec![tags]),
        ]);
        checkpoint.head = Some(HeadWeights {
            config: HeadConfig {
                tags: vec!["a".into(), "b".into(), "c".into()],
                pooling: "mean".into(),
                layer: LayerChoice::All,
                states,
                dim,
                hidden,
                features: "mert".into(),
                window_seconds: 5.0,
                normalize: true,
                layer_weights: None,
            },
            tensors: head,
        });
        kit::to_bytes(&checkpoint).expect("the micro kit serialises")
    })
}

/// The micro kit file with `mert.head` set to `json` (the tensors and other metadata kept).
pub fn kit_with_head_json(json: &str) -> Vec<u8> {
    let base = micro_kit_with_head();
    let n = u64::from_le_bytes(base[..8].try_into().expect("8 bytes")) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&base[8..8 + n]).expect("a safetensors header");
    header["__metadata__"]["mert.head"] = json.into();
    let mut text = header.to_string();
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&base[8 + n..]);
    out
}
