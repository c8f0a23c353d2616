//! Helpers shared by the crate's unit tests.

/// max |want - got| / max |want|: the relative error the kernels' tests bound.
pub(crate) fn max_rel_err(want: &[f32], got: &[f32]) -> f32 {
    assert_eq!(want.len(), got.len(), "outputs of different lengths");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = want
        .iter()
        .zip(got)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    worst / scale
}
