//! API keys (admin only): create (the key is shown once), list, revoke.

use std::sync::Arc;

use crate::input::Path;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use leadscore_app::keys::KeyView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::CanAdmin;
use crate::error::ApiResult;
use crate::input::Body;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_keys, create_key)).routes(routes!(revoke_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    /// ingest (safe in a web page), identify, read, admin.
    scopes: Vec<String>,
}

/// The API keys, revoked ones too.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[utoipa::path(
    post,
    path = "/keys",
    tag = "keys",
    summary = "Create an API key with scopes (shown once)",
    request_body = CreateKey,
    responses((status = CREATED, description = "The key, with `key` shown this once", body = KeyView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn create_key(State(state): State<Arc<AppState>>, _: CanAdmin, body: Body) -> ApiResult<(StatusCode, Json<KeyView>)> {
    let body: CreateKey = body.json()?;
    let (record, key) = leadscore_app::keys::create_key(&state, &body.name, &body.scopes).await?;
    Ok((StatusCode::CREATED, Json(KeyView { key: Some(key), ..KeyView::from(&record) })))
}

#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    summary = "List API keys",
    responses((status = OK, description = "The keys (never the keys themselves)", body = KeyList)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn list_keys(State(state): State<Arc<AppState>>, _: CanAdmin) -> ApiResult<Json<KeyList>> {
    let keys = leadscore_app::keys::list(&state).await?;
    Ok(Json(KeyList { keys: keys.iter().map(KeyView::from).collect() }))
}

#[utoipa::path(
    delete,
    path = "/keys/{id}",
    tag = "keys",
    summary = "Revoke an API key",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = NO_CONTENT, description = "Revoked")),
    extensions(("x-scope" = json!("admin"))),
)]
async fn revoke_key(State(state): State<Arc<AppState>>, principal: CanAdmin, Path(id): Path<String>) -> ApiResult<StatusCode> {
    leadscore_app::keys::revoke_key(&state, &id, &principal.key_id).await?;
    state.keys.forget_all();
    Ok(StatusCode::NO_CONTENT)
}
