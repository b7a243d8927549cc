//! A set of keys for a one-off pass over a file (an import finding the ids it has seen),
//! kept in a private temporary SQLite database: memory stays bounded by its page cache
//! however many keys go in, where a `HashSet` would grow with the file.

use leadscore_store::StoreResult;
use rusqlite::{Connection, OptionalExtension, params};

use crate::db_err;

/// Keys with the line each was first seen on. Deleted when dropped.
pub struct SeenKeys {
    conn: Connection,
}

impl SeenKeys {
    pub fn new() -> StoreResult<Self> {
        // An empty path is SQLite's private temporary database: on disk, deleted on close.
        let conn = Connection::open("").map_err(db_err)?;
        // Nothing here needs to survive a crash: no journal, no fsync. One transaction,
        // never committed, so inserts do not pay a commit each.
        conn.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA cache_size = -8192;
             CREATE TABLE seen (key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID;
             BEGIN;",
        )
        .map_err(db_err)?;
        Ok(Self { conn })
    }

    /// Records `key` as seen on `line`, or answers the line it was first seen on.
    pub fn first_seen(&self, key: &str, line: u64) -> StoreResult<Option<u64>> {
        let inserted = self
            .conn
            .prepare_cached("INSERT INTO seen (key, line) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING")
            .and_then(|mut insert| insert.execute(params![key, line as i64]))
            .map_err(db_err)?;
        if inserted == 1 {
            return Ok(None);
        }
        let line: Option<i64> = self
            .conn
            .prepare_cached("SELECT line FROM seen WHERE key = ?1")
            .and_then(|mut select| select.query_row(params![key], |row| row.get(0)).optional())
            .map_err(db_err)?;
        Ok(line.map(|l| l as u64))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_seen_once_with_their_first_line() {
        let seen = SeenKeys::new().unwrap();
        assert_eq!(seen.first_seen("id:a", 2).unwrap(), None);
        assert_eq!(seen.first_seen("id:b", 3).unwrap(), None);
        assert_eq!(seen.first_seen("id:a", 7).unwrap(), Some(2));
        assert_eq!(seen.first_seen("id:a", 9).unwrap(), Some(2));
        // Many keys: more than the page cache holds.
        for n in 0..200_000u64 {
            assert_eq!(seen.first_seen(&format!("id:{n:040}"), n).unwrap(), None);
        }
        assert_eq!(seen.first_seen(&format!("id:{:040}", 17), 1).unwrap(), Some(17));
    }
}
