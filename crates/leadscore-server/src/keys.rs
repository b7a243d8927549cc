//! API keys (admin only): create (the key is shown once), list, revoke.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use leadscore_store::{ApiKeyRecord, Scope};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Principal, generate_key, hash_key};
use crate::error::{ApiError, ApiResult};
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

async fn create_key(State(state): State<Arc<AppState>>, principal: Principal, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    let body: CreateKey = body.json()?;
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(ApiError::invalid("`name` must be 1-200 characters"));
    }
    let mut scopes = Vec::new();
    for scope in &body.scopes {
        let parsed = Scope::parse(scope).ok_or_else(|| ApiError::invalid(format!("unknown scope {scope:?}; use ingest, read or admin")))?;
        if !scopes.contains(&parsed) {
            scopes.push(parsed);
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::invalid("give at least one scope: ingest, read or admin"));
    }
    let key = generate_key();
    let hash = hash_key(&key);
    let record = ApiKeyRecord {
        id: format!("key_{}", &hash[..12]),
        name: body.name,
        hash,
        prefix: key.chars().take(10).collect(),
        scopes,
        created_at: state.now(),
        revoked_at: None,
    };
    state.store.insert_key(record.clone()).await?;
    let mut out = key_json(&record);
    out["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn list_keys(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<Json<Value>> {
    principal.require(Scope::Admin)?;
    let keys = state.store.list_keys().await?;
    Ok(Json(json!({ "keys": keys.iter().map(key_json).collect::<Vec<_>>() })))
}

async fn revoke_key(State(state): State<Arc<AppState>>, principal: Principal, Path(id): Path<String>) -> ApiResult<StatusCode> {
    principal.require(Scope::Admin)?;
    if id == principal.key_id {
        return Err(ApiError::invalid("a key cannot revoke itself; use another admin key"));
    }
    if !state.store.revoke_key(&id, state.now()).await? {
        return Err(ApiError::not_found(format!("no active key {id:?}")));
    }
    state.keys.forget_all();
    Ok(StatusCode::NO_CONTENT)
}
