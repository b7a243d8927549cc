//! Automations (PRODUCT.md §3) over HTTP: store, read, list (the overview, F17, with last
//! fired and run counts), delete, and the run log. Running them is `crate::runtime`'s.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use leadscore_core::Problem;
use leadscore_core::automation::{Action, AssignStrategy, Automation, Direction, Filter, Limits, ScoreField, Trigger};
use leadscore_core::model::parse_document;
use leadscore_store::runner::{RunQuery, RunStats};
use leadscore_store::{AutomationRecord, NewAutomation, Scope};
use serde_json::{Value, json};

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

/// What keeps a valid automation from being stored here, beyond its own validation: a
/// model it names that is a shadow (shadows fire no automations), and a webhook URL every
/// delivery would refuse. The API and `leadscore automation apply` both apply it.
pub async fn refusals(state: &AppState, automation: &Automation) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (path, model) in automation.named_models() {
        if let Some(shadow) = state.model(model).filter(|m| m.is_shadow()) {
            let live = shadow.shadow_of.as_deref().unwrap_or_default();
            problems.push(Problem {
                path: path.into(),
                message: format!("{} is a shadow of {live}: shadow models fire no automations (name {live} here, or promote the shadow)", shadow.name),
            });
        }
    }
    for (index, action) in automation.actions.iter().enumerate() {
        if let Action::Webhook { url, .. } = action
            && let Err(message) = crate::runtime::check_webhook_url(&state.config, url).await
        {
            problems.push(Problem { path: format!("actions[{index}].webhook.url"), message });
        }
    }
    problems
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

/// One line of the overview (PRODUCT.md F17): what triggers it, for whom, how often, what
/// it does, in words.
pub fn overview(record: &AutomationRecord, stats: Option<&RunStats>) -> Value {
    let stats = stats.cloned().unwrap_or_default();
    let mut item = json!({
        "name": record.name,
        "enabled": record.enabled,
        "created_at": format_time(record.created_at),
        "updated_at": format_time(record.updated_at),
        "last_fired_at": stats.last_fired_at.map(format_time),
        "runs": { "last_day": stats.runs_last_day, "last_week": stats.runs_last_week, "total": stats.runs_total },
    });
    match Automation::from_value(record.definition.clone()) {
        Ok(automation) => {
            item["model"] = json!(automation.model);
            item["trigger"] = json!(trigger_text(&automation.trigger));
            item["filter"] = json!(filter_text(&automation.filter, &record.definition));
            item["limits"] = json!(limits_text(&automation.limits));
            item["actions"] = json!(automation.actions.iter().map(action_text).collect::<Vec<_>>());
        }
        // Stored definitions were valid when stored; one that no longer is (the format
        // changed) is listed with its problems rather than failing the whole list.
        Err(err) => item["problems"] = json!(err.problems()),
    }
    item
}

fn trigger_text(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Hot { points, within } => {
            format!("hot: at least {points} activity points within {within}")
        }
        Trigger::Cold { points, within } => {
            format!("cold: fewer than {points} activity points within {within} (contacts at least {within} old)")
        }
        Trigger::Threshold { score, direction, value, rearm } => {
            let score = match score {
                ScoreField::Fit => "fit",
                ScoreField::Activity => "activity",
                ScoreField::Total => "total",
            };
            let (way, back) = match direction {
                Direction::Above => ("above", "below"),
                Direction::Below => ("below", "above"),
            };
            let rearm = rearm.map_or(String::new(), |r| format!(", re-armed once back {back} {r}"));
            format!("threshold: {score} score crosses {way} {value}{rearm}")
        }
        Trigger::Band { model, to } => {
            let change = to.as_ref().map_or("any band change".to_string(), |to| format!("band becomes {to}"));
            match model {
                Some(model) => format!("band: {change} under {model}"),
                None => format!("band: {change}"),
            }
        }
        Trigger::Event { name } => format!("event: {name}"),
    }
}

fn filter_text(filter: &Filter, definition: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(group) = &filter.group {
        parts.push(format!("in group {group}"));
    }
    if let Some(band) = &filter.band {
        parts.push(format!("band {band}"));
    }
    if let Some(owner) = &filter.owner {
        parts.push(format!("owned by {owner}"));
    }
    if filter.condition.is_some() {
        // The condition as written (without the shorthands above) reads better than any
        // paraphrase of nested all/any/not.
        let mut condition = definition.get("filter").cloned().unwrap_or(Value::Null);
        if let Some(table) = condition.as_object_mut() {
            for key in ["group", "band", "owner"] {
                table.remove(key);
            }
        }
        parts.push(format!("attributes match {condition}"));
    }
    if parts.is_empty() { "every contact".into() } else { parts.join(" and ") }
}

fn limits_text(limits: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some((max, per)) = limits.max {
        parts.push(format!("at most {max} per {per}"));
    }
    if let Some(cooldown) = limits.cooldown {
        parts.push(format!("cooldown {cooldown}"));
    }
    if parts.is_empty() { "no limits".into() } else { format!("{} per contact", parts.join(", ")) }
}

fn action_text(action: &Action) -> String {
    match action {
        Action::Webhook { url, .. } => format!("webhook {url}"),
        Action::Email { to, subject, .. } => format!("email {to}: {subject}"),
        Action::Assign(AssignStrategy::RoundRobin { team }) => {
            format!("assign to {team} (round robin)")
        }
        Action::Assign(AssignStrategy::ByAttribute { attribute, teams, .. }) => {
            let teams: Vec<String> = teams.iter().map(|(value, team)| format!("{value} → {team}")).collect();
            format!("assign by {attribute} ({})", teams.join(", "))
        }
        Action::Set { attribute, value } => format!("set {attribute} = {value}"),
        Action::AddGroup { group } => format!("add to group {group}"),
        Action::RemoveGroup { group } => format!("remove from group {group}"),
        Action::Nurture { track_per_band } => {
            let tracks: Vec<String> =
                track_per_band.iter().map(|(band, track)| if track.is_empty() { format!("{band} → none") } else { format!("{band} → {track}") }).collect();
            format!("nurture ({})", tracks.join(", "))
        }
    }
}
