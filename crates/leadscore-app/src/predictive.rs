//! Predictive scoring (F21, contract §9): train on contacts whose deals closed, keep the
//! versions with their evaluation, score a contact with the live version and say why.
//!
//! Training reads every closing outcome, rebuilds each closed contact as of the outcome's
//! time (`features`), and hands the rows to `leadscore_predict`, which does the maths. A
//! new version goes live when there is none yet or when its holdout ROC AUC is not worse
//! than the live one's (or when asked).

use std::collections::BTreeMap;
use std::sync::Arc;

use leadscore_core::ScoreCard;
use leadscore_predict::{Algorithm, CalibrationBin, Dataset, Evaluation, LeakageWarning, PredictiveModel, Progress, TrainError, TrainOptions};
use leadscore_store::scoring::ScoringEvent;
use leadscore_store::{AccountActivity, ContactRecord, Millis, OutcomeKind, OutcomeRecord, PredictiveScoreRow, PredictiveVersion, StoreError};
use serde::{Deserialize, Serialize};

use crate::Engine;
use crate::error::AppError;
use crate::features::{FeatureSchema, SkippedAttribute, Snapshot, attributes_as_of};
use crate::time::format_time;

/// What a predictive model learns to tell apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Won against lost deals.
    #[default]
    Won,
    /// Qualified (or won) against disqualified leads.
    Qualified,
}

/// A training request; every field has a default (contract §9).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    #[serde(default)]
    pub target: Target,
    /// Share of the closed contacts held out to evaluate (default 0.2).
    pub holdout: Option<f64>,
    pub seed: Option<u64>,
    /// Refuse below this many closed contacts (default 500).
    pub min_closed: Option<usize>,
    /// Also report a stratified k-fold AUC.
    pub k_folds: Option<usize>,
    /// Features to keep even when they separate the classes almost alone.
    #[serde(default)]
    pub allow_leaky: Vec<String>,
    /// Attributes to leave out (columns sales fill in after the call, say).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Make the new version live even when its holdout AUC is below the live one's.
    #[serde(default)]
    pub live: bool,
}

/// Where training is, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub enum TrainStep {
    /// Closed contacts read as of their outcome, of all of them.
    Reading {
        done: usize,
        of: usize,
    },
    Training(Progress),
}

/// One learner's holdout figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evaluations {
    #[schema(value_type = crate::schema::EvaluationSchema)]
    pub logistic: Evaluation,
    #[schema(value_type = crate::schema::EvaluationSchema)]
    pub boosted: Evaluation,
}

/// What training found, stored with the version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PredictiveReport {
    pub target: Target,
    /// The learner that scores contacts: `Logistic` or `Boosted`.
    #[schema(value_type = crate::schema::AlgorithmSchema)]
    pub algorithm: Algorithm,
    /// Its holdout ROC AUC, log loss and calibration table.
    pub auc: f64,
    pub log_loss: f64,
    #[schema(value_type = Vec<crate::schema::CalibrationBinSchema>)]
    pub calibration: Vec<CalibrationBin>,
    /// Both learners' holdout figures (the better AUC was chosen).
    pub evaluation: Evaluations,
    /// The features the model uses.
    pub features: Vec<String>,
    /// Features that separate the classes almost alone (likely filled in after the outcome).
    #[schema(value_type = Vec<crate::schema::LeakageWarningSchema>)]
    pub leakage: Vec<LeakageWarning>,
    /// Features left out for leakage.
    pub excluded: Vec<String>,
    /// Attributes not used, and why.
    pub skipped_attributes: Vec<SkippedAttribute>,
    pub rows: usize,
    pub positives: usize,
    pub train_rows: usize,
    pub holdout_rows: usize,
    pub trees: usize,
    pub seed: u64,
    pub holdout: f64,
    pub training_ms: u64,
    /// What the request asked besides the defaults, so a scheduled retraining asks the same:
    /// the attributes it left out, the leaky features it kept, its closed-contact minimum.
    #[serde(default)]
    pub excluded_attributes: Vec<String>,
    #[serde(default)]
    pub allowed_leaky: Vec<String>,
    #[serde(default)]
    pub min_closed: usize,
}

/// A version as the API lists it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PredictiveVersionView {
    pub version: i64,
    pub live: bool,
    pub trained_at: String,
    #[serde(flatten)]
    pub report: PredictiveReport,
}

/// What is stored as a version's model: the features it reads and the learned model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredModel {
    pub schema: FeatureSchema,
    pub model: PredictiveModel,
}

/// The live version, loaded.
#[derive(Debug)]
pub struct LivePredictive {
    pub version: i64,
    pub schema: FeatureSchema,
    pub model: PredictiveModel,
}

/// One reason in a contact's predictive score (contract §9).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReasonView {
    pub feature: String,
    pub value: String,
    pub contribution: f64,
}

/// A contact's predictive score (contract §9): `intercept + Σ reasons = logit`,
/// `probability = 1 / (1 + e^-logit)`, `score = round(100 × probability)`.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PredictiveScore {
    pub score: u8,
    pub probability: f64,
    pub version: i64,
    pub logit: f64,
    pub intercept: f64,
    pub reasons: Vec<ReasonView>,
}

/// Why a predictive version cannot be trained, read or promoted.
#[derive(Debug, thiserror::Error)]
pub enum PredictiveError {
    /// The guard rails (too few closed contacts, too few of a class) or bad options.
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("holdout must be between 0.05 and 0.5")]
    Holdout,
    #[error("k_folds must be between 2 and 20")]
    Folds,
    /// Attributes to leave out that no closed contact has (a misspelt name would leave
    /// the very column meant to go).
    #[error("no closed contact has the attribute {} to exclude", .unknown.join(", "))]
    UnknownExclude { unknown: Vec<String>, attributes: Vec<String> },
    #[error("no predictive model version {0}")]
    NoVersion(i64),
    #[error("no predictive model is live yet: train one first (`leadscore train`, POST /api/v1/predictive/train)")]
    NoLiveVersion,
    /// A stored version or report this leadscore cannot read or write, or training that
    /// stopped half-way.
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PredictiveError> for AppError {
    fn from(err: PredictiveError) -> Self {
        match err {
            PredictiveError::Train(err) => {
                let details = match &err {
                    TrainError::NotEnoughClosed { have, need } => serde_json::json!({ "closed": have, "needed": need }),
                    TrainError::NotEnoughOfClass { class, have, need } => serde_json::json!({ "class": class, "have": have, "needed": need }),
                    TrainError::Invalid(_) => serde_json::Value::Null,
                };
                AppError::Invalid { message: err.to_string(), details: Some(details).filter(|d| !d.is_null()) }
            }
            PredictiveError::UnknownExclude { ref unknown, ref attributes } => {
                let details = serde_json::json!({ "unknown": unknown, "attributes": attributes });
                AppError::invalid_with(err.to_string(), details)
            }
            PredictiveError::NoVersion(_) | PredictiveError::NoLiveVersion => AppError::not_found(err.to_string()),
            PredictiveError::Store(err) => AppError::Store(err),
            PredictiveError::Holdout | PredictiveError::Folds | PredictiveError::Unreadable(_) => AppError::invalid(err.to_string()),
        }
    }
}

/// How one closed contact counts: its label and the instant its deal closed.
#[derive(Clone, Debug, PartialEq)]
struct Closed {
    label: bool,
    at: Millis,
    /// The cards recorded with the closing outcome (the rule models as of then).
    cards: BTreeMap<String, ScoreCard>,
}

/// A contact's closing outcome for `target`, from its statuses: for `won`, the latest of
/// won or lost; for `qualified`, the first qualified or won, else the latest disqualified.
fn closing(outcomes: &[&OutcomeRecord], target: Target) -> Option<Closed> {
    let status = |o: &&&OutcomeRecord| match &o.kind {
        OutcomeKind::Status { status } => Some(status.clone()),
        OutcomeKind::Feedback { .. } => None,
    };
    let mut statuses: Vec<(&OutcomeRecord, String)> = outcomes.iter().filter_map(|o| status(&o).map(|s| (*o, s))).collect();
    statuses.sort_by_key(|(o, _)| (o.at, o.id));
    let closed = |o: &OutcomeRecord, label: bool| Closed { label, at: o.at, cards: o.scores.clone() };
    match target {
        Target::Won => statuses.iter().rev().find(|(_, s)| s == "won" || s == "lost").map(|(o, s)| closed(o, s == "won")),
        Target::Qualified => statuses
            .iter()
            .find(|(_, s)| s == "qualified" || s == "won")
            .map(|(o, _)| closed(o, true))
            .or_else(|| statuses.iter().rev().find(|(_, s)| s == "disqualified").map(|(o, _)| closed(o, false))),
    }
}

/// Every contact with a closing outcome, by contact id.
async fn closed_contacts(engine: &Engine, target: Target) -> Result<BTreeMap<String, Closed>, StoreError> {
    let mut by_contact: BTreeMap<String, Vec<OutcomeRecord>> = BTreeMap::new();
    let mut after = None;
    loop {
        let page = engine.store.list_outcomes(Millis::MIN, Millis::MAX, after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for outcome in page {
            by_contact.entry(outcome.contact_id.clone()).or_default().push(outcome);
        }
    }
    Ok(by_contact
        .into_iter()
        .filter_map(|(contact, outcomes)| {
            let refs: Vec<&OutcomeRecord> = outcomes.iter().collect();
            closing(&refs, target).map(|closed| (contact, closed))
        })
        .collect())
}

const READ_CHUNK: usize = 500;

/// Trains a new version from every closed contact and stores it.
pub async fn train(engine: &Engine, request: TrainRequest, progress: Arc<dyn Fn(TrainStep) + Send + Sync>) -> Result<PredictiveVersionView, PredictiveError> {
    let started = std::time::Instant::now();
    let defaults = TrainOptions::default();
    let options = TrainOptions {
        holdout: request.holdout.unwrap_or(defaults.holdout),
        seed: request.seed.unwrap_or(defaults.seed),
        k_folds: request.k_folds,
        min_closed: request.min_closed.unwrap_or(defaults.min_closed),
        allow_leaky: request.allow_leaky.clone(),
        ..defaults
    };
    if !(0.05..=0.5).contains(&options.holdout) {
        return Err(PredictiveError::Holdout);
    }
    if options.k_folds.is_some_and(|k| !(2..=20).contains(&k)) {
        return Err(PredictiveError::Folds);
    }
    let closed = closed_contacts(engine, request.target).await?;
    // Refused before anything is read: the same guard rails training applies.
    let positives = closed.values().filter(|c| c.label).count();
    if closed.len() < options.min_closed {
        return Err(TrainError::NotEnoughClosed { have: closed.len(), need: options.min_closed }.into());
    }
    let (positive, negative) = match request.target {
        Target::Won => ("won", "lost"),
        Target::Qualified => ("qualified", "disqualified"),
    };
    for (class, have) in [(positive, positives), (negative, closed.len() - positives)] {
        if have < options.min_per_class {
            return Err(TrainError::NotEnoughOfClass { class, have, need: options.min_per_class }.into());
        }
    }

    // Each closed contact as of its outcome (one erased since is not trained on).
    let wanted: Vec<(String, Millis)> = closed.iter().map(|(id, closed)| (id.clone(), closed.at)).collect();
    let closed: Vec<&Closed> = closed.values().collect();
    let mut attributes = Vec::with_capacity(wanted.len());
    let mut events = Vec::with_capacity(wanted.len());
    let mut accounts = Vec::with_capacity(wanted.len());
    let mut kept = Vec::with_capacity(wanted.len());
    // Every account is read: whether its features are kept is decided from the data.
    read_as_of(
        engine,
        &wanted,
        true,
        |index, as_of| {
            attributes.push(as_of.attributes);
            events.push(as_of.events);
            accounts.push(as_of.account);
            kept.push(closed[index].clone());
        },
        |done| progress(TrainStep::Reading { done, of: wanted.len() }),
    )
    .await?;
    check_excludes(&request.exclude, &attributes)?;
    let models: Vec<String> = engine.models().iter().filter(|m| !m.is_shadow()).map(|m| m.name.clone()).collect();
    let snapshots: Vec<Snapshot<'_>> = kept
        .iter()
        .zip(&attributes)
        .zip(&events)
        .zip(&accounts)
        .map(|(((closed, attributes), events), account)| Snapshot { attributes, events, cards: &closed.cards, account: *account, at: closed.at })
        .collect();
    let (schema, skipped_attributes) = FeatureSchema::from_training(&snapshots, models, &request.exclude);
    let rows = snapshots.iter().map(|s| schema.row(s)).collect();
    let labels = kept.iter().map(|c| c.label).collect();
    let data = Dataset { features: schema.specs(), rows, labels };
    let (seed, holdout, min_closed) = (options.seed, options.holdout, options.min_closed);
    let trained = tokio::task::spawn_blocking(move || {
        let mut report = |step: Progress| progress(TrainStep::Training(step));
        leadscore_predict::train(&data, &options, &mut report)
    })
    .await
    .map_err(|e| PredictiveError::Unreadable(format!("training failed: {e}")))??;

    let chosen = match trained.report.chosen {
        Algorithm::Logistic => &trained.report.logistic,
        Algorithm::Boosted => &trained.report.boosted,
    };
    let report = PredictiveReport {
        target: request.target,
        algorithm: trained.report.chosen,
        auc: chosen.auc,
        log_loss: chosen.log_loss,
        calibration: chosen.calibration.clone(),
        evaluation: Evaluations { logistic: trained.report.logistic.clone(), boosted: trained.report.boosted.clone() },
        features: trained.report.features.clone(),
        leakage: trained.report.leakage.clone(),
        excluded: trained.report.excluded.clone(),
        skipped_attributes,
        rows: trained.report.rows,
        positives: trained.report.positives,
        train_rows: trained.report.train_rows,
        holdout_rows: trained.report.holdout_rows,
        trees: trained.report.trees,
        seed,
        holdout,
        training_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        excluded_attributes: request.exclude.clone(),
        allowed_leaky: request.allow_leaky.clone(),
        min_closed,
    };
    let live_auc = match engine.store.live_predictive().await? {
        Some(live) => serde_json::from_str::<PredictiveReport>(&live.report).ok().filter(|r| r.target == request.target).map(|r| r.auc),
        None => None,
    };
    let goes_live = request.live || live_auc.is_none_or(|auc| report.auc >= auc);
    let stored = StoredModel { schema, model: trained.model };
    let model_text = serde_json::to_string(&stored).map_err(|e| PredictiveError::Unreadable(format!("the model could not be written: {e}")))?;
    let report_text = serde_json::to_string(&report).map_err(|e| PredictiveError::Unreadable(format!("the report could not be written: {e}")))?;
    let trained_at = engine.now();
    let target = serde_json::to_value(request.target).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let version = engine.store.insert_predictive(&target, trained_at, model_text, report_text, goes_live).await?;
    if goes_live {
        engine.reload_predictive().await?;
    }
    tracing::info!(version, auc = report.auc, live = goes_live, rows = report.rows, "predictive model trained");
    Ok(PredictiveVersionView { version, live: goes_live, trained_at: format_time(trained_at), report })
}

/// Refuses to leave out an attribute no closed contact has: a misspelt name would
/// otherwise leave in the very column meant to go (imports name columns in snake_case:
/// `Lead Quality` is `lead_quality`).
fn check_excludes(exclude: &[String], attributes: &[serde_json::Map<String, serde_json::Value>]) -> Result<(), PredictiveError> {
    let known: std::collections::BTreeSet<&str> = attributes.iter().flat_map(|a| a.keys().map(String::as_str)).collect();
    let simple = |name: &str| name.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    let unknown: Vec<String> = exclude
        .iter()
        .filter(|name| !known.contains(name.as_str()))
        .map(|name| match known.iter().find(|k| simple(k) == simple(name)) {
            Some(close) => format!("{name:?} (did you mean {close:?}?)"),
            None => format!("{name:?}"),
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(PredictiveError::UnknownExclude { unknown, attributes: known.into_iter().map(str::to_string).collect() })
}

fn version_view(version: PredictiveVersion) -> Result<PredictiveVersionView, PredictiveError> {
    let report =
        serde_json::from_str(&version.report).map_err(|e| PredictiveError::Unreadable(format!("version {} has an unreadable report: {e}", version.version)))?;
    Ok(PredictiveVersionView { version: version.version, live: version.live, trained_at: format_time(version.trained_at), report })
}

/// What a scheduled retraining did.
#[derive(Debug)]
pub enum Retrained {
    /// No model is live: nothing was asked for yet (training starts by hand).
    NoLiveModel,
    /// No contact closed since the live version learned: the same data would give the same
    /// model.
    NothingNew { closed: usize },
    /// A new version, live only when its holdout AUC is not below the live one's.
    Trained(Box<PredictiveVersionView>),
}

/// Retrains the live version's kind of model on today's closed contacts, asking what its
/// training asked (target, holdout, seed, left-out attributes, kept features, minimum).
/// The new version replaces the live one only when it is not worse on its holdout.
pub async fn retrain(engine: &Engine, progress: Arc<dyn Fn(TrainStep) + Send + Sync>) -> Result<Retrained, PredictiveError> {
    let Some(live) = engine.store.live_predictive().await? else { return Ok(Retrained::NoLiveModel) };
    let report: PredictiveReport =
        serde_json::from_str(&live.report).map_err(|e| PredictiveError::Unreadable(format!("the live version's report cannot be read: {e}")))?;
    let closed = closed_contacts(engine, report.target).await?.len();
    if closed == report.rows {
        return Ok(Retrained::NothingNew { closed });
    }
    let request = TrainRequest {
        target: report.target,
        holdout: Some(report.holdout),
        seed: Some(report.seed),
        min_closed: Some(report.min_closed).filter(|n| *n > 0),
        k_folds: None,
        allow_leaky: report.allowed_leaky,
        exclude: report.excluded_attributes,
        live: false,
    };
    Ok(Retrained::Trained(Box::new(train(engine, request, progress).await?)))
}

/// Every version, newest first.
pub async fn list(engine: &Engine) -> Result<Vec<PredictiveVersionView>, PredictiveError> {
    engine.store.list_predictive().await?.into_iter().map(version_view).collect()
}

/// Makes `version` the live one.
pub async fn promote(engine: &Engine, version: i64) -> Result<PredictiveVersionView, PredictiveError> {
    if !engine.store.set_live_predictive(version).await? {
        return Err(PredictiveError::NoVersion(version));
    }
    engine.reload_predictive().await?;
    let listed = list(engine).await?;
    listed.into_iter().find(|v| v.version == version).ok_or(PredictiveError::NoVersion(version))
}

/// Reads the live version; one that does not parse (written by a newer leadscore, say)
/// scores nothing, with an error in the log.
pub(crate) fn parse_live(version: PredictiveVersion) -> Option<LivePredictive> {
    match serde_json::from_str::<StoredModel>(&version.model) {
        Ok(stored) => Some(LivePredictive { version: version.version, schema: stored.schema, model: stored.model }),
        Err(error) => {
            tracing::error!(version = version.version, %error, "the live predictive model cannot be read; contacts get no predictive score");
            None
        }
    }
}

/// A contact's predictive score under the live version as of `at` (now if None), or None
/// before any version exists. `cards` are the contact's rule-model cards as of then.
pub async fn score(
    engine: &Engine,
    contact: &ContactRecord,
    cards: &BTreeMap<String, ScoreCard>,
    at: Option<Millis>,
) -> Result<Option<PredictiveScore>, StoreError> {
    let Some(live) = engine.predictive() else { return Ok(None) };
    let events = ScoringEvent::from_stored(&engine.store.contact_events(&contact.id).await?);
    let at = at.unwrap_or_else(|| events.iter().map(|e| e.timestamp).max().map_or(engine.now(), |t| t.max(engine.now())));
    let account = recent_account_activity(engine, live.schema.accounts, vec![(contact.id.clone(), at)]).await?.pop().flatten();
    let row = live.schema.row(&Snapshot { attributes: &contact.attributes, events: &events, cards, account, at });
    let prediction = live.model.predict(&row);
    Ok(Some(PredictiveScore {
        score: prediction.score,
        probability: prediction.probability,
        version: live.version,
        logit: prediction.logit,
        intercept: prediction.intercept,
        reasons: prediction.reasons.into_iter().map(|r| ReasonView { feature: r.feature, value: r.value, contribution: r.contribution }).collect(),
    }))
}

/// A contact as of an instant: what training and the predictive report read.
struct AsOf {
    attributes: serde_json::Map<String, serde_json::Value>,
    /// Its events up to the instant, in scoring order.
    events: Vec<ScoringEvent>,
    account: Option<AccountActivity>,
}

/// What the rest of each contact's account did by its instant, when `wanted` (a version
/// without account features reads none): exact as of each instant. Training and the
/// predictive report read this way.
async fn account_activity(engine: &Engine, wanted: bool, asks: Vec<(String, Millis)>) -> Result<Vec<Option<AccountActivity>>, StoreError> {
    if wanted { engine.store.account_activity(asks).await } else { Ok(vec![None; asks.len()]) }
}

/// [`account_activity`] for scores as of now (stored after a write, swept, shown): an
/// account counted in the last [`ACCOUNT_COUNT_STANDS_FOR`] is not counted again, and its
/// contacts' scores are then exact as of when it was.
async fn recent_account_activity(engine: &Engine, wanted: bool, asks: Vec<(String, Millis)>) -> Result<Vec<Option<AccountActivity>>, StoreError> {
    if !wanted {
        return Ok(vec![None; asks.len()]);
    }
    let recent = &engine.account_counts;
    let read = engine.store.account_activity_reusing(asks, &|account, at| recent.get(account, at)).await?;
    recent.keep(engine.now(), read.newly_counted);
    Ok(read.answers)
}

/// How long an account's activity counted as of one instant stands for later scores as of
/// now. Counting an account reads every event of its contacts in 90 days; without this, a
/// large account was counted again at every write to any of its contacts (ingest of
/// 20,000 contacts in 10 accounts: 3,200 events/s, about 9,000 with it; BENCHMARKS.md).
/// The price: colleagues' events of the last minute may be missing from a stored or shown
/// score.
pub const ACCOUNT_COUNT_STANDS_FOR: Millis = 60_000;

/// Accounts' activity counted as of recent instants (for [`ACCOUNT_COUNT_STANDS_FOR`]).
#[derive(Debug, Default)]
pub struct RecentAccountCounts(std::sync::Mutex<RecentCounts>);

#[derive(Debug, Default)]
struct RecentCounts {
    by_account: std::collections::HashMap<String, (Millis, AccountActivity)>,
    /// Past this many accounts, the expired counts are dropped.
    prune_above: usize,
}

impl RecentAccountCounts {
    /// The account's count to use for an ask as of `at`: one counted as of an instant at
    /// most [`ACCOUNT_COUNT_STANDS_FOR`] before it, never after it (nothing later leaks).
    pub fn get(&self, account: &str, at: Millis) -> Option<(Millis, AccountActivity)> {
        let recent = self.0.lock().ok()?;
        recent.by_account.get(account).copied().filter(|(as_of, _)| *as_of <= at && at - *as_of <= ACCOUNT_COUNT_STANDS_FOR)
    }

    /// Keeps the counts as of instants from the last [`ACCOUNT_COUNT_STANDS_FOR`] up to
    /// `now` (the newest per account); counts as of older or later instants serve no
    /// later ask as of now.
    pub fn keep(&self, now: Millis, counted: Vec<(String, Millis, AccountActivity)>) {
        let Ok(mut recent) = self.0.lock() else { return };
        for (account, as_of, count) in counted {
            if as_of > now || now - as_of > ACCOUNT_COUNT_STANDS_FOR {
                continue;
            }
            if recent.by_account.get(&account).is_none_or(|(kept, _)| *kept < as_of) {
                recent.by_account.insert(account, (as_of, count));
            }
        }
        if recent.by_account.len() > recent.prune_above {
            recent.by_account.retain(|_, (as_of, _)| now - *as_of <= ACCOUNT_COUNT_STANDS_FOR);
            recent.prune_above = (recent.by_account.len() * 2).max(10_000);
        }
    }
}

/// Reads each `(contact id, instant)` as of its instant, in chunks: its attributes then
/// (from its log), its events up to then and, with `accounts`, its account's activity by
/// then. Calls `each` with the index in `wanted`; contacts erased since are skipped.
/// `read` hears how many were read after each chunk.
async fn read_as_of(
    engine: &Engine,
    wanted: &[(String, Millis)],
    accounts: bool,
    mut each: impl FnMut(usize, AsOf),
    mut read: impl FnMut(usize),
) -> Result<(), StoreError> {
    let mut done = 0;
    for (chunk_index, chunk) in wanted.chunks(READ_CHUNK).enumerate() {
        let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
        let contacts: BTreeMap<String, ContactRecord> = engine.store.get_contacts(&ids).await?.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut events = engine.store.scoring_events_of(&ids).await?;
        let activity = account_activity(engine, accounts, chunk.to_vec()).await?;
        for (offset, ((id, at), account)) in chunk.iter().zip(activity).enumerate() {
            let Some(contact) = contacts.get(id) else { continue };
            let log = engine.store.contact_log(id).await?;
            let mut seen = events.remove(id).unwrap_or_default();
            seen.retain(|e| e.timestamp <= *at);
            each(chunk_index * READ_CHUNK + offset, AsOf { attributes: attributes_as_of(&log, *at, &contact.attributes), events: seen, account });
            done += 1;
        }
        read(done);
    }
    Ok(())
}

/// Each judged contact's predictive score under `live` as of the instant it is judged at
/// (its close, else its latest status): read as training reads a closed contact, with the
/// rule cards recorded with that status. Contacts erased since are left out.
pub(crate) async fn scores_as_judged(
    engine: &Engine,
    live: &LivePredictive,
    timelines: &[crate::reports::Timeline],
) -> Result<std::collections::HashMap<String, u8>, StoreError> {
    let wanted: Vec<(String, Millis)> = timelines.iter().map(|t| (t.contact_id.clone(), t.judged_at())).collect();
    let mut scores = std::collections::HashMap::with_capacity(timelines.len());
    read_as_of(
        engine,
        &wanted,
        live.schema.accounts,
        |index, as_of| {
            let timeline = &timelines[index];
            let cards = timeline.close.as_ref().map_or(&timeline.latest.1, |(_, _, cards)| cards);
            let contact = Snapshot { attributes: &as_of.attributes, events: &as_of.events, cards, account: as_of.account, at: timeline.judged_at() };
            let probability = live.model.probability(&live.schema.row(&contact));
            scores.insert(timeline.contact_id.clone(), leadscore_predict::score_of(probability));
        },
        |_| {},
    )
    .await?;
    Ok(scores)
}

/// How long a stored predictive score stands before the sweep takes it again: its
/// features count events in trailing windows, which move with time alone.
pub const STORED_SCORE_STANDS_FOR: Millis = 6 * 3_600_000;

/// Scores these contacts under the live version and stores the scores (after a write to
/// them; a contact whose score changed is queued for its automations). Contacts that do
/// not exist are skipped. Answers how many were stored; 0 before any version is live.
pub async fn refresh_scores(engine: &Engine, ids: &[String]) -> Result<usize, StoreError> {
    if engine.predictive().is_none() {
        return Ok(0);
    }
    let mut written = 0;
    for chunk in ids.chunks(READ_CHUNK) {
        let contacts = engine.store.get_contacts(chunk).await?;
        written += refresh_scores_of(engine, &contacts).await?;
    }
    Ok(written)
}

/// [`refresh_scores`] from the contacts as a write just left them (an ingest answers them):
/// reading them again took 17 % of the CPU time of `bench ingest --predictive`.
pub async fn refresh_scores_of(engine: &Engine, contacts: &[ContactRecord]) -> Result<usize, StoreError> {
    let Some(live) = engine.predictive() else { return Ok(0) };
    let now = engine.now();
    let mut written = 0;
    for contacts in contacts.chunks(READ_CHUNK) {
        let ids: Vec<String> = contacts.iter().map(|contact| contact.id.clone()).collect();
        let mut events = engine.store.scoring_events_of(&ids).await?;
        // As the contact's page computes it (`score`): now, or its newest event if later.
        let events: Vec<(&ContactRecord, Vec<ScoringEvent>, Millis)> = contacts
            .iter()
            .map(|contact| {
                let events = events.remove(&contact.id).unwrap_or_default();
                let at = events.iter().map(|e| e.timestamp).max().map_or(now, |t| t.max(now));
                (contact, events, at)
            })
            .collect();
        let accounts = recent_account_activity(engine, live.schema.accounts, events.iter().map(|(contact, _, at)| (contact.id.clone(), *at)).collect()).await?;
        let mut scores = Vec::with_capacity(contacts.len());
        for ((contact, events, at), account) in events.into_iter().zip(accounts) {
            let cards: BTreeMap<String, ScoreCard> =
                crate::contacts::current_cards(engine, contact, None).await?.into_iter().map(|(model, card)| (model.name.clone(), card)).collect();
            // Without reasons (the contact's page explains when read): the bulk path.
            let probability =
                live.model.probability(&live.schema.row(&Snapshot { attributes: &contact.attributes, events: &events, cards: &cards, account, at }));
            scores.push((
                contact.id.clone(),
                PredictiveScoreRow { version: live.version, score: leadscore_predict::score_of(probability), probability, as_of: at },
            ));
        }
        written += engine.store.put_predictive_scores(scores, now).await?;
    }
    if written > 0 {
        metrics::counter!("leadscore_predictive_scored_total").increment(written as u64);
    }
    Ok(written)
}

/// Stores a predictive score for every contact that lacks one of the live version or
/// whose score is older than [`STORED_SCORE_STANDS_FOR`]: all of them after a new version
/// goes live. Answers how many were stored.
pub async fn sweep(engine: &Engine) -> Result<usize, StoreError> {
    let Some(live) = engine.predictive() else { return Ok(0) };
    let stale_before = engine.now() - STORED_SCORE_STANDS_FOR;
    let mut after: Option<String> = None;
    let mut written = 0;
    loop {
        let ids = engine.store.contacts_to_predict(live.version, stale_before, after.as_deref(), READ_CHUNK).await?;
        let Some(last) = ids.last().cloned() else { break };
        written += refresh_scores(engine, &ids).await?;
        after = Some(last);
    }
    if written > 0 {
        crate::runtime::contacts_changed(engine);
        tracing::info!(version = live.version, contacts = written, "predictive scores stored");
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept count serves asks up to a minute after the instant it was counted as of,
    /// never before it; the newest per account wins; counts as of old or future instants
    /// are not kept.
    #[test]
    fn recent_account_counts_stand_for_a_minute_after_their_instant() {
        let count = |n| AccountActivity { active_colleagues: n, events_30d: n, events_90d: n };
        let recent = RecentAccountCounts::default();
        let now = 1_000_000;
        recent.keep(
            now,
            vec![("acme".into(), now - 10, count(1)), ("old".into(), now - ACCOUNT_COUNT_STANDS_FOR - 1, count(2)), ("later".into(), now + 1, count(3))],
        );
        assert_eq!(recent.get("acme", now - 10), Some((now - 10, count(1))));
        assert_eq!(recent.get("acme", now - 10 + ACCOUNT_COUNT_STANDS_FOR), Some((now - 10, count(1))));
        assert_eq!(recent.get("acme", now - 9 + ACCOUNT_COUNT_STANDS_FOR), None, "too old for this ask");
        assert_eq!(recent.get("acme", now - 11), None, "counted after the ask's instant");
        assert_eq!((recent.get("old", now), recent.get("later", now + 1)), (None, None));
        recent.keep(now, vec![("acme".into(), now - 20, count(4))]);
        assert_eq!(recent.get("acme", now), Some((now - 10, count(1))), "an older count does not replace a newer");
        recent.keep(now + 5, vec![("acme".into(), now + 5, count(5))]);
        assert_eq!(recent.get("acme", now + 5), Some((now + 5, count(5))));
    }

    fn status(id: i64, status: &str, at: Millis) -> OutcomeRecord {
        OutcomeRecord { id, contact_id: "c".into(), kind: OutcomeKind::Status { status: status.into() }, at, scores: BTreeMap::new(), recorded_at: at }
    }

    #[test]
    fn the_closing_outcome_decides_the_label_and_the_instant() {
        let history = [status(1, "contacted", 10), status(2, "qualified", 20), status(3, "lost", 30), status(4, "won", 40)];
        let refs: Vec<&OutcomeRecord> = history.iter().collect();
        let won = closing(&refs, Target::Won).unwrap();
        assert_eq!((won.label, won.at), (true, 40), "the latest of won and lost");
        let qualified = closing(&refs, Target::Qualified).unwrap();
        assert_eq!((qualified.label, qualified.at), (true, 20), "the first qualification");
        let open = [status(1, "contacted", 10)];
        assert!(closing(&open.iter().collect::<Vec<_>>(), Target::Won).is_none());
        let disqualified = [status(1, "disqualified", 10), status(2, "disqualified", 50)];
        let closed = closing(&disqualified.iter().collect::<Vec<_>>(), Target::Qualified).unwrap();
        assert_eq!((closed.label, closed.at), (false, 50));
        assert!(closing(&disqualified.iter().collect::<Vec<_>>(), Target::Won).is_none());
    }
}
