//! AutomationStore: automation definitions, one row each.

use async_trait::async_trait;
use leadscore_store::{AutomationRecord, AutomationStore, Millis, NewAutomation, StoreError, StoreResult};
use rusqlite::{OptionalExtension, Row, params};

use crate::{SqliteStore, db_err};

const COLUMNS: &str = "name, definition, enabled, created_at, updated_at";

/// The raw row; the definition is parsed outside rusqlite so a corrupt one is reported
/// as a storage error naming the automation rather than a column conversion failure.
type RawRow = (String, String, bool, Millis, Millis);

fn raw_row(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

fn record((name, definition, enabled, created_at, updated_at): RawRow) -> StoreResult<AutomationRecord> {
    let definition =
        serde_json::from_str(&definition).map_err(|e| StoreError::database(format!("the stored definition of automation {name:?} is not JSON"), e))?;
    Ok(AutomationRecord { name, definition, enabled, created_at, updated_at })
}

#[async_trait]
impl AutomationStore for SqliteStore {
    async fn put_automation(&self, automation: NewAutomation, now: Millis) -> StoreResult<(AutomationRecord, bool)> {
        let text = serde_json::to_string(&automation.definition).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.write(move |conn| {
            // The writer thread runs one write at a time, so reading then writing is atomic.
            let existing: Option<Millis> = conn
                .prepare_cached("SELECT created_at FROM automations WHERE name = ?1")
                .map_err(db_err)?
                .query_row([&automation.name], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            match existing {
                Some(_) => conn
                    .prepare_cached("UPDATE automations SET definition = ?2, enabled = ?3, updated_at = ?4 WHERE name = ?1")
                    .and_then(|mut s| s.execute(params![automation.name, text, automation.enabled, now]))
                    .map_err(db_err)?,
                None => conn
                    .prepare_cached("INSERT INTO automations (name, definition, enabled, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)")
                    .and_then(|mut s| s.execute(params![automation.name, text, automation.enabled, now]))
                    .map_err(db_err)?,
            };
            let record = AutomationRecord {
                name: automation.name,
                definition: automation.definition,
                enabled: automation.enabled,
                created_at: existing.unwrap_or(now),
                updated_at: now,
            };
            Ok((record, existing.is_none()))
        })
        .await
    }

    async fn get_automation(&self, name: &str) -> StoreResult<Option<AutomationRecord>> {
        let name = name.to_string();
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM automations WHERE name = ?1"))
                .map_err(db_err)?
                .query_row([&name], raw_row)
                .optional()
                .map_err(db_err)?;
            raw.map(record).transpose()
        })
        .await
    }

    async fn list_automations(&self) -> StoreResult<Vec<AutomationRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM automations ORDER BY name")).map_err(db_err)?;
            let rows = stmt.query_map([], raw_row).map_err(db_err)?.collect::<Result<Vec<_>, _>>().map_err(db_err)?;
            rows.into_iter().map(record).collect()
        })
        .await
    }

    async fn delete_automation(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_string();
        self.write(move |conn| {
            // Its per-contact state goes with it: a new automation of the same name starts afresh.
            conn.prepare_cached("DELETE FROM automation_state WHERE automation = ?1").and_then(|mut s| s.execute([&name])).map_err(db_err)?;
            let n = conn.prepare_cached("DELETE FROM automations WHERE name = ?1").and_then(|mut s| s.execute([&name])).map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }
}
