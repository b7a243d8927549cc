//! ContactStore: contacts, their attributes, groups, the lead list and bulk updates; and
//! `rescore_contacts`, the scoring step every write runs for the contacts it changed.

use std::convert::Infallible;

use async_trait::async_trait;
use leadscore_core::condition::Condition;
use leadscore_store::records::identity::normalize_email;
use leadscore_store::scoring::{ScoringEvent, update_score};
use leadscore_store::{
    BulkChunk, BulkUpdate, CLOSED_STATUSES, ContactPatch, ContactRecord, ContactStore, ContactUpsert, DEFAULT_STATUS, ErasureRecord, LeadQuery, LogEntry,
    Millis, ModelSet, SEARCHED_ATTRIBUTES, ScannedScore, SortKey, StoreError, StoreResult, like_anywhere,
};
use serde_json::{Value, json};
use tokio_postgres::types::ToSql;

use crate::queue::{QueueRows, automations_active, cards_of, enqueue};
use crate::rows::{
    CONTACT_COLUMNS, ScoreColumns, append_log, card_from_row, corrupt, delete_scores, load_contact, load_contacts_by_query, load_scoring_events, save_scores,
    version_from_db,
};
use crate::{Db, PgError, PgResult, PostgresStore, RetryOn, write_tx};

/// The contact with this email, locked.
pub(crate) async fn lock_contact_by_email(db: &dyn Db, email: &str) -> PgResult<Option<String>> {
    Ok(match db.row_opt("SELECT id FROM contacts WHERE email = $1 FOR UPDATE", &[&email]).await? {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// Locks the contact if it exists; false when it does not.
pub(crate) async fn lock_contact(db: &dyn Db, id: &str) -> PgResult<bool> {
    Ok(db.row_opt("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", &[&id]).await?.is_some())
}

/// The `account_id` column of a contact (F29), written with every insert and update of
/// its row: the rule is `leadscore_core::accounts::account_key`, as in SQLite.
pub(crate) fn account_of(contact: &ContactRecord) -> Option<String> {
    leadscore_core::accounts::account_key(&contact.attributes, contact.email.as_deref())
}

/// Inserts a new contact row (no scores yet) unless a contact with its id exists, which
/// can only be one created concurrently by another process. Returns whether it inserted;
/// the inserted row is locked by this transaction until it ends.
pub(crate) async fn insert_contact(db: &dyn Db, contact: &ContactRecord) -> PgResult<bool> {
    let inserted = db
        .exec(
            "INSERT INTO contacts (id, email, attributes, groups, owner, status, created_at, updated_at, account_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            &[
                &contact.id,
                &contact.email,
                &Value::Object(contact.attributes.clone()).to_string(),
                &json!(contact.groups).to_string(),
                &contact.owner,
                &contact.status,
                &contact.created_at,
                &contact.updated_at,
                &account_of(contact),
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    add_group_rows(db, &contact.id, &contact.groups).await?;
    Ok(true)
}

async fn add_group_rows(db: &dyn Db, id: &str, groups: &[String]) -> PgResult<()> {
    if groups.is_empty() {
        return Ok(());
    }
    db.exec("INSERT INTO contact_groups (grp, contact_id) SELECT g, $2 FROM unnest($1::text[]) AS g ON CONFLICT DO NOTHING", &[&groups, &id]).await?;
    Ok(())
}

/// Writes every column of an existing contact (not its scores).
pub(crate) async fn save_contact(db: &dyn Db, contact: &ContactRecord, previous_groups: &[String]) -> PgResult<()> {
    db.exec(
        "UPDATE contacts SET email = $2, attributes = $3, groups = $4, owner = $5, status = $6, created_at = $7,
           updated_at = $8, account_id = $9 WHERE id = $1",
        &[
            &contact.id,
            &contact.email,
            &Value::Object(contact.attributes.clone()).to_string(),
            &json!(contact.groups).to_string(),
            &contact.owner,
            &contact.status,
            &contact.created_at,
            &contact.updated_at,
            &account_of(contact),
        ],
    )
    .await?;
    if previous_groups != contact.groups.as_slice() {
        let removed: Vec<&String> = previous_groups.iter().filter(|g| !contact.groups.contains(g)).collect();
        if !removed.is_empty() {
            db.exec("DELETE FROM contact_groups WHERE contact_id = $1 AND grp = ANY($2)", &[&contact.id, &removed]).await?;
        }
        let added: Vec<String> = contact.groups.iter().filter(|g| !previous_groups.contains(g)).cloned().collect();
        add_group_rows(db, &contact.id, &added).await?;
    }
    Ok(())
}

/// Sets the email column (and the `email` attribute), refusing one another contact has.
pub(crate) async fn set_email(db: &dyn Db, contact: &mut ContactRecord, email: &str) -> PgResult<()> {
    let email = normalize_email(email);
    if email.is_empty() || contact.email.as_deref() == Some(email.as_str()) {
        return Ok(());
    }
    if let Some(row) = db.row_opt("SELECT id FROM contacts WHERE email = $1", &[&email]).await? {
        let other: String = row.try_get(0)?;
        if other != contact.id {
            return Err(StoreError::Conflict(format!("email {email} already belongs to contact {other}")).into());
        }
    }
    contact.attributes.insert("email".into(), Value::String(email.clone()));
    contact.email = Some(email);
    Ok(())
}

/// A contact a write changed, with the activity events it stored for it (any order).
pub(crate) struct Rescore {
    pub contact: ContactRecord,
    pub new_events: Vec<ScoringEvent>,
}

/// `update_score` asks for the contact's events only when it must replay them.
struct NeedsReplay;

/// Brings every live model's score of the given (locked) contacts up to date after their
/// attributes changed and/or new events arrived, like the SQLite backend's
/// `rescore_contact` but batched: models whose segment no longer matches lose their score,
/// newly matching ones (and late events, and rows of older versions) replay the contact's
/// events, which are read in one query for every contact that needs it; the rows are then
/// written in one statement. `models` must be the live set (`live_models_in`).
pub(crate) async fn rescore_contacts(db: &dyn Db, models: &ModelSet, items: &mut [Rescore], now: Millis) -> PgResult<()> {
    let mut deleted_models = Vec::new();
    let mut deleted_contacts = Vec::new();
    // (item, model index, prior row) for the scores that need a replay.
    let mut replays = Vec::new();
    for (index, item) in items.iter_mut().enumerate() {
        item.new_events.sort_by(|a, b| (a.timestamp, &a.message_id).cmp(&(b.timestamp, &b.message_id)));
        let mut scores = std::mem::take(&mut item.contact.scores);
        // Scores of models that are no longer live go.
        let stale: Vec<String> = scores.keys().filter(|name| !models.iter().any(|m| &m.name == *name)).cloned().collect();
        for name in stale {
            scores.remove(&name);
            deleted_models.push(name);
            deleted_contacts.push(item.contact.id.clone());
        }
        for (model_index, published) in models.iter().enumerate() {
            if !published.model.applies_to(&item.contact.attributes) {
                if scores.remove(&published.name).is_some() {
                    deleted_models.push(published.name.clone());
                    deleted_contacts.push(item.contact.id.clone());
                }
                continue;
            }
            let prior = scores.remove(&published.name);
            // First try without the events: the common case folds the new events into the
            // stored state. The prior row is kept for the replay when that is not possible.
            let attempt = update_score(published, prior.clone(), &item.contact.attributes, &item.new_events, || Err(NeedsReplay), now);
            match attempt {
                Ok(row) => {
                    scores.insert(published.name.clone(), row);
                }
                Err(NeedsReplay) => replays.push((index, model_index, prior)),
            }
        }
        item.contact.scores = scores;
    }
    if !replays.is_empty() {
        let mut ids: Vec<String> = replays.iter().map(|(index, _, _)| items[*index].contact.id.clone()).collect();
        ids.sort();
        ids.dedup();
        let mut events = load_scoring_events(db, &ids).await?;
        for (index, model_index, prior) in replays {
            let published = &models[model_index];
            let item = &mut items[index];
            let all = events.remove(&item.contact.id).unwrap_or_default();
            let row = match update_score(published, prior, &item.contact.attributes, &item.new_events, || Ok::<_, Infallible>(all.clone()), now) {
                Ok(row) => row,
                Err(never) => match never {},
            };
            // Several models of one contact may replay: keep its events for the next one.
            events.insert(item.contact.id.clone(), all);
            item.contact.scores.insert(published.name.clone(), row);
        }
    }
    let mut saves = ScoreColumns::default();
    for item in items.iter() {
        for (model, row) in &item.contact.scores {
            saves.push(model, &item.contact.id, row)?;
        }
    }
    delete_scores(db, &deleted_models, &deleted_contacts).await?;
    save_scores(db, &saves).await
}

fn new_contact_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let counter = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("c_{:x}{:04x}", nanos, counter & 0xffff)
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn upsert_in(store: &PostgresStore, db: &dyn Db, upsert: &ContactUpsert, given: &ModelSet, now: Millis) -> PgResult<(ContactRecord, bool)> {
    store.lock_model_heads_shared(db).await?;
    let models = store.live_models_in(db, given).await?;
    let email = upsert.email.as_deref().map(normalize_email).filter(|e| !e.is_empty());
    let existing_id = match (&upsert.id, &email) {
        (Some(id), _) => lock_contact(db, id).await?.then(|| id.clone()),
        (None, Some(email)) => lock_contact_by_email(db, email).await?,
        (None, None) => None,
    };
    let created = existing_id.is_none();
    let contact = match existing_id {
        Some(id) => {
            let mut contact = load_contact(db, &id, false).await?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let previous_groups = contact.groups.clone();
            let previous_email = contact.email.clone();
            // A repeated upsert (an import run twice) changes nothing and logs nothing.
            let mut changed = leadscore_store::records::apply_upsert(&mut contact, upsert);
            if let Some(email) = &email {
                set_email(db, &mut contact, email).await?;
            }
            changed |= contact.email != previous_email;
            if changed {
                contact.updated_at = now;
                save_contact(db, &contact, &previous_groups).await?;
                append_log(db, &contact.id, now, "attributes", &json!({ "set": upsert.attributes, "attributes": contact.attributes })).await?;
            }
            contact
        }
        None => {
            let id = upsert.id.clone().or_else(|| email.clone()).unwrap_or_else(new_contact_id);
            let mut contact = leadscore_store::records::new_contact(id, upsert, now);
            if let Some(email) = &email {
                set_email(db, &mut contact, email).await?;
            }
            if !insert_contact(db, &contact).await? {
                // Another process created it since the lookup: the next attempt updates it.
                return Err(PgError::Retry);
            }
            append_log(db, &contact.id, contact.created_at, "created", &json!({ "attributes": contact.attributes })).await?;
            contact
        }
    };
    let before = cards_of(&contact.scores);
    let mut items = [Rescore { contact, new_events: Vec::new() }];
    rescore_contacts(db, &models, &mut items, now).await?;
    let [Rescore { contact, .. }] = items;
    if !upsert.historical && automations_active(db).await? {
        enqueue(db, &contact.id, &before, &[], now).await?;
    }
    Ok((contact, created))
}

/// Applies a patch to a loaded (locked) contact and logs it; the caller rescores.
pub(crate) async fn apply_patch(db: &dyn Db, contact: &mut ContactRecord, patch: &ContactPatch, now: Millis, log_kind: &str) -> PgResult<()> {
    let previous_groups = contact.groups.clone();
    let mut attributes = patch.attributes.clone();
    if let Some(email) = attributes.remove("email") {
        match email {
            Value::String(e) => set_email(db, contact, &e).await?,
            Value::Null => {
                contact.email = None;
                contact.attributes.remove("email");
            }
            other => return Err(StoreError::Invalid(format!("email must be a string, got {other}")).into()),
        }
    }
    leadscore_store::records::apply_patch(contact, patch, &attributes, now);
    save_contact(db, contact, &previous_groups).await?;
    append_log(db, &contact.id, now, log_kind, &leadscore_store::records::patch_log(contact, patch)).await
}

async fn patch_in(store: &PostgresStore, db: &dyn Db, id: &str, patch: &ContactPatch, given: &ModelSet, now: Millis) -> PgResult<ContactRecord> {
    store.lock_model_heads_shared(db).await?;
    let models = store.live_models_in(db, given).await?;
    let mut contact = load_contact(db, id, true).await?.ok_or_else(|| StoreError::NotFound(format!("contact {id}")))?;
    apply_patch(db, &mut contact, patch, now, "attributes").await?;
    let before = cards_of(&contact.scores);
    let mut items = [Rescore { contact, new_events: Vec::new() }];
    rescore_contacts(db, &models, &mut items, now).await?;
    let [Rescore { contact, .. }] = items;
    if automations_active(db).await? {
        enqueue(db, &contact.id, &before, &[], now).await?;
    }
    Ok(contact)
}

async fn merge_in(store: &PostgresStore, db: &dyn Db, from: &str, into: &str, given: &ModelSet, now: Millis) -> PgResult<ContactRecord> {
    store.lock_model_heads_shared(db).await?;
    let models = store.live_models_in(db, given).await?;
    // Both contacts are locked, in id order like every multi-contact write.
    let (first, second) = if from < into { (from, into) } else { (into, from) };
    for id in [first, second] {
        if !lock_contact(db, id).await? {
            return Err(StoreError::NotFound(format!("contact {id}")).into());
        }
    }
    merge_contact(db, from, into, now).await?;
    let mut contact = load_contact(db, into, true).await?.ok_or_else(|| StoreError::NotFound(format!("contact {into}")))?;
    // Version 0 is never live: every row is replayed with the merged events.
    for row in contact.scores.values_mut() {
        row.version = 0;
    }
    let before = cards_of(&contact.scores);
    let mut items = [Rescore { contact, new_events: Vec::new() }];
    rescore_contacts(db, &models, &mut items, now).await?;
    let [Rescore { contact, .. }] = items;
    if automations_active(db).await? {
        enqueue(db, &contact.id, &before, &[], now).await?;
    }
    Ok(contact)
}

/// Moves everything of contact `from` into `into` and deletes `from`. Attributes of
/// `into` win; groups are united; the earlier creation time is kept. Both are locked.
pub(crate) async fn merge_contact(db: &dyn Db, from: &str, into: &str, now: Millis) -> PgResult<()> {
    let source = load_contact(db, from, false).await?.ok_or_else(|| StoreError::NotFound(format!("contact {from}")))?;
    let mut target = load_contact(db, into, false).await?.ok_or_else(|| StoreError::NotFound(format!("contact {into}")))?;
    let previous_groups = target.groups.clone();
    leadscore_store::records::absorb_contact(&mut target, &source, now);
    for sql in [
        "UPDATE message_ids SET contact_id = $2 WHERE message_id IN (SELECT message_id FROM events WHERE contact_id = $1)",
        "UPDATE message_ids SET contact_id = $2 WHERE message_id IN
           (SELECT data::json ->> 'message_id' FROM contact_log WHERE contact_id = $1 AND kind = 'identify')",
    ] {
        db.exec(sql, &[&from, &into]).await?;
    }
    // The survivor's own trigger states and sync records stand; the absorbed one's go.
    for sql in leadscore_store::records::owned::merge_statements(|n| format!("${n}")) {
        if sql.contains("$2") {
            db.exec(&sql, &[&from, &into]).await?;
        } else {
            db.exec(&sql, &[&from]).await?;
        }
    }
    db.exec("DELETE FROM contacts WHERE id = $1", &[&from]).await?;
    if let (None, Some(email)) = (&target.email, &source.email) {
        set_email(db, &mut target, email).await?;
    }
    save_contact(db, &target, &previous_groups).await?;
    append_log(db, into, now, "merged", &json!({ "from": from, "attributes": target.attributes })).await
}

/// Deletes the contact and everything about it. The caller holds its lock (or it is gone).
pub(crate) async fn erase_contact(db: &dyn Db, id: &str, erasure: &ErasureRecord) -> PgResult<bool> {
    if db.row_opt("SELECT 1 FROM contacts WHERE id = $1", &[&id]).await?.is_none() {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM message_ids WHERE message_id IN (SELECT message_id FROM events WHERE contact_id = $1)",
        "DELETE FROM message_ids WHERE message_id IN
           (SELECT data::json ->> 'message_id' FROM contact_log WHERE contact_id = $1 AND kind = 'identify')",
    ] {
        db.exec(sql, &[&id]).await?;
    }
    // Runs, deliveries and what sales recorded carry the contact's data: erasure takes them too.
    for sql in leadscore_store::records::owned::erase_statements(|n| format!("${n}")) {
        db.exec(&sql, &[&id]).await?;
    }
    scrub_batched_deliveries(db, id).await?;
    let deleted = db.exec("DELETE FROM contacts WHERE id = $1", &[&id]).await? > 0;
    db.exec("INSERT INTO erasures (at, erased_by) VALUES ($1, $2)", &[&erasure.at, &erasure.by]).await?;
    Ok(deleted)
}

/// Takes the contact out of the batched `score.changed` deliveries that carry it (they
/// name no single contact, so the per-contact erasure does not find them).
async fn scrub_batched_deliveries(db: &dyn Db, id: &str) -> PgResult<()> {
    use leadscore_store::runner::{Scrubbed, scrub_contact};
    let needle = serde_json::to_string(id).map_err(|e| StoreError::Backend(e.to_string()))?;
    let carrying = db
        .rows("SELECT id, body FROM deliveries WHERE contact_id IS NULL AND event_type = 'score.changed' AND strpos(body, $1) > 0 FOR UPDATE", &[&needle])
        .await?;
    for row in carrying {
        let (delivery, body): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        match scrub_contact(&body, id) {
            Scrubbed::Untouched => {}
            Scrubbed::Rewritten(body) => {
                db.exec("UPDATE deliveries SET body = $2 WHERE id = $1", &[&delivery, &body]).await?;
            }
            Scrubbed::Empty => {
                db.exec("DELETE FROM delivery_attempts WHERE delivery_id = $1", &[&delivery]).await?;
                db.exec("DELETE FROM deliveries WHERE id = $1", &[&delivery]).await?;
            }
        }
    }
    Ok(())
}

/// SQL with positional parameters, built clause by clause (`?` becomes the next `$n`).
pub(crate) struct SqlBuilder<'a> {
    pub sql: String,
    pub values: Vec<&'a (dyn ToSql + Sync)>,
}

impl<'a> SqlBuilder<'a> {
    /// `sql` uses `$1` for `first`.
    fn new(sql: String, first: &'a (dyn ToSql + Sync)) -> Self {
        Self { sql, values: vec![first] }
    }

    /// `sql` has no parameters yet.
    pub(crate) fn start(sql: String) -> Self {
        Self { sql, values: Vec::new() }
    }

    pub(crate) fn push(&mut self, clause: &str, value: &'a (dyn ToSql + Sync)) {
        self.values.push(value);
        self.sql.push_str(&clause.replace('?', &format!("${}", self.values.len())));
    }
}

/// Contacts per bulk-update transaction: short transactions keep ingest flowing.
const BULK_CHUNK: i64 = 2000;

/// One chunk of a bulk update; returns how many contacts changed and the last id seen.
async fn bulk_chunk(
    store: &PostgresStore,
    db: &dyn Db,
    update: &BulkUpdate,
    condition: Option<&Condition>,
    after: &str,
    given: &ModelSet,
    now: Millis,
) -> PgResult<BulkChunk> {
    store.lock_model_heads_shared(db).await?;
    let models = store.live_models_in(db, given).await?;
    let filter = &update.filter;
    let mut query = SqlBuilder::new(format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id > $1"), &after);
    if let Some(owner) = &filter.owner {
        query.push(" AND c.owner = ?", owner);
    }
    if let Some(group) = &filter.group {
        query.push(" AND EXISTS (SELECT 1 FROM contact_groups g WHERE g.grp = ? AND g.contact_id = c.id)", group);
    }
    match (&filter.model, &filter.band) {
        (Some(model), Some(band)) => {
            query.push(" AND EXISTS (SELECT 1 FROM scores s WHERE s.model = ?", model);
            query.push(" AND s.band = ? AND s.contact_id = c.id)", band);
        }
        (Some(model), None) => query.push(" AND EXISTS (SELECT 1 FROM scores s WHERE s.model = ? AND s.contact_id = c.id)", model),
        (None, Some(_)) => return Err(StoreError::Invalid("filter.band needs filter.model".into()).into()),
        (None, None) => {}
    }
    query.sql.push_str(&format!(" ORDER BY c.id LIMIT {BULK_CHUNK} FOR UPDATE OF c"));
    let contacts = load_contacts_by_query(db, &query.sql, &query.values).await?;
    let next = contacts.last().map(|c| c.id.clone());
    let mut items = Vec::new();
    let mut before = Vec::new();
    for mut contact in contacts {
        if condition.is_some_and(|c| !c.matches(&contact.attributes, &Default::default())) {
            continue;
        }
        apply_patch(db, &mut contact, &update.patch, now, "bulk").await?;
        before.push(cards_of(&contact.scores));
        items.push(Rescore { contact, new_events: Vec::new() });
    }
    rescore_contacts(db, &models, &mut items, now).await?;
    // As for a patch: every contact the update touched is queued for its automations.
    if !items.is_empty() && automations_active(db).await? {
        let mut entries = QueueRows::default();
        for (item, before) in items.iter().zip(&before) {
            entries.push(&item.contact.id, before, &[])?;
        }
        entries.insert(db, now).await?;
    }
    Ok(BulkChunk { changed: items.into_iter().map(|item| item.contact.id).collect(), next })
}

/// [`ContactStore::scan_scores`]: a range of the `scores` primary key (model, contact_id),
/// joined to the contact only for the one attribute asked for. Attributes are JSON text:
/// `::json ->` extracts the value as written (never re-encoded, unlike `jsonb`), so it
/// decodes to exactly what the full read gives; the state only when asked.
async fn scan_scores(db: &dyn Db, model: &str, with_state: bool, attribute: Option<&str>, after: &str, limit: usize) -> PgResult<Vec<ScannedScore>> {
    let state = if with_state { "s.state" } else { "NULL::text" };
    let (value, join) =
        if attribute.is_some() { ("(c.attributes::json -> $4::text)::text", " JOIN contacts c ON c.id = s.contact_id") } else { ("NULL::text", "") };
    let sql = format!(
        "SELECT s.contact_id, s.version, s.fit, s.activity, s.total, s.band, s.flames, s.grade, s.quadrant, s.as_of, {state}, {value}
         FROM scores s{join} WHERE s.model = $1 AND s.contact_id > $2 ORDER BY s.contact_id LIMIT $3"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = match attribute {
        Some(key) => db.rows(&sql, &[&model, &after, &limit, &key]).await?,
        None => db.rows(&sql, &[&model, &after, &limit]).await?,
    };
    let mut scanned = Vec::with_capacity(rows.len());
    for row in &rows {
        let contact_id: String = row.try_get(0)?;
        let mut version = version_from_db(row.try_get(1)?)?;
        let state = match row.try_get::<_, Option<&str>>(10)? {
            None => None,
            // As in the full reads: a state that does not parse is not trusted; version 0
            // is never live, so the row does not count until it is replayed.
            Some(text) => match serde_json::from_str(text) {
                Ok(state) => Some(state),
                Err(err) => {
                    tracing::warn!(%model, contact = %contact_id, error = %err, "unreadable score state; the contact will be replayed");
                    version = 0;
                    None
                }
            },
        };
        let attribute = match row.try_get::<_, Option<&str>>(11)? {
            None => None,
            Some(text) => Some(serde_json::from_str::<Value>(text).map_err(corrupt)?),
        };
        scanned.push(ScannedScore { contact_id, version, card: card_from_row(row, 2)?, as_of: row.try_get(9)?, state, attribute });
    }
    Ok(scanned)
}

#[async_trait]
impl ContactStore for PostgresStore {
    async fn upsert_contact(&self, upsert: ContactUpsert, models: &ModelSet, now: Millis) -> StoreResult<(ContactRecord, bool)> {
        write_tx!(self, RetryOn::ContentionAndUniqueness, |tx| upsert_in(self, &tx, &upsert, models, now).await)
    }

    async fn patch_contact(&self, id: &str, patch: ContactPatch, models: &ModelSet, now: Millis) -> StoreResult<ContactRecord> {
        write_tx!(self, RetryOn::ContentionAndUniqueness, |tx| patch_in(self, &tx, id, &patch, models, now).await)
    }

    async fn get_contact(&self, id: &str) -> StoreResult<Option<ContactRecord>> {
        let client = self.client().await?;
        Ok(load_contact(&*client, id, false).await?)
    }

    async fn get_contacts(&self, ids: &[String]) -> StoreResult<Vec<ContactRecord>> {
        let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ANY($1)");
        let client = self.client().await?;
        let mut found: std::collections::HashMap<String, ContactRecord> =
            load_contacts_by_query(&*client, &sql, &[&ids]).await?.into_iter().map(|c| (c.id.clone(), c)).collect();
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn merge_contacts(&self, from: &str, into: &str, models: &ModelSet, now: Millis) -> StoreResult<ContactRecord> {
        if from == into {
            return Err(StoreError::Invalid("a contact cannot be merged into itself".into()));
        }
        write_tx!(self, RetryOn::Contention, |tx| merge_in(self, &tx, from, into, models, now).await)
    }

    async fn delete_contact(&self, id: &str, erasure: &ErasureRecord) -> StoreResult<bool> {
        write_tx!(self, RetryOn::Contention, |tx| {
            // Waits for a write in progress on the contact, so its events go too.
            lock_contact(&tx, id).await?;
            erase_contact(&tx, id, erasure).await
        })
    }

    async fn list_erasures(&self, limit: usize) -> StoreResult<Vec<ErasureRecord>> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client.rows("SELECT at, erased_by FROM erasures ORDER BY id DESC LIMIT $1", &[&limit]).await?;
        Ok(rows.iter().map(|r| Ok(ErasureRecord { at: r.try_get(0)?, by: r.try_get(1)? })).collect::<PgResult<Vec<_>>>()?)
    }

    async fn list_leads(&self, query: &LeadQuery) -> StoreResult<Vec<ContactRecord>> {
        let column = match query.sort {
            SortKey::Total => "s.total",
            SortKey::Fit => "s.fit",
            SortKey::Activity => "s.activity",
            SortKey::Predictive => "p.probability",
        };
        let (order, cmp) = if query.descending { ("DESC", "<") } else { ("ASC", ">") };
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        // Sorting or filtering by the predictive score lists the contacts that have one.
        let predictive =
            if query.sort == SortKey::Predictive || query.predictive_min.is_some() { " JOIN predictive_scores p ON p.contact_id = s.contact_id" } else { "" };
        let mut sql = SqlBuilder::new(
            format!("SELECT {CONTACT_COLUMNS} FROM scores s JOIN contacts c ON c.id = s.contact_id{predictive} WHERE s.model = $1"),
            &query.model,
        );
        if let Some(band) = &query.band {
            sql.push(" AND s.band = ?", band);
        }
        if let Some(owner) = &query.owner {
            let unassigned = if query.unassigned_too { "c.owner IS NULL OR " } else { "" };
            sql.push(&format!(" AND ({unassigned}c.owner = ?)"), owner);
        }
        if let Some(group) = &query.group {
            sql.push(" AND EXISTS (SELECT 1 FROM contact_groups g WHERE g.grp = ? AND g.contact_id = s.contact_id)", group);
        }
        if let Some(quadrant) = &query.quadrant {
            sql.push(" AND s.quadrant = ?", quadrant);
        }
        if let Some(source) = &query.source {
            sql.push(" AND (c.attributes::jsonb ->> 'source') = ?", source);
        }
        let search = query.search.as_deref().map(like_anywhere);
        if let Some(search) = &search {
            let searched: Vec<String> = SEARCHED_ATTRIBUTES.iter().map(|name| format!("coalesce(c.attributes::jsonb ->> '{name}', '')")).collect();
            // `lower` as SQLite's: ASCII only, so both backends find the same contacts.
            sql.push(
                &format!(
                    " AND translate(coalesce(c.email, '') || ' ' || {}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') LIKE ? ESCAPE '\\'",
                    searched.join(" || ' ' || ")
                ),
                search,
            );
        }
        if let Some(status) = &query.status {
            let unset = if status == DEFAULT_STATUS { "c.status IS NULL OR " } else { "" };
            sql.push(&format!(" AND ({unset}c.status = ?)"), status);
        }
        if query.open {
            let closed: Vec<String> = CLOSED_STATUSES.iter().map(|s| format!("'{s}'")).collect();
            sql.sql.push_str(&format!(" AND (c.status IS NULL OR c.status NOT IN ({}))", closed.join(", ")));
        }
        let predictive_min = query.predictive_min.map(i64::from);
        if let Some(min) = &predictive_min {
            sql.push(" AND p.score >= ?", min);
        }
        if let Some((value, id)) = &query.after {
            // Keyset pagination on (sort value, id).
            sql.push(&format!(" AND ({column} {cmp} ?::float8"), value);
            sql.push(&format!(" OR ({column} = ?::float8"), value);
            sql.push(" AND s.contact_id > ?))", id);
        }
        sql.push(&format!(" ORDER BY {column} {order}, s.contact_id ASC LIMIT ?"), &limit);
        let client = self.client().await?;
        Ok(load_contacts_by_query(&*client, &sql.sql, &sql.values).await?)
    }

    async fn list_contacts(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<ContactRecord>> {
        let after = after.unwrap_or("");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id > $1 ORDER BY c.id LIMIT $2");
        let client = self.client().await?;
        Ok(load_contacts_by_query(&*client, &sql, &[&after, &limit]).await?)
    }

    async fn scan_scores(&self, model: &str, with_state: bool, attribute: Option<&str>, after: Option<&str>, limit: usize) -> StoreResult<Vec<ScannedScore>> {
        let client = self.client().await?;
        Ok(scan_scores(&*client, model, with_state, attribute, after.unwrap_or(""), limit).await?)
    }

    async fn contact_log(&self, id: &str) -> StoreResult<Vec<LogEntry>> {
        let client = self.client().await?;
        let rows = client.rows("SELECT at, kind, data FROM contact_log WHERE contact_id = $1 ORDER BY at, seq", &[&id]).await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let data: String = row.try_get(2).map_err(PgError::from)?;
            entries.push(LogEntry {
                at: row.try_get(0).map_err(PgError::from)?,
                kind: row.try_get(1).map_err(PgError::from)?,
                data: serde_json::from_str(&data).map_err(crate::rows::corrupt)?,
            });
        }
        Ok(entries)
    }

    async fn bulk_update_chunk(&self, update: &BulkUpdate, after: &str, models: &ModelSet, now: Millis) -> StoreResult<BulkChunk> {
        let condition = update.filter.parsed_condition()?;
        write_tx!(self, RetryOn::ContentionAndUniqueness, |tx| bulk_chunk(self, &tx, update, condition.as_ref(), after, models, now).await)
    }

    async fn count_contacts(&self) -> StoreResult<u64> {
        count(self, "SELECT COUNT(*) FROM contacts").await
    }
}

/// Runs a `SELECT COUNT(*)` query.
pub(crate) async fn count(store: &PostgresStore, sql: &str) -> StoreResult<u64> {
    let client = store.client().await?;
    let row = client.row_opt(sql, &[]).await?.ok_or_else(|| StoreError::Backend("COUNT returned no row".into()))?;
    let n: i64 = row.try_get(0).map_err(PgError::from)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
