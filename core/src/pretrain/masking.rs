//! Span masking of the student's frames (HuBERT/MERT `compute_mask_indices`, static spans).

use super::rng::StepRng;

/// Which frames of each row are masked: `mask[b][t]`.
///
/// Per row: `int(prob * frames / span + U[0,1))` span starts (probabilistic rounding), at
/// least `min_masks`, drawn without replacement from `0..frames - span`; each start masks
/// `span` frames (spans may overlap). Every row is then cut down, by a random subset, to the
/// smallest masked count in the batch, so all rows mask the same number of frames.
pub fn span_mask(
    rng: &mut StepRng,
    batch: usize,
    frames: usize,
    prob: f64,
    span: usize,
    min_masks: usize,
) -> Vec<Vec<bool>> {
    let mut rows: Vec<Vec<usize>> = Vec::with_capacity(batch);
    for _ in 0..batch {
        let wanted = (prob * frames as f64 / span as f64 + rng.uniform()) as usize;
        let wanted = wanted.max(min_masks);
        let starts_room = frames.saturating_sub(span);
        let count = wanted.min(starts_room);
        let mut positions: Vec<usize> = rng
            .choose(starts_room, count)
            .into_iter()
            .flat_map(|s| s..s + span)
            .filter(|&t| t < frames)
            .collect();
        positions.sort_unstable();
        positions.dedup();
        rows.push(positions);
    }
    let min_len = rows.iter().map(Vec::len).min().unwrap_or(0);
    rows.into_iter()
        .map(|positions| {
            let keep: Vec<usize> = if positions.len() > min_len {
                rng.choose(positions.len(), min_len)
                    .into_iter()
                    .map(|i| positions[i])
                    .collect()
            } else {
                positions
            };
            let mut mask = vec![false; frames];
            for t in keep {
                mask[t] = true;
            }
            mask
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_about_55_percent_with_equal_counts() {
        let mut rng = StepRng::new(3);
        let mask = span_mask(&mut rng, 8, 374, 0.8, 5, 2);
        let counts: Vec<usize> = mask
            .iter()
            .map(|r| r.iter().filter(|&&m| m).count())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
        let frac = counts[0] as f64 / 374.0;
        // 1 - exp(-0.8) = 0.55 expected; the batch minimum sits a little below.
        assert!((0.42..0.62).contains(&frac), "{frac}");
    }

    #[test]
    fn short_rows_still_get_min_masks() {
        let mut rng = StepRng::new(5);
        let mask = span_mask(&mut rng, 2, 12, 0.0, 5, 2);
        for row in &mask {
            assert!(row.iter().filter(|&&m| m).count() >= 5);
        }
        // Too short for any span: nothing masked, no panic.
        let mask = span_mask(&mut rng, 2, 4, 0.8, 5, 2);
        assert!(mask.iter().all(|r| r.iter().all(|&m| !m)));
    }
}
