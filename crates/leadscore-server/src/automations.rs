//! Automations (PRODUCT.md §3) over HTTP: store, read, list (the overview, F17, with last
//! fired and run counts), delete, and the run log. Running them is `crate::runtime`'s.

use std::sync::Arc;

use crate::input::Path;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use leadscore_app::automations::{self, AutomationOverview, AutomationView, RunView};

use crate::AppState;
use crate::auth::{CanManage, CanRead, CanReadSetup};
use crate::error::ApiResult;
use crate::input::Body;
use crate::models::body_format;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_automations)).routes(routes!(list_runs)).routes(routes!(get_automation, put_automation, delete_automation))
}

/// The overview of every automation (F17).
#[derive(Serialize, ToSchema)]
pub struct AutomationList {
    pub automations: Vec<AutomationOverview>,
}

/// A page of the run log, newest first.
#[derive(Serialize, ToSchema)]
pub struct RunLog {
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    pub runs: Vec<RunView>,
}

#[utoipa::path(
    put,
    path = "/automations/{name}",
    tag = "automations",
    summary = "Create or replace an automation (TOML or JSON), validated whole",
    params(("name" = String, Path, description = "The automation's name")),
    request_body(
        description = "The automation (contract §3) as TOML, or as the equivalent JSON (by Content-Type, else sniffed)",
        content((String = "application/toml"), (Object = "application/json")),
    ),
    responses(
        (status = CREATED, description = "Created", body = AutomationView),
        (status = OK, description = "Replaced", body = AutomationView),
    ),
    extensions(("x-scope" = json!("admin"))),
)]
async fn put_automation(
    State(state): State<Arc<AppState>>,
    _: CanManage,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<AutomationView>)> {
    let text = body.text()?;
    let (record, created) = automations::put(&state, &name, text, body_format(&headers, text)).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(AutomationView::from(&record))))
}

#[utoipa::path(
    get,
    path = "/automations/{name}",
    tag = "automations",
    summary = "An automation's definition, enabled flag and times",
    params(("name" = String, Path, description = "The automation's name")),
    responses((status = OK, description = "The automation", body = AutomationView)),
    extensions(("x-scope" = json!("read"))),
)]
async fn get_automation(State(state): State<Arc<AppState>>, _: CanReadSetup, Path(name): Path<String>) -> ApiResult<Json<AutomationView>> {
    let record = automations::get(&state, &name).await?;
    Ok(Json(AutomationView::from(&record)))
}

#[utoipa::path(
    delete,
    path = "/automations/{name}",
    tag = "automations",
    summary = "Delete an automation",
    params(("name" = String, Path, description = "The automation's name")),
    responses((status = NO_CONTENT, description = "Deleted")),
    extensions(("x-scope" = json!("admin"))),
)]
async fn delete_automation(State(state): State<Arc<AppState>>, _: CanManage, Path(name): Path<String>) -> ApiResult<StatusCode> {
    automations::delete(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/automations",
    tag = "automations",
    summary = "Overview of automations: trigger, filter, limits, actions, enabled, last fired, runs in the last day/week",
    responses((status = OK, description = "Every automation, in words", body = AutomationList)),
    extensions(("x-scope" = json!("read"))),
)]
async fn list_automations(State(state): State<Arc<AppState>>, _: CanReadSetup) -> ApiResult<Json<AutomationList>> {
    Ok(Json(AutomationList { automations: automations::list(&state).await? }))
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    /// Runs of this automation only.
    automation: Option<String>,
    /// Runs for this contact only.
    contact: Option<String>,
    /// Runs per page (1-1000, default 50).
    limit: Option<usize>,
    /// `at,id` of the last run of the previous page.
    cursor: Option<String>,
}

/// The run log, newest first: automation, contact, time, why it fired, and each action's
/// outcome (deliveries with their current state).
#[utoipa::path(
    get,
    path = "/automations/runs",
    tag = "automations",
    summary = "The run log, newest first: automation, contact, time, why, each action's outcome (?automation=&contact=&limit=&cursor=); a sales rep sees the runs for the contacts they reach",
    params(RunsQuery),
    responses((status = OK, description = "A page of the run log", body = RunLog)),
    extensions(("x-scope" = json!("read"))),
)]
async fn list_runs(State(state): State<Arc<AppState>>, caller: CanRead, crate::input::Query(query): crate::input::Query<RunsQuery>) -> ApiResult<Json<RunLog>> {
    let (runs, next_cursor) = automations::runs(&state, &caller.reach, query.automation, query.contact, query.limit, query.cursor.as_deref()).await?;
    Ok(Json(RunLog { next_cursor, runs }))
}
