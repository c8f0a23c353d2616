//! The pretraining run file (`mert pretrain --config run.toml`): `RunConfig::from_toml`, the
//! parser and checks of train-native, compiled in from its source (the `mert` binary has no
//! library). An accepted file must also survive what `pretrain` does with it next: resolve
//! the model shape, and write the resolved config as TOML that parses again.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../train-native/src/pretrain/config.rs"]
mod config;

/// anyhow's chain, as the CLI prints it, is one line.
fn one_line(e: &anyhow::Error) {
    let msg = format!("{e:#}");
    assert!(
        !msg.is_empty() && !msg.contains(['\n', '\r']),
        "error is not one line: {msg:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/run.toml");
    match config::RunConfig::from_toml(text, path) {
        Ok(run) => {
            if let Err(e) = run.model_config() {
                one_line(&e);
                panic!("accepted, then its model config fails: {e:#}");
            }
            let again = run.to_toml().expect("an accepted run file serialises");
            if let Err(e) = config::RunConfig::from_toml(&again, path) {
                panic!("the written config.toml does not parse again: {e:#}\n{again}");
            }
        }
        Err(e) => one_line(&e),
    }
});
