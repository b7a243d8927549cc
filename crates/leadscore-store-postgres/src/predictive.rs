//! PredictiveStore (0009: predictive_models).

use async_trait::async_trait;
use leadscore_store::{Millis, PredictiveStore, PredictiveVersion, StoreResult};
use tokio_postgres::Row;

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
}
