//! The kit's model file from bytes (`kit::from_bytes`, the web and mobile entry point).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mert_fuzz::check;

fuzz_target!(|data: &[u8]| {
    check(mert_core::load::kit::from_bytes(data, "fuzz.safetensors"));
});
