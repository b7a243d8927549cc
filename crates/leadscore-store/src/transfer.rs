//! Copying a whole installation from one backend to another (`leadscore migrate`).
//!
//! Design: both backends keep the same tables with the same columns (the PostgreSQL
//! migration mirrors the SQLite one), so the copy works table by table over a
//! backend-neutral row ([`Cell`]s in the column order of [`TableSpec`]) instead of typed
//! per-table methods. That keeps the [`TransferStore`] trait four methods long, copies
//! exactly what is stored (score states, model heads, key hashes, log sequence numbers)
//! without going through the scoring write paths, and lets the round trip be checked by
//! comparing every row of every table. The price is that [`TABLES`] must list every
//! table: each backend has a test that compares it with its real schema, so a migration
//! that adds a table fails that test until the table is listed here.
//!
//! Rows are read in primary-key order in chunks after a keyset cursor (the key of the last
//! row copied), so memory stays constant and no chunk rescans the previous ones.
//! The copy is not one snapshot of the source: stop the processes writing to it first.

use async_trait::async_trait;
use serde::Serialize;

use crate::{StoreError, StoreResult};

/// The neutral types of the columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    /// Any integer (SQLite INTEGER, PostgreSQL BIGINT/SMALLINT).
    Int,
    Real,
    /// SQLite stores 0/1, PostgreSQL BOOLEAN.
    Bool,
}

/// One value of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
}

pub type TransferRow = Vec<Cell>;

/// A table as both backends store it.
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    /// Every column, in the order rows carry them.
    pub columns: &'static [(&'static str, ColumnType)],
    /// The primary key columns: rows are copied in this order, and a cursor is their values.
    pub key: &'static [&'static str],
}

impl TableSpec {
    /// Positions of the key columns in a row.
    pub fn key_positions(&self) -> Vec<usize> {
        self.key.iter().filter_map(|k| self.columns.iter().position(|(c, _)| c == k)).collect()
    }

    /// The cursor (key values) of a row of this table.
    pub fn key_of(&self, row: &[Cell]) -> StoreResult<Vec<Cell>> {
        self.key_positions().into_iter().map(|i| row.get(i).cloned().ok_or_else(|| StoreError::Invalid(format!("a {} row is too short", self.name)))).collect()
    }

    /// Checks that a row has the table's shape before a backend binds it.
    pub fn check_row(&self, row: &[Cell]) -> StoreResult<()> {
        if row.len() != self.columns.len() {
            return Err(StoreError::Invalid(format!("a {} row has {} values, expected {}", self.name, row.len(), self.columns.len())));
        }
        for (cell, (column, kind)) in row.iter().zip(self.columns) {
            let fits = matches!(
                (cell, kind),
                (Cell::Null, _)
                    | (Cell::Text(_), ColumnType::Text)
                    | (Cell::Int(_), ColumnType::Int)
                    | (Cell::Real(_), ColumnType::Real)
                    | (Cell::Bool(_), ColumnType::Bool)
            );
            if !fits {
                return Err(StoreError::Invalid(format!("{}.{column}: {cell:?} is not a {kind:?}", self.name)));
            }
        }
        Ok(())
    }
}

use ColumnType::{Bool, Int, Real, Text};

/// Every table of a leadscore database, in copy order (models before what refers to them;
/// nothing is enforced by foreign keys, so the order is for the reader).
pub static TABLES: &[TableSpec] = &[
    TableSpec {
        name: "models",
        columns: &[("name", Text), ("version", Int), ("source", Text), ("format", Text), ("created_at", Int)],
        key: &["name", "version"],
    },
    TableSpec { name: "model_heads", columns: &[("name", Text), ("version", Int), ("deleted", Bool), ("shadow_of", Text)], key: &["name"] },
    TableSpec {
        name: "contacts",
        columns: &[
            ("id", Text),
            ("email", Text),
            ("attributes", Text),
            ("groups", Text),
            ("owner", Text),
            ("status", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("account_id", Text),
        ],
        key: &["id"],
    },
    TableSpec { name: "contact_groups", columns: &[("grp", Text), ("contact_id", Text)], key: &["grp", "contact_id"] },
    TableSpec {
        name: "events",
        columns: &[
            ("contact_id", Text),
            ("ts", Int),
            ("message_id", Text),
            ("kind", Text),
            ("name", Text),
            ("properties", Text),
            ("context", Text),
            ("received_at", Int),
        ],
        key: &["contact_id", "ts", "message_id"],
    },
    TableSpec { name: "message_ids", columns: &[("message_id", Text), ("contact_id", Text)], key: &["message_id"] },
    TableSpec {
        name: "scores",
        columns: &[
            ("model", Text),
            ("contact_id", Text),
            ("version", Int),
            ("fit", Real),
            ("activity", Real),
            ("total", Real),
            ("band", Text),
            ("flames", Int),
            ("grade", Text),
            ("quadrant", Text),
            ("state", Text),
            ("as_of", Int),
        ],
        key: &["model", "contact_id"],
    },
    TableSpec { name: "contact_log", columns: &[("seq", Int), ("contact_id", Text), ("at", Int), ("kind", Text), ("data", Text)], key: &["seq"] },
    TableSpec {
        name: "jobs",
        columns: &[
            ("id", Int),
            ("kind", Text),
            ("model", Text),
            ("version", Int),
            ("state", Text),
            ("total", Int),
            ("done", Int),
            ("cursor", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("error", Text),
            ("lease_owner", Text),
            ("lease_until", Int),
            ("result", Text),
        ],
        key: &["id"],
    },
    TableSpec {
        name: "api_keys",
        columns: &[("id", Text), ("name", Text), ("hash", Text), ("prefix", Text), ("scopes", Text), ("created_at", Int), ("revoked_at", Int)],
        key: &["id"],
    },
    TableSpec {
        name: "automations",
        columns: &[("name", Text), ("definition", Text), ("enabled", Bool), ("created_at", Int), ("updated_at", Int)],
        key: &["name"],
    },
    TableSpec {
        name: "automation_queue",
        columns: &[("seq", Int), ("contact_id", Text), ("event", Text), ("before", Text), ("enqueued_at", Int)],
        key: &["seq"],
    },
    TableSpec { name: "automation_state", columns: &[("contact_id", Text), ("automation", Text), ("state", Text)], key: &["contact_id", "automation"] },
    TableSpec {
        name: "automation_runs",
        columns: &[("id", Text), ("automation", Text), ("contact_id", Text), ("at", Int), ("reason", Text), ("actions", Text)],
        key: &["id"],
    },
    TableSpec {
        name: "deliveries",
        columns: &[
            ("id", Text),
            ("channel", Text),
            ("target", Text),
            ("secret_ref", Text),
            ("subject", Text),
            ("body", Text),
            ("event_type", Text),
            ("automation", Text),
            ("run_id", Text),
            ("contact_id", Text),
            ("state", Text),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("last_status", Int),
            ("last_error", Text),
            ("lease_owner", Text),
            ("lease_until", Int),
            ("created_at", Int),
            ("updated_at", Int),
            ("delivered_at", Int),
        ],
        key: &["id"],
    },
    TableSpec {
        name: "delivery_attempts",
        columns: &[("delivery_id", Text), ("attempt", Int), ("at", Int), ("success", Bool), ("status", Int), ("error", Text), ("duration_ms", Int)],
        key: &["delivery_id", "attempt"],
    },
    TableSpec { name: "teams", columns: &[("name", Text), ("members", Text), ("cursor", Int), ("created_at", Int), ("updated_at", Int)], key: &["name"] },
    TableSpec { name: "secrets", columns: &[("name", Text), ("value", Text), ("created_at", Int), ("updated_at", Int)], key: &["name"] },
    TableSpec { name: "options", columns: &[("name", Text), ("value", Text), ("updated_at", Int)], key: &["name"] },
    TableSpec {
        name: "webhooks",
        columns: &[
            ("name", Text),
            ("url", Text),
            ("secret_ref", Text),
            ("events", Text),
            ("fields", Text),
            ("debounce_ms", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: &["name"],
    },
    TableSpec { name: "sync_pending", columns: &[("subscription", Text), ("contact_id", Text), ("due_at", Int)], key: &["subscription", "contact_id"] },
    TableSpec { name: "sync_sent", columns: &[("subscription", Text), ("contact_id", Text), ("fields", Text)], key: &["subscription", "contact_id"] },
    TableSpec { name: "leases", columns: &[("name", Text), ("owner", Text), ("until", Int)], key: &["name"] },
    TableSpec {
        name: "outcomes",
        columns: &[
            ("id", Int),
            ("contact_id", Text),
            ("kind", Text),
            ("status", Text),
            ("rating", Int),
            ("note", Text),
            ("author", Text),
            ("at", Int),
            ("scores", Text),
            ("recorded_at", Int),
        ],
        key: &["id"],
    },
    TableSpec {
        name: "users",
        columns: &[
            ("id", Text),
            ("email", Text),
            ("name", Text),
            ("role", Text),
            ("password_hash", Text),
            ("disabled", Bool),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: &["id"],
    },
    TableSpec { name: "audit_log", columns: &[("id", Int), ("at", Int), ("actor", Text), ("action", Text), ("target", Text)], key: &["id"] },
    TableSpec { name: "erasures", columns: &[("id", Int), ("at", Int), ("erased_by", Text)], key: &["id"] },
    TableSpec {
        name: "predictive_models",
        columns: &[("version", Int), ("target", Text), ("trained_at", Int), ("live", Bool), ("model", Text), ("report", Text)],
        key: &["version"],
    },
    TableSpec {
        name: "predictive_scores",
        columns: &[("contact_id", Text), ("version", Int), ("score", Int), ("probability", Real), ("as_of", Int)],
        key: &["contact_id"],
    },
    TableSpec { name: "sessions", columns: &[("id_hash", Text), ("user_id", Text), ("created_at", Int), ("last_seen_at", Int)], key: &["id_hash"] },
];

/// Raw, table-level access for copying a whole installation between backends.
#[async_trait]
pub trait TransferStore: Send + Sync {
    /// Up to `limit` rows of `table` whose key is greater than `after`, in key order.
    async fn export_chunk(&self, table: &'static TableSpec, after: Option<&[Cell]>, limit: usize) -> StoreResult<Vec<TransferRow>>;
    /// Inserts rows as they are (keys included), in one transaction.
    async fn import_chunk(&self, table: &'static TableSpec, rows: Vec<TransferRow>) -> StoreResult<()>;
    async fn count_rows(&self, table: &'static TableSpec) -> StoreResult<u64>;
    /// Called once after every table was imported: generated keys continue after the
    /// imported ones, statistics are refreshed.
    async fn finish_import(&self) -> StoreResult<()>;
}

/// What a copy reports as it goes.
pub enum Progress<'a> {
    Table { table: &'a str, total: u64 },
    Rows { table: &'a str, copied: u64 },
    TableDone { table: &'a str },
}

/// Row counts of one table on both sides after a copy.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TableCount {
    pub table: String,
    pub source: u64,
    pub destination: u64,
}

impl TableCount {
    pub fn matches(&self) -> bool {
        self.source == self.destination
    }
}

/// The verification of a copy.
#[derive(Clone, Debug, Serialize)]
pub struct TransferReport {
    pub tables: Vec<TableCount>,
}

impl TransferReport {
    pub fn verified(&self) -> bool {
        self.tables.iter().all(TableCount::matches)
    }
}

/// Rows copied per chunk: large enough to amortise a transaction, small enough to keep
/// memory flat (an event row is well under a kilobyte).
pub const DEFAULT_CHUNK: usize = 1000;

/// The tables of `store` that hold rows (to refuse a destination that is not empty).
pub async fn non_empty_tables(store: &dyn TransferStore) -> StoreResult<Vec<(&'static str, u64)>> {
    let mut found = Vec::new();
    for table in TABLES {
        let count = store.count_rows(table).await?;
        if count > 0 {
            found.push((table.name, count));
        }
    }
    Ok(found)
}

/// Copies every table of `source` into `destination` (which must be empty; see
/// [`non_empty_tables`]), then counts the rows of both sides.
pub async fn copy_all(
    source: &dyn TransferStore,
    destination: &dyn TransferStore,
    chunk: usize,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> StoreResult<TransferReport> {
    let chunk = chunk.max(1);
    for table in TABLES {
        let total = source.count_rows(table).await?;
        progress(Progress::Table { table: table.name, total });
        let mut after: Option<Vec<Cell>> = None;
        let mut copied = 0u64;
        loop {
            let rows = source.export_chunk(table, after.as_deref(), chunk).await?;
            let Some(last) = rows.last() else { break };
            after = Some(table.key_of(last)?);
            let count = rows.len();
            destination.import_chunk(table, rows).await?;
            copied += count as u64;
            progress(Progress::Rows { table: table.name, copied });
            if count < chunk {
                break;
            }
        }
        progress(Progress::TableDone { table: table.name });
    }
    destination.finish_import().await?;
    let mut tables = Vec::new();
    for table in TABLES {
        tables.push(TableCount { table: table.name.to_string(), source: source.count_rows(table).await?, destination: destination.count_rows(table).await? });
    }
    Ok(TransferReport { tables })
}

/// Every row of a table, in key order (for tests comparing two stores).
pub async fn all_rows(store: &dyn TransferStore, table: &'static TableSpec) -> StoreResult<Vec<TransferRow>> {
    let mut rows: Vec<TransferRow> = Vec::new();
    loop {
        let after = match rows.last() {
            Some(last) => Some(table.key_of(last)?),
            None => None,
        };
        let chunk = store.export_chunk(table, after.as_deref(), 97).await?;
        let done = chunk.len() < 97;
        rows.extend(chunk);
        if done {
            return Ok(rows);
        }
    }
}
