//! Who may call which API route (contract §5, §8, F26): every route × no credential, each
//! key scope and each user role (a session cookie is a credential like a key). This table
//! is the documentation of the API's access rules; a new route must be added to it.
//!
//! Columns: none, ingest key, read key, admin key, admin user, marketing user, sales user.
//! `Y` passed the check (whatever the route answers then: a 404 for a thing that does not
//! exist, a 422 for a body the test leaves invalid on purpose), `U` 401, `N` 403, `H` 404
//! because the contact is another rep's (it reads as one that does not exist).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use leadscore_app::contacts::{self, NewContact};
use leadscore_app::users::{self, NewUser};
use leadscore_server::input::format_time;
use leadscore_store::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";
const COLUMNS: [&str; 7] = ["none", "ingest key", "read key", "admin key", "admin user", "marketing user", "sales user"];

/// (method, path, body, expected per column). `theirs` belongs to another rep, `mine` to
/// the sales user; `nobody` does not exist, so changing routes change nothing.
const MATRIX: &[(&str, &str, Option<&str>, &str)] = &[
    ("GET", "/healthz", None, "YYYYYYY"),
    ("GET", "/metrics", None, "UNYYYYY"),
    ("GET", "/openapi.json", None, "UNYYYYY"),
    ("GET", "/js/leadscore.js", None, "YYYYYYY"),
    // Contacts: every role reads, a rep only their own; marketing and admins change them;
    // only admins erase.
    ("POST", "/api/v1/contacts", Some(r#"{"id": ""}"#), "UNNYYYN"),
    ("GET", "/api/v1/contacts?model=b2b", None, "UNYYYYY"),
    ("GET", "/api/v1/contacts/mine", None, "UNYYYYY"),
    ("GET", "/api/v1/contacts/theirs", None, "UNYYYYH"),
    ("PATCH", "/api/v1/contacts/nobody", Some(r#"{"attributes": {"x": 1}}"#), "UNNYYYN"),
    ("DELETE", "/api/v1/contacts/nobody", None, "UNNYYNN"),
    ("GET", "/api/v1/contacts/mine/history", None, "UNYYYYY"),
    ("GET", "/api/v1/contacts/theirs/history", None, "UNYYYYH"),
    ("GET", "/api/v1/contacts/mine/export", None, "UNYYYYY"),
    ("GET", "/api/v1/contacts/theirs/export", None, "UNYYYYH"),
    ("POST", "/api/v1/contacts/nobody/merge", Some(r#"{"from": "nobody-else"}"#), "UNNYYYN"),
    ("POST", "/api/v1/bulk", Some(r#"{"filter": {"group": "no-such-group"}, "add_groups": ["x"]}"#), "UNNYYYN"),
    ("GET", "/api/v1/erasures", None, "UNNYYNN"),
    ("GET", "/api/v1/audit", None, "UNNYYNN"),
    // Outcomes: every role records, a rep on their own contacts.
    ("POST", "/api/v1/contacts/mine/status", Some(r#"{"status": "contacted"}"#), "UNNYYYY"),
    ("POST", "/api/v1/contacts/theirs/status", Some(r#"{"status": "contacted"}"#), "UNNYYYH"),
    ("POST", "/api/v1/contacts/mine/feedback", Some(r#"{"rating": 4}"#), "UNNYYYY"),
    ("POST", "/api/v1/contacts/theirs/feedback", Some(r#"{"rating": 4}"#), "UNNYYYH"),
    ("GET", "/api/v1/contacts/mine/outcomes", None, "UNYYYYY"),
    ("GET", "/api/v1/contacts/theirs/outcomes", None, "UNYYYYH"),
    // Accounts and reports: every role (a rep sees the accounts of their contacts and only
    // their contacts of each, and their reports count only their contacts).
    ("GET", "/api/v1/accounts?model=b2b", None, "UNYYYYY"),
    ("GET", "/api/v1/accounts/acme.com?model=b2b", None, "UNYYYYY"),
    ("GET", "/api/v1/reports/brackets?model=b2b", None, "UNYYYYY"),
    ("GET", "/api/v1/reports/predictive", None, "UNYYYYY"),
    ("GET", "/api/v1/reports/distribution?model=b2b", None, "UNYYYYY"),
    ("GET", "/api/v1/reports/sources?model=b2b", None, "UNYYYYY"),
    ("GET", "/api/v1/reports/feedback?model=b2b", None, "UNYYYYY"),
    ("GET", "/api/v1/reports/speed?model=b2b", None, "UNYYYYY"),
    ("GET", "/api/v1/reports/accuracy?model=b2b", None, "UNYYYYY"),
    // Models: every role reads; marketing and admins change them, backtest and compare.
    ("GET", "/api/v1/models", None, "UNYYYYY"),
    ("GET", "/api/v1/models/b2b", None, "UNYYYYY"),
    ("GET", "/api/v1/models/b2b/versions", None, "UNYYYYY"),
    ("POST", "/api/v1/models/validate", Some("name = \"x\""), "UNYYYYY"),
    ("PUT", "/api/v1/models/nothing", Some("not a model"), "UNNYYYN"),
    ("DELETE", "/api/v1/models/nothing", None, "UNNYYYN"),
    ("POST", "/api/v1/models/nothing/rescore", None, "UNNYYYN"),
    ("POST", "/api/v1/models/nothing/promote", None, "UNNYYYN"),
    ("POST", "/api/v1/backtest", Some("{}"), "UNYYYYN"),
    ("GET", "/api/v1/backtest/nothing", None, "UNYYYYN"),
    ("GET", "/api/v1/reports/compare?model=b2b", None, "UNYYYYN"),
    ("POST", "/api/v1/predictive/train", Some("{}"), "UNNYYYN"),
    ("GET", "/api/v1/predictive/models", None, "UNYYYYY"),
    ("POST", "/api/v1/predictive/models/99/promote", None, "UNNYYYN"),
    // Its backtest counts every contact: not for a rep, like the backtest itself.
    ("GET", "/api/v1/predictive/suggested", None, "UNYYYYN"),
    // Automations and the outbox: marketing and admins. The run log: every role, a rep
    // the runs for their own contacts.
    ("GET", "/api/v1/automations", None, "UNYYYYN"),
    ("GET", "/api/v1/automations/runs", None, "UNYYYYY"),
    ("GET", "/api/v1/automations/runs?contact=mine", None, "UNYYYYY"),
    ("GET", "/api/v1/automations/runs?contact=theirs", None, "UNYYYYH"),
    ("GET", "/api/v1/automations/nothing", None, "UNYYYYN"),
    ("PUT", "/api/v1/automations/nothing", Some("not an automation"), "UNNYYYN"),
    ("DELETE", "/api/v1/automations/nothing", None, "UNNYYYN"),
    ("GET", "/api/v1/deliveries", None, "UNYYYYN"),
    ("GET", "/api/v1/deliveries/nothing", None, "UNYYYYN"),
    ("POST", "/api/v1/deliveries/nothing/retry", None, "UNNYYYN"),
    ("GET", "/api/v1/teams", None, "UNYYYYN"),
    ("GET", "/api/v1/teams/nothing", None, "UNYYYYN"),
    ("GET", "/api/v1/webhooks", None, "UNYYYYN"),
    // Access control and data protection: admins.
    ("PUT", "/api/v1/teams/nothing", Some("{}"), "UNNYYNN"),
    ("DELETE", "/api/v1/teams/nothing", None, "UNNYYNN"),
    ("GET", "/api/v1/secrets", None, "UNNYYNN"),
    ("PUT", "/api/v1/secrets/nothing", Some("{}"), "UNNYYNN"),
    ("DELETE", "/api/v1/secrets/nothing", None, "UNNYYNN"),
    ("PUT", "/api/v1/webhooks/nothing", Some("{}"), "UNNYYNN"),
    ("DELETE", "/api/v1/webhooks/nothing", None, "UNNYYNN"),
    ("GET", "/api/v1/keys", None, "UNNYYNN"),
    ("POST", "/api/v1/keys", Some(r#"{"name": ""}"#), "UNNYYNN"),
    ("DELETE", "/api/v1/keys/nothing", None, "UNNYYNN"),
    ("GET", "/api/v1/users", None, "UNNYYNN"),
    ("POST", "/api/v1/users", Some(r#"{"email": ""}"#), "UNNYYNN"),
    ("GET", "/api/v1/users/nothing", None, "UNNYYNN"),
    ("PATCH", "/api/v1/users/nothing", Some("{}"), "UNNYYNN"),
    ("DELETE", "/api/v1/users/nothing", None, "UNNYYNN"),
    // Ingest: keys with the ingest scope (or admin); a session ingests only as an admin.
    ("POST", "/api/v1/events", Some(r#"{"batch": []}"#), "UYNYYNN"),
];

/// Segment's endpoints take a write key (an ingest key), not a session: (path, expected for
/// the key columns; every user column is `U`).
const SEGMENT: &[&str] = &[
    "/v1/track",
    "/v1/page",
    "/v1/screen",
    "/v1/identify",
    "/v1/batch",
    "/v1/import",
    "/v1/t",
    "/v1/p",
    "/v1/s",
    "/v1/i",
    "/v1/b",
    "/v1/alias",
    "/v1/a",
    "/v1/group",
    "/v1/g",
];

async fn key(server: &TestServer, scope: &str) -> String {
    let created = server.post("/api/v1/keys", &json!({ "name": scope, "scopes": [scope] })).await;
    created.body["key"].as_str().unwrap().to_string()
}

async fn session(server: &TestServer, email: &str, role: Role) -> String {
    users::add_user(&server.state.engine, NewUser { email: email.into(), password: PASSWORD.into(), role, name: None }).await.unwrap();
    let (_, token) = users::login(&server.state.engine, email, PASSWORD).await.unwrap();
    format!("{}={token}", users::SESSION_COOKIE)
}

enum Credential {
    None,
    Key(String),
    Cookie(String),
}

async fn call(server: &TestServer, method: &str, path: &str, body: Option<&str>, credential: &Credential) -> StatusCode {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = match credential {
        // Segment's libraries send the write key as the Basic user name.
        Credential::Key(key) if path.starts_with("/v1/") => server.request(method, path, None).basic_auth(key, None::<&str>),
        Credential::Key(key) => server.request(method, path, Some(key)),
        _ => server.request(method, path, None),
    };
    if let Credential::Cookie(cookie) = credential {
        // As the pages' own scripts and forms send it.
        request = request.header("cookie", cookie).header("sec-fetch-site", "same-origin");
    }
    if let Some(body) = body {
        let kind = if body.starts_with('{') { "application/json" } else { "application/toml" };
        request = request.header("content-type", kind).body(body.to_string());
    }
    server.send(request).await.status
}

fn judged(expected: char, status: StatusCode) -> bool {
    match expected {
        'Y' => status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
        'U' => status == StatusCode::UNAUTHORIZED,
        'N' => status == StatusCode::FORBIDDEN,
        'H' => status == StatusCode::NOT_FOUND,
        other => panic!("unknown expectation {other:?}"),
    }
}

async fn every_route_by_key_scope_and_role(server: TestServer) {
    let model = leadscore_core::model::EXAMPLE_MODEL_TOML;
    server.put_model("b2b", model).await;
    for (id, owner) in [("mine", "sales@example.com"), ("theirs", "other@example.com")] {
        let new = NewContact { id: Some(id.into()), email: Some(format!("{id}@acme.com")), owner: Some(owner.into()), ..NewContact::default() };
        contacts::upsert(&server.state.engine, new).await.unwrap();
    }
    let credentials = [
        Credential::None,
        Credential::Key(key(&server, "ingest").await),
        Credential::Key(key(&server, "read").await),
        Credential::Key(ADMIN_KEY.to_string()),
        Credential::Cookie(session(&server, "admin@example.com", Role::Admin).await),
        Credential::Cookie(session(&server, "marketing@example.com", Role::Marketing).await),
        Credential::Cookie(session(&server, "sales@example.com", Role::Sales).await),
    ];
    let mut wrong = Vec::new();
    let mut rows: Vec<(&str, String, Option<&str>, String)> = MATRIX.iter().map(|(m, p, b, e)| (*m, p.to_string(), *b, e.to_string())).collect();
    for path in SEGMENT {
        rows.push(("POST", path.to_string(), Some(r#"{"userId": "u1", "event": "Seen", "type": "track"}"#), "UYNYUUU".to_string()));
    }
    for (method, path, body, expected) in &rows {
        for (column, credential) in credentials.iter().enumerate() {
            let want = expected.chars().nth(column).unwrap();
            let status = call(&server, method, path, *body, credential).await;
            if !judged(want, status) {
                wrong.push(format!("{method} {path} as {}: {status}, expected {want}", COLUMNS[column]));
            }
        }
    }
    assert!(wrong.is_empty(), "the access matrix does not hold:\n{}", wrong.join("\n"));

    // Every route of the API (every operation of its OpenAPI document) is in the table.
    let document = serde_json::to_value(leadscore_server::openapi::document()).unwrap();
    let routes = document["paths"].as_object().unwrap().iter().flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method, path)));
    for (method, path) in routes {
        let listed = rows.iter().any(|(m, p, _, _)| {
            m.eq_ignore_ascii_case(method) && {
                let p = p.split('?').next().unwrap();
                p.split('/').count() == path.split('/').count()
                    && p.split('/').zip(path.split('/')).all(|(a, b)| a == b || (b.starts_with('{') && b.ends_with('}')))
            }
        });
        assert!(listed, "{method} {path} is missing from the access matrix");
    }
}

/// A session cookie sent by another site's page cannot change anything, and one that has
/// ended opens nothing.
async fn cookies_from_another_site_and_ended_sessions_are_refused(server: TestServer) {
    let cookie = session(&server, "admin@example.com", Role::Admin).await;
    let cross = server
        .request(Method::POST, "/api/v1/contacts", None)
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .json(&json!({ "id": "planted" }));
    server.send(cross).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    let origin = server
        .request(Method::POST, "/api/v1/contacts", None)
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .json(&json!({ "id": "planted" }));
    server.send(origin).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(contacts::find(&server.state.engine, "planted").await.is_err(), "nothing was created");
    // Reading from a link on another site is harmless and allowed (SameSite=Lax sends the cookie then).
    let read = server.request(Method::GET, "/api/v1/models", None).header("cookie", &cookie).header("sec-fetch-site", "cross-site");
    assert_eq!(server.send(read).await.status, StatusCode::OK);

    let token = cookie.split_once('=').unwrap().1;
    users::logout(&server.state.engine, token).await.unwrap();
    let ended = server.request(Method::GET, "/api/v1/models", None).header("cookie", &cookie);
    server.send(ended).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let forged = server.request(Method::GET, "/api/v1/models", None).header("cookie", format!("{}={}", users::SESSION_COOKIE, "0".repeat(64)));
    server.send(forged).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A rep's lead list through the API holds only their contacts, whatever `owner` says.
async fn a_reps_lead_list_is_their_own(server: TestServer) {
    server.put_model("b2b", leadscore_core::model::EXAMPLE_MODEL_TOML).await;
    for (id, owner) in [("mine", Some("sales@example.com")), ("theirs", Some("other@example.com")), ("pool", None)] {
        let new = NewContact { id: Some(id.into()), owner: owner.map(str::to_string), ..NewContact::default() };
        contacts::upsert(&server.state.engine, new).await.unwrap();
    }
    let cookie = session(&server, "sales@example.com", Role::Sales).await;
    for query in ["model=b2b", "model=b2b&owner=other@example.com", "model=b2b&format=csv"] {
        let request = server.request(Method::GET, &format!("/api/v1/contacts?{query}"), None).header("cookie", &cookie);
        let reply = server.send(request).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}");
        let ids: Vec<String> = if query.ends_with("csv") {
            reply.text.lines().skip(1).map(|line| line.split(',').next().unwrap().to_string()).collect()
        } else {
            reply.body["contacts"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(ids, ["mine"], "{query}");
    }
    let everyone = server.request(Method::GET, "/api/v1/contacts", None).header("cookie", &cookie);
    assert_eq!(server.send(everyone).await.status, StatusCode::BAD_REQUEST, "the whole contact list is not a rep's");
}

const DEMO_MODEL: &str = r#"
name = "b2b"
[[bands]]
name = "hot"
min = 60
[[bands]]
name = "cold"
[[activity]]
name = "Demo request"
event = "Demo Requested"
points = 70
"#;

const DEMO_AUTOMATION: &str = r#"
name = "Demo tag"
trigger = { event = { name = "Demo Requested" } }
actions = [{ add_group = { group = "demo" } }]
"#;

/// A rep's reports, run log and account list count only the contacts they reach: their
/// own, and the unassigned pool only when the server allows it.
async fn a_reps_reports_runs_and_accounts_count_only_their_contacts(server: TestServer) {
    server.set_now(T0 + 2 * DAY);
    server.publish("b2b", DEMO_MODEL).await;
    let request =
        server.request(Method::PUT, "/api/v1/automations/Demo%20tag", Some(ADMIN_KEY)).header("content-type", "application/toml").body(DEMO_AUTOMATION);
    server.send(request).await.expect(StatusCode::CREATED);
    for (id, owner) in [("mine", Some("sales@example.com")), ("theirs", Some("other@example.com")), ("pool", None)] {
        let company = match id {
            "mine" => "acme.com",
            "theirs" => "globex.com",
            _ => "initech.com",
        };
        server.create_contact(json!({ "id": id, "owner": owner, "email": format!("{id}@{company}") })).await;
        server.ingest(track(id, &format!("demo-{id}"), "Demo Requested", json!({}), T0)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.state.store.queue_depth().await.unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "the queue was not evaluated");
        server.state.runtime.wake_evaluator.notify_one();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for (id, status) in [("mine", "won"), ("theirs", "lost"), ("pool", "won")] {
        server.post(&format!("/api/v1/contacts/{id}/status"), &json!({ "status": status, "at": format_time(T0 + DAY) })).await.expect(StatusCode::CREATED);
    }
    server.post("/api/v1/contacts/theirs/feedback", &json!({ "rating": 2, "at": format_time(T0 + DAY) })).await.expect(StatusCode::CREATED);

    let cookie = session(&server, "sales@example.com", Role::Sales).await;
    let as_rep = |path: &str| server.request(Method::GET, path, None).header("cookie", &cookie);
    let counts = |body: &serde_json::Value| {
        (
            body["brackets"]["contacts"].as_u64(),
            body["distribution"]["contacts"].as_u64(),
            body["speed"]["became_hot"].as_u64(),
            body["accuracy"]["closed"].as_u64(),
        )
    };
    let mut seen = [json!({}), json!({})];
    for (i, rep) in [false, true].into_iter().enumerate() {
        for report in ["brackets", "distribution", "speed", "accuracy", "feedback", "sources"] {
            let path = format!("/api/v1/reports/{report}?model=b2b");
            let reply = if rep { server.send(as_rep(&path)).await } else { server.get(&path).await };
            seen[i][report] = reply.expect(StatusCode::OK).clone();
        }
    }
    let [everyone, rep] = seen;
    assert_eq!(counts(&everyone), (Some(3), Some(3), Some(3), Some(3)), "the admin key counts every contact: {everyone}");
    assert_eq!(counts(&rep), (Some(1), Some(1), Some(1), Some(1)), "the rep counts their own only: {rep}");
    assert_eq!(rep["accuracy"]["lost"], 0, "the other rep's lost deal is not the rep's");
    assert_eq!(everyone["feedback"]["ratings_by_band"][0]["ratings"], 1);
    assert_eq!(rep["feedback"]["ratings_by_band"], json!([]), "the other rep's rating is not counted");
    assert_eq!(rep["sources"]["sources"][0]["contacts"], 1);

    let run_contacts =
        |body: &serde_json::Value| -> Vec<String> { body["runs"].as_array().unwrap().iter().map(|r| r["contact"].as_str().unwrap().to_string()).collect() };
    let all = server.get("/api/v1/automations/runs").await;
    assert_eq!(run_contacts(all.expect(StatusCode::OK)).len(), 3);
    // One run per page: the rep's page reads past the runs of others to fill itself.
    let mut pages = Vec::new();
    let mut path = "/api/v1/automations/runs?limit=1".to_string();
    loop {
        let reply = server.send(as_rep(&path)).await;
        let body = reply.expect(StatusCode::OK).clone();
        pages.push(run_contacts(&body));
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/automations/runs?limit=1&cursor={}", cursor.replace(':', "%3A").replace('+', "%2B")),
            None => break,
        }
        assert!(pages.len() < 10, "the rep's run log does not end: {pages:?}");
    }
    assert_eq!(pages.concat(), ["mine"], "the rep sees the runs for their own contact only: {pages:?}");
    server.send(as_rep("/api/v1/automations/runs?contact=theirs")).await.expect_error(StatusCode::NOT_FOUND, "not_found");

    let account_ids = |body: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = body["accounts"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    };
    assert_eq!(account_ids(server.get("/api/v1/accounts?model=b2b").await.expect(StatusCode::OK)), ["acme.com", "globex.com", "initech.com"]);
    let reply = server.send(as_rep("/api/v1/accounts?model=b2b")).await;
    assert_eq!(account_ids(reply.expect(StatusCode::OK)), ["acme.com"], "the rep's accounts are those of their contacts");
    server.send(as_rep("/api/v1/accounts/globex.com?model=b2b")).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    let reply = server.send(as_rep("/api/v1/accounts/acme.com?model=b2b")).await;
    assert_eq!(reply.expect(StatusCode::OK)["contacts"].as_array().unwrap().len(), 1);
}

common::both_backends!(
    every_route_by_key_scope_and_role,
    cookies_from_another_site_and_ended_sessions_are_refused,
    a_reps_lead_list_is_their_own,
    a_reps_reports_runs_and_accounts_count_only_their_contacts
);
