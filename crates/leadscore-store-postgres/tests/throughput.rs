//! A rough ingest and rescore throughput figure (not a timed assertion): run with
//! `cargo test -p leadscore-store-postgres --release --test throughput -- --ignored --nocapture`
//! and `LEADSCORE_TEST_POSTGRES_URL` set.

use std::sync::Arc;
use std::time::Instant;

use leadscore_core::Model;
use leadscore_store::conformance::{MODEL_A, MODEL_ALL};
use leadscore_store::{ChunkLimit, EventKind, EventStore, Identity, ModelSet, ModelStore, NewEvent, NewModelVersion, PublishedModel, ScoreStore};
use leadscore_store_postgres::PostgresStore;
use serde_json::{Map, json};

const T0: i64 = 1_767_225_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn ingest_and_rescore_throughput() {
    let Ok(url) = std::env::var("LEADSCORE_TEST_POSTGRES_URL") else {
        println!("ingest_and_rescore_throughput: skipped, LEADSCORE_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("t_throughput_{}", std::process::id());
    let store = PostgresStore::connect(&url, Some(&schema)).await.expect("connect");
    let mut models: ModelSet = Vec::new();
    for text in [MODEL_A, MODEL_ALL] {
        let model = Model::parse(text).expect("parses");
        let version = store
            .publish_model(NewModelVersion { name: model.name.clone(), source: text.into(), format: "toml".into(), shadow_of: None }, T0)
            .await
            .expect("publish");
        models.push(Arc::new(PublishedModel { name: version.name, version: version.version, model, shadow_of: None }));
    }
    let (batches, per_batch, contacts) = (50usize, 1000usize, 5000usize);
    let started = Instant::now();
    for b in 0..batches {
        let events: Vec<NewEvent> = (0..per_batch)
            .map(|i| {
                let n = b * per_batch + i;
                NewEvent {
                    message_id: format!("m{n}"),
                    identity: Identity { user_id: Some(format!("c{:05}", n % contacts)), ..Identity::default() },
                    kind: EventKind::Page,
                    name: "page".into(),
                    properties: json!({ "path": if n % 5 == 0 { "/pricing" } else { "/docs" } }).as_object().cloned().unwrap_or_default(),
                    traits: Map::new(),
                    context: None,
                    timestamp: T0 + n as i64 * 1000,
                }
            })
            .collect();
        store.ingest(events, &models, T0 + 100_000_000).await.expect("ingest");
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("ingest: {} events in {elapsed:.2} s = {:.0} events/s", batches * per_batch, (batches * per_batch) as f64 / elapsed);

    let v2 = {
        let model = Model::parse(MODEL_ALL).expect("parses");
        let version = store
            .publish_model(NewModelVersion { name: "all".into(), source: MODEL_ALL.into(), format: "toml".into(), shadow_of: None }, T0)
            .await
            .expect("publish");
        Arc::new(PublishedModel { name: version.name, version: version.version, model, shadow_of: None })
    };
    let started = Instant::now();
    let mut after = None;
    let mut rescored = 0;
    loop {
        let chunk = store.rescore_chunk(&v2, after.clone(), ChunkLimit { contacts: 10_000, events: 100_000 }, T0 + 100_000_000).await.expect("rescore");
        rescored += chunk.contacts;
        match chunk.last_contact {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("rescore: {rescored} contacts in {elapsed:.2} s = {:.0} contacts/s", rescored as f64 / elapsed);
    drop(store);

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    let connection = tokio::spawn(connection);
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.expect("drop schema");
    drop(client);
    let _ = connection.await;
}
