//! Embedded SQLite backend: WAL mode, durable commits (`synchronous = FULL`), and one
//! writer thread that commits in groups: every write waiting in the queue joins one
//! transaction (each in its own savepoint, so one failing write does not undo the
//! others), one fsync covers them all, and each caller is answered after the commit.
//! Reads run on a fixed set of reader threads, each with its own read connection,
//! concurrently with the writer.

mod accounts;
mod audit;
mod automations;
mod contacts;
mod events;
mod live;
mod models;
mod outbox;
mod outcomes;
mod predictive;
mod queue;
mod rows;
mod runs;
pub mod scratch;
mod settings;
mod transfer;
mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadscore_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_automations.sql"),
    include_str!("migrations/0003_runs.sql"),
    include_str!("migrations/0004_job_leases.sql"),
    include_str!("migrations/0005_outcomes.sql"),
    include_str!("migrations/0006_accounts.sql"),
    include_str!("migrations/0007_shadow_models.sql"),
    include_str!("migrations/0008_users.sql"),
    include_str!("migrations/0009_predictive.sql"),
    include_str!("migrations/0010_erasures.sql"),
    include_str!("migrations/0011_audit.sql"),
    include_str!("migrations/0012_quadrant_index.sql"),
    include_str!("migrations/0013_contact_search.sql"),
    include_str!("migrations/0014_options.sql"),
    include_str!("migrations/0015_predictive_scores.sql"),
];

/// How many queued writes may join one transaction.
const MAX_GROUP: usize = 256;
/// Writes waiting for the writer; senders wait (back-pressure) when it is full.
const QUEUE_DEPTH: usize = 1024;
/// Reader threads, each with its read connection: at most this many reads run at once (the
/// others wait in the queue). A connection is a page cache (up to [`READER_CACHE_KIB`]);
/// opening one per concurrent read made 256 import tasks recording outcomes open hundreds
/// (800 MiB for a 1,000,000-row file), and two cores gain nothing from more. The threads
/// are the store's own, not tokio's blocking pool: under steady reads that pool only grows
/// (25 threads after an hour of the soak), and the allocator keeps freed memory per thread.
const READERS: usize = 8;
/// The writer's page cache, in KiB (64 MiB). Only the writer changes the database, so its
/// cache stays valid from one write to the next: it holds the pages ingest and the rescore
/// writes touch (contacts, scores, the indexes, the events table's tail).
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Each read connection's page cache, in KiB (8 MiB). In WAL mode SQLite empties a
/// connection's cache when a read transaction begins and another connection has committed
/// since its last one (`pager_reset` on a changed WAL index). Under ingest that is every
/// read, so a reader's cache only serves the read running on it: the interior pages of the
/// B-trees it descends, not a working set. At 64 MiB a rescore chunk (a scan of its
/// contacts' events, two at once when pipelined) filled whole caches, which were then freed
/// into the C allocator at the next read; the process kept that memory and grew at every
/// rescore as the database grew (RELIABILITY.md, "Soak"). Rows not in a cache come from the
/// operating system's file cache.
const READER_CACHE_KIB: i64 = 8 * 1024;
/// What SQLite's page caches can hold in all: the writer's and every reader's (128 MiB;
/// it was 576 MiB with 64 MiB for every connection).
const PAGE_CACHE_BUDGET_KIB: i64 = WRITER_CACHE_KIB + READERS as i64 * READER_CACHE_KIB;
const _: () = assert!(PAGE_CACHE_BUDGET_KIB <= 128 * 1024, "more readers or larger caches: measure the soak again (RELIABILITY.md)");

type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A queued write. Called with the connection it runs the work; called with `None` it
/// does not run and answers its caller with an error (its transaction could not be set up).
type WriteJob = Box<dyn FnOnce(Option<&Connection>) -> (bool, Completion) + Send>;
/// A queued read, called on a reader thread with its connection (or why it could not be
/// opened). Answers false when the work panicked: the thread then opens a new connection.
type ReadJob = Box<dyn FnOnce(StoreResult<&Connection>) -> bool + Send>;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: mpsc::Sender<WriteJob>,
    /// The reader threads' queue; they end when it closes (with the last handle).
    reads: std::sync::mpsc::Sender<ReadJob>,
    /// The next rescore chunk, being read and scored while the current one is written.
    prefetch: Mutex<Option<models::Prefetch>>,
    /// The writer thread, joined when the last handle goes.
    writer_thread: Option<std::thread::JoinHandle<()>>,
}

/// Closing: the writer commits what it has accepted (the queued writes too) before the
/// last handle is gone, so a process that stops after its callers were answered loses
/// nothing and leaves no writer half way through a group.
impl Drop for Inner {
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.writer, closed));
        if let Some(thread) = self.writer_thread.take()
            && thread.thread().id() != std::thread::current().id()
            && thread.join().is_err()
        {
            tracing::error!("the SQLite writer thread panicked");
        }
    }
}

/// A driver error as a [`StoreError`]: [`StoreError::Unavailable`] when the database could
/// not do it now but may in a moment (another process holds the write lock past the busy
/// timeout, the disk is full, a write to the file failed), else [`StoreError::Database`].
pub(crate) fn db_err(err: impl Into<leadscore_store::BoxError>) -> StoreError {
    let err = err.into();
    if err.downcast_ref::<rusqlite::Error>().is_some_and(busy_or_full) { StoreError::unavailable("SQLite", err) } else { StoreError::database("SQLite", err) }
}

/// Busy, locked, disk full or an I/O error: conditions of the machine, not of the request.
fn busy_or_full(err: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::OutOfMemory)
    )
}

/// How long the writer waits for another process's write lock before it answers its
/// callers "unavailable" (503 and Retry-After over HTTP) instead of holding every queued
/// write: a few seconds covers another leadscore process's group commit or rescore chunk.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads wait longer: in WAL mode they wait only for a checkpoint or a recovery.
const READER_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A read connection (the pool's, and tools that read beside the store).
fn open_connection(path: &Path) -> StoreResult<Connection> {
    open_connection_with(path, READER_BUSY_TIMEOUT, READER_CACHE_KIB)
}

fn open_connection_with(path: &Path, busy_timeout: Duration, cache_kib: i64) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(busy_timeout).map_err(db_err)?;
    // The writer uses a few dozen distinct statements; the default cache (16) would make
    // them evict each other and be parsed again on every write.
    conn.set_prepared_statement_cache_capacity(128);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA wal_autocheckpoint = 65536;
         PRAGMA temp_store = MEMORY;
         PRAGMA secure_delete = FAST;",
    )
    .map_err(db_err)?;
    // Negative: a size in KiB rather than in pages.
    conn.execute_batch(&format!("PRAGMA cache_size = -{cache_kib};")).map_err(db_err)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index + 1;
        let failed = |e: rusqlite::Error| StoreError::database(format!("migration {version} failed"), e);
        conn.execute_batch("BEGIN IMMEDIATE").map_err(failed)?;
        let applied = conn
            .execute_batch(sql)
            .map_err(failed)
            .and_then(|()| if version == ACCOUNTS_MIGRATION { backfill_accounts(conn) } else { Ok(()) })
            .and_then(|()| conn.execute_batch(&format!("PRAGMA user_version = {version}; COMMIT;")).map_err(failed));
        if let Err(err) = applied {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(err);
        }
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}

/// The migration that added `contacts.account_id`.
const ACCOUNTS_MIGRATION: usize = 6;

/// Fills `account_id` of the contacts stored before accounts existed.
fn backfill_accounts(conn: &Connection) -> StoreResult<()> {
    let rows: Vec<(String, String, Option<String>)> = conn
        .prepare("SELECT id, attributes, email FROM contacts")
        .map_err(db_err)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(db_err)?
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    let mut update = conn.prepare("UPDATE contacts SET account_id = ?2 WHERE id = ?1").map_err(db_err)?;
    for (id, attributes, email) in rows {
        let attributes: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&attributes).unwrap_or_default();
        if let Some(account) = leadscore_core::accounts::account_key(&attributes, email.as_deref()) {
            update.execute(rusqlite::params![id, account]).map_err(db_err)?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file `leadscore.db` in `dir`.
    pub fn open_dir(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::database(format!("cannot create {}", dir.display()), e))?;
        Self::open(&dir.join("leadscore.db"))
    }

    /// Opens the database file, runs migrations and starts the writer thread.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let writer_conn = open_connection_with(path, WRITER_BUSY_TIMEOUT, WRITER_CACHE_KIB)?;
        migrate(&writer_conn)?;
        let (tx, rx) = mpsc::channel::<WriteJob>(QUEUE_DEPTH);
        let writer_thread = std::thread::Builder::new().name("leadscore-sqlite-writer".into()).spawn(move || writer_loop(writer_conn, rx)).map_err(db_err)?;
        let (reads, queue) = std::sync::mpsc::channel::<ReadJob>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..READERS {
            let (path, queue) = (path.to_path_buf(), queue.clone());
            std::thread::Builder::new().name(format!("leadscore-sqlite-reader-{n}")).spawn(move || reader_loop(&path, &queue)).map_err(db_err)?;
        }
        Ok(Self { inner: Arc::new(Inner { path: path.to_path_buf(), writer: tx, reads, prefetch: Mutex::new(None), writer_thread: Some(writer_thread) }) })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` in the writer's next group transaction and returns after the commit.
    pub(crate) async fn write<T: Send + 'static>(&self, work: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
        let (done_tx, done_rx) = oneshot::channel::<StoreResult<T>>();
        let job: WriteJob = Box::new(move |conn| {
            let result = match conn {
                // A bug that panics inside one write must not take the writer thread (and
                // every later write) down: it fails that write, which is rolled back.
                Some(conn) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
                    tracing::error!("a write panicked; it was rolled back");
                    Err(StoreError::Backend("the write failed unexpectedly; see the server log".into()))
                }),
                None => Err(StoreError::Backend("the write could not be isolated in a savepoint".into())),
            };
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |commit| {
                let _ = done_tx.send(commit.and(result));
            });
            (ok, completion)
        });
        self.inner.writer.send(job).await.map_err(|_| StoreError::Closed)?;
        done_rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Copies the write-ahead log into the database file and empties it (after an
    /// erasure, so the erased rows' old pages do not linger in the log). Waits for
    /// readers on older snapshots up to the busy timeout; a checkpoint that could not
    /// finish is logged, and the log is emptied by a later one.
    pub(crate) async fn checkpoint_wal(&self) {
        let done = self.read(|conn| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).map_err(db_err)).await;
        match done {
            Ok(0) => {}
            Ok(_) => tracing::warn!("the write-ahead log could not be emptied after an erasure (readers busy); a later checkpoint will"),
            Err(err) => tracing::warn!(error = %leadscore_store::ErrorChain(&err), "checkpoint after an erasure failed"),
        }
    }

    /// Runs `work` on the next free reader thread's connection, off the async runtime.
    pub(crate) async fn read<T: Send + 'static>(&self, work: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
        let (done_tx, done_rx) = oneshot::channel::<StoreResult<T>>();
        let job: ReadJob = Box::new(move |conn| {
            // The caller went away while the read waited: nobody needs it.
            if done_tx.is_closed() {
                return true;
            }
            let (result, sound) = match conn {
                Ok(conn) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn))) {
                    Ok(result) => (result, true),
                    Err(_) => {
                        tracing::error!("a read panicked");
                        (Err(StoreError::Backend("the read failed unexpectedly; see the server log".into())), false)
                    }
                },
                Err(err) => (Err(err), true),
            };
            let _ = done_tx.send(result);
            sound
        });
        self.inner.reads.send(job).map_err(|_| StoreError::Closed)?;
        done_rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// A reader thread: takes the next queued read, runs it on its connection (opened at the
/// first read, and again after one that failed to open or whose work panicked), until the
/// queue closes.
fn reader_loop(path: &Path, queue: &Mutex<std::sync::mpsc::Receiver<ReadJob>>) {
    let mut conn: Option<Connection> = None;
    loop {
        // Only the thread that takes the next job holds the lock; the others wait for it.
        let job = match queue.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if conn.is_none() {
            match open_connection(path) {
                Ok(opened) => conn = Some(opened),
                Err(err) => {
                    job(Err(err));
                    continue;
                }
            }
        }
        if let Some(open) = conn.as_ref()
            && !job(Ok(open))
        {
            conn = None;
        }
    }
}

/// Runs a fixed statement through the statement cache (no re-parsing per write).
fn run_statement(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ()).map_err(db_err)
}

fn rollback_to_savepoint(conn: &Connection) -> StoreResult<()> {
    run_statement(conn, "ROLLBACK TO job")?;
    run_statement(conn, "RELEASE job")
}

/// The one error of a write group, for each of its callers: unavailable when it was.
fn group_error(what: &str, err: &Arc<StoreError>) -> StoreError {
    if err.is_transient() { StoreError::unavailable(what, Arc::clone(err)) } else { StoreError::database(what, Arc::clone(err)) }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<WriteJob>) {
    let mut group: Vec<WriteJob> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let size = group.len();
        metrics::gauge!("leadscore_write_queue_depth").set(rx.len() as f64);
        metrics::histogram!("leadscore_write_group_size").record(size as f64);
        let mut completions = Vec::with_capacity(size);
        if let Err(err) = run_statement(&conn, "BEGIN IMMEDIATE") {
            // Another process holds the write lock past the busy timeout (or the file
            // cannot be written): every write of the group is answered with the error
            // (unavailable: retry), none is run.
            tracing::warn!(error = %leadscore_store::ErrorChain(&err), refused = size, "cannot begin a write transaction");
            let err = Arc::new(err);
            for job in group.drain(..) {
                let (_, completion) = job(None);
                completion(Err(group_error("cannot begin a write transaction", &err)));
            }
            continue;
        }
        // A lone write needs no savepoint: if it fails, the whole transaction rolls back.
        // In a group, each write gets one, so a failing write does not undo the others.
        let isolate = size > 1;
        let mut failed_alone = false;
        // SQLite ends the transaction itself after some failures (disk full, I/O error):
        // then the writes before are undone too and the ones after must not run outside a
        // transaction (each statement would commit on its own), so the group fails whole.
        let mut rolled_back = false;
        for job in group.drain(..) {
            if rolled_back {
                let (_, completion) = job(None);
                completions.push(completion);
                continue;
            }
            let savepoint = isolate && run_statement(&conn, "SAVEPOINT job").is_ok();
            if isolate && !savepoint {
                let (_, completion) = job(None);
                completions.push(completion);
                continue;
            }
            let (ok, completion) = job(Some(&conn));
            if !ok && conn.is_autocommit() {
                rolled_back = true;
                completions.push(completion);
                continue;
            }
            if savepoint {
                let end = if ok { run_statement(&conn, "RELEASE job") } else { rollback_to_savepoint(&conn) };
                if let Err(err) = end {
                    tracing::error!(error = %leadscore_store::ErrorChain(&err), "savepoint end failed");
                }
            } else if !ok {
                failed_alone = true;
            }
            completions.push(completion);
        }
        let commit = if rolled_back {
            tracing::warn!(size, "SQLite rolled a write group back after a failed write; its writes are answered unavailable");
            Err(StoreError::unavailable("SQLite rolled the write group back after a write failed", std::io::Error::other("transaction rolled back")))
        } else if failed_alone {
            run_statement(&conn, "ROLLBACK")
        } else {
            run_statement(&conn, "COMMIT")
        };
        if commit.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        // Every caller of the group gets the one commit error as its source.
        let commit = commit.map_err(Arc::new);
        for completion in completions {
            completion(commit.as_ref().map(|_| ()).map_err(|e| group_error("the group commit failed", e)));
        }
        metrics::histogram!("leadscore_write_commit_seconds").record(started.elapsed().as_secs_f64());
        tracing::trace!(size, elapsed_us = started.elapsed().as_micros() as u64, "write group committed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accounts_migration_fills_in_existing_contacts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open_connection(&dir.path().join("old.db")).expect("open");
        for sql in &MIGRATIONS[..ACCOUNTS_MIGRATION - 1] {
            conn.execute_batch(sql).expect("older migration");
        }
        conn.execute_batch(&format!("PRAGMA user_version = {}", ACCOUNTS_MIGRATION - 1)).expect("version");
        for (id, email, attributes) in [("a", Some("ann@acme.com"), "{}"), ("b", Some("bob@gmail.com"), "{}"), ("c", None, r#"{"account_id":"x-1"}"#)] {
            conn.execute(
                "INSERT INTO contacts (id, email, attributes, groups, created_at, updated_at) VALUES (?1, ?2, ?3, '[]', 0, 0)",
                rusqlite::params![id, email, attributes],
            )
            .expect("insert");
        }
        migrate(&conn).expect("migrate");
        let accounts: Vec<(String, Option<String>)> = conn
            .prepare("SELECT id, account_id FROM contacts ORDER BY id")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("read");
        assert_eq!(accounts, [("a".into(), Some("acme.com".into())), ("b".into(), None), ("c".into(), Some("x-1".into()))]);
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_writer_lives_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open_dir(dir.path()).expect("open");
        let panicked = store
            .write(|conn| -> StoreResult<()> {
                conn.execute("INSERT INTO contacts (id, attributes, created_at, updated_at) VALUES ('x', '{}', 0, 0)", []).map_err(db_err)?;
                panic!("a bug");
            })
            .await;
        assert!(matches!(panicked, Err(StoreError::Backend(_))));
        let count = store
            .write(|conn| conn.query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get::<_, i64>(0)).map_err(db_err))
            .await
            .expect("the writer still answers");
        assert_eq!(count, 0, "the panicking write was rolled back");
    }

    /// A failing statement and a corrupt stored column come back with the driver's error
    /// beneath the StoreError, not flattened into a string.
    #[tokio::test]
    async fn driver_errors_stay_in_the_source_chain() {
        use leadscore_store::ContactStore;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open_dir(dir.path()).expect("open");
        let failed = store.read(|conn| conn.execute_batch("SELECT * FROM no_such_table").map_err(db_err)).await.expect_err("no such table");
        assert!(matches!(failed, StoreError::Database { .. }), "{failed:?}");
        let sqlite = failed.find_source::<rusqlite::Error>().expect("the rusqlite error is a source");
        assert!(sqlite.to_string().contains("no_such_table"), "{sqlite}");
        assert!(leadscore_store::ErrorChain(&failed).to_string().contains("no_such_table"));

        store
            .write(|conn| conn.execute("INSERT INTO contacts (id, attributes, created_at, updated_at) VALUES ('x', '{not json', 0, 0)", []).map_err(db_err))
            .await
            .expect("insert");
        let corrupt = store.get_contact("x").await.expect_err("corrupt attributes");
        assert!(corrupt.find_source::<serde_json::Error>().is_some(), "{corrupt:?}");
    }

    /// Many reads at once share a few connections instead of each opening its own (each
    /// one a page cache and a thread): an import recording outcomes from
    /// 256 tasks at once peaked at 800 MiB.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_use_at_most_the_pooled_connections() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open_dir(dir.path()).expect("open");
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (store, now, most) = (store.clone(), now.clone(), most.clone());
            reads.spawn(async move {
                store
                    .read(move |conn| {
                        let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(at_once, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        let n = conn.query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get::<_, i64>(0)).map_err(db_err);
                        now.fetch_sub(1, Ordering::SeqCst);
                        n
                    })
                    .await
            });
        }
        while let Some(read) = reads.join_next().await {
            assert_eq!(read.expect("joined").expect("read"), 0);
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= READERS, "{most} reads ran at once, on as many connections");
    }

    /// Reads run on the store's own [`READERS`] threads, however many callers wait. On
    /// tokio's blocking pool a 60-minute soak grew to 25 threads (a read's permit came back
    /// before its thread was idle again, so the next read started another thread, and with
    /// reads every few milliseconds none was ever idle long enough to end), and mimalloc
    /// keeps freed pages per thread: the server's memory grew with its threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_run_on_a_fixed_set_of_threads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open_dir(dir.path()).expect("open");
        let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
        for _ in 0..50 {
            let mut reads = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let (store, threads) = (store.clone(), threads.clone());
                reads.spawn(async move {
                    store
                        .read(move |conn| {
                            threads.lock().expect("threads").insert(std::thread::current().id());
                            conn.query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get::<_, i64>(0)).map_err(db_err)
                        })
                        .await
                });
            }
            while let Some(read) = reads.join_next().await {
                assert_eq!(read.expect("joined").expect("read"), 0);
            }
        }
        let used = threads.lock().expect("threads").len();
        assert!(used <= READERS, "3,200 reads ran on {used} threads");
    }

    /// The page caches of every connection the store opens add up to at most the budget:
    /// the writer's cache is the large one, each reader's (emptied by SQLite at every read
    /// that follows a commit) small. With all the pool's readers open at once, as under
    /// load, 64 MiB each made the bound 576 MiB and the soak's memory grow at every rescore.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_page_caches_of_all_connections_stay_within_the_budget() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open_dir(dir.path()).expect("open");
        let cache_kib = |conn: &Connection| conn.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0)).map_err(db_err).map(|size| -size);
        // Every reader at once: each read waits for the others, so each has its own connection.
        let all_open = Arc::new(std::sync::Barrier::new(READERS));
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..READERS {
            let (store, all_open) = (store.clone(), all_open.clone());
            reads.spawn(async move {
                store
                    .read(move |conn| {
                        all_open.wait();
                        cache_kib(conn)
                    })
                    .await
            });
        }
        let mut readers = Vec::new();
        while let Some(read) = reads.join_next().await {
            readers.push(read.expect("joined").expect("cache size"));
        }
        assert_eq!(readers.len(), READERS, "every reader was open at once");
        let writer = store.write(move |conn| cache_kib(conn)).await.expect("the writer's cache size");
        for reader in &readers {
            assert!(*reader > 0 && *reader <= READER_CACHE_KIB, "a reader's cache is {reader} KiB");
            assert!(*reader < writer, "a reader's cache ({reader} KiB) is smaller than the writer's ({writer} KiB)");
        }
        let total = writer + readers.iter().sum::<i64>();
        assert!(total <= PAGE_CACHE_BUDGET_KIB, "the page caches add up to {total} KiB, over the budget of {PAGE_CACHE_BUDGET_KIB} KiB");
    }
}
