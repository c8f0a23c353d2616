//! `uniffi-bindgen` pinned to the workspace's uniffi, so generated bindings always match the
//! scaffolding compiled into `mert-mobile` (run by scripts/mobile-bindings).

// Library and binary code returns errors instead of unwrapping (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

fn main() {
    uniffi::uniffi_bindgen_main()
}
