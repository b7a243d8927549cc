//! AccountStore: the members of accounts (the `account_id` column kept by contact writes,
//! see `contacts::account_of`). `account_id` is COLLATE "C", so accounts come in byte
//! order, as in SQLite.

use async_trait::async_trait;

use leadscore_store::{AccountActivity, AccountStore, ActivityOf, ContactRecord, Millis, StoreResult};

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

    async fn account_ids(&self, contact_ids: &[String]) -> StoreResult<Vec<Option<String>>> {
        let client = self.client().await?;
        let rows = client.rows("SELECT id, account_id FROM contacts WHERE id = ANY($1)", &[&contact_ids]).await?;
        let mut accounts = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get(0).map_err(PgError::from)?;
            let account: Option<String> = row.try_get(1).map_err(PgError::from)?;
            accounts.insert(id, account);
        }
        Ok(contact_ids.iter().map(|id| accounts.get(id).cloned().flatten()).collect())
    }

    async fn activity_counts(&self, asks: &[(ActivityOf, Millis)]) -> StoreResult<Vec<AccountActivity>> {
        let mut client = self.client().await?;
        // One snapshot for every count: the account's and its contact's are subtracted.
        let tx =
            client.build_transaction().read_only(true).isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).start().await.map_err(PgError::from)?;
        let mut counts = Vec::with_capacity(asks.len());
        for (whose, at) in asks {
            counts.push(match whose {
                ActivityOf::Account(account) => activity_of(&tx, "c.account_id", account, *at).await?,
                ActivityOf::Contact(id) => activity_of(&tx, "c.id", id, *at).await?,
            });
        }
        tx.commit().await.map_err(PgError::from)?;
        Ok(counts)
    }
}

/// The activity of the contacts whose `column` is `value`, by `at`.
async fn activity_of(db: &impl Db, column: &str, value: &str, at: Millis) -> Result<AccountActivity, PgError> {
    const DAY: Millis = 86_400_000;
    let [short, long] = AccountActivity::WINDOWS_DAYS;
    let row = db
        .row_opt(
            &format!(
                "SELECT count(DISTINCT e.contact_id), COALESCE(SUM(CASE WHEN e.ts > $3 THEN 1 ELSE 0 END), 0)::BIGINT, count(*) FROM contacts c
                 JOIN events e ON e.contact_id = c.id WHERE {column} = $1 AND e.ts > $2 AND e.ts <= $4"
            ),
            &[&value, &(at - long * DAY), &(at - short * DAY), &at],
        )
        .await?
        .ok_or_else(|| PgError::Corrupt { what: "an aggregate query returned no row".into(), source: None })?;
    let count = |i: usize| -> Result<u64, PgError> { Ok(u64::try_from(row.try_get::<_, i64>(i)?).unwrap_or(0)) };
    Ok(AccountActivity { active_colleagues: count(0)?, events_30d: count(1)?, events_90d: count(2)? })
}
