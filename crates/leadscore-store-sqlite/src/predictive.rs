//! PredictiveStore (0009: predictive_models).

use async_trait::async_trait;
use leadscore_store::{Millis, PredictiveStore, PredictiveVersion, StoreResult};
use rusqlite::{OptionalExtension, Row, params};

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
}
