//! PostgreSQL backend for leadscore (PRODUCT.md F28): the storage traits of
//! `leadscore-store` with the semantics of the embedded SQLite backend, for teams whose
//! leadscore processes share one database.
//!
//! SQLite serialises every write on one writer thread; here several processes write at
//! once, so the same guarantees are kept with locks inside each write transaction:
//!
//! - **A write that scores a contact locks the contact first** (`SELECT … FOR UPDATE`; a
//!   new contact is created with `INSERT … ON CONFLICT (id) DO NOTHING` and then locked).
//!   At READ COMMITTED every later statement of the transaction sees what the previous lock
//!   holder committed, so two processes ingesting for one contact fold their events one
//!   after the other and no update is lost.
//! - **Writes score with the model versions live in the database** (`live_models_in`),
//!   and hold a shared advisory lock on the model heads until they commit; publishing or
//!   deleting a model takes that lock exclusively. A publish therefore waits for the writes
//!   that read the old heads, and no write commits a row under a version that was
//!   superseded while it ran.
//! - **A rescore never overwrites a newer write**: a chunk is scored from a REPEATABLE READ
//!   snapshot without locks, then written with statements conditional on the row not being
//!   at the job's version yet (a row that is was written by ingest or an attribute change,
//!   which saw newer data). A superseded version is refused with `StoreError::Conflict`.
//! - **Automations are evaluated under the contact's lock**, each contact in a transaction
//!   of its own: the lock is taken before the contact's queued entries are read, so a
//!   second process evaluating the same contact waits and then finds them consumed. Team
//!   rows are locked by the evaluation that assigns from them, so no round-robin step is
//!   lost.
//! - **Outcomes are recorded under the contact's lock**, taken before the contact's latest
//!   status is read, so two processes recording statuses for one contact take turns and
//!   the contact ends with the status that is latest by (at, id).
//! - **Contention is retried**: a write transaction that PostgreSQL aborts for a deadlock or
//!   a serialization failure (or, for writes that create contacts, a unique violation caused
//!   by a concurrent creation) is run again from the start, a few times.
//!
//! PostgreSQL features relied on (PostgreSQL 12 or later):
//! - row locks `SELECT … FOR UPDATE` (also `FOR UPDATE OF c` in joins), and
//!   `FOR UPDATE SKIP LOCKED` so processes claiming deliveries and sync work never take
//!   the same rows;
//! - `INSERT … ON CONFLICT DO NOTHING` / `DO UPDATE … WHERE` and `RETURNING`;
//! - advisory locks: `pg_advisory_xact_lock` around migrations, `pg_advisory_xact_lock` /
//!   `pg_advisory_xact_lock_shared` around the model heads;
//! - `unnest` of array parameters for multi-row inserts, updates and deletes;
//! - `REPEATABLE READ READ ONLY` transactions for the rescore snapshot;
//! - `COLLATE "C"` on id columns, so ids sort by bytes as in Rust and SQLite;
//! - `GENERATED ALWAYS AS IDENTITY` columns;
//! - the `options=-c search_path=…` startup parameter, which puts every pooled connection
//!   in the store's schema;
//! - deadlock detection (SQLSTATE 40P01), whose victim is retried.

mod accounts;
mod audit;
mod automations;
mod contacts;
mod events;
mod models;
mod outbox;
mod outcomes;
mod predictive;
mod queue;
mod rows;
mod runs;
mod settings;
mod transfer;
mod users;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use leadscore_store::{ModelSet, StoreError, StoreResult};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// Embedded migrations, applied in order at open; the applied ones are listed in
/// `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_automations.sql")),
    (3, include_str!("../migrations/0003_runs.sql")),
    (4, include_str!("../migrations/0004_job_leases.sql")),
    (5, include_str!("../migrations/0005_outcomes.sql")),
    (6, include_str!("../migrations/0006_accounts.sql")),
    (7, include_str!("../migrations/0007_shadow_models.sql")),
    (8, include_str!("../migrations/0008_users.sql")),
    (9, include_str!("../migrations/0009_predictive.sql")),
    (10, include_str!("../migrations/0010_erasures.sql")),
    (11, include_str!("../migrations/0011_audit.sql")),
    (12, include_str!("../migrations/0012_quadrant_index.sql")),
    (13, include_str!("../migrations/0013_options.sql")),
    (14, include_str!("../migrations/0014_predictive_scores.sql")),
];

/// The migration that added `contacts.account_id`: the contacts stored before it get
/// theirs from [`backfill_accounts`], in the migration's transaction.
const ACCOUNTS_MIGRATION: i64 = 6;

/// Contacts read (and updated) per statement of the accounts backfill.
const BACKFILL_CHUNK: i64 = 5_000;

/// Advisory lock key serialising migrations (and schema creation) of every process.
const MIGRATION_LOCK_KEY: i64 = 0x6c65_6164_6d69_6772; // "leadmigr"

/// Connections per store unless asked otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How many times a write transaction is tried when PostgreSQL aborts it for contention.
const WRITE_ATTEMPTS: u32 = 6;

/// A leadscore store in one PostgreSQL schema. Cheap to clone (one shared pool).
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The schema the store lives in (`current_schema()` of its connections).
    schema: String,
    /// Advisory lock key of this schema's model heads (see the crate documentation).
    heads_lock_key: i64,
    /// The live models as last read from `model_heads`, with the (name, version) list they
    /// were built from: a model is parsed again only when the heads change.
    live_models: Mutex<Option<(ModelHeads, Arc<ModelSet>)>>,
}

/// (name, version) of every live model, by name.
pub(crate) type ModelHeads = Vec<(String, u32)>;

/// Errors inside the crate; converted to [`StoreError`] at the trait boundary. Kept apart
/// so the retry loop can see PostgreSQL's SQLSTATE.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    #[error("{}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt data in the database: {what}")]
    Corrupt {
        what: String,
        /// The decoder's error, when there is one.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// A concurrent write changed what this transaction relied on; run it again.
    #[error("a concurrent write got in the way")]
    Retry,
}

/// tokio-postgres prints only "db error" for server errors: add the server's message.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.code().code(), db.message()),
            None => format!("{}: {}", db.code().code(), db.message()),
        },
        None => err.to_string(),
    }
}

impl PgError {
    fn sql_state(&self) -> Option<&SqlState> {
        match self {
            PgError::Db(err) => err.code(),
            _ => None,
        }
    }

    fn is_retryable(&self, retry: RetryOn) -> bool {
        match self {
            PgError::Retry => true,
            _ => match self.sql_state() {
                Some(state) if *state == SqlState::T_R_DEADLOCK_DETECTED || *state == SqlState::T_R_SERIALIZATION_FAILURE => true,
                Some(state) if *state == SqlState::UNIQUE_VIOLATION => retry == RetryOn::ContentionAndUniqueness,
                _ => false,
            },
        }
    }
}

impl From<PgError> for StoreError {
    fn from(err: PgError) -> Self {
        match err {
            PgError::Store(err) => err,
            PgError::Pool(deadpool_postgres::PoolError::Closed) => StoreError::Closed,
            PgError::Retry => StoreError::Conflict("concurrent writes kept getting in the way; try again".into()),
            err if err.sql_state() == Some(&SqlState::UNIQUE_VIOLATION) => StoreError::Conflict(err.to_string()),
            PgError::Db(err) if unreachable_or_full(&err) => StoreError::unavailable("PostgreSQL", err),
            PgError::Pool(deadpool_postgres::PoolError::Backend(err)) if unreachable_or_full(&err) => {
                StoreError::unavailable("PostgreSQL connection pool", deadpool_postgres::PoolError::Backend(err))
            }
            PgError::Pool(err @ deadpool_postgres::PoolError::Timeout(_)) => StoreError::unavailable("PostgreSQL connection pool", err),
            PgError::Db(err) => {
                // The SQLSTATE up front: tokio-postgres's own message starts with "db error".
                let what = match err.code() {
                    Some(state) => format!("PostgreSQL ({})", state.code()),
                    None => "PostgreSQL".to_string(),
                };
                StoreError::database(what, err)
            }
            PgError::Pool(err) => StoreError::database("PostgreSQL connection pool", err),
            PgError::Corrupt { what, source: Some(source) } => StoreError::database(format!("corrupt data in the database: {what}"), source),
            PgError::Corrupt { what, source: None } => StoreError::Backend(format!("corrupt data in the database: {what}")),
        }
    }
}

pub(crate) type PgResult<T> = Result<T, PgError>;

/// Whether a driver error says the server cannot be reached now or cannot take writes now
/// (a restart, a lost connection, a full disk, too many connections), so the same request
/// may succeed in a moment: such errors become [`StoreError::Unavailable`] (503 and
/// `Retry-After` for HTTP clients) instead of a storage failure.
fn unreachable_or_full(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        // 08: connection exception; 53: insufficient resources (disk full, out of memory,
        // too many connections); 57P01-57P03: the server is shutting down or starting.
        Some(state) => {
            let code = state.code();
            code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // No SQLSTATE: the connection itself failed (refused, reset, timed out).
        None => std::error::Error::source(err).is_some_and(|source| source.is::<std::io::Error>()),
    }
}

/// Which failures a write transaction is retried on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryOn {
    /// Deadlocks and serialization failures.
    Contention,
    /// Also unique violations: writes that create contacts may collide with a concurrent
    /// creation (same id or email), and on the next attempt they find that contact.
    ContentionAndUniqueness,
}

/// Pins the error type of an async block for `?` inside [`write_tx!`].
pub(crate) fn pg_block<T, F: std::future::Future<Output = PgResult<T>>>(future: F) -> F {
    future
}

/// Runs `$body` (an expression using the transaction `$tx`, of type `PgResult<T>`) in a
/// write transaction: commits on success, rolls back on error, and runs it again from the
/// start when PostgreSQL aborted it for contention. Evaluates to `StoreResult<T>`.
/// A macro rather than a function taking a closure: the body borrows its surroundings and
/// the transaction, which a higher-ranked async closure bound cannot express on stable Rust.
macro_rules! write_tx {
    ($store:expr, $retry:expr, |$tx:ident| $body:expr) => {{
        let store: &$crate::PostgresStore = $store;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let outcome: $crate::PgResult<_> = $crate::pg_block(async {
                let mut client = store.client().await?;
                let $tx = client.transaction().await?;
                match $crate::pg_block(async { $body }).await {
                    Ok(value) => {
                        $tx.commit().await?;
                        Ok(value)
                    }
                    Err(err) => {
                        // The transaction is dead anyway; a failed rollback changes nothing.
                        let _ = $tx.rollback().await;
                        Err(err)
                    }
                }
            })
            .await;
            match outcome {
                Ok(value) => break Ok(value),
                Err(err) if attempt < $crate::WRITE_ATTEMPTS && err.is_retryable($retry) => {
                    tracing::debug!(attempt, error = %err, "write transaction aborted by contention; retrying");
                    // Back off a little (more each time) so the transactions that collided
                    // do not collide again in lockstep.
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt) * 5)).await;
                }
                Err(err) => break Err(leadscore_store::StoreError::from(err)),
            }
        }
    }};
}
pub(crate) use write_tx;

/// What the trait implementations need from a connection or a transaction: statements are
/// prepared once per connection (deadpool's statement cache) and reused.
#[async_trait]
pub(crate) trait Db: Send + Sync {
    async fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Vec<Row>>;
    async fn row_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Option<Row>>;
    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<u64>;
}

macro_rules! impl_db {
    ($ty:ty) => {
        #[async_trait]
        impl Db for $ty {
            async fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Vec<Row>> {
                let statement = self.prepare_cached(sql).await?;
                Ok(self.query(&statement, params).await?)
            }
            async fn row_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Option<Row>> {
                let statement = self.prepare_cached(sql).await?;
                Ok(self.query_opt(&statement, params).await?)
            }
            async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<u64> {
                let statement = self.prepare_cached(sql).await?;
                Ok(self.execute(&statement, params).await?)
            }
        }
    };
}
impl_db!(deadpool_postgres::ClientWrapper);
impl_db!(deadpool_postgres::Transaction<'_>);

/// Schema names are put into SQL and connection options, so only plain identifiers pass.
/// The schema named by `-c search_path=NAME` (or `-csearch_path=NAME`) in connection options.
fn search_path_option(options: &str) -> Option<String> {
    let at = options.find("search_path=")?;
    let value: String = options[at + "search_path=".len()..].chars().take_while(|c| !c.is_whitespace() && *c != ',').collect();
    (!value.is_empty()).then_some(value)
}

fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// A stable 64-bit hash (FNV-1a): every process derives the same lock key for a schema.
fn stable_hash(text: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`, no TLS), in `schema` when given
    /// (created if missing; every pooled connection gets it as its `search_path`), else in
    /// the connection's default schema, and applies pending migrations.
    pub async fn connect(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        Self::connect_with_pool_size(url, schema, DEFAULT_POOL_SIZE).await
    }

    pub async fn connect_with_pool_size(url: &str, schema: Option<&str>, pool_size: usize) -> StoreResult<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Invalid(format!("bad PostgreSQL URL: {e}")))?;
        // A URL that picks its schema (`?options=-csearch_path%3Dname`) gets it created like
        // a schema given here, instead of failing later with "no schema has been selected".
        let from_url = if schema.is_none() { config.get_options().and_then(search_path_option) } else { None };
        let schema = schema.or(from_url.as_deref());
        if let Some(schema) = schema {
            if !valid_schema_name(schema) {
                return Err(StoreError::Invalid(format!("schema name {schema:?}: use lowercase letters, digits and _")));
            }
            let options = match config.get_options() {
                Some(existing) if !existing.trim().is_empty() => format!("{existing} -c search_path={schema}"),
                _ => format!("-c search_path={schema}"),
            };
            config.options(options);
        }
        if config.get_application_name().is_none() {
            config.application_name("leadscore");
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(pool_size.max(1)).build().map_err(|e| StoreError::database("cannot build the connection pool", e))?;
        let mut client = pool.get().await.map_err(|e| StoreError::from(PgError::from(e)))?;
        migrate(&mut client, schema).await.map_err(StoreError::from)?;
        let current: Option<String> =
            client.query_one("SELECT current_schema()", &[]).await.and_then(|row| row.try_get(0)).map_err(|e| StoreError::from(PgError::from(e)))?;
        let schema = current.ok_or_else(|| StoreError::Backend("the connection has no current schema".into()))?;
        let heads_lock_key = stable_hash(&format!("leadscore model heads {schema}"));
        Ok(Self { inner: Arc::new(Inner { pool, schema, heads_lock_key, live_models: Mutex::new(None) }) })
    }

    /// The schema the store's tables are in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Drops the store's schema with everything in it (benchmarks and tests on a schema of
    /// their own). Refuses `public`, which is nobody's own.
    pub async fn drop_schema(&self) -> StoreResult<()> {
        let schema = &self.inner.schema;
        if schema == "public" || !valid_schema_name(schema) {
            return Err(StoreError::Invalid(format!("will not drop schema {schema:?}")));
        }
        let client = self.client().await?;
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.map_err(|e| StoreError::from(PgError::from(e)))?;
        Ok(())
    }

    pub(crate) async fn client(&self) -> PgResult<deadpool_postgres::Object> {
        Ok(self.inner.pool.get().await?)
    }

    /// Takes the model heads lock shared (writes that score) until the transaction ends.
    pub(crate) async fn lock_model_heads_shared(&self, db: &dyn Db) -> PgResult<()> {
        db.rows("SELECT pg_advisory_xact_lock_shared($1)", &[&self.inner.heads_lock_key]).await?;
        Ok(())
    }

    /// Takes the model heads lock exclusively (publish, delete) until the transaction ends.
    pub(crate) async fn lock_model_heads_exclusive(&self, db: &dyn Db) -> PgResult<()> {
        db.rows("SELECT pg_advisory_xact_lock($1)", &[&self.inner.heads_lock_key]).await?;
        Ok(())
    }
}

/// Applies pending migrations under an advisory lock, so processes starting together do
/// not race: the first applies them, the others wait and then find nothing to do.
async fn migrate(client: &mut deadpool_postgres::Object, schema: Option<&str>) -> PgResult<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await?;
    if let Some(schema) = schema {
        // The name was validated (plain identifier). SET LOCAL makes the search path take
        // effect now, for a schema that did not exist when the connection started.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema}")).await?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<i64> = tx.query("SELECT version FROM schema_migrations", &[]).await?.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>()?;
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        if *version == ACCOUNTS_MIGRATION {
            backfill_accounts(&tx).await?;
        }
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version]).await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    tx.commit().await?;
    Ok(())
}

/// Fills `account_id` of the contacts stored before accounts existed, with the rule every
/// contact write uses (`leadscore_core::accounts::account_key`). Reads the contacts in id
/// order, a chunk at a time, and updates each chunk's accounts with one `unnest` statement.
/// Unreadable attributes count as none (the account then comes from the e-mail), as in
/// SQLite. Statements are not cached: they run once, inside the migration transaction.
async fn backfill_accounts(tx: &deadpool_postgres::Transaction<'_>) -> PgResult<()> {
    // The first chunk has no cursor (an id may be any string, even the empty one).
    let first = tx.prepare("SELECT id, attributes, email FROM contacts ORDER BY id LIMIT $1").await?;
    let next = tx.prepare("SELECT id, attributes, email FROM contacts WHERE id > $1 ORDER BY id LIMIT $2").await?;
    let update = tx
        .prepare(
            "UPDATE contacts c SET account_id = u.account_id FROM unnest($1::text[], $2::text[]) AS u(id, account_id)
             WHERE c.id = u.id",
        )
        .await?;
    let mut after: Option<String> = None;
    let mut filled = 0u64;
    loop {
        let rows = match &after {
            None => tx.query(&first, &[&BACKFILL_CHUNK]).await?,
            Some(after) => tx.query(&next, &[after, &BACKFILL_CHUNK]).await?,
        };
        let Some(last) = rows.last() else { break };
        after = Some(last.try_get(0)?);
        let (mut ids, mut accounts) = (Vec::new(), Vec::new());
        for row in &rows {
            let attributes: String = row.try_get(1)?;
            let email: Option<String> = row.try_get(2)?;
            let attributes: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&attributes).unwrap_or_default();
            if let Some(account) = leadscore_core::accounts::account_key(&attributes, email.as_deref()) {
                ids.push(row.try_get::<_, String>(0)?);
                accounts.push(account);
            }
        }
        if !ids.is_empty() {
            filled += tx.execute(&update, &[&ids, &accounts]).await?;
        }
        if (rows.len() as i64) < BACKFILL_CHUNK {
            break;
        }
    }
    tracing::info!(filled, "filled in the accounts of existing contacts");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens on port 1: the pool's error, and beneath it tokio-postgres's, stay
    /// in the chain (this needs no server); a refused connection is a database that may
    /// come back (503 and Retry-After to HTTP clients), not a failed request.
    #[tokio::test]
    async fn a_refused_connection_keeps_the_driver_error() {
        let Err(err) = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test?connect_timeout=5", None).await else {
            panic!("connected to port 1");
        };
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        assert!(err.find_source::<deadpool_postgres::PoolError>().is_some(), "{err:?}");
        assert!(err.find_source::<tokio_postgres::Error>().is_some(), "{err:?}");
    }

    /// A failing statement (and a corrupt stored column) on a real server come back with
    /// the driver's error beneath the StoreError. Runs when LEADSCORE_TEST_POSTGRES_URL is set.
    #[tokio::test]
    async fn sql_errors_and_corrupt_columns_keep_the_driver_error() {
        use leadscore_store::ContactStore;
        let Ok(url) = std::env::var("LEADSCORE_TEST_POSTGRES_URL") else {
            return;
        };
        let schema = format!("t_errors_{}", std::process::id());
        let store = PostgresStore::connect(&url, Some(&schema)).await.expect("connect");
        let client = store.inner.pool.get().await.expect("client");
        let failed = StoreError::from(PgError::from(client.batch_execute("SELECT * FROM no_such_table").await.expect_err("no such table")));
        let driver = failed.find_source::<tokio_postgres::Error>().expect("the tokio-postgres error is a source");
        assert_eq!(driver.code(), Some(&SqlState::UNDEFINED_TABLE));
        assert!(leadscore_store::ErrorChain(&failed).to_string().contains("no_such_table"), "{}", leadscore_store::ErrorChain(&failed));
        client
            .batch_execute("INSERT INTO contacts (id, attributes, groups, created_at, updated_at) VALUES ('x', '{not json', '[]', 0, 0)")
            .await
            .expect("insert");
        drop(client);
        let corrupt = store.get_contact("x").await.expect_err("corrupt attributes");
        let cleanup = store.drop_schema().await;
        assert!(corrupt.find_source::<serde_json::Error>().is_some(), "{corrupt:?}");
        cleanup.expect("drop schema");
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema_name("t_123"));
        assert!(!valid_schema_name("1abc"));
        assert!(!valid_schema_name("a; DROP TABLE x"));
        assert!(!valid_schema_name("Upper"));
        assert!(!valid_schema_name(""));
    }

    #[test]
    fn lock_keys_are_stable() {
        assert_eq!(stable_hash("a"), stable_hash("a"));
        assert_ne!(stable_hash("a"), stable_hash("b"));
    }
}
