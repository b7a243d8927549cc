//! PredictiveStore (0009: predictive_models).

use async_trait::async_trait;
use leadscore_store::runner::QueueEntry;
use leadscore_store::{Millis, PredictiveScoreRow, PredictiveStore, PredictiveVersion, StoreResult};
use rusqlite::{OptionalExtension, Row, params};

use crate::queue::{automations_active, cards_of};
use crate::rows::load_scores;
use crate::{SqliteStore, db_err};

fn version_from_row(row: &Row<'_>) -> rusqlite::Result<PredictiveVersion> {
    Ok(PredictiveVersion { version: row.get(0)?, target: row.get(1)?, trained_at: row.get(2)?, live: row.get(3)?, model: row.get(4)?, report: row.get(5)? })
}

#[async_trait]
impl PredictiveStore for SqliteStore {
    async fn insert_predictive(&self, target: &str, trained_at: Millis, model: String, report: String, live: bool) -> StoreResult<i64> {
        let target = target.to_string();
        self.write(move |conn| {
            let version: i64 = conn.query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM predictive_models", [], |r| r.get(0)).map_err(db_err)?;
            if live {
                conn.execute("UPDATE predictive_models SET live = 0 WHERE live = 1", []).map_err(db_err)?;
            }
            conn.execute(
                "INSERT INTO predictive_models (version, target, trained_at, live, model, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![version, target, trained_at, live, model, report],
            )
            .map_err(db_err)?;
            Ok(version)
        })
        .await
    }

    async fn list_predictive(&self) -> StoreResult<Vec<PredictiveVersion>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT version, target, trained_at, live, '', report FROM predictive_models ORDER BY version DESC").map_err(db_err)?;
            let rows = stmt.query_map([], version_from_row).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn live_predictive(&self) -> StoreResult<Option<PredictiveVersion>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT version, target, trained_at, live, model, report FROM predictive_models WHERE live = 1")
                .map_err(db_err)?
                .query_row([], version_from_row)
                .optional()
                .map_err(db_err)
        })
        .await
    }

    async fn set_live_predictive(&self, version: i64) -> StoreResult<bool> {
        self.write(move |conn| {
            let exists = conn.query_row("SELECT 1 FROM predictive_models WHERE version = ?1", [version], |_| Ok(())).optional().map_err(db_err)?.is_some();
            if exists {
                conn.execute("UPDATE predictive_models SET live = (version = ?1)", [version]).map_err(db_err)?;
            }
            Ok(exists)
        })
        .await
    }

    async fn put_predictive_scores(&self, scores: Vec<(String, PredictiveScoreRow)>, now: Millis) -> StoreResult<usize> {
        if scores.is_empty() {
            return Ok(0);
        }
        self.write(move |conn| {
            let queue = automations_active(conn)?;
            let mut written = 0;
            for (contact_id, row) in &scores {
                let exists = conn.prepare_cached("SELECT 1 FROM contacts WHERE id = ?1").map_err(db_err)?.exists([contact_id]).map_err(db_err)?;
                if !exists {
                    continue;
                }
                let previous: Option<u8> = conn
                    .prepare_cached("SELECT score FROM predictive_scores WHERE contact_id = ?1")
                    .map_err(db_err)?
                    .query_row([contact_id], |r| r.get(0))
                    .optional()
                    .map_err(db_err)?;
                conn.prepare_cached(
                    "INSERT INTO predictive_scores (contact_id, version, score, probability, as_of) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (contact_id) DO UPDATE SET version = excluded.version, score = excluded.score,
                       probability = excluded.probability, as_of = excluded.as_of",
                )
                .map_err(db_err)?
                .execute(params![contact_id, row.version, row.score, row.probability, row.as_of])
                .map_err(db_err)?;
                written += 1;
                if queue && previous != Some(row.score) {
                    let before = QueueEntry::encode_predictive_before(&cards_of(&load_scores(conn, contact_id)?), previous).map_err(db_err)?;
                    conn.prepare_cached("INSERT INTO automation_queue (contact_id, event, before, enqueued_at) VALUES (?1, NULL, ?2, ?3)")
                        .map_err(db_err)?
                        .execute(params![contact_id, before, now])
                        .map_err(db_err)?;
                }
            }
            Ok(written)
        })
        .await
    }

    async fn contacts_to_predict(&self, version: i64, stale_before: Millis, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        let after = after.unwrap_or("").to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT c.id FROM contacts c LEFT JOIN predictive_scores p ON p.contact_id = c.id
                     WHERE c.id > ?1 AND (p.contact_id IS NULL OR p.version != ?2 OR p.as_of < ?3)
                     ORDER BY c.id LIMIT ?4",
                )
                .map_err(db_err)?;
            let rows = stmt.query_map(params![after, version, stale_before, limit as i64], |r| r.get(0)).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map_err(db_err)
        })
        .await
    }
}
