//! Multi-label retrieval metrics as MARBLE reports them: ROC-AUC (rank statistic, ties
//! averaged) and PR-AUC as average precision, per tag and macro-averaged over the tags that
//! have both positives and negatives.

/// Area under the ROC curve of `scores` for binary `labels`; `None` without both classes.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mann-Whitney U with mid-ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum += mid;
            }
        }
        i = j + 1;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (the area under the precision-recall curve as scikit-learn's
/// `average_precision_score` computes it: precision at each distinct threshold, weighted by
/// the recall gained there). `None` without positives.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count();
    if pos == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            seen += 1;
            if labels[k] {
                tp += 1;
            }
        }
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / seen as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

/// Per-tag and macro metrics of `scores` (`[items, tags]` row-major) against `labels`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TagMetrics {
    /// Macro means over the tags whose metrics are defined (0 when none is).
    pub roc_auc: f64,
    pub pr_auc: f64,
    /// Tags with both positive and negative items, the only ones with a ROC-AUC.
    pub defined: usize,
    pub per_tag: Vec<(String, Option<f64>, Option<f64>)>,
}

pub fn macro_metrics(scores: &[f32], labels: &[bool], tags: &[String]) -> TagMetrics {
    let n = tags.len();
    let items = scores.len().checked_div(n).unwrap_or(0);
    let (mut roc, mut pr, mut count) = (0.0, 0.0, 0);
    let mut per_tag = Vec::with_capacity(n);
    for (t, tag) in tags.iter().enumerate() {
        let s: Vec<f32> = (0..items).map(|i| scores[i * n + t]).collect();
        let l: Vec<bool> = (0..items).map(|i| labels[i * n + t]).collect();
        let (r, p) = (roc_auc(&s, &l), average_precision(&s, &l));
        if let (Some(r), Some(p)) = (r, p) {
            roc += r;
            pr += p;
            count += 1;
        }
        per_tag.push((tag.clone(), r, p));
    }
    let c = count.max(1) as f64;
    TagMetrics {
        roc_auc: roc / c,
        pr_auc: pr / c,
        defined: count,
        per_tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_auc_known_values() {
        // Perfect, inverted, and the textbook example with a tie.
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        // scikit-learn: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.75
        let r = roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((r - 0.75).abs() < 1e-12);
        let r = roc_auc(&[0.5, 0.5], &[false, true]).unwrap();
        assert!((r - 0.5).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn average_precision_known_values() {
        // scikit-learn: average_precision_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.8333...
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((ap - 5.0 / 6.0).abs() < 1e-12, "{ap}");
        assert_eq!(average_precision(&[0.3], &[false]), None);
    }
}
