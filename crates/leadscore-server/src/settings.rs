//! What automations use besides their definitions: sales teams (round-robin assignment),
//! named secrets (webhook signing; write-only), and webhook subscriptions (`score.changed`
//! for CRM sync with a field mapping, `nurture.changed`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::input::Path;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use leadscore_app::settings::{self, SecretView, SubscriptionView, TeamView};

use crate::AppState;
use crate::auth::{CanAdmin, CanReadSetup};
use crate::error::ApiResult;
use crate::input::Body;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_teams))
        .routes(routes!(get_team, put_team, delete_team))
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret, delete_secret))
        .routes(routes!(list_subscriptions))
        .routes(routes!(put_subscription, delete_subscription))
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
    #[schema(nullable = false)]
    pub note: Option<String>,
    /// The generated value (absent when the value was sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub value: Option<String>,
}

/// The webhook subscriptions.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<SubscriptionView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TeamBody {
    /// Who gets leads, in round-robin order.
    members: Vec<String>,
}

#[utoipa::path(
    put,
    path = "/teams/{name}",
    tag = "settings",
    summary = "Create or replace a team: {members: [...]}",
    params(("name" = String, Path, description = "The team's name")),
    request_body = TeamBody,
    responses((status = CREATED, description = "Created", body = TeamView), (status = OK, description = "Replaced", body = TeamView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn put_team(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<TeamView>)> {
    let body: TeamBody = body.json()?;
    let (team, created) = settings::put_team(&state, &name, body.members).await?;
    Ok((created_status(created), Json(TeamView::from(&team))))
}

#[utoipa::path(
    get,
    path = "/teams/{name}",
    tag = "settings",
    summary = "A team: members, leads assigned, who is next",
    params(("name" = String, Path, description = "The team's name")),
    responses((status = OK, description = "The team", body = TeamView)),
    extensions(("x-scope" = json!("read"))),
)]
async fn get_team(State(state): State<Arc<AppState>>, _: CanReadSetup, Path(name): Path<String>) -> ApiResult<Json<TeamView>> {
    let team = settings::get_team(&state, &name).await?;
    Ok(Json(TeamView::from(&team)))
}

#[utoipa::path(
    get,
    path = "/teams",
    tag = "settings",
    summary = "Sales teams for round-robin assignment",
    responses((status = OK, description = "The teams", body = TeamList)),
    extensions(("x-scope" = json!("read"))),
)]
async fn list_teams(State(state): State<Arc<AppState>>, _: CanReadSetup) -> ApiResult<Json<TeamList>> {
    Ok(Json(TeamList { teams: settings::list_teams(&state).await?.iter().map(TeamView::from).collect() }))
}

#[utoipa::path(
    delete,
    path = "/teams/{name}",
    tag = "settings",
    summary = "Delete a team",
    params(("name" = String, Path, description = "The team's name")),
    responses((status = NO_CONTENT, description = "Deleted")),
    extensions(("x-scope" = json!("admin"))),
)]
async fn delete_team(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    settings::delete_team(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    /// `whsec_` followed by base64; without it one is generated and shown once.
    value: Option<String>,
}

/// Stores a signing secret. Without a value one is generated and shown in this answer
/// only; a stored secret is never readable back.
#[utoipa::path(
    put,
    path = "/secrets/{name}",
    tag = "settings",
    summary = "Store a webhook signing secret {value?}; without a value one is generated and shown once",
    params(("name" = String, Path, description = "The secret's name")),
    request_body(content = SecretBody, description = "May be empty: a secret is generated"),
    responses((status = CREATED, description = "Created", body = SecretStored), (status = OK, description = "Replaced", body = SecretStored)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn put_secret(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>, body: Body) -> ApiResult<(StatusCode, Json<SecretStored>)> {
    let body: SecretBody = if body.0.iter().all(u8::is_ascii_whitespace) { SecretBody::default() } else { body.json()? };
    let stored = settings::put_secret(&state, &name, body.value).await?;
    let note = stored.generated.is_some().then(|| "this is the only time the secret is shown; give it to the receiver to verify signatures".to_string());
    Ok((created_status(stored.created), Json(SecretStored { created: stored.created, name, note, value: stored.generated })))
}

#[utoipa::path(
    get,
    path = "/secrets",
    tag = "settings",
    summary = "Names of the stored secrets (never their values)",
    responses((status = OK, description = "The secrets, by name", body = SecretList)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn list_secrets(State(state): State<Arc<AppState>>, _: CanAdmin) -> ApiResult<Json<SecretList>> {
    Ok(Json(SecretList { secrets: settings::list_secrets(&state).await?.iter().map(SecretView::new).collect() }))
}

#[utoipa::path(
    delete,
    path = "/secrets/{name}",
    tag = "settings",
    summary = "Delete a secret",
    params(("name" = String, Path, description = "The secret's name")),
    responses((status = NO_CONTENT, description = "Deleted")),
    extensions(("x-scope" = json!("admin"))),
)]
async fn delete_secret(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    settings::delete_secret(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscriptionBody {
    url: String,
    /// The secret that signs the deliveries.
    secret_ref: Option<String>,
    /// `score.changed`, `nurture.changed`.
    events: Vec<String>,
    /// score.changed: leadscore field (fit, activity, total, band, flames, predictive, …) →
    /// the receiver's field name.
    #[serde(default)]
    fields: BTreeMap<String, String>,
    /// `30s`, `1m`, …; default 1 minute.
    debounce: Option<String>,
}

#[utoipa::path(
    put,
    path = "/webhooks/{name}",
    tag = "settings",
    summary = "Create or replace a subscription: {url, events, secret_ref?, fields?, debounce?}",
    params(("name" = String, Path, description = "The subscription's name")),
    request_body = SubscriptionBody,
    responses((status = CREATED, description = "Created", body = SubscriptionView), (status = OK, description = "Replaced", body = SubscriptionView)),
    extensions(("x-scope" = json!("admin"))),
)]
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

#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "settings",
    summary = "Webhook subscriptions (score.changed CRM sync, nurture.changed)",
    responses((status = OK, description = "The subscriptions", body = WebhookList)),
    extensions(("x-scope" = json!("read"))),
)]
async fn list_subscriptions(State(state): State<Arc<AppState>>, _: CanReadSetup) -> ApiResult<Json<WebhookList>> {
    Ok(Json(WebhookList { webhooks: settings::list_subscriptions(&state).await?.iter().map(SubscriptionView::from).collect() }))
}

#[utoipa::path(
    delete,
    path = "/webhooks/{name}",
    tag = "settings",
    summary = "Delete a subscription",
    params(("name" = String, Path, description = "The subscription's name")),
    responses((status = NO_CONTENT, description = "Deleted")),
    extensions(("x-scope" = json!("admin"))),
)]
async fn delete_subscription(State(state): State<Arc<AppState>>, _: CanAdmin, Path(name): Path<String>) -> ApiResult<StatusCode> {
    settings::delete_subscription(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
