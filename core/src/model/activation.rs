//! GELU in its exact erf form, as MERT uses it. burn's CPU backend evaluates it with one libm
//! `erff` call per element on one thread, about a quarter of MERT-95M's CPU forward time. On
//! that backend (not under autodiff, f32 only) the tensor's own buffer is taken (no copy for a
//! fresh tensor), mapped in place on all threads by a branch-free rational approximation of
//! erf that the compiler vectorises, and handed back. Every other case (wgpu, training) runs
//! burn's op.
//!
//! The approximation: `erf(z) ≈ z·P(z²)/Q(z²)` with degree-5 `P` and `Q`, least-squares
//! fitted here to erf on `[0, 4]`; max abs error 4.3e-7 against erf in f64 over `[-8, 8]`
//! in f32 arithmetic (libm's `erff` is within about 6e-8). Past `|z| = 3.9`, erf rounds to ±1 in
//! f32 and is set so.

use burn::tensor::{DType, Tensor, TensorData};

const P: [f32; 6] = [
    std::f32::consts::FRAC_2_SQRT_PI,
    0.192_495_66,
    0.053_005_9,
    0.003_852_534,
    0.000_286_328_9,
    2.025_415_8e-6,
];
const Q: [f32; 6] = [
    1.0,
    0.503_926_7,
    0.114_956_44,
    0.015_140_165,
    0.001_182_887_4,
    3.791_646_3e-5,
];

/// erf of `z`, to 4.3e-7 (module docs); NaN stays NaN.
#[inline(always)]
pub fn erf_approx(z: f32) -> f32 {
    let s = z * z;
    let p = ((((P[5] * s + P[4]) * s + P[3]) * s + P[2]) * s + P[1]) * s + P[0];
    let q = ((((Q[5] * s + Q[4]) * s + Q[3]) * s + Q[2]) * s + Q[1]) * s + Q[0];
    if z.abs() >= 3.9 {
        z.signum()
    } else {
        z * p / q
    }
}

#[inline(always)]
fn gelu_generic(chunk: &mut [f32]) {
    for x in chunk {
        *x = 0.5 * *x * (1.0 + erf_approx(*x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_avx512(chunk: &mut [f32]) {
    gelu_generic(chunk);
}

/// `0.5·x·(1 + erf(x/√2))` in place; 16 lanes where the CPU has AVX-512.
pub fn gelu_slice(values: &mut [f32]) {
    let map = |chunk: &mut [f32]| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { gelu_avx512(chunk) };
        }
        gelu_generic(chunk);
    };
    #[cfg(all(feature = "flex", not(target_family = "wasm")))]
    {
        use rayon::prelude::*;
        values.par_chunks_mut(1 << 15).for_each(map);
    }
    #[cfg(not(all(feature = "flex", not(target_family = "wasm"))))]
    map(values);
}

/// GELU (exact form): in place on burn's CPU backend, burn's op elsewhere (module docs).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_cpu_inference(&x) {
        return burn::tensor::activation::gelu(x);
    }
    let device = x.device();
    let mut data: TensorData = x.into_data();
    match data.as_mut_slice::<f32>() {
        Ok(values) => gelu_slice(values),
        // not reachable for an f32 tensor; keep the exact op if it ever is
        Err(_) => return burn::tensor::activation::gelu(Tensor::from_data(data, &device)),
    }
    Tensor::from_data(data, &device)
}

/// An f32 tensor on burn's CPU backend without autodiff: the kit's CPU kernels work on host
/// slices outside burn's graph, so a training step (an autodiff device) must not take them.
/// (`Device`'s equality ignores autodiff, hence the explicit check.)
pub(crate) fn on_cpu_inference<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "flex")]
    {
        let device = x.device();
        x.dtype() == DType::F32 && device == burn::tensor::Device::flex() && !device.is_autodiff()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (x, DType::F32);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against erf in f64 (a series and a continued fraction would do; libm's erf is the
    /// independent reference here): max abs error below 5e-7 over [-8, 8], exact signs,
    /// ±1 in the tails, NaN kept.
    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f64;
        for i in -800_000..=800_000 {
            let z = i as f32 * 1e-5;
            let err = (f64::from(erf_approx(z)) - libm::erf(f64::from(z))).abs();
            worst = worst.max(err);
        }
        assert!(worst < 5e-7, "max abs error {worst}");
        assert_eq!(erf_approx(5.0), 1.0);
        assert_eq!(erf_approx(-5.0), -1.0);
        assert!(erf_approx(f32::NAN).is_nan());
        assert_eq!(erf_approx(0.0), 0.0);
    }

    /// The in-place kernel against burn's exact GELU on the CPU backend, relative to the
    /// largest output (how the model's fixtures measure error, with a 1e-4 budget).
    #[cfg(feature = "flex")]
    #[test]
    fn gelu_matches_burn() {
        use burn::tensor::{Device, Distribution};
        let device = Device::flex();
        let x = Tensor::<2>::random([300, 1001], Distribution::Normal(0.0, 3.0), &device);
        let exact = burn::tensor::activation::gelu(x.clone())
            .try_into_vec_as::<f32>()
            .unwrap();
        let fast = gelu(x).try_into_vec_as::<f32>().unwrap();
        let scale = exact.iter().fold(0f32, |m, a| m.max(a.abs()));
        let worst = exact
            .iter()
            .zip(&fast)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst / scale < 1e-6, "max abs error {worst}, scale {scale}");
    }
}
