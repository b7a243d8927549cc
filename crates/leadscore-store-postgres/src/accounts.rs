//! AccountStore: the members of accounts (the `account_id` column kept by contact writes,
//! see `contacts::account_of`). `account_id` is COLLATE "C", so accounts come in byte
//! order, as in SQLite.

use async_trait::async_trait;
use leadscore_store::{AccountStore, ContactRecord, StoreResult};

use crate::rows::{CONTACT_COLUMNS, load_contacts_by_query};
use crate::{Db, PgError, PostgresStore};

#[async_trait]
impl AccountStore for PostgresStore {
    async fn account_members(&self, model: &str) -> StoreResult<Vec<(String, String, f64)>> {
        let client = self.client().await?;
        let rows = client
            .rows(
                "SELECT c.account_id, c.id, s.total FROM contacts c JOIN scores s ON s.contact_id = c.id AND s.model = $1
                 WHERE c.account_id IS NOT NULL ORDER BY c.account_id, c.id",
                &[&model],
            )
            .await?;
        let mut members = Vec::with_capacity(rows.len());
        for row in &rows {
            members.push((row.try_get(0).map_err(PgError::from)?, row.try_get(1).map_err(PgError::from)?, row.try_get(2).map_err(PgError::from)?));
        }
        Ok(members)
    }

    async fn account_contacts(&self, account: &str) -> StoreResult<Vec<ContactRecord>> {
        let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.account_id = $1 ORDER BY c.id");
        let client = self.client().await?;
        Ok(load_contacts_by_query(&*client, &sql, &[&account]).await?)
    }
}
