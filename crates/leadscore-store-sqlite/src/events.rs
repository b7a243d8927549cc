//! EventStore: ingest (store + score in one transaction) and event reads.

use std::collections::HashMap;

use async_trait::async_trait;
use leadscore_store::records::identity::{EmailChange, anonymous_contact_id, email_change, normalize_email};
use leadscore_store::scoring::ScoringEvent;
use leadscore_store::{
    ContactRecord, EventStore, Identity, IdentityTrust, IngestOptions, IngestOutcome, IngestStatus, Ingested, Millis, ModelSet, NewEvent, StoreError,
    StoreResult, StoredEvent, merge_attributes,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use crate::contacts::{contact_exists, contact_id_by_email, insert_contact, merge_contact, rescore_contact, save_contact, set_email};
use crate::rows::{append_log, load_contact, load_stored_events};
use crate::{SqliteStore, db_err};

/// The contact id of an anonymous visitor.
/// Finds the contact an event is about, creating it when unknown (order: userId, then
/// email, then anonymousId as `anon:<id>`). When a known person arrives with the
/// anonymousId of an earlier visitor, the visitor's contact is merged into theirs.
/// Returns the contact id and, when a visitor was merged in, the visitor's former id.
fn resolve_contact(conn: &Connection, identity: &Identity, first_seen: Millis, now: Millis) -> StoreResult<(String, Option<String>)> {
    let id = resolve_known(conn, identity, first_seen, now)?;
    if let Some(anonymous) = &identity.anonymous_id {
        let visitor = anonymous_contact_id(anonymous);
        if visitor != id && contact_exists(conn, &visitor)? {
            merge_contact(conn, &visitor, &id, now)?;
            return Ok((id, Some(visitor)));
        }
    }
    Ok((id, None))
}

fn resolve_known(conn: &Connection, identity: &Identity, first_seen: Millis, now: Millis) -> StoreResult<String> {
    let email = identity.email.as_deref().map(normalize_email).filter(|e| !e.is_empty());
    if let Some(user_id) = &identity.user_id {
        if contact_exists(conn, user_id)? {
            return Ok(user_id.clone());
        }
        if let Some(email) = &email
            && let Some(id) = contact_id_by_email(conn, email)?
        {
            return Ok(id);
        }
        create_contact(conn, user_id.clone(), email, identity, first_seen, now)?;
        return Ok(user_id.clone());
    }
    if let Some(email) = email {
        if let Some(id) = contact_id_by_email(conn, &email)? {
            return Ok(id);
        }
        create_contact(conn, email.clone(), Some(email.clone()), identity, first_seen, now)?;
        return Ok(email);
    }
    let Some(anonymous) = &identity.anonymous_id else {
        return Err(StoreError::Invalid("an event needs userId, email or anonymousId".into()));
    };
    let id = anonymous_contact_id(anonymous);
    if !contact_exists(conn, &id)? {
        create_contact(conn, id.clone(), None, identity, first_seen, now)?;
    }
    Ok(id)
}

fn create_contact(conn: &Connection, id: String, email: Option<String>, identity: &Identity, first_seen: Millis, now: Millis) -> StoreResult<()> {
    let mut attributes = Map::new();
    if let Some(anonymous) = &identity.anonymous_id {
        attributes.insert("anonymous_id".into(), Value::String(anonymous.clone()));
    }
    let mut contact = ContactRecord {
        id,
        email: None,
        attributes,
        groups: Vec::new(),
        owner: None,
        status: None,
        created_at: first_seen.min(now),
        updated_at: now,
        last_event_at: None,
        scores: Default::default(),
        predictive: None,
    };
    if let Some(email) = email {
        set_email(conn, &mut contact, &email)?;
    }
    insert_contact(conn, &contact)?;
    append_log(conn, &contact.id, contact.created_at, "created", &json!({ "by": "event", "attributes": contact.attributes }))
}

struct Touched {
    new_events: Vec<ScoringEvent>,
    /// identify calls: (timestamp, messageId, traits)
    identifies: Vec<(Millis, String, Map<String, Value>)>,
    /// Another contact was merged in: every score is replayed.
    merged: bool,
}

/// Stores one event; returns its contact and whether it was new.
fn store_event(
    conn: &Connection,
    event: &NewEvent,
    now: Millis,
    touched: &mut HashMap<String, Touched>,
    order: &mut Vec<String>,
) -> StoreResult<IngestOutcome> {
    let existing: Option<String> = conn
        .prepare_cached("SELECT contact_id FROM message_ids WHERE message_id = ?1")
        .map_err(db_err)?
        .query_row([&event.message_id], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    if let Some(contact_id) = existing {
        return Ok(IngestOutcome { status: IngestStatus::Duplicate, contact_id });
    }
    let (contact_id, merged_from) = resolve_contact(conn, &event.identity, event.timestamp, now)?;
    conn.prepare_cached("INSERT INTO message_ids (message_id, contact_id) VALUES (?1, ?2)")
        .map_err(db_err)?
        .execute(params![event.message_id, contact_id])
        .map_err(db_err)?;
    // A visitor merged away earlier in this batch hands what it gathered to the person.
    let absorbed = merged_from.as_ref().and_then(|from| {
        order.retain(|id| id != from);
        touched.remove(from)
    });
    let entry = touched.entry(contact_id.clone()).or_insert_with(|| {
        order.push(contact_id.clone());
        Touched { new_events: Vec::new(), identifies: Vec::new(), merged: false }
    });
    entry.merged |= merged_from.is_some();
    if let Some(absorbed) = absorbed {
        // The visitor's identify calls of this batch are not logged yet, so the merge could
        // not move their messageIds: they follow here.
        for (_, message_id, _) in &absorbed.identifies {
            conn.prepare_cached("UPDATE message_ids SET contact_id = ?2 WHERE message_id = ?1")
                .map_err(db_err)?
                .execute(params![message_id, contact_id])
                .map_err(db_err)?;
        }
        entry.new_events.extend(absorbed.new_events);
        entry.identifies.extend(absorbed.identifies);
    }
    if event.kind.is_activity() {
        let properties = serde_json::to_string(&event.properties).map_err(db_err)?;
        conn.prepare_cached(
            "INSERT INTO events (contact_id, ts, message_id, kind, name, properties, context, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(db_err)?
        .execute(params![
            contact_id,
            event.timestamp,
            event.message_id,
            event.kind.as_str(),
            event.name,
            properties,
            event.context.as_ref().map(|c| c.to_string()),
            now,
        ])
        .map_err(db_err)?;
        entry.new_events.push(ScoringEvent {
            timestamp: event.timestamp,
            message_id: event.message_id.clone(),
            name: event.name.clone(),
            properties: event.properties.clone(),
        });
    } else {
        entry.identifies.push((event.timestamp, event.message_id.clone(), event.traits.clone()));
    }
    Ok(IngestOutcome { status: IngestStatus::Stored, contact_id })
}

pub(crate) fn ingest_in(conn: &Connection, events: &[NewEvent], models: &ModelSet, now: Millis, options: IngestOptions) -> StoreResult<Ingested> {
    let queue = options.fire_automations && crate::queue::automations_active(conn)?;
    let mut touched: HashMap<String, Touched> = HashMap::new();
    let mut order = Vec::new();
    let mut outcomes = Vec::with_capacity(events.len());
    let mut contacts = Vec::new();
    for event in events {
        outcomes.push(store_event(conn, event, now, &mut touched, &mut order)?);
    }
    for contact_id in order {
        let Some(mut entry) = touched.remove(&contact_id) else {
            continue;
        };
        let mut contact = load_contact(conn, &contact_id)?.ok_or_else(|| StoreError::Backend(format!("contact {contact_id} vanished")))?;
        if let Some(newest) = entry.new_events.iter().map(|e| e.timestamp).max() {
            contact.last_event_at = Some(contact.last_event_at.map_or(newest, |t| t.max(newest)));
        }
        if !entry.identifies.is_empty() {
            // Traits apply in event-time order within a batch; across batches, the later
            // arrival wins (as in a CRM). Each call is logged with the resulting attributes,
            // so the history can show the fit it caused.
            let previous_groups = contact.groups.clone();
            entry.identifies.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            for (timestamp, message_id, mut traits) in entry.identifies {
                if let Some(Value::String(email)) = traits.remove("email") {
                    let held_by_another = options.trust == IdentityTrust::Visitor
                        && contact_id_by_email(conn, &normalize_email(&email))?.is_some_and(|holder| holder != contact.id);
                    if email_change(contact.email.as_deref(), &email, held_by_another, options.trust) == EmailChange::Set {
                        set_email(conn, &mut contact, &email)?;
                    }
                }
                merge_attributes(&mut contact.attributes, &traits);
                append_log(conn, &contact.id, timestamp, "identify", &json!({ "message_id": message_id, "traits": traits, "attributes": contact.attributes }))?;
            }
            contact.updated_at = now;
            save_contact(conn, &contact, &previous_groups)?;
        }
        if entry.merged {
            // Version 0 is never live: every row is replayed with the merged events, and
            // rows of models that no longer apply are deleted.
            for row in contact.scores.values_mut() {
                row.version = 0;
            }
        }
        let before = if queue { Some(crate::queue::cards_of(&contact.scores)) } else { None };
        rescore_contact(conn, &mut contact, models, &mut entry.new_events, now)?;
        if let Some(before) = before {
            crate::queue::enqueue(conn, &contact.id, &before, &entry.new_events, now)?;
        }
        contacts.push(contact);
    }
    Ok(Ingested { outcomes, contacts })
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn ingest_events(&self, events: Vec<NewEvent>, models: &ModelSet, now: Millis, options: IngestOptions) -> StoreResult<Ingested> {
        let models = models.clone();
        self.write(move |conn| ingest_in(conn, &events, &models, now, options)).await
    }

    async fn contact_events(&self, contact_id: &str) -> StoreResult<Vec<StoredEvent>> {
        let id = contact_id.to_string();
        self.read(move |conn| load_stored_events(conn, &id)).await
    }

    async fn scoring_events_of(&self, contact_ids: &[String]) -> StoreResult<HashMap<String, Vec<ScoringEvent>>> {
        let ids = contact_ids.to_vec();
        self.read(move |conn| {
            // One index range per contact on the clustered events table: cheap in-process.
            let mut out = HashMap::with_capacity(ids.len());
            for id in ids {
                let events = crate::rows::load_scoring_events(conn, &id)?;
                if !events.is_empty() {
                    out.insert(id, events);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn count_events(&self) -> StoreResult<u64> {
        self.read(|conn| conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(db_err)).await
    }
}
