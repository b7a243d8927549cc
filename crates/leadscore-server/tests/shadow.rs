//! Shadow models (PRODUCT.md F31) against the real server: a shadow scores live traffic
//! but fires no automations and is never sent out; the compare report puts it beside the
//! live model on the outcomes recorded while both scored; promote makes it live. Every
//! test runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The live model: Ten is worth 10, Five 5.
const LIVE: &str = TEN_FIVE_MODEL;

/// The candidate: Five is worth 50. Named so it sorts before the live model (an
/// automation without a model must still read the live one); its comment must survive a
/// promotion.
fn shadow() -> String {
    let text = LIVE.replace("name = \"b2b\"", "# the candidate rules\nname = \"alt\"").replace("points = 5\n", "points = 50\n");
    assert!(text.contains("points = 50\n") && text.contains("name = \"alt\""), "the live model changed shape");
    text
}

async fn put_text(server: &TestServer, path: &str, toml: &str) -> Reply {
    server.send(server.request(Method::PUT, path, Some(ADMIN_KEY)).header("content-type", "application/toml").body(toml.to_string())).await
}

/// `tens` Ten events and `fives` Five events for `contact` at T0.
async fn earn(server: &TestServer, contact: &str, tens: usize, fives: usize) {
    let mut batch: Vec<Value> = (0..tens).map(|i| track(contact, &format!("{contact}-ten-{i}"), "Ten", json!({}), T0)).collect();
    batch.extend((0..fives).map(|i| track(contact, &format!("{contact}-five-{i}"), "Five", json!({}), T0)));
    server.ingest(json!({ "batch": batch })).await;
}

// The shadow scores every contact, but the automations read the live model only and the
// CRM never hears of the shadow; the publishing rules keep anything from going live (or
// losing its automations) by accident.
async fn a_shadow_scores_live_traffic_but_never_acts(server: TestServer) {
    server.publish("b2b", LIVE).await;
    server.create_contact(json!({ "id": "before" })).await;
    let published = put_text(&server, "/api/v1/models/alt?shadow_of=b2b", &shadow()).await;
    let published = published.expect(StatusCode::CREATED).clone();
    assert_eq!(published["shadow_of"], "b2b");
    server.wait_for_rescore("alt", published["version"].as_u64().unwrap()).await;
    assert_eq!(server.contact("before").await["scores"]["alt"]["total"], 0.0, "contacts already there are scored by the shadow's rescore");

    // An automation without a model reads the live model, not the shadow that sorts first.
    let automation = "name = \"Hot\"\ntrigger = { threshold = { score = \"total\", above = 60 } }\nactions = [ { add_group = { group = \"called\" } } ]\n";
    put_text(&server, "/api/v1/automations/Hot", automation).await.expect(StatusCode::CREATED);
    let on_shadow = "name = \"Shadow hot\"\nmodel = \"alt\"\ntrigger = { threshold = { score = \"total\", above = 60 } }\nactions = [ { add_group = { group = \"x\" } } ]\n";
    let refused = put_text(&server, "/api/v1/automations/Shadow%20hot", on_shadow).await;
    let error = refused.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(error["message"].as_str().unwrap().contains("shadow"), "{error}");
    server
        .send(
            server
                .request(Method::PUT, "/api/v1/webhooks/crm", Some(ADMIN_KEY))
                .json(&json!({ "url": "https://crm.example.com/sync", "events": ["score.changed"], "debounce": "1m" })),
        )
        .await
        .expect(StatusCode::CREATED);

    earn(&server, "s1", 0, 2).await; // b2b 10, alt 100: only the shadow is past 60
    earn(&server, "l1", 7, 0).await; // b2b 70, alt 70: the live model crosses
    leadscore_app::runtime::drain_queue(&server.state).await.unwrap();
    let s1 = server.contact("s1").await;
    assert_eq!((s1["scores"]["b2b"]["total"].as_f64(), s1["scores"]["alt"]["total"].as_f64()), (Some(10.0), Some(100.0)), "{s1}");
    assert_eq!(s1["scores"]["alt"]["band"], "hot", "the contact shows the shadow's card");
    let runs = server.get("/api/v1/automations/runs").await.expect(StatusCode::OK)["runs"].as_array().unwrap().clone();
    let fired: Vec<(&str, &str)> = runs.iter().map(|r| (r["automation"].as_str().unwrap(), r["contact"].as_str().unwrap())).collect();
    assert_eq!(fired, [("Hot", "l1")], "the shadow crossing fires nothing: {runs:?}");
    assert_eq!(runs[0]["reason"]["model"], "b2b");

    server.set_now(T0 + 61 * SECOND);
    assert_eq!(leadscore_app::runtime::sync_step(&server.state).await.unwrap(), 2);
    let deliveries = server.get("/api/v1/deliveries").await.expect(StatusCode::OK)["deliveries"].as_array().unwrap().clone();
    let synced: Vec<&Value> = deliveries.iter().filter(|d| d["type"] == "score.changed").collect();
    assert_eq!(synced.len(), 1, "{deliveries:?}");
    for contact in synced[0]["payload"]["data"]["contacts"].as_array().unwrap() {
        assert!(contact.get("b2b").is_some() && contact.get("alt").is_none(), "the CRM gets the live model only: {contact}");
    }

    // What the models list says, and the rules.
    let models = server.get("/api/v1/models").await.expect(StatusCode::OK)["models"].clone();
    let kinds: Vec<(Value, Value)> = models.as_array().unwrap().iter().map(|m| (m["name"].clone(), m["shadow_of"].clone())).collect();
    assert_eq!(kinds, [(json!("alt"), json!("b2b")), (json!("b2b"), Value::Null)]);
    assert_eq!(server.get("/api/v1/models/b2b").await.expect(StatusCode::OK)["shadows"], json!(["alt"]));
    let as_live = put_text(&server, "/api/v1/models/alt", &shadow()).await;
    assert!(
        as_live.expect_error(StatusCode::CONFLICT, "conflict")["message"].as_str().unwrap().contains("promote"),
        "a shadow never goes live by a plain publish"
    );
    put_text(&server, "/api/v1/models/b2b?shadow_of=alt", LIVE).await.expect_error(StatusCode::CONFLICT, "conflict");
    put_text(&server, "/api/v1/models/other?shadow_of=nope", &shadow().replace("\"alt\"", "\"other\"")).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    put_text(&server, "/api/v1/models/other?shadow_of=alt", &shadow().replace("\"alt\"", "\"other\"")).await.expect_error(StatusCode::CONFLICT, "conflict");
    server.delete("/api/v1/models/b2b").await.expect_error(StatusCode::CONFLICT, "conflict");
    server.post("/api/v1/models/b2b/promote", &json!({})).await.expect_error(StatusCode::CONFLICT, "conflict");

    // The shadow's lead list and reports work like any model's; unnamed, reports mean the live one.
    let hot = server.get_query("/api/v1/contacts", &[("model", "alt"), ("band", "hot")]).await;
    let ids: Vec<&str> = hot.expect(StatusCode::OK)["contacts"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["s1", "l1"]);
    let distribution = server.get("/api/v1/reports/distribution").await;
    assert_eq!(distribution.expect(StatusCode::OK)["model"], "b2b");
}

// Five contacts judged while both models scored them; the shadow ranks the won deals above
// the lost ones and the live model the other way round. One deal closed before the shadow
// existed is left out (and said so). Then the shadow is promoted.
async fn compare_then_promote(server: TestServer) {
    server.publish("b2b", LIVE).await;
    server.create_contact(json!({ "id": "c0" })).await;
    server.record_status("c0", "won", T0).await;
    server.set_now(T0 + HOUR);
    let published = put_text(&server, "/api/v1/models/alt?shadow_of=b2b", &shadow()).await;
    server.wait_for_rescore("alt", published.expect(StatusCode::CREATED)["version"].as_u64().unwrap()).await;
    earn(&server, "c1", 0, 1).await; // b2b 5 cold, alt 50 warm: won
    earn(&server, "c2", 2, 0).await; // b2b 20 cold, alt 20 cold: lost
    earn(&server, "c3", 1, 1).await; // b2b 15 cold, alt 60 hot: won
    earn(&server, "c4", 3, 0).await; // b2b 30 warm, alt 30 warm: lost
    server.set_now(T0 + 3 * HOUR);
    for (contact, outcome) in [("c1", "won"), ("c2", "lost"), ("c3", "won"), ("c4", "lost")] {
        server.record_status(contact, outcome, T0 + 2 * HOUR).await;
    }
    let report = server.get_query("/api/v1/reports/compare", &[("model", "alt")]).await.expect(StatusCode::OK).clone();
    assert_eq!(report["judged_contacts"], 4, "{report}");
    assert_eq!((report["candidate"]["model"].as_str(), report["live"]["model"].as_str()), (Some("alt"), Some("b2b")));
    assert_eq!(report["candidate"]["accuracy"]["roc_auc"], 1.0, "{report}");
    assert_eq!(report["live"]["accuracy"]["roc_auc"], 0.0, "{report}");
    assert_eq!(report["candidate"]["accuracy"]["average_score_won"], 55.0);
    assert_eq!(report["live"]["accuracy"]["average_score_won"], 10.0);
    assert!(report["notes"][0].as_str().unwrap().starts_with("1 of 5 contacts judged under b2b"), "c0 closed before the shadow: {report}");
    let bands =
        |side: &str| -> Vec<u64> { report[side]["distribution"]["bands"].as_array().unwrap().iter().map(|b| b["contacts"].as_u64().unwrap()).collect() };
    assert_eq!(bands("candidate"), [1, 2, 2], "hot c3; warm c1 c4; cold c0 c2");
    assert_eq!(bands("live"), [0, 1, 4]);
    assert_eq!(
        report["band_changes"],
        json!({ "contacts": 5, "changed": 2, "transitions": [ { "from": "cold", "to": "hot", "contacts": 1 }, { "from": "cold", "to": "warm", "contacts": 1 } ] })
    );
    server.get_query("/api/v1/reports/compare", &[("model", "b2b")]).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let against = server.get_query("/api/v1/reports/compare", &[("model", "b2b"), ("against", "alt")]).await;
    assert_eq!(against.expect(StatusCode::OK)["candidate"]["accuracy"]["roc_auc"], 0.0, "any two models, with against=");

    // Promote: the shadow's rules become b2b v2 (renamed, comments kept) and the shadow goes.
    let promoted = server.post("/api/v1/models/alt/promote", &json!({})).await.expect(StatusCode::CREATED).clone();
    assert_eq!((promoted["name"].as_str(), promoted["version"].as_u64(), promoted["promoted"].as_str()), (Some("b2b"), Some(2), Some("alt")), "{promoted}");
    server.wait_for_rescore("b2b", 2).await;
    let source = server.get_query("/api/v1/models/b2b", &[("format", "source")]).await;
    assert!(source.text.starts_with("\n# the candidate rules\nname = \"b2b\""), "{}", source.text);
    assert_eq!(server.contact("c1").await["scores"]["b2b"]["total"], 50.0);
    assert!(server.contact("c1").await["scores"].get("alt").is_none(), "the shadow's scores went with it");
    server.get("/api/v1/models/alt").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    let versions = server.get("/api/v1/models/alt/versions").await;
    assert_eq!(versions.expect(StatusCode::OK)["versions"].as_array().unwrap().len(), 1, "its versions stay for the record");
    server.post("/api/v1/models/alt/promote", &json!({})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.delete("/api/v1/models/b2b").await.expect(StatusCode::NO_CONTENT);
}

common::both_backends!(a_shadow_scores_live_traffic_but_never_acts, compare_then_promote);
