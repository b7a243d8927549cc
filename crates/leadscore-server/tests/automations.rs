//! Automation definitions over HTTP (PRODUCT.md §3, §5): stored, validated, listed,
//! deleted (running them: tests/runs.rs). Every test runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use leadscore_server::input::format_time;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const HOT: &str = r#"
name = "Austin hot leads"
model = "b2b"
trigger = { hot = { points = 20, within = "1d" } }
filter = { group = "austin" }
limits = { max = 1, per = "7d", cooldown = "1d" }
actions = [
  { webhook = { url = "https://crm.example.com/hooks/hot", secret_ref = "crm" } },
  { assign = { team = "austin-sales", strategy = "round_robin" } },
]
"#;

/// The path of an automation (names may have spaces).
fn path(name: &str) -> String {
    format!("/api/v1/automations/{}", name.replace(' ', "%20"))
}

async fn put_toml(server: &TestServer, name: &str, toml: &str) -> Reply {
    let request = server.request(Method::PUT, &path(name), Some(ADMIN_KEY)).header("content-type", "application/toml").body(toml.to_string());
    server.send(request).await
}

async fn put_json(server: &TestServer, name: &str, definition: &Value) -> Reply {
    server.send(server.request(Method::PUT, &path(name), Some(ADMIN_KEY)).json(definition)).await
}

// 1. Create (TOML), read, replace (JSON) keeping created_at, list, delete.
async fn put_get_replace_list_delete(server: TestServer) {
    let created = put_toml(&server, "Austin hot leads", HOT).await;
    let created = created.expect(StatusCode::CREATED).clone();
    assert_eq!(created["name"], "Austin hot leads");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["created_at"], format_time(T0));
    assert_eq!(created["definition"]["trigger"], json!({ "hot": { "points": 20, "within": "1d" } }), "TOML is kept as JSON");

    let read = server.get(&path("Austin hot leads")).await;
    assert_eq!(read.expect(StatusCode::OK), &created);

    // Replaced an hour later, as JSON: created_at stays, updated_at moves.
    server.set_now(T0 + HOUR);
    let mut definition = created["definition"].clone();
    definition["enabled"] = json!(false);
    definition["trigger"]["hot"]["points"] = json!(30);
    let replaced = put_json(&server, "Austin hot leads", &definition).await;
    let replaced = replaced.expect(StatusCode::OK).clone();
    assert_eq!(replaced["created_at"], format_time(T0));
    assert_eq!(replaced["updated_at"], format_time(T0 + HOUR));
    assert_eq!(replaced["enabled"], false);
    assert_eq!(server.get(&path("Austin hot leads")).await.body["definition"]["trigger"]["hot"]["points"], 30);

    let event = json!({
        "name": "Unsubscribed", "trigger": { "event": { "name": "Unsubscribed" } },
        "actions": [{ "add_group": { "group": "unsubscribed" } }],
    });
    put_json(&server, "Unsubscribed", &event).await.expect(StatusCode::CREATED);

    let list = server.get("/api/v1/automations").await;
    let items = list.expect(StatusCode::OK)["automations"].as_array().unwrap().clone();
    let names: Vec<&str> = items.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Austin hot leads", "Unsubscribed"], "listed by name");
    let hot = &items[0];
    assert_eq!(hot["enabled"], false);
    assert_eq!(hot["model"], "b2b");
    assert_eq!(hot["trigger"], "hot: at least 30 activity points within 1d");
    assert_eq!(hot["filter"], "in group austin");
    assert_eq!(hot["limits"], "at most 1 per 1w, cooldown 1d per contact");
    assert_eq!(hot["actions"], json!(["webhook https://crm.example.com/hooks/hot", "assign to austin-sales (round robin)"]));
    assert!(hot["last_fired_at"].is_null(), "nothing has run: {hot}");
    assert_eq!(hot["runs"], json!({ "last_day": 0, "last_week": 0, "total": 0 }));
    assert_eq!(items[1]["trigger"], "event: Unsubscribed");
    assert_eq!(items[1]["filter"], "every contact");
    assert_eq!(items[1]["limits"], "no limits");

    assert_eq!(server.delete(&path("Unsubscribed")).await.status, StatusCode::NO_CONTENT);
    server.delete(&path("Unsubscribed")).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.get(&path("Unsubscribed")).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(server.get("/api/v1/automations").await.body["automations"].as_array().unwrap().len(), 1);
}

// 2. An invalid automation is refused whole with every problem; nothing is stored.
async fn invalid_automations_list_every_problem_and_store_nothing(server: TestServer) {
    let bad = r#"
name = "bad"
trigger = { lukewarm = { points = 1 } }
limits = { max = 0, per = "7 days" }
actions = [ { webhook = { url = "ftp://x" } }, { teleport = {} } ]
"#;
    let reply = put_toml(&server, "bad", bad).await;
    let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let problems: Vec<String> = error["details"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} | {}", p["path"].as_str().unwrap(), p["message"].as_str().unwrap()))
        .collect();
    for expect in [
        "trigger | unknown \"lukewarm\"",
        "limits.max | must be a whole number",
        "actions[0].webhook.url | must be an http(s) URL",
        "actions[1] | unknown \"teleport\"",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(expect)), "missing {expect:?} in {problems:#?}");
    }
    server.get(&path("bad")).await.expect_error(StatusCode::NOT_FOUND, "not_found");

    // Syntax errors name the line.
    let reply = put_toml(&server, "bad", "name = \"bad\"\ntrigger = {").await;
    let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(error["details"]["problems"][0]["path"].as_str().unwrap().starts_with("line"), "{error}");

    // The body's name must be the path's.
    let reply = put_toml(&server, "Other name", HOT).await;
    let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(error["details"]["problems"][0]["path"], "name");
    server.get(&path("Other name")).await.expect_error(StatusCode::NOT_FOUND, "not_found");

    // A valid automation is not replaced by an invalid one.
    put_toml(&server, "Austin hot leads", HOT).await.expect(StatusCode::CREATED);
    put_toml(&server, "Austin hot leads", &HOT.replace("points = 20", "points = \"many\"")).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(server.get(&path("Austin hot leads")).await.body["definition"]["trigger"]["hot"]["points"], 20);
    assert_eq!(server.get("/api/v1/automations").await.body["automations"].as_array().unwrap().len(), 1);
}

// 3. Read keys read, only admin keys write; no key, no access.
async fn reads_need_read_and_writes_need_admin(server: TestServer) {
    put_toml(&server, "Austin hot leads", HOT).await.expect(StatusCode::CREATED);
    let read = server.post("/api/v1/keys", &json!({ "name": "dashboard", "scopes": ["read"] })).await;
    let read_key = read.expect(StatusCode::CREATED)["key"].as_str().unwrap().to_string();
    let ingest = server.post("/api/v1/keys", &json!({ "name": "site", "scopes": ["ingest"] })).await;
    let ingest_key = ingest.expect(StatusCode::CREATED)["key"].as_str().unwrap().to_string();

    for route in ["/api/v1/automations".to_string(), path("Austin hot leads")] {
        server.send(server.request(Method::GET, &route, Some(&read_key))).await.expect(StatusCode::OK);
        server.send(server.request(Method::GET, &route, Some(&ingest_key))).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
        server.send(server.request(Method::GET, &route, None)).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let put = server.request(Method::PUT, &path("Austin hot leads"), Some(&read_key)).body(HOT.to_string());
    server.send(put).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    let delete = server.request(Method::DELETE, &path("Austin hot leads"), Some(&read_key));
    server.send(delete).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    server.get(&path("Austin hot leads")).await.expect(StatusCode::OK);
}

// 4. The contract examples (PRODUCT.md §3) are accepted one by one and summarised.
async fn the_contract_examples_are_accepted(server: TestServer) {
    let examples = leadscore_core::automation::Automation::parse_file(leadscore_core::automation::EXAMPLE_AUTOMATIONS_TOML).unwrap();
    for example in &examples {
        put_json(&server, &example.name, &example.definition).await.expect(StatusCode::CREATED);
    }
    let list = server.get("/api/v1/automations").await;
    let items = list.expect(StatusCode::OK)["automations"].as_array().unwrap().clone();
    assert_eq!(items.len(), examples.len());
    let by_name = |name: &str| items.iter().find(|a| a["name"] == name).unwrap().clone();
    assert_eq!(by_name("Sales-qualified handoff")["trigger"], "threshold: total score crosses above 100");
    assert_eq!(by_name("Nurture ladder")["trigger"], "band: any band change under b2b");
    assert!(by_name("Quarterly client touch")["trigger"].as_str().unwrap().starts_with("cold: fewer than 2"));
    assert!(items.iter().all(|a| a.get("problems").is_none()), "{items:#?}");
}

common::both_backends!(
    put_get_replace_list_delete,
    invalid_automations_list_every_problem_and_store_nothing,
    reads_need_read_and_writes_need_admin,
    the_contract_examples_are_accepted,
);
