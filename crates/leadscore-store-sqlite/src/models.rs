//! ModelStore, ScoreStore (rescore chunks, jobs) and KeyStore.

use async_trait::async_trait;
use leadscore_core::ScoreCard;
use leadscore_store::records::{self, RowAction, rescore_action};
use leadscore_store::scoring::{ScoringEvent, refresh_fit};
use leadscore_store::{
    ApiKeyRecord, ChunkLimit, Job, KeyStore, Millis, ModelStore, ModelVersion, NewJob, NewModelVersion, PublishedModel, RefreshChunk, RescoreChunk, Scope,
    ScoreStore, StoreError, StoreResult,
};
use rayon::prelude::*;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::rows::{json_map, json_map_keys, load_scores, save_score};
use crate::{SqliteStore, db_err};

fn version_from_row(row: &Row<'_>) -> rusqlite::Result<ModelVersion> {
    Ok(ModelVersion { name: row.get(0)?, version: row.get(1)?, source: row.get(2)?, format: row.get(3)?, created_at: row.get(4)?, shadow_of: None })
}

/// A model's head for the shadow rules (None: never published, or deleted).
fn head_of(conn: &Connection, name: &str) -> StoreResult<records::Head> {
    conn.prepare_cached("SELECT shadow_of FROM model_heads WHERE name = ?1 AND deleted = 0")
        .map_err(db_err)?
        .query_row([name], |r| r.get::<_, Option<String>>(0))
        .optional()
        .map_err(db_err)
}

/// Stores `model` as its name's next version and makes it the head.
fn insert_version(conn: &Connection, model: NewModelVersion, now: Millis) -> StoreResult<ModelVersion> {
    let version: u32 = conn.query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE name = ?1", [&model.name], |r| r.get(0)).map_err(db_err)?;
    conn.execute(
        "INSERT INTO models (name, version, source, format, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![model.name, version, model.source, model.format, now],
    )
    .map_err(db_err)?;
    conn.execute(
        "INSERT INTO model_heads (name, version, deleted, shadow_of) VALUES (?1, ?2, 0, ?3)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, deleted = 0, shadow_of = excluded.shadow_of",
        params![model.name, version, model.shadow_of],
    )
    .map_err(db_err)?;
    Ok(ModelVersion { name: model.name, version, source: model.source, format: model.format, created_at: now, shadow_of: model.shadow_of })
}

/// Marks the model deleted and drops its scores; false when it was not live.
fn delete_head(conn: &Connection, name: &str) -> StoreResult<bool> {
    let changed = conn.execute("UPDATE model_heads SET deleted = 1 WHERE name = ?1 AND deleted = 0", [name]).map_err(db_err)?;
    conn.execute("DELETE FROM scores WHERE model = ?1", [name]).map_err(db_err)?;
    Ok(changed > 0)
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: row.get(0)?,
        kind: row.get(1)?,
        model: row.get(2)?,
        version: row.get(3)?,
        state: row.get(4)?,
        total: row.get::<_, i64>(5)? as u64,
        done: row.get::<_, i64>(6)? as u64,
        cursor: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
        error: row.get(10)?,
        result: row.get(11)?,
    })
}

const JOB_COLUMNS: &str = "id, kind, model, version, state, total, done, cursor, created_at, updated_at, error, result";

#[async_trait]
impl ModelStore for SqliteStore {
    async fn publish_model(&self, model: NewModelVersion, now: Millis) -> StoreResult<ModelVersion> {
        self.write(move |conn| {
            let target = match &model.shadow_of {
                Some(target) => head_of(conn, target)?,
                None => None,
            };
            records::check_publish(&model.name, model.shadow_of.as_deref(), &head_of(conn, &model.name)?, &target)?;
            insert_version(conn, model, now)
        })
        .await
    }

    async fn live_models(&self) -> StoreResult<Vec<ModelVersion>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT m.name, m.version, m.source, m.format, m.created_at, h.shadow_of FROM model_heads h
                     JOIN models m ON m.name = h.name AND m.version = h.version WHERE h.deleted = 0 ORDER BY m.name",
                )
                .map_err(db_err)?;
            let rows = stmt.query_map([], |r| Ok(ModelVersion { shadow_of: r.get(5)?, ..version_from_row(r)? })).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn model_versions(&self, name: &str) -> StoreResult<Vec<ModelVersion>> {
        let name = name.to_string();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT name, version, source, format, created_at FROM models WHERE name = ?1 ORDER BY version").map_err(db_err)?;
            let rows = stmt.query_map([&name], version_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn delete_model(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_string();
        self.write(move |conn| {
            let shadows: Vec<String> = conn
                .prepare_cached("SELECT name FROM model_heads WHERE shadow_of = ?1 AND deleted = 0 ORDER BY name")
                .map_err(db_err)?
                .query_map([&name], |r| r.get(0))
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            records::check_delete(&name, &shadows)?;
            delete_head(conn, &name)
        })
        .await
    }

    async fn promote_model(&self, shadow: &str, shadow_version: u32, live: NewModelVersion, now: Millis) -> StoreResult<ModelVersion> {
        let shadow = shadow.to_string();
        self.write(move |conn| {
            let head: Option<(u32, Option<String>)> = conn
                .prepare_cached("SELECT version, shadow_of FROM model_heads WHERE name = ?1 AND deleted = 0")
                .map_err(db_err)?
                .query_row([&shadow], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db_err)?;
            records::check_promote(&shadow, shadow_version, head, &live)?;
            let version = insert_version(conn, NewModelVersion { shadow_of: None, ..live }, now)?;
            delete_head(conn, &shadow)?;
            Ok(version)
        })
        .await
    }
}

/// The live version of a model, if it is live.
fn live_version(conn: &Connection, name: &str) -> StoreResult<Option<u32>> {
    conn.prepare_cached("SELECT version FROM model_heads WHERE name = ?1 AND deleted = 0")
        .map_err(db_err)?
        .query_row([name], |r| r.get(0))
        .optional()
        .map_err(db_err)
}

/// An event as read for a rescore: (ts, messageId, name, properties JSON), decoded later in
/// parallel.
type RawEvent = (i64, String, String, String);

/// A chunk scored from a read snapshot, waiting to be written.
pub(crate) struct ScoredChunk {
    actions: Vec<(String, RowAction)>,
    contacts: u64,
    last_contact: Option<String>,
    events: u64,
}

/// The read of the chunk after `after` for (model, version), started early.
pub(crate) struct Prefetch {
    key: (String, u32, String),
    chunk: tokio::task::JoinHandle<StoreResult<ScoredChunk>>,
}

/// Reads a chunk of contacts, their events (one sequential range of the clustered events
/// table) and their current rows from a read snapshot, and scores them in parallel. No
/// write lock is held. The chunk ends before the contact whose events would take it past
/// `limit.events` (a first contact is taken whole).
fn score_chunk(conn: &Connection, model: &PublishedModel, after: &str, limit: ChunkLimit, now: Millis) -> StoreResult<ScoredChunk> {
    let mut stmt = conn.prepare_cached("SELECT id, attributes FROM contacts WHERE id > ?1 ORDER BY id LIMIT ?2").map_err(db_err)?;
    let contacts: Vec<(String, String)> =
        stmt.query_map(params![after, limit.contacts as i64], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    let Some((last_id, _)) = contacts.last().cloned() else {
        return Ok(ScoredChunk { actions: Vec::new(), contacts: 0, last_contact: None, events: 0 });
    };
    let mut events_stmt = conn
        .prepare_cached(
            "SELECT contact_id, ts, name, properties, message_id FROM events
             WHERE contact_id > ?1 AND contact_id <= ?2 ORDER BY contact_id, ts, message_id",
        )
        .map_err(db_err)?;
    // Group the (already ordered) events by contact, then score contacts in parallel.
    let mut grouped: Vec<(String, String, Vec<RawEvent>)> = contacts.into_iter().map(|(id, attrs)| (id, attrs, Vec::new())).collect();
    let mut index = 0;
    let mut events = 0u64;
    let mut names: Vec<String> = Vec::new();
    let mut rows = events_stmt.query(params![after, last_id]).map_err(db_err)?;
    while let Some(row) = rows.next().map_err(db_err)? {
        // The contact id is compared in place; properties are decoded later, in parallel.
        let contact_id = row.get_ref(0).and_then(|v| v.as_str().map_err(Into::into)).map_err(db_err)?;
        while index < grouped.len() && grouped[index].0.as_str() < contact_id {
            index += 1;
        }
        if index >= grouped.len() || grouped[index].0 != contact_id {
            continue;
        }
        if events as usize >= limit.events && index > 0 {
            // This event would take the chunk past its bound: it ends before this contact
            // (whose events so far are dropped with it; the next chunk starts there).
            grouped.truncate(index);
            break;
        }
        let name = row.get_ref(2).and_then(|v| v.as_str().map_err(Into::into)).map_err(db_err)?;
        let name = match names.iter().find(|n| n.as_str() == name) {
            Some(known) => known.clone(),
            None => {
                names.push(name.to_string());
                name.to_string()
            }
        };
        grouped[index].2.push((row.get(1).map_err(db_err)?, row.get(4).map_err(db_err)?, name, row.get(3).map_err(db_err)?));
        events += 1;
    }
    drop(rows);
    if grouped.first().is_some_and(|(_, _, events)| events.len() > limit.events) {
        // The first contact alone has more events than the bound: it is the chunk.
        grouped.truncate(1);
    }
    let events = grouped.iter().map(|(_, _, events)| events.len() as u64).sum();
    let last_id = grouped.last().map(|(id, _, _)| id.clone()).unwrap_or(last_id);
    let mut stored: std::collections::HashMap<String, (u32, ScoreCard)> = std::collections::HashMap::with_capacity(grouped.len());
    let mut rows_stmt = conn
        .prepare_cached(
            "SELECT contact_id, version, fit, activity, total, band, flames, grade, quadrant FROM scores
             WHERE model = ?1 AND contact_id > ?2 AND contact_id <= ?3",
        )
        .map_err(db_err)?;
    let mut rows = rows_stmt.query(params![model.name, after, last_id]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        let card = crate::rows::card_from_row(r, 2).map_err(db_err)?;
        stored.insert(r.get(0).map_err(db_err)?, (r.get(1).map_err(db_err)?, card));
    }
    let contact_count = grouped.len() as u64;
    let property_keys = model.model.activity_property_keys();
    let scored: Vec<StoreResult<Option<(String, RowAction)>>> = grouped
        .into_par_iter()
        .map(|(id, attributes, events)| {
            let decode = || -> StoreResult<Vec<ScoringEvent>> {
                events
                    .into_iter()
                    .map(|(timestamp, message_id, name, properties)| {
                        Ok(ScoringEvent { timestamp, message_id, name, properties: json_map_keys(&properties, &property_keys)? })
                    })
                    .collect()
            };
            let action = rescore_action(model, stored.get(&id), || json_map(&attributes), decode, now)?;
            Ok(action.map(|action| (id, action)))
        })
        .collect();
    let mut actions = Vec::with_capacity(scored.len());
    for item in scored {
        if let Some(action) = item? {
            actions.push(action);
        }
    }
    Ok(ScoredChunk { actions, contacts: contact_count, last_contact: Some(last_id), events })
}

/// Writes a scored chunk. Every write is conditional on the row not being at this version
/// yet: a row that reached it after the snapshot was written by a newer write (ingest or
/// an attribute change replays the contact under the live version) and is kept.
fn write_chunk(conn: &Connection, model: &PublishedModel, chunk: &ScoredChunk) -> StoreResult<u64> {
    if live_version(conn, &model.name)? != Some(model.version) {
        return Err(StoreError::Conflict(format!("model {} v{} is no longer the live version", model.name, model.version)));
    }
    let mut written = 0;
    for (id, action) in &chunk.actions {
        let changed = match action {
            RowAction::State(row) => {
                let state = serde_json::to_string(&row.state).map_err(db_err)?;
                conn.prepare_cached("UPDATE scores SET version = ?3, state = ?4, as_of = ?5 WHERE model = ?1 AND contact_id = ?2 AND version != ?3")
                    .map_err(db_err)?
                    .execute(params![model.name, id, row.version, state, row.as_of])
                    .map_err(db_err)?
            }
            RowAction::Full(row) => {
                let state = serde_json::to_string(&row.state).map_err(db_err)?;
                let c = &row.card;
                conn.prepare_cached(
                    "UPDATE scores SET version = ?3, fit = ?4, activity = ?5, total = ?6, band = ?7, flames = ?8, grade = ?9,
                       quadrant = ?10, state = ?11, as_of = ?12 WHERE model = ?1 AND contact_id = ?2 AND version != ?3",
                )
                .map_err(db_err)?
                .execute(params![model.name, id, row.version, c.fit, c.activity, c.total, c.band, c.flames, c.grade, c.quadrant, state, row.as_of])
                .map_err(db_err)?
            }
            RowAction::Insert(row) => {
                // Rare (a contact that had no row): check it still exists and still applies.
                let attributes: Option<String> = conn
                    .prepare_cached("SELECT attributes FROM contacts WHERE id = ?1")
                    .map_err(db_err)?
                    .query_row([id], |r| r.get(0))
                    .optional()
                    .map_err(db_err)?;
                match attributes {
                    Some(attributes) if model.model.applies_to(&json_map(&attributes)?) => {
                        let exists_at_version: Option<u32> = conn
                            .prepare_cached("SELECT version FROM scores WHERE model = ?1 AND contact_id = ?2")
                            .map_err(db_err)?
                            .query_row(params![model.name, id], |r| r.get(0))
                            .optional()
                            .map_err(db_err)?;
                        if exists_at_version == Some(model.version) {
                            0
                        } else {
                            save_score(conn, &model.name, id, row)?;
                            1
                        }
                    }
                    _ => 0,
                }
            }
            RowAction::Delete => conn
                .prepare_cached("DELETE FROM scores WHERE model = ?1 AND contact_id = ?2 AND version != ?3")
                .map_err(db_err)?
                .execute(params![model.name, id, model.version])
                .map_err(db_err)?,
        };
        written += changed as u64;
    }
    Ok(written)
}

fn refresh_chunk_in(conn: &Connection, model: &PublishedModel, after: &str, limit: usize, now: Millis) -> StoreResult<RefreshChunk> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT s.contact_id, c.attributes FROM scores s JOIN contacts c ON c.id = s.contact_id
             WHERE s.model = ?1 AND s.contact_id > ?2 ORDER BY s.contact_id LIMIT ?3",
        )
        .map_err(db_err)?;
    let rows: Vec<(String, String)> =
        stmt.query_map(params![model.name, after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    let mut changed = 0;
    let queue = crate::queue::automations_active(conn)?;
    for (id, attributes) in &rows {
        let mut all_rows = load_scores(conn, id)?;
        let Some(row) = all_rows.remove(&model.name) else {
            continue;
        };
        if row.version != model.version {
            continue; // the rescore job owns rows of other versions
        }
        let before = row.card.clone();
        let fresh = refresh_fit(model, row, &json_map(attributes)?, now);
        if fresh.card != before {
            save_score(conn, &model.name, id, &fresh)?;
            changed += 1;
            // Decay moved the score: threshold and band triggers (and CRM sync) look again.
            if queue {
                // Every model's card goes into the before-picture: one that lacked the
                // others would read as "no score before" and fire their threshold and band
                // triggers (issue 12.1).
                let mut cards: std::collections::BTreeMap<String, ScoreCard> = all_rows.into_iter().map(|(name, row)| (name, row.card)).collect();
                cards.insert(model.name.clone(), before);
                crate::queue::enqueue(conn, id, &cards, &[], now)?;
            }
        }
    }
    Ok(RefreshChunk { last_contact: rows.last().map(|(id, _)| id.clone()), seen: rows.len() as u64, changed })
}

#[async_trait]
impl ScoreStore for SqliteStore {
    async fn rescore_chunk(&self, model: &PublishedModel, after: Option<String>, limit: ChunkLimit, now: Millis) -> StoreResult<RescoreChunk> {
        // Score from a read snapshot (no write lock held, scoring in parallel), then write
        // only what no newer write has already brought to this version.
        // While a chunk is written, the next one is read and scored (pipelined): the
        // writer and the readers work at the same time.
        let model = std::sync::Arc::new(model.clone());
        let after = after.unwrap_or_default();
        let key = (model.name.clone(), model.version, after.clone());
        let prefetched = self.inner.prefetch.lock().map_err(|_| StoreError::Closed)?.take().filter(|p| p.key == key);
        let chunk = match prefetched {
            Some(prefetch) => prefetch.chunk.await.map_err(|e| StoreError::database("rescore read failed", e))??,
            None => {
                let reading = model.clone();
                self.read(move |conn| score_chunk(conn, &reading, &after, limit, now)).await?
            }
        };
        if let Some(next_after) = chunk.last_contact.clone() {
            let store = self.clone();
            let reading = model.clone();
            let key = (model.name.clone(), model.version, next_after.clone());
            let handle = tokio::spawn(async move { store.read(move |conn| score_chunk(conn, &reading, &next_after, limit, now)).await });
            if let Ok(mut slot) = self.inner.prefetch.lock() {
                *slot = Some(Prefetch { key, chunk: handle });
            }
        }
        let contacts = chunk.contacts;
        let (events, last_contact) = (chunk.events, chunk.last_contact.clone());
        if contacts > 0 {
            self.write(move |conn| write_chunk(conn, &model, &chunk)).await?;
        } else {
            let name = model.name.clone();
            let version = model.version;
            let live = self.read(move |conn| live_version(conn, &name)).await?;
            if live != Some(version) {
                return Err(StoreError::Conflict(format!("model {} v{version} is no longer the live version", model.name)));
            }
        }
        Ok(RescoreChunk { last_contact, contacts, events })
    }

    async fn refresh_chunk(&self, model: &PublishedModel, after: Option<String>, limit: usize, now: Millis) -> StoreResult<RefreshChunk> {
        let model = std::sync::Arc::new(model.clone());
        self.write(move |conn| refresh_chunk_in(conn, &model, after.as_deref().unwrap_or(""), limit, now)).await
    }

    async fn create_job(&self, job: NewJob, now: Millis) -> StoreResult<Job> {
        self.write(move |conn| {
            let (owner, until) = job.lease.clone().unzip();
            conn.execute(
                "INSERT INTO jobs (kind, model, version, state, total, done, created_at, updated_at, lease_owner, lease_until)
                 VALUES (?1, ?2, ?3, 'queued', ?4, 0, ?5, ?5, ?6, ?7)",
                params![job.kind, job.model, job.version, job.total as i64, now, owner, until],
            )
            .map_err(db_err)?;
            let id = conn.last_insert_rowid();
            conn.query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), [id], job_from_row).map_err(db_err)
        })
        .await
    }

    async fn update_job(&self, job: &Job) -> StoreResult<()> {
        let job = job.clone();
        self.write(move |conn| {
            conn.execute(
                "UPDATE jobs SET state = ?2, total = ?3, done = ?4, cursor = ?5, updated_at = ?6, error = ?7, result = ?8 WHERE id = ?1",
                params![job.id, job.state, job.total as i64, job.done as i64, job.cursor, job.updated_at, job.error, job.result],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn latest_job(&self, model: &str) -> StoreResult<Option<Job>> {
        let model = model.to_string();
        self.read(move |conn| {
            conn.query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE model = ?1 AND kind = 'rescore' ORDER BY id DESC LIMIT 1"), [&model], job_from_row)
                .optional()
                .map_err(db_err)
        })
        .await
    }

    async fn get_job(&self, id: i64) -> StoreResult<Option<Job>> {
        self.read(move |conn| conn.query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), [id], job_from_row).optional().map_err(db_err)).await
    }

    async fn claim_job(&self, id: Option<i64>, owner: &str, lease: Millis, now: Millis) -> StoreResult<Option<Job>> {
        let owner = owner.to_string();
        self.write(move |conn| {
            let found: Option<i64> = conn
                .prepare_cached(
                    "SELECT id FROM jobs WHERE state IN ('queued', 'running') AND (?1 IS NULL OR id = ?1)
                       AND (lease_owner IS NULL OR lease_until < ?2 OR (?1 IS NOT NULL AND lease_owner = ?3)) ORDER BY id LIMIT 1",
                )
                .map_err(db_err)?
                .query_row(params![id, now, owner], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            let Some(found) = found else { return Ok(None) };
            conn.prepare_cached("UPDATE jobs SET lease_owner = ?2, lease_until = ?3 WHERE id = ?1")
                .map_err(db_err)?
                .execute(params![found, owner, now + lease])
                .map_err(db_err)?;
            conn.query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), [found], job_from_row).optional().map_err(db_err)
        })
        .await
    }

    async fn update_claimed_job(&self, job: &Job, owner: &str, lease_until: Millis) -> StoreResult<bool> {
        let (job, owner) = (job.clone(), owner.to_string());
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET state = ?2, total = ?3, done = ?4, cursor = ?5, updated_at = ?6, error = ?7, lease_until = ?9, result = ?10
                     WHERE id = ?1 AND lease_owner = ?8",
                )
                .map_err(db_err)?
                .execute(params![job.id, job.state, job.total as i64, job.done as i64, job.cursor, job.updated_at, job.error, owner, lease_until, job.result])
                .map_err(db_err)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn unfinished_jobs(&self) -> StoreResult<Vec<Job>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY id")).map_err(db_err)?;
            let rows = stmt.query_map([], job_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let scopes: String = row.get(4)?;
    Ok(ApiKeyRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        hash: row.get(2)?,
        prefix: row.get(3)?,
        scopes: scopes.split(',').filter_map(Scope::parse).collect(),
        created_at: row.get(5)?,
        revoked_at: row.get(6)?,
    })
}

const KEY_COLUMNS: &str = "id, name, hash, prefix, scopes, created_at, revoked_at";

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        self.write(move |conn| {
            let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
            conn.execute(
                "INSERT INTO api_keys (id, name, hash, prefix, scopes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key.id, key.name, key.hash, key.prefix, scopes.join(","), key.created_at],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::Conflict("a key with this id or value already exists".into())
                }
                other => db_err(other),
            })?;
            Ok(())
        })
        .await
    }

    async fn find_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let hash = hash.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1"))
                .map_err(db_err)?
                .query_row([&hash], key_from_row)
                .optional()
                .map_err(db_err)
        })
        .await
    }

    async fn list_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")).map_err(db_err)?;
            let rows = stmt.query_map([], key_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn revoke_key(&self, id: &str, now: Millis) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |conn| {
            let n = conn.execute("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![id, now]).map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn count_keys(&self) -> StoreResult<u64> {
        self.read(|conn| conn.query_row("SELECT COUNT(*) FROM api_keys", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(db_err)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_store::{EventKind, Identity, NewEvent};
    use serde_json::Map;

    const MODEL: &str = r#"
name = "m"
[[activity]]
name = "click"
event = "click"
points = 5
"#;

    fn click(id: &str, user: &str, ts: i64) -> NewEvent {
        NewEvent {
            message_id: id.into(),
            identity: Identity { user_id: Some(user.into()), ..Identity::default() },
            kind: EventKind::Track,
            name: "click".into(),
            properties: Map::new(),
            traits: Map::new(),
            context: None,
            timestamp: ts,
        }
    }

    fn publish(conn: &Connection, version: u32) -> PublishedModel {
        conn.execute("INSERT INTO models (name, version, source, format, created_at) VALUES ('m', ?1, ?2, 'toml', 0)", params![version, MODEL]).unwrap();
        conn.execute("INSERT INTO model_heads (name, version) VALUES ('m', ?1) ON CONFLICT (name) DO UPDATE SET version = excluded.version", [version])
            .unwrap();
        PublishedModel { name: "m".into(), version, model: leadscore_core::Model::parse(MODEL).unwrap(), shadow_of: None }
    }

    /// (version, activity, events folded into the stored state) of a contact's row.
    fn activity(conn: &Connection, contact: &str) -> (u32, f64, u64) {
        let (version, activity, state): (u32, f64, String) = conn
            .query_row("SELECT version, activity, state FROM scores WHERE model = 'm' AND contact_id = ?1", [contact], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        let state: leadscore_core::ActivityState = serde_json::from_str(&state).unwrap();
        (version, activity, state.event_count())
    }

    /// The pipelined rescore scores from a snapshot; an event stored between the snapshot
    /// and the write must survive (the write is skipped for the row the ingest brought to
    /// the live version), while untouched rows are rewritten.
    #[test]
    fn a_rescore_never_overwrites_a_newer_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = crate::open_connection(&path).unwrap();
        crate::migrate(&writer).unwrap();
        let v1 = std::sync::Arc::new(publish(&writer, 1));
        crate::events::ingest_in(
            &writer,
            &[click("a1", "a", 1_000), click("b1", "b", 1_000)],
            &vec![v1],
            2_000,
            leadscore_store::IngestOptions { fire_automations: true, trust: leadscore_store::IdentityTrust::Trusted },
        )
        .unwrap();
        let v2 = publish(&writer, 2);

        // Snapshot-side scoring on a read connection...
        let reader = crate::open_connection(&path).unwrap();
        let chunk = score_chunk(&reader, &v2, "", ChunkLimit { contacts: 100, events: 100_000 }, 3_000).unwrap();
        // ...then a new event for `a` commits before the chunk is written.
        let live = vec![std::sync::Arc::new(publish_same(&v2))];
        crate::events::ingest_in(
            &writer,
            &[click("a2", "a", 2_000)],
            &live,
            3_000,
            leadscore_store::IngestOptions { fire_automations: true, trust: leadscore_store::IdentityTrust::Trusted },
        )
        .unwrap();
        assert_eq!(activity(&writer, "a"), (2, 10.0, 2));
        write_chunk(&writer, &v2, &chunk).unwrap();

        // Scores and state: a write of the snapshot's state alone would keep the card right.
        assert_eq!(activity(&writer, "a"), (2, 10.0, 2), "the newer write is kept");
        assert_eq!(activity(&writer, "b"), (2, 5.0, 1), "the untouched row is rescored");
    }

    fn publish_same(model: &PublishedModel) -> PublishedModel {
        model.clone()
    }
}
