//! `uniffi-bindgen` pinned to the workspace's uniffi, so generated bindings always match the
//! scaffolding compiled into `mert-mobile` (run by scripts/mobile-bindings).

fn main() {
    uniffi::uniffi_bindgen_main()
}
