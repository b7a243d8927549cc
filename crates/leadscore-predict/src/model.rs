//! The stored model: prediction with reasons, and points suggested from the logistic weights.

use serde::{Deserialize, Serialize};

use crate::boost::BoostedModel;
use crate::data::{FeatureKind, FeatureSpec, Value, format_number};
use crate::encode::FeatureEncoding;
use crate::metrics::sigmoid;

/// Which learner a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    Logistic,
    Boosted,
}

/// Logistic regression over the encoded columns (see `FeatureEncoding::push_columns`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LogisticWeights {
    pub intercept: f64,
    pub weights: Vec<f64>,
    /// First column of each feature (features left out take no columns).
    pub column_starts: Vec<usize>,
}

/// A trained predictive model: what the engine stores (as JSON) and scores contacts with.
/// Reading one back checks that its parts fit together, so scoring a model read from storage
/// never indexes out of bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredPredictiveModel")]
pub struct PredictiveModel {
    features: Vec<FeatureSpec>,
    /// One per feature; `None` for a feature left out (leakage), which predictions ignore.
    encodings: Vec<Option<FeatureEncoding>>,
    /// Always present: it scores when chosen and it is where suggested points come from.
    logistic: LogisticWeights,
    /// Present when the boosted trees were chosen.
    boosted: Option<BoostedModel>,
}

/// [`PredictiveModel`] as read, before its checks.
#[derive(Deserialize)]
struct StoredPredictiveModel {
    features: Vec<FeatureSpec>,
    encodings: Vec<Option<FeatureEncoding>>,
    logistic: LogisticWeights,
    boosted: Option<BoostedModel>,
}

impl TryFrom<StoredPredictiveModel> for PredictiveModel {
    type Error = String;

    fn try_from(stored: StoredPredictiveModel) -> Result<Self, String> {
        let count = stored.features.len();
        if stored.encodings.len() != count || stored.logistic.column_starts.len() != count {
            return Err(format!("{count} features but {} encodings and {} column starts", stored.encodings.len(), stored.logistic.column_starts.len()));
        }
        for (feature, (spec, encoding)) in stored.features.iter().zip(&stored.encodings).enumerate() {
            let Some(encoding) = encoding else { continue };
            let kind_matches = matches!(
                (spec.kind, encoding),
                (FeatureKind::Categorical, FeatureEncoding::Categorical { .. }) | (FeatureKind::Numeric, FeatureEncoding::Numeric { .. })
            );
            let end = stored.logistic.column_starts[feature].checked_add(encoding.column_count());
            if !kind_matches || end.is_none_or(|end| end > stored.logistic.weights.len()) {
                return Err(format!("feature {} does not fit its encoding or the logistic weights", spec.name));
            }
        }
        if let Some(boosted) = &stored.boosted
            && boosted.features_read() > count
        {
            return Err(format!("the trees read feature {} of {count}", boosted.features_read() - 1));
        }
        Ok(PredictiveModel { features: stored.features, encodings: stored.encodings, logistic: stored.logistic, boosted: stored.boosted })
    }
}

/// One contact's score and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Calibrated probability of winning.
    pub probability: f64,
    /// `round(100 × probability)`.
    pub score: u8,
    /// log-odds; `probability == sigmoid(logit)`.
    pub logit: f64,
    /// The part of the logit no feature explains (the base rate, in log-odds).
    pub intercept: f64,
    /// Every feature with a nonzero contribution, largest |contribution| first;
    /// `intercept + Σ contribution == logit`.
    pub reasons: Vec<Reason>,
}

/// How much one feature moved this contact's log-odds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub feature: String,
    /// The contact's value in words: "Reference", "3", "missing".
    pub value: String,
    pub contribution: f64,
}

/// The 0–100 score of a probability, as every prediction gives it.
pub fn score_of(probability: f64) -> u8 {
    (probability * 100.0).round().clamp(0.0, 100.0) as u8
}

/// When suggested points apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PointsCondition {
    /// The categorical feature equals this level.
    Level(String),
    /// The categorical feature has a level not listed for it (rare in training, or new).
    OtherLevel,
    /// The feature is missing.
    Missing,
    /// Numeric: `points` for every `step` the value is above `mean` (negative below).
    PerStep { step: f64, mean: f64 },
}

/// Integer points a person could put in a rule model, derived from the logistic weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestedPoints {
    pub feature: String,
    /// The level in words for categorical conditions ("other", "missing" for those two cases),
    /// `None` for a numeric step.
    pub level: Option<String>,
    pub points: i64,
    /// For a numeric step, e.g. "per 1.8 above 3.4".
    pub per: Option<String>,
    pub condition: PointsCondition,
}

/// The largest absolute weight becomes this many points.
const TOP_POINTS: f64 = 25.0;

impl PredictiveModel {
    pub(crate) fn new(features: Vec<FeatureSpec>, encodings: Vec<Option<FeatureEncoding>>, logistic: LogisticWeights, boosted: Option<BoostedModel>) -> Self {
        PredictiveModel { features, encodings, logistic, boosted }
    }

    pub fn algorithm(&self) -> Algorithm {
        if self.boosted.is_some() { Algorithm::Boosted } else { Algorithm::Logistic }
    }

    /// The features a row must hold, in order: the same list the model was trained with,
    /// including any left out for leakage (their cells are ignored).
    pub fn features(&self) -> &[FeatureSpec] {
        &self.features
    }

    /// Names of the features the model actually uses.
    pub fn used_features(&self) -> Vec<String> {
        self.features.iter().zip(&self.encodings).filter(|(_, encoding)| encoding.is_some()).map(|(spec, _)| spec.name.clone()).collect()
    }

    /// The number of trees (0 for the logistic model).
    pub fn tree_count(&self) -> usize {
        self.boosted.as_ref().map_or(0, BoostedModel::tree_count)
    }

    /// Encodes the row for the trees once (one value per feature: the number, NaN when
    /// missing, or the category code) into a buffer on the stack, and hands it to `score`.
    fn with_tree_inputs<R>(&self, row: &[Value], score: impl FnOnce(&[f64]) -> R) -> R {
        const ON_STACK: usize = 64;
        let fill = |inputs: &mut [f64]| {
            for (feature, (input, encoding)) in inputs.iter_mut().zip(&self.encodings).enumerate() {
                *input = encoding.as_ref().map_or(f64::NAN, |encoding| encoding.tree_input(cell(row, feature)));
            }
        };
        let width = self.encodings.len();
        if width <= ON_STACK {
            let mut inputs = [0.0; ON_STACK];
            fill(&mut inputs[..width]);
            score(&inputs[..width])
        } else {
            let mut inputs = vec![0.0; width];
            fill(&mut inputs);
            score(&inputs)
        }
    }

    fn logistic_contribution(&self, feature: usize, encoding: &FeatureEncoding, cell: &Value, scratch: &mut Vec<(u32, f64)>) -> f64 {
        scratch.clear();
        encoding.push_columns(cell, self.logistic.column_starts[feature], scratch);
        scratch.iter().map(|&(column, value)| self.logistic.weights[column as usize] * value).sum()
    }

    /// The calibrated probability alone, without reasons: the fast path for bulk scoring.
    /// Equal to `predict(row).probability` up to floating-point rounding.
    pub fn probability(&self, row: &[Value]) -> f64 {
        match &self.boosted {
            Some(boosted) => sigmoid(self.with_tree_inputs(row, |inputs| boosted.logit(inputs))),
            None => {
                let mut scratch = Vec::with_capacity(4);
                let logit = self.encodings.iter().enumerate().fold(self.logistic.intercept, |sum, (feature, encoding)| match encoding {
                    Some(encoding) => sum + self.logistic_contribution(feature, encoding, cell(row, feature), &mut scratch),
                    None => sum,
                });
                sigmoid(logit)
            }
        }
    }

    /// Scores one contact and explains the score. `row` holds the cells in the order of
    /// [`features`](Self::features); cells past its end count as missing.
    pub fn predict(&self, row: &[Value]) -> Prediction {
        let mut contributions = vec![0.0; self.features.len()];
        let intercept = match &self.boosted {
            Some(boosted) => self.with_tree_inputs(row, |inputs| boosted.explain(inputs, &mut contributions)),
            None => {
                let mut scratch = Vec::with_capacity(4);
                for (feature, encoding) in self.encodings.iter().enumerate() {
                    if let Some(encoding) = encoding {
                        contributions[feature] = self.logistic_contribution(feature, encoding, cell(row, feature), &mut scratch);
                    }
                }
                self.logistic.intercept
            }
        };
        let logit = contributions.iter().fold(intercept, |sum, contribution| sum + contribution);
        let mut reasons: Vec<Reason> = contributions
            .iter()
            .enumerate()
            .filter(|&(feature, &contribution)| contribution != 0.0 && self.encodings[feature].is_some())
            .map(|(feature, &contribution)| Reason {
                feature: self.features[feature].name.clone(),
                value: describe(&self.features[feature], cell(row, feature)),
                contribution,
            })
            .collect();
        // Stable: equal magnitudes keep the feature order.
        reasons.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        let probability = sigmoid(logit);
        Prediction { probability, score: score_of(probability), logit, intercept, reasons }
    }

    /// Points for a rule model, from the logistic weights (even when the trees were chosen:
    /// a rule model is additive, like the logistic model).
    ///
    /// The largest absolute weight (a categorical level's, or a numeric feature's per standard
    /// deviation) becomes 25 points and every other weight is scaled alike and rounded; zero
    /// points are dropped. Level points are relative to the other levels of the same feature
    /// (one-hot weights share the intercept). A numeric feature gets points per standard
    /// deviation above its training mean: "per 1.8 above 3.4".
    pub fn suggest_points(&self) -> Vec<SuggestedPoints> {
        let largest = self.logistic.weights.iter().fold(0.0f64, |largest, weight| largest.max(weight.abs()));
        if largest == 0.0 {
            return Vec::new();
        }
        let scale = TOP_POINTS / largest;
        let mut suggestions = Vec::new();
        for (feature, encoding) in self.encodings.iter().enumerate() {
            let Some(encoding) = encoding else { continue };
            let name = &self.features[feature].name;
            let start = self.logistic.column_starts[feature];
            let mut columns: Vec<(Option<String>, Option<String>, PointsCondition)> = Vec::new();
            match encoding {
                FeatureEncoding::Categorical { levels, has_other, has_missing } => {
                    columns.extend(levels.iter().map(|level| (Some(level.clone()), None, PointsCondition::Level(level.clone()))));
                    if *has_other {
                        columns.push((Some("other".to_string()), None, PointsCondition::OtherLevel));
                    }
                    if *has_missing {
                        columns.push((Some("missing".to_string()), None, PointsCondition::Missing));
                    }
                }
                FeatureEncoding::Numeric { mean, std, has_missing } => {
                    let per = format!("per {} above {}", format_number(*std), format_number(*mean));
                    columns.push((None, Some(per), PointsCondition::PerStep { step: *std, mean: *mean }));
                    if *has_missing {
                        columns.push((Some("missing".to_string()), None, PointsCondition::Missing));
                    }
                }
            }
            for (offset, (level, per, condition)) in columns.into_iter().enumerate() {
                let points = (self.logistic.weights[start + offset] * scale).round() as i64;
                if points != 0 {
                    suggestions.push(SuggestedPoints { feature: name.clone(), level, points, per, condition });
                }
            }
        }
        suggestions
    }
}

fn cell(row: &[Value], feature: usize) -> &Value {
    row.get(feature).unwrap_or(&Value::Missing)
}

fn describe(spec: &FeatureSpec, cell: &Value) -> String {
    let words = match spec.kind {
        FeatureKind::Categorical => cell.as_level(),
        FeatureKind::Numeric => cell.as_number().map(format_number),
    };
    words.unwrap_or_else(|| "missing".to_string())
}
