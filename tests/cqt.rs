//! The CQT teacher against nnAudio 0.3.4 `CQT1992v2` with MERT's arguments (fixtures from
//! `tests/reference/gen_cqt.py`): deterministic, odd-length and real music input.
//! Tolerance: max |a - b| over bins and frames <= 1e-4 of the reference's peak magnitude.

use std::path::Path;

use mert_core::load::tensors::{HostTensor, TensorMap, read_safetensors};
use mert_core::teachers::Cqt;

fn fixtures() -> TensorMap {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cqt/reference.safetensors");
    read_safetensors(&std::fs::read(&p).unwrap(), "cqt fixture")
        .unwrap()
        .0
}

/// Our `[frames, bins]` per row against the reference `[rows, bins, frames]`: peak-relative error.
fn compare(cqt: &Cqt, input: &HostTensor, want: &HostTensor) -> f64 {
    let (rows, len) = (input.shape[0], input.shape[1]);
    let (bins, frames) = (want.shape[1], want.shape[2]);
    let (mut diff, mut peak) = (0f64, 0f64);
    for r in 0..rows {
        let got = cqt
            .magnitudes(&input.data[r * len..(r + 1) * len], 2)
            .unwrap();
        assert_eq!(got.len(), frames * bins);
        for b in 0..bins {
            for t in 0..frames {
                let w = want.data[(r * bins + b) * frames + t] as f64;
                diff = diff.max((got[t * bins + b] as f64 - w).abs());
                peak = peak.max(w.abs());
            }
        }
    }
    diff / peak
}

#[test]
fn cqt_matches_nnaudio_on_every_fixture() {
    let f = fixtures();
    let cqt = Cqt::mert();
    for case in ["det", "odd", "music"] {
        let input = f.get(&format!("{case}.input")).unwrap();
        let e = compare(&cqt, input, f.get(&format!("{case}.cqt")).unwrap());
        let e64 = compare(&cqt, input, f.get(&format!("{case}.cqt_f64")).unwrap());
        eprintln!("{case}: peak-relative error vs nnAudio {e:.2e}, vs float64 {e64:.2e}");
        assert!(e <= 1e-4, "{case}: {e:e}");
        assert!(e64 <= 1e-4, "{case} (f64): {e64:e}");
    }
}

#[test]
fn reference_statistics_of_the_deterministic_input_are_reproduced() {
    // Spec: CQT of the deterministic 2 s input has shape (2, 336, 151), mean 0.175890,
    // max 17.377108 (nnAudio, float32).
    let f = fixtures();
    let input = f.get("det.input").unwrap();
    let cqt = Cqt::mert();
    let mut all = Vec::new();
    for r in 0..2 {
        let m = cqt
            .magnitudes(&input.data[r * 48_000..(r + 1) * 48_000], 1)
            .unwrap();
        assert_eq!(m.len(), 151 * 336);
        all.extend(m);
    }
    let mean = all.iter().map(|&v| v as f64).sum::<f64>() / all.len() as f64;
    let max = all.iter().cloned().fold(0f32, f32::max) as f64;
    assert!((mean - 0.175890).abs() < 1e-5, "mean {mean}");
    assert!((max - 17.377108).abs() / 17.377108 < 1e-5, "max {max}");
}
