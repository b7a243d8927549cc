//! Automations running against the real server (PRODUCT.md §3, F11–F17, F23): the hot rule
//! fires when the qualifying event is ingested, for the group only and within its limits;
//! the threshold hands off once and does not fire again while the score hovers; the cold
//! rule fires from the scheduler; webhooks are signed (checked by our verifier and, in CI,
//! by the official Standard Webhooks library), e-mails reach a real SMTP server, and the
//! outbox retries, dead-letters and re-delivers by hand. Every test runs on SQLite and on
//! PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use leadscore_server::{EngineConfig, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MODEL: &str = r#"
name = "b2b"
[[bands]]
name = "hot"
min = 60
[[bands]]
name = "warm"
min = 30
[[bands]]
name = "cold"
[[fit]]
name = "CTO"
when = { attribute = "title", op = "eq", value = "CTO" }
points = 30
[[activity]]
name = "Pricing page"
event = "page"
when = { property = "path", op = "eq", value = "/pricing" }
points = 15
[[activity]]
name = "Demo request"
event = "Demo Requested"
points = 10
[[activity]]
name = "Careers page"
event = "page"
when = { property = "path", op = "eq", value = "/careers" }
points = -10
"#;

fn path(name: &str) -> String {
    format!("/api/v1/automations/{}", name.replace(' ', "%20"))
}

async fn put_automation(server: &TestServer, name: &str, toml: &str) {
    let request = server.request(Method::PUT, &path(name), Some(ADMIN_KEY)).header("content-type", "application/toml").body(toml.to_string());
    server.send(request).await.expect(StatusCode::CREATED);
}

async fn runs(server: &TestServer, query: &str) -> Vec<Value> {
    server.get(&format!("/api/v1/automations/runs{query}")).await.expect(StatusCode::OK)["runs"].as_array().unwrap().clone()
}

async fn put_json(server: &TestServer, path: &str, body: &Value) -> Reply {
    server.send(server.request(Method::PUT, path, Some(ADMIN_KEY)).json(body)).await
}

/// Polls the deliveries until one is in `state` (the delivery worker runs in the background).
async fn wait_for_delivery(server: &TestServer, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = server.get(&format!("/api/v1/deliveries?state={state}")).await;
        if let Some(first) = reply.expect(StatusCode::OK)["deliveries"].as_array().unwrap().first() {
            return first.clone();
        }
        assert!(Instant::now() < deadline, "no delivery reached {state:?}: {}", server.get("/api/v1/deliveries").await.text);
        server.state.runtime.wake_delivery.notify_one();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks a received webhook's signature with the official Standard Webhooks library
/// (Python `standardwebhooks`), an implementation independent of ours. CI installs it and
/// sets LEADSCORE_TEST_SDKS; elsewhere the check is skipped with a notice.
fn verify_with_official_library(secret: &str, request: &Received) {
    if std::env::var_os("LEADSCORE_TEST_SDKS").is_none() {
        println!("skipped the standardwebhooks check: LEADSCORE_TEST_SDKS is not set");
        return;
    }
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
data = json.load(sys.stdin)
Webhook(data["secret"]).verify(data["body"], data["headers"])
print("verified")
"#;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", std::env::var("LEADSCORE_TEST_PYTHONPATH").unwrap_or_default())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({ "secret": secret, "body": request.body, "headers": request.headers });
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("verified"),
        "the official Standard Webhooks library rejected the signature: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// The contract's Austin hot rule: fires once, when the event that makes 20 points in a day
// is ingested, only for the Austin group; the webhook is signed with the stored secret and
// the lead is assigned round robin.
async fn austin_hot_rule_fires_once_for_the_group(server: TestServer) {
    server.publish("b2b", MODEL).await;
    let receiver = Receiver::start(204).await;
    let secret = put_json(&server, "/api/v1/secrets/crm", &json!({})).await;
    let secret = secret.expect(StatusCode::CREATED)["value"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    put_json(&server, "/api/v1/teams/austin-sales", &json!({ "members": ["ana@example.com", "bo@example.com"] })).await.expect(StatusCode::CREATED);
    let hot = format!(
        r#"
name = "Austin hot leads"
model = "b2b"
trigger = {{ hot = {{ points = 20, within = "1d" }} }}
filter = {{ group = "austin" }}
limits = {{ max = 1, per = "7d", cooldown = "1d" }}
actions = [
  {{ webhook = {{ url = "{}/hooks/hot", secret_ref = "crm" }} }},
  {{ assign = {{ team = "austin-sales", strategy = "round_robin" }} }},
]
"#,
        receiver.url
    );
    put_automation(&server, "Austin hot leads", &hot).await;
    server.create_contact(json!({ "id": "austin1", "email": "a1@corp.example", "groups": ["austin"] })).await;
    server.create_contact(json!({ "id": "dallas1", "email": "d1@corp.example", "groups": ["dallas"] })).await;

    // 15 points: not hot yet.
    server.ingest(json!({ "batch": [page("austin1", "a-1", "/pricing", T0), page("dallas1", "d-1", "/pricing", T0)] })).await;
    assert!(runs(&server, "").await.is_empty());
    // The demo request makes 25 points in the day: the rule has fired when the call returns.
    server.set_now(T0 + 10 * 60 * SECOND);
    let sent = Instant::now();
    server
        .ingest(json!({ "batch": [
            track("austin1", "a-2", "Demo Requested", json!({}), T0 + 10 * 60 * SECOND),
            track("dallas1", "d-2", "Demo Requested", json!({}), T0 + 10 * 60 * SECOND),
        ] }))
        .await;
    let fired = runs(&server, "").await;
    println!("the hot run was recorded {:?} after the event was sent", sent.elapsed());
    assert_eq!(fired.len(), 1, "one run, for the Austin contact only: {fired:?}");
    let run = &fired[0];
    assert_eq!((run["automation"].as_str(), run["contact"].as_str()), (Some("Austin hot leads"), Some("austin1")));
    assert_eq!(run["at"], leadscore_server::input::format_time(T0 + 10 * 60 * SECOND), "fired at the moment of the qualifying event");
    assert_eq!(run["reason"]["trigger"], "hot");
    assert_eq!(run["reason"]["points"], 25.0);
    assert_eq!(run["reason"]["event"]["message_id"], "a-2");
    assert_eq!(run["actions"][1]["owner"], "ana@example.com");
    assert_eq!(server.contact("austin1").await["owner"], "ana@example.com", "assigned by round robin");

    // More qualifying activity within the limit window does not fire again.
    server.set_now(T0 + 3 * DAY);
    server
        .ingest(json!({ "batch": [page("austin1", "a-3", "/pricing", T0 + 3 * DAY), track("austin1", "a-4", "Demo Requested", json!({}), T0 + 3 * DAY)] }))
        .await;
    assert_eq!(runs(&server, "").await.len(), 1, "max 1 per 7 days holds");

    // The webhook arrives, signed: our verifier and the official library accept it.
    let requests = receiver.wait_for(1, Duration::from_secs(20)).await;
    let request = &requests[0];
    assert_eq!(request.path, "/hooks/hot");
    let body = request.json();
    assert_eq!(body["type"], "automation.fired");
    assert_eq!(body["data"]["contact"]["id"], "austin1");
    assert_eq!(body["data"]["automation"], "Austin hot leads");
    let id = &request.headers["webhook-id"];
    let timestamp: i64 = request.headers["webhook-timestamp"].parse().unwrap();
    assert!(leadscore_delivery::verify(&secret, id, timestamp, request.body.as_bytes(), &request.headers["webhook-signature"]));
    assert!(!leadscore_delivery::verify(&secret, id, timestamp, b"{\"tampered\":true}", &request.headers["webhook-signature"]));
    verify_with_official_library(&secret, request);

    let delivered = wait_for_delivery(&server, "delivered").await;
    assert_eq!(delivered["id"], id.as_str(), "the delivery id is the webhook-id");
    assert_eq!(delivered["attempts"], 1);
    // The run log shows the delivery's outcome; the overview counts the run.
    let run = &runs(&server, "?automation=Austin%20hot%20leads").await[0];
    assert_eq!(run["actions"][0]["outcome"], "delivered");
    let overview = server.get("/api/v1/automations").await;
    let item = &overview.expect(StatusCode::OK)["automations"][0];
    assert_eq!(item["runs"], json!({ "last_day": 0, "last_week": 1, "total": 1 }));
    assert_eq!(item["last_fired_at"], leadscore_server::input::format_time(T0 + 10 * 60 * SECOND));
    assert_eq!(receiver.requests().len(), 1, "exactly one webhook");
}

// Crossing total ≥ 60 hands the lead to the country's team once; hovering around the line
// does not fire again; going back below the re-arm line (50) arms it again.
async fn threshold_hands_off_once_and_rearms(server: TestServer) {
    server.publish("b2b", MODEL).await;
    put_json(&server, "/api/v1/teams/na-sales", &json!({ "members": ["ann@example.com", "bob@example.com"] })).await.expect(StatusCode::CREATED);
    put_json(&server, "/api/v1/teams/emea-sales", &json!({ "members": ["eva@example.com"] })).await.expect(StatusCode::CREATED);
    put_automation(
        &server,
        "Sales-qualified handoff",
        r#"
name = "Sales-qualified handoff"
trigger = { threshold = { score = "total", above = 60, rearm = 50 } }
actions = [ { set = { attribute = "lifecycle_stage", value = "sql" } }, { assign = { by_attribute = "country", teams = { US = "na-sales", DE = "emea-sales" } } } ]
"#,
    )
    .await;
    server.create_contact(json!({ "id": "c1", "attributes": { "title": "CTO", "country": "US" } })).await;
    let mut at = T0;
    let mut n = 0;
    let mut visit = |path: &str| {
        at += 60 * SECOND;
        n += 1;
        page("c1", &format!("m{n}"), path, at)
    };
    // 30 (fit) + 15 + 15 = 60: crosses.
    let events = json!({ "batch": [visit("/pricing"), visit("/pricing")] });
    server.ingest(events).await;
    assert_eq!(runs(&server, "").await.len(), 1);
    let contact = server.contact("c1").await;
    assert_eq!(contact["attributes"]["lifecycle_stage"], "sql");
    assert_eq!(contact["owner"], "ann@example.com", "US → na-sales, first member");
    // Hovering: 50, 65, 55, 70, 60 — never below the re-arm line.
    for path in ["/careers", "/pricing", "/careers", "/pricing", "/careers"] {
        let event = visit(path);
        server.ingest(event).await;
    }
    assert_eq!(server.contact("c1").await["scores"]["b2b"]["total"], 60.0);
    assert_eq!(runs(&server, "").await.len(), 1, "no second firing while hovering at the line");
    // 50, then 40 (below 50: re-armed), 55, 70 (crossing 60 again): fires again, to the next member.
    for path in ["/careers", "/careers", "/pricing", "/pricing"] {
        let event = visit(path);
        server.ingest(event).await;
    }
    let all = runs(&server, "").await;
    assert_eq!(all.len(), 2, "re-armed below 50, fired again at 70: {all:?}");
    assert_eq!(all[0]["reason"]["trigger"], "threshold");
    assert_eq!(server.contact("c1").await["owner"], "bob@example.com");
    let history = server.get("/api/v1/contacts/c1/history?model=b2b").await;
    assert!(history.text.contains("assigned"), "the assignment is in the contact's history: {}", history.text);
}

// The contract's quarterly touch: clients with fewer than 2 points in 90 days, existing at
// least that long, fire from the scheduler, once.
async fn cold_rule_fires_from_the_scheduler(server: TestServer) {
    server.publish("b2b", MODEL).await;
    let receiver = Receiver::start(200).await;
    put_automation(
        &server,
        "Quarterly client touch",
        &format!(
            r#"
name = "Quarterly client touch"
trigger = {{ cold = {{ points = 2, within = "90d" }} }}
filter = {{ group = "clients" }}
limits = {{ max = 1, per = "90d" }}
actions = [ {{ webhook = {{ url = "{}/hooks/follow-up" }} }} ]
"#,
            receiver.url
        ),
    )
    .await;
    let created = leadscore_server::input::format_time(T0 - 100 * DAY);
    server.create_contact(json!({ "id": "quiet", "groups": ["clients"], "created_at": created })).await;
    server.create_contact(json!({ "id": "busy", "groups": ["clients"], "created_at": created })).await;
    server.create_contact(json!({ "id": "new", "groups": ["clients"] })).await;
    server.create_contact(json!({ "id": "prospect", "created_at": created })).await;
    server.ingest(page("busy", "b-1", "/pricing", T0 - 5 * DAY)).await;

    let report = leadscore_app::runtime::scheduler_step(&server.state).await.unwrap();
    assert!(report.ran);
    let fired = runs(&server, "").await;
    assert_eq!(fired.iter().map(|r| r["contact"].as_str().unwrap()).collect::<Vec<_>>(), ["quiet"], "{fired:?}");
    assert_eq!(fired[0]["reason"]["trigger"], "cold");
    leadscore_app::runtime::scheduler_step(&server.state).await.unwrap();
    assert_eq!(runs(&server, "").await.len(), 1, "the next tick does not fire again");
    let requests = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(requests[0].json()["data"]["contact"]["id"], "quiet");
}

// A failing receiver: the delivery is retried with backoff (same webhook-id), dead-lettered
// after the last attempt, listed under state=failed, and re-delivered by hand.
async fn deliveries_retry_dead_letter_and_redeliver(server: TestServer) {
    server.publish("b2b", MODEL).await;
    let receiver = Receiver::start(500).await;
    put_automation(
        &server,
        "Unsubscribes",
        &format!(
            r#"
name = "Unsubscribes"
trigger = {{ event = {{ name = "Unsubscribed" }} }}
actions = [ {{ webhook = {{ url = "{}/hooks/unsub" }} }} ]
"#,
            receiver.url
        ),
    )
    .await;
    server.ingest(track("u1", "unsub-1", "Unsubscribed", json!({}), T0)).await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    // Attempt 1 failed; the retry is due after the backoff (1 s in this test, ±20 %).
    let deadline = Instant::now() + Duration::from_secs(20);
    let pending = loop {
        let listed = server.get("/api/v1/deliveries?state=pending").await;
        let first = listed.expect(StatusCode::OK)["deliveries"][0].clone();
        if first["attempts"] == 1 {
            break first;
        }
        assert!(Instant::now() < deadline, "the first attempt was not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(pending["last_status"], 500);
    assert!(pending["last_error"].as_str().unwrap().contains("500"));
    // The clock moves past the retry: attempt 2 (the last) fails too: dead-lettered.
    server.set_now(T0 + 10 * SECOND);
    server.state.runtime.wake_delivery.notify_one();
    let failed = wait_for_delivery(&server, "failed").await;
    assert_eq!(failed["attempts"], 2);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].headers["webhook-id"], requests[1].headers["webhook-id"], "the same webhook-id on every retry");
    let detail = server.get(&format!("/api/v1/deliveries/{}", failed["id"].as_str().unwrap())).await;
    assert_eq!(detail.expect(StatusCode::OK)["attempt_log"].as_array().unwrap().len(), 2);

    receiver.set_status(200);
    let retried = server.post(&format!("/api/v1/deliveries/{}/retry", failed["id"].as_str().unwrap()), &json!({})).await;
    assert_eq!(retried.expect(StatusCode::OK)["state"], "pending");
    let delivered = wait_for_delivery(&server, "delivered").await;
    assert_eq!(delivered["id"], failed["id"]);
    assert_eq!(receiver.requests().len(), 3);
    server.post("/api/v1/deliveries/msg_nope/retry", &json!({})).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.get("/api/v1/deliveries?state=bogus").await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
}

fn retry_fast() -> ServerConfig {
    ServerConfig { engine: EngineConfig { delivery_backoff: Duration::from_secs(1), delivery_attempts: 2, ..test_config().engine }, ..test_config() }
}

// Secrets are write-only; teams and subscriptions round-trip; scopes are enforced.
async fn secrets_teams_and_subscriptions(server: TestServer) {
    let generated = put_json(&server, "/api/v1/secrets/crm", &json!({})).await;
    let value = generated.expect(StatusCode::CREATED)["value"].as_str().unwrap().to_string();
    let listed = server.get("/api/v1/secrets").await;
    assert!(!listed.text.contains(&value), "a secret is never shown again");
    assert_eq!(listed.expect(StatusCode::OK)["secrets"][0]["name"], "crm");
    let replaced = put_json(&server, "/api/v1/secrets/crm", &json!({ "value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" })).await;
    assert!(replaced.expect(StatusCode::OK).get("value").is_none(), "a given secret is not echoed");
    put_json(&server, "/api/v1/secrets/bad", &json!({ "value": "not base64!" })).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    let key = server.post("/api/v1/keys", &json!({ "name": "reader", "scopes": ["read"] })).await;
    let reader = key.expect(StatusCode::CREATED)["key"].as_str().unwrap().to_string();
    let denied = server.send(server.request(Method::PUT, "/api/v1/secrets/x", Some(&reader)).json(&json!({}))).await;
    denied.expect_error(StatusCode::FORBIDDEN, "forbidden");
    let denied = server.send(server.request(Method::GET, "/api/v1/secrets", Some(&reader))).await;
    denied.expect_error(StatusCode::FORBIDDEN, "forbidden");

    put_json(&server, "/api/v1/teams/emea", &json!({ "members": ["a@x.com", "b@x.com", "a@x.com"] })).await.expect(StatusCode::CREATED);
    let team = server.get("/api/v1/teams/emea").await;
    assert_eq!(team.expect(StatusCode::OK)["members"], json!(["a@x.com", "b@x.com"]), "repeated members are dropped");
    let subscription = put_json(
        &server,
        "/api/v1/webhooks/crm",
        &json!({ "url": "https://crm.example.com/sync", "events": ["score.changed"], "fields": { "total": "lead_score__c", "band": "lead_grade__c" }, "debounce": "30s" }),
    )
    .await;
    assert_eq!(subscription.expect(StatusCode::CREATED)["debounce_ms"], 30_000);
    let bad = put_json(&server, "/api/v1/webhooks/x", &json!({ "url": "ftp://x", "events": ["nope"], "fields": { "score": "s" } })).await;
    let error = bad.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(error["details"]["problems"].as_array().unwrap().len(), 3, "{error}");
    server.delete("/api/v1/webhooks/crm").await.expect(StatusCode::NO_CONTENT);
    server.delete("/api/v1/teams/emea").await.expect(StatusCode::NO_CONTENT);
    server.delete("/api/v1/teams/emea").await.expect_error(StatusCode::NOT_FOUND, "not_found");
}

// CRM sync: score.changed, debounced and batched, with the receiver's own field names.
async fn score_changes_reach_the_crm_with_its_field_names(server: TestServer) {
    server.publish("b2b", MODEL).await;
    let receiver = Receiver::start(200).await;
    put_json(
        &server,
        "/api/v1/webhooks/crm",
        &json!({ "url": format!("{}/sync", receiver.url), "events": ["score.changed"], "fields": { "total": "lead_score__c", "band": "lead_grade__c" }, "debounce": "1m" }),
    )
    .await
    .expect(StatusCode::CREATED);
    server.ingest(json!({ "batch": [page("s1", "s1-1", "/pricing", T0), page("s2", "s2-1", "/pricing", T0), page("s1", "s1-2", "/pricing", T0 + 1)] })).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.state.store.queue_depth().await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "the queue was not evaluated");
        server.state.runtime.wake_evaluator.notify_one();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(leadscore_app::runtime::sync_step(&server.state).await.unwrap(), 0, "debounced for a minute");
    server.set_now(T0 + 61 * SECOND);
    assert_eq!(leadscore_app::runtime::sync_step(&server.state).await.unwrap(), 2, "both contacts in one batch");
    let requests = receiver.wait_for(1, Duration::from_secs(20)).await;
    let body = requests[0].json();
    assert_eq!(body["type"], "score.changed");
    let mut contacts = body["data"]["contacts"].as_array().unwrap().clone();
    contacts.sort_by_key(|c| c["id"].as_str().unwrap().to_string());
    assert_eq!(contacts[0], json!({ "id": "s1", "email": null, "lead_score__c": 30.0, "lead_grade__c": "warm" }));
    assert_eq!(contacts[1], json!({ "id": "s2", "email": null, "lead_score__c": 15.0, "lead_grade__c": "cold" }));
}

// E-mail actions go through a real SMTP server to the owner, templated.
async fn email_reaches_the_owner(server: TestServer, sink: leadscore_delivery::SmtpSink) {
    server.publish("b2b", MODEL).await;
    put_automation(
        &server,
        "Demo alert",
        r#"
name = "Demo alert"
trigger = { event = { name = "Demo Requested" } }
actions = [ { email = { to = "owner", subject = "Demo requested: {{contact.email}}", body = "{{contact.email}} asked for a demo (total {{contact.scores.b2b.total}})." } } ]
"#,
    )
    .await;
    server.create_contact(json!({ "id": "e1", "email": "lead@corp.example", "owner": "rep@example.com" })).await;
    server.ingest(track("e1", "e1-1", "Demo Requested", json!({}), T0)).await;
    let mails = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(mails[0].to, ["rep@example.com"]);
    assert_eq!(mails[0].subject().as_deref(), Some("Demo requested: lead@corp.example"));
    assert!(mails[0].body().contains("lead@corp.example asked for a demo (total 10)"), "{}", mails[0].body());
    wait_for_delivery(&server, "delivered").await;
}

// Without LEADSCORE_ALLOW_PRIVATE_WEBHOOKS a webhook to a private address is refused at
// delivery too (a name can resolve to a private address after it was stored). The API
// refuses such a URL when it is stored (below), so the automation is stored as one kept
// from before that check was.
async fn private_targets_are_refused(server: TestServer) {
    let receiver = Receiver::start(200).await;
    let definition =
        format!("name = \"Signup\"\ntrigger = {{ event = {{ name = \"Signed Up\" }} }}\nactions = [ {{ webhook = {{ url = \"{}/x\" }} }} ]\n", receiver.url);
    let automation = leadscore_core::automation::Automation::parse(&definition).unwrap();
    let stored = leadscore_store::NewAutomation { name: automation.name, definition: automation.definition, enabled: automation.enabled };
    server.state.store.put_automation(stored, server.now()).await.unwrap();
    server.state.reload_automations().await.unwrap();
    server.ingest(track("p1", "p1-1", "Signed Up", json!({}), T0)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let attempted = loop {
        let listed = server.get("/api/v1/deliveries").await;
        let first = listed.expect(StatusCode::OK)["deliveries"][0].clone();
        if first["attempts"].as_u64().unwrap_or(0) >= 1 {
            break first;
        }
        assert!(Instant::now() < deadline, "no attempt was made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error = attempted["last_error"].as_str().unwrap();
    assert!(error.contains("private") || error.contains("refused"), "{error}");
    assert!(receiver.requests().is_empty(), "nothing reached the private address");
}

// A webhook URL the delivery guard would refuse for 21 hours of retries is refused when it
// is stored, with the reason: automations and subscriptions alike. A name that does not
// resolve now is accepted (DNS may change before the first delivery, which checks again).
async fn private_webhook_urls_are_refused_when_stored(server: TestServer) {
    let automation = |url: &str| {
        format!(
            "name = \"Hook\"\ntrigger = {{ event = {{ name = \"Signed Up\" }} }}\nactions = [ {{ set = {{ attribute = \"a\", value = 1 }} }}, {{ webhook = {{ url = \"{url}\" }} }} ]\n"
        )
    };
    let put = |body: String| {
        let request = server.request(Method::PUT, &path("Hook"), Some(ADMIN_KEY)).header("content-type", "application/toml").body(body);
        server.send(request)
    };
    for url in ["http://127.0.0.1:9/x", "http://localhost:9/x", "http://[::1]/x", "http://169.254.169.254/latest/meta-data"] {
        let reply = put(automation(url)).await;
        let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("non-public address") && message.contains("LEADSCORE_ALLOW_PRIVATE_WEBHOOKS"), "{url}: {message}");
        assert_eq!(error["details"]["problems"][0]["path"], "actions[1].webhook.url", "{error}");
    }
    server.get(&path("Hook")).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    put(automation("https://leadscore-test.invalid/hook")).await.expect(StatusCode::CREATED);
    put(automation("https://8.8.8.8/hook")).await.expect(StatusCode::OK);

    let reply = put_json(&server, "/api/v1/webhooks/crm", &json!({ "url": "http://127.0.0.1:9/sync", "events": ["score.changed"] })).await;
    let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(error["message"].as_str().unwrap().contains("non-public address"), "{error}");
    put_json(&server, "/api/v1/webhooks/crm", &json!({ "url": "https://leadscore-test.invalid/sync", "events": ["score.changed"] }))
        .await
        .expect(StatusCode::CREATED);
}

// The nurture ladder: every band change moves the contact to its band's track (kept in
// `nurture_track`), and subscribers hear `nurture.changed`; "" leaves every track.
async fn nurture_ladder_follows_the_band(server: TestServer) {
    server.publish("b2b", MODEL).await;
    let receiver = Receiver::start(200).await;
    put_json(&server, "/api/v1/webhooks/marketing", &json!({ "url": format!("{}/nurture", receiver.url), "events": ["nurture.changed"] }))
        .await
        .expect(StatusCode::CREATED);
    put_automation(
        &server,
        "Nurture ladder",
        r#"
name = "Nurture ladder"
trigger = { band = { model = "b2b" } }
actions = [ { nurture = { track_per_band = { cold = "education", warm = "case-studies", hot = "" } } } ]
"#,
    )
    .await;
    server.ingest(page("n1", "n-1", "/docs", T0)).await;
    assert_eq!(server.contact("n1").await["attributes"]["nurture_track"], "education", "a new contact enters its band's track");
    // (The clock moves between calls so the run log's newest-first order is the calls' order.)
    server.set_now(T0 + SECOND);
    server.ingest(json!({ "batch": [page("n1", "n-2", "/pricing", T0 + 1), page("n1", "n-3", "/pricing", T0 + 2)] })).await;
    assert_eq!(server.contact("n1").await["attributes"]["nurture_track"], "case-studies", "warm at 30");
    server.set_now(T0 + 2 * SECOND);
    server.ingest(json!({ "batch": [page("n1", "n-4", "/pricing", T0 + 3), page("n1", "n-5", "/pricing", T0 + 4)] })).await;
    let contact = server.contact("n1").await;
    assert_eq!(contact["scores"]["b2b"]["band"], "hot");
    assert!(contact["attributes"].get("nurture_track").is_none(), "hot leaves every track: {contact}");
    let bands: Vec<Value> = runs(&server, "").await.iter().rev().map(|r| r["reason"]["to"].clone()).collect();
    assert_eq!(bands, [json!("cold"), json!("warm"), json!("hot")]);
    let requests = receiver.wait_for(3, Duration::from_secs(20)).await;
    let mut moves: Vec<(Value, Value)> = requests.iter().map(|r| (r.json()["data"]["from"].clone(), r.json()["data"]["to"].clone())).collect();
    moves.sort_by_key(|m| m.0.to_string());
    assert_eq!(
        moves,
        [(json!("case-studies"), Value::Null), (json!("education"), json!("case-studies")), (Value::Null, json!("education"))],
        "one nurture.changed per move"
    );
    assert!(requests.iter().all(|r| r.json()["type"] == "nurture.changed"));
}

// A threshold crossed by decay alone is found when the decay sweep moves the stored score.
async fn decay_alone_crosses_a_threshold(server: TestServer) {
    let model = MODEL.replace("name = \"b2b\"\n", "name = \"b2b\"\ndecay = { half_life = \"1d\" }\n");
    server.publish("b2b", &model).await;
    put_automation(
        &server,
        "Cooling down",
        r#"
name = "Cooling down"
trigger = { threshold = { score = "activity", below = 20 } }
actions = [ { remove_group = { group = "active" } } ]
"#,
    )
    .await;
    server.create_contact(json!({ "id": "d1", "groups": ["active"] })).await;
    server.ingest(json!({ "batch": [page("d1", "d-1", "/pricing", T0), page("d1", "d-2", "/pricing", T0)] })).await;
    assert!(runs(&server, "").await.is_empty(), "30 points: above the line");
    server.set_now(T0 + 2 * DAY);
    let swept = leadscore_app::workers::decay_sweep(&server.state).await.unwrap();
    assert!(swept.changed >= 1);
    leadscore_app::runtime::drain_queue(&server.state).await.unwrap();
    let fired = runs(&server, "").await;
    assert_eq!(fired.len(), 1, "7.5 points after two half-lives: crossed below 20 without any event");
    assert_eq!(fired[0]["reason"]["value"], 7.5);
    assert!(server.contact("d1").await["groups"].as_array().unwrap().is_empty(), "remove_group ran");
}

// Issue 12.1: a contact already past the line when the automations were stored is not
// crossing it when decay moves its score, even when another decaying model (here a shadow
// that sorts first) is swept first. The demo fired 63 hand-offs and 94 `"from": null`
// nurture runs at its first sweep.
async fn a_sweep_fires_nothing_for_contacts_already_past_the_line(server: TestServer) {
    let model = MODEL.replace("name = \"b2b\"\n", "name = \"b2b\"\ndecay = { half_life = \"30d\" }\n");
    server.publish("b2b", &model).await;
    let shadow = model.replace("name = \"b2b\"", "name = \"alt\"");
    let request = server.request(Method::PUT, "/api/v1/models/alt?shadow_of=b2b", Some(ADMIN_KEY)).header("content-type", "application/toml").body(shadow);
    server.send(request).await.expect(StatusCode::CREATED);
    server.create_contact(json!({ "id": "above", "attributes": { "title": "CTO" } })).await;
    // History first (30 fit + 90 activity = 120), the automations afterwards, as the demo does.
    let history: Vec<Value> = (0..6).map(|i| page("above", &format!("a-{i}"), "/pricing", T0)).collect();
    server.ingest(json!({ "batch": history })).await;
    put_automation(
        &server,
        "Handoff",
        "name = \"Handoff\"\ntrigger = { threshold = { score = \"total\", above = 100 } }\nactions = [ { add_group = { group = \"sql\" } } ]\n",
    )
    .await;
    put_automation(&server, "Ladder", "name = \"Ladder\"\ntrigger = { band = { model = \"b2b\" } }\nactions = [ { add_group = { group = \"moved\" } } ]\n")
        .await;
    server.set_now(T0 + DAY);
    let swept = leadscore_app::workers::decay_sweep(&server.state).await.unwrap();
    assert!(swept.changed >= 2, "both models decayed: {swept:?}");
    leadscore_app::runtime::drain_queue(&server.state).await.unwrap();
    let total = server.contact("above").await["scores"]["b2b"]["total"].as_f64().unwrap();
    assert!(total > 100.0 && total < 120.0, "decayed but still above the line: {total}");
    assert_eq!(runs(&server, "").await, Vec::<Value>::new(), "nothing was crossed");
}

fn strict() -> ServerConfig {
    ServerConfig { engine: EngineConfig { allow_private_webhooks: false, ..EngineConfig::default() }, ..ServerConfig::default() }
}

common::both_backends!(
    austin_hot_rule_fires_once_for_the_group,
    threshold_hands_off_once_and_rearms,
    cold_rule_fires_from_the_scheduler,
    secrets_teams_and_subscriptions,
    score_changes_reach_the_crm_with_its_field_names,
    nurture_ladder_follows_the_band,
    decay_alone_crosses_a_threshold,
    a_sweep_fires_nothing_for_contacts_already_past_the_line,
);

/// Tests that need a configuration of their own, on both backends.
mod configured {
    use super::*;

    async fn on_both(config: impl Fn() -> ServerConfig, test: impl AsyncFn(TestServer)) {
        test(TestServer::start_configured(config()).await).await;
        match TestServer::start_postgres_configured(config()).await {
            Some(server) => test(server).await,
            None => println!("skipped PostgreSQL: {POSTGRES_URL_VARIABLE} is not set"),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn deliveries_retry_dead_letter_and_redeliver() {
        on_both(retry_fast, super::deliveries_retry_dead_letter_and_redeliver).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn private_targets_are_refused() {
        on_both(strict, super::private_targets_are_refused).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn private_webhook_urls_are_refused_when_stored() {
        on_both(strict, super::private_webhook_urls_are_refused_when_stored).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn email_reaches_the_owner() {
        for postgres in [false, true] {
            let sink = leadscore_delivery::SmtpSink::start().await.unwrap();
            let config = ServerConfig { engine: EngineConfig { smtp_url: Some(format!("smtp://{}", sink.addr)), ..test_config().engine }, ..test_config() };
            let server = if postgres {
                match TestServer::start_postgres_configured(config).await {
                    Some(server) => server,
                    None => {
                        println!("skipped PostgreSQL: {POSTGRES_URL_VARIABLE} is not set");
                        continue;
                    }
                }
            } else {
                TestServer::start_configured(config).await
            };
            super::email_reaches_the_owner(server, sink).await;
        }
    }
}
