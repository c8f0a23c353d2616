//! `mert-web`: the in-browser build of the kit. The page (`web/static/`) runs the model in a
//! Web Worker that calls this crate compiled to wasm32 (`scripts/build-web`): [`tagger`] is the
//! backend-free tagging path with asynchronous read-back, tested natively; `wasm` is the thin
//! wasm-bindgen layer over it (WebGPU or Flex on the CPU); [`bench`] times the backbone alone.

// Library and binary code returns errors instead of unwrapping (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use mert_core::load::kit;

pub mod bench;
#[cfg(target_arch = "wasm32")]
mod blob;
pub mod tagger;
#[cfg(target_arch = "wasm32")]
mod wasm;

/// Describe a kit model file given as bytes (what the page shows after download): the config
/// JSON, the licence and the source of the weights.
pub fn describe_model(bytes: &[u8], name: &str) -> Result<String, String> {
    let checkpoint = kit::from_bytes(bytes, name).map_err(|e| e.to_string())?;
    let value = serde_json::json!({
        "config": checkpoint.config,
        "license": checkpoint.license,
        "source": checkpoint.source,
        "hidden_states": checkpoint.config.num_hidden_states(),
        "frame_rate": checkpoint.config.frame_rate(),
    });
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn describes_a_kit_file_and_rejects_garbage() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mert_tiny");
        let checkpoint = mert_core::load_path(&dir).unwrap();
        let bytes = mert_core::load::kit::to_bytes(&checkpoint).unwrap();
        let text = super::describe_model(&bytes, "model").unwrap();
        assert!(
            text.contains("\"hidden_size\":64") && text.contains("\"frame_rate\":75"),
            "{text}"
        );
        let err =
            super::describe_model(b"not a model, just text", "notes.safetensors").unwrap_err();
        assert!(
            err.contains("notes.safetensors") && err.contains("not a safetensors model file"),
            "{err}"
        );
    }
}
