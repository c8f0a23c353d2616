//! The kit's codec file from bytes (`codec_from_bytes`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mert_fuzz::check;

fuzz_target!(|data: &[u8]| {
    check(mert_core::teachers::codec::load::codec_from_bytes(
        data,
        "fuzz.safetensors",
    ));
});
