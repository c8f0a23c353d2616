//! Data-parallel steps over several devices, burn's multi-device way: each device runs its
//! share of the step's micro-batches on its own copy of the model, the gradients are gathered
//! on the main device (moved there and summed), and the optimiser steps there once.
//!
//! With `precision = "bf16"` each device's copy of the backbone is cast to bfloat16 (the heads
//! and the norms stay f32); its gradients come back as f32 onto the f32 master weights (mixed precision).
//!
//! Micro-batch `m` of a step goes to device `m % devices`, and its RNG streams depend on `m`
//! only, so a run on N devices follows the one-device run with the same `update_freq` (the
//! sums differ only in their order).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{DType, Device, FloatDType, Tensor};
use mert_core::pretrain::NoiseMixture;

use super::checkpoint::Pretrainer;
use super::config::Precision;
use super::data::Batch;
use super::train::{Run, batch_loss, scalar};

/// The loss terms of a step, summed over its micro-batches.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sums {
    pub loss: f64,
    pub codes: f64,
    pub cqt: f64,
    pub pen: f64,
}

impl Sums {
    fn add(&mut self, other: Sums) {
        self.loss += other.loss;
        self.codes += other.codes;
        self.cqt += other.cqt;
        self.pen += other.pen;
    }
}

/// The step's gradients (of the mean loss over its micro-batches) on the main device.
pub fn step_grads(
    trainer: &Pretrainer,
    run: &Run,
    micro: &[Batch],
    step: u64,
    mixture: Option<&NoiseMixture>,
) -> (GradientsParams, Sums) {
    let n = run.devices.len();
    let half = match run.config.train.precision {
        Precision::F32 => None,
        Precision::Bf16 => Some(FloatDType::BF16),
    };
    if n <= 1 && half.is_none() {
        return share(trainer, run, &run.device, micro, 0, 1, step, mixture);
    }
    let parts: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = run
            .devices
            .iter()
            .enumerate()
            .map(|(d, device)| {
                // A fresh leaf copy per device, even on the main one: the replicas' graphs
                // must not share nodes.
                let mut replica = trainer.clone().fork(device);
                if let Some(dtype) = half {
                    replica.model = replica.model.map(&mut CastParams {
                        dtype,
                        path: Vec::new(),
                    });
                }
                scope.spawn(move || {
                    let (mut grads, sums) =
                        share(&replica, run, device, micro, d, n, step, mixture);
                    if half.is_some() {
                        replica.visit(&mut GradsToF32 { grads: &mut grads });
                    }
                    (grads.to_device(&run.device, &replica), sums)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join()).collect()
    });
    let mut gathered = GradientsAccumulator::<Pretrainer>::new();
    let mut sums = Sums::default();
    for part in parts {
        let (grads, s) = part.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        gathered.accumulate(trainer, grads);
        sums.add(s);
    }
    (gathered.grads(), sums)
}

/// Micro-batches `first, first + stride, ...` on one device.
#[allow(clippy::too_many_arguments)]
fn share(
    replica: &Pretrainer,
    run: &Run,
    device: &Device,
    micro: &[Batch],
    first: usize,
    stride: usize,
    step: u64,
    mixture: Option<&NoiseMixture>,
) -> (GradientsParams, Sums) {
    let per_update = run.config.train.update_freq as f64;
    let mut accumulator = GradientsAccumulator::<Pretrainer>::new();
    let mut sums = Sums::default();
    for (m, batch) in micro.iter().enumerate().skip(first).step_by(stride) {
        let terms = batch_loss(replica, run, device, batch, step, m as u64, mixture, true);
        let objective = terms.total.clone() / per_update;
        let grads = GradientsParams::from_grads(objective.backward(), replica);
        accumulator.accumulate(replica, grads);
        sums.add(Sums {
            loss: scalar(&terms.total.detach()),
            codes: scalar(&terms.codes.detach()),
            cqt: scalar(&terms.cqt.detach()),
            pen: scalar(&terms.features_pen.detach()),
        });
    }
    (accumulator.grads(), sums)
}

/// A compute copy's parameters in a half type, as fresh leaves with the same ids; the
/// norms' parameters stay f32 (the norms compute in f32, `mert_core::model::norm`).
struct CastParams {
    dtype: FloatDType,
    path: Vec<String>,
}

impl ModuleMapper for CastParams {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.path.iter().any(|p| p.contains("norm")) {
            return param;
        }
        let dtype = self.dtype;
        param.map(|t| t.cast(dtype).detach().require_grad())
    }
}

/// A half-type copy's gradients back to f32, for the master weights.
struct GradsToF32<'a> {
    grads: &'a mut GradientsParams,
}

impl ModuleVisitor for GradsToF32<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let g = if g.dtype() == DType::F32 {
                g
            } else {
                g.cast(DType::F32)
            };
            self.grads.register(param.id, g);
        }
    }
}
