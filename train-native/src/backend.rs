//! Choosing the compute device at the edge: `--backend cpu` (burn Flex) or `--backend wgpu`.

use anyhow::Result;
use burn::tensor::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// burn's Flex CPU backend.
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12).
    Wgpu,
}

impl Backend {
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => wgpu_device(),
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
