//! EventStore: ingest (store + score in one transaction) and event reads.
//!
//! An ingest call is one transaction of a handful of statements, whatever its size: one
//! query finds the messageIds already stored, one locks every existing contact the batch
//! names (in id order, so concurrent batches do not deadlock on each other), multi-row
//! inserts store the messageIds and events, and the scores of all touched contacts are read
//! and written in one statement each. Only new contacts, merges and identify calls cost
//! statements of their own.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use leadscore_store::records::identity::{EmailChange, anonymous_contact_id, email_change, normalize_email};
use leadscore_store::scoring::ScoringEvent;
use leadscore_store::{
    ContactRecord, EventStore, Identity, IdentityTrust, IngestOptions, IngestOutcome, IngestStatus, Ingested, Millis, ModelSet, NewEvent, StoreError,
    StoreResult, StoredEvent, merge_attributes,
};
use serde_json::{Map, Value, json};

use crate::contacts::{Rescore, count, insert_contact, lock_contact, merge_contact, rescore_contacts, save_contact, set_email};
use crate::queue::{QueueRows, automations_active, cards_of};
use crate::rows::{CONTACT_COLUMNS, append_log, load_contact, load_contacts_by_query, load_stored_events};
use crate::{Db, PgResult, PostgresStore, RetryOn, write_tx};

/// The contact id of an anonymous visitor.
/// What one ingest call did to one contact.
#[derive(Default)]
struct Touched {
    new_events: Vec<ScoringEvent>,
    /// identify calls: (timestamp, messageId, traits)
    identifies: Vec<(Millis, String, Map<String, Value>)>,
    /// Another contact was merged in: every score is replayed.
    merged: bool,
}

/// An event whose contact is resolved, waiting to be written with the others.
struct Pending<'e> {
    outcome: usize,
    contact_id: String,
    event: &'e NewEvent,
}

/// The state of one ingest transaction.
#[derive(Default)]
struct Batch<'e> {
    /// Contacts this transaction holds the lock of (found or created): they exist.
    known: HashSet<String>,
    /// Emails of the known contacts.
    by_email: HashMap<String, String>,
    touched: HashMap<String, Touched>,
    /// Touched contacts in first-touch order (the order they are scored in).
    order: Vec<String>,
    pending: Vec<Pending<'e>>,
    /// messageId → contact of the events stored by this batch (duplicates inside it).
    seen: HashMap<String, String>,
    outcomes: Vec<IngestOutcome>,
}

impl Batch<'_> {
    fn touch(&mut self, contact_id: &str) -> &mut Touched {
        if !self.touched.contains_key(contact_id) {
            self.order.push(contact_id.to_string());
        }
        self.touched.entry(contact_id.to_string()).or_default()
    }
}

/// Writes the pending messageIds and events (two statements). A messageId another
/// process stored since this batch looked (it commits first) turns into a duplicate.
async fn flush<'e>(db: &dyn Db, batch: &mut Batch<'e>, now: Millis) -> PgResult<()> {
    if batch.pending.is_empty() {
        return Ok(());
    }
    let pending = std::mem::take(&mut batch.pending);
    let message_ids: Vec<&str> = pending.iter().map(|p| p.event.message_id.as_str()).collect();
    let contact_ids: Vec<&str> = pending.iter().map(|p| p.contact_id.as_str()).collect();
    let inserted: HashSet<String> = db
        .rows(
            "INSERT INTO message_ids (message_id, contact_id) SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
            &[&message_ids, &contact_ids],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    if inserted.len() < pending.len() {
        let lost: Vec<&str> = message_ids.iter().copied().filter(|m| !inserted.contains(*m)).collect();
        let owners: HashMap<String, String> = db
            .rows("SELECT message_id, contact_id FROM message_ids WHERE message_id = ANY($1)", &[&lost])
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<PgResult<_>>()?;
        for p in pending.iter().filter(|p| !inserted.contains(&p.event.message_id)) {
            let owner = owners.get(&p.event.message_id).cloned().unwrap_or_else(|| p.contact_id.clone());
            batch.seen.insert(p.event.message_id.clone(), owner.clone());
            batch.outcomes[p.outcome] = IngestOutcome { status: IngestStatus::Duplicate, contact_id: owner };
        }
    }
    let mut columns = EventColumns::default();
    for p in pending.iter().filter(|p| inserted.contains(&p.event.message_id)) {
        let event = p.event;
        if event.kind.is_activity() {
            columns.push(&p.contact_id, event)?;
            batch.touch(&p.contact_id).new_events.push(ScoringEvent {
                timestamp: event.timestamp,
                message_id: event.message_id.clone(),
                name: event.name.clone(),
                properties: event.properties.clone(),
            });
        } else {
            batch.touch(&p.contact_id).identifies.push((event.timestamp, event.message_id.clone(), event.traits.clone()));
        }
    }
    if !columns.contact_ids.is_empty() {
        db.exec(
            "INSERT INTO events (contact_id, ts, message_id, kind, name, properties, context, received_at)
             SELECT u.*, $8 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS u",
            &[&columns.contact_ids, &columns.timestamps, &columns.message_ids, &columns.kinds, &columns.names, &columns.properties, &columns.contexts, &now],
        )
        .await?;
    }
    Ok(())
}

#[derive(Default)]
struct EventColumns {
    contact_ids: Vec<String>,
    timestamps: Vec<Millis>,
    message_ids: Vec<String>,
    kinds: Vec<&'static str>,
    names: Vec<String>,
    properties: Vec<String>,
    contexts: Vec<Option<String>>,
}

impl EventColumns {
    fn push(&mut self, contact_id: &str, event: &NewEvent) -> PgResult<()> {
        self.contact_ids.push(contact_id.to_string());
        self.timestamps.push(event.timestamp);
        self.message_ids.push(event.message_id.clone());
        self.kinds.push(event.kind.as_str());
        self.names.push(event.name.clone());
        self.properties.push(serde_json::to_string(&event.properties).map_err(crate::rows::corrupt)?);
        self.contexts.push(event.context.as_ref().map(|c| c.to_string()));
        Ok(())
    }
}

/// Locks every existing contact the batch may resolve to, in id order (concurrent batches
/// lock in the same order, so they queue instead of deadlocking), and remembers them.
async fn lock_named_contacts(db: &dyn Db, batch: &mut Batch<'_>, events: &[&NewEvent]) -> PgResult<()> {
    let mut ids: Vec<String> = Vec::new();
    let mut emails: Vec<String> = Vec::new();
    for event in events {
        let identity = &event.identity;
        ids.extend(identity.user_id.iter().cloned());
        ids.extend(identity.anonymous_id.as_deref().map(anonymous_contact_id));
        if let Some(email) = identity.email.as_deref().map(normalize_email).filter(|e| !e.is_empty()) {
            // An email-only caller gets a contact whose id is the email.
            ids.push(email.clone());
            emails.push(email);
        }
    }
    ids.sort();
    ids.dedup();
    emails.sort();
    emails.dedup();
    let rows = db
        .rows(
            // A semi-join on the id index rather than `id = ANY($1) OR email = ANY($2)`:
            // the OR form can be planned as a sequential scan testing every row against
            // the whole array (seen at 50 ms for 1,000 ids on a small, unanalysed table).
            "SELECT id, email FROM contacts WHERE id IN (
                 SELECT unnest($1::text[]) UNION SELECT id FROM contacts WHERE email IN (SELECT unnest($2::text[])))
             ORDER BY id FOR UPDATE",
            &[&ids, &emails],
        )
        .await?;
    for row in &rows {
        let id: String = row.try_get(0)?;
        let email: Option<String> = row.try_get(1)?;
        if let Some(email) = email {
            batch.by_email.insert(email, id.clone());
        }
        batch.known.insert(id);
    }
    Ok(())
}

/// Finds the contact an event is about, creating it when unknown (order: userId, then
/// email, then anonymousId as `anon:<id>`). When a known person arrives with the
/// anonymousId of an earlier visitor, the visitor's contact is merged into theirs.
/// Returns the contact id and whether a merge happened (its scores must be replayed).
async fn resolve_contact(db: &dyn Db, batch: &mut Batch<'_>, identity: &Identity, first_seen: Millis, now: Millis) -> PgResult<(String, bool)> {
    let id = resolve_known(db, batch, identity, first_seen, now).await?;
    if let Some(anonymous) = &identity.anonymous_id {
        let visitor = anonymous_contact_id(anonymous);
        // Every existing visitor contact the batch names was locked up front, so `known`
        // tells whether it exists.
        if visitor != id && batch.known.contains(&visitor) {
            // The visitor's pending events must be stored before they are moved.
            flush(db, batch, now).await?;
            merge_contact(db, &visitor, &id, now).await?;
            batch.known.remove(&visitor);
            batch.by_email.retain(|_, owner| *owner != visitor);
            if let Some(email) = load_contact(db, &id, false).await?.and_then(|c| c.email) {
                batch.by_email.insert(email, id.clone());
            }
            for owner in batch.seen.values_mut().filter(|owner| **owner == visitor) {
                owner.clone_from(&id);
            }
            // What this batch did to the visitor now belongs to the person.
            if let Some(moved) = batch.touched.remove(&visitor) {
                // Their identify calls' messageIds point at the visitor until the identify
                // is logged (after this loop), so the merge above could not move them.
                let identify_ids: Vec<&str> = moved.identifies.iter().map(|(_, m, _)| m.as_str()).collect();
                if !identify_ids.is_empty() {
                    db.exec("UPDATE message_ids SET contact_id = $2 WHERE message_id = ANY($1)", &[&identify_ids, &id]).await?;
                }
                let target = batch.touch(&id);
                target.new_events.extend(moved.new_events);
                target.identifies.extend(moved.identifies);
            }
            batch.order.retain(|c| *c != visitor);
            batch.touch(&id).merged = true;
            return Ok((id, true));
        }
    }
    Ok((id, false))
}

async fn resolve_known(db: &dyn Db, batch: &mut Batch<'_>, identity: &Identity, first_seen: Millis, now: Millis) -> PgResult<String> {
    let email = identity.email.as_deref().map(normalize_email).filter(|e| !e.is_empty());
    if let Some(user_id) = &identity.user_id {
        if batch.known.contains(user_id) {
            return Ok(user_id.clone());
        }
        if let Some(id) = email.as_ref().and_then(|e| batch.by_email.get(e)) {
            return Ok(id.clone());
        }
        ensure_contact(db, batch, user_id, email, identity, first_seen, now).await?;
        return Ok(user_id.clone());
    }
    if let Some(email) = email {
        if let Some(id) = batch.by_email.get(&email) {
            return Ok(id.clone());
        }
        ensure_contact(db, batch, &email, Some(email.clone()), identity, first_seen, now).await?;
        return Ok(email);
    }
    let Some(anonymous) = &identity.anonymous_id else {
        return Err(StoreError::Invalid("an event needs userId, email or anonymousId".into()).into());
    };
    let id = anonymous_contact_id(anonymous);
    ensure_contact(db, batch, &id, None, identity, first_seen, now).await?;
    Ok(id)
}

/// Makes sure contact `id` exists and is locked by this transaction: creates it (logged as
/// created by an event) unless this batch already holds it, or another process created it
/// meanwhile, in which case it is locked as it is.
async fn ensure_contact(
    db: &dyn Db,
    batch: &mut Batch<'_>,
    id: &str,
    email: Option<String>,
    identity: &Identity,
    first_seen: Millis,
    now: Millis,
) -> PgResult<()> {
    if batch.known.contains(id) {
        return Ok(());
    }
    let mut attributes = Map::new();
    if let Some(anonymous) = &identity.anonymous_id {
        attributes.insert("anonymous_id".into(), Value::String(anonymous.clone()));
    }
    let mut contact = ContactRecord {
        id: id.to_string(),
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
        set_email(db, &mut contact, &email).await?;
    }
    if insert_contact(db, &contact).await? {
        append_log(db, &contact.id, contact.created_at, "created", &json!({ "by": "event", "attributes": contact.attributes })).await?;
        if let Some(email) = &contact.email {
            batch.by_email.insert(email.clone(), contact.id.clone());
        }
    } else if !lock_contact(db, id).await? {
        // Created and erased again by others in the meantime: start this batch over.
        return Err(crate::PgError::Retry);
    }
    batch.known.insert(id.to_string());
    Ok(())
}

async fn ingest_in(store: &PostgresStore, db: &dyn Db, events: &[NewEvent], given: &ModelSet, now: Millis, options: IngestOptions) -> PgResult<Ingested> {
    store.lock_model_heads_shared(db).await?;
    let models = store.live_models_in(db, given).await?;
    let queue = options.fire_automations && automations_active(db).await?;
    let mut batch = Batch { outcomes: Vec::with_capacity(events.len()), ..Batch::default() };

    let message_ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
    let stored: HashMap<String, String> = db
        .rows("SELECT message_id, contact_id FROM message_ids WHERE message_id = ANY($1)", &[&message_ids])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<PgResult<_>>()?;
    let fresh: Vec<&NewEvent> = events.iter().filter(|e| !stored.contains_key(&e.message_id)).collect();
    lock_named_contacts(db, &mut batch, &fresh).await?;

    for event in events {
        let index = batch.outcomes.len();
        let earlier = stored.get(&event.message_id).or_else(|| batch.seen.get(&event.message_id));
        if let Some(contact_id) = earlier {
            let outcome = IngestOutcome { status: IngestStatus::Duplicate, contact_id: contact_id.clone() };
            batch.outcomes.push(outcome);
            continue;
        }
        let (contact_id, _merged) = resolve_contact(db, &mut batch, &event.identity, event.timestamp, now).await?;
        batch.seen.insert(event.message_id.clone(), contact_id.clone());
        batch.touch(&contact_id);
        batch.pending.push(Pending { outcome: index, contact_id: contact_id.clone(), event });
        batch.outcomes.push(IngestOutcome { status: IngestStatus::Stored, contact_id });
    }
    flush(db, &mut batch, now).await?;

    let ids: Vec<String> = batch.order.clone();
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ANY($1)");
    let mut loaded: HashMap<String, ContactRecord> = load_contacts_by_query(db, &sql, &[&ids]).await?.into_iter().map(|c| (c.id.clone(), c)).collect();
    let mut items = Vec::with_capacity(ids.len());
    for contact_id in ids {
        let (Some(mut entry), Some(mut contact)) = (batch.touched.remove(&contact_id), loaded.remove(&contact_id)) else {
            return Err(StoreError::Backend(format!("contact {contact_id} vanished during ingest")).into());
        };
        if !entry.identifies.is_empty() {
            // Traits apply in event-time order within a batch; across batches, the later
            // arrival wins (as in a CRM). Each call is logged with the resulting attributes,
            // so the history can show the fit it caused.
            let previous_groups = contact.groups.clone();
            entry.identifies.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            for (timestamp, message_id, mut traits) in entry.identifies {
                if let Some(Value::String(email)) = traits.remove("email") {
                    let held_by_another = options.trust == IdentityTrust::Visitor && {
                        let holder = db.row_opt("SELECT id FROM contacts WHERE email = $1", &[&normalize_email(&email)]).await?;
                        holder.map(|row| row.try_get::<_, String>(0)).transpose()?.is_some_and(|holder| holder != contact.id)
                    };
                    if email_change(contact.email.as_deref(), &email, held_by_another, options.trust) == EmailChange::Set {
                        set_email(db, &mut contact, &email).await?;
                    }
                }
                merge_attributes(&mut contact.attributes, &traits);
                append_log(db, &contact.id, timestamp, "identify", &json!({ "message_id": message_id, "traits": traits, "attributes": contact.attributes }))
                    .await?;
            }
            contact.updated_at = now;
            save_contact(db, &contact, &previous_groups).await?;
        }
        if entry.merged {
            // Version 0 is never live: every row is replayed from the merged events, and a
            // row of a model that no longer applies is still found and deleted.
            for row in contact.scores.values_mut() {
                row.version = 0;
            }
        }
        items.push(Rescore { contact, new_events: entry.new_events });
    }
    let before: Vec<_> = if queue { items.iter().map(|item| cards_of(&item.contact.scores)).collect() } else { Vec::new() };
    rescore_contacts(db, &models, &mut items, now).await?;
    if queue {
        let mut entries = QueueRows::default();
        for (item, before) in items.iter().zip(&before) {
            entries.push(&item.contact.id, before, &item.new_events)?;
        }
        entries.insert(db, now).await?;
    }
    Ok(Ingested { outcomes: batch.outcomes, contacts: items.into_iter().map(|item| item.contact).collect() })
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn ingest_events(&self, events: Vec<NewEvent>, models: &ModelSet, now: Millis, options: IngestOptions) -> StoreResult<Ingested> {
        if events.is_empty() {
            return Ok(Ingested::default());
        }
        write_tx!(self, RetryOn::ContentionAndUniqueness, |tx| ingest_in(self, &tx, &events, models, now, options).await)
    }

    async fn contact_events(&self, contact_id: &str) -> StoreResult<Vec<StoredEvent>> {
        let client = self.client().await?;
        Ok(load_stored_events(&*client, contact_id).await?)
    }

    async fn count_events(&self) -> StoreResult<u64> {
        count(self, "SELECT COUNT(*) FROM events").await
    }

    async fn scoring_events_of(&self, contact_ids: &[String]) -> StoreResult<std::collections::HashMap<String, Vec<ScoringEvent>>> {
        let client = self.client().await?;
        Ok(crate::rows::load_scoring_events(&*client, contact_ids).await?)
    }
}
