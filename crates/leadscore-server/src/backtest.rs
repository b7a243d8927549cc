//! Backtest (F20): try a changed model against the past before it goes live. The stored
//! events of every contact with a status in the range are replayed through the candidate
//! and through the live model, each contact scored as of the instant it is judged at (its
//! close, else its latest status), and the same brackets and accuracy reports come back
//! for both, side by side; plus how many contacts the candidate would move to another band
//! today. Nothing is written.

use std::sync::Arc;

use crate::input::Path;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use leadscore_core::model::parse_document;
use leadscore_core::{Format, Model};
use leadscore_store::PublishedModel;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use leadscore_app::backtest::{BacktestJobView, BacktestReport, run, start_job};
use leadscore_app::reports::resolve;

use crate::AppState;
use crate::auth::CanReadSetup;
use crate::error::{ApiError, ApiResult};
use crate::input::Body;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(backtest)).routes(routes!(backtest_job))
}

#[utoipa::path(
    get,
    path = "/backtest/{id}",
    tag = "reports",
    summary = "A background backtest: state, progress (done/total/percent), then the report (result) or the error",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = OK, description = "The job", body = BacktestJobView)),
    extensions(("x-scope" = json!("read"))),
)]
async fn backtest_job(State(state): State<Arc<AppState>>, _: CanReadSetup, Path(id): Path<String>) -> ApiResult<Json<BacktestJobView>> {
    // Parsed by the engine, not by the extractor, so a bad id gets the JSON error shape.
    let job = leadscore_app::backtest::job(&state, &id).await?;
    Ok(Json(BacktestJobView::from(&job)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BacktestBody {
    /// The candidate: TOML text, or the model as a JSON object.
    #[schema(value_type = Object)]
    model: Value,
    /// The live model to compare with [default: the one with the candidate's name].
    live: Option<String>,
    /// Outcomes from this instant (RFC 3339).
    from: Option<String>,
    /// Outcomes before this instant (RFC 3339).
    to: Option<String>,
    /// Answer at once with a job to poll (`GET /backtest/{id}`: progress, then the report).
    #[serde(default)]
    background: bool,
}

/// What `POST /backtest` answers: the report, or (in the background) the job to poll.
pub enum BacktestAnswer {
    Done(Box<BacktestReport>),
    Started(Box<BacktestStarted>),
}

/// A backtest started in the background (202, with `Location: /api/v1/backtest/{id}`).
#[derive(Serialize, ToSchema)]
pub struct BacktestStarted {
    pub job: BacktestJobView,
}

impl IntoResponse for BacktestAnswer {
    fn into_response(self) -> Response {
        match self {
            BacktestAnswer::Done(report) => Json(report).into_response(),
            BacktestAnswer::Started(started) => {
                let location = format!("/api/v1/backtest/{}", started.job.job.id);
                (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(started)).into_response()
            }
        }
    }
}

#[utoipa::path(
    post,
    path = "/backtest",
    tag = "reports",
    summary = "{model: candidate (TOML text or JSON), live?, from?, to?} → brackets and accuracy for candidate and live model side by side, replayed as of each judged instant, and band changes today; background: true answers 202 with a job to poll",
    request_body = BacktestBody,
    responses(
        (status = OK, description = "The backtest's report", body = BacktestReport),
        (
            status = ACCEPTED,
            description = "Started in the background (background: true); poll the job",
            body = BacktestStarted,
            headers(("location" = String, description = "/api/v1/backtest/{id}")),
        ),
    ),
    extensions(("x-scope" = json!("read"))),
)]
async fn backtest(State(state): State<Arc<AppState>>, caller: CanReadSetup, body: Body) -> ApiResult<BacktestAnswer> {
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
        return Ok(BacktestAnswer::Started(Box::new(BacktestStarted { job: BacktestJobView::from(&job) })));
    }
    let started = std::time::Instant::now();
    let report = run(&state, candidate, live, from, to, &mut |_, _| {}).await?;
    drop(slot);
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "backtest done");
    Ok(BacktestAnswer::Done(Box::new(report)))
}

fn invalid_model(problems: Vec<leadscore_core::Problem>) -> ApiError {
    let summary: Vec<String> = problems.iter().map(|p| if p.path.is_empty() { p.message.clone() } else { format!("{}: {}", p.path, p.message) }).collect();
    ApiError::invalid(format!("the candidate model has {} problem(s): {}", problems.len(), summary.join("; "))).with_details(json!({ "problems": problems }))
}
