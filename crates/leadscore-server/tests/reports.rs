//! Outcomes and reports (PRODUCT.md F18, F19) against the real server, on a small data
//! set whose report is computed by hand. Every test runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const MODEL: &str = TEN_FIVE_MODEL;

/// Gives `contact` exactly `points` activity points (multiples of 5) at T0.
async fn earn(server: &TestServer, contact: &str, points: u32) {
    let mut batch = Vec::new();
    for i in 0..points / 10 {
        batch.push(track(contact, &format!("{contact}-ten-{i}"), "Ten", json!({}), T0));
    }
    if points % 10 == 5 {
        batch.push(track(contact, &format!("{contact}-five"), "Five", json!({}), T0));
    }
    server.ingest(json!({ "batch": batch })).await;
}

// Statuses keep the scores as of their time; the contact's status is its latest by time.
async fn outcomes_keep_the_scores_sales_saw(server: TestServer) {
    server.publish("b2b", MODEL).await;
    earn(&server, "x", 15).await;
    server.set_now(T0 + 3 * HOUR);
    // More activity later: the status recorded for an hour after T0 keeps 15 points.
    server.ingest(track("x", "x-late", "Ten", json!({}), T0 + 2 * HOUR)).await;
    let recorded = server.record_status("x", "qualified", T0 + HOUR).await;
    assert_eq!(recorded["scores"]["b2b"]["total"], 15.0, "as of `at`, not now: {recorded}");
    assert_eq!(recorded["status"], "qualified");
    let now = server.record_status("x", "contacted", T0 + 3 * HOUR).await;
    assert_eq!(now["scores"]["b2b"]["total"], 25.0);
    // Imported later but dated earlier: the contact's status stays the latest by time.
    server.record_status("x", "new", T0).await;
    assert_eq!(server.contact("x").await["status"], "contacted");
    let feedback = server.post("/api/v1/contacts/x/feedback", &json!({ "rating": 4, "note": "good call", "author": "ana" })).await;
    assert_eq!(feedback.expect(StatusCode::CREATED)["rating"], 4);
    let listed = server.get("/api/v1/contacts/x/outcomes").await;
    let kinds: Vec<Value> = listed.expect(StatusCode::OK)["outcomes"].as_array().unwrap().iter().map(|o| o["status"].clone()).collect();
    assert_eq!(kinds, [json!("new"), json!("qualified"), json!("contacted"), Value::Null]);

    // Bad input is refused with reasons.
    server.post("/api/v1/contacts/x/status", &json!({ "status": "maybe" })).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    server.post("/api/v1/contacts/x/feedback", &json!({ "rating": 6 })).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let future = json!({ "status": "won", "at": leadscore_server::input::format_time(T0 + 30 * DAY) });
    server.post("/api/v1/contacts/x/status", &future).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    server.post("/api/v1/contacts/nobody/status", &json!({ "status": "won" })).await.expect_error(StatusCode::NOT_FOUND, "not_found");
}

// Eight closed contacts and one open one, scored 10 .. 90: conversion by band, the Wilson
// intervals, ROC AUC and the won-in-top-band share, checked against hand computation.
async fn brackets_and_accuracy_match_hand_computation(server: TestServer) {
    server.publish("b2b", MODEL).await;
    let people = [
        ("l10", 10, "lost"),
        ("l20", 20, "lost"),
        ("l40", 40, "lost"),
        ("w35", 35, "won"),
        ("w45", 45, "won"),
        ("w70", 70, "won"),
        ("w80", 80, "won"),
        ("w90", 90, "won"),
        ("q50", 50, "qualified"),
    ];
    for (id, points, _) in people {
        earn(&server, id, points).await;
    }
    server.set_now(T0 + DAY);
    for (id, _, outcome) in people {
        server.record_status(id, "contacted", T0 + HOUR).await;
        server.record_status(id, outcome, T0 + 2 * HOUR).await;
    }
    let report = server.get("/api/v1/reports/brackets?model=b2b").await;
    let report = report.expect(StatusCode::OK).clone();
    assert_eq!((report["contacts"].as_u64(), report["closed"].as_u64()), (Some(9), Some(8)));
    let bands = &report["tables"][0];
    assert_eq!(bands["by"], "band");
    assert_eq!(bands["edges"], json!([30.0, 60.0]));
    let rows = bands["rows"].as_array().unwrap();
    let summary: Vec<(Value, u64, u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            (r["label"].clone(), r["contacts"].as_u64().unwrap(), r["qualified"].as_u64().unwrap(), r["won"].as_u64().unwrap(), r["lost"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        summary,
        [(json!("cold"), 2, 2, 0, 2), (json!("warm"), 4, 4, 2, 1), (json!("hot"), 3, 3, 3, 0)],
        "cold: 10, 20 lost; warm: 35, 45 won, 40 lost, 50 qualified; hot: 70, 80, 90 won"
    );
    assert_eq!(rows[0]["conversion"], 0.0);
    assert_eq!(rows[1]["conversion"], 0.6667);
    // Wilson 95 % for 2 of 3: centre (p + z²/2n)/(1 + z²/n), half-width z·√(p(1-p)/n + z²/4n²)/(1 + z²/n).
    assert_eq!((rows[1]["wilson_low"].clone(), rows[1]["wilson_high"].clone()), (json!(0.2077), json!(0.9385)));
    assert_eq!(rows[2]["conversion"], 1.0);
    assert_eq!(bands["points_backwards"], false);
    assert_eq!(report["tables"][1]["by"], "decile");

    // Custom edges, and the CSV.
    let custom = server.get("/api/v1/reports/brackets?model=b2b&edges=50").await;
    let custom_rows = custom.expect(StatusCode::OK)["tables"][0]["rows"].clone();
    assert_eq!((custom_rows[0]["contacts"].as_u64(), custom_rows[1]["contacts"].as_u64()), (Some(5), Some(4)));
    let csv = server.get("/api/v1/reports/brackets?model=b2b&edges=50&format=csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "table,label,lower,upper,contacts,qualified,won,lost,conversion,wilson_low,wilson_high");
    assert_eq!(lines[1], "edges,,,50.0,5,5,2,3,0.4,0.1176,0.7693", "2 of 5 won below 50");
    assert_eq!(lines[2], "edges,,50.0,,4,4,3,0,1.0,0.4385,1.0");

    // AUC: of the 5 × 3 won/lost pairs, the won contact scores higher in 14 (35 < 40).
    let accuracy = server.get("/api/v1/reports/accuracy?model=b2b").await;
    let accuracy = accuracy.expect(StatusCode::OK).clone();
    assert_eq!((accuracy["closed"].as_u64(), accuracy["won"].as_u64(), accuracy["lost"].as_u64()), (Some(8), Some(5), Some(3)));
    assert_eq!(accuracy["roc_auc"], 0.9333);
    assert_eq!(accuracy["top_band"], "hot");
    assert_eq!(accuracy["won_in_top_band_share"], 0.6, "3 of the 5 won deals were hot at the close");
    assert_eq!(accuracy["average_score_won"], 64.0);
    assert_eq!(accuracy["average_score_lost"], 23.3333);
    let csv = server.get("/api/v1/reports/accuracy?model=b2b&format=csv").await;
    assert!(csv.text.starts_with("model,version,closed,won,lost,roc_auc,"), "{}", csv.text);

    // A range that holds no outcome is empty, not an error; a bad range is refused.
    let before = leadscore_server::input::format_time(T0);
    let empty = server.get_query("/api/v1/reports/accuracy", &[("model", "b2b"), ("to", before.as_str())]).await;
    assert_eq!(empty.expect(StatusCode::OK)["closed"], 0);
    let bad = server.get_query("/api/v1/reports/brackets", &[("model", "b2b"), ("from", "2026-05-01T00:00:00Z"), ("to", "2026-04-01T00:00:00Z")]).await;
    bad.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    server.get("/api/v1/reports/brackets?model=nope").await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
}

// The distribution, sources and feedback reports on the same nine contacts.
async fn distribution_sources_and_feedback(server: TestServer) {
    server.publish("b2b", MODEL).await;
    let people = [
        ("l10", 10, "lost", "ads"),
        ("l20", 20, "lost", "ads"),
        ("l40", 40, "lost", "web"),
        ("w35", 35, "won", "web"),
        ("w45", 45, "won", "web"),
        ("w70", 70, "won", "partner"),
        ("w80", 80, "won", "partner"),
        ("w90", 90, "won", "partner"),
        ("q50", 50, "qualified", "ads"),
    ];
    for (id, points, _, source) in people {
        server.create_contact(json!({ "id": id, "attributes": { "source": source } })).await;
        earn(&server, id, points).await;
    }
    server.set_now(T0 + DAY);
    for (id, _, outcome, _) in people {
        server.record_status(id, outcome, T0 + 2 * HOUR).await;
    }
    for (id, rating) in [("w70", 5), ("l10", 1), ("w35", 3), ("w45", 4)] {
        server.post(&format!("/api/v1/contacts/{id}/feedback"), &json!({ "rating": rating })).await.expect(StatusCode::CREATED);
    }

    let distribution = server.get("/api/v1/reports/distribution?model=b2b&bins=2").await;
    let distribution = distribution.expect(StatusCode::OK).clone();
    assert_eq!(distribution["contacts"], 9);
    let bins: Vec<u64> = distribution["histogram"].as_array().unwrap().iter().map(|b| b["contacts"].as_u64().unwrap()).collect();
    assert_eq!(bins, [5, 4], "[10, 50) and [50, 90]");
    let bands: Vec<(Value, u64)> = distribution["bands"].as_array().unwrap().iter().map(|b| (b["band"].clone(), b["contacts"].as_u64().unwrap())).collect();
    assert_eq!(bands, [(json!("hot"), 3), (json!("warm"), 4), (json!("cold"), 2)]);
    assert_eq!(distribution["median"], 45.0);
    assert!(distribution["warnings"][0].as_str().unwrap().contains("33 % of contacts are hot"), "{distribution}");

    let sources = server.get("/api/v1/reports/sources?model=b2b").await;
    let rows = sources.expect(StatusCode::OK)["sources"].clone();
    let summary: Vec<(Value, Value, Value, Value)> =
        rows.as_array().unwrap().iter().map(|r| (r["source"].clone(), r["average_score"].clone(), r["won"].clone(), r["conversion"].clone())).collect();
    assert_eq!(
        summary,
        [
            (json!("ads"), json!(26.6667), json!(0), json!(0.0)),
            (json!("partner"), json!(80.0), json!(3), json!(1.0)),
            (json!("web"), json!(40.0), json!(2), json!(0.6667)),
        ]
    );
    let csv = server.get("/api/v1/reports/sources?model=b2b&format=csv").await;
    assert_eq!(csv.text.lines().next(), Some("source,contacts,average_score,won,lost,conversion"));
    assert_eq!(csv.text.lines().nth(1), Some("ads,3,26.6667,0,2,0.0"));

    let feedback = server.get("/api/v1/reports/feedback?model=b2b").await;
    let feedback = feedback.expect(StatusCode::OK).clone();
    let by_band: Vec<(Value, Value, Value)> =
        feedback["ratings_by_band"].as_array().unwrap().iter().map(|r| (r["band"].clone(), r["ratings"].clone(), r["average_rating"].clone())).collect();
    assert_eq!(by_band, [(json!("hot"), json!(1), json!(5.0)), (json!("warm"), json!(2), json!(3.5)), (json!("cold"), json!(1), json!(1.0))]);
    assert_eq!(feedback["sales_cycle_days"]["won"], 5);
    assert_eq!(feedback["sales_cycle_days"]["median"], 0.0833, "created at T0, won two hours later");
}

// A backtest on a data set where the better model is known: buyers ask for demos and
// browsers read job ads; the live model rewards the careers page (backwards), the
// candidate the demo request.
async fn backtest_shows_the_better_model(server: TestServer) {
    let live = r#"
name = "b2b"
[[bands]]
name = "hot"
min = 20
[[bands]]
name = "cold"
[[activity]]
name = "Careers"
event = "Careers"
points = 20
[[activity]]
name = "Demo"
event = "Demo"
points = 5
"#;
    server.publish("b2b", live).await;
    for i in 0..4 {
        server.ingest(track(&format!("buyer{i}"), &format!("b{i}"), "Demo", json!({}), T0)).await;
        server.ingest(track(&format!("browser{i}"), &format!("x{i}"), "Careers", json!({}), T0)).await;
    }
    server.set_now(T0 + DAY);
    for i in 0..4 {
        server.record_status(&format!("buyer{i}"), "won", T0 + HOUR).await;
        server.record_status(&format!("browser{i}"), "lost", T0 + HOUR).await;
    }
    let candidate = live.replace(
        "points = 20\n[[activity]]\nname = \"Demo\"\nevent = \"Demo\"\npoints = 5",
        "points = -5\n[[activity]]\nname = \"Demo\"\nevent = \"Demo\"\npoints = 25",
    );
    assert_ne!(candidate, live);
    let report = server.post("/api/v1/backtest", &json!({ "model": candidate })).await;
    let report = report.expect(StatusCode::OK).clone();
    assert_eq!(report["live"]["accuracy"]["roc_auc"], 0.0, "the live model scores every browser above every buyer");
    assert_eq!(report["candidate"]["accuracy"]["roc_auc"], 1.0);
    assert_eq!(report["live"]["brackets"]["tables"][0]["points_backwards"], true);
    assert_eq!(report["candidate"]["brackets"]["tables"][0]["points_backwards"], false);
    assert_eq!(report["candidate"]["accuracy"]["won_in_top_band_share"], 1.0);
    assert_eq!(report["band_changes"]["changed"], 8);
    assert_eq!(report["band_changes"]["transitions"], json!([{ "from": "cold", "to": "hot", "contacts": 4 }, { "from": "hot", "to": "cold", "contacts": 4 }]));
    // The live side replayed equals the report on the recorded scores.
    let recorded = server.get("/api/v1/reports/accuracy?model=b2b").await;
    assert_eq!(recorded.expect(StatusCode::OK)["roc_auc"], report["live"]["accuracy"]["roc_auc"]);
    // The candidate as JSON works too; nothing was published.
    let as_json = json!({ "model": { "name": "b2b", "activity": [{ "name": "Demo", "event": "Demo", "points": 25 }] } });
    assert_eq!(server.post("/api/v1/backtest", &as_json).await.expect(StatusCode::OK)["candidate"]["accuracy"]["won"], 4);
    assert_eq!(server.get("/api/v1/models/b2b").await.expect(StatusCode::OK)["version"], 1);
    let bad = server.post("/api/v1/backtest", &json!({ "model": "name = \"b2b\"\n[[activity]]\nname = \"x\"\npoints = 1\n" })).await;
    bad.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let other = server.post("/api/v1/backtest", &json!({ "model": "name = \"other\"\n" })).await;
    other.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    // In the background: 202 with a job to poll, then the same report.
    let started = server.post("/api/v1/backtest", &json!({ "model": candidate, "background": true })).await;
    let job = started.expect(StatusCode::ACCEPTED)["job"].clone();
    assert_eq!((job["kind"].as_str(), job["live"].as_str()), (Some("backtest"), Some("b2b")), "{job}");
    let path = format!("/api/v1/backtest/{}", job["id"]);
    let finished = loop {
        let polled = server.get(&path).await.expect(StatusCode::OK).clone();
        match polled["state"].as_str() {
            Some("done") => break polled,
            Some("queued" | "running") => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            other => panic!("the backtest ended {other:?}: {polled}"),
        }
    };
    assert_eq!(finished["percent"], 100.0);
    assert_eq!(finished["done"], 16, "8 judged contacts replayed, then 8 contacts for the band changes: {finished}");
    assert_eq!(finished["result"], report, "the same report as the answer in the foreground");
    server.get("/api/v1/backtest/999999").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.get("/api/v1/backtest/x1").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(server.get("/api/v1/models/b2b").await.expect(StatusCode::OK)["rescore"]["kind"], "rescore", "the model shows its rescore, not the backtest");
}

// Issue 12.2 and 12.3: statuses recorded before any model exists count once one is
// published, and a report labelled with a version shows that version's numbers (the
// outcomes are judged again, as of their time, when a version goes live).
async fn outcomes_are_judged_by_the_live_version(server: TestServer) {
    let people = [("a", 10, "lost"), ("b", 40, "won"), ("c", 70, "won")];
    for (id, points, _) in people {
        earn(&server, id, points).await;
    }
    server.set_now(T0 + DAY);
    for (id, _, outcome) in people {
        server.record_status(id, outcome, T0 + HOUR).await;
    }
    let no_model = server.get("/api/v1/reports/brackets").await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid").clone();
    assert!(no_model["message"].as_str().unwrap().contains("model apply"), "says how to publish one: {no_model}");
    server.publish("b2b", MODEL).await;
    let bands = |report: &Value| -> Vec<(String, u64)> {
        report["tables"][0]["rows"].as_array().unwrap().iter().map(|r| (r["label"].as_str().unwrap().to_string(), r["contacts"].as_u64().unwrap())).collect()
    };
    let v1 = server.get("/api/v1/reports/brackets?model=b2b").await.expect(StatusCode::OK).clone();
    assert_eq!((v1["version"].as_u64(), v1["closed"].as_u64()), (Some(1), Some(3)), "kept and judged once a model exists: {v1}");
    assert_eq!(bands(&v1), [("cold".to_string(), 1), ("warm".to_string(), 1), ("hot".to_string(), 1)]);
    // v2: Ten is worth 20: a 20 (cold), b 80 and c 140 (hot).
    server.publish("b2b", &MODEL.replace("points = 10", "points = 20")).await;
    let v2 = server.get("/api/v1/reports/brackets?model=b2b").await.expect(StatusCode::OK).clone();
    assert_eq!(v2["version"], 2);
    assert_eq!(bands(&v2), [("cold".to_string(), 1), ("warm".to_string(), 0), ("hot".to_string(), 2)], "v2's numbers under the v2 label: {v2}");
    let outcomes = server.get("/api/v1/contacts/b/outcomes").await.expect(StatusCode::OK).clone();
    assert_eq!(outcomes["outcomes"][0]["scores"]["b2b"]["total"], 80.0, "{outcomes}");
}

// Issue 12.4: every contact with an outcome is counted somewhere in a backtest: scored by
// a side, outside its segment, or erased since.
async fn backtest_accounts_for_every_judged_contact(server: TestServer) {
    let live = MODEL.replace("name = \"b2b\"\n", "name = \"b2b\"\napplies_to = { attribute = \"segment\", op = \"ne\", value = \"consumer\" }\n");
    server.publish("b2b", &live).await;
    for (id, segment) in [("w1", "b2b"), ("l1", "b2b"), ("consumer", "consumer")] {
        server.create_contact(json!({ "id": id, "attributes": { "segment": segment } })).await;
        earn(&server, id, 30).await;
    }
    server.set_now(T0 + DAY);
    for (id, outcome) in [("w1", "won"), ("l1", "lost"), ("consumer", "won")] {
        server.record_status(id, outcome, T0 + HOUR).await;
    }
    let candidate = live.replace("points = 10", "points = 20");
    let report = server.post("/api/v1/backtest", &json!({ "model": candidate })).await.expect(StatusCode::OK).clone();
    let judged = report["judged_contacts"].as_u64().unwrap();
    assert_eq!(judged, 3, "{report}");
    for side in ["candidate", "live"] {
        let scored = report[side]["scored_contacts"].as_u64().unwrap();
        let outside = report[side]["outside_segment"].as_u64().unwrap();
        assert_eq!((scored, outside), (2, 1), "{side}: {report}");
        assert_eq!(scored + outside + report["erased_contacts"].as_u64().unwrap(), judged, "{side} accounts for every judged contact");
        let in_tables: u64 = report[side]["brackets"]["tables"][0]["rows"].as_array().unwrap().iter().map(|r| r["contacts"].as_u64().unwrap()).sum();
        assert_eq!(in_tables, scored, "{side}: the band table holds the scored contacts");
    }
}

// Speed to lead and hot → qualified: three leads become hot in the range (one before it,
// one never), sales reaches two of them after 2 h and 30 h and qualifies one.
async fn speed_to_lead_and_hot_to_qualified(server: TestServer) {
    server.publish("b2b", MODEL).await;
    const MINUTE: i64 = 60 * SECOND;
    for (id, owner, tens, start) in
        [("h1", Some("ana@x.com"), 7, T0), ("h2", Some("bo@x.com"), 6, T0), ("h3", None, 6, T0), ("w1", None, 4, T0), ("early", None, 6, T0 - 10 * DAY)]
    {
        let mut contact = json!({ "id": id });
        if let Some(owner) = owner {
            contact["owner"] = json!(owner);
        }
        server.create_contact(contact).await;
        let batch: Vec<Value> = (0..tens).map(|i| track(id, &format!("{id}-{i}"), "Ten", json!({}), start + i64::from(i) * MINUTE)).collect();
        server.ingest(json!({ "batch": batch })).await;
    }
    server.set_now(T0 + 3 * DAY);
    let hot_at = T0 + 5 * MINUTE; // the sixth Ten reaches 60
    server.record_status("h1", "contacted", hot_at + 2 * HOUR).await;
    server.record_status("h1", "qualified", hot_at + 3 * HOUR).await;
    server.record_status("h2", "contacted", hot_at + 30 * HOUR).await;
    server.record_status("early", "qualified", T0).await;
    let from = leadscore_server::input::format_time(T0 - DAY);
    let to = leadscore_server::input::format_time(T0 + DAY);
    let report = server.get_query("/api/v1/reports/speed", &[("model", "b2b"), ("from", from.as_str()), ("to", to.as_str())]).await;
    let report = report.expect(StatusCode::OK).clone();
    assert_eq!((report["became_hot"].as_u64(), report["qualified_after"].as_u64()), (Some(3), Some(1)), "{report}");
    assert_eq!(report["hot_to_qualified"], 0.3333);
    assert!(report["warnings"][0].as_str().unwrap().contains("33 %"), "below 50 %: {report}");
    let rows: Vec<(Value, Value, Value, Value, Value)> = report["speed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["owner"].clone(), r["contacted"].clone(), r["median_hours"].clone(), r["p90_hours"].clone(), r["sla_breaches"].clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (json!("(everyone)"), json!(2), json!(2.0), json!(30.0), json!(2)),
            (json!("ana@x.com"), json!(1), json!(2.0), json!(2.0), json!(0)),
            (json!("bo@x.com"), json!(1), json!(30.0), json!(30.0), json!(1)),
        ],
        "h2 was reached after 30 h and h3 never: two breaches of the 24 h SLA"
    );
    let relaxed = server.get_query("/api/v1/reports/speed", &[("model", "b2b"), ("from", from.as_str()), ("to", to.as_str()), ("sla", "2d")]).await;
    assert_eq!(relaxed.expect(StatusCode::OK)["speed"][0]["sla_breaches"], 1, "with 48 h only h3 (never reached) breaches");
    let csv = server.get_query("/api/v1/reports/speed", &[("model", "b2b"), ("format", "csv")]).await;
    assert_eq!(csv.text.lines().next(), Some("owner,hot,contacted,median_hours,p90_hours,sla_breaches"));
}

common::both_backends!(
    speed_to_lead_and_hot_to_qualified,
    outcomes_keep_the_scores_sales_saw,
    brackets_and_accuracy_match_hand_computation,
    distribution_sources_and_feedback,
    backtest_shows_the_better_model,
    outcomes_are_judged_by_the_live_version,
    backtest_accounts_for_every_judged_contact
);
