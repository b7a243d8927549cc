//! Outcomes (F18): sales records a contact's status and rates leads; each outcome keeps
//! the contact's scores as of its time, so the reports judge the scoring on what sales saw.

use std::sync::Arc;

use crate::input::Path;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use leadscore_app::contacts;
use leadscore_app::outcomes::{self, OutcomeView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{CanRead, CanWork};
use crate::error::ApiResult;
use crate::input::Body;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(record_status)).routes(routes!(record_feedback)).routes(routes!(list_outcomes))
}

/// A contact's statuses and ratings by time.
#[derive(Serialize, ToSchema)]
pub struct ContactOutcomes {
    pub contact: String,
    pub outcomes: Vec<OutcomeView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    /// new, contacted, qualified, disqualified, won or lost.
    status: String,
    /// When it happened (RFC 3339); default now, never in the future.
    at: Option<String>,
}

#[utoipa::path(
    post,
    path = "/contacts/{id}/status",
    tag = "outcomes",
    summary = "Record a status {status, at?} (new, contacted, qualified, disqualified, won, lost) with the scores as of `at`",
    params(("id" = String, Path, description = "The contact's id")),
    request_body = StatusBody,
    responses((status = CREATED, description = "The outcome recorded", body = OutcomeView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn record_status(State(state): State<Arc<AppState>>, caller: CanWork, Path(id): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<OutcomeView>)> {
    contacts::find_within(&state, &id, &caller.reach).await?;
    let body: StatusBody = body.json()?;
    let outcome = outcomes::record_status(&state, &id, &body.status, body.at.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(OutcomeView::from(&outcome))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    /// 1 (poor) to 5 (excellent).
    rating: i64,
    note: Option<String>,
    author: Option<String>,
    /// When it was rated (RFC 3339); default now.
    at: Option<String>,
}

#[utoipa::path(
    post,
    path = "/contacts/{id}/feedback",
    tag = "outcomes",
    summary = "Record a sales rating {rating 1-5, note?, author?, at?} with the scores as of `at`",
    params(("id" = String, Path, description = "The contact's id")),
    request_body = FeedbackBody,
    responses((status = CREATED, description = "The outcome recorded", body = OutcomeView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn record_feedback(
    State(state): State<Arc<AppState>>,
    caller: CanWork,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<OutcomeView>)> {
    contacts::find_within(&state, &id, &caller.reach).await?;
    let body: FeedbackBody = body.json()?;
    let outcome = outcomes::record_feedback(&state, &id, body.rating, body.note, body.author, body.at.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(OutcomeView::from(&outcome))))
}

#[utoipa::path(
    get,
    path = "/contacts/{id}/outcomes",
    tag = "outcomes",
    summary = "The contact's statuses and ratings by time, each with its scores then",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = OK, description = "The outcomes, by time", body = ContactOutcomes)),
    extensions(("x-scope" = json!("read"))),
)]
async fn list_outcomes(State(state): State<Arc<AppState>>, caller: CanRead, Path(id): Path<String>) -> ApiResult<Json<ContactOutcomes>> {
    contacts::find_within(&state, &id, &caller.reach).await?;
    let outcomes = outcomes::contact_outcomes(&state, &id).await?.iter().map(OutcomeView::from).collect();
    Ok(Json(ContactOutcomes { contact: id, outcomes }))
}
