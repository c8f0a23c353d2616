//! Per-step checkpoints of a pretraining run: `RUN_DIR/checkpoints/step-NNNNNNNN/` holding the
//! model (the kit's file), the heads, the optimiser state and `state.json`. Each is written in
//! a temp folder renamed into place, so a `kill -9` leaves either the old set or the new one;
//! only the newest `keep` are kept.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use mert_core::load::kit;
use mert_core::load::tensors::read_safetensors;
use mert_core::load::weights::{export_module, load_module};
use mert_core::pretrain::{HeadsConfig, PretrainHeads};
use mert_core::{Checkpoint, Mert, MertConfig};
use serde::{Deserialize, Serialize};

use crate::output::{tensor_map_bytes, write_atomic};

/// The student and its pretraining heads: one module, so one optimiser and one gradient pass.
#[derive(Module, Debug)]
pub struct Pretrainer {
    pub model: Mert,
    pub heads: PretrainHeads,
}

/// Give every parameter an id derived from its path (not a random one), so optimiser state
/// saved by one process maps onto the parameters of the next, and make it trainable.
struct StableIds {
    path: Vec<String>,
}

impl ModuleMapper for StableIds {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let mut h = DefaultHasher::new();
        self.path.join(".").hash(&mut h);
        // Ids must be unique per parameter; paths are, so their hashes are (collisions in 64
        // bits are not a practical concern for a few hundred parameters).
        let value = param.val().detach().require_grad();
        Param::initialized(ParamId::from(h.finish()), value)
    }
}

impl Pretrainer {
    pub fn init(config: &MertConfig, heads: &HeadsConfig, device: &Device) -> Self {
        Self {
            model: Mert::init(config, device),
            heads: PretrainHeads::init(heads, config.hidden_size, device),
        }
        .stable_ids()
    }

    /// Start from a checkpoint's backbone (any format `load_path` reads) and its
    /// `masked_spec_embed` when it has one; the prediction heads stay freshly initialised.
    /// The run's `config` must fit the weights (an error names the first key that does not).
    pub fn with_weights(
        mut self,
        path: &Path,
        config: &MertConfig,
        device: &Device,
    ) -> Result<Self> {
        let loaded = mert_core::load_path(path)?;
        let mask = loaded.mask_embedding.clone();
        let checkpoint = Checkpoint::from_reference(config.clone(), loaded.tensors)?;
        self.model = checkpoint.build(device)?;
        if let Some(m) = mask {
            let n = m.data.len();
            self.heads.mask_emb =
                Param::from_tensor(Tensor::from_data(TensorData::new(m.data, [n]), device));
        }
        Ok(self.stable_ids())
    }

    fn stable_ids(self) -> Self {
        self.map(&mut StableIds { path: Vec::new() })
    }
}

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// Optimiser steps completed.
    pub step: u64,
    pub seed: u64,
}

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// Save after `state.step` steps; prune to the newest `keep`.
pub fn save(
    run: &Path,
    config: &MertConfig,
    trainer: &Pretrainer,
    optimizer_bytes: &[u8],
    state: &RunState,
    keep: usize,
    license: &str,
) -> Result<PathBuf> {
    let model = model_bytes(config, trainer, license, state.step)?;
    let heads = tensor_map_bytes(
        &export_module(&trainer.heads, "heads")?,
        "",
        Default::default(),
    )?;
    let state_json = serde_json::to_string(state)?;
    save_files(
        run,
        state.step,
        &[
            ("model.safetensors", &model),
            ("heads.safetensors", &heads),
            ("optimizer.bpk", optimizer_bytes),
            ("state.json", state_json.as_bytes()),
        ],
        keep,
    )
}

/// `--stop-at` must lie after the step a run starts from (else it is never reached). Shared by
/// `mert pretrain` and `mert train-codec`.
pub fn check_stop_at(stop_at: Option<u64>, step: u64) -> Result<()> {
    if let Some(stop) = stop_at
        && stop <= step
    {
        bail!("--stop-at {stop}: expected a step after the run's current step {step}");
    }
    Ok(())
}

/// Write checkpoint `step-NNNNNNNN` holding `files` (name, bytes; `state.json` marks a
/// checkpoint as finished) in a temp folder renamed into place, then prune to the newest
/// `keep`. Shared by `mert pretrain` and `mert train-codec`.
pub fn save_files(run: &Path, step: u64, files: &[(&str, &[u8])], keep: usize) -> Result<PathBuf> {
    let dir = checkpoints_dir(run);
    std::fs::create_dir_all(&dir)?;
    let name = format!("step-{step:08}");
    let final_dir = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for (file, bytes) in files {
        write_atomic(&tmp.join(file), bytes)?;
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)?;
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("{}: cannot finish the checkpoint", final_dir.display()))?;
    sync_dir(&dir);
    let mut all = list(run)?;
    while all.len() > keep {
        // Rename first (atomic), delete after: a kill mid-delete never leaves a half-removed
        // folder that looks like a checkpoint.
        let old = all.remove(0);
        let name = old
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let doomed = dir.join(format!(".{name}.del"));
        if std::fs::rename(&old, &doomed).is_ok() {
            let _ = std::fs::remove_dir_all(doomed);
        }
    }
    sync_dir(&dir);
    Ok(final_dir)
}

/// The kit's model file for the student (what `mert embed` loads), with the mask embedding
/// as `masked_spec_embed` like the reference checkpoints.
pub fn model_bytes(
    config: &MertConfig,
    trainer: &Pretrainer,
    license: &str,
    step: u64,
) -> Result<Vec<u8>> {
    let source = format!("mert pretrain, step {step}");
    let mut ck = Checkpoint::from_model(config, &trainer.model, &source)?;
    ck.mask_embedding = export_module(&trainer.heads, &source)?
        .get("mask_emb")
        .cloned();
    ck.license = Some(license.to_string());
    Ok(kit::to_bytes(&ck)?)
}

/// Finished checkpoints, oldest first (unfinished temp folders are ignored).
pub fn list(run: &Path) -> Result<Vec<PathBuf>> {
    let dir = checkpoints_dir(run);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
                && p.join("state.json").is_file()
        })
        .collect();
    // by step number: the names' zero padding stops at 8 digits
    let step = |p: &PathBuf| -> u64 {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    found.sort_by_key(|p| (step(p), p.clone()));
    Ok(found)
}

/// Load a checkpoint folder: trainer (stable ids), optimiser bytes, state.
pub fn load(
    dir: &Path,
    heads_config: &HeadsConfig,
    device: &Device,
) -> Result<(MertConfig, Pretrainer, Vec<u8>, RunState)> {
    let at = |f: &str| dir.join(f);
    let state: RunState = serde_json::from_str(
        &std::fs::read_to_string(at("state.json"))
            .with_context(|| format!("{}", at("state.json").display()))?,
    )
    .with_context(|| format!("{}: bad state", at("state.json").display()))?;
    let (config, model) = mert_core::load_path(&at("model.safetensors"))?.into_model(device)?;
    let bytes = std::fs::read(at("heads.safetensors"))
        .with_context(|| format!("{}", at("heads.safetensors").display()))?;
    let (tensors, _) = read_safetensors(&bytes, &at("heads.safetensors").display().to_string())?;
    let heads = load_module(
        PretrainHeads::init(heads_config, config.hidden_size, device),
        tensors,
        device,
    )?;
    let optimizer = std::fs::read(at("optimizer.bpk"))
        .with_context(|| format!("{}", at("optimizer.bpk").display()))?;
    let trainer = Pretrainer { model, heads }.stable_ids();
    Ok((config, trainer, optimizer, state))
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// A new run writes its `config.toml` now. A resumed one, before it touches its folder:
/// refuse a checkpoint past `max_steps` (the run's files would be rewritten as a shorter
/// run's), and list what the new config changes in the run's `config.toml` (`section.key`
/// names) so that a changed `[data]` is not silent; [`resumed_config`] writes it once the
/// checkpoint has loaded.
pub fn start_config(
    run: &Path,
    latest: Option<&Path>,
    max_steps: u64,
    config_path: &Path,
    new_toml: &str,
) -> Result<Vec<String>> {
    let Some(dir) = latest else {
        crate::output::write_atomic(&run.join("config.toml"), new_toml.as_bytes())?;
        return Ok(Vec::new());
    };
    let state_path = dir.join("state.json");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&state_path)
            .with_context(|| format!("{}: cannot read", state_path.display()))?,
    )
    .with_context(|| format!("{}: bad state", state_path.display()))?;
    let step = state["step"]
        .as_u64()
        .with_context(|| format!("{}: no step", state_path.display()))?;
    if step > max_steps {
        bail!(
            "{}: the run is at step {step}, past [train] max_steps = {max_steps} in {}; raise max_steps to continue it",
            run.display(),
            config_path.display()
        );
    }
    let flat = |text: &str| -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        if let Ok(table) = text.parse::<toml::Table>() {
            for (section, value) in table {
                match value {
                    toml::Value::Table(keys) => {
                        for (k, v) in keys {
                            out.insert(format!("{section}.{k}"), v.to_string());
                        }
                    }
                    v => {
                        out.insert(section, v.to_string());
                    }
                }
            }
        }
        out
    };
    let old = match std::fs::read_to_string(run.join("config.toml")) {
        Ok(text) => flat(&text),
        Err(_) => return Ok(Vec::new()),
    };
    let new = flat(new_toml);
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect())
}

/// Once a resumed run's checkpoint has loaded: name what the new config changes, and write
/// it as the run's `config.toml`.
pub fn resumed_config(
    run: &Path,
    changed: &[String],
    toml_text: &str,
    on_note: &mut dyn FnMut(&str),
) -> Result<()> {
    if !changed.is_empty() {
        on_note(&format!(
            "resuming with a config that changes the run's config.toml: {}",
            changed.join(", ")
        ));
    }
    crate::output::write_atomic(&run.join("config.toml"), toml_text.as_bytes())
}

pub fn ensure_empty_or_resume(run: &Path, resume: bool) -> Result<Option<PathBuf>> {
    let latest = list(run)?.pop();
    match (resume, latest) {
        (true, Some(dir)) => Ok(Some(dir)),
        (true, None) => {
            // (a run stopped before its first checkpoint resumes as a new one)
            log::warn!(
                "{}: no checkpoint to resume from; starting a new run",
                run.display()
            );
            Ok(None)
        }
        (false, Some(dir)) => bail!(
            "{}: the run already has checkpoints ({}); pass --resume to continue it or choose another --out",
            run.display(),
            dir.display()
        ),
        (false, None) => Ok(None),
    }
}
