//! AutomationStore: automation definitions, one row each.

use async_trait::async_trait;
use leadscore_store::{AutomationRecord, AutomationStore, Millis, NewAutomation, StoreError, StoreResult};
use tokio_postgres::Row;

use crate::{Db, PgError, PgResult, PostgresStore, RetryOn, write_tx};

const COLUMNS: &str = "name, definition, enabled, created_at, updated_at";

fn record(row: &Row) -> PgResult<AutomationRecord> {
    let name: String = row.try_get(0)?;
    let definition: String = row.try_get(1)?;
    let definition = serde_json::from_str(&definition).map_err(|e| crate::rows::corrupt_in(format!("the definition of automation {name:?}"), e))?;
    Ok(AutomationRecord { name, definition, enabled: row.try_get(2)?, created_at: row.try_get(3)?, updated_at: row.try_get(4)? })
}

#[async_trait]
impl AutomationStore for PostgresStore {
    async fn put_automation(&self, automation: NewAutomation, now: Millis) -> StoreResult<(AutomationRecord, bool)> {
        let text = serde_json::to_string(&automation.definition).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let (created_at, created) = write_tx!(self, RetryOn::ContentionAndUniqueness, |tx| {
            // Insert, else update: two statements so the caller learns which happened
            // (without relying on system columns such as xmax).
            let inserted = tx
                .row_opt(
                    "INSERT INTO automations (name, definition, enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
                     ON CONFLICT (name) DO NOTHING RETURNING created_at",
                    &[&automation.name, &text, &automation.enabled, &now],
                )
                .await?;
            if let Some(row) = inserted {
                return Ok((row.try_get::<_, Millis>(0)?, true));
            }
            let updated = tx
                .row_opt(
                    "UPDATE automations SET definition = $2, enabled = $3, updated_at = $4 WHERE name = $1 RETURNING created_at",
                    &[&automation.name, &text, &automation.enabled, &now],
                )
                .await?;
            match updated {
                Some(row) => Ok((row.try_get::<_, Millis>(0)?, false)),
                // Deleted by another process between the two statements: try again.
                None => Err(PgError::Retry),
            }
        })?;
        let record = AutomationRecord { name: automation.name, definition: automation.definition, enabled: automation.enabled, created_at, updated_at: now };
        Ok((record, created))
    }

    async fn get_automation(&self, name: &str) -> StoreResult<Option<AutomationRecord>> {
        let client = self.client().await?;
        let row = client.row_opt(&format!("SELECT {COLUMNS} FROM automations WHERE name = $1"), &[&name]).await?;
        Ok(row.as_ref().map(record).transpose()?)
    }

    async fn list_automations(&self) -> StoreResult<Vec<AutomationRecord>> {
        let client = self.client().await?;
        let rows = client.rows(&format!("SELECT {COLUMNS} FROM automations ORDER BY name"), &[]).await?;
        Ok(rows.iter().map(record).collect::<PgResult<Vec<_>>>()?)
    }

    async fn delete_automation(&self, name: &str) -> StoreResult<bool> {
        // Its per-contact state goes with it: a new automation of the same name starts afresh.
        write_tx!(self, RetryOn::Contention, |tx| {
            tx.exec("DELETE FROM automation_state WHERE automation = $1", &[&name]).await?;
            Ok(tx.exec("DELETE FROM automations WHERE name = $1", &[&name]).await? > 0)
        })
    }
}
