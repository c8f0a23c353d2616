//! Checkpoints of a codec run: `RUN_DIR/checkpoints/step-NNNNNNNN/` holding `codec.safetensors`
//! (every weight under encodec's names with weight norm kept, the quantiser's EMA buffers, and
//! the kit codec metadata, so `mert labels --codec` reads a checkpoint as it is), the
//! optimiser state and `state.json`. Written and pruned by the pretraining run's atomic folder
//! writer ([`crate::pretrain::checkpoint::save_files`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use mert_core::load::tensors::{TensorMap, read_safetensors};
use mert_core::teachers::codec::ema::EmaRvq;
use mert_core::teachers::codec::load::{META_CODEC_CONFIG, codec_to_bytes};
use mert_core::teachers::codec::train::CodecModel;
use mert_core::teachers::{CodecCheckpoint, CodecConfig};

use super::config::CodecRunConfig;
use crate::pretrain::checkpoint::{RunState, save_files};

/// The weights file of a checkpoint folder (and the name of the finished codec).
pub const CODEC_FILE: &str = "codec.safetensors";

/// What is trained: the encoder/decoder (gradients) and the codebooks (EMA).
pub struct Trainer {
    pub model: CodecModel,
    pub rvq: EmaRvq,
}

impl Trainer {
    /// Every tensor under encodec's names: weight norm kept, EMA buffers included.
    fn state_dict(&self) -> Result<TensorMap> {
        let mut map = TensorMap::new("codec");
        self.model.to_state_dict(&mut map)?;
        self.rvq.to_state_dict(&mut map);
        Ok(map)
    }

    /// The checkpoint's `codec.safetensors` (the kit's codec format, unfolded).
    pub fn checkpoint_bytes(
        &self,
        config: &CodecConfig,
        license: &str,
        step: u64,
    ) -> Result<Vec<u8>> {
        let checkpoint = CodecCheckpoint {
            config: config.clone(),
            tensors: self.state_dict()?,
            license: Some(license.to_string()),
            source: format!("mert train-codec, step {step}"),
            skipped: Vec::new(),
        };
        Ok(codec_to_bytes(&checkpoint)?)
    }

    /// The finished codec: weight norm folded, training state dropped (what `mert labels
    /// --codec` and `[teachers] codec` load fastest).
    pub fn export_bytes(&self, config: &CodecConfig, license: &str, step: u64) -> Result<Vec<u8>> {
        let mut checkpoint = CodecCheckpoint::from_state_dict(self.state_dict()?, config.clone())?;
        checkpoint.license = Some(license.to_string());
        checkpoint.source = format!("mert train-codec, step {step}");
        Ok(codec_to_bytes(&checkpoint)?)
    }
}

/// Save after `state.step` steps; prune to the newest `keep`.
pub fn save(
    run: &Path,
    config: &CodecRunConfig,
    trainer: &Trainer,
    optimizer_bytes: &[u8],
    state: &RunState,
) -> Result<PathBuf> {
    let t = &config.train;
    let codec = trainer.checkpoint_bytes(&config.codec, &t.license, state.step)?;
    let state_json = serde_json::to_string(state)?;
    save_files(
        run,
        state.step,
        &[
            (CODEC_FILE, &codec),
            ("optimizer.bpk", optimizer_bytes),
            ("state.json", state_json.as_bytes()),
        ],
        t.keep_checkpoints,
    )
}

/// Load a checkpoint folder written for `config`: trainer, optimiser bytes, state. A codec of
/// another shape, a missing, mis-shaped or unexpected tensor is an error naming it.
pub fn load(
    dir: &Path,
    config: &CodecRunConfig,
    device: &Device,
) -> Result<(Trainer, Vec<u8>, RunState)> {
    let at = |f: &str| dir.join(f);
    let state_path = at("state.json");
    let state: RunState = serde_json::from_str(
        &std::fs::read_to_string(&state_path)
            .with_context(|| format!("{}", state_path.display()))?,
    )
    .with_context(|| format!("{}: bad state", state_path.display()))?;
    let path = at(CODEC_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
    let (mut tensors, metadata) = read_safetensors(&bytes, &path.display().to_string())?;
    let saved: CodecConfig = metadata
        .get(META_CODEC_CONFIG)
        .and_then(|text| serde_json::from_str(text).ok())
        .with_context(|| {
            format!(
                "{}: metadata `{META_CODEC_CONFIG}` is missing or invalid",
                path.display()
            )
        })?;
    if saved != config.codec {
        bail!(
            "{}: the checkpoint's codec differs from [codec] in the run file",
            path.display()
        );
    }
    let c = &config.codec;
    let model = CodecModel::from_state_dict(c, &mut tensors, device)?;
    let rvq = EmaRvq::from_state_dict(
        &mut tensors,
        c.n_q,
        c.codebook_size,
        c.dimension,
        config.quantizer.clone(),
    )?;
    if let Some(key) = tensors.tensors.keys().next() {
        bail!(
            "{}: tensor `{key}`: unexpected in a checkpoint of this codec",
            path.display()
        );
    }
    let optimizer_path = at("optimizer.bpk");
    let optimizer =
        std::fs::read(&optimizer_path).with_context(|| format!("{}", optimizer_path.display()))?;
    Ok((Trainer { model, rvq }, optimizer, state))
}
