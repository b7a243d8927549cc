//! Segment's identity calls, applied to contacts: `alias` (the contact known as
//! `previousId`, else the anonymous visitor `anon:<previousId>`, is merged into `userId`)
//! and `group` (the contact gets `account_id` and the group's traits as `account_<trait>`).

use leadscore_store::{ContactUpsert, StoreError};
use serde_json::{Map, Value};

use crate::Engine;
use crate::error::AppResult;

/// Merges what is known under `previous_id` into `user_id` (created when new). Nothing
/// known under the old id: nothing to do.
pub async fn alias(engine: &Engine, previous_id: &str, user_id: &str) -> AppResult<()> {
    let models = engine.models();
    let from = if engine.store.get_contact(previous_id).await?.is_some() { previous_id.to_string() } else { format!("anon:{previous_id}") };
    if from == user_id || engine.store.get_contact(&from).await?.is_none() {
        return Ok(());
    }
    if engine.store.get_contact(user_id).await?.is_none() {
        let upsert = ContactUpsert { id: Some(user_id.to_string()), ..ContactUpsert::default() };
        engine.store.upsert_contact(upsert, &models, engine.now()).await?;
    }
    match engine.store.merge_contacts(&from, user_id, &models, engine.now()).await {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

/// Puts contact `contact_id` (created when new) in account `group_id` with its traits.
pub async fn group(engine: &Engine, contact_id: String, group_id: String, traits: Map<String, Value>) -> AppResult<()> {
    let mut attributes = Map::new();
    attributes.insert("account_id".into(), Value::String(group_id));
    for (key, value) in traits {
        attributes.insert(format!("account_{key}"), value);
    }
    let upsert = ContactUpsert { id: Some(contact_id), attributes, ..ContactUpsert::default() };
    engine.store.upsert_contact(upsert, &engine.models(), engine.now()).await?;
    Ok(())
}
