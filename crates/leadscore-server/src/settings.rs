//! What automations use besides their definitions: sales teams (round-robin assignment),
//! named secrets (webhook signing; write-only), and webhook subscriptions (`score.changed`
//! for CRM sync with a field mapping, `nurture.changed`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use leadscore_core::Span;
use leadscore_core::model::is_valid_name;
use leadscore_store::Scope;
use leadscore_store::runner::{SYNC_FIELDS, Subscription, Team};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, format_time};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/teams", get(list_teams))
        .route("/teams/{name}", get(get_team).put(put_team).delete(delete_team))
        .route("/secrets", get(list_secrets))
        .route("/secrets/{name}", axum::routing::put(put_secret).delete(delete_secret))
        .route("/webhooks", get(list_subscriptions))
        .route("/webhooks/{name}", axum::routing::put(put_subscription).delete(delete_subscription))
}

fn check_name(kind: &str, name: &str) -> ApiResult<()> {
    if is_valid_name(name) { Ok(()) } else { Err(ApiError::invalid(format!("{kind} name {name:?} may use letters, digits, '-', '_' and '.' only"))) }
}

fn created_status(created: bool) -> StatusCode {
    if created { StatusCode::CREATED } else { StatusCode::OK }
}

fn team_json(team: &Team) -> Value {
    let next = (!team.members.is_empty()).then(|| team.members[(team.cursor % team.members.len() as u64) as usize].clone());
    json!({
        "name": team.name,
        "members": team.members,
        "assigned": team.cursor,
        "next": next,
        "created_at": format_time(team.created_at),
        "updated_at": format_time(team.updated_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamBody {
    members: Vec<String>,
}

async fn put_team(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    check_name("team", &name)?;
    let body: TeamBody = body.json()?;
    let mut members = Vec::new();
    for member in body.members {
        let member = member.trim().to_string();
        if member.is_empty() {
            return Err(ApiError::invalid("a team member cannot be empty"));
        }
        if !members.contains(&member) {
            members.push(member);
        }
    }
    let (team, created) = state.store.put_team(&name, members, state.now()).await?;
    Ok((created_status(created), Json(team_json(&team))))
}

async fn get_team(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let team = state.store.get_team(&name).await?.ok_or_else(|| ApiError::not_found(format!("no team {name:?}")))?;
    Ok(Json(team_json(&team)))
}

async fn list_teams(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let teams: Vec<Value> = state.store.list_teams().await?.iter().map(team_json).collect();
    Ok(Json(json!({ "teams": teams })))
}

async fn delete_team(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>) -> ApiResult<StatusCode> {
    principal.require(Scope::Admin)?;
    if !state.store.delete_team(&name).await? {
        return Err(ApiError::not_found(format!("no team {name:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: Option<String>,
}

/// Stores a signing secret. Without a value one is generated and shown in this answer
/// only; a stored secret is never readable back.
async fn put_secret(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    check_name("secret", &name)?;
    let body: SecretBody = if body.0.iter().all(u8::is_ascii_whitespace) { SecretBody::default() } else { body.json()? };
    let generated = body.value.is_none();
    let value = body.value.unwrap_or_else(leadscore_delivery::new_secret);
    // A secret that cannot sign would only fail at delivery time: refuse it now.
    leadscore_delivery::sign(&value, "msg_check", 0, b"{}")
        .map_err(|e| ApiError::invalid(format!("{e}; a secret is \"whsec_\" followed by base64 (omit `value` to have one generated)")))?;
    let created = state.store.put_secret(&name, &value, state.now()).await?;
    tracing::info!(secret = %name, created, "secret stored");
    let mut out = json!({ "name": name, "created": created });
    if generated {
        out["value"] = json!(value);
        out["note"] = json!("this is the only time the secret is shown; give it to the receiver to verify signatures");
    }
    Ok((created_status(created), Json(out)))
}

async fn list_secrets(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<Json<Value>> {
    principal.require(Scope::Admin)?;
    let secrets: Vec<Value> = state
        .store
        .list_secrets()
        .await?
        .into_iter()
        .map(|(name, created_at, updated_at)| json!({ "name": name, "created_at": format_time(created_at), "updated_at": format_time(updated_at) }))
        .collect();
    Ok(Json(json!({ "secrets": secrets })))
}

async fn delete_secret(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>) -> ApiResult<StatusCode> {
    principal.require(Scope::Admin)?;
    if !state.store.delete_secret(&name).await? {
        return Err(ApiError::not_found(format!("no secret {name:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn subscription_json(subscription: &Subscription) -> Value {
    json!({
        "name": subscription.name,
        "url": subscription.url,
        "secret_ref": subscription.secret_ref,
        "events": subscription.events,
        "fields": subscription.fields,
        "debounce_ms": subscription.debounce_ms,
        "created_at": format_time(subscription.created_at),
        "updated_at": format_time(subscription.updated_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionBody {
    url: String,
    secret_ref: Option<String>,
    events: Vec<String>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    /// `30s`, `1m`, …; default 1 minute.
    debounce: Option<String>,
}

const SUBSCRIBABLE: &[&str] = &["score.changed", "nurture.changed"];

async fn put_subscription(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    check_name("webhook", &name)?;
    let body: SubscriptionBody = body.json()?;
    let mut problems = Vec::new();
    if !(body.url.starts_with("https://") || body.url.starts_with("http://")) {
        problems.push(format!("url {:?} must be an http(s) URL", body.url));
    } else if let Err(reason) = leadscore_app::runtime::check_webhook_url(&state.engine.config, &body.url).await {
        problems.push(format!("url: {reason}"));
    }
    if body.events.is_empty() {
        problems.push(format!("events must list at least one of {}", SUBSCRIBABLE.join(", ")));
    }
    for event in &body.events {
        if !SUBSCRIBABLE.contains(&event.as_str()) {
            problems.push(format!("events: {event:?} is not one of {}", SUBSCRIBABLE.join(", ")));
        }
    }
    for (source, target) in &body.fields {
        let field = source.rsplit('.').next().unwrap_or(source);
        if !SYNC_FIELDS.contains(&field) {
            problems.push(format!("fields: {source:?} is not one of {} (optionally MODEL.field)", SYNC_FIELDS.join(", ")));
        }
        if target.trim().is_empty() {
            problems.push(format!("fields: {source:?} maps to an empty name"));
        }
    }
    let debounce = match body.debounce.as_deref() {
        None => 60_000,
        Some(text) => match Span::parse(text) {
            Ok(span) => span.millis(),
            Err(err) => {
                problems.push(format!("debounce: {err}"));
                0
            }
        },
    };
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems.join("; ")).with_details(json!({ "problems": problems })));
    }
    let now = state.now();
    let subscription = Subscription {
        name,
        url: body.url,
        secret_ref: body.secret_ref,
        events: body.events,
        fields: body.fields,
        debounce_ms: debounce,
        created_at: now,
        updated_at: now,
    };
    let (stored, created) = state.store.put_subscription(subscription).await?;
    Ok((created_status(created), Json(subscription_json(&stored))))
}

async fn list_subscriptions(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let items: Vec<Value> = state.store.list_subscriptions().await?.iter().map(subscription_json).collect();
    Ok(Json(json!({ "webhooks": items })))
}

async fn delete_subscription(State(state): State<Arc<AppState>>, principal: Principal, Path(name): Path<String>) -> ApiResult<StatusCode> {
    principal.require(Scope::Admin)?;
    if !state.store.delete_subscription(&name).await? {
        return Err(ApiError::not_found(format!("no webhook subscription {name:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}
