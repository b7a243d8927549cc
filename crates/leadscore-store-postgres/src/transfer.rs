//! Table-level export and import for `leadscore migrate` (see `leadscore_store::transfer`).
//! Table and column names come from the static `TABLES` list, never from input, so they
//! are put into the SQL text as they are. Every value is bound with an explicit cast to
//! the neutral type (BIGINT, DOUBLE PRECISION, TEXT, BOOLEAN), so one Rust type per
//! neutral type binds, and PostgreSQL's assignment casts fit it to the column (e.g. the
//! SMALLINT `flames`).

use async_trait::async_trait;
use leadscore_store::transfer::{Cell, ColumnType, TABLES, TableSpec, TransferRow, TransferStore};
use leadscore_store::{StoreError, StoreResult};
use tokio_postgres::types::ToSql;

use crate::contacts::count;
use crate::{Db, PgError, PostgresStore, RetryOn, write_tx};

/// PostgreSQL accepts at most 65,535 parameters per statement.
const MAX_PARAMETERS: usize = 65_535;

fn sql_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "TEXT",
        ColumnType::Int => "BIGINT",
        ColumnType::Real => "DOUBLE PRECISION",
        ColumnType::Bool => "BOOLEAN",
    }
}

fn column_type(table: &TableSpec, column: &str) -> ColumnType {
    table.columns.iter().find(|(c, _)| *c == column).map_or(ColumnType::Text, |(_, kind)| *kind)
}

/// A cell as a parameter of the column's neutral type (NULL typed too, so it binds).
fn parameter(cell: &Cell, kind: ColumnType) -> Box<dyn ToSql + Sync + Send> {
    match (cell, kind) {
        (Cell::Text(text), _) => Box::new(text.clone()),
        (Cell::Int(n), _) => Box::new(*n),
        (Cell::Real(x), _) => Box::new(*x),
        (Cell::Bool(b), _) => Box::new(*b),
        (Cell::Null, ColumnType::Text) => Box::new(None::<String>),
        (Cell::Null, ColumnType::Int) => Box::new(None::<i64>),
        (Cell::Null, ColumnType::Real) => Box::new(None::<f64>),
        (Cell::Null, ColumnType::Bool) => Box::new(None::<bool>),
    }
}

fn cell(row: &tokio_postgres::Row, index: usize, kind: ColumnType) -> Result<Cell, PgError> {
    Ok(match kind {
        ColumnType::Text => row.try_get::<_, Option<String>>(index)?.map_or(Cell::Null, Cell::Text),
        ColumnType::Int => row.try_get::<_, Option<i64>>(index)?.map_or(Cell::Null, Cell::Int),
        ColumnType::Real => row.try_get::<_, Option<f64>>(index)?.map_or(Cell::Null, Cell::Real),
        ColumnType::Bool => row.try_get::<_, Option<bool>>(index)?.map_or(Cell::Null, Cell::Bool),
    })
}

fn select_sql(table: &TableSpec, with_cursor: bool) -> String {
    let columns: Vec<String> = table.columns.iter().map(|(c, kind)| format!("{c}::{}", sql_type(*kind))).collect();
    let key = table.key.join(", ");
    let (filter, limit) = if with_cursor {
        let values: Vec<String> = table.key.iter().enumerate().map(|(i, k)| format!("${}::{}", i + 1, sql_type(column_type(table, k)))).collect();
        (format!("WHERE ({key}) > ({})", values.join(", ")), table.key.len() + 1)
    } else {
        (String::new(), 1)
    };
    format!("SELECT {} FROM {} {filter} ORDER BY {key} LIMIT ${limit}", columns.join(", "), table.name)
}

#[async_trait]
impl TransferStore for PostgresStore {
    async fn export_chunk(&self, table: &'static TableSpec, after: Option<&[Cell]>, limit: usize) -> StoreResult<Vec<TransferRow>> {
        if after.is_some_and(|key| key.len() != table.key.len()) {
            return Err(StoreError::Invalid(format!("a cursor of {} has the wrong length", table.name)));
        }
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(key) = after {
            for (value, column) in key.iter().zip(table.key) {
                params.push(parameter(value, column_type(table, column)));
            }
        }
        params.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        let rows = client.rows(&select_sql(table, after.is_some()), &refs).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let cells: Result<Vec<Cell>, PgError> = table.columns.iter().enumerate().map(|(index, (_, kind))| cell(row, index, *kind)).collect();
            out.push(cells?);
        }
        Ok(out)
    }

    async fn import_chunk(&self, table: &'static TableSpec, rows: Vec<TransferRow>) -> StoreResult<()> {
        for row in &rows {
            table.check_row(row)?;
        }
        let width = table.columns.len();
        let per_statement = (MAX_PARAMETERS / width.max(1)).max(1);
        let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        write_tx!(self, RetryOn::Contention, |tx| {
            for batch in rows.chunks(per_statement) {
                let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::with_capacity(batch.len() * width);
                let mut tuples = Vec::with_capacity(batch.len());
                for row in batch {
                    let mut placeholders = Vec::with_capacity(width);
                    for (value, (_, kind)) in row.iter().zip(table.columns) {
                        params.push(parameter(value, *kind));
                        placeholders.push(format!("${}::{}", params.len(), sql_type(*kind)));
                    }
                    tuples.push(format!("({})", placeholders.join(", ")));
                }
                // Keys are copied as they are, generated identity columns included.
                let sql = format!("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES {}", table.name, columns.join(", "), tuples.join(", "));
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
                // Not through the statement cache: chunk sizes vary, and each text is used once.
                tx.execute(sql.as_str(), &refs).await.map_err(PgError::from)?;
            }
            Ok(())
        })
    }

    async fn count_rows(&self, table: &'static TableSpec) -> StoreResult<u64> {
        count(self, &format!("SELECT COUNT(*) FROM {}", table.name)).await
    }

    /// Identity columns (`contact_log.seq`, `jobs.id`, `automation_queue.seq`, `outcomes.id`) continue
    /// after the imported keys, and the planner gets statistics for the freshly filled
    /// tables.
    async fn finish_import(&self) -> StoreResult<()> {
        let client = self.client().await?;
        for (table, column) in [("contact_log", "seq"), ("jobs", "id"), ("automation_queue", "seq"), ("outcomes", "id")] {
            client
                .batch_execute(&format!("SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE(MAX({column}), 0) + 1, false) FROM {table}"))
                .await
                .map_err(PgError::from)?;
        }
        let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        client.batch_execute(&format!("ANALYZE {}", names.join(", "))).await.map_err(PgError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_queries_cast_each_key_to_its_type() {
        let events = TABLES.iter().find(|t| t.name == "events").expect("events is listed");
        let sql = select_sql(events, true);
        assert!(sql.contains("WHERE (contact_id, ts, message_id) > ($1::TEXT, $2::BIGINT, $3::TEXT)"), "{sql}");
        assert!(sql.ends_with("LIMIT $4"), "{sql}");
    }
}
