//! AccountStore: the members of accounts (the `account_id` column kept by contact writes).

use async_trait::async_trait;

use leadscore_store::{AccountActivity, AccountStore, ActivityOf, ContactRecord, Millis, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

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

    async fn account_ids(&self, contact_ids: &[String]) -> StoreResult<Vec<Option<String>>> {
        let ids = contact_ids.to_vec();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT account_id FROM contacts WHERE id = ?1").map_err(db_err)?;
            ids.iter().map(|id| stmt.query_row([id], |r| r.get(0)).optional().map(Option::flatten).map_err(db_err)).collect()
        })
        .await
    }

    async fn activity_counts(&self, asks: &[(ActivityOf, Millis)]) -> StoreResult<Vec<AccountActivity>> {
        let asks = asks.to_vec();
        self.read(move |conn| {
            // One read transaction: every count sees the same moment (the account's and its
            // contact's are subtracted).
            let snapshot = conn.unchecked_transaction().map_err(db_err)?;
            let counts = asks
                .iter()
                .map(|(whose, at)| match whose {
                    ActivityOf::Account(account) => activity_of(&snapshot, "c.account_id", account, *at),
                    ActivityOf::Contact(id) => activity_of(&snapshot, "c.id", id, *at),
                })
                .collect::<StoreResult<Vec<_>>>()?;
            snapshot.commit().map_err(db_err)?;
            Ok(counts)
        })
        .await
    }
}

/// The activity of the contacts whose `column` is `value`, by `at`.
fn activity_of(conn: &Connection, column: &str, value: &str, at: Millis) -> StoreResult<AccountActivity> {
    const DAY: Millis = 86_400_000;
    let [short, long] = AccountActivity::WINDOWS_DAYS;
    conn.prepare_cached(&format!(
        "SELECT count(DISTINCT e.contact_id), COALESCE(SUM(e.ts > ?3), 0), count(*) FROM contacts c JOIN events e ON e.contact_id = c.id
         WHERE {column} = ?1 AND e.ts > ?2 AND e.ts <= ?4"
    ))
    .map_err(db_err)?
    .query_row(params![value, at - long * DAY, at - short * DAY, at], |r| {
        Ok(AccountActivity { active_colleagues: r.get(0)?, events_30d: r.get(1)?, events_90d: r.get(2)? })
    })
    .map_err(db_err)
}
