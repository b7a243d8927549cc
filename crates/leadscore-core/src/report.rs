//! Report maths (PRODUCT.md F19): conversion by score bracket with Wilson intervals, ROC
//! AUC, percentiles, histograms. Pure functions over plain numbers, so the store can feed
//! them from SQL aggregates or streams and tests can check them by hand.

use serde::Serialize;

/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `successes` out of `trials`; None for no trials.
pub fn wilson_interval(successes: u64, trials: u64, z: f64) -> Option<(f64, f64)> {
    if trials == 0 || successes > trials {
        return None;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * ((p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n);
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// ROC AUC of `score` for telling positives (won) from negatives (lost): the probability
/// that a random positive scores above a random negative, ties counting half (the
/// Mann-Whitney statistic with average ranks). None without both classes.
pub fn roc_auc(samples: &[(f64, bool)]) -> Option<f64> {
    let positives = samples.iter().filter(|(_, p)| *p).count();
    let negatives = samples.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut sorted: Vec<&(f64, bool)> = samples.iter().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the (average) ranks of the positives, ranks starting at 1.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * sorted[i..=j].iter().filter(|(_, p)| *p).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Nearest-rank percentile (p in 0..=100) of unsorted values; None when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Edges splitting the scores into (up to) ten brackets of equal size: the 10th..90th
/// percentiles, without repeats.
pub fn decile_edges(scores: &[f64]) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..10).filter_map(|d| percentile(scores, d as f64 * 10.0)).collect();
    edges.dedup();
    edges
}

/// How a closed or open contact counts in a bracket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Open,
    Qualified,
    Won,
    Lost,
}

/// One score bracket `[lower, upper)` of a conversion table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BracketRow {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub contacts: u64,
    pub qualified: u64,
    pub won: u64,
    pub lost: u64,
    /// won / (won + lost); None when nothing closed.
    pub conversion: Option<f64>,
    pub wilson_low: Option<f64>,
    pub wilson_high: Option<f64>,
}

/// The conversion table for ascending `edges` (n edges → n + 1 brackets, the first open
/// below, the last open above). A contact falls in the bracket whose lower edge is ≤ its
/// score. Won and lost contacts also count as qualified (they got that far).
pub fn brackets(rows: &[(f64, Outcome)], edges: &[f64]) -> Vec<BracketRow> {
    let mut table: Vec<BracketRow> = (0..=edges.len())
        .map(|i| BracketRow {
            lower: i.checked_sub(1).map(|j| edges[j]),
            upper: edges.get(i).copied(),
            contacts: 0,
            qualified: 0,
            won: 0,
            lost: 0,
            conversion: None,
            wilson_low: None,
            wilson_high: None,
        })
        .collect();
    for (score, outcome) in rows {
        let index = edges.partition_point(|edge| edge <= score);
        let row = &mut table[index];
        row.contacts += 1;
        match outcome {
            Outcome::Open => {}
            Outcome::Qualified => row.qualified += 1,
            Outcome::Won => {
                row.qualified += 1;
                row.won += 1;
            }
            Outcome::Lost => {
                row.qualified += 1;
                row.lost += 1;
            }
        }
    }
    for row in &mut table {
        let closed = row.won + row.lost;
        if closed > 0 {
            row.conversion = Some(row.won as f64 / closed as f64);
            if let Some((low, high)) = wilson_interval(row.won, closed, Z95) {
                row.wilson_low = Some(low);
                row.wilson_high = Some(high);
            }
        }
    }
    table
}

/// Whether conversion fails to rise with the score ("your points are backwards"): some
/// higher bracket converts *significantly* worse than a lower one (its Wilson interval lies
/// wholly below the lower bracket's). Brackets without closed contacts are ignored.
pub fn points_backwards(table: &[BracketRow]) -> bool {
    let closed: Vec<&BracketRow> = table.iter().filter(|r| r.conversion.is_some()).collect();
    closed.iter().enumerate().any(|(i, low)| {
        closed[i + 1..].iter().any(|high| match (high.wilson_high, low.wilson_low) {
            (Some(high_top), Some(low_bottom)) => high_top < low_bottom,
            _ => false,
        })
    })
}

/// Counts of `values` in `bins` equal-width bins over [min, max] (the last bin closed).
pub fn histogram(values: &[f64], bins: usize) -> Vec<(f64, f64, u64)> {
    if values.is_empty() || bins == 0 {
        return Vec::new();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = if max > min { (max - min) / bins as f64 } else { 1.0 };
    let mut counts = vec![0u64; bins];
    for v in values {
        let index = (((v - min) / width) as usize).min(bins - 1);
        counts[index] += 1;
    }
    counts.into_iter().enumerate().map(|(i, c)| (min + i as f64 * width, min + (i + 1) as f64 * width, c)).collect()
}

/// A lead that became hot: when, who owns it, and when sales first contacted it.
#[derive(Clone, Debug)]
pub struct HotLead {
    pub owner: Option<String>,
    pub hot_at: i64,
    pub contacted_at: Option<i64>,
}

/// Speed to lead for one owner (or everyone): times from becoming hot to the first
/// contact, in milliseconds, and SLA breaches.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpeedRow {
    pub owner: Option<String>,
    pub hot: u64,
    pub contacted: u64,
    pub median_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    /// Contacted later than the SLA, or not contacted and already older than the SLA at `now`.
    pub breaches: u64,
}

/// Speed to lead for everyone (first row, `owner: None`) and per owner, sorted by owner;
/// leads without an owner count in the first row only. A contact made before the lead
/// became hot counts as 0.
pub fn speed_to_lead(leads: &[HotLead], sla_ms: i64, now: i64) -> Vec<SpeedRow> {
    fn row(owner: Option<String>, leads: &[&HotLead], sla_ms: i64, now: i64) -> SpeedRow {
        let times: Vec<f64> = leads.iter().filter_map(|l| l.contacted_at.map(|c| (c - l.hot_at).max(0) as f64)).collect();
        let breaches = leads
            .iter()
            .filter(|l| match l.contacted_at {
                Some(c) => c - l.hot_at > sla_ms,
                None => now - l.hot_at > sla_ms,
            })
            .count() as u64;
        SpeedRow {
            owner,
            hot: leads.len() as u64,
            contacted: times.len() as u64,
            median_ms: percentile(&times, 50.0),
            p90_ms: percentile(&times, 90.0),
            breaches,
        }
    }
    let all: Vec<&HotLead> = leads.iter().collect();
    let mut rows = vec![row(None, &all, sla_ms, now)];
    let mut owners: Vec<String> = leads.iter().filter_map(|l| l.owner.clone()).collect();
    owners.sort();
    owners.dedup();
    for owner in owners {
        let theirs: Vec<&HotLead> = leads.iter().filter(|l| l.owner.as_deref() == Some(owner.as_str())).collect();
        rows.push(row(Some(owner), &theirs, sla_ms, now));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn wilson_matches_hand_computed_values() {
        // 8 of 10: centre (0.8 + 1.9208/10) / 1.38415 = 0.71674, half 0.23669 / 1.38415… → [0.4902, 0.9433]
        let (low, high) = wilson_interval(8, 10, Z95).unwrap();
        assert!(close(low, 0.4902) && close(high, 0.9433), "{low} {high}");
        // 0 of 5: [0, 0.4345]
        let (low, high) = wilson_interval(0, 5, Z95).unwrap();
        assert!(close(low, 0.0) && close(high, 0.4345), "{low} {high}");
        assert_eq!(wilson_interval(0, 0, Z95), None);
    }

    #[test]
    fn auc_counts_pairs_and_ties() {
        // Positives 3, 5; negatives 1, 4: pairs (3>1) (3<4) (5>1) (5>4) → 3/4.
        let samples = [(3.0, true), (5.0, true), (1.0, false), (4.0, false)];
        assert_eq!(roc_auc(&samples), Some(0.75));
        // A tie counts half: positive 2 vs negatives 2 and 1 → (0.5 + 1) / 2.
        assert_eq!(roc_auc(&[(2.0, true), (2.0, false), (1.0, false)]), Some(0.75));
        assert_eq!(roc_auc(&[(1.0, true), (2.0, false)]), Some(0.0));
        assert_eq!(roc_auc(&[(1.0, true)]), None);
    }

    #[test]
    fn brackets_split_at_edges_and_convert() {
        let rows = [
            (5.0, Outcome::Lost),
            (10.0, Outcome::Won), // on the edge: the upper bracket
            (12.0, Outcome::Lost),
            (40.0, Outcome::Won),
            (60.0, Outcome::Won),
            (70.0, Outcome::Qualified),
            (80.0, Outcome::Open),
        ];
        let table = brackets(&rows, &[10.0, 50.0]);
        assert_eq!(table.len(), 3);
        assert_eq!((table[0].contacts, table[0].won, table[0].lost), (1, 0, 1));
        assert_eq!((table[1].lower, table[1].upper), (Some(10.0), Some(50.0)));
        assert_eq!((table[1].contacts, table[1].won, table[1].lost, table[1].qualified), (3, 2, 1, 3));
        assert_eq!(table[1].conversion, Some(2.0 / 3.0));
        assert_eq!((table[2].contacts, table[2].qualified, table[2].won), (3, 2, 1));
        assert_eq!(table[2].conversion, Some(1.0));
        assert!(!points_backwards(&table));
    }

    #[test]
    fn flags_points_that_are_backwards() {
        // Low scores win 45 of 50, high scores 5 of 50: significantly backwards.
        let mut rows = Vec::new();
        for i in 0..50 {
            rows.push((1.0, if i < 45 { Outcome::Won } else { Outcome::Lost }));
            rows.push((100.0, if i < 5 { Outcome::Won } else { Outcome::Lost }));
        }
        assert!(points_backwards(&brackets(&rows, &[50.0])));
        // A small, insignificant dip is not flagged.
        let rows = [(1.0, Outcome::Won), (1.0, Outcome::Lost), (100.0, Outcome::Lost), (100.0, Outcome::Won), (100.0, Outcome::Lost)];
        assert!(!points_backwards(&brackets(&rows, &[50.0])));
    }

    #[test]
    fn speed_to_lead_by_owner_with_sla() {
        const H: i64 = 3_600_000;
        let lead = |owner: &str, hot_at: i64, contacted_at: Option<i64>| HotLead { owner: Some(owner.into()), hot_at, contacted_at };
        let leads = [
            lead("ann", 0, Some(H)),                                           // 1 h
            lead("ann", 0, Some(30 * H)),                                      // 30 h: breach
            lead("bob", 0, Some(2 * H)),                                       // 2 h
            lead("bob", 10 * H, None),                                         // open, 38 h old at `now`: breach
            lead("bob", 40 * H, None),                                         // open, 8 h old: not yet
            HotLead { owner: None, hot_at: 5 * H, contacted_at: Some(4 * H) }, // contacted before: 0
        ];
        let rows = speed_to_lead(&leads, 24 * H, 48 * H);
        let all = &rows[0];
        assert_eq!((all.hot, all.contacted, all.breaches), (6, 4, 2));
        // Times 0, 1, 2, 30 h: median (nearest rank) 1 h, p90 30 h.
        assert_eq!((all.median_ms, all.p90_ms), (Some(H as f64), Some(30.0 * H as f64)));
        assert_eq!(rows[1].owner.as_deref(), Some("ann"));
        assert_eq!((rows[1].hot, rows[1].breaches, rows[1].median_ms), (2, 1, Some(H as f64)));
        assert_eq!((rows[2].hot, rows[2].contacted, rows[2].breaches), (3, 1, 1));
        assert_eq!(rows.len(), 3, "unowned leads count in the total only");
    }

    #[test]
    fn percentiles_deciles_histograms() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(5.0));
        assert_eq!(percentile(&values, 90.0), Some(9.0));
        assert_eq!(percentile(&values, 100.0), Some(10.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(decile_edges(&values), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(decile_edges(&[3.0; 20]), vec![3.0]);
        let h = histogram(&[0.0, 1.0, 2.0, 10.0], 5);
        // Width 2: [0, 2) holds 0 and 1, [2, 4) holds 2, the last bin holds 10.
        assert_eq!(h.iter().map(|b| b.2).collect::<Vec<_>>(), vec![2, 1, 0, 0, 1]);
    }
}
