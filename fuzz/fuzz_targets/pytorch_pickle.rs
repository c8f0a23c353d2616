//! PyTorch checkpoints (`read_pytorch`, the safe pickle walk). An input starting with a zip
//! signature is the whole file; anything else is `data.pkl`, zipped beside the tiny model's
//! storages with valid checksums so the pickle parser is what gets explored.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mert_fuzz::{check, scratch_file, torch_zip_with_pickle};

fuzz_target!(|data: &[u8]| {
    let file = if data.starts_with(b"PK\x03\x04") {
        data.to_vec()
    } else {
        torch_zip_with_pickle(data)
    };
    let path = scratch_file("pytorch_model.bin");
    std::fs::write(&path, file).expect("scratch file");
    check(mert_core::load::tensors::read_pytorch(&path));
});
