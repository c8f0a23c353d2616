//! The audio decoder from bytes (`decode_bytes`); the first byte picks the extension hint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mert_fuzz::{AUDIO_HINTS, check};

fuzz_target!(|data: &[u8]| {
    let Some((&hint, file)) = data.split_first() else {
        return;
    };
    let hint = AUDIO_HINTS[hint as usize % AUDIO_HINTS.len()];
    if let Some(audio) = check(mert_core::audio::decode_bytes(file.to_vec(), hint, "fuzz")) {
        assert!(audio.sample_rate > 0 && !audio.samples.is_empty());
    }
});
