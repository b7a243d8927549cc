//! ContactStore: contacts, their attributes, groups, the lead list and bulk updates.

use async_trait::async_trait;
use leadscore_store::records::apply_upsert;
use leadscore_store::records::identity::normalize_email;
use leadscore_store::scoring::{ScoringEvent, update_score};
use leadscore_store::{
    BulkChunk, BulkUpdate, CLOSED_STATUSES, ContactPatch, ContactRecord, ContactStore, ContactUpsert, DEFAULT_STATUS, ErasureRecord, LeadQuery, LogEntry,
    Millis, ModelSet, SEARCHED_ATTRIBUTES, ScannedScore, SortKey, StoreError, StoreResult, like_anywhere,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::rows::{CONTACT_COLUMNS, append_log, delete_score, load_contact, load_contacts_by_query, load_scoring_events, save_score};
use crate::{SqliteStore, db_err};

pub(crate) fn contact_id_by_email(conn: &Connection, email: &str) -> StoreResult<Option<String>> {
    conn.prepare_cached("SELECT id FROM contacts WHERE email = ?1").map_err(db_err)?.query_row([email], |r| r.get(0)).optional().map_err(db_err)
}

pub(crate) fn contact_exists(conn: &Connection, id: &str) -> StoreResult<bool> {
    Ok(conn.prepare_cached("SELECT 1 FROM contacts WHERE id = ?1").map_err(db_err)?.query_row([id], |_| Ok(())).optional().map_err(db_err)?.is_some())
}

/// Inserts a new contact row (no scores yet).
pub(crate) fn insert_contact(conn: &Connection, contact: &ContactRecord) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO contacts (id, email, attributes, groups, owner, status, created_at, updated_at, account_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(db_err)?
    .execute(params![
        contact.id,
        contact.email,
        Value::Object(contact.attributes.clone()).to_string(),
        json!(contact.groups).to_string(),
        contact.owner,
        contact.status,
        contact.created_at,
        contact.updated_at,
        leadscore_core::accounts::account_key(&contact.attributes, contact.email.as_deref()),
    ])
    .map_err(db_err)?;
    for group in &contact.groups {
        add_group_row(conn, &contact.id, group)?;
    }
    Ok(())
}

fn add_group_row(conn: &Connection, id: &str, group: &str) -> StoreResult<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO contact_groups (grp, contact_id) VALUES (?1, ?2)")
        .map_err(db_err)?
        .execute(params![group, id])
        .map_err(db_err)?;
    Ok(())
}

/// Writes every column of an existing contact (not its scores).
pub(crate) fn save_contact(conn: &Connection, contact: &ContactRecord, previous_groups: &[String]) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE contacts SET email = ?2, attributes = ?3, groups = ?4, owner = ?5, status = ?6, created_at = ?7,
           updated_at = ?8, account_id = ?9 WHERE id = ?1",
    )
    .map_err(db_err)?
    .execute(params![
        contact.id,
        contact.email,
        Value::Object(contact.attributes.clone()).to_string(),
        json!(contact.groups).to_string(),
        contact.owner,
        contact.status,
        contact.created_at,
        contact.updated_at,
        leadscore_core::accounts::account_key(&contact.attributes, contact.email.as_deref()),
    ])
    .map_err(db_err)?;
    if previous_groups != contact.groups.as_slice() {
        for group in previous_groups.iter().filter(|g| !contact.groups.contains(g)) {
            conn.prepare_cached("DELETE FROM contact_groups WHERE grp = ?1 AND contact_id = ?2")
                .map_err(db_err)?
                .execute(params![group, contact.id])
                .map_err(db_err)?;
        }
        for group in contact.groups.iter().filter(|g| !previous_groups.contains(g)) {
            add_group_row(conn, &contact.id, group)?;
        }
    }
    Ok(())
}

/// Sets the email column (and the `email` attribute), refusing one another contact has.
pub(crate) fn set_email(conn: &Connection, contact: &mut ContactRecord, email: &str) -> StoreResult<()> {
    let email = normalize_email(email);
    if email.is_empty() || contact.email.as_deref() == Some(email.as_str()) {
        return Ok(());
    }
    if let Some(other) = contact_id_by_email(conn, &email)?
        && other != contact.id
    {
        return Err(StoreError::Conflict(format!("email {email} already belongs to contact {other}")));
    }
    contact.attributes.insert("email".into(), Value::String(email.clone()));
    contact.email = Some(email);
    Ok(())
}

/// [`ContactStore::scan_scores`]: a range of the `scores` primary key (model, contact_id),
/// joined to the contact only when an attribute is asked for, the state only when asked.
/// The attribute's value is picked out of the attributes text with the other values
/// skipped unparsed ([`json_value_of`]; faster than SQLite's `->`, which converts the
/// whole text to JSONB first, and the same decoding as the full read, repeated keys too).
fn scan_scores(conn: &Connection, model: &str, with_state: bool, attribute: Option<&str>, after: &str, limit: usize) -> StoreResult<Vec<ScannedScore>> {
    let state = if with_state { "s.state" } else { "NULL" };
    // CROSS JOIN keeps `scores` the outer loop (its key order is the order asked for).
    let (attributes, join) = if attribute.is_some() { ("c.attributes", " CROSS JOIN contacts c ON c.id = s.contact_id") } else { ("NULL", "") };
    let sql = format!(
        "SELECT s.contact_id, s.version, s.fit, s.activity, s.total, s.band, s.flames, s.grade, s.quadrant, s.as_of, {state}, {attributes}
         FROM scores s{join} WHERE s.model = ?1 AND s.contact_id > ?2 ORDER BY s.contact_id LIMIT ?3"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let mut rows = stmt.query(params![model, after, limit]).map_err(db_err)?;
    let mut scanned = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        let contact_id: String = row.get(0).map_err(db_err)?;
        let mut version: u32 = row.get(1).map_err(db_err)?;
        // JSON is decoded from the bytes: only the strings that are read get checked for
        // UTF-8, not every byte of the text first.
        let state = match row.get_ref(10).map_err(db_err)?.as_bytes_or_null().map_err(db_err)? {
            None => None,
            // As in the full reads: a state that does not parse is not trusted; version 0
            // is never live, so the row does not count until it is replayed.
            Some(text) => match serde_json::from_slice(text) {
                Ok(state) => Some(state),
                Err(err) => {
                    tracing::warn!(model, contact = contact_id, error = %err, "unreadable score state; the contact will be replayed");
                    version = 0;
                    None
                }
            },
        };
        let value = match (attribute, row.get_ref(11).map_err(db_err)?.as_bytes_or_null().map_err(db_err)?) {
            (Some(key), Some(text)) => json_value_of(text, key).map_err(db_err)?,
            _ => None,
        };
        scanned.push(ScannedScore {
            contact_id,
            version,
            card: crate::rows::card_from_row(row, 2).map_err(db_err)?,
            as_of: row.get(9).map_err(db_err)?,
            state,
            attribute: value,
        });
    }
    Ok(scanned)
}

/// The value of the top-level `key` of a JSON object, the other values skipped unparsed;
/// the last one when the key repeats, as a full decode into a map keeps. None when absent.
fn json_value_of(text: &[u8], key: &str) -> serde_json::Result<Option<Value>> {
    use serde::de::{DeserializeSeed, Deserializer, Error, IgnoredAny, MapAccess, Visitor};
    struct IsKey<'k>(&'k str);
    impl<'de> DeserializeSeed<'de> for IsKey<'_> {
        type Value = bool;
        // As bytes (unescaped): keys are compared, not checked for UTF-8 one by one.
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
            deserializer.deserialize_bytes(self)
        }
    }
    impl<'de> Visitor<'de> for IsKey<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a key")
        }
        fn visit_bytes<E: Error>(self, key: &[u8]) -> Result<bool, E> {
            Ok(key == self.0.as_bytes())
        }
        fn visit_str<E: Error>(self, key: &str) -> Result<bool, E> {
            Ok(key == self.0)
        }
    }
    struct Find<'k>(&'k str);
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
            let mut found = None;
            while let Some(is_key) = map.next_key_seed(IsKey(self.0))? {
                if is_key {
                    found = Some(map.next_value::<Value>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value = deserializer.deserialize_map(Find(key))?;
    deserializer.end()?;
    Ok(value)
}

/// Brings every model's score of a contact up to date after its attributes changed and/or
/// `new_events` (its newly stored activity events, any order) arrived. Models whose
/// segment no longer matches lose their score; newly matching ones replay all events.
pub(crate) fn rescore_contact(
    conn: &Connection,
    contact: &mut ContactRecord,
    models: &ModelSet,
    new_events: &mut [ScoringEvent],
    now: Millis,
) -> StoreResult<()> {
    new_events.sort_by(|a, b| (a.timestamp, &a.message_id).cmp(&(b.timestamp, &b.message_id)));
    let models = crate::live::live_models_in(conn, models)?;
    let mut all_events: Option<Vec<ScoringEvent>> = None;
    let mut scores = std::mem::take(&mut contact.scores);
    // Scores of models that are no longer live go.
    let stale: Vec<String> = scores.keys().filter(|name| !models.iter().any(|m| &m.name == *name)).cloned().collect();
    for name in stale {
        scores.remove(&name);
        delete_score(conn, &name, &contact.id)?;
    }
    for published in models.iter() {
        if !published.model.applies_to(&contact.attributes) {
            if scores.remove(&published.name).is_some() {
                delete_score(conn, &published.name, &contact.id)?;
            }
            continue;
        }
        let prior = scores.remove(&published.name);
        let row = update_score(
            published,
            prior,
            &contact.attributes,
            new_events,
            || -> StoreResult<Vec<ScoringEvent>> {
                if all_events.is_none() {
                    all_events = Some(load_scoring_events(conn, &contact.id)?);
                }
                Ok(all_events.clone().unwrap_or_default())
            },
            now,
        )?;
        save_score(conn, &published.name, &contact.id, &row)?;
        scores.insert(published.name.clone(), row);
    }
    contact.scores = scores;
    Ok(())
}

fn new_contact_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let counter = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("c_{:x}{:04x}", nanos, counter & 0xffff)
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn upsert_in(conn: &Connection, upsert: ContactUpsert, models: &ModelSet, now: Millis) -> StoreResult<(ContactRecord, bool)> {
    let email = upsert.email.as_deref().map(normalize_email).filter(|e| !e.is_empty());
    let existing_id = match (&upsert.id, &email) {
        (Some(id), _) => contact_exists(conn, id)?.then(|| id.clone()),
        (None, Some(email)) => contact_id_by_email(conn, email)?,
        (None, None) => None,
    };
    let created = existing_id.is_none();
    let mut contact = match existing_id {
        Some(id) => {
            let mut contact = load_contact(conn, &id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let previous_groups = contact.groups.clone();
            let previous_email = contact.email.clone();
            // A repeated upsert (an import run twice) changes nothing and logs nothing.
            let mut changed = apply_upsert(&mut contact, &upsert);
            if let Some(email) = &email {
                set_email(conn, &mut contact, email)?;
            }
            changed |= contact.email != previous_email;
            if changed {
                contact.updated_at = now;
                save_contact(conn, &contact, &previous_groups)?;
                append_log(conn, &contact.id, now, "attributes", &json!({ "set": upsert.attributes, "attributes": contact.attributes }))?;
            }
            contact
        }
        None => {
            let id = upsert.id.clone().or_else(|| email.clone()).unwrap_or_else(new_contact_id);
            let mut contact = leadscore_store::records::new_contact(id, &upsert, now);
            if let Some(email) = &email {
                set_email(conn, &mut contact, email)?;
            }
            insert_contact(conn, &contact)?;
            append_log(conn, &contact.id, contact.created_at, "created", &json!({ "attributes": contact.attributes }))?;
            contact
        }
    };
    let before = crate::queue::cards_of(&contact.scores);
    rescore_contact(conn, &mut contact, models, &mut [], now)?;
    if !upsert.historical && crate::queue::automations_active(conn)? {
        crate::queue::enqueue(conn, &contact.id, &before, &[], now)?;
    }
    Ok((contact, created))
}

pub(crate) fn patch_in(
    conn: &Connection,
    contact: &mut ContactRecord,
    patch: &ContactPatch,
    models: &ModelSet,
    now: Millis,
    log_kind: &str,
) -> StoreResult<()> {
    let previous_groups = contact.groups.clone();
    let mut attributes = patch.attributes.clone();
    if let Some(email) = attributes.remove("email") {
        match email {
            Value::String(e) => set_email(conn, contact, &e)?,
            Value::Null => {
                contact.email = None;
                contact.attributes.remove("email");
            }
            other => {
                return Err(StoreError::Invalid(format!("email must be a string, got {other}")));
            }
        }
    }
    leadscore_store::records::apply_patch(contact, patch, &attributes, now);
    save_contact(conn, contact, &previous_groups)?;
    append_log(conn, &contact.id, now, log_kind, &leadscore_store::records::patch_log(contact, patch))?;
    let before = crate::queue::cards_of(&contact.scores);
    rescore_contact(conn, contact, models, &mut [], now)?;
    if crate::queue::automations_active(conn)? {
        crate::queue::enqueue(conn, &contact.id, &before, &[], now)?;
    }
    Ok(())
}

/// Moves everything of contact `from` into `into` and deletes `from`. Attributes of
/// `into` win; groups are united; the earlier creation time is kept.
pub(crate) fn merge_contact(conn: &Connection, from: &str, into: &str, now: Millis) -> StoreResult<()> {
    let source = load_contact(conn, from)?.ok_or_else(|| StoreError::NotFound(format!("contact {from}")))?;
    let mut target = load_contact(conn, into)?.ok_or_else(|| StoreError::NotFound(format!("contact {into}")))?;
    let previous_groups = target.groups.clone();
    leadscore_store::records::absorb_contact(&mut target, &source, now);
    for sql in [
        "UPDATE message_ids SET contact_id = ?2 WHERE message_id IN (SELECT message_id FROM events WHERE contact_id = ?1)",
        "UPDATE message_ids SET contact_id = ?2 WHERE message_id IN
           (SELECT json_extract(data, '$.message_id') FROM contact_log WHERE contact_id = ?1 AND kind = 'identify')",
    ] {
        conn.prepare_cached(sql).map_err(db_err)?.execute(params![from, into]).map_err(db_err)?;
    }
    for sql in leadscore_store::records::owned::merge_statements(|n| format!("?{n}")) {
        let mut statement = conn.prepare_cached(&sql).map_err(db_err)?;
        if sql.contains("?2") { statement.execute(params![from, into]) } else { statement.execute([from]) }.map_err(db_err)?;
    }
    conn.prepare_cached("DELETE FROM contacts WHERE id = ?1").map_err(db_err)?.execute([from]).map_err(db_err)?;
    if source.email.is_some()
        && target.email.is_none()
        && let Some(email) = &source.email
    {
        set_email(conn, &mut target, email)?;
    }
    save_contact(conn, &target, &previous_groups)?;
    append_log(conn, into, now, "merged", &json!({ "from": from, "attributes": target.attributes }))
}

pub(crate) fn erase_contact(conn: &Connection, id: &str, erasure: &ErasureRecord) -> StoreResult<bool> {
    if load_contact(conn, id)?.is_none() {
        return Ok(false);
    }
    // Freed space is overwritten with zeros while the contact's rows go, not only where
    // a page is written anyway (FAST, the setting of every other write).
    conn.execute_batch("PRAGMA secure_delete = ON").map_err(db_err)?;
    let erased = erase_rows(conn, id, erasure);
    conn.execute_batch("PRAGMA secure_delete = FAST").map_err(db_err)?;
    erased
}

fn erase_rows(conn: &Connection, id: &str, erasure: &ErasureRecord) -> StoreResult<bool> {
    for sql in [
        "DELETE FROM message_ids WHERE message_id IN (SELECT message_id FROM events WHERE contact_id = ?1)",
        "DELETE FROM message_ids WHERE message_id IN
           (SELECT json_extract(data, '$.message_id') FROM contact_log WHERE contact_id = ?1 AND kind = 'identify')",
    ] {
        conn.prepare_cached(sql).map_err(db_err)?.execute([id]).map_err(db_err)?;
    }
    // Runs, deliveries and outcomes carry the contact's data: erasure takes them too.
    for sql in leadscore_store::records::owned::erase_statements(|n| format!("?{n}")) {
        conn.prepare_cached(&sql).map_err(db_err)?.execute([id]).map_err(db_err)?;
    }
    scrub_batched_deliveries(conn, id)?;
    let deleted = conn.prepare_cached("DELETE FROM contacts WHERE id = ?1").map_err(db_err)?.execute([id]).map_err(db_err)?;
    conn.prepare_cached("INSERT INTO erasures (at, erased_by) VALUES (?1, ?2)").map_err(db_err)?.execute(params![erasure.at, erasure.by]).map_err(db_err)?;
    Ok(deleted > 0)
}

/// Takes the contact out of the batched `score.changed` deliveries that carry it (they
/// name no single contact, so the per-contact erasure does not find them).
fn scrub_batched_deliveries(conn: &Connection, id: &str) -> StoreResult<()> {
    let needle = serde_json::to_string(id).map_err(db_err)?;
    let carrying: Vec<(String, String)> = conn
        .prepare_cached("SELECT id, body FROM deliveries WHERE contact_id IS NULL AND event_type = 'score.changed' AND instr(body, ?1) > 0")
        .map_err(db_err)?
        .query_map([&needle], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_err)?;
    for (delivery, body) in carrying {
        match leadscore_store::runner::scrub_contact(&body, id) {
            leadscore_store::runner::Scrubbed::Untouched => {}
            leadscore_store::runner::Scrubbed::Rewritten(body) => {
                conn.prepare_cached("UPDATE deliveries SET body = ?2 WHERE id = ?1").map_err(db_err)?.execute(params![delivery, body]).map_err(db_err)?;
            }
            leadscore_store::runner::Scrubbed::Empty => {
                conn.prepare_cached("DELETE FROM delivery_attempts WHERE delivery_id = ?1").map_err(db_err)?.execute([&delivery]).map_err(db_err)?;
                conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1").map_err(db_err)?.execute([&delivery]).map_err(db_err)?;
            }
        }
    }
    Ok(())
}

/// Up to this many matches, a search starts from the trigram index; beyond, from the list.
const FEW_SEARCH_MATCHES: i64 = 2000;

/// A search text as one FTS5 string: its trigrams, in order.
fn search_phrase(text: &str) -> String {
    format!("\"{}\"", text.to_ascii_lowercase().replace('"', "\"\""))
}

#[async_trait]
impl ContactStore for SqliteStore {
    async fn upsert_contact(&self, upsert: ContactUpsert, models: &ModelSet, now: Millis) -> StoreResult<(ContactRecord, bool)> {
        let models = models.clone();
        self.write(move |conn| upsert_in(conn, upsert, &models, now)).await
    }

    async fn patch_contact(&self, id: &str, patch: ContactPatch, models: &ModelSet, now: Millis) -> StoreResult<ContactRecord> {
        let models = models.clone();
        let id = id.to_string();
        self.write(move |conn| {
            let mut contact = load_contact(conn, &id)?.ok_or_else(|| StoreError::NotFound(format!("contact {id}")))?;
            patch_in(conn, &mut contact, &patch, &models, now, "attributes")?;
            Ok(contact)
        })
        .await
    }

    async fn get_contact(&self, id: &str) -> StoreResult<Option<ContactRecord>> {
        let id = id.to_string();
        self.read(move |conn| load_contact(conn, &id)).await
    }

    async fn get_contacts(&self, ids: &[String]) -> StoreResult<Vec<ContactRecord>> {
        let ids = ids.to_vec();
        self.read(move |conn| {
            let mut contacts = Vec::with_capacity(ids.len());
            for id in &ids {
                contacts.extend(load_contact(conn, id)?);
            }
            Ok(contacts)
        })
        .await
    }

    async fn merge_contacts(&self, from: &str, into: &str, models: &ModelSet, now: Millis) -> StoreResult<ContactRecord> {
        if from == into {
            return Err(StoreError::Invalid("a contact cannot be merged into itself".into()));
        }
        let (from, into, models) = (from.to_string(), into.to_string(), models.clone());
        self.write(move |conn| {
            merge_contact(conn, &from, &into, now)?;
            let mut contact = load_contact(conn, &into)?.ok_or_else(|| StoreError::NotFound(format!("contact {into}")))?;
            // Version 0 is never live: every row is replayed with the merged events.
            for row in contact.scores.values_mut() {
                row.version = 0;
            }
            let before = crate::queue::cards_of(&contact.scores);
            rescore_contact(conn, &mut contact, &models, &mut [], now)?;
            if crate::queue::automations_active(conn)? {
                crate::queue::enqueue(conn, &contact.id, &before, &[], now)?;
            }
            Ok(contact)
        })
        .await
    }

    async fn delete_contact(&self, id: &str, erasure: &ErasureRecord) -> StoreResult<bool> {
        let (id, erasure) = (id.to_string(), erasure.clone());
        let erased = self.write(move |conn| erase_contact(conn, &id, &erasure)).await?;
        if erased {
            // The erased rows' old pages are still in the write-ahead log until it is
            // checkpointed: copy it into the file (zeroed there) and empty it now.
            self.checkpoint_wal().await;
        }
        Ok(erased)
    }

    async fn list_erasures(&self, limit: usize) -> StoreResult<Vec<ErasureRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT at, erased_by FROM erasures ORDER BY id DESC LIMIT ?1").map_err(db_err)?;
            let rows = stmt.query_map([limit], |r| Ok(ErasureRecord { at: r.get(0)?, by: r.get(1)? })).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn list_leads(&self, query: &LeadQuery) -> StoreResult<Vec<ContactRecord>> {
        let query = query.clone();
        self.read(move |conn| {
            let column = match query.sort {
                SortKey::Total => "s.total",
                SortKey::Fit => "s.fit",
                SortKey::Activity => "s.activity",
                SortKey::Predictive => "p.probability",
            };
            let (order, cmp) = if query.descending { ("DESC", "<") } else { ("ASC", ">") };
            // Sorting or filtering by the predictive score lists the contacts that have one.
            let predictive = if query.sort == SortKey::Predictive || query.predictive_min.is_some() {
                " JOIN predictive_scores p ON p.contact_id = s.contact_id"
            } else {
                ""
            };
            // A search that few contacts match starts from the contacts the trigram index
            // finds (CROSS JOIN keeps that order); one that many match reads the list in
            // score order, where the first page fills early. The LIKE below decides exactly.
            let phrase = query.search.as_deref().filter(|text| text.chars().count() >= 3).map(search_phrase);
            let indexed_search = match phrase {
                Some(phrase) => {
                    let found: i64 = conn
                        .prepare_cached("SELECT count(*) FROM (SELECT rowid FROM contact_search WHERE contact_search MATCH ?1 LIMIT ?2)")
                        .map_err(db_err)?
                        .query_row(params![phrase, FEW_SEARCH_MATCHES + 1], |r| r.get(0))
                        .map_err(db_err)?;
                    (found <= FEW_SEARCH_MATCHES).then_some(phrase)
                }
                None => None,
            };
            let mut sql = if indexed_search.is_some() {
                format!(
                    "SELECT {CONTACT_COLUMNS} FROM contacts c CROSS JOIN scores s ON s.contact_id = c.id{predictive} \
                     WHERE c.rowid IN (SELECT rowid FROM contact_search WHERE contact_search MATCH ?2) AND s.model = ?1"
                )
            } else {
                format!("SELECT {CONTACT_COLUMNS} FROM scores s JOIN contacts c ON c.id = s.contact_id{predictive} WHERE s.model = ?1")
            };
            let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(query.model.clone())];
            if let Some(phrase) = indexed_search {
                values.push(Box::new(phrase));
            }
            let mut next = |sql: &mut String, clause: &str, value: Box<dyn rusqlite::ToSql>| {
                values.push(value);
                sql.push_str(&clause.replace('?', &format!("?{}", values.len())));
            };
            if let Some(band) = &query.band {
                next(&mut sql, " AND s.band = ?", Box::new(band.clone()));
            }
            if let Some(owner) = &query.owner {
                let unassigned = if query.unassigned_too { "c.owner IS NULL OR " } else { "" };
                next(&mut sql, &format!(" AND ({unassigned}c.owner = ?)"), Box::new(owner.clone()));
            }
            if let Some(group) = &query.group {
                next(&mut sql, " AND EXISTS (SELECT 1 FROM contact_groups g WHERE g.grp = ? AND g.contact_id = s.contact_id)", Box::new(group.clone()));
            }
            if let Some(quadrant) = &query.quadrant {
                next(&mut sql, " AND s.quadrant = ?", Box::new(quadrant.clone()));
            }
            if let Some(source) = &query.source {
                next(&mut sql, " AND json_extract(c.attributes, '$.source') = ?", Box::new(source.clone()));
            }
            if let Some(search) = &query.search {
                let searched: Vec<String> = SEARCHED_ATTRIBUTES.iter().map(|name| format!("coalesce(json_extract(c.attributes, '$.{name}'), '')")).collect();
                next(
                    &mut sql,
                    &format!(" AND lower(coalesce(c.email, '') || ' ' || {}) LIKE ? ESCAPE '\\'", searched.join(" || ' ' || ")),
                    Box::new(like_anywhere(search)),
                );
            }
            if let Some(status) = &query.status {
                let unset = if status == DEFAULT_STATUS { "c.status IS NULL OR " } else { "" };
                next(&mut sql, &format!(" AND ({unset}c.status = ?)"), Box::new(status.clone()));
            }
            if query.open {
                let closed: Vec<String> = CLOSED_STATUSES.iter().map(|s| format!("'{s}'")).collect();
                sql.push_str(&format!(" AND (c.status IS NULL OR c.status NOT IN ({}))", closed.join(", ")));
            }
            if let Some(min) = query.predictive_min {
                next(&mut sql, " AND p.score >= ?", Box::new(min));
            }
            if let Some((value, id)) = &query.after {
                next(&mut sql, &format!(" AND ({column} {cmp} ?"), Box::new(*value));
                next(&mut sql, &format!(" OR ({column} = ?"), Box::new(*value));
                next(&mut sql, " AND s.contact_id > ?))", Box::new(id.clone()));
            }
            sql.push_str(&format!(" ORDER BY {column} {order}, s.contact_id ASC LIMIT {}", query.limit));
            let params: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v.as_ref()).collect();
            load_contacts_by_query(conn, &sql, &params)
        })
        .await
    }

    async fn list_contacts(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<ContactRecord>> {
        let after = after.unwrap_or("").to_string();
        self.read(move |conn| {
            let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id > ?1 ORDER BY c.id LIMIT {limit}");
            load_contacts_by_query(conn, &sql, &[&after])
        })
        .await
    }

    async fn scan_scores(&self, model: &str, with_state: bool, attribute: Option<&str>, after: Option<&str>, limit: usize) -> StoreResult<Vec<ScannedScore>> {
        let model = model.to_string();
        let after = after.unwrap_or("").to_string();
        let attribute = attribute.map(str::to_string);
        self.read(move |conn| scan_scores(conn, &model, with_state, attribute.as_deref(), &after, limit)).await
    }

    async fn contact_log(&self, id: &str) -> StoreResult<Vec<LogEntry>> {
        let id = id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT at, kind, data FROM contact_log WHERE contact_id = ?1 ORDER BY at, seq").map_err(db_err)?;
            let rows = stmt.query_map([&id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))).map_err(db_err)?;
            let mut entries = Vec::new();
            for row in rows {
                let (at, kind, data) = row.map_err(db_err)?;
                entries.push(LogEntry { at, kind, data: serde_json::from_str(&data).map_err(db_err)? });
            }
            Ok(entries)
        })
        .await
    }

    async fn bulk_update_chunk(&self, update: &BulkUpdate, after: &str, models: &ModelSet, now: Millis) -> StoreResult<BulkChunk> {
        let condition = update.filter.parsed_condition()?;
        let filter = update.filter.clone();
        let patch = update.patch.clone();
        let models = models.clone();
        let start = after.to_string();
        self.write(move |conn| {
            let mut sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id > ?1");
            let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(start)];
            let mut add = |sql: &mut String, clause: &str, v: String| {
                values.push(Box::new(v));
                sql.push_str(&clause.replace('?', &format!("?{}", values.len())));
            };
            if let Some(owner) = filter.owner {
                add(&mut sql, " AND c.owner = ?", owner);
            }
            if let Some(group) = filter.group {
                add(&mut sql, " AND EXISTS (SELECT 1 FROM contact_groups g WHERE g.grp = ? AND g.contact_id = c.id)", group);
            }
            match (filter.model, filter.band) {
                (Some(model), Some(band)) => {
                    add(&mut sql, " AND EXISTS (SELECT 1 FROM scores s WHERE s.model = ?", model);
                    add(&mut sql, " AND s.band = ? AND s.contact_id = c.id)", band);
                }
                (Some(model), None) => add(&mut sql, " AND EXISTS (SELECT 1 FROM scores s WHERE s.model = ? AND s.contact_id = c.id)", model),
                (None, Some(_)) => return Err(StoreError::Invalid("filter.band needs filter.model".into())),
                (None, None) => {}
            }
            sql.push_str(" ORDER BY c.id LIMIT 2000");
            let params: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v.as_ref()).collect();
            let contacts = load_contacts_by_query(conn, &sql, &params)?;
            let next = contacts.last().map(|c| c.id.clone());
            let mut changed = Vec::new();
            for mut contact in contacts {
                if condition.as_ref().is_some_and(|c| !c.matches(&contact.attributes, &Default::default())) {
                    continue;
                }
                patch_in(conn, &mut contact, &patch, &models, now, "bulk")?;
                changed.push(contact.id);
            }
            Ok(BulkChunk { changed, next })
        })
        .await
    }

    async fn count_contacts(&self) -> StoreResult<u64> {
        self.read(|conn| conn.query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(db_err)).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::json_value_of;

    /// Picking one value out of the attributes text gives what the full decode gives:
    /// escaped keys, nested objects with the same key, a repeated key (the last), absence.
    #[test]
    fn json_value_of_is_the_full_decode() {
        let text = r#"{"a\"b":1,"n":{"industry":"inner"},"industry":"first","x":[1,{"industry":2}],"industry":"last","e\u0301":null}"#;
        let full: Map<String, Value> = serde_json::from_str(text).expect("object");
        for key in ["a\"b", "n", "industry", "x", "e\u{301}", "missing", ""] {
            assert_eq!(json_value_of(text.as_bytes(), key).expect("parses"), full.get(key).cloned(), "{key:?}");
        }
        assert_eq!(json_value_of(text.as_bytes(), "industry").expect("parses"), Some(json!("last")));
        assert!(json_value_of(b"[1]", "a").is_err() && json_value_of(br#"{"a":1} x"#, "a").is_err(), "not one object");
    }
}
