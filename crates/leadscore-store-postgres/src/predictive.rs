//! PredictiveStore (0009: predictive_models).

use async_trait::async_trait;
use leadscore_store::runner::QueueEntry;
use leadscore_store::{Millis, PredictiveScoreRow, PredictiveStore, PredictiveVersion, StoreResult};
use tokio_postgres::Row;

use crate::queue::{automations_active, cards_of};
use crate::rows::{corrupt, load_scores};
use crate::{Db, PgError, PgResult, PostgresStore, RetryOn, write_tx};

fn version_from_row(row: &Row) -> PgResult<PredictiveVersion> {
    Ok(PredictiveVersion {
        version: row.try_get(0)?,
        target: row.try_get(1)?,
        trained_at: row.try_get(2)?,
        live: row.try_get(3)?,
        model: row.try_get(4)?,
        report: row.try_get(5)?,
    })
}

/// Serialises version numbering between processes (one transaction at a time numbers a
/// new version).
const NUMBERING_LOCK: i64 = 0x6c73_7072_6564; // "lspred"

#[async_trait]
impl PredictiveStore for PostgresStore {
    async fn insert_predictive(&self, target: &str, trained_at: Millis, model: String, report: String, live: bool) -> StoreResult<i64> {
        let version = write_tx!(self, RetryOn::ContentionAndUniqueness, |tx| {
            tx.exec("SELECT pg_advisory_xact_lock($1)", &[&NUMBERING_LOCK]).await?;
            let row = tx.row_opt("SELECT COALESCE(MAX(version), 0) + 1 FROM predictive_models", &[]).await?;
            let version: i64 = match row {
                Some(row) => row.try_get(0)?,
                None => 1,
            };
            if live {
                tx.exec("UPDATE predictive_models SET live = FALSE WHERE live", &[]).await?;
            }
            tx.exec(
                "INSERT INTO predictive_models (version, target, trained_at, live, model, report) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&version, &target, &trained_at, &live, &model, &report],
            )
            .await?;
            Ok::<i64, PgError>(version)
        })?;
        Ok(version)
    }

    async fn list_predictive(&self) -> StoreResult<Vec<PredictiveVersion>> {
        let client = self.client().await?;
        let rows = client.rows("SELECT version, target, trained_at, live, '', report FROM predictive_models ORDER BY version DESC", &[]).await?;
        Ok(rows.iter().map(version_from_row).collect::<PgResult<Vec<_>>>()?)
    }

    async fn live_predictive(&self) -> StoreResult<Option<PredictiveVersion>> {
        let client = self.client().await?;
        let row = client.row_opt("SELECT version, target, trained_at, live, model, report FROM predictive_models WHERE live", &[]).await?;
        Ok(row.as_ref().map(version_from_row).transpose()?)
    }

    async fn set_live_predictive(&self, version: i64) -> StoreResult<bool> {
        let found = write_tx!(self, RetryOn::Contention, |tx| {
            if tx.row_opt("SELECT 1 FROM predictive_models WHERE version = $1", &[&version]).await?.is_none() {
                return Ok::<bool, PgError>(false);
            }
            tx.exec("UPDATE predictive_models SET live = (version = $1)", &[&version]).await?;
            Ok(true)
        })?;
        Ok(found)
    }

    async fn put_predictive_scores(&self, mut scores: Vec<(String, PredictiveScoreRow)>, now: Millis) -> StoreResult<usize> {
        if scores.is_empty() {
            return Ok(0);
        }
        // Contact row locks in id order, as every write that locks several contacts takes them.
        scores.sort_by(|a, b| a.0.cmp(&b.0));
        let written = write_tx!(self, RetryOn::Contention, |tx| {
            let queue = automations_active(&tx).await?;
            let mut written = 0;
            for (contact_id, row) in &scores {
                // The contact's row lock: an evaluation reading its queue waits for this write.
                if tx.row_opt("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", &[contact_id]).await?.is_none() {
                    continue;
                }
                let previous: Option<i64> =
                    tx.row_opt("SELECT score FROM predictive_scores WHERE contact_id = $1", &[contact_id]).await?.map(|r| r.try_get(0)).transpose()?;
                let score = i64::from(row.score);
                tx.exec(
                    "INSERT INTO predictive_scores (contact_id, version, score, probability, as_of) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (contact_id) DO UPDATE SET version = excluded.version, score = excluded.score,
                       probability = excluded.probability, as_of = excluded.as_of",
                    &[contact_id, &row.version, &score, &row.probability, &row.as_of],
                )
                .await?;
                written += 1;
                if queue && previous != Some(score) {
                    let cards = load_scores(&tx, std::slice::from_ref(contact_id)).await?.remove(contact_id).unwrap_or_default();
                    let previous = previous.and_then(|p| u8::try_from(p).ok());
                    let before = QueueEntry::encode_predictive_before(&cards_of(&cards), previous).map_err(corrupt)?;
                    tx.exec("INSERT INTO automation_queue (contact_id, event, before, enqueued_at) VALUES ($1, NULL, $2, $3)", &[contact_id, &before, &now])
                        .await?;
                }
            }
            Ok::<usize, PgError>(written)
        })?;
        Ok(written)
    }

    async fn contacts_to_predict(&self, version: i64, stale_before: Millis, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .rows(
                "SELECT c.id FROM contacts c LEFT JOIN predictive_scores p ON p.contact_id = c.id
                 WHERE c.id > $1 AND (p.contact_id IS NULL OR p.version != $2 OR p.as_of < $3)
                 ORDER BY c.id LIMIT $4",
                &[&after.unwrap_or(""), &version, &stale_before, &limit],
            )
            .await?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<Vec<String>, _>>().map_err(PgError::from)?)
    }
}
