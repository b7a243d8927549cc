//! Training: guard rails, leakage screening, both learners, holdout evaluation and the choice.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::boost::{BoostingData, BoostingOptions, ColumnKind, fit_boosted, fit_boosted_folds};
use crate::data::{Dataset, Value};
use crate::encode::{FeatureEncoding, LevelCode};
use crate::logistic::{SparseRows, fit_logistic};
use crate::metrics::{CalibrationBin, calibration_table, log_loss, roc_auc};
use crate::model::{Algorithm, LogisticWeights, PredictiveModel};
use crate::rng::{stratified_folds, stratified_split};

/// Training settings. `TrainOptions::default()` is what the product uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Share of rows held out (stratified) to evaluate and choose the model.
    pub holdout: f64,
    /// Same data and seed give the same model, bit for bit.
    pub seed: u64,
    /// When set, also report stratified k-fold AUCs over the training part (not used to choose).
    pub k_folds: Option<usize>,
    /// Refuse to train on fewer closed (won or lost) rows than this.
    pub min_closed: usize,
    /// Refuse to train with fewer won, or fewer lost, rows than this.
    pub min_per_class: usize,
    /// Features to keep even when they look like leakage.
    pub allow_leaky: Vec<String>,
    /// A feature whose single-feature AUC on the training part reaches this is leakage.
    pub leakage_auc: f64,
    /// Categorical levels seen fewer times than this in training are grouped as "other".
    pub min_level_count: usize,
    /// At most this many levels per categorical feature (the most frequent); at most 254.
    pub max_levels: usize,
    /// At most this many logistic-regression columns (one per kept level, "other" and
    /// "missing" of each categorical feature, one or two per numeric one): past it, every
    /// categorical feature keeps fewer of its most frequent levels, the same number for all
    /// (the largest that fits). Newton's method costs columns³ per step, so this bounds
    /// training time and memory when there are many features of high cardinality. The trees
    /// read the same levels.
    #[serde(default = "default_max_logistic_columns")]
    pub max_logistic_columns: usize,
    /// L2 penalty of the logistic regression: `l2/2 · ‖w‖²` beside the summed log loss, so
    /// 1.0 is scikit-learn's `C = 1.0`. The intercept is not penalised.
    pub l2: f64,
    pub boosting: BoostingOptions,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            holdout: 0.2,
            seed: 42,
            k_folds: None,
            min_closed: 500,
            min_per_class: 50,
            allow_leaky: Vec::new(),
            leakage_auc: 0.95,
            min_level_count: 10,
            max_levels: 100,
            max_logistic_columns: default_max_logistic_columns(),
            l2: 1.0,
            boosting: BoostingOptions::default(),
        }
    }
}

fn default_max_logistic_columns() -> usize {
    1000
}

/// Where training is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Encoding,
    /// Newton step number of the logistic regression.
    Logistic {
        iteration: usize,
    },
    /// Trees grown so far, of at most `of` (early stopping may end sooner).
    Boosting {
        tree: usize,
        of: usize,
    },
    Evaluating,
    /// Cross-validation fold starting (1-based).
    CrossValidation {
        fold: usize,
        of: usize,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    #[error("not enough closed contacts to train: {have} won or lost, at least {need} needed")]
    NotEnoughClosed { have: usize, need: usize },
    #[error("not enough {class} outcomes to train: {have}, at least {need} needed")]
    NotEnoughOfClass { class: &'static str, have: usize, need: usize },
    #[error("cannot train: {0}")]
    Invalid(String),
}

/// How a model did on the holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub auc: f64,
    pub log_loss: f64,
    pub calibration: Vec<CalibrationBin>,
    /// Stratified k-fold AUCs over the training part, when asked for.
    pub cv_auc: Option<Vec<f64>>,
}

/// A feature that separates won from lost (almost) alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakageWarning {
    pub feature: String,
    pub auc: f64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub chosen: Algorithm,
    pub logistic: Evaluation,
    pub boosted: Evaluation,
    pub leakage: Vec<LeakageWarning>,
    /// Features left out (leakage not allowed).
    pub excluded: Vec<String>,
    /// Features the model uses.
    pub features: Vec<String>,
    pub rows: usize,
    pub positives: usize,
    pub train_rows: usize,
    pub holdout_rows: usize,
    /// Newton steps of the logistic regression.
    pub logistic_iterations: usize,
    /// Trees in the boosted model (after early stopping; for a small training part, those of
    /// the refit and the fold models it averages).
    pub trees: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    /// The chosen model, exactly the one evaluated (trained on the training part).
    pub model: PredictiveModel,
    pub report: TrainReport,
}

fn validate(data: &Dataset, opts: &TrainOptions) -> Result<(), TrainError> {
    if data.features.is_empty() {
        return Err(TrainError::Invalid("the data set has no features".into()));
    }
    if data.rows.len() != data.labels.len() {
        return Err(TrainError::Invalid(format!("{} rows but {} outcomes", data.rows.len(), data.labels.len())));
    }
    if let Some(index) = data.rows.iter().position(|row| row.len() != data.features.len()) {
        return Err(TrainError::Invalid(format!("row {index} has {} cells, the features are {}", data.rows[index].len(), data.features.len())));
    }
    let mut names = BTreeSet::new();
    for spec in &data.features {
        if !names.insert(spec.name.as_str()) {
            return Err(TrainError::Invalid(format!("two features are named \"{}\"", spec.name)));
        }
    }
    if !(opts.holdout > 0.0 && opts.holdout < 1.0) {
        return Err(TrainError::Invalid(format!("holdout must be between 0 and 1, not {}", opts.holdout)));
    }
    if !(0.0..1.0).contains(&opts.boosting.validation_fraction) {
        return Err(TrainError::Invalid(format!("validation_fraction must be in [0, 1), not {}", opts.boosting.validation_fraction)));
    }
    if opts.k_folds.is_some_and(|k| k < 2) {
        return Err(TrainError::Invalid("k_folds must be at least 2".into()));
    }
    if !(opts.l2 >= 0.0 && opts.boosting.l2 >= 0.0 && opts.boosting.learning_rate > 0.0) {
        return Err(TrainError::Invalid("l2 must be ≥ 0 and the learning rate > 0".into()));
    }
    let rows = data.rows.len();
    if rows < opts.min_closed {
        return Err(TrainError::NotEnoughClosed { have: rows, need: opts.min_closed });
    }
    let positives = data.labels.iter().filter(|&&l| l).count();
    if positives < opts.min_per_class {
        return Err(TrainError::NotEnoughOfClass { class: "positive (won)", have: positives, need: opts.min_per_class });
    }
    if rows - positives < opts.min_per_class {
        return Err(TrainError::NotEnoughOfClass { class: "negative (lost)", have: rows - positives, need: opts.min_per_class });
    }
    Ok(())
}

fn column_cells<'a>(data: &'a Dataset, feature: usize, rows: &[usize]) -> Vec<&'a Value> {
    rows.iter().map(|&row| &data.rows[row][feature]).collect()
}

fn fit_encodings(data: &Dataset, rows: &[usize], used: &[bool], opts: &TrainOptions) -> Vec<Option<FeatureEncoding>> {
    let fit = |feature: usize, max_levels: usize| {
        FeatureEncoding::fit(data.features[feature].kind, &column_cells(data, feature, rows), opts.min_level_count, max_levels)
    };
    let max_levels = opts.max_levels.clamp(1, 254);
    let mut encodings: Vec<Option<FeatureEncoding>> = (0..data.features.len()).map(|feature| used[feature].then(|| fit(feature, max_levels))).collect();
    // The logistic model's columns if every categorical feature kept at most `limit` levels.
    let columns = |encodings: &[Option<FeatureEncoding>], limit: usize| -> usize {
        encodings
            .iter()
            .flatten()
            .map(|encoding| match encoding {
                FeatureEncoding::Categorical { levels, has_other, has_missing } => {
                    levels.len().min(limit) + usize::from(*has_other || levels.len() > limit) + usize::from(*has_missing)
                }
                numeric => numeric.column_count(),
            })
            .sum()
    };
    if columns(&encodings, max_levels) > opts.max_logistic_columns {
        // The largest per-feature level limit that fits the cap (at least one level).
        let (mut fits, mut too_many) = (1, max_levels);
        while fits + 1 < too_many {
            let middle = (fits + too_many) / 2;
            if columns(&encodings, middle) <= opts.max_logistic_columns { fits = middle } else { too_many = middle }
        }
        for (feature, encoding) in encodings.iter_mut().enumerate() {
            if let Some(FeatureEncoding::Categorical { levels, .. }) = encoding
                && levels.len() > fits
            {
                *encoding = Some(fit(feature, fits));
            }
        }
    }
    encodings
}

/// How well one feature alone ranks the outcome on the training part, 0.5 to 1.
///
/// Numeric: the AUC of the raw value, taken in whichever direction ranks better, with missing
/// values placed at the bottom or at the top, whichever separates more (a field filled in only
/// for won deals leaks through its missingness). Categorical: each level (as encoded: rare
/// levels grouped, missing its own) scores its training win rate.
fn single_feature_auc(encoding: &FeatureEncoding, cells: &[&Value], labels: &[bool]) -> f64 {
    let both_ways = |auc: f64| auc.max(1.0 - auc);
    match encoding {
        FeatureEncoding::Numeric { .. } => {
            let numbers: Vec<Option<f64>> = cells.iter().map(|cell| cell.as_number()).collect();
            let placed = |fill: f64| numbers.iter().map(|x| x.unwrap_or(fill)).collect::<Vec<f64>>();
            let low = both_ways(roc_auc(&placed(f64::NEG_INFINITY), labels));
            if numbers.iter().all(Option::is_some) { low } else { low.max(both_ways(roc_auc(&placed(f64::INFINITY), labels))) }
        }
        FeatureEncoding::Categorical { levels, .. } => {
            let code_index = |cell: &Value| match FeatureEncoding::level_code(levels, cell) {
                LevelCode::Level(index) => index,
                LevelCode::Other => levels.len(),
                LevelCode::Missing => levels.len() + 1,
            };
            let codes: Vec<usize> = cells.iter().map(|cell| code_index(cell)).collect();
            let mut won = vec![0usize; levels.len() + 2];
            let mut seen = vec![0usize; levels.len() + 2];
            for (&code, &label) in codes.iter().zip(labels) {
                seen[code] += 1;
                won[code] += usize::from(label);
            }
            let rates: Vec<f64> = codes.iter().map(|&code| won[code] as f64 / seen[code] as f64).collect();
            both_ways(roc_auc(&rates, labels))
        }
    }
}

/// The two learners fitted on one set of training rows.
struct Fitted {
    logistic: LogisticWeights,
    logistic_iterations: usize,
    boosted: crate::boost::BoostedModel,
}

fn fit_both(data: &Dataset, train_rows: &[usize], encodings: &[Option<FeatureEncoding>], opts: &TrainOptions, progress: &mut dyn FnMut(Progress)) -> Fitted {
    let labels: Vec<bool> = train_rows.iter().map(|&row| data.labels[row]).collect();

    // Logistic regression on the whole training part.
    let mut column_starts = Vec::with_capacity(encodings.len());
    let mut columns = 0;
    for encoding in encodings {
        column_starts.push(columns);
        columns += encoding.as_ref().map_or(0, FeatureEncoding::column_count);
    }
    let mut design = SparseRows::new(columns);
    let mut entries = Vec::new();
    for &row in train_rows {
        entries.clear();
        for (feature, encoding) in encodings.iter().enumerate() {
            if let Some(encoding) = encoding {
                encoding.push_columns(&data.rows[row][feature], column_starts[feature], &mut entries);
            }
        }
        design.push_row(&entries);
    }
    let fit = fit_logistic(&design, &labels, opts.l2, &mut |iteration| progress(Progress::Logistic { iteration }));
    let logistic = LogisticWeights { intercept: fit.intercept, weights: fit.weights, column_starts };

    // Trees: on a small training part, k-fold cross-validation picks the number of trees and
    // calibrates, and the trees learn from all of it; otherwise a stratified validation slice of
    // the training part, which the trees never see, serves early stopping and Platt scaling.
    let width = data.features.len();
    let inputs_of = |positions: &mut dyn Iterator<Item = usize>| -> Vec<f64> {
        let mut inputs = Vec::with_capacity(train_rows.len() * width);
        for position in positions {
            let row = &data.rows[train_rows[position]];
            inputs.extend(encodings.iter().zip(row).map(|(encoding, cell)| encoding.as_ref().map_or(f64::NAN, |encoding| encoding.tree_input(cell))));
        }
        inputs
    };
    let boosting_columns: Vec<(usize, ColumnKind)> = encodings
        .iter()
        .enumerate()
        .filter_map(|(feature, encoding)| {
            encoding.as_ref().map(|encoding| match encoding {
                FeatureEncoding::Numeric { .. } => (feature, ColumnKind::Numeric),
                FeatureEncoding::Categorical { .. } => (feature, ColumnKind::Categorical { count: encoding.category_count() }),
            })
        })
        .collect();
    let boosting = &opts.boosting;
    let seed = opts.seed.wrapping_add(0x5EED);
    let mut report = |tree, of| progress(Progress::Boosting { tree, of });
    let cross_validate = boosting.small_data_folds >= 2
        && train_rows.len() < boosting.small_data_rows
        && boosting.validation_fraction > 0.0
        && boosting.early_stopping_rounds.is_some()
        && labels.iter().filter(|&&l| l).count().min(labels.iter().filter(|&&l| !l).count()) >= boosting.small_data_folds;
    let boosted = if cross_validate {
        let folds = stratified_folds(&labels, boosting.small_data_folds, seed);
        let inputs = inputs_of(&mut (0..train_rows.len()));
        fit_boosted_folds(width, &boosting_columns, &inputs, &labels, &folds, boosting, &mut report)
    } else {
        let (tree_positions, validation_positions) = if boosting.validation_fraction > 0.0 {
            stratified_split(&labels, boosting.validation_fraction, seed)
        } else {
            ((0..train_rows.len()).collect(), Vec::new())
        };
        let train_inputs = inputs_of(&mut tree_positions.iter().copied());
        let validation_inputs = inputs_of(&mut validation_positions.iter().copied());
        let tree_labels: Vec<bool> = tree_positions.iter().map(|&position| labels[position]).collect();
        let validation_labels: Vec<bool> = validation_positions.iter().map(|&position| labels[position]).collect();
        let boosting_data = BoostingData {
            width,
            columns: boosting_columns,
            train_inputs: &train_inputs,
            train_labels: &tree_labels,
            validation_inputs: &validation_inputs,
            validation_labels: &validation_labels,
        };
        fit_boosted(&boosting_data, boosting, &mut report)
    };
    Fitted { logistic, logistic_iterations: fit.iterations, boosted }
}

fn models_of(data: &Dataset, encodings: &[Option<FeatureEncoding>], fitted: Fitted) -> (PredictiveModel, PredictiveModel) {
    let logistic = PredictiveModel::new(data.features.clone(), encodings.to_vec(), fitted.logistic.clone(), None);
    let boosted = PredictiveModel::new(data.features.clone(), encodings.to_vec(), fitted.logistic, Some(fitted.boosted));
    (logistic, boosted)
}

fn evaluate(model: &PredictiveModel, data: &Dataset, rows: &[usize]) -> Evaluation {
    let probabilities: Vec<f64> = rows.iter().map(|&row| model.probability(&data.rows[row])).collect();
    let labels: Vec<bool> = rows.iter().map(|&row| data.labels[row]).collect();
    Evaluation {
        auc: roc_auc(&probabilities, &labels),
        log_loss: log_loss(&probabilities, &labels),
        calibration: calibration_table(&probabilities, &labels),
        cv_auc: None,
    }
}

fn holdout_auc(model: &PredictiveModel, data: &Dataset, rows: &[usize]) -> f64 {
    let probabilities: Vec<f64> = rows.iter().map(|&row| model.probability(&data.rows[row])).collect();
    let labels: Vec<bool> = rows.iter().map(|&row| data.labels[row]).collect();
    roc_auc(&probabilities, &labels)
}

/// Learns a predictive model from closed contacts.
///
/// Refuses (with what is missing) below `min_closed` rows or `min_per_class` of either
/// outcome. Splits off a stratified holdout, screens features for leakage on the training part,
/// trains the logistic regression and the boosted trees on the training part, evaluates both on
/// the holdout and keeps the one with the better holdout AUC (the logistic one on a tie). The
/// report's figures describe exactly the returned model.
pub fn train(data: &Dataset, opts: &TrainOptions, progress: &mut dyn FnMut(Progress)) -> Result<Trained, TrainError> {
    validate(data, opts)?;
    let (train_rows, holdout_rows) = stratified_split(&data.labels, opts.holdout, opts.seed);
    for (part, rows) in [("training part", &train_rows), ("holdout", &holdout_rows)] {
        let positives = rows.iter().filter(|&&row| data.labels[row]).count();
        if positives == 0 || positives == rows.len() {
            return Err(TrainError::Invalid(format!("the {part} would hold only one outcome; more closed contacts or another holdout share are needed")));
        }
    }

    progress(Progress::Encoding);
    let all_used = vec![true; data.features.len()];
    let screening = fit_encodings(data, &train_rows, &all_used, opts);
    let train_labels: Vec<bool> = train_rows.iter().map(|&row| data.labels[row]).collect();
    let mut leakage = Vec::new();
    let mut used = all_used;
    for (feature, spec) in data.features.iter().enumerate() {
        let Some(encoding) = &screening[feature] else { continue };
        let auc = single_feature_auc(encoding, &column_cells(data, feature, &train_rows), &train_labels);
        if auc >= opts.leakage_auc {
            let kept = opts.allow_leaky.iter().any(|name| name == &spec.name);
            let action = if kept { "kept because allow_leaky names it" } else { "left out — pass it in allow_leaky to keep it" };
            leakage.push(LeakageWarning {
                feature: spec.name.clone(),
                auc,
                message: format!("{} separates won from lost almost alone (AUC {auc:.2}): probably filled in after the outcome; {action}", spec.name),
            });
            used[feature] = kept;
        }
    }
    if !used.iter().any(|&u| u) {
        return Err(TrainError::Invalid("every feature was left out as leakage; pass the ones to keep in allow_leaky".into()));
    }
    let encodings: Vec<Option<FeatureEncoding>> = screening.into_iter().zip(&used).map(|(encoding, &u)| encoding.filter(|_| u)).collect();

    let fitted = fit_both(data, &train_rows, &encodings, opts, progress);
    let logistic_iterations = fitted.logistic_iterations;
    let (logistic_model, boosted_model) = models_of(data, &encodings, fitted);

    progress(Progress::Evaluating);
    let mut logistic = evaluate(&logistic_model, data, &holdout_rows);
    let mut boosted = evaluate(&boosted_model, data, &holdout_rows);

    if let Some(k) = opts.k_folds {
        let folds = stratified_folds(&train_labels, k, opts.seed.wrapping_add(0xF01D));
        let (mut logistic_aucs, mut boosted_aucs) = (Vec::with_capacity(k), Vec::with_capacity(k));
        for fold in 0..k {
            progress(Progress::CrossValidation { fold: fold + 1, of: k });
            let (fit_rows, eval_rows): (Vec<usize>, Vec<usize>) = (0..train_rows.len()).partition(|&position| folds[position] != fold);
            let fit_rows: Vec<usize> = fit_rows.into_iter().map(|position| train_rows[position]).collect();
            let eval_rows: Vec<usize> = eval_rows.into_iter().map(|position| train_rows[position]).collect();
            let fold_encodings = fit_encodings(data, &fit_rows, &used, opts);
            let fold_fit = fit_both(data, &fit_rows, &fold_encodings, opts, &mut |_| {});
            let (fold_logistic, fold_boosted) = models_of(data, &fold_encodings, fold_fit);
            logistic_aucs.push(holdout_auc(&fold_logistic, data, &eval_rows));
            boosted_aucs.push(holdout_auc(&fold_boosted, data, &eval_rows));
        }
        logistic.cv_auc = Some(logistic_aucs);
        boosted.cv_auc = Some(boosted_aucs);
    }

    let chosen = if boosted.auc > logistic.auc { Algorithm::Boosted } else { Algorithm::Logistic };
    let trees = boosted_model.tree_count();
    let model = match chosen {
        Algorithm::Boosted => boosted_model,
        Algorithm::Logistic => logistic_model,
    };
    let report = TrainReport {
        chosen,
        logistic,
        boosted,
        leakage,
        excluded: data.features.iter().zip(&used).filter(|(_, u)| !**u).map(|(spec, _)| spec.name.clone()).collect(),
        features: model.used_features(),
        rows: data.rows.len(),
        positives: data.labels.iter().filter(|&&l| l).count(),
        train_rows: train_rows.len(),
        holdout_rows: holdout_rows.len(),
        logistic_iterations,
        trees,
    };
    Ok(Trained { model, report })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::FeatureSpec;
    use crate::rng::SplitMix64;

    fn logistic_columns(encodings: &[Option<FeatureEncoding>]) -> usize {
        encodings.iter().flatten().map(FeatureEncoding::column_count).sum()
    }

    #[test]
    fn many_levels_are_capped_to_the_logistic_column_budget() {
        // Twelve categorical features with 300 frequent levels each, and two numerics.
        let mut rng = SplitMix64::new(4);
        let mut features: Vec<FeatureSpec> = (0..12).map(|i| FeatureSpec::categorical(format!("attribute {i}"))).collect();
        features.extend([FeatureSpec::numeric("a"), FeatureSpec::numeric("b")]);
        let rows: Vec<Vec<Value>> = (0..6000)
            .map(|_| {
                let mut row: Vec<Value> = (0..12).map(|_| Value::Text(format!("level {}", rng.below(300)))).collect();
                row.extend([Value::Number(rng.normal()), if rng.below(10) == 0 { Value::Missing } else { Value::Number(rng.normal()) }]);
                row
            })
            .collect();
        let data = Dataset { features, labels: (0..6000).map(|i| i % 3 == 0).collect(), rows };
        let all: Vec<usize> = (0..6000).collect();
        let used = vec![true; 14];
        let uncapped = TrainOptions { min_level_count: 1, max_levels: 254, max_logistic_columns: usize::MAX, ..TrainOptions::default() };
        assert_eq!(logistic_columns(&fit_encodings(&data, &all, &used, &uncapped)), 12 * 254 + 12 + 3);
        let capped = TrainOptions { max_logistic_columns: 600, ..uncapped };
        let encodings = fit_encodings(&data, &all, &used, &capped);
        // The same number of levels for every categorical feature, the largest that fits:
        // 12 × (levels + other) + 3 numeric columns ≤ 600.
        assert_eq!(logistic_columns(&encodings), 12 * (48 + 1) + 3);
        for encoding in encodings.iter().flatten() {
            if let FeatureEncoding::Categorical { levels, has_other, .. } = encoding {
                assert_eq!(levels.len(), 48);
                assert!(has_other);
            }
        }
        // A budget below one level each still keeps one.
        let tiny = TrainOptions { max_logistic_columns: 5, ..capped };
        assert_eq!(logistic_columns(&fit_encodings(&data, &all, &used, &tiny)), 12 * 2 + 3);
    }
}
