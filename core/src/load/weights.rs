//! Put a [`Checkpoint`]'s tensors into a [`Mert`] module: walk the module's parameters with
//! their paths, look each up under its reference key, and move it to the device.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};

use super::Checkpoint;
use super::keys::reference_key;
use super::tensors::{HostTensor, TensorMap};
use crate::error::{MertError, Result};
use crate::model::{Mert, MertConfig};

/// Moves tensors out of the map into parameters (no copy of the data on the host).
struct Loader {
    tensors: TensorMap,
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

fn build_model(config: &MertConfig, tensors: TensorMap, device: &Device) -> Result<Mert> {
    load_module(Mert::init(config, device), tensors, device)
}

/// Put every tensor of `tensors` into `module`'s parameters (by reference key, Linear weights
/// from `[out, in]`), on `device`. Every parameter must be found with its shape, and every
/// tensor used; the error names the key.
pub fn load_module<M: Module>(module: M, tensors: TensorMap, device: &Device) -> Result<M> {
    let total = tensors.tensors.len();
    let source = tensors.source.clone();
    let mut loader = Loader {
        tensors,
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
