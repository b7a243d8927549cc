//! What automations use besides their definitions: sales teams (round-robin assignment),
//! named secrets (webhook signing; write-only), and webhook subscriptions (`score.changed`
//! for CRM sync with a field mapping, `nurture.changed`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use leadscore_store::runner::{Subscription, Team};
use serde::Deserialize;
use serde_json::{Value, json};

use leadscore_app::settings;

use crate::AppState;
use crate::auth::{CanAdmin, CanReadSetup};
use crate::error::ApiResult;
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

async fn put_team(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: TeamBody = body.json()?;
    let (team, created) = settings::put_team(&state, &name, body.members).await?;
    Ok((created_status(created), Json(team_json(&team))))
}

async fn get_team(State(state): State<Arc<AppState>>, _: CanReadSetup, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let team = settings::get_team(&state, &name).await?;
    Ok(Json(team_json(&team)))
}

async fn list_teams(State(state): State<Arc<AppState>>, _: CanReadSetup) -> ApiResult<Json<Value>> {
    let teams: Vec<Value> = settings::list_teams(&state).await?.iter().map(team_json).collect();
    Ok(Json(json!({ "teams": teams })))
}

async fn delete_team(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    settings::delete_team(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: Option<String>,
}

/// Stores a signing secret. Without a value one is generated and shown in this answer
/// only; a stored secret is never readable back.
async fn put_secret(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: SecretBody = if body.0.iter().all(u8::is_ascii_whitespace) { SecretBody::default() } else { body.json()? };
    let stored = settings::put_secret(&state, &name, body.value).await?;
    let mut out = json!({ "name": name, "created": stored.created });
    if let Some(value) = stored.generated {
        out["value"] = json!(value);
        out["note"] = json!("this is the only time the secret is shown; give it to the receiver to verify signatures");
    }
    Ok((created_status(stored.created), Json(out)))
}

async fn list_secrets(State(state): State<Arc<AppState>>, _: CanAdmin) -> ApiResult<Json<Value>> {
    let secrets: Vec<Value> = settings::list_secrets(&state)
        .await?
        .into_iter()
        .map(|(name, created_at, updated_at)| json!({ "name": name, "created_at": format_time(created_at), "updated_at": format_time(updated_at) }))
        .collect();
    Ok(Json(json!({ "secrets": secrets })))
}

async fn delete_secret(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    settings::delete_secret(&state, &name).await?;
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

async fn put_subscription(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: SubscriptionBody = body.json()?;
    let input = settings::SubscriptionInput { url: body.url, secret_ref: body.secret_ref, events: body.events, fields: body.fields, debounce: body.debounce };
    let (stored, created) = settings::put_subscription(&state, &name, input).await?;
    Ok((created_status(created), Json(subscription_json(&stored))))
}

async fn list_subscriptions(State(state): State<Arc<AppState>>, _: CanReadSetup) -> ApiResult<Json<Value>> {
    let items: Vec<Value> = settings::list_subscriptions(&state).await?.iter().map(subscription_json).collect();
    Ok(Json(json!({ "webhooks": items })))
}

async fn delete_subscription(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    settings::delete_subscription(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
