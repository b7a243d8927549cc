//! Predictive lead scoring: learns a 0–100 score from won and lost contacts.
//!
//! The engine extracts one row of raw cells per closed contact ([`Dataset`]) and calls
//! [`train`]; it stores the returned [`PredictiveModel`] as JSON and calls
//! [`PredictiveModel::predict`] for every contact. This crate does the maths only: no IO, no
//! clock, no async, no database.
//!
//! # Training
//!
//! 1. **Guard rails.** Fewer than `min_closed` rows, or fewer than `min_per_class` won or lost,
//!    is refused with the counts ([`TrainError`]).
//! 2. **Split.** A stratified holdout (`holdout`, default 20 %) drawn with a seeded SplitMix64
//!    ([`rng::stratified_split`], public so others can reproduce it). Everything below is fitted
//!    on the training part only; the holdout is only scored.
//! 3. **Encoding.** Categorical levels seen fewer than `min_level_count` times share an "other"
//!    level and missing is a level of its own. At most `max_levels` levels per feature, and at
//!    most `max_logistic_columns` logistic columns in all (default 1,000): past that every
//!    categorical feature keeps the same, largest fitting number of its most frequent levels, so
//!    many features of high cardinality cannot make Newton's method (columns³) slow. Numerics are standardised with the training mean
//!    and standard deviation; missing becomes 0 plus a missing-flag column. Only
//!    [`Value::Missing`] is missing (plus numeric cells that are not numbers): the caller maps
//!    "" or "Select" to it.
//! 4. **Leakage.** A feature that alone ranks the outcome with AUC ≥ 0.95 on the training part
//!    is reported ([`LeakageWarning`]) and left out unless named in `allow_leaky`.
//! 5. **Logistic regression**, L2-penalised like scikit-learn's `C = 1` (intercept free), solved
//!    by Newton's method with a Cholesky solve over a sparse design: a few exact steps.
//! 6. **Gradient-boosted trees**, histogram-based (≤ 255 quantile bins, a learned direction for
//!    missing values, native categorical splits), leaf-wise, with early stopping on a validation
//!    slice of the training part. Platt scaling fitted on that slice calibrates the margin.
//!    Below `small_data_rows` training rows (default 20,000) one slice is too noisy (holdout
//!    AUC then swung by ±0.03 with the seed): 3-fold cross-validation instead — each fold's
//!    trees stop early on it, a refit on every row grows 1.1 × their mean number of trees, the
//!    model is the average of the refit and the fold models (one ensemble with scaled trees),
//!    and Platt scaling is fitted on the out-of-fold margins.
//! 7. **Choice.** Both are scored on the holdout (ROC AUC, log loss, calibration table); the
//!    better AUC wins, the logistic model on a tie. The stored model is the one evaluated, so
//!    the report describes exactly what scores contacts.
//!
//! # Explanations
//!
//! Every prediction carries one [`Reason`] per feature with a nonzero contribution, and
//! `intercept + Σ contributions == logit`, `probability == sigmoid(logit)`:
//! - logistic: a feature's contribution is the sum of weight × encoded value over its columns
//!   (for a categorical, its level's weight);
//! - trees: Saabas path attribution — along each tree's decision path, the change in node value
//!   at a split is credited to the split's feature; the root values and the initial log-odds
//!   form the intercept. Platt scaling is folded in: contributions are multiplied by its slope
//!   and its offset joins the intercept, so the sum still equals the calibrated logit.
//!
//! # Scoring
//!
//! The trees are stored as readable JSON (nodes with a value and an optional split) and laid
//! out for scoring when the model is built or read back: per tree a flat array of 16-byte nodes
//! with adjacent children. A row is encoded once, on the stack, into two integer slots per
//! feature (a numeric value's rank among the thresholds the trees use, missing counted high in
//! one slot and low in the other; a category code), so every split is one integer comparison
//! or one bit test. Four trees are walked side by side without branching on the data (a leaf
//! is its own child), and the leaf values and path credits are added in tree order, so
//! `probability` allocates nothing and `predict` gives the same bits as a tree-at-a-time walk.
//!
//! [`PredictiveModel::suggest_points`] turns the logistic weights into integer points for a
//! draft rule model.
//!
//! # Determinism
//!
//! Same data, options and seed give the same model bit for bit, and the same JSON: the only
//! randomness is the seeded split; there is no hash-map iteration in any result; parallel sums
//! (rayon) run over fixed chunks added in a fixed order, so the thread count does not matter.

mod boost;
mod data;
mod encode;
mod logistic;
pub mod metrics;
mod model;
pub mod rng;
mod train;

pub use boost::BoostingOptions;
pub use data::{Dataset, FeatureKind, FeatureSpec, Value};
pub use metrics::CalibrationBin;
pub use model::{Algorithm, PointsCondition, Prediction, PredictiveModel, Reason, SuggestedPoints, score_of};
pub use train::{Evaluation, LeakageWarning, Progress, TrainError, TrainOptions, TrainReport, Trained, train};
