//! The shared storage suite (`leadscore_store::conformance`) against SQLite.

use std::sync::Arc;

use leadscore_store::conformance as suite;
use leadscore_store::{EventStore, Store};
use leadscore_store_sqlite::SqliteStore;

fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_dir(dir.path()).expect("open store");
    (dir, Arc::new(store))
}

macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_dir, store) = fresh();
            suite::$name(store).await;
        }
    )*};
}

suite_tests!(
    ingest_scores_match_full_recompute,
    segments_follow_attributes,
    lead_list_pages_in_order,
    rescore_and_refresh,
    rescore_chunks_are_bounded_by_events,
    account_activity_by_an_instant,
    erase_removes_everything,
    writes_use_the_live_model_versions,
    identify_merges_a_visitor_in_the_same_batch,
    ingest_answers_the_contacts_as_written,
    merging_contacts_replays_the_survivor,
    automations_put_get_list_replace_delete,
    automations_fire_from_the_queue,
    outbox_claims_retries_and_dead_letters,
    cold_contacts_fire_from_the_scheduler,
    settings_round_trip,
    users_and_sessions,
    predictive_versions,
    predictive_scores_sort_sweep_and_fire,
    erasure_reaches_batched_deliveries,
    audit_log_keeps_entries,
    score_changes_sync_in_batches,
    jobs_are_claimed_with_leases,
    outcomes_record_list_erase_merge,
    accounts_follow_attributes_and_domains,
    scan_scores_pages_one_model,
    limits_hold_across_lagging_clocks,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(dir.path()).expect("open"));
        suite::erase_removes_everything(store.clone()).await;
        assert_eq!(store.count_events().await.expect("count"), 1);
    }
    let store = SqliteStore::open_dir(dir.path()).expect("reopen");
    assert_eq!(store.count_events().await.expect("count"), 1, "committed events are on disk");
}

/// `leadscore migrate` between two SQLite databases copies everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_round_trip_sqlite_to_sqlite() {
    let (from_dir, to_dir) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let source = SqliteStore::open_dir(from_dir.path()).expect("open");
    let destination = SqliteStore::open_dir(to_dir.path()).expect("open");
    suite::transfer_round_trip(&source, &destination).await;
}
