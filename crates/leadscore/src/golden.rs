//! The demo's main API answers at a frozen clock, compared with the recorded ones in
//! `tests/golden/`: a restructuring of the code must leave every byte of them as it was.
//! `LEADSCORE_BLESS=1 cargo test -p leadscore golden` records them anew (review the diff).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use leadscore_server::{AppState, Clock, ServerConfig};
use leadscore_store_sqlite::SqliteStore;
use serde_json::{Value, json};

/// 2026-03-02T09:00:00Z.
const FROZEN_NOW: i64 = 1_772_442_000_000;
const KEY: &str = "lsk_golden_admin";

/// (file name, method, path, body): the answers a client of the demo reads most.
const CALLS: &[(&str, &str, &str, Option<&str>)] = &[
    ("models", "GET", "/api/v1/models", None),
    ("model_b2b", "GET", "/api/v1/models/b2b", None),
    ("model_versions", "GET", "/api/v1/models/b2b/versions", None),
    ("leads_hot", "GET", "/api/v1/contacts?model=b2b&band=hot&limit=5", None),
    ("leads_sorted_fit", "GET", "/api/v1/contacts?model=b2b&sort=fit&limit=5", None),
    ("leads_open_csv", "GET", "/api/v1/contacts?model=b2b&open=true&limit=5&format=csv", None),
    ("contact", "GET", "/api/v1/contacts/c0000051", None),
    ("contact_history", "GET", "/api/v1/contacts/c0000051/history?model=b2b", None),
    ("contact_outcomes", "GET", "/api/v1/contacts/c0000051/outcomes", None),
    ("contact_export", "GET", "/api/v1/contacts/c0000051/export", None),
    ("accounts", "GET", "/api/v1/accounts?model=b2b&limit=5", None),
    ("report_brackets", "GET", "/api/v1/reports/brackets?model=b2b", None),
    ("report_accuracy", "GET", "/api/v1/reports/accuracy?model=b2b", None),
    ("report_sources", "GET", "/api/v1/reports/sources?model=b2b", None),
    ("report_distribution", "GET", "/api/v1/reports/distribution?model=b2b", None),
    ("report_speed", "GET", "/api/v1/reports/speed?model=b2b", None),
    ("report_feedback", "GET", "/api/v1/reports/feedback?model=b2b", None),
    ("report_compare", "GET", "/api/v1/reports/compare?model=b2b-next", None),
    ("automations", "GET", "/api/v1/automations", None),
    ("teams", "GET", "/api/v1/teams", None),
    ("leads_warm", "GET", "/api/v1/contacts?model=b2b&band=warm&limit=3", None),
    (
        "ingest",
        "POST",
        "/api/v1/events",
        Some(
            r#"{"batch":[{"type":"track","email":"hugo.chen.51@rivalcorp.com","event":"Form Submitted","properties":{"form":"quote"},"timestamp":"2026-03-02T08:59:00Z","messageId":"golden-1"}]}"#,
        ),
    ),
    ("contact_after_ingest", "GET", "/api/v1/contacts/c0000051", None),
    ("backtest", "POST", "/api/v1/backtest", Some("the demo's shadow model, live b2b")),
    ("runs", "GET", "/api/v1/automations/runs?limit=5", None),
    ("deliveries", "GET", "/api/v1/deliveries?limit=5", None),
    ("openapi", "GET", "/openapi.json", None),
];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_answers_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let clock: Clock = Arc::new(|| FROZEN_NOW);
    let config = ServerConfig {
        rate_limit: None,
        engine: leadscore_server::EngineConfig { workers: false, sweep_interval: None, ..Default::default() },
        ..ServerConfig::default()
    };
    let state = AppState::new(store, clock, config).await.unwrap();
    crate::demo::seed(&state.engine, 300).await.unwrap();
    while leadscore_app::models::job_step(&state).await.unwrap() {}
    state.bootstrap_admin_key(Some(KEY)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(leadscore_server::serve(state.clone(), listener, std::future::pending()));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let bless = std::env::var("LEADSCORE_BLESS").is_ok_and(|v| v == "1");
    let mut differing = Vec::new();
    for (name, method, path, body) in CALLS {
        let mut request = client.request(method.parse().unwrap(), format!("{base}{path}")).bearer_auth(KEY);
        if let Some(body) = body {
            let body =
                if *name == "backtest" { json!({ "model": crate::demo::demo_shadow_model().unwrap(), "live": "b2b" }).to_string() } else { body.to_string() };
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if *name == "ingest" {
            // The automations the event fires, and their deliveries, are part of the record.
            leadscore_app::runtime::drain_queue(&state).await.unwrap();
        }
        let mut body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
        redact_random_ids(&mut body);
        if let Some(runs) = body.get_mut("runs").and_then(Value::as_array_mut) {
            // Runs made at the same instant are listed in the order of their random ids.
            runs.sort_by_key(|run| run["automation"].to_string());
        }
        let answer = serde_json::to_string_pretty(&json!({ "status": status, "body": body })).unwrap() + "\n";
        let file = golden_dir().join(format!("{name}.json"));
        if bless {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&file, &answer).unwrap();
        } else {
            let recorded = std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("{} is missing; record with LEADSCORE_BLESS=1", file.display()));
            if recorded != answer {
                std::fs::write(file.with_extension("actual.json"), &answer).unwrap();
                differing.push(name.to_string());
            }
        }
    }
    assert!(differing.is_empty(), "answers differ from tests/golden/ (see the .actual.json files): {differing:?}");
}

/// Run, delivery and job ids are random by design (they are unguessable); the record keeps
/// their prefix only.
fn redact_random_ids(value: &mut Value) {
    match value {
        Value::String(text) => {
            for prefix in ["run_", "dlv_", "del_", "job_"] {
                if text.starts_with(prefix) && text.len() > prefix.len() + 8 {
                    *text = format!("{prefix}…");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_random_ids),
        Value::Object(fields) => fields.values_mut().for_each(redact_random_ids),
        _ => {}
    }
}
