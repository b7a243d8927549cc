//! Models: publish (a new version + a background rescore), read, list, validate, delete,
//! versions. The rescore job is a loop of `rescore_step`, which tests call directly.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_core::model::{Format, is_valid_name};
use leadscore_core::{Model, ModelError};
use leadscore_store::{Job, Millis, ModelVersion, NewJob, NewModelVersion, PublishedModel, Scope, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Query, format_time};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/models", get(list_models))
        .route("/models/validate", post(validate_model))
        .route("/models/{name}", get(get_model).put(put_model).delete(delete_model))
        .route("/models/{name}/versions", get(model_versions))
        .route("/models/{name}/rescore", post(rescore_model))
        .route("/models/{name}/promote", post(promote_model))
}

pub(crate) fn body_format(headers: &HeaderMap, text: &str) -> Format {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.contains("json") {
        Format::Json
    } else if content_type.contains("toml") {
        Format::Toml
    } else {
        Format::sniff(text)
    }
}

fn model_error(err: ModelError) -> ApiError {
    let problems = err.problems();
    ApiError::invalid(err.to_string()).with_details(json!({ "problems": problems }))
}

pub fn job_json(job: &Job) -> Value {
    // Nothing to do is done once the job ends; before that (a backtest counts its work
    // once it has started) it is 0 %.
    let percent = match (job.total, job.state.as_str()) {
        (0, "done") => 100.0,
        (0, _) => 0.0,
        (total, _) => (job.done as f64 * 1000.0 / total as f64).round() / 10.0,
    };
    json!({
        "id": job.id,
        "kind": job.kind,
        "version": job.version,
        "state": job.state,
        "done": job.done,
        "total": job.total,
        "percent": percent.min(100.0),
        "started_at": format_time(job.created_at),
        "updated_at": format_time(job.updated_at),
        "error": job.error,
    })
}

fn version_json(v: &ModelVersion) -> Value {
    json!({ "name": v.name, "version": v.version, "format": v.format, "created_at": format_time(v.created_at), "shadow_of": v.shadow_of })
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Toml => "toml",
        Format::Json => "json",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutQuery {
    /// Publish as a shadow of this live model (F31).
    shadow_of: Option<String>,
}

async fn put_model(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    if !is_valid_name(&name) {
        return Err(ApiError::bad_request(format!("{name:?} is not a valid model name: use 1-64 of a-z, 0-9, _ and -")));
    }
    let text = body.text()?;
    let format = body_format(&headers, text);
    let model = Model::parse_as(text, format).map_err(model_error)?;
    if model.name != name {
        return Err(ApiError::invalid(format!("the model is named {:?} but was sent to /models/{name}", model.name)));
    }
    let shadow_of = q.shadow_of.filter(|s| !s.is_empty());
    if let Some(live) = unchanged_version(&state, &name, text, shadow_of.as_deref()).await? {
        let job = state.store.latest_job(&name).await?;
        let body = json!({ "name": name, "version": live.version, "shadow_of": live.shadow_of, "unchanged": true, "rescore": job.as_ref().map(job_json) });
        return Ok((StatusCode::OK, Json(body)));
    }
    let (version, job) = publish(&state, model, text, format, shadow_of).await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": name, "version": version.version, "shadow_of": version.shadow_of, "rescore": job_json(&job) }))))
}

/// The live version of `name` when it already holds `source` (the same text, trailing
/// whitespace aside) with the same shadow target: publishing it again would only make a
/// version nobody can tell apart and rescore every contact for nothing (issue 12.9).
pub async fn unchanged_version(state: &AppState, name: &str, source: &str, shadow_of: Option<&str>) -> Result<Option<ModelVersion>, StoreError> {
    let Some(live) = state.model(name) else { return Ok(None) };
    if live.shadow_of.as_deref() != shadow_of {
        return Ok(None);
    }
    let versions = state.store.model_versions(name).await?;
    let same = |a: &str, b: &str| a.trim_end().lines().map(str::trim_end).eq(b.trim_end().lines().map(str::trim_end));
    Ok(versions.into_iter().find(|v| v.version == live.version && same(&v.source, source)).map(|v| ModelVersion { shadow_of: live.shadow_of.clone(), ..v }))
}

/// Publishes a validated model: stores the version, makes it the head (live, or a shadow
/// of `shadow_of`), starts the rescore.
pub async fn publish(state: &Arc<AppState>, model: Model, source: &str, format: Format, shadow_of: Option<String>) -> Result<(ModelVersion, Job), StoreError> {
    let new = NewModelVersion { name: model.name.clone(), source: source.to_string(), format: format_name(format).into(), shadow_of };
    let version = state.store.publish_model(new, state.now()).await?;
    state.reload_models().await?;
    let job = start_rescore(state, &version.name).await?;
    tracing::info!(model = %version.name, version = version.version, shadow_of = ?version.shadow_of, "model published; rescoring");
    Ok((version, job))
}

/// Promotes a shadow model (F31): its definition, renamed, becomes a new version of the
/// model it shadows, and the shadow goes. The caller starts the live model's rescore.
pub async fn promote(state: &AppState, shadow: &str) -> Result<ModelVersion, StoreError> {
    let published = state.model(shadow).ok_or_else(|| StoreError::NotFound(format!("model {shadow}")))?;
    let live_name =
        published.shadow_of.clone().ok_or_else(|| StoreError::Conflict(format!("{shadow} is a live model, not a shadow: there is nothing to promote")))?;
    let versions = state.store.model_versions(shadow).await?;
    let current = versions.iter().find(|v| v.version == published.version).ok_or_else(|| StoreError::NotFound(format!("model {shadow}")))?;
    let format = if current.format == "json" { Format::Json } else { Format::Toml };
    let source = leadscore_core::model::renamed_source(&current.source, format, &live_name)
        .map_err(|e| StoreError::database(format!("stored model {shadow} v{} cannot be renamed", current.version), e))?;
    let live = NewModelVersion { name: live_name, source, format: current.format.clone(), shadow_of: None };
    let version = state.store.promote_model(shadow, published.version, live, state.now()).await?;
    state.reload_models().await?;
    tracing::info!(shadow, model = %version.name, version = version.version, "shadow model promoted");
    Ok(version)
}

async fn promote_model(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    let version = promote(&state, &name).await?;
    let job = start_rescore(&state, &version.name).await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": version.name, "version": version.version, "promoted": name, "rescore": job_json(&job) }))))
}

/// How long a claimed job stays with this process without progress; after a crash,
/// another process takes it over once this has passed. A chunk takes well under it.
pub(crate) const JOB_LEASE_MS: Millis = 30_000;

/// Creates a rescore job for the live version of `name`, claims it for this process and
/// runs it in the background.
pub async fn start_rescore(state: &Arc<AppState>, name: &str) -> Result<Job, StoreError> {
    let job = create_claimed_job(state, name).await?;
    let (worker, mut running) = (state.clone(), job.clone());
    state.runtime.spawn(async move { run_job(&worker, &mut running).await });
    Ok(job)
}

/// Creates a rescore job for the live version of `name`, claimed by this process (the
/// caller runs it with [`rescore_step`]).
pub async fn create_claimed_job(state: &AppState, name: &str) -> Result<Job, StoreError> {
    let published = state.model(name).ok_or_else(|| StoreError::NotFound(format!("model {name}")))?;
    let total = state.store.count_contacts().await?;
    let lease = Some((state.runtime.worker_id.clone(), state.now() + JOB_LEASE_MS));
    state.store.create_job(NewJob { kind: "rescore".into(), model: name.into(), version: published.version, total, lease }, state.now()).await
}

/// Runs a claimed job to its end (or until another process takes it over).
async fn run_job(state: &AppState, job: &mut Job) {
    loop {
        if state.runtime.shutdown.is_cancelled() {
            // Stopping between chunks: the cursor is stored, and giving up the lease lets
            // the next process (or this one restarted) continue at once.
            tracing::info!(job = job.id, done = job.done, "rescore job paused by shutdown; it resumes from its cursor");
            let _ = state.store.update_claimed_job(job, &state.runtime.worker_id, state.now()).await;
            break;
        }
        match rescore_step(state, job).await {
            Ok(true) => continue,
            Ok(false) => break,
            Err(err) => {
                tracing::error!(job = job.id, error = %leadscore_store::ErrorChain(&err), "rescore job failed");
                job.state = "failed".into();
                job.error = Some(leadscore_store::ErrorChain(&err).to_string());
                job.updated_at = state.now();
                let _ = state.store.update_claimed_job(job, &state.runtime.worker_id, state.now()).await;
                break;
            }
        }
    }
}

/// One step of the job worker: takes an unfinished job nobody holds (queued, or left by
/// a crashed process whose lease expired) and runs it. Returns whether it ran one.
pub async fn job_step(state: &AppState) -> Result<bool, StoreError> {
    let Some(mut job) = state.store.claim_job(None, &state.runtime.worker_id, JOB_LEASE_MS, state.now()).await? else {
        return Ok(false);
    };
    if job.kind != "rescore" {
        // A backtest keeps its partial results in memory: one whose process died is over.
        tracing::warn!(job = job.id, kind = %job.kind, "job left unfinished by a stopped process; marking it failed");
        job.state = "failed".into();
        job.error = Some(format!("the process running this {} stopped before it finished; start it again", job.kind));
        job.updated_at = state.now();
        record(state, &job).await?;
        return Ok(true);
    }
    tracing::info!(job = job.id, model = %job.model, done = job.done, "taking over rescore job");
    if state.model(&job.model).is_none_or(|m| m.version < job.version) {
        state.reload_models().await?;
    }
    run_job(state, &mut job).await;
    Ok(true)
}

/// Records a claimed job and extends its lease; false when another process took it over.
async fn record(state: &AppState, job: &Job) -> Result<bool, StoreError> {
    let kept = state.store.update_claimed_job(job, &state.runtime.worker_id, state.now() + JOB_LEASE_MS).await?;
    if !kept {
        tracing::warn!(job = job.id, "rescore job taken over by another process; stopping here");
    }
    Ok(kept)
}

/// Runs one chunk of a claimed rescore job and records progress. Returns whether work
/// remains (false also when another process took the job over). A job whose model version
/// is no longer live ends as `superseded` (a newer job runs).
pub async fn rescore_step(state: &AppState, job: &mut Job) -> Result<bool, StoreError> {
    let Some(published) = state.model(&job.model).filter(|m| m.version == job.version) else {
        job.state = "superseded".into();
        job.updated_at = state.now();
        record(state, job).await?;
        return Ok(false);
    };
    if job.state != "running" {
        job.state = "running".into();
    }
    let chunk = match state.store.rescore_chunk(&published, job.cursor.clone(), state.config.rescore_chunk, state.now()).await {
        Ok(chunk) => chunk,
        // Another publish (maybe by another process) made this version history.
        Err(StoreError::Conflict(reason)) => {
            tracing::info!(job = job.id, %reason, "rescore job superseded");
            job.state = "superseded".into();
            job.updated_at = state.now();
            record(state, job).await?;
            state.reload_models().await?;
            return Ok(false);
        }
        Err(other) => return Err(other),
    };
    job.done += chunk.contacts;
    job.total = job.total.max(job.done);
    job.updated_at = state.now();
    metrics::counter!("leadscore_rescored_contacts_total").increment(chunk.contacts);
    let more = match chunk.last_contact {
        Some(last) => {
            job.cursor = Some(last);
            true
        }
        None => {
            if !rescore_outcomes(state, &published, job).await? {
                return Ok(false);
            }
            job.state = "done".into();
            job.total = job.done;
            false
        }
    };
    Ok(record(state, job).await? && more)
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
async fn rescore_outcomes(state: &AppState, published: &Arc<PublishedModel>, job: &Job) -> Result<bool, StoreError> {
    let mut after = None;
    loop {
        let chunk = state.store.list_outcomes(Millis::MIN, Millis::MAX, after, OUTCOME_CHUNK).await?;
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
        let mut pages = crate::reports::ReplayPages::of(state, &ids);
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
        state.store.set_outcome_cards(&published.name, cards).await?;
        if !record(state, job).await? {
            return Ok(false);
        }
    }
}

/// The job worker: takes over unfinished jobs whose process is gone (their cursor says
/// where to continue), now and every few seconds.
pub fn spawn_job_worker(state: Arc<AppState>) {
    let worker = state.clone();
    state.runtime.spawn(async move {
        let state = worker;
        while !state.runtime.shutdown.is_cancelled() {
            match job_step(&state).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => tracing::error!(error = %leadscore_store::ErrorChain(&err), "cannot take over a rescore job"),
            }
            if state.runtime.pause(std::time::Duration::from_secs(5)).await {
                return;
            }
        }
    });
}

#[derive(Deserialize)]
struct GetQuery {
    format: Option<String>,
}

async fn get_model(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>, Query(q): Query<GetQuery>) -> ApiResult<Response> {
    principal.require(Scope::Read)?;
    let published: Arc<PublishedModel> = state.model(&name).ok_or_else(|| ApiError::not_found(format!("no model {name:?}")))?;
    let versions = state.store.model_versions(&name).await?;
    let current = versions.iter().find(|v| v.version == published.version).ok_or_else(|| ApiError::not_found(format!("no model {name:?}")))?;
    if q.format.as_deref() == Some("source") || q.format.as_deref() == Some("toml") {
        let content_type = if current.format == "json" { "application/json" } else { "application/toml" };
        return Ok(([(header::CONTENT_TYPE, content_type)], current.source.clone()).into_response());
    }
    let job = state.store.latest_job(&name).await?;
    Ok(Json(json!({
        "name": name,
        "version": published.version,
        "description": published.model.description,
        "created_at": format_time(current.created_at),
        "format": current.format,
        "definition": published.model.definition,
        "shadow_of": published.shadow_of,
        "shadows": state.models().iter().filter(|m| m.shadow_of.as_deref() == Some(name.as_str())).map(|m| m.name.clone()).collect::<Vec<_>>(),
        "rescore": job.as_ref().map(job_json),
    }))
    .into_response())
}

async fn list_models(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let mut items = Vec::new();
    for version in state.store.live_models().await? {
        let job = state.store.latest_job(&version.name).await?;
        let mut item = version_json(&version);
        item["rescore"] = job.as_ref().map(job_json).unwrap_or(Value::Null);
        items.push(item);
    }
    Ok(Json(json!({ "models": items })))
}

async fn model_versions(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let versions = state.store.model_versions(&name).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("no model {name:?}")));
    }
    let live = state.model(&name).map(|m| m.version);
    let items: Vec<Value> = versions
        .iter()
        .map(|v| {
            let mut item = version_json(v);
            item["live"] = json!(Some(v.version) == live);
            item["source"] = json!(v.source);
            item
        })
        .collect();
    Ok(Json(json!({ "name": name, "versions": items })))
}

async fn validate_model(principal: Principal, headers: HeaderMap, body: Body) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let text = body.text()?;
    Ok(Json(match Model::parse_as(text, body_format(&headers, text)) {
        Ok(model) => json!({
            "valid": true,
            "name": model.name,
            "fit_rules": model.fit.len(),
            "activity_rules": model.activity.len(),
            "bands": model.bands.iter().map(|b| b.name.clone()).collect::<Vec<_>>(),
        }),
        Err(err) => json!({ "valid": false, "problems": err.problems() }),
    }))
}

async fn delete_model(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>) -> ApiResult<StatusCode> {
    principal.require(Scope::Admin)?;
    if !state.store.delete_model(&name).await? {
        return Err(ApiError::not_found(format!("no model {name:?}")));
    }
    state.reload_models().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rescore_model(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    if state.model(&name).is_none() {
        return Err(ApiError::not_found(format!("no model {name:?}")));
    }
    let job = start_rescore(&state, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "rescore": job_json(&job) }))))
}
