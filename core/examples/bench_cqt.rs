//! CQT throughput on deterministic noise, for `scripts/bench_cqt.py` (which runs nnAudio in the
//! same session and prints the ratio). Prints one JSON line.
//!
//! `cargo run --release -p mert-core --example bench_cqt -- --seconds 60 --threads 1`

use std::time::Instant;

use mert_core::teachers::Cqt;

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = arg("--seconds", 60.0);
    let threads = arg("--threads", 1.0) as usize;
    let repeats = arg("--repeats", 5.0) as usize;
    let cqt = Cqt::mert();
    let n = (seconds * cqt.config().sample_rate as f64) as usize;
    // xorshift noise: deterministic, no extra dependency
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let x: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let _ = cqt.magnitudes(&x[..n.min(48_000)], threads);
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            let m = cqt.magnitudes(&x, threads).expect("cqt");
            std::hint::black_box(m);
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"seconds_audio\":{seconds},\"threads\":{threads},\"elapsed_s_median\":{median:.6},\"elapsed_s_min\":{:.6},\"audio_s_per_s\":{:.3}}}",
        times[0],
        seconds / median
    );
}
