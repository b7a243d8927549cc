//! Outcomes (F18): sales records a contact's status and rates leads; each outcome keeps
//! the contact's scores as of its time, so the reports judge the scoring on what sales saw.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_app::contacts;
use leadscore_app::outcomes;
use leadscore_store::{OutcomeKind, OutcomeRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{CanRead, CanWork};
use crate::error::ApiResult;
use crate::input::{Body, format_time};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/contacts/{id}/status", post(record_status))
        .route("/contacts/{id}/feedback", post(record_feedback))
        .route("/contacts/{id}/outcomes", get(list_outcomes))
}

pub fn outcome_json(outcome: &OutcomeRecord) -> Value {
    let mut out = json!({
        "id": outcome.id,
        "contact": outcome.contact_id,
        "at": format_time(outcome.at),
        "recorded_at": format_time(outcome.recorded_at),
        "scores": outcome.scores,
    });
    match &outcome.kind {
        OutcomeKind::Status { status } => {
            out["kind"] = json!("status");
            out["status"] = json!(status);
        }
        OutcomeKind::Feedback { rating, note, author } => {
            out["kind"] = json!("feedback");
            out["rating"] = json!(rating);
            out["note"] = json!(note);
            out["author"] = json!(author);
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    at: Option<String>,
}

async fn record_status(State(state): State<Arc<AppState>>, caller: CanWork, Path(id): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    contacts::find_within(&state, &id, &caller.reach).await?;
    let body: StatusBody = body.json()?;
    let outcome = outcomes::record_status(&state, &id, &body.status, body.at.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(outcome_json(&outcome))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    rating: i64,
    note: Option<String>,
    author: Option<String>,
    at: Option<String>,
}

async fn record_feedback(State(state): State<Arc<AppState>>, caller: CanWork, Path(id): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    contacts::find_within(&state, &id, &caller.reach).await?;
    let body: FeedbackBody = body.json()?;
    let outcome = outcomes::record_feedback(&state, &id, body.rating, body.note, body.author, body.at.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(outcome_json(&outcome))))
}

async fn list_outcomes(State(state): State<Arc<AppState>>, caller: CanRead, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    contacts::find_within(&state, &id, &caller.reach).await?;
    let outcomes: Vec<Value> = outcomes::contact_outcomes(&state, &id).await?.iter().map(outcome_json).collect();
    Ok(Json(json!({ "contact": id, "outcomes": outcomes })))
}
