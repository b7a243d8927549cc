//! `leadscore migrate --from URL --to URL`: copies a whole installation between backends
//! (SQLite ↔ PostgreSQL, or SQLite → SQLite) table by table, in chunks, then verifies the
//! row counts of both sides. The copy itself is `leadscore_store::transfer::copy_all`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use leadscore_store::transfer::{self, Progress};
use leadscore_store::{Store, TransferStore};
use leadscore_store_sqlite::SqliteStore;

/// A store that can also be copied from and into.
pub trait Backend: Store + TransferStore {}
impl<T: Store + TransferStore> Backend for T {}

/// Opens `url`: `postgres://…` / `postgresql://…`, or `sqlite://PATH` where PATH is a
/// database file (with an extension, e.g. `.db`) or a data directory (as `--data`). `must_exist` refuses a SQLite path
/// that does not exist, so a typo in `--from` does not copy a freshly created empty database.
async fn open(url: &str, must_exist: bool) -> Result<Arc<dyn Backend>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = leadscore_store_postgres::PostgresStore::connect(url, None)
            .await
            .with_context(|| format!("cannot open the PostgreSQL database {}", crate::redact(url)))?;
        return Ok(Arc::new(store));
    }
    let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
        bail!("unsupported database URL {:?}; use sqlite://FILE-OR-DIR or postgres://…", crate::redact(url));
    };
    // A data directory (as `--data` takes) holds `leadscore.db`: an existing directory, a
    // path ending in `/`, or a new path without an extension is taken as one.
    let is_dir = path.ends_with('/') || {
        let candidate = PathBuf::from(path);
        candidate.is_dir() || (!candidate.exists() && candidate.extension().is_none())
    };
    let path = if is_dir { PathBuf::from(path).join("leadscore.db") } else { PathBuf::from(path) };
    if must_exist && !path.exists() {
        bail!("{} does not exist", path.display());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(Arc::new(SqliteStore::open(&path).with_context(|| format!("cannot open the database {}", path.display()))?))
}

pub async fn run(from: &str, to: &str, json: bool) -> Result<()> {
    let source = open(from, true).await.context("--from")?;
    let destination = open(to, false).await.context("--to")?;
    let source: &dyn TransferStore = source.as_ref();
    let destination: &dyn TransferStore = destination.as_ref();
    let filled = transfer::non_empty_tables(destination).await?;
    if !filled.is_empty() {
        let listing: Vec<String> = filled.iter().map(|(table, count)| format!("{table}: {count}")).collect();
        bail!(
            "the destination {} is not empty ({}); migrate copies into an empty database only, so nothing was copied. \
             Point --to at a new database (or schema, or directory).",
            crate::redact(to),
            listing.join(", ")
        );
    }
    eprintln!("copying {} → {}", crate::redact(from), crate::redact(to));
    let started = std::time::Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut on_progress = |event: Progress<'_>| match event {
        Progress::Table { table, total } => bar = Some(crate::progress_bar(total, table)),
        Progress::Rows { copied, .. } => {
            if let Some(bar) = &bar {
                bar.set_position(copied);
            }
        }
        Progress::TableDone { table } => {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
                eprintln!("  {table:<15} {:>10} rows", bar.position());
            }
        }
    };
    let report = transfer::copy_all(source, destination, transfer::DEFAULT_CHUNK, &mut on_progress).await?;
    let verified = report.verified();
    if json {
        println!("{}", serde_json::json!({ "verified": verified, "tables": report.tables, "seconds": started.elapsed().as_secs_f64() }));
    } else {
        println!("{:<15} {:>10} {:>12}", "table", "source", "destination");
        for count in &report.tables {
            println!("{:<15} {:>10} {:>12}{}", count.table, count.source, count.destination, if count.matches() { "" } else { "  DIFFERENT" });
        }
        if verified {
            println!("verified: every table has the same number of rows on both sides ({:.1?})", started.elapsed());
        } else {
            println!("NOT verified: some tables differ (was the source written to during the copy?)");
        }
    }
    if !verified {
        std::process::exit(1);
    }
    Ok(())
}
