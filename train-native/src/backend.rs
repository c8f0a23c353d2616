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

    /// `n` devices for data-parallel training, the main one first. On `cpu` these are `n`
    /// replicas on the one CPU device (threads sharing its cores: the multi-device code path,
    /// not a speed-up); on `wgpu` and `cuda` the first `n` adapters or GPUs.
    pub fn devices(self, n: usize) -> Result<Vec<Device>> {
        if n == 0 || n > MAX_DEVICES {
            anyhow::bail!("--devices {n}: expected 1 to {MAX_DEVICES}");
        }
        if n == 1 {
            return Ok(vec![self.device()?]);
        }
        match self {
            Backend::Cpu => Ok(vec![Device::flex(); n]),
            Backend::Wgpu => wgpu_devices(n),
            Backend::Cuda => cuda_devices(n),
        }
    }
}

/// More replicas than this is a typo, not a machine.
const MAX_DEVICES: usize = 64;

fn take(kind: &str, found: Vec<Device>, n: usize) -> Result<Vec<Device>> {
    if found.len() < n {
        anyhow::bail!(
            "--devices {n}: this machine has {} {kind} device(s)",
            found.len()
        );
    }
    Ok(found.into_iter().take(n).collect())
}

#[cfg(feature = "wgpu")]
fn wgpu_devices(n: usize) -> Result<Vec<Device>> {
    let found = Device::enumerate(burn::tensor::DeviceType::Wgpu).into_vec();
    take("wgpu", found, n)
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_devices(_: usize) -> Result<Vec<Device>> {
    wgpu_device().map(|d| vec![d])
}

#[cfg(feature = "cuda")]
fn cuda_devices(n: usize) -> Result<Vec<Device>> {
    let found = Device::enumerate(burn::tensor::DeviceType::Cuda).into_vec();
    take("CUDA", found, n)
}

#[cfg(not(feature = "cuda"))]
fn cuda_devices(_: usize) -> Result<Vec<Device>> {
    cuda_device().map(|d| vec![d])
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
