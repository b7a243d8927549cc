//! API keys (admin only): create (the key is shown once), list, revoke.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use leadscore_app::keys::KeyView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::CanAdmin;
use crate::error::ApiResult;
use crate::input::Body;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/keys", get(list_keys).post(create_key)).route("/keys/{id}", delete(revoke_key))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    scopes: Vec<String>,
}

/// The API keys, revoked ones too.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

async fn create_key(State(state): State<Arc<AppState>>, _: CanAdmin, body: Body) -> ApiResult<(StatusCode, Json<KeyView>)> {
    let body: CreateKey = body.json()?;
    let (record, key) = leadscore_app::keys::create_key(&state, &body.name, &body.scopes).await?;
    Ok((StatusCode::CREATED, Json(KeyView { key: Some(key), ..KeyView::from(&record) })))
}

async fn list_keys(State(state): State<Arc<AppState>>, _: CanAdmin) -> ApiResult<Json<KeyList>> {
    let keys = leadscore_app::keys::list(&state).await?;
    Ok(Json(KeyList { keys: keys.iter().map(KeyView::from).collect() }))
}

async fn revoke_key(State(state): State<Arc<AppState>>, principal: CanAdmin, Path(id): Path<String>) -> ApiResult<StatusCode> {
    leadscore_app::keys::revoke_key(&state, &id, &principal.key_id).await?;
    state.keys.forget_all();
    Ok(StatusCode::NO_CONTENT)
}
