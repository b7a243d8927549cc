//! AuditStore (0011: audit_log).

use async_trait::async_trait;
use leadscore_store::{AuditRecord, AuditStore, StoreResult};
use rusqlite::params;

use crate::{SqliteStore, db_err};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, entry: AuditRecord) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO audit_log (at, actor, action, target) VALUES (?1, ?2, ?3, ?4)")
                .map_err(db_err)?
                .execute(params![entry.at, entry.actor, entry.action, entry.target])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn list_audit(&self, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT at, actor, action, target FROM audit_log ORDER BY id DESC LIMIT ?1").map_err(db_err)?;
            let rows =
                stmt.query_map([limit], |r| Ok(AuditRecord { at: r.get(0)?, actor: r.get(1)?, action: r.get(2)?, target: r.get(3)? })).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }
}
