//! AccountStore: the members of accounts (the `account_id` column kept by contact writes).

use async_trait::async_trait;
use leadscore_store::{AccountStore, ContactRecord, StoreResult};
use rusqlite::params;

use crate::rows::{CONTACT_COLUMNS, load_contacts_by_query};
use crate::{SqliteStore, db_err};

#[async_trait]
impl AccountStore for SqliteStore {
    async fn account_members(&self, model: &str) -> StoreResult<Vec<(String, String, f64)>> {
        let model = model.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT c.account_id, c.id, s.total FROM contacts c JOIN scores s ON s.contact_id = c.id AND s.model = ?1
                 WHERE c.account_id IS NOT NULL ORDER BY c.account_id, c.id",
            )
            .map_err(db_err)?
            .query_map(params![model], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)
        })
        .await
    }

    async fn account_contacts(&self, account: &str) -> StoreResult<Vec<ContactRecord>> {
        let account = account.to_string();
        self.read(move |conn| {
            let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.account_id = ?1 ORDER BY c.id");
            load_contacts_by_query(conn, &sql, &[&account])
        })
        .await
    }
}
