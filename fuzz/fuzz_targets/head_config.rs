//! The tagging head's description (`mert.head`, JSON in a kit file's metadata): a micro model
//! with a small head, its `mert.head` replaced by the input, read by `kit::from_bytes`; an
//! accepted head is then built as `mert tag` builds it (`TagHead::init` + `load_module`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mert_core::burn::tensor::Device;
use mert_core::load::kit;
use mert_core::load::weights::load_module;
use mert_core::probe::TagHead;
use mert_fuzz::{check, kit_with_head_json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let bytes = kit_with_head_json(text);
    let Some(checkpoint) = check(kit::from_bytes(&bytes, "fuzz.safetensors")) else {
        return;
    };
    if let Some(head) = checkpoint.head {
        let device = Device::flex();
        check(load_module(
            TagHead::init(&head.config, &device),
            head.tensors,
            &device,
        ));
    }
});
