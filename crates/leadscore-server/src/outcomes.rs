//! Outcomes (F18): sales records a contact's status and rates leads; each outcome keeps
//! the contact's scores as of its time, so the reports judge the scoring on what sales saw.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_core::ScoreCard;
use leadscore_store::{ContactRecord, Millis, NewOutcome, OutcomeKind, OutcomeRecord, STATUSES, Scope};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Principal;
use crate::contacts::current_cards;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, format_time, parse_time};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/contacts/{id}/status", post(record_status))
        .route("/contacts/{id}/feedback", post(record_feedback))
        .route("/contacts/{id}/outcomes", get(list_outcomes))
}

/// An outcome may be dated in the past (imports of history), not in the future beyond
/// a little clock skew.
const FUTURE_SKEW_MS: Millis = 5 * 60 * 1000;

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

/// The time of an outcome: given (RFC 3339) or now; never in the future.
pub fn outcome_time(state: &AppState, at: Option<&str>) -> Result<Millis, String> {
    let now = state.now();
    let at = match at {
        Some(text) => parse_time(text)?,
        None => now,
    };
    if at > now + FUTURE_SKEW_MS {
        return Err(format!("`at` {} is in the future", format_time(at)));
    }
    Ok(at)
}

/// The contact's cards as of `at` under every live model that applies to it.
pub async fn cards_at(state: &AppState, contact: &ContactRecord, at: Millis) -> ApiResult<BTreeMap<String, ScoreCard>> {
    Ok(current_cards(state, contact, Some(at)).await?.into_iter().map(|(model, card)| (model.name.clone(), card)).collect())
}

/// Records one outcome for a contact: its scores as of `at` go with it.
pub async fn record(state: &AppState, contact_id: &str, kind: OutcomeKind, at: Millis) -> ApiResult<OutcomeRecord> {
    let contact = state.store.get_contact(contact_id).await?.ok_or_else(|| ApiError::not_found(format!("no contact {contact_id:?}")))?;
    record_for(state, &contact, kind, at).await
}

/// [`record`] for a contact the caller has just read or written (an import), without
/// reading it again.
pub async fn record_for(state: &AppState, contact: &ContactRecord, kind: OutcomeKind, at: Millis) -> ApiResult<OutcomeRecord> {
    let scores = cards_at(state, contact, at).await?;
    Ok(state.store.record_outcome(NewOutcome { contact_id: contact.id.clone(), kind, at, scores }, state.now()).await?)
}

pub fn check_status(status: &str) -> Result<(), String> {
    if STATUSES.contains(&status) { Ok(()) } else { Err(format!("status {status:?} is not one of {}", STATUSES.join(", "))) }
}

pub fn check_rating(rating: i64) -> Result<u8, String> {
    u8::try_from(rating).ok().filter(|r| (1..=5).contains(r)).ok_or_else(|| format!("rating {rating} is not between 1 and 5"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    at: Option<String>,
}

async fn record_status(State(state): State<Arc<AppState>>, principal: Principal, Path(id): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    let body: StatusBody = body.json()?;
    let status = body.status.trim().to_lowercase();
    check_status(&status).map_err(ApiError::invalid)?;
    let at = outcome_time(&state, body.at.as_deref()).map_err(ApiError::invalid)?;
    let outcome = record(&state, &id, OutcomeKind::Status { status }, at).await?;
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

async fn record_feedback(State(state): State<Arc<AppState>>, principal: Principal, Path(id): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    let body: FeedbackBody = body.json()?;
    let rating = check_rating(body.rating).map_err(ApiError::invalid)?;
    let at = outcome_time(&state, body.at.as_deref()).map_err(ApiError::invalid)?;
    let note = body.note.filter(|n| !n.trim().is_empty());
    let outcome = record(&state, &id, OutcomeKind::Feedback { rating, note, author: body.author }, at).await?;
    Ok((StatusCode::CREATED, Json(outcome_json(&outcome))))
}

async fn list_outcomes(State(state): State<Arc<AppState>>, principal: Principal, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    if state.store.get_contact(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no contact {id:?}")));
    }
    let outcomes: Vec<Value> = state.store.contact_outcomes(&id).await?.iter().map(outcome_json).collect();
    Ok(Json(json!({ "contact": id, "outcomes": outcomes })))
}
