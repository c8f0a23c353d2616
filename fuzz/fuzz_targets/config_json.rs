//! `config.json` (`MertConfig::from_json`) and the codec config JSON (`CodecConfig::from_json`);
//! an accepted config goes on to the checks a load makes before comparing tensors.
//!
//! `from_json` itself may quote an unknown JSON key with its newlines (serde's message), so
//! here it is checked for panics only; the one-line contract holds where users get the error,
//! `load_path` and the kit readers, which escape it (the `kit_file` and `codec_file` targets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mert_core::load::{Checkpoint, TensorMap};
use mert_fuzz::check;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = mert_core::MertConfig::from_json(text) {
        // no tensors: a missing-key error, after the checks a load makes first
        check(Checkpoint::from_reference(config, TensorMap::new("fuzz")));
    }
    let _ = mert_core::teachers::CodecConfig::from_json(text);
});
