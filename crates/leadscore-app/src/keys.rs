//! API keys: 32 random bytes shown once, stored as their SHA-256 hash (a fast hash is
//! enough: there is nothing to brute-force), created, listed and revoked here.

use leadscore_store::{ApiKeyRecord, Millis, Scope, StoreError};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::Engine;
use crate::error::AppError;
use crate::time::format_time;

pub const KEY_PREFIX: &str = "lsk_";

/// A new random key: `lsk_` + 64 hex characters.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The stored record of `key` (its id is derived from the hash, so the same key always
/// gets the same id).
pub fn key_record(name: &str, key: &str, scopes: Vec<Scope>, now: Millis) -> ApiKeyRecord {
    let hash = hash_key(key);
    ApiKeyRecord {
        id: format!("key_{}", &hash[..12]),
        name: name.into(),
        prefix: key.chars().take(10).collect(),
        hash,
        scopes,
        created_at: now,
        revoked_at: None,
    }
}

/// Creates a key with the named scopes; answers its record and the key itself, which is
/// never seen again.
pub async fn create_key(engine: &Engine, name: &str, scopes: &[String]) -> Result<(ApiKeyRecord, String), KeyError> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(KeyError::Name);
    }
    let mut parsed = Vec::new();
    for scope in scopes {
        let scope = Scope::parse(scope).ok_or_else(|| KeyError::UnknownScope(scope.clone()))?;
        if !parsed.contains(&scope) {
            parsed.push(scope);
        }
    }
    if parsed.is_empty() {
        return Err(KeyError::NoScope);
    }
    let key = generate_key();
    let record = key_record(name, &key, parsed, engine.now());
    engine.store.insert_key(record.clone()).await?;
    Ok((record, key))
}

/// Revokes key `id`; `by` is the key asking, which may not revoke itself (the way back in
/// would be gone with it).
pub async fn revoke_key(engine: &Engine, id: &str, by: &str) -> Result<(), KeyError> {
    if id == by {
        return Err(KeyError::RevokeSelf);
    }
    if !engine.store.revoke_key(id, engine.now()).await? {
        return Err(KeyError::NotFound(id.to_string()));
    }
    Ok(())
}

/// Every key, revoked ones too (never the keys themselves).
pub async fn list(engine: &Engine) -> Result<Vec<ApiKeyRecord>, StoreError> {
    engine.store.list_keys().await
}

/// The stored record of a key as presented, if any (revoked ones too: the caller tells).
pub async fn find(engine: &Engine, key: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
    engine.store.find_key_by_hash(&hash_key(key)).await
}

/// Why a key cannot be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("`name` must be 1-200 characters")]
    Name,
    #[error("unknown scope {0:?}; use ingest, read or admin")]
    UnknownScope(String),
    #[error("give at least one scope: ingest, read or admin")]
    NoScope,
    /// The way back in would be gone with it.
    #[error("a key cannot revoke itself; use another admin key")]
    RevokeSelf,
    #[error("no active key {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<KeyError> for AppError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::NotFound(_) => AppError::not_found(err.to_string()),
            KeyError::Store(err) => AppError::Store(err),
            other => AppError::invalid(other.to_string()),
        }
    }
}

/// An API key as front ends show it (never its hash).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub created_at: String,
    pub id: String,
    /// The key itself: in the answer to its creation only, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub key: Option<String>,
    pub name: String,
    /// The first characters of the key, so people can tell keys apart.
    pub prefix: String,
    #[schema(required = true)]
    pub revoked_at: Option<String>,
    /// ingest, identify, read, admin.
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
}

impl From<&ApiKeyRecord> for KeyView {
    fn from(key: &ApiKeyRecord) -> Self {
        KeyView {
            created_at: format_time(key.created_at),
            id: key.id.clone(),
            key: None,
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            revoked_at: key.revoked_at.map(format_time),
            scopes: key.scopes.clone(),
        }
    }
}
