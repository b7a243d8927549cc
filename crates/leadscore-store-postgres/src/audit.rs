//! AuditStore (0011: audit_log).

use async_trait::async_trait;
use leadscore_store::{AuditRecord, AuditStore, StoreResult};

use crate::{Db, PgResult, PostgresStore};

#[async_trait]
impl AuditStore for PostgresStore {
    async fn record_audit(&self, entry: AuditRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .exec("INSERT INTO audit_log (at, actor, action, target) VALUES ($1, $2, $3, $4)", &[&entry.at, &entry.actor, &entry.action, &entry.target])
            .await?;
        Ok(())
    }

    async fn list_audit(&self, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client.rows("SELECT at, actor, action, target FROM audit_log ORDER BY id DESC LIMIT $1", &[&limit]).await?;
        Ok(rows
            .iter()
            .map(|r| Ok(AuditRecord { at: r.try_get(0)?, actor: r.try_get(1)?, action: r.try_get(2)?, target: r.try_get(3)? }))
            .collect::<PgResult<Vec<_>>>()?)
    }
}
