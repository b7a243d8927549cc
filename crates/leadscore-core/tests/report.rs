//! The report maths against brute force on random data.

use leadscore_core::report::{Outcome, brackets, roc_auc};
use proptest::prelude::*;

proptest! {
    #[test]
    fn auc_equals_pair_counting(samples in proptest::collection::vec((0u8..20, any::<bool>()), 0..60)) {
        let samples: Vec<(f64, bool)> = samples.into_iter().map(|(s, p)| (f64::from(s), p)).collect();
        let positives: Vec<f64> = samples.iter().filter(|s| s.1).map(|s| s.0).collect();
        let negatives: Vec<f64> = samples.iter().filter(|s| !s.1).map(|s| s.0).collect();
        let expected = if positives.is_empty() || negatives.is_empty() {
            None
        } else {
            let wins: f64 = positives
                .iter()
                .flat_map(|p| negatives.iter().map(move |n| if p > n { 1.0 } else if p == n { 0.5 } else { 0.0 }))
                .sum();
            Some(wins / (positives.len() * negatives.len()) as f64)
        };
        match (roc_auc(&samples), expected) {
            (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-12, "{} vs {}", a, b),
            (a, b) => prop_assert_eq!(a, b),
        }
    }

    #[test]
    fn brackets_account_for_every_contact(scores in proptest::collection::vec(0u16..200, 0..80), edges in proptest::collection::btree_set(0u16..200, 0..6)) {
        let rows: Vec<(f64, Outcome)> = scores.iter().enumerate().map(|(i, s)| (f64::from(*s), [Outcome::Open, Outcome::Qualified, Outcome::Won, Outcome::Lost][i % 4])).collect();
        let edges: Vec<f64> = edges.into_iter().map(f64::from).collect();
        let table = brackets(&rows, &edges);
        prop_assert_eq!(table.iter().map(|r| r.contacts).sum::<u64>(), rows.len() as u64);
        for row in &table {
            let inside = rows.iter().filter(|(s, _)| row.lower.is_none_or(|l| *s >= l) && row.upper.is_none_or(|u| *s < u)).count();
            prop_assert_eq!(row.contacts, inside as u64, "the bracket holds exactly the scores within its bounds");
            prop_assert!(row.won + row.lost <= row.qualified);
        }
        for (score, _) in &rows {
            let holders = table.iter().filter(|r| r.lower.is_none_or(|l| *score >= l) && r.upper.is_none_or(|u| *score < u)).count();
            prop_assert_eq!(holders, 1, "each score falls in exactly one bracket");
        }
    }
}
