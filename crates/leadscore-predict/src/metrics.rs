//! Holdout metrics: ROC AUC, log loss and the calibration table.

use serde::{Deserialize, Serialize};

/// Probabilities are clipped to [EPSILON, 1 − EPSILON] in log loss so a confident mistake
/// costs a large but finite amount (the same clip scikit-learn used for years).
const LOG_LOSS_EPSILON: f64 = 1e-15;

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the Mann–Whitney U statistic with average ranks, which
/// equals the trapezoid area under the ROC curve).
///
/// Returns 0.5 when either class is absent: there is no ranking to measure.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    debug_assert_eq!(scores.len(), labels.len());
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return 0.5;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]].total_cmp(&scores[order[start]]).is_eq() {
            end += 1;
        }
        // Ranks start+1 ..= end share their average.
        let average_rank = (start + 1 + end) as f64 / 2.0;
        let tied_positives = order[start..end].iter().filter(|&&i| labels[i]).count();
        positive_rank_sum += average_rank * tied_positives as f64;
        start = end;
    }
    let p = positives as f64;
    (positive_rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64)
}

/// Mean negative log-likelihood of the labels under the predicted probabilities (natural log).
pub fn log_loss(probabilities: &[f64], labels: &[bool]) -> f64 {
    debug_assert_eq!(probabilities.len(), labels.len());
    if probabilities.is_empty() {
        return 0.0;
    }
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &label)| {
            let p = p.clamp(LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON);
            if label { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / probabilities.len() as f64
}

/// One row of the calibration table: predictions in [lo, hi) (the last bin includes 1.0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// Ten equal-width bins over the predicted probability; empty bins are left out. A calibrated
/// model has `observed_rate ≈ mean_predicted` in every bin.
pub fn calibration_table(probabilities: &[f64], labels: &[bool]) -> Vec<CalibrationBin> {
    const BINS: usize = 10;
    let mut count = [0usize; BINS];
    let mut predicted = [0.0f64; BINS];
    let mut observed = [0usize; BINS];
    for (&p, &label) in probabilities.iter().zip(labels) {
        let bin = ((p * BINS as f64).floor().max(0.0) as usize).min(BINS - 1);
        count[bin] += 1;
        predicted[bin] += p;
        observed[bin] += usize::from(label);
    }
    (0..BINS)
        .filter(|&bin| count[bin] > 0)
        .map(|bin| CalibrationBin {
            lo: bin as f64 / BINS as f64,
            hi: (bin + 1) as f64 / BINS as f64,
            count: count[bin],
            mean_predicted: predicted[bin] / count[bin] as f64,
            observed_rate: observed[bin] as f64 / count[bin] as f64,
        })
        .collect()
}

/// The logistic function, written to stay finite for any finite input.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_a_perfect_ranking_is_one_and_of_an_inverted_one_zero() {
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &labels), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &labels), 0.0);
    }

    #[test]
    fn auc_counts_ties_as_half() {
        // All equal: every positive/negative pair is a tie.
        assert_eq!(roc_auc(&[0.5; 6], &[true, false, true, false, false, true]), 0.5);
        // Pairs (positive, negative): (0.8, 0.1) win, (0.8, 0.4) win, (0.4, 0.1) win, (0.4, 0.4) tie
        // → (3 + 0.5) / 4.
        assert_eq!(roc_auc(&[0.1, 0.4, 0.4, 0.8], &[false, false, true, true]), 0.875);
    }

    #[test]
    fn auc_by_hand() {
        // Positives 0.35, 0.8; negatives 0.1, 0.4, 0.9.
        // 0.35 beats 0.1 only (1 of 3); 0.8 beats 0.1 and 0.4 (2 of 3) → 3 / 6.
        let auc = roc_auc(&[0.1, 0.35, 0.4, 0.8, 0.9], &[false, true, false, true, false]);
        assert!((auc - 0.5).abs() < 1e-12);
        let auc = roc_auc(&[0.1, 0.35, 0.4, 0.8], &[false, true, false, true]);
        assert!((auc - 0.75).abs() < 1e-12);
    }

    #[test]
    fn auc_without_one_class_is_one_half() {
        assert_eq!(roc_auc(&[0.1, 0.9], &[true, true]), 0.5);
    }

    #[test]
    fn log_loss_by_hand_and_clipped() {
        let loss = log_loss(&[0.8, 0.4], &[true, false]);
        assert!((loss - (-(0.8f64.ln()) - 0.6f64.ln()) / 2.0).abs() < 1e-12);
        assert_eq!(log_loss(&[0.5], &[true]), 2f64.ln());
        let confident_mistake = log_loss(&[0.0], &[true]);
        assert!(confident_mistake.is_finite() && (confident_mistake - 34.538776).abs() < 1e-5);
    }

    #[test]
    fn calibration_bins_by_hand() {
        let bins = calibration_table(&[0.05, 0.15, 0.12, 1.0, 0.95], &[false, true, false, true, true]);
        assert_eq!(bins.len(), 3);
        assert_eq!((bins[0].lo, bins[0].count), (0.0, 1));
        assert_eq!((bins[1].count, bins[1].observed_rate), (2, 0.5));
        assert!((bins[1].mean_predicted - 0.135).abs() < 1e-12);
        assert_eq!((bins[2].lo, bins[2].hi, bins[2].count, bins[2].observed_rate), (0.9, 1.0, 2, 1.0));
    }

    #[test]
    fn sigmoid_is_stable() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-800.0) >= 0.0 && sigmoid(800.0) == 1.0);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-15);
    }
}
