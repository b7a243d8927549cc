//! Automations (PRODUCT.md §3) over HTTP: store, read, list (the overview, F17, with last
//! fired and run counts), delete, and the run log. Running them is `crate::runtime`'s.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use leadscore_app::automations::{self, AutomationOverview, AutomationView, RunView};

use crate::AppState;
use crate::auth::{CanAdmin, CanRead};
use crate::error::ApiResult;
use crate::input::Body;
use crate::models::body_format;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/automations", get(list_automations))
        .route("/automations/runs", get(list_runs))
        .route("/automations/{name}", get(get_automation).put(put_automation).delete(delete_automation))
}

/// The overview of every automation (F17).
#[derive(Serialize, ToSchema)]
pub struct AutomationList {
    pub automations: Vec<AutomationOverview>,
}

/// A page of the run log, newest first.
#[derive(Serialize, ToSchema)]
pub struct RunLog {
    pub next_cursor: Option<String>,
    pub runs: Vec<RunView>,
}

async fn put_automation(
    State(state): State<Arc<AppState>>,
    _: CanAdmin,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<AutomationView>)> {
    let text = body.text()?;
    let (record, created) = automations::put(&state, &name, text, body_format(&headers, text)).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(AutomationView::from(&record))))
}

async fn get_automation(State(state): State<Arc<AppState>>, _: CanRead, Path(name): Path<String>) -> ApiResult<Json<AutomationView>> {
    let record = automations::get(&state, &name).await?;
    Ok(Json(AutomationView::from(&record)))
}

async fn delete_automation(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    automations::delete(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_automations(State(state): State<Arc<AppState>>, _: CanRead) -> ApiResult<Json<AutomationList>> {
    Ok(Json(AutomationList { automations: automations::list(&state).await? }))
}

#[derive(serde::Deserialize)]
struct RunsQuery {
    automation: Option<String>,
    contact: Option<String>,
    limit: Option<usize>,
    /// `at,id` of the last run of the previous page.
    cursor: Option<String>,
}

/// The run log, newest first: automation, contact, time, why it fired, and each action's
/// outcome (deliveries with their current state).
async fn list_runs(State(state): State<Arc<AppState>>, _: CanRead, crate::input::Query(query): crate::input::Query<RunsQuery>) -> ApiResult<Json<RunLog>> {
    let (runs, next_cursor) = automations::runs(&state, query.automation, query.contact, query.limit, query.cursor.as_deref()).await?;
    Ok(Json(RunLog { next_cursor, runs }))
}
