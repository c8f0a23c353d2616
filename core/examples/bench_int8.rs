//! Time the 8-bit product (`quant::gemm`) against burn's f32 matmul on one Linear's shape.
//! `cargo run --release -p mert-core --example bench_int8 -- [ROWS] [IN] [OUT] [REPEATS]`

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use mert_core::quant::blocks::quantize_q8;
use mert_core::quant::gemm::{self, PackedQ8};

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (m, k, n, repeats) = (arg(1, 2250), arg(2, 768), arg(3, 3072), arg(4, 5));
    let device = Device::flex();
    let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 0.05), &device);
    let xs = x.clone().into_data().try_to_vec::<f32>().expect("f32");
    let wt = w
        .clone()
        .transpose()
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32");
    let (codes, scales) = quantize_q8(&wt, k, k);
    let packed = PackedQ8::new(&codes, &scales, n, k, k).expect("pack");
    let time = |f: &mut dyn FnMut()| {
        f();
        let mut best = f64::MAX;
        for _ in 0..repeats {
            let s = Instant::now();
            f();
            best = best.min(s.elapsed().as_secs_f64());
        }
        best
    };
    let f32_s = time(&mut || {
        std::hint::black_box(x.clone().matmul(w.clone()).into_data());
    });
    let i8_s = time(&mut || {
        std::hint::black_box(gemm::matmul(&xs, m, &packed, None));
    });
    let gmac = (m * k * n) as f64 / 1e9;
    println!(
        "{m}x{k}x{n}: f32 {f32_s:.4} s ({:.1} GMAC/s), int8 {i8_s:.4} s ({:.1} GMAC/s), fast kernel: {}",
        gmac / f32_s,
        gmac / i8_s,
        gemm::fast()
    );
}
