//! Table-level export and import for `leadscore migrate` (see `leadscore_store::transfer`).
//! Table and column names come from the static `TABLES` list, never from input, so they
//! are put into the SQL text as they are.

use async_trait::async_trait;
use leadscore_store::transfer::{Cell, ColumnType, TableSpec, TransferRow, TransferStore};
use leadscore_store::{StoreError, StoreResult};
use rusqlite::types::{Value, ValueRef};

use crate::{SqliteStore, db_err};

fn select_sql(table: &TableSpec, with_cursor: bool) -> String {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    let key = table.key.join(", ");
    let filter = if with_cursor {
        let placeholders: Vec<String> = (1..=table.key.len()).map(|i| format!("?{i}")).collect();
        format!("WHERE ({key}) > ({})", placeholders.join(", "))
    } else {
        String::new()
    };
    let limit = if with_cursor { table.key.len() + 1 } else { 1 };
    format!("SELECT {} FROM {} {filter} ORDER BY {key} LIMIT ?{limit}", columns.join(", "), table.name)
}

fn to_value(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(text) => Value::Text(text.clone()),
        Cell::Int(n) => Value::Integer(*n),
        Cell::Real(x) => Value::Real(*x),
        Cell::Bool(b) => Value::Integer(i64::from(*b)),
    }
}

fn from_value(table: &TableSpec, column: &str, kind: ColumnType, value: ValueRef<'_>) -> StoreResult<Cell> {
    let wrong = || StoreError::Backend(format!("{}.{column}: unexpected {:?} for a {kind:?} column", table.name, value.data_type()));
    Ok(match (kind, value) {
        (_, ValueRef::Null) => Cell::Null,
        (ColumnType::Text, ValueRef::Text(bytes)) => Cell::Text(String::from_utf8(bytes.to_vec()).map_err(|_| wrong())?),
        (ColumnType::Int, ValueRef::Integer(n)) => Cell::Int(n),
        (ColumnType::Real, ValueRef::Real(x)) => Cell::Real(x),
        // REAL affinity keeps integral values as REAL, but a value may still arrive as one.
        (ColumnType::Real, ValueRef::Integer(n)) => Cell::Real(n as f64),
        (ColumnType::Bool, ValueRef::Integer(n)) => Cell::Bool(n != 0),
        _ => return Err(wrong()),
    })
}

#[async_trait]
impl TransferStore for SqliteStore {
    async fn export_chunk(&self, table: &'static TableSpec, after: Option<&[Cell]>, limit: usize) -> StoreResult<Vec<TransferRow>> {
        let mut params: Vec<Value> = after.map(|key| key.iter().map(to_value).collect()).unwrap_or_default();
        if after.is_some_and(|key| key.len() != table.key.len()) {
            return Err(StoreError::Invalid(format!("a cursor of {} has the wrong length", table.name)));
        }
        let sql = select_sql(table, after.is_some());
        params.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(db_err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(db_err)? {
                let mut cells = Vec::with_capacity(table.columns.len());
                for (index, (column, kind)) in table.columns.iter().enumerate() {
                    cells.push(from_value(table, column, *kind, row.get_ref(index).map_err(db_err)?)?);
                }
                out.push(cells);
            }
            Ok(out)
        })
        .await
    }

    async fn import_chunk(&self, table: &'static TableSpec, rows: Vec<TransferRow>) -> StoreResult<()> {
        for row in &rows {
            table.check_row(row)?;
        }
        let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!("INSERT INTO {} ({}) VALUES ({})", table.name, columns.join(", "), placeholders.join(", "));
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
            for row in &rows {
                stmt.execute(rusqlite::params_from_iter(row.iter().map(to_value))).map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn count_rows(&self, table: &'static TableSpec) -> StoreResult<u64> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name);
        self.read(move |conn| {
            let count: i64 = conn.query_row(&sql, [], |r| r.get(0)).map_err(db_err)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    /// Nothing to do: AUTOINCREMENT keys continue after the largest key inserted (SQLite
    /// updates `sqlite_sequence` on explicit inserts too).
    async fn finish_import(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `TABLES` must list every table of the schema with its columns, or a migration
    /// would silently leave data behind.
    #[tokio::test]
    async fn the_transfer_tables_are_the_schema() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open_dir(dir.path()).expect("open");
        let schema = store
            .read(|conn| {
                let mut stmt =
                    conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").map_err(db_err)?;
                let names: Vec<String> = stmt.query_map([], |r| r.get(0)).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
                let mut tables = Vec::new();
                // The search index is derived from the contacts (their triggers fill it on
                // import too): not transferred.
                for name in names.into_iter().filter(|name| !name.starts_with("contact_search")) {
                    let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{name}') ORDER BY cid")).map_err(db_err)?;
                    let columns: Vec<String> = stmt.query_map([], |r| r.get(0)).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
                    tables.push((name, columns));
                }
                Ok(tables)
            })
            .await
            .expect("read the schema");
        let mut listed: Vec<(String, Vec<String>)> =
            leadscore_store::transfer::TABLES.iter().map(|t| (t.name.to_string(), t.columns.iter().map(|(c, _)| c.to_string()).collect())).collect();
        listed.sort();
        assert_eq!(listed, schema);
    }
}
