//! The learning-rate recipe: linear warm-up to the peak, then linear decay to zero at the
//! last step (fairseq `polynomial_decay` with power 1, end learning rate 0).

pub fn learning_rate(step: u64, peak: f64, warmup_steps: u64, max_steps: u64) -> f64 {
    if warmup_steps > 0 && step < warmup_steps {
        return peak * (step + 1) as f64 / warmup_steps as f64;
    }
    if step >= max_steps {
        return 0.0;
    }
    let decay = (max_steps - warmup_steps).max(1) as f64;
    peak * (max_steps - step) as f64 / decay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_linear_decay() {
        assert!((learning_rate(0, 1.0, 10, 110) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((learning_rate(10, 1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((learning_rate(60, 1.0, 10, 110) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(110, 1.0, 10, 110), 0.0);
        assert!((learning_rate(0, 2.0, 0, 4) - 2.0).abs() < 1e-12);
    }
}
