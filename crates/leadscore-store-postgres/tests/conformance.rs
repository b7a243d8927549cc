//! The shared storage suite (`leadscore_store::conformance`) against PostgreSQL, plus
//! checks of what only a shared database has to get right (concurrent writers, delivery
//! workers and automation evaluations in several processes).
//!
//! Runs when `LEADSCORE_TEST_POSTGRES_URL` is set (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); each test works in a schema of its own,
//! dropped afterwards. Without the variable every test prints a notice and passes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use leadscore_core::Model;
use leadscore_core::automation::Automation;
use leadscore_store::conformance::{self as suite, MODEL_A, MODEL_ALL};
use leadscore_store::runner::{AutomationSet, DeliveryQuery, DeliveryState, LiveAutomation, RunQuery};
use leadscore_store::scoring::{ScoringEvent, card_from_events};
use leadscore_store::{
    AccountStore, AutomationStore, ContactStore, ContactUpsert, EventKind, EventStore, Identity, IngestStatus, ModelSet, ModelStore, NewAutomation, NewEvent,
    NewModelVersion, NewOutcome, OutboxStore, OutcomeKind, OutcomeStore, PublishedModel, RunStore, SettingsStore, Store,
};
use leadscore_store_postgres::PostgresStore;
use serde_json::{Map, Value, json};

const URL_VARIABLE: &str = "LEADSCORE_TEST_POSTGRES_URL";
const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MINUTE: i64 = 60_000;

fn database_url() -> Option<String> {
    std::env::var(URL_VARIABLE).ok().filter(|url| !url.trim().is_empty())
}

/// A schema name no other test (or test process) uses.
fn unique_schema(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let short: String = test.chars().take(30).collect();
    format!("t_{short}_{}_{nanos:x}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn drop_schemas(url: &str, schemas: &[String]) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to drop the test schema");
    let connection = tokio::spawn(connection);
    for schema in schemas {
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.expect("drop the test schema");
    }
    drop(client);
    let _ = connection.await;
}

/// Runs `test(url, schema)` when PostgreSQL is configured, then drops the schema (and
/// `<schema>_seq`, which a test may use for a second store) even when the test panicked.
async fn isolated<F, Fut>(name: &str, test: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = database_url() else {
        println!("{name}: skipped, {URL_VARIABLE} is not set");
        return;
    };
    let schema = unique_schema(name);
    let outcome = tokio::spawn(test(url.clone(), schema.clone())).await;
    drop_schemas(&url, &[schema.clone(), format!("{schema}_seq")]).await;
    if let Err(err) = outcome {
        if err.is_panic() {
            std::panic::resume_unwind(err.into_panic());
        }
        panic!("{name}: the test task failed: {err}");
    }
}

async fn connect(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::connect(url, Some(schema)).await.expect("connect to PostgreSQL")
}

macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            isolated(stringify!($name), |url, schema| async move {
                let store: Arc<dyn Store> = Arc::new(connect(&url, &schema).await);
                suite::$name(store).await;
            })
            .await;
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
    limits_hold_across_lagging_clocks,
    outcomes_record_list_erase_merge,
    accounts_follow_attributes_and_domains,
    scan_scores_pages_one_model,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_applied_once_when_processes_start_together() {
    isolated("migrations_once", |url, schema| async move {
        let opening: Vec<_> = (0..4)
            .map(|_| {
                let (url, schema) = (url.clone(), schema.clone());
                tokio::spawn(async move { PostgresStore::connect(&url, Some(&schema)).await.map(|_| ()) })
            })
            .collect();
        for handle in opening {
            handle.await.expect("task").expect("every process opens the store");
        }
        let store = connect(&url, &schema).await;
        assert_eq!(store.schema(), schema);
        assert_eq!(store.count_contacts().await.expect("count"), 0);
    })
    .await;
}

/// The migrations before accounts (version 6), as a database created by an older release
/// has them.
const MIGRATIONS_BEFORE_ACCOUNTS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_automations.sql"),
    include_str!("../migrations/0003_runs.sql"),
    include_str!("../migrations/0004_job_leases.sql"),
    include_str!("../migrations/0005_outcomes.sql"),
];

/// Migration 6 fills in the accounts of the contacts stored before it (in chunks of a few
/// thousand), with the rule every contact write uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_migration_fills_in_existing_contacts() {
    isolated("accounts_migration", |url, schema| async move {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
        let connection = tokio::spawn(connection);
        // The schema as migrations 1–5 left it (the store lists applied versions in
        // `schema_migrations`).
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path TO {schema};
                 CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
                 INSERT INTO schema_migrations (version) SELECT generate_series(1, {})",
                MIGRATIONS_BEFORE_ACCOUNTS.len()
            ))
            .await
            .expect("schema");
        for sql in MIGRATIONS_BEFORE_ACCOUNTS {
            client.batch_execute(sql).await.expect("older migration");
        }
        for (id, email, attributes) in [
            ("", Some("zed@zeta.io"), "{}"),
            ("a", Some("ann@acme.com"), "{}"),
            ("b", Some("bob@gmail.com"), "{}"),
            ("c", None, r#"{"account_id":"x-1"}"#),
            ("d", Some("dee@beta.io"), r#"{"account": 7}"#),
            ("e", Some("eve@corp.org"), "not JSON"),
            ("f", Some("fay@nodomain"), "{}"),
        ] {
            client
                .execute(
                    "INSERT INTO contacts (id, email, attributes, groups, created_at, updated_at) VALUES ($1, $2, $3, '[]', 0, 0)",
                    &[&id, &email, &attributes],
                )
                .await
                .expect("insert");
        }
        // More contacts than one chunk of the backfill.
        const GENERATED: i64 = 12_000;
        client
            .execute(
                "INSERT INTO contacts (id, email, attributes, groups, created_at, updated_at)
                 SELECT 'g' || lpad(n::text, 5, '0'), 'u' || n || '@' || CASE WHEN n % 5 = 0 THEN 'gmail.com' ELSE 'd' || n % 3 || '.com' END,
                        '{}', '[]', 0, 0
                 FROM generate_series(1, $1::bigint) AS n",
                &[&GENERATED],
            )
            .await
            .expect("generate");

        let store = connect(&url, &schema).await;
        let read = || async {
            let rows = client.query("SELECT id, account_id FROM contacts ORDER BY id", &[]).await.expect("read");
            rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1))).collect::<Vec<_>>()
        };
        let accounts = read().await;
        let named: Vec<(&str, Option<&str>)> = accounts[..7].iter().map(|(id, account)| (id.as_str(), account.as_deref())).collect();
        assert_eq!(
            named,
            [("", Some("zeta.io")), ("a", Some("acme.com")), ("b", None), ("c", Some("x-1")), ("d", Some("7")), ("e", Some("corp.org")), ("f", None)],
            "attributes first, else the company domain; unreadable attributes count as none; even an empty id is reached"
        );
        let generated = &accounts[7..];
        assert_eq!(generated.len() as i64, GENERATED);
        for (n, (id, account)) in (1..=GENERATED).zip(generated) {
            let expected = (n % 5 != 0).then(|| format!("d{}.com", n % 3));
            assert_eq!(account, &expected, "contact {id}");
        }
        let versions: Vec<i64> =
            client.query("SELECT version FROM schema_migrations ORDER BY version", &[]).await.expect("versions").iter().map(|r| r.get(0)).collect();
        let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).expect("migrations").count() as i64;
        assert_eq!(versions, (1..=migrations).collect::<Vec<i64>>(), "every migration applied, the later ones too");
        let acme: Vec<String> = store.account_contacts("acme.com").await.expect("account").into_iter().map(|c| c.id).collect();
        assert_eq!(acme, ["a"]);
        // Opening again applies nothing and changes nothing.
        drop(store);
        let _again = connect(&url, &schema).await;
        assert_eq!(read().await, accounts);
        drop(client);
        let _ = connection.await;
    })
    .await;
}

fn event(id: &str, user: &str, ts: i64, kind: EventKind, name: &str, properties: Value) -> NewEvent {
    NewEvent {
        message_id: id.into(),
        identity: Identity { user_id: Some(user.into()), ..Identity::default() },
        kind,
        name: name.into(),
        properties: properties.as_object().cloned().unwrap_or_default(),
        traits: Map::new(),
        context: None,
        timestamp: ts,
    }
}

async fn publish(store: &PostgresStore, text: &str) -> Arc<PublishedModel> {
    let model = Model::parse(text).expect("test model parses");
    let version = store
        .publish_model(NewModelVersion { name: model.name.clone(), source: text.into(), format: "toml".into(), shadow_of: None }, T0)
        .await
        .expect("publish");
    Arc::new(PublishedModel { name: version.name, version: version.version, model, shadow_of: None })
}

/// Batches of events for two contacts, timestamps out of order across batches, so that
/// concurrent batches both fold and replay.
fn batches() -> Vec<Vec<NewEvent>> {
    let mut batches = Vec::new();
    for i in 0..24i64 {
        // A fixed permutation of 0..24 spreads the timestamps.
        let slot = (i * 7) % 24;
        let ts = T0 + slot * 30 * MINUTE;
        let path = if i % 3 == 0 { "/pricing" } else { "/docs" };
        let mut batch = vec![
            event(&format!("hot-page-{i}"), "hot", ts, EventKind::Page, "page", json!({ "path": path })),
            event(&format!("hot-click-{i}"), "hot", ts + MINUTE, EventKind::Track, "Email Link Clicked", json!({})),
        ];
        if i % 2 == 0 {
            batch.push(event(&format!("warm-{i}"), "warm", ts, EventKind::Page, "page", json!({ "path": "/pricing" })));
        }
        batches.push(batch);
    }
    batches
}

/// Two leadscore processes (two stores, two pools) ingesting for the same contacts at the
/// same time end with exactly the scores of one sequential ingest: the contact lock makes
/// their folds take turns, and no event or update is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_from_two_processes_match_sequential_ingest() {
    isolated("concurrent_ingest", |url, schema| async move {
        let now = T0 + 24 * 60 * MINUTE;
        let first = connect(&url, &schema).await;
        let second = connect(&url, &schema).await;
        let models: ModelSet = vec![publish(&first, MODEL_A).await, publish(&first, MODEL_ALL).await];
        for id in ["hot", "warm"] {
            let attributes = json!({ "segment": "a", "title": "CTO" }).as_object().cloned().unwrap_or_default();
            first.upsert_contact(ContactUpsert { id: Some(id.into()), attributes, ..Default::default() }, &models, T0).await.expect("upsert");
        }
        let mut running = Vec::new();
        for (index, batch) in batches().into_iter().enumerate() {
            let store = if index % 2 == 0 { first.clone() } else { second.clone() };
            let models = models.clone();
            running.push(tokio::spawn(async move { store.ingest(batch, &models, now).await }));
        }
        for handle in running {
            let outcomes = handle.await.expect("task").expect("concurrent ingest succeeds");
            assert!(outcomes.iter().all(|o| o.status == IngestStatus::Stored));
        }

        let sequential = connect(&url, &format!("{schema}_seq")).await;
        let seq_models: ModelSet = vec![publish(&sequential, MODEL_A).await, publish(&sequential, MODEL_ALL).await];
        for id in ["hot", "warm"] {
            let attributes = json!({ "segment": "a", "title": "CTO" }).as_object().cloned().unwrap_or_default();
            sequential.upsert_contact(ContactUpsert { id: Some(id.into()), attributes, ..Default::default() }, &seq_models, T0).await.expect("upsert");
        }
        for batch in batches() {
            sequential.ingest(batch, &seq_models, now).await.expect("sequential ingest");
        }

        assert_eq!(first.count_events().await.expect("count"), sequential.count_events().await.expect("count"));
        for id in ["hot", "warm"] {
            let concurrent = first.get_contact(id).await.expect("get").expect("exists");
            let expected = sequential.get_contact(id).await.expect("get").expect("exists");
            let events: Vec<ScoringEvent> = first
                .contact_events(id)
                .await
                .expect("events")
                .into_iter()
                .map(|e| ScoringEvent { timestamp: e.timestamp, message_id: e.message_id, name: e.name, properties: e.properties })
                .collect();
            assert_eq!(concurrent.scores.keys().collect::<Vec<_>>(), vec!["a", "all"], "contact {id}");
            for model in &models {
                let stored = &concurrent.scores[&model.name];
                assert_eq!(stored.card, expected.scores[&model.name].card, "contact {id}, model {}: concurrent = sequential", model.name);
                let full = card_from_events(model, &concurrent.attributes, &events, now);
                assert_eq!(stored.card, full, "contact {id}, model {}: stored = full recompute", model.name);
            }
        }
    })
    .await;
}

/// A publish by another process is seen by the next write of this one, even though this
/// process still passes its old model set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_in_another_process_is_used_by_the_next_write() {
    isolated("publish_elsewhere", |url, schema| async move {
        let here = connect(&url, &schema).await;
        let elsewhere = connect(&url, &schema).await;
        let stale: ModelSet = vec![publish(&here, MODEL_ALL).await];
        here.ingest(vec![event("x1", "u", T0, EventKind::Track, "Email Link Clicked", json!({}))], &stale, T0).await.expect("ingest");
        let v2 = publish(&elsewhere, MODEL_ALL).await;
        here.ingest(vec![event("x2", "u", T0 + MINUTE, EventKind::Track, "Email Link Clicked", json!({}))], &stale, T0 + MINUTE).await.expect("ingest");
        let contact = here.get_contact("u").await.expect("get").expect("exists");
        assert_eq!(contact.scores["all"].version, v2.version);
        assert_eq!(contact.scores["all"].card.activity, leadscore_core::scorer::round2(8.0 * 0.5f64.powf(1.0 / 1440.0) + 8.0));
    })
    .await;
}

/// `leadscore migrate` from SQLite into PostgreSQL copies everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_round_trip_sqlite_to_postgres() {
    isolated("transfer_from_sqlite", |url, schema| async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = leadscore_store_sqlite::SqliteStore::open_dir(dir.path()).expect("open SQLite");
        let destination = connect(&url, &schema).await;
        suite::transfer_round_trip(&source, &destination).await;
        // Outcome ids continue after the copied ones (finish_import moves the sequence on).
        let copied = destination.list_outcomes(0, i64::MAX, None, 1000).await.expect("outcomes");
        assert!(!copied.is_empty(), "outcomes were copied");
        let last = copied.iter().map(|o| o.id).max().unwrap_or(0);
        let new = NewOutcome { contact_id: "c01".into(), kind: OutcomeKind::Status { status: "qualified".into() }, at: T0, scores: Default::default() };
        assert!(destination.record_outcome(new, T0).await.expect("record").id > last);
    })
    .await;
}

/// `leadscore migrate` from PostgreSQL into SQLite copies everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_round_trip_postgres_to_sqlite() {
    isolated("transfer_to_sqlite", |url, schema| async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = connect(&url, &schema).await;
        let destination = leadscore_store_sqlite::SqliteStore::open_dir(dir.path()).expect("open SQLite");
        suite::transfer_round_trip(&source, &destination).await;
    })
    .await;
}

/// `TABLES` (what `leadscore migrate` copies) lists every table and column of the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transfer_tables_are_the_schema() {
    isolated("transfer_tables", |url, schema| async move {
        let _store = connect(&url, &schema).await;
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
        let connection = tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT table_name::text, array_agg(column_name::text ORDER BY ordinal_position)
                 FROM information_schema.columns WHERE table_schema = $1 AND table_name <> 'schema_migrations'
                 GROUP BY table_name ORDER BY table_name",
                &[&schema],
            )
            .await
            .expect("read the schema");
        let actual: Vec<(String, Vec<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut listed: Vec<(String, Vec<String>)> =
            leadscore_store::transfer::TABLES.iter().map(|t| (t.name.to_string(), t.columns.iter().map(|(c, _)| c.to_string()).collect())).collect();
        listed.sort();
        assert_eq!(listed, actual);
        drop(client);
        let _ = connection.await;
    })
    .await;
}

/// An automation stored in the database (writes queue contacts only while one exists) and
/// compiled for the evaluations.
async fn store_automation(store: &PostgresStore, text: &str) -> Arc<LiveAutomation> {
    let automation = Automation::parse(text).expect("test automation parses");
    let record = NewAutomation { name: automation.name.clone(), definition: automation.definition.clone(), enabled: true };
    let (stored, _) = store.put_automation(record, T0).await.expect("put automation");
    // The stored version: evaluations refuse a set that is not what the database holds.
    Arc::new(LiveAutomation { automation, updated_at: stored.updated_at })
}

fn signup(id: &str, user: &str, ts: i64) -> NewEvent {
    event(id, user, ts, EventKind::Track, "Signup", json!({}))
}

/// Two processes' delivery workers claiming from one outbox at the same time never get
/// the same delivery: each claim skips the rows another claim is taking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_claim_the_same_delivery() {
    isolated("claim_race", |url, schema| async move {
        let first = connect(&url, &schema).await;
        let second = connect(&url, &schema).await;
        let models: ModelSet = vec![publish(&first, MODEL_ALL).await];
        let automations: AutomationSet = vec![
            store_automation(
                &first,
                r#"
name = "signup"
trigger = { event = { name = "Signup" } }
actions = [ { webhook = { url = "https://crm.example.com/hook" } } ]
"#,
            )
            .await,
        ];
        let events: Vec<NewEvent> = (0..50).map(|i| signup(&format!("s{i}"), &format!("u{i:02}"), T0)).collect();
        first.ingest(events, &models, T0).await.expect("ingest");
        let queued = first.queued_contacts(100).await.expect("queued");
        assert_eq!(queued.len(), 50);
        let runs = first.evaluate_contacts(queued, false, &automations, &models, T0).await.expect("evaluate");
        assert_eq!(runs.len(), 50);

        // Eight workers, four per process, claiming small batches until the outbox is dry.
        let mut workers = Vec::new();
        for worker in 0..8 {
            let store = if worker % 2 == 0 { first.clone() } else { second.clone() };
            workers.push(tokio::spawn(async move {
                let owner = format!("w{worker}");
                let mut claimed = Vec::new();
                loop {
                    let batch = store.claim_deliveries(&owner, 3, 60_000, T0 + MINUTE).await.expect("claim");
                    if batch.is_empty() {
                        break claimed;
                    }
                    assert!(batch.iter().all(|d| d.state == DeliveryState::Pending));
                    claimed.extend(batch.into_iter().map(|d| d.id));
                }
            }));
        }
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await.expect("worker"));
        }
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), total, "a delivery was claimed twice");
        assert_eq!(total, 50, "every delivery was claimed");
        assert!(second.claim_deliveries("late", 100, 60_000, T0 + MINUTE).await.expect("claim").is_empty(), "all are leased");
    })
    .await;
}

/// Two processes evaluating the same queued contact at the same time record one run of a
/// `max = 1` automation: the second waits for the contact's lock and finds the queue
/// consumed (and the limit used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_evaluating_one_contact_fire_once() {
    isolated("evaluate_race", |url, schema| async move {
        let first = connect(&url, &schema).await;
        let second = connect(&url, &schema).await;
        let models: ModelSet = vec![publish(&first, MODEL_ALL).await];
        let automations: AutomationSet = vec![
            store_automation(
                &first,
                r#"
name = "signup"
trigger = { event = { name = "Signup" } }
limits = { max = 1, per = "1d" }
actions = [ { webhook = { url = "https://crm.example.com/hook" } } ]
"#,
            )
            .await,
        ];
        for round in 0..20 {
            let contact = format!("u{round:02}");
            let at = T0 + round * MINUTE;
            first.ingest(vec![signup(&format!("s{round}"), &contact, at)], &models, at).await.expect("ingest");
            let evaluations: Vec<_> = [first.clone(), second.clone()]
                .into_iter()
                .map(|store| {
                    let (contact, automations, models) = (contact.clone(), automations.clone(), models.clone());
                    tokio::spawn(async move { store.evaluate_contacts(vec![contact], false, &automations, &models, at).await })
                })
                .collect();
            let mut fired = 0;
            for evaluation in evaluations {
                fired += evaluation.await.expect("task").expect("evaluate").len();
            }
            assert_eq!(fired, 1, "round {round}: one run between both processes");
            let query = RunQuery { contact_id: Some(contact.clone()), limit: 10, ..Default::default() };
            assert_eq!(first.list_runs(&query).await.expect("runs").len(), 1, "round {round}: one run recorded");
        }
        assert_eq!(first.queue_depth().await.expect("depth"), 0, "every entry was consumed");
        let deliveries = first.list_deliveries(&DeliveryQuery { limit: 100, ..Default::default() }).await.expect("deliveries");
        assert_eq!(deliveries.len(), 20, "one webhook per run");
    })
    .await;
}

/// Round robin across processes: evaluations assigning from one team at the same time
/// each move the cursor once (the team rows are locked), so no step is lost and the
/// members share the leads evenly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_from_two_processes_loses_no_step() {
    isolated("round_robin_race", |url, schema| async move {
        let first = connect(&url, &schema).await;
        let second = connect(&url, &schema).await;
        let models: ModelSet = vec![publish(&first, MODEL_ALL).await];
        first.put_team("sales", vec!["ana@example.com".into(), "bo@example.com".into()], T0).await.expect("team");
        let automations: AutomationSet = vec![
            store_automation(
                &first,
                r#"
name = "route"
trigger = { event = { name = "Signup" } }
actions = [ { assign = { team = "sales" } } ]
"#,
            )
            .await,
        ];
        let events: Vec<NewEvent> = (0..20).map(|i| signup(&format!("s{i}"), &format!("u{i:02}"), T0)).collect();
        first.ingest(events, &models, T0).await.expect("ingest");
        let queued = first.queued_contacts(100).await.expect("queued");
        assert_eq!(queued.len(), 20);
        let even: Vec<String> = queued.iter().step_by(2).cloned().collect();
        let odd: Vec<String> = queued.iter().skip(1).step_by(2).cloned().collect();
        let evaluations: Vec<_> = [(first.clone(), even), (second.clone(), odd)]
            .into_iter()
            .map(|(store, ids)| {
                let (automations, models) = (automations.clone(), models.clone());
                tokio::spawn(async move {
                    // One contact per call, so the two processes interleave.
                    let mut runs = 0;
                    for id in ids {
                        runs += store.evaluate_contacts(vec![id], false, &automations, &models, T0).await.expect("evaluate").len();
                    }
                    runs
                })
            })
            .collect();
        let mut runs = 0;
        for evaluation in evaluations {
            runs += evaluation.await.expect("task");
        }
        assert_eq!(runs, 20);
        let team = first.get_team("sales").await.expect("team").expect("exists");
        assert_eq!(team.cursor, 20, "every assignment moved the cursor");
        let mut per_owner = std::collections::BTreeMap::new();
        for contact in first.list_contacts(None, 100).await.expect("contacts") {
            *per_owner.entry(contact.owner.expect("assigned")).or_insert(0) += 1;
        }
        assert_eq!(per_owner.into_iter().collect::<Vec<_>>(), [("ana@example.com".to_string(), 10), ("bo@example.com".to_string(), 10)]);
    })
    .await;
}

/// Two processes recording statuses for one contact at the same time, in an order unlike
/// their times: each recording locks the contact before it reads the latest status, so the
/// contact ends with the status that is latest by (at, id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_outcomes_leave_the_latest_status() {
    isolated("outcome_race", |url, schema| async move {
        let first = connect(&url, &schema).await;
        let second = connect(&url, &schema).await;
        let models: ModelSet = vec![publish(&first, MODEL_ALL).await];
        for round in 0..10i64 {
            let contact = format!("o{round}");
            first.upsert_contact(ContactUpsert { id: Some(contact.clone()), ..Default::default() }, &models, T0).await.expect("upsert");
            let recordings: Vec<_> = (0..8i64)
                .map(|i| {
                    let store = if i % 2 == 0 { first.clone() } else { second.clone() };
                    // A fixed permutation of the times; two recordings share each time.
                    let at = T0 + ((i * 5 + round) % 8 / 2) * MINUTE;
                    let status = leadscore_store::STATUSES[usize::try_from(i).unwrap_or(0) % leadscore_store::STATUSES.len()];
                    let outcome =
                        NewOutcome { contact_id: contact.clone(), kind: OutcomeKind::Status { status: status.into() }, at, scores: Default::default() };
                    tokio::spawn(async move { store.record_outcome(outcome, T0 + round).await })
                })
                .collect();
            for recording in recordings {
                recording.await.expect("task").expect("record");
            }
            let history = first.contact_outcomes(&contact).await.expect("history");
            assert_eq!(history.len(), 8);
            let latest = history.iter().max_by_key(|o| (o.at, o.id)).expect("recorded");
            let OutcomeKind::Status { status } = &latest.kind else { panic!("a status") };
            let stored = first.get_contact(&contact).await.expect("get").expect("exists");
            assert_eq!(stored.status.as_deref(), Some(status.as_str()), "round {round}: the latest status by (at, id) wins");
        }
    })
    .await;
}
