//! Choosing the compute device at the edge: `--backend cpu` (burn Flex), `--backend wgpu`, or
//! `--backend cuda` in a build with the `cuda` feature.

use anyhow::Result;
use burn::tensor::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// burn's Flex CPU backend.
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12).
    Wgpu,
    /// burn's CUDA backend (NVIDIA GPUs; a build with the `cuda` feature).
    Cuda,
}

impl Backend {
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => wgpu_device(),
            Backend::Cuda => cuda_device(),
        }
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    Device::wgpu_options()
        .init()
        .map_err(|e| anyhow::anyhow!("--backend wgpu: no usable GPU adapter ({e})"))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device> {
    anyhow::bail!(
        "--backend wgpu: this build of mert has no wgpu support (build with the `wgpu` feature)"
    )
}

/// The first CUDA device. A missing driver or GPU shows up when burn first uses it.
#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    anyhow::bail!(
        "--backend cuda: this build of mert has no CUDA support (build with `--features cuda`, \
         see README.md, Pretraining)"
    )
}
