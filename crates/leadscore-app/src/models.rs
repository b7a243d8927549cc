//! Publishing, promoting and deleting models, and the rescore jobs a new version starts.

use std::sync::Arc;

use leadscore_core::model::is_valid_name;
use leadscore_core::{Format, Model};
use leadscore_store::{Job, Millis, ModelVersion, NewJob, NewModelVersion, PublishedModel, StoreError};

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Engine;
use crate::error::AppError;

/// Why a model cannot be published, rescored, found or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("{0:?} is not a valid model name: use 1-64 of a-z, 0-9, _ and -")]
    Name(String),
    /// A name the rule models share with something else: `predictive` is the predictive
    /// score's, in sorts, automations and CRM payloads.
    #[error("{0:?} is taken by the predictive score (sort=-predictive, score = \"predictive\", CRM fields): name the model otherwise")]
    Reserved(String),
    /// A model with problems: each problem and where it is.
    #[error(transparent)]
    Invalid(#[from] leadscore_core::ModelError),
    #[error("the model is named {named:?} but was sent to /models/{sent_to}")]
    Misnamed { named: String, sent_to: String },
    #[error("no model {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ModelsError> for AppError {
    fn from(err: ModelsError) -> Self {
        match err {
            ModelsError::Name(_) | ModelsError::Reserved(_) => AppError::bad_request(err.to_string()),
            // Each problem and where it is.
            ModelsError::Invalid(err) => AppError::invalid_with(err.to_string(), serde_json::json!({ "problems": err.problems() })),
            ModelsError::Misnamed { .. } => AppError::invalid(err.to_string()),
            ModelsError::NotFound(_) => AppError::not_found(err.to_string()),
            ModelsError::Store(err) => AppError::Store(err),
        }
    }
}
use crate::time::format_time;

pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::Toml => "toml",
        Format::Json => "json",
    }
}

/// The live version of `name` when it already holds `source` (the same text, trailing
/// whitespace aside) with the same shadow target: publishing it again would only make a
/// version nobody can tell apart and rescore every contact for nothing (issue 12.9).
pub async fn unchanged_version(engine: &Engine, name: &str, source: &str, shadow_of: Option<&str>) -> Result<Option<ModelVersion>, StoreError> {
    let Some(live) = engine.model(name) else { return Ok(None) };
    if live.shadow_of.as_deref() != shadow_of {
        return Ok(None);
    }
    let versions = engine.store.model_versions(name).await?;
    let same = |a: &str, b: &str| a.trim_end().lines().map(str::trim_end).eq(b.trim_end().lines().map(str::trim_end));
    Ok(versions.into_iter().find(|v| v.version == live.version && same(&v.source, source)).map(|v| ModelVersion { shadow_of: live.shadow_of.clone(), ..v }))
}

/// Stores a validated model as the new head of its name (live, or a shadow of
/// `shadow_of`) and reloads the live set, without rescoring: the caller runs the rescore
/// (the CLI with a progress bar, [`publish`] in the background).
pub async fn store_version(engine: &Engine, model: &Model, source: &str, format: Format, shadow_of: Option<String>) -> Result<ModelVersion, StoreError> {
    let new = NewModelVersion { name: model.name.clone(), source: source.to_string(), format: format_name(format).into(), shadow_of };
    let version = engine.store.publish_model(new, engine.now()).await?;
    engine.reload_models().await?;
    Ok(version)
}

/// Publishes a validated model: stores the version, makes it the head (live, or a shadow
/// of `shadow_of`), starts the rescore.
pub async fn publish(engine: &Arc<Engine>, model: Model, source: &str, format: Format, shadow_of: Option<String>) -> Result<(ModelVersion, Job), StoreError> {
    let version = store_version(engine, &model, source, format, shadow_of).await?;
    let job = start_rescore(engine, &version.name).await?;
    tracing::info!(model = %version.name, version = version.version, shadow_of = ?version.shadow_of, "model published; rescoring");
    Ok((version, job))
}

/// Whether a model may be published under `name`: a valid name, and not one the rule
/// models share with the predictive score (a model already live under it keeps working).
pub fn check_new_name(engine: &Engine, name: &str) -> Result<(), ModelsError> {
    if !is_valid_name(name) {
        return Err(ModelsError::Name(name.to_string()));
    }
    if name == leadscore_store::runner::PREDICTIVE_FIELD && engine.model(name).is_none() {
        return Err(ModelsError::Reserved(name.to_string()));
    }
    Ok(())
}

/// What a PUT of a model did.
pub enum Put {
    /// The live version already holds this text: nothing was published.
    Unchanged(ModelVersion, Option<Job>),
    Published(ModelVersion, Job),
}

/// Validates model text sent for `name` and publishes it unless the live version already
/// holds it (issue 12.9).
pub async fn put(engine: &Arc<Engine>, name: &str, text: &str, format: Format, shadow_of: Option<String>) -> Result<Put, ModelsError> {
    check_new_name(engine, name)?;
    let model = Model::parse_as(text, format)?;
    if model.name != name {
        return Err(ModelsError::Misnamed { named: model.name, sent_to: name.to_string() });
    }
    let shadow_of = shadow_of.filter(|s| !s.is_empty());
    if let Some(live) = unchanged_version(engine, name, text, shadow_of.as_deref()).await? {
        let job = engine.store.latest_job(name).await?;
        return Ok(Put::Unchanged(live, job));
    }
    let (version, job) = publish(engine, model, text, format, shadow_of).await?;
    Ok(Put::Published(version, job))
}

/// Starts a rescore of live model `name` in the background.
pub async fn rescore(engine: &Arc<Engine>, name: &str) -> Result<Job, ModelsError> {
    if engine.model(name).is_none() {
        return Err(ModelsError::NotFound(name.to_string()));
    }
    Ok(start_rescore(engine, name).await?)
}

/// Promotes a shadow model (F31): its definition, renamed, becomes a new version of the
/// model it shadows, and the shadow goes. The caller starts the live model's rescore.
pub async fn promote(engine: &Engine, shadow: &str) -> Result<ModelVersion, StoreError> {
    let published = engine.model(shadow).ok_or_else(|| StoreError::NotFound(format!("model {shadow}")))?;
    let live_name =
        published.shadow_of.clone().ok_or_else(|| StoreError::Conflict(format!("{shadow} is a live model, not a shadow: there is nothing to promote")))?;
    let versions = engine.store.model_versions(shadow).await?;
    let current = versions.iter().find(|v| v.version == published.version).ok_or_else(|| StoreError::NotFound(format!("model {shadow}")))?;
    let format = if current.format == "json" { Format::Json } else { Format::Toml };
    let source = leadscore_core::model::renamed_source(&current.source, format, &live_name)
        .map_err(|e| StoreError::database(format!("stored model {shadow} v{} cannot be renamed", current.version), e))?;
    let live = NewModelVersion { name: live_name, source, format: current.format.clone(), shadow_of: None };
    let version = engine.store.promote_model(shadow, published.version, live, engine.now()).await?;
    engine.reload_models().await?;
    tracing::info!(shadow, model = %version.name, version = version.version, "shadow model promoted");
    Ok(version)
}

/// How long a claimed job stays with this process without progress; after a crash,
/// another process takes it over once this has passed. A chunk takes well under it.
pub const JOB_LEASE_MS: Millis = 30_000;

/// Creates a rescore job for the live version of `name`, claims it for this process and
/// runs it in the background.
pub async fn start_rescore(engine: &Arc<Engine>, name: &str) -> Result<Job, StoreError> {
    let job = create_claimed_job(engine, name).await?;
    let (worker, mut running) = (engine.clone(), job.clone());
    engine.runtime.spawn(async move { run_job(&worker, &mut running).await });
    Ok(job)
}

/// Creates a rescore job for the live version of `name`, claimed by this process (the
/// caller runs it with [`rescore_step`]).
pub async fn create_claimed_job(engine: &Engine, name: &str) -> Result<Job, StoreError> {
    let published = engine.model(name).ok_or_else(|| StoreError::NotFound(format!("model {name}")))?;
    let total = engine.store.count_contacts().await?;
    let lease = Some((engine.runtime.worker_id.clone(), engine.now() + JOB_LEASE_MS));
    engine.store.create_job(NewJob { kind: "rescore".into(), model: name.into(), version: published.version, total, lease }, engine.now()).await
}

/// Runs a claimed job to its end (or until another process takes it over).
async fn run_job(engine: &Engine, job: &mut Job) {
    loop {
        if engine.runtime.shutdown.is_cancelled() {
            // Stopping between chunks: the cursor is stored, and giving up the lease lets
            // the next process (or this one restarted) continue at once.
            tracing::info!(job = job.id, done = job.done, "rescore job paused by shutdown; it resumes from its cursor");
            let _ = engine.store.update_claimed_job(job, &engine.runtime.worker_id, engine.now()).await;
            break;
        }
        match rescore_step(engine, job).await {
            Ok(true) => continue,
            Ok(false) => break,
            Err(err) => {
                tracing::error!(job = job.id, error = %leadscore_store::ErrorChain(&err), "rescore job failed");
                job.state = "failed".into();
                job.error = Some(leadscore_store::ErrorChain(&err).to_string());
                job.updated_at = engine.now();
                let _ = engine.store.update_claimed_job(job, &engine.runtime.worker_id, engine.now()).await;
                break;
            }
        }
    }
}

/// One step of the job worker: takes an unfinished job nobody holds (queued, or left by
/// a crashed process whose lease expired) and runs it. Returns whether it ran one.
pub async fn job_step(engine: &Engine) -> Result<bool, StoreError> {
    let Some(mut job) = engine.store.claim_job(None, &engine.runtime.worker_id, JOB_LEASE_MS, engine.now()).await? else {
        return Ok(false);
    };
    if job.kind != "rescore" {
        // A backtest keeps its partial results in memory: one whose process died is over.
        tracing::warn!(job = job.id, kind = %job.kind, "job left unfinished by a stopped process; marking it failed");
        job.state = "failed".into();
        job.error = Some(format!("the process running this {} stopped before it finished; start it again", job.kind));
        job.updated_at = engine.now();
        record(engine, &job).await?;
        return Ok(true);
    }
    tracing::info!(job = job.id, model = %job.model, done = job.done, "taking over rescore job");
    if engine.model(&job.model).is_none_or(|m| m.version < job.version) {
        engine.reload_models().await?;
    }
    run_job(engine, &mut job).await;
    Ok(true)
}

/// Records a claimed job and extends its lease; false when another process took it over.
async fn record(engine: &Engine, job: &Job) -> Result<bool, StoreError> {
    let kept = engine.store.update_claimed_job(job, &engine.runtime.worker_id, engine.now() + JOB_LEASE_MS).await?;
    if !kept {
        tracing::warn!(job = job.id, "rescore job taken over by another process; stopping here");
    }
    Ok(kept)
}

/// Runs one chunk of a claimed rescore job and records progress. Returns whether work
/// remains (false also when another process took the job over). A job whose model version
/// is no longer live ends as `superseded` (a newer job runs).
pub async fn rescore_step(engine: &Engine, job: &mut Job) -> Result<bool, StoreError> {
    let Some(published) = engine.model(&job.model).filter(|m| m.version == job.version) else {
        job.state = "superseded".into();
        job.updated_at = engine.now();
        record(engine, job).await?;
        return Ok(false);
    };
    if job.state != "running" {
        job.state = "running".into();
    }
    let chunk = match engine.store.rescore_chunk(&published, job.cursor.clone(), engine.config.rescore_chunk, engine.now()).await {
        Ok(chunk) => chunk,
        // Another publish (maybe by another process) made this version history.
        Err(StoreError::Conflict(reason)) => {
            tracing::info!(job = job.id, %reason, "rescore job superseded");
            job.state = "superseded".into();
            job.updated_at = engine.now();
            record(engine, job).await?;
            engine.reload_models().await?;
            return Ok(false);
        }
        Err(other) => return Err(other),
    };
    job.done += chunk.contacts;
    job.total = job.total.max(job.done);
    job.updated_at = engine.now();
    metrics::counter!("leadscore_rescored_contacts_total").increment(chunk.contacts);
    let more = match chunk.last_contact {
        Some(last) => {
            job.cursor = Some(last);
            true
        }
        None => {
            if !rescore_outcomes(engine, &published, job).await? {
                return Ok(false);
            }
            job.state = "done".into();
            job.total = job.done;
            false
        }
    };
    Ok(record(engine, job).await? && more)
}

/// How many outcomes one step of [`rescore_outcomes`] judges.
const OUTCOME_CHUNK: usize = 2_000;

/// The last step of a rescore: every recorded outcome is judged again by the version now
/// live, its card replayed as of the outcome's `at`. So an outcome recorded before any
/// model existed counts once one does, and a report labelled with a version shows that
/// version's numbers (issue 12.2, 12.3). A shadow judges again only the outcomes it
/// already scored: it is compared on what happened while it ran on live traffic, and the
/// past before it is the backtest's to replay. Returns false when another process took the
/// job over (the lease is renewed after every chunk).
async fn rescore_outcomes(engine: &Engine, published: &Arc<PublishedModel>, job: &Job) -> Result<bool, StoreError> {
    let mut after = None;
    loop {
        let chunk = engine.store.list_outcomes(Millis::MIN, Millis::MAX, after, OUTCOME_CHUNK).await?;
        let Some(last) = chunk.last() else { return Ok(true) };
        after = Some(last.id);
        let mut by_contact: std::collections::BTreeMap<&str, Vec<(i64, Millis)>> = std::collections::BTreeMap::new();
        for outcome in chunk.iter().filter(|o| !published.is_shadow() || o.scores.contains_key(&published.name)) {
            by_contact.entry(outcome.contact_id.as_str()).or_default().push((outcome.id, outcome.at));
        }
        let ids: Vec<String> = by_contact.keys().map(|id| id.to_string()).collect();
        let by_contact: Arc<std::collections::HashMap<String, Vec<(i64, Millis)>>> =
            Arc::new(by_contact.into_iter().map(|(id, outcomes)| (id.to_string(), outcomes)).collect());
        let mut cards = Vec::with_capacity(chunk.len());
        let mut pages = crate::reports::ReplayPages::of(engine, &ids);
        while let Some((_, page)) = pages.next().await? {
            let (model, by_contact) = (published.clone(), by_contact.clone());
            let judged = crate::reports::replay_in_parallel(page, move |contact, events| {
                let applies = model.model.applies_to(&contact.attributes);
                let outcomes = by_contact.get(&contact.id)?;
                Some(
                    outcomes
                        .iter()
                        .map(|(id, at)| (*id, applies.then(|| leadscore_store::scoring::card_from_events(&model, &contact.attributes, events, *at))))
                        .collect::<Vec<_>>(),
                )
            })
            .await?;
            cards.extend(judged.into_iter().flatten());
        }
        engine.store.set_outcome_cards(&published.name, cards).await?;
        if !record(engine, job).await? {
            return Ok(false);
        }
    }
}

/// The job worker: takes over unfinished jobs whose process is gone (their cursor says
/// where to continue), now and every few seconds.
pub fn spawn_job_worker(engine: Arc<Engine>) {
    let worker = engine.clone();
    engine.runtime.spawn(async move {
        let engine = worker;
        while !engine.runtime.shutdown.is_cancelled() {
            match job_step(&engine).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => tracing::error!(error = %leadscore_store::ErrorChain(&err), "cannot take over a rescore job"),
            }
            if engine.runtime.pause(std::time::Duration::from_secs(5)).await {
                return;
            }
        }
    });
}

/// Deletes model `name` and every version of it.
pub async fn delete(engine: &Engine, name: &str) -> Result<(), ModelsError> {
    if !engine.store.delete_model(name).await? {
        return Err(ModelsError::NotFound(name.to_string()));
    }
    engine.reload_models().await?;
    Ok(())
}

/// A live model with the version that is live and its latest rescore job.
pub struct ModelOverview {
    pub published: Arc<PublishedModel>,
    pub current: ModelVersion,
    pub job: Option<Job>,
    /// The shadows trying themselves against this model.
    pub shadows: Vec<String>,
}

/// Live model `name`.
pub async fn overview(engine: &Engine, name: &str) -> Result<ModelOverview, ModelsError> {
    let published = engine.model(name).ok_or_else(|| ModelsError::NotFound(name.to_string()))?;
    let versions = engine.store.model_versions(name).await?;
    let current = versions.into_iter().find(|v| v.version == published.version).ok_or_else(|| ModelsError::NotFound(name.to_string()))?;
    let job = engine.store.latest_job(name).await?;
    let shadows = engine.models().iter().filter(|m| m.shadow_of.as_deref() == Some(name)).map(|m| m.name.clone()).collect();
    Ok(ModelOverview { published, current, job, shadows })
}

/// Every live model's head version with its latest rescore job.
pub async fn list(engine: &Engine) -> Result<Vec<(ModelVersion, Option<Job>)>, StoreError> {
    let mut items = Vec::new();
    for version in engine.store.live_models().await? {
        let job = engine.store.latest_job(&version.name).await?;
        items.push((version, job));
    }
    Ok(items)
}

/// Every version of model `name`, oldest first, with the one that is live.
pub async fn versions(engine: &Engine, name: &str) -> Result<(Vec<ModelVersion>, Option<u32>), ModelsError> {
    let versions = engine.store.model_versions(name).await?;
    if versions.is_empty() {
        return Err(ModelsError::NotFound(name.to_string()));
    }
    Ok((versions, engine.model(name).map(|m| m.version)))
}

/// A job (a rescore, a background backtest) as front ends show it: where it stands.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Contacts done so far.
    pub done: u64,
    #[schema(required = true)]
    pub error: Option<String>,
    pub id: i64,
    /// `rescore` or `backtest`.
    pub kind: String,
    /// done / total in percent, one decimal (100 once a job with nothing to do is done).
    pub percent: f64,
    pub started_at: String,
    /// queued, running, done, failed or superseded.
    pub state: String,
    pub total: u64,
    pub updated_at: String,
    /// The model version the job is for.
    pub version: u32,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        // Nothing to do is done once the job ends; before that (a backtest counts its work
        // once it has started) it is 0 %.
        let percent = match (job.total, job.state.as_str()) {
            (0, "done") => 100.0,
            (0, _) => 0.0,
            (total, _) => (job.done as f64 * 1000.0 / total as f64).round() / 10.0,
        };
        JobView {
            done: job.done,
            error: job.error.clone(),
            id: job.id,
            kind: job.kind.clone(),
            percent: percent.min(100.0),
            started_at: format_time(job.created_at),
            state: job.state.clone(),
            total: job.total,
            updated_at: format_time(job.updated_at),
            version: job.version,
        }
    }
}

/// A live or shadow model in the list of models, with its latest rescore.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ModelListItem {
    pub created_at: String,
    /// `toml` or `json`: how the live version was published.
    pub format: String,
    pub name: String,
    #[schema(required = true)]
    pub rescore: Option<JobView>,
    /// The live model a shadow model shadows (null for a live model).
    #[schema(required = true)]
    pub shadow_of: Option<String>,
    pub version: u32,
}

impl ModelListItem {
    pub fn new(version: &ModelVersion, job: Option<&Job>) -> Self {
        ModelListItem {
            created_at: format_time(version.created_at),
            format: version.format.clone(),
            name: version.name.clone(),
            rescore: job.map(JobView::from),
            shadow_of: version.shadow_of.clone(),
            version: version.version,
        }
    }
}

/// A live model: its definition, the version that is live, and its latest rescore.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ModelView {
    pub created_at: String,
    /// The model as JSON (contract §2).
    #[schema(value_type = Object)]
    pub definition: Value,
    #[schema(required = true)]
    pub description: Option<String>,
    /// `toml` or `json`: how this version was published.
    pub format: String,
    pub name: String,
    #[schema(required = true)]
    pub rescore: Option<JobView>,
    /// The live model this one shadows (null for a live model).
    #[schema(required = true)]
    pub shadow_of: Option<String>,
    /// The shadow models trying themselves against this one.
    pub shadows: Vec<String>,
    pub version: u32,
}

impl ModelView {
    pub fn new(overview: &ModelOverview) -> Self {
        let ModelOverview { published, current, job, shadows } = overview;
        ModelView {
            created_at: format_time(current.created_at),
            definition: published.model.definition.clone(),
            description: published.model.description.clone(),
            format: current.format.clone(),
            name: published.name.clone(),
            rescore: job.as_ref().map(JobView::from),
            shadow_of: published.shadow_of.clone(),
            shadows: shadows.clone(),
            version: published.version,
        }
    }
}

/// One version of a model, with its text as published.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ModelVersionView {
    pub created_at: String,
    pub format: String,
    /// Whether this is the version that scores contacts.
    pub live: bool,
    pub name: String,
    #[schema(required = true)]
    pub shadow_of: Option<String>,
    /// The text as published (TOML or JSON).
    pub source: String,
    pub version: u32,
}

impl ModelVersionView {
    pub fn new(version: &ModelVersion, live: Option<u32>) -> Self {
        ModelVersionView {
            created_at: format_time(version.created_at),
            format: version.format.clone(),
            live: Some(version.version) == live,
            name: version.name.clone(),
            shadow_of: version.shadow_of.clone(),
            source: version.source.clone(),
            version: version.version,
        }
    }
}
