//! Outcomes (F18): sales records a contact's status and rates leads; each outcome keeps
//! the contact's scores as of its time, so the reports judge the scoring on what sales saw.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_app::outcomes::{self, OutcomeView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{CanAdmin, CanRead};
use crate::error::ApiResult;
use crate::input::Body;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/contacts/{id}/status", post(record_status))
        .route("/contacts/{id}/feedback", post(record_feedback))
        .route("/contacts/{id}/outcomes", get(list_outcomes))
}

/// A contact's statuses and ratings by time.
#[derive(Serialize, ToSchema)]
pub struct ContactOutcomes {
    pub contact: String,
    pub outcomes: Vec<OutcomeView>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    at: Option<String>,
}

async fn record_status(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<OutcomeView>)> {
    let body: StatusBody = body.json()?;
    let outcome = outcomes::record_status(&state, &id, &body.status, body.at.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(OutcomeView::from(&outcome))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    rating: i64,
    note: Option<String>,
    author: Option<String>,
    at: Option<String>,
}

async fn record_feedback(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<OutcomeView>)> {
    let body: FeedbackBody = body.json()?;
    let outcome = outcomes::record_feedback(&state, &id, body.rating, body.note, body.author, body.at.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(OutcomeView::from(&outcome))))
}

async fn list_outcomes(State(state): State<Arc<AppState>>, _: CanRead, Path(id): Path<String>) -> ApiResult<Json<ContactOutcomes>> {
    let outcomes = outcomes::contact_outcomes(&state, &id).await?.iter().map(OutcomeView::from).collect();
    Ok(Json(ContactOutcomes { contact: id, outcomes }))
}
