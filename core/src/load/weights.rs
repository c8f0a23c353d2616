//! Put a [`Checkpoint`]'s tensors into a [`Mert`] module: walk the module's parameters with
//! their paths, look each up under its reference key, and move it to the device.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};

use std::collections::{BTreeMap, HashSet};

use super::Checkpoint;
use super::keys::reference_key;
use super::tensors::{HostTensor, TensorMap};
use crate::error::{MertError, Result};
use crate::model::{Mert, MertConfig};
use crate::quant::gemm::PackedQ8;

/// Moves tensors out of the map into parameters (no copy of the data on the host).
struct Loader {
    tensors: TensorMap,
    /// Keys whose parameter is left as it is (a weight kept as 8-bit codes instead).
    leave: HashSet<String>,
    device: Device,
    path: Vec<String>,
    loaded: usize,
    error: Option<MertError>,
}

impl ModuleMapper for Loader {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let key = reference_key(&self.path.join("."));
        let source = &self.tensors.source;
        if self.leave.contains(&key) {
            return param;
        }
        let Some(host) = self.tensors.tensors.get(&key) else {
            self.error = Some(MertError::tensor(source, &key, "missing"));
            return param;
        };
        let expected: Vec<usize> = param.lazy_shape().iter().copied().collect();
        // burn's Linear keeps its weight as [in, out]; the reference stores [out, in].
        let transpose = D == 2;
        let mut found = host.shape.clone();
        if transpose {
            found.reverse();
        }
        if found != expected || host.shape.len() != D {
            self.error = Some(MertError::tensor(
                source,
                &key,
                format!(
                    "expected shape {expected:?} (burn layout), found {:?}",
                    host.shape
                ),
            ));
            return param;
        }
        let Some(host) = self.tensors.remove(&key) else {
            return param;
        };
        let data = TensorData::new(host.data, host.shape);
        let mut tensor = Tensor::<D>::from_data(data, &self.device);
        if transpose {
            tensor = tensor.transpose();
        }
        self.loaded += 1;
        Param::initialized(param.id, tensor)
    }
}

impl Checkpoint {
    /// Build the model on `device` with this checkpoint's weights (the checkpoint is kept).
    pub fn build(&self, device: &Device) -> Result<Mert> {
        build_model(&self.config, self.tensors.clone(), device)
    }

    /// Build the model and let go of the host copy of the weights as each one is loaded, so
    /// peak memory is one copy of the model, not two.
    pub fn into_model(self, device: &Device) -> Result<(MertConfig, Mert)> {
        let model = build_model(&self.config, self.tensors, device)?;
        Ok((self.config, model))
    }
}

fn build_model(config: &MertConfig, mut tensors: TensorMap, device: &Device) -> Result<Mert> {
    let mut model = Mert::init(config, device);
    // Weights stored as 8-bit codes stay so on the CPU, where the 8-bit kernel is faster
    // than f32: packed here, their f32 copy dropped before it becomes a parameter.
    let mut packed = BTreeMap::new();
    if int8_enabled(device) {
        for (key, _) in model.dense_layers_mut() {
            let key = format!("{key}.weight");
            let Some(c) = tensors.codes.get(&key) else {
                continue;
            };
            if let Some(p) = PackedQ8::new(&c.q, &c.scales, c.rows, c.row_len, c.block) {
                tensors.remove(&key);
                packed.insert(key, p);
            }
        }
    }
    let mut packed_convs = BTreeMap::new();
    if int8_enabled(device) {
        for (i, layer) in model.feature_extractor.conv_layers.iter().enumerate() {
            let key = format!("feature_extractor.conv_layers.{i}.conv.weight");
            let taps = layer.conv.kernel_size;
            let Some(c) = tensors.codes.get(&key).filter(|c| c.row_len % taps == 0) else {
                continue;
            };
            // the kernel's input j·C_in + ch (tap-major, as conv_frames lays out its
            // columns) is stored at ch·taps + j; one scale per output channel only
            let c_in = c.row_len / taps;
            let order = |i: usize| (i % c_in) * taps + i / c_in;
            if let Some(p) =
                PackedQ8::with_order(&c.q, &c.scales, c.rows, c.row_len, c.block, order)
            {
                tensors.remove(&key);
                packed_convs.insert(i, (key, p));
            }
        }
    }
    tensors.codes.clear();
    let leave = packed
        .keys()
        .chain(packed_convs.values().map(|(k, _)| k))
        .cloned()
        .collect();
    let mut model = load_module_leaving(model, tensors, device, leave)?;
    for (key, layer) in model.dense_layers_mut() {
        if let Some(p) = packed.remove(&format!("{key}.weight")) {
            layer.set_int8(p, device);
        }
    }
    let packed_any = !packed_convs.is_empty();
    for (i, (_, p)) in packed_convs {
        model.feature_extractor.conv_layers[i].set_int8(p, device);
    }
    if packed_any {
        release_freed_memory();
    }
    Ok(model)
}

/// The f32 copies of packed weights were freed, but glibc keeps small and medium frees in its
/// heap (its mmap threshold grows after large frees), so the process would stay as large as an
/// f32 model; `malloc_trim` hands that memory back. Elsewhere a no-op.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes a padding size and only releases free memory.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Whether a model built on `device` keeps quantized Linear weights as 8-bit codes: burn's CPU
/// backend on a CPU with the fast kernel ([`crate::quant::gemm::fast`]), unless `MERT_INT8=0`
/// (to compare with the dequantized path).
pub fn int8_enabled(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        *device == Device::flex()
            && !device.is_autodiff()
            && crate::quant::gemm::fast()
            && std::env::var("MERT_INT8").map_or(true, |v| v != "0")
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// Put every tensor of `tensors` into `module`'s parameters (by reference key, Linear weights
/// from `[out, in]`), on `device`. Every parameter must be found with its shape, and every
/// tensor used; the error names the key.
pub fn load_module<M: Module>(module: M, tensors: TensorMap, device: &Device) -> Result<M> {
    load_module_leaving(module, tensors, device, HashSet::new())
}

/// [`load_module`], leaving the parameters under `leave` as they are.
fn load_module_leaving<M: Module>(
    module: M,
    tensors: TensorMap,
    device: &Device,
    leave: HashSet<String>,
) -> Result<M> {
    let total = tensors.tensors.len();
    let source = tensors.source.clone();
    let mut loader = Loader {
        tensors,
        leave,
        device: device.clone(),
        path: Vec::new(),
        loaded: 0,
        error: None,
    };
    let module = module.map(&mut loader);
    if let Some(e) = loader.error {
        return Err(e);
    }
    // Every tensor was matched to a parameter of the right shape, so equal counts mean every
    // tensor went into exactly one parameter.
    if loader.loaded != total {
        let mut extra: Vec<&String> = loader.tensors.tensors.keys().collect();
        extra.sort();
        return Err(MertError::Invalid(format!(
            "{source}: loaded {} of {total} tensors; not used: {}",
            loader.loaded,
            extra
                .iter()
                .take(5)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(module)
}

/// Collects a module's parameters under their reference keys (Linear weights back to
/// `[out, in]`), the inverse of [`Loader`].
struct Exporter {
    path: Vec<String>,
    tensors: TensorMap,
    error: Option<MertError>,
}

impl ModuleVisitor for Exporter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.error.is_some() {
            return;
        }
        let key = reference_key(&self.path.join("."));
        let tensor = param.val();
        let t = if D == 2 { tensor.transpose() } else { tensor };
        let shape = t.dims().to_vec();
        match t.into_data().try_into_vec::<f32>() {
            Ok(data) => self.tensors.insert(key, HostTensor::new(shape, data)),
            Err(e) => {
                self.error = Some(MertError::tensor(
                    "model",
                    &key,
                    format!("cannot read: {e:?}"),
                ))
            }
        }
    }
}

/// Every parameter of `module` under its reference key, on the host (the inverse of
/// [`load_module`]).
pub fn export_module<M: Module>(module: &M, source: &str) -> Result<TensorMap> {
    let mut exporter = Exporter {
        path: Vec::new(),
        tensors: TensorMap::new(source),
        error: None,
    };
    module.visit(&mut exporter);
    match exporter.error {
        Some(e) => Err(e),
        None => Ok(exporter.tensors),
    }
}

impl Checkpoint {
    /// A checkpoint holding `model`'s current weights (e.g. a fresh random initialisation, or
    /// the result of training), ready for the kit's file.
    pub fn from_model(config: &MertConfig, model: &Mert, source: &str) -> Result<Self> {
        let tensors = export_module(model, source)?;
        let mut checkpoint = Checkpoint::from_reference(config.clone(), tensors)?;
        checkpoint.source = source.to_string();
        Ok(checkpoint)
    }
}
