//! Accounts (PRODUCT.md F29) against the real server: contacts roll up by a Segment
//! `group` call or by their company e-mail domain (never a free mailbox), the account score
//! is the model's aggregate with account bands, the list is sorted and paginated, and an
//! account's page lists its contacts. Every test runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MODEL: &str = r#"
name = "b2b"
[accounts]
aggregate = "mean_top_n"
top_n = 2
bands = [ { name = "key account", min = 40 }, { name = "other" } ]
[[bands]]
name = "hot"
min = 40
[[bands]]
name = "cold"
[[activity]]
name = "Ten"
event = "Ten"
points = 10
"#;

async fn earn(server: &TestServer, contact: &str, tens: u32) {
    let batch: Vec<Value> = (0..tens).map(|i| track(contact, &format!("{contact}-{i}"), "Ten", json!({}), T0)).collect();
    if !batch.is_empty() {
        server.ingest(json!({ "batch": batch })).await;
    }
}

async fn accounts_roll_up_contacts_by_group_or_domain(server: TestServer) {
    server.publish("b2b", MODEL).await;
    for (id, email, tens) in [
        ("ann", "ann@acme.com", 3),
        ("bob", "bob@acme.com", 5),
        ("cid", "cid@acme.com", 1),
        ("eve", "eve@beta.io", 2),
        ("fay", "fay@beta.io", 0),
        ("gus", "gus@gmail.com", 6),
    ] {
        server.create_contact(json!({ "id": id, "email": email })).await;
        earn(&server, id, tens).await;
    }
    // A Segment group call puts hal (no company e-mail) into the account gamma-inc.
    let key =
        server.post("/api/v1/keys", &json!({ "name": "site", "scopes": ["ingest"] })).await.expect(StatusCode::CREATED)["key"].as_str().unwrap().to_string();
    let group = json!({ "writeKey": key, "userId": "hal", "groupId": "gamma-inc", "traits": { "name": "Gamma Inc" } });
    let reply = server.send(server.request(Method::POST, "/v1/group", None).json(&group)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    earn(&server, "hal", 5).await;

    let listed = server.get("/api/v1/accounts?model=b2b").await;
    let listed = listed.expect(StatusCode::OK).clone();
    assert_eq!(listed["aggregate"], "mean_top_2");
    let rows: Vec<(String, f64, String, u64)> = listed["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (a["id"].as_str().unwrap().to_string(), a["score"].as_f64().unwrap(), a["band"].as_str().unwrap().to_string(), a["contacts"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("gamma-inc".to_string(), 50.0, "key account".to_string(), 1),
            ("acme.com".to_string(), 40.0, "key account".to_string(), 3),
            ("beta.io".to_string(), 10.0, "other".to_string(), 2),
        ],
        "mean of the best two: acme (50 + 30) / 2; gmail.com is no account"
    );
    let key_accounts = server.get("/api/v1/accounts?model=b2b&band=key%20account").await;
    assert_eq!(key_accounts.expect(StatusCode::OK)["accounts"].as_array().unwrap().len(), 2);
    let first = server.get("/api/v1/accounts?limit=1").await;
    let first = first.expect(StatusCode::OK).clone();
    assert_eq!(first["accounts"][0]["id"], "gamma-inc", "the only live model is used by default");
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let second = server.get_query("/api/v1/accounts", &[("limit", "1"), ("cursor", cursor.as_str())]).await;
    assert_eq!(second.expect(StatusCode::OK)["accounts"][0]["id"], "acme.com");

    let page = server.get("/api/v1/accounts/acme.com?model=b2b").await;
    let page = page.expect(StatusCode::OK).clone();
    assert_eq!((page["score"].as_f64(), page["band"].as_str()), (Some(40.0), Some("key account")));
    let members: Vec<&str> = page["contacts"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(members, ["bob", "ann", "cid"], "best first");
    assert_eq!(page["contacts"][0]["scores"]["b2b"]["total"], 50.0);
    server.get("/api/v1/accounts/gmail.com").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.get("/api/v1/accounts?model=b2b&band=platinum").await.expect_error(StatusCode::BAD_REQUEST, "bad_request");

    // Moving a contact moves its points: bob joins beta.io by attribute.
    server.patch("/api/v1/contacts/bob", &json!({ "attributes": { "account_id": "beta.io" } })).await.expect(StatusCode::OK);
    let beta = server.get("/api/v1/accounts/beta.io").await;
    assert_eq!(beta.expect(StatusCode::OK)["score"], 35.0, "(50 + 20) / 2");
}

common::both_backends!(accounts_roll_up_contacts_by_group_or_domain);
