//! Feature encoding, fitted on the training part only.
//!
//! A categorical feature keeps the levels seen at least `min_level_count` times (at most
//! `max_levels` of them, the most frequent, fewer when `max_logistic_columns` requires); the rest share one "other" level, and missing is a
//! level of its own. A numeric feature remembers its training mean and standard deviation.
//! Both models read the same encoding: the logistic model as one-hot and standardised columns,
//! the trees as category codes and raw numbers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::{FeatureKind, Value};

/// How one original feature is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum FeatureEncoding {
    Categorical {
        /// Kept levels, sorted by name (so lookups are a binary search and the order is stable).
        levels: Vec<String>,
        /// Whether any training row fell into "other" (a rare level).
        has_other: bool,
        /// Whether any training row was missing.
        has_missing: bool,
    },
    Numeric {
        mean: f64,
        /// Population standard deviation of the training values; 1 when they are all equal.
        std: f64,
        has_missing: bool,
    },
}

/// A categorical cell after encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LevelCode {
    Level(usize),
    Other,
    Missing,
}

impl FeatureEncoding {
    pub(crate) fn fit(kind: FeatureKind, cells: &[&Value], min_level_count: usize, max_levels: usize) -> Self {
        match kind {
            FeatureKind::Categorical => {
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                let mut missing = 0;
                for cell in cells {
                    match cell.as_level() {
                        Some(level) => *counts.entry(level).or_insert(0) += 1,
                        None => missing += 1,
                    }
                }
                let mut frequent: Vec<(String, usize)> = counts.into_iter().filter(|(_, count)| *count >= min_level_count.max(1)).collect();
                // Most frequent first, ties by name, so the cut at max_levels is deterministic.
                frequent.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                frequent.truncate(max_levels);
                let kept: usize = frequent.iter().map(|(_, count)| count).sum();
                let mut levels: Vec<String> = frequent.into_iter().map(|(level, _)| level).collect();
                levels.sort();
                FeatureEncoding::Categorical { levels, has_other: kept + missing < cells.len(), has_missing: missing > 0 }
            }
            FeatureKind::Numeric => {
                let values: Vec<f64> = cells.iter().filter_map(|cell| cell.as_number()).collect();
                let has_missing = values.len() < cells.len();
                if values.is_empty() {
                    return FeatureEncoding::Numeric { mean: 0.0, std: 1.0, has_missing };
                }
                let n = values.len() as f64;
                let mean = values.iter().sum::<f64>() / n;
                let variance = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                let std = variance.sqrt();
                let std = if std > 1e-12 * mean.abs().max(1.0) { std } else { 1.0 };
                FeatureEncoding::Numeric { mean, std, has_missing }
            }
        }
    }

    /// The code of a categorical cell; reads text in place (no allocation on the scoring path).
    pub(crate) fn level_code(levels: &[String], cell: &Value) -> LevelCode {
        let find = |level: &str| match levels.binary_search_by(|known| known.as_str().cmp(level)) {
            Ok(index) => LevelCode::Level(index),
            Err(_) => LevelCode::Other,
        };
        match cell {
            Value::Text(text) => find(text),
            // The same level as `Value::as_level` gives, without building the string for text.
            other => other.as_level().map_or(LevelCode::Missing, |level| find(&level)),
        }
    }

    /// The number of logistic-regression columns this feature takes.
    pub(crate) fn column_count(&self) -> usize {
        match self {
            FeatureEncoding::Categorical { levels, has_other, has_missing } => levels.len() + usize::from(*has_other) + usize::from(*has_missing),
            FeatureEncoding::Numeric { has_missing, .. } => 1 + usize::from(*has_missing),
        }
    }

    /// Appends this cell's nonzero logistic columns (offset by `start`), in column order.
    ///
    /// Categorical columns: the kept levels, then "other", then "missing"; a level unseen in
    /// training counts as "other" (or as nothing when training had no rare level).
    /// Numeric columns: the standardised value (0 when missing), then the missing flag.
    pub(crate) fn push_columns(&self, cell: &Value, start: usize, out: &mut Vec<(u32, f64)>) {
        match self {
            FeatureEncoding::Categorical { levels, has_other, has_missing } => match Self::level_code(levels, cell) {
                LevelCode::Level(index) => out.push(((start + index) as u32, 1.0)),
                LevelCode::Other => {
                    if *has_other {
                        out.push(((start + levels.len()) as u32, 1.0));
                    }
                }
                LevelCode::Missing => {
                    if *has_missing {
                        out.push(((start + levels.len() + usize::from(*has_other)) as u32, 1.0));
                    }
                }
            },
            FeatureEncoding::Numeric { mean, std, has_missing } => match cell.as_number() {
                Some(x) => {
                    let z = (x - mean) / std;
                    if z != 0.0 {
                        out.push((start as u32, z));
                    }
                }
                None => {
                    if *has_missing {
                        out.push(((start + 1) as u32, 1.0));
                    }
                }
            },
        }
    }

    /// The tree input for this cell: the number (NaN when missing) for a numeric feature, the
    /// category code (level index, then other, then missing) for a categorical one.
    pub(crate) fn tree_input(&self, cell: &Value) -> f64 {
        match self {
            FeatureEncoding::Categorical { levels, .. } => match Self::level_code(levels, cell) {
                LevelCode::Level(index) => index as f64,
                LevelCode::Other => levels.len() as f64,
                LevelCode::Missing => (levels.len() + 1) as f64,
            },
            FeatureEncoding::Numeric { .. } => cell.as_number().unwrap_or(f64::NAN),
        }
    }

    /// The number of category codes the trees see (levels + other + missing); 0 for numerics.
    pub(crate) fn category_count(&self) -> usize {
        match self {
            FeatureEncoding::Categorical { levels, .. } => levels.len() + 2,
            FeatureEncoding::Numeric { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    #[test]
    fn rare_levels_are_grouped_and_missing_is_its_own_level() {
        let mut cells = vec![];
        cells.extend(std::iter::repeat_n(text("Web"), 12));
        cells.extend(std::iter::repeat_n(text("Ads"), 10));
        cells.extend(std::iter::repeat_n(text("Fax"), 3));
        cells.extend(std::iter::repeat_n(Value::Missing, 2));
        let refs: Vec<&Value> = cells.iter().collect();
        let encoding = FeatureEncoding::fit(FeatureKind::Categorical, &refs, 10, 100);
        assert_eq!(encoding, FeatureEncoding::Categorical { levels: vec!["Ads".into(), "Web".into()], has_other: true, has_missing: true });
        assert_eq!(encoding.column_count(), 4);
        let mut out = vec![];
        encoding.push_columns(&text("Web"), 5, &mut out);
        encoding.push_columns(&text("Fax"), 5, &mut out);
        encoding.push_columns(&text("never seen"), 5, &mut out);
        encoding.push_columns(&Value::Missing, 5, &mut out);
        assert_eq!(out, vec![(6, 1.0), (7, 1.0), (7, 1.0), (8, 1.0)]);
        assert_eq!(encoding.tree_input(&text("Ads")), 0.0);
        assert_eq!(encoding.tree_input(&text("Fax")), 2.0);
        assert_eq!(encoding.tree_input(&Value::Missing), 3.0);
    }

    #[test]
    fn max_levels_keeps_the_most_frequent() {
        let cells: Vec<Value> = (0..6).flat_map(|level| std::iter::repeat_n(text(&format!("L{level}")), 10 + level)).collect();
        let refs: Vec<&Value> = cells.iter().collect();
        let FeatureEncoding::Categorical { levels, has_other, .. } = FeatureEncoding::fit(FeatureKind::Categorical, &refs, 1, 2) else {
            panic!("categorical expected")
        };
        assert_eq!(levels, vec!["L4".to_string(), "L5".to_string()]);
        assert!(has_other);
    }

    #[test]
    fn numerics_are_standardised_with_a_missing_flag() {
        let cells = [Value::Number(1.0), Value::Number(3.0), text("n/a"), Value::Text("5".into())];
        let refs: Vec<&Value> = cells.iter().collect();
        let encoding = FeatureEncoding::fit(FeatureKind::Numeric, &refs, 10, 100);
        let FeatureEncoding::Numeric { mean, std, has_missing } = encoding.clone() else { panic!("numeric expected") };
        assert_eq!(mean, 3.0);
        assert!((std - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!(has_missing);
        let mut out = vec![];
        encoding.push_columns(&Value::Number(5.0), 0, &mut out);
        encoding.push_columns(&Value::Missing, 0, &mut out);
        encoding.push_columns(&Value::Number(3.0), 0, &mut out);
        assert_eq!(out, vec![(0, 2.0 / std), (1, 1.0)]);
        assert!(encoding.tree_input(&text("n/a")).is_nan());
    }

    #[test]
    fn a_constant_numeric_does_not_divide_by_zero() {
        let cells = [Value::Number(7.0), Value::Number(7.0)];
        let refs: Vec<&Value> = cells.iter().collect();
        assert_eq!(FeatureEncoding::fit(FeatureKind::Numeric, &refs, 10, 100), FeatureEncoding::Numeric { mean: 7.0, std: 1.0, has_missing: false });
    }
}
