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
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use leadscore_app::settings::{self, SecretView, SubscriptionView, TeamView};

use crate::AppState;
use crate::auth::{CanAdmin, CanRead};
use crate::error::ApiResult;
use crate::input::Body;

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

/// The sales teams.
#[derive(Serialize, ToSchema)]
pub struct TeamList {
    pub teams: Vec<TeamView>,
}

/// The stored secrets, by name.
#[derive(Serialize, ToSchema)]
pub struct SecretList {
    pub secrets: Vec<SecretView>,
}

/// A secret stored; a generated one is shown in this answer only.
#[derive(Serialize, ToSchema)]
pub struct SecretStored {
    pub created: bool,
    pub name: String,
    /// With a generated value: that it is shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The generated value (absent when the value was sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The webhook subscriptions.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<SubscriptionView>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamBody {
    members: Vec<String>,
}

async fn put_team(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<TeamView>)> {
    let body: TeamBody = body.json()?;
    let (team, created) = settings::put_team(&state, &name, body.members).await?;
    Ok((created_status(created), Json(TeamView::from(&team))))
}

async fn get_team(State(state): State<Arc<AppState>>, _: CanRead, Path(name): Path<String>) -> ApiResult<Json<TeamView>> {
    let team = settings::get_team(&state, &name).await?;
    Ok(Json(TeamView::from(&team)))
}

async fn list_teams(State(state): State<Arc<AppState>>, _: CanRead) -> ApiResult<Json<TeamList>> {
    Ok(Json(TeamList { teams: settings::list_teams(&state).await?.iter().map(TeamView::from).collect() }))
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
async fn put_secret(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<SecretStored>)> {
    let body: SecretBody = if body.0.iter().all(u8::is_ascii_whitespace) { SecretBody::default() } else { body.json()? };
    let stored = settings::put_secret(&state, &name, body.value).await?;
    let note = stored.generated.is_some().then(|| "this is the only time the secret is shown; give it to the receiver to verify signatures".to_string());
    Ok((created_status(stored.created), Json(SecretStored { created: stored.created, name, note, value: stored.generated })))
}

async fn list_secrets(State(state): State<Arc<AppState>>, _: CanAdmin) -> ApiResult<Json<SecretList>> {
    Ok(Json(SecretList { secrets: settings::list_secrets(&state).await?.iter().map(SecretView::new).collect() }))
}

async fn delete_secret(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    settings::delete_secret(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
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

async fn put_subscription(
    State(state): State<Arc<AppState>>,
    _: CanAdmin,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<SubscriptionView>)> {
    let body: SubscriptionBody = body.json()?;
    let input = settings::SubscriptionInput { url: body.url, secret_ref: body.secret_ref, events: body.events, fields: body.fields, debounce: body.debounce };
    let (stored, created) = settings::put_subscription(&state, &name, input).await?;
    Ok((created_status(created), Json(SubscriptionView::from(&stored))))
}

async fn list_subscriptions(State(state): State<Arc<AppState>>, _: CanRead) -> ApiResult<Json<WebhookList>> {
    Ok(Json(WebhookList { webhooks: settings::list_subscriptions(&state).await?.iter().map(SubscriptionView::from).collect() }))
}

async fn delete_subscription(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    settings::delete_subscription(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
