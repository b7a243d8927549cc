//! Automations (PRODUCT.md §3) over HTTP: store, read, list (the overview, F17, with last
//! fired and run counts), delete, and the run log. Running them is `crate::runtime`'s.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use leadscore_store::AutomationRecord;
use serde_json::{Value, json};

use leadscore_app::automations;

use crate::AppState;
use crate::auth::{CanManage, CanReadSetup};
use crate::error::ApiResult;
use crate::input::{Body, format_time};
use crate::models::body_format;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/automations", get(list_automations))
        .route("/automations/runs", get(list_runs))
        .route("/automations/{name}", get(get_automation).put(put_automation).delete(delete_automation))
}

/// The stored record as the API shows it.
pub fn record_json(record: &AutomationRecord) -> Value {
    json!({
        "name": record.name,
        "enabled": record.enabled,
        "definition": record.definition,
        "created_at": format_time(record.created_at),
        "updated_at": format_time(record.updated_at),
    })
}

async fn put_automation(
    State(state): State<Arc<AppState>>,
    _: CanManage,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let text = body.text()?;
    let (record, created) = automations::put(&state, &name, text, body_format(&headers, text)).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(record_json(&record))))
}

async fn get_automation(State(state): State<Arc<AppState>>, _: CanReadSetup, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let record = automations::get(&state, &name).await?;
    Ok(Json(record_json(&record)))
}

async fn delete_automation(State(state): State<Arc<AppState>>, _: CanManage, Path(name): Path<String>) -> ApiResult<StatusCode> {
    automations::delete(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_automations(State(state): State<Arc<AppState>>, _: CanReadSetup) -> ApiResult<Json<Value>> {
    let items = automations::list(&state).await?;
    Ok(Json(json!({ "automations": items })))
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
async fn list_runs(State(state): State<Arc<AppState>>, _: CanReadSetup, crate::input::Query(query): crate::input::Query<RunsQuery>) -> ApiResult<Json<Value>> {
    let (items, next_cursor) = automations::runs(&state, query.automation, query.contact, query.limit, query.cursor.as_deref()).await?;
    Ok(Json(json!({ "runs": items, "next_cursor": next_cursor })))
}
