//! Automations (PRODUCT.md §3) over HTTP: store, read, list (the overview, F17, with last
//! fired and run counts), delete, and the run log. Running them is `crate::runtime`'s.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use leadscore_core::Problem;
use leadscore_core::automation::Automation;
use leadscore_core::model::parse_document;
use leadscore_store::runner::RunQuery;
use leadscore_store::{AutomationRecord, NewAutomation, Scope};
use serde_json::{Value, json};

use leadscore_app::automations::{overview, refusals};

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, format_time};
use crate::models::body_format;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/automations", get(list_automations))
        .route("/automations/runs", get(list_runs))
        .route("/automations/{name}", get(get_automation).put(put_automation).delete(delete_automation))
}

/// A refused automation: 422 with every problem, like an invalid model.
fn invalid(problems: Vec<Problem>) -> ApiError {
    let summary: Vec<String> = problems.iter().map(|p| if p.path.is_empty() { p.message.clone() } else { format!("{}: {}", p.path, p.message) }).collect();
    ApiError::invalid(format!("the automation has {} problem(s): {}", problems.len(), summary.join("; "))).with_details(json!({ "problems": problems }))
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
    principal: Principal,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    let text = body.text()?;
    let document = parse_document(text, body_format(&headers, text)).map_err(|e| invalid(e.problems()))?;
    let automation = Automation::from_value(document).map_err(|e| invalid(e.problems()))?;
    if automation.name != name {
        return Err(invalid(vec![Problem {
            path: "name".into(),
            message: format!("the automation is named {:?} but was sent to /automations/{name}", automation.name),
        }]));
    }
    let refused = refusals(&state, &automation).await;
    if !refused.is_empty() {
        return Err(invalid(refused));
    }
    let new = NewAutomation { name: automation.name, definition: automation.definition, enabled: automation.enabled };
    let (record, created) = state.store.put_automation(new, state.now()).await?;
    state.reload_automations().await?;
    tracing::info!(automation = %record.name, created, "automation stored");
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(record_json(&record))))
}

async fn get_automation(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let record = state.store.get_automation(&name).await?.ok_or_else(|| ApiError::not_found(format!("no automation {name:?}")))?;
    Ok(Json(record_json(&record)))
}

async fn delete_automation(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>) -> ApiResult<StatusCode> {
    principal.require(Scope::Admin)?;
    if !state.store.delete_automation(&name).await? {
        return Err(ApiError::not_found(format!("no automation {name:?}")));
    }
    state.reload_automations().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_automations(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let stats = state.store.run_stats(state.now()).await?;
    let items: Vec<Value> =
        state.store.list_automations().await?.iter().map(|record| overview(record, stats.iter().find(|s| s.automation == record.name))).collect();
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
async fn list_runs(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    crate::input::Query(query): crate::input::Query<RunsQuery>,
) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let before = crate::input::parse_time_cursor(query.cursor.as_deref())?;
    let runs = state.store.list_runs(&RunQuery { automation: query.automation, contact_id: query.contact, before, limit }).await?;
    let mut items = Vec::with_capacity(runs.len());
    for run in &runs {
        let mut actions = Vec::with_capacity(run.actions.len());
        for action in &run.actions {
            let mut action = action.clone();
            // A queued delivery's outcome is where the outbox stands now.
            if let Some(id) = action.get("delivery").and_then(Value::as_str).map(str::to_string)
                && let Some((delivery, _)) = state.store.get_delivery(&id).await?
            {
                action["outcome"] = json!(delivery.state);
                action["attempts"] = json!(delivery.attempts);
                action["last_error"] = json!(delivery.last_error);
            }
            actions.push(action);
        }
        items.push(json!({
            "id": run.id,
            "automation": run.automation,
            "contact": run.contact_id,
            "at": format_time(run.at),
            "reason": run.reason,
            "actions": actions,
        }));
    }
    let next_cursor = crate::input::next_time_cursor(runs.len(), limit, runs.last().map(|r| (r.at, r.id.as_str())));
    Ok(Json(json!({ "runs": items, "next_cursor": next_cursor })))
}
