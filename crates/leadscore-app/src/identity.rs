//! Segment's identity calls, applied to contacts: `alias` (the contact known as
//! `previousId`, else the anonymous visitor `anon:<previousId>`, is merged into `userId`)
//! and `group` (the contact gets `account_id` and the group's traits as `account_<trait>`).

use leadscore_store::records::identity::{anonymous_contact_id, may_merge};
use leadscore_store::{ContactUpsert, IdentityTrust, StoreError};
use serde_json::{Map, Value};

use crate::Engine;

/// Merges what is known under `previous_id` into `user_id` (created when new). Nothing
/// known under the old id: nothing to do. A sender that may not change who a known person
/// is (a web page's key) only moves anonymous visitors; asked to merge a known contact, it
/// is answered like an alias of nobody, so the answer does not tell who is a customer.
pub async fn alias(engine: &Engine, previous_id: &str, user_id: &str, trust: IdentityTrust) -> Result<(), StoreError> {
    let models = engine.models();
    let from = match engine.store.get_contact(previous_id).await? {
        Some(contact) => contact,
        None => match engine.store.get_contact(&anonymous_contact_id(previous_id)).await? {
            Some(visitor) => visitor,
            None => return Ok(()),
        },
    };
    if from.id == user_id {
        return Ok(());
    }
    if !may_merge(&from.id, from.email.as_deref(), trust) {
        tracing::warn!(previous_id, "alias of a known contact refused: it needs a key with the identify scope");
        metrics::counter!("leadscore_identity_changes_refused_total", "call" => "alias").increment(1);
        return Ok(());
    }
    let from = from.id;
    if engine.store.get_contact(user_id).await?.is_none() {
        let upsert = ContactUpsert { id: Some(user_id.to_string()), ..ContactUpsert::default() };
        engine.store.upsert_contact(upsert, &models, engine.now()).await?;
    }
    match engine.store.merge_contacts(&from, user_id, &models, engine.now()).await {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(other) => Err(other),
    }
}

/// Puts contact `contact_id` (created when new) in account `group_id` with its traits.
pub async fn group(engine: &Engine, contact_id: String, group_id: String, traits: Map<String, Value>) -> Result<(), StoreError> {
    let mut attributes = Map::new();
    attributes.insert("account_id".into(), Value::String(group_id));
    for (key, value) in traits {
        attributes.insert(format!("account_{key}"), value);
    }
    let upsert = ContactUpsert { id: Some(contact_id), attributes, ..ContactUpsert::default() };
    engine.store.upsert_contact(upsert, &engine.models(), engine.now()).await?;
    Ok(())
}
