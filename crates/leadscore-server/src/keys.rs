//! API keys (admin only): create (the key is shown once), list, revoke.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use leadscore_store::ApiKeyRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::CanAdmin;
use crate::error::ApiResult;
use crate::input::{Body, format_time};

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/keys", get(list_keys).post(create_key)).route("/keys/{id}", delete(revoke_key))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    scopes: Vec<String>,
}

fn key_json(key: &ApiKeyRecord) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": key.scopes,
        "created_at": format_time(key.created_at),
        "revoked_at": key.revoked_at.map(format_time),
    })
}

async fn create_key(State(state): State<Arc<AppState>>, _: CanAdmin, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: CreateKey = body.json()?;
    let (record, key) = leadscore_app::keys::create_key(&state, &body.name, &body.scopes).await?;
    let mut out = key_json(&record);
    out["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn list_keys(State(state): State<Arc<AppState>>, _: CanAdmin) -> ApiResult<Json<Value>> {
    let keys = leadscore_app::keys::list(&state).await?;
    Ok(Json(json!({ "keys": keys.iter().map(key_json).collect::<Vec<_>>() })))
}

async fn revoke_key(State(state): State<Arc<AppState>>, principal: CanAdmin, Path(id): Path<String>) -> ApiResult<StatusCode> {
    leadscore_app::keys::revoke_key(&state, &id, &principal.key_id).await?;
    state.keys.forget_all();
    Ok(StatusCode::NO_CONTENT)
}
