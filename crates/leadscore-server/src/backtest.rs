//! Backtest (F20): try a changed model against the past before it goes live. The stored
//! events of every contact with a status in the range are replayed through the candidate
//! and through the live model, each contact scored as of the instant it is judged at (its
//! close, else its latest status), and the same brackets and accuracy reports come back
//! for both, side by side; plus how many contacts the candidate would move to another band
//! today. Nothing is written.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_core::model::parse_document;
use leadscore_core::{Format, Model};
use leadscore_store::{Job, PublishedModel};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::models::job_json;
use leadscore_app::backtest::{run, start_job};
use leadscore_app::reports::resolve;

use crate::AppState;
use crate::auth::CanReadSetup;
use crate::error::{ApiError, ApiResult};
use crate::input::Body;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/backtest", post(backtest_route)).route("/backtest/{id}", get(backtest_job_route))
}

/// A backtest job as the API shows it: progress, and the report once done.
fn backtest_job_json(job: &Job) -> Value {
    let mut out = job_json(job);
    out["live"] = json!(job.model);
    out["result"] = job.result.as_deref().and_then(|text| serde_json::from_str(text).ok()).unwrap_or(Value::Null);
    out
}

async fn backtest_job_route(State(state): State<Arc<AppState>>, _: CanReadSetup, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    // Parsed by the engine, not by the extractor, so a bad id gets the JSON error shape.
    let job = leadscore_app::backtest::job(&state, &id).await?;
    Ok(Json(backtest_job_json(&job)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BacktestBody {
    /// The candidate: TOML text, or the model as a JSON object.
    model: Value,
    /// The live model to compare with [default: the one with the candidate's name].
    live: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Answer at once with a job to poll (`GET /backtest/{id}`: progress, then the report).
    #[serde(default)]
    background: bool,
}

async fn backtest_route(State(state): State<Arc<AppState>>, caller: CanReadSetup, body: Body) -> ApiResult<Response> {
    let body: BacktestBody = body.json()?;
    let document = match &body.model {
        Value::String(text) => parse_document(text, Format::sniff(text)),
        other => Ok(other.clone()),
    }
    .map_err(|e| invalid_model(e.problems()))?;
    let model = Model::from_value(document).map_err(|e| invalid_model(e.problems()))?;
    let candidate = Arc::new(PublishedModel { name: model.name.clone(), version: 0, model, shadow_of: None });
    let live_name = body.live.clone().unwrap_or_else(|| candidate.name.clone());
    let (live, from, to) = resolve(&state, Some(&live_name), body.from.as_deref(), body.to.as_deref()).map_err(ApiError::invalid)?;
    // A replay costs a core for a while: a few at once per key (issue 15.7).
    let slot = state.quotas.replay(&caller.key_id)?;
    if body.background {
        let job = start_job(&state.engine, candidate, live, from, to, slot).await?;
        let location = format!("/api/v1/backtest/{}", job.id);
        return Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(json!({ "job": backtest_job_json(&job) }))).into_response());
    }
    let started = std::time::Instant::now();
    let report = run(&state, candidate, live, from, to, &mut |_, _| {}).await?;
    drop(slot);
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "backtest done");
    Ok(Json(report).into_response())
}

fn invalid_model(problems: Vec<leadscore_core::Problem>) -> ApiError {
    let summary: Vec<String> = problems.iter().map(|p| if p.path.is_empty() { p.message.clone() } else { format!("{}: {}", p.path, p.message) }).collect();
    ApiError::invalid(format!("the candidate model has {} problem(s): {}", problems.len(), summary.join("; "))).with_details(json!({ "problems": problems }))
}
