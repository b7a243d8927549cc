//! End-to-end tests of the HTTP API (PRODUCT.md §2, §4, §5): each test boots a real server
//! on 127.0.0.1:0 with a fresh SQLite database and a clock it controls, and talks HTTP.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use leadscore_server::input::format_time;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The ids of a list reply, in order.
fn ids(reply: &Value) -> Vec<String> {
    reply["contacts"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect()
}

/// The shown totals under `model` of a list reply, in order.
fn totals(reply: &Value, model: &str) -> Vec<f64> {
    reply["contacts"].as_array().unwrap().iter().map(|c| c["scores"][model]["total"].as_f64().unwrap()).collect()
}

/// GET /api/v1/contacts/{id}?at=… ; checks the reply says which instant it is as of.
async fn contact_at(server: &TestServer, id: &str, at: i64) -> Value {
    let reply = server.get_query(&format!("/api/v1/contacts/{id}"), &[("at", &format_time(at))]).await;
    let contact = reply.expect(StatusCode::OK).clone();
    assert_eq!(contact["as_of"], format_time(at));
    contact
}

/// Walks the lead list page by page with `query` (plus `limit`), following `next_cursor`,
/// and returns every id in the order served.
async fn walk_lead_list(server: &TestServer, query: &[(&str, &str)], limit: usize) -> Vec<String> {
    let limit = limit.to_string();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let mut params: Vec<(&str, &str)> = query.to_vec();
        params.push(("limit", &limit));
        if let Some(cursor) = &cursor {
            params.push(("cursor", cursor));
        }
        let page = server.get_query("/api/v1/contacts", &params).await.expect(StatusCode::OK).clone();
        let page_ids = ids(&page);
        assert!(page_ids.len() <= limit.parse().unwrap(), "a page longer than the limit: {page_ids:?}");
        seen.extend(page_ids);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return seen,
        }
    }
    panic!("the lead list did not end after 50 pages: {seen:?}");
}

// 1. The example model scores events exactly as PRODUCT.md §2 says.
async fn example_model_scores_single_and_batched_events(server: TestServer) {
    assert_eq!(server.publish("b2b", &example_model()).await, 1);

    // CTO (+20) at a 250-person company (+10): fit 30, no activity yet.
    let created = server
        .create_contact(json!({
            "id": "ada",
            "email": "Ada@Example.com",
            "attributes": { "job_title": "CTO", "company_size": 250, "product_interest": "platform" },
        }))
        .await;
    assert_eq!(created["email"], "ada@example.com");
    assert_eq!(card(&created, "b2b"), expected_card(30.0, 0.0, "cold", 2, "B", "long-term target"));

    // One event: the quote form (+50).
    let reply = server.ingest(quote_form("ada", "ada-1", T0)).await;
    assert_eq!(
        reply,
        json!({
            "accepted": 1, "duplicates": 0, "rejected": [],
            "results": [{ "index": 0, "status": "stored", "contact": "ada" }],
        })
    );
    assert_eq!(card(&server.contact("ada").await, "b2b"), expected_card(30.0, 50.0, "warm", 4, "B", "sales-ready"));

    // A batch: the pricing page (+25), then again the same day (capped at once a day).
    let reply = server.ingest(json!({ "batch": [page("ada", "ada-2", "/pricing", T0), page("ada", "ada-3", "/pricing/enterprise", T0)] })).await;
    assert_eq!((reply["accepted"].as_u64(), reply["duplicates"].as_u64()), (Some(2), Some(0)));
    let ada = server.contact("ada").await;
    assert_eq!(card(&ada, "b2b"), expected_card(30.0, 75.0, "hot", 5, "B", "sales-ready"));
    assert_eq!(ada["scores"]["b2b"]["version"], 1);
    assert_eq!(ada["last_event_at"], format_time(T0));

    // A contact made by events alone, with traits from identify: "Marketing Director"
    // (+20), company_size "80" (a numeric string, not > 100), no product_interest (in the
    // segment: "platform, or no product interest known"); the webinar is +15.
    let reply = server
        .ingest(json!({ "batch": [
            { "type": "identify", "messageId": "bo-1", "userId": "bo", "timestamp": format_time(T0),
              "traits": { "job_title": "Marketing Director", "company_size": "80" } },
            track("bo", "bo-2", "Webinar Attended", json!({}), T0),
        ]}))
        .await;
    assert_eq!(reply["accepted"], 2);
    let bo = server.contact("bo").await;
    assert_eq!(bo["attributes"]["job_title"], "Marketing Director");
    assert_eq!(card(&bo, "b2b"), expected_card(20.0, 15.0, "cold", 2, "C", "unqualified"));

    // Outside the model's segment (interested in services): no b2b score at all, and the
    // contact says why (issue 12.12).
    server.create_contact(json!({ "id": "cy", "attributes": { "product_interest": "services" } })).await;
    server.ingest(quote_form("cy", "cy-1", T0)).await;
    let cy = server.contact("cy").await;
    assert_eq!(cy["scores"], json!({}));
    assert_eq!(
        cy["not_scored"]["b2b"],
        "it applies only where product_interest eq \"platform\" or product_interest not_exists; this contact's product_interest is \"services\""
    );
    assert!(server.contact("bo").await.get("not_scored").is_none(), "scored contacts have no such note");

    // Thirty days later (one half-life, four idle weeks): ada 75/2 - 4*5 = 17.5; bo's
    // 15/2 - 20 stops at 0.
    server.set_now(T0 + 30 * DAY);
    assert_eq!(card(&server.contact("ada").await, "b2b"), expected_card(30.0, 17.5, "cold", 2, "B", "long-term target"));
    assert_eq!(card(&server.contact("bo").await, "b2b"), expected_card(20.0, 0.0, "cold", 1, "C", "unqualified"));
}

// 2. F9: the set of events decides, not their arrival order; repeated messageIds are ignored.
async fn late_and_duplicate_events_score_like_sorted_ones(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.publish("flat", &example_model_without_decay("flat")).await;
    for id in ["sorted", "shuffled"] {
        server.create_contact(platform_contact(id, json!({}))).await;
    }
    // Exercises the daily cap, the 3-in-a-day frequency rule and negative points.
    let events = |user: &str| -> Vec<Value> {
        let id = |n: u32| format!("{user}-{n}");
        vec![
            page(user, &id(1), "/features", T0),                                 // 1st features visit
            page(user, &id(2), "/features/api", T0 + HOUR),                      // 2nd
            page(user, &id(3), "/pricing", T0 + 2 * HOUR),                       // +25
            page(user, &id(4), "/features", T0 + 3 * HOUR),                      // 3rd within a day: +15
            page(user, &id(5), "/pricing", T0 + 5 * HOUR),                       // capped: once a day
            track(user, &id(6), "Email Link Clicked", json!({}), T0 + 6 * HOUR), // +3
            page(user, &id(7), "/pricing", T0 + 27 * HOUR),                      // a day after the last award: +25
            quote_form(user, &id(8), T0 + 28 * HOUR),                            // +50
            page(user, &id(9), "/careers", T0 + 29 * HOUR),                      // -10
        ]
    };
    server.set_now(T0 + 30 * HOUR);

    for event in events("sorted") {
        server.ingest(event).await;
    }

    // The same events, late and out of order, in singles and batches, with repeats.
    let e = events("shuffled");
    let deliveries = [
        json!({ "batch": [e[7], e[2]] }),
        e[8].clone(),
        json!({ "batch": [e[0], e[4]] }),
        e[3].clone(),
        json!({ "batch": [e[6], e[2], e[1], e[5]] }), // e[2] again
    ];
    for delivery in deliveries {
        server.ingest(delivery).await;
    }
    let repeats = server.ingest(json!({ "batch": [e[7], e[0]] })).await;
    assert_eq!(
        repeats,
        json!({
            "accepted": 0, "duplicates": 2, "rejected": [],
            "results": [
                { "index": 0, "status": "duplicate", "contact": "shuffled" },
                { "index": 1, "status": "duplicate", "contact": "shuffled" },
            ],
        })
    );
    let repeat = server.ingest(e[4].clone()).await;
    assert_eq!((repeat["accepted"].as_u64(), repeat["duplicates"].as_u64()), (Some(0), Some(1)));
    assert_eq!(server.state.store.contact_events("shuffled").await.unwrap().len(), 9);

    // 25 + 15 + 3 + 25 + 50 - 10 = 108, exactly, without decay.
    let sorted = server.contact("sorted").await;
    let shuffled = server.contact("shuffled").await;
    assert_eq!(card(&sorted, "flat"), expected_card(0.0, 108.0, "hot", 5, "D", "researcher"));
    assert_eq!(card(&shuffled, "flat"), card(&sorted, "flat"));
    assert_eq!(card(&shuffled, "b2b"), card(&sorted, "b2b"));

    // Still equal later, and as of a past instant.
    server.set_now(T0 + 12 * DAY);
    assert_eq!(card(&server.contact("shuffled").await, "b2b"), card(&server.contact("sorted").await, "b2b"));
    let sorted_then = contact_at(&server, "sorted", T0 + 4 * HOUR).await;
    let shuffled_then = contact_at(&server, "shuffled", T0 + 4 * HOUR).await;
    assert_eq!(card(&sorted_then, "flat"), expected_card(0.0, 40.0, "cold", 2, "D", "researcher"));
    assert_eq!(card(&shuffled_then, "flat"), card(&sorted_then, "flat"));
    assert_eq!(card(&shuffled_then, "b2b"), card(&sorted_then, "b2b"));

    // The lead list agrees (its stored scores went through the replay path too).
    let list = server.get_query("/api/v1/contacts", &[("model", "flat")]).await;
    assert_eq!(totals(list.expect(StatusCode::OK), "flat"), [108.0, 108.0]);
}

// 3. Bad input never loses good input (§4).
async fn batch_reports_bad_events_by_index_and_keeps_good_ones(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(platform_contact("mixed", json!({}))).await;

    let mut pricing = page("mixed", "mixed-5", "/pricing", T0);
    pricing["plan"] = json!("pro"); // unknown top-level field: kept in properties
    let batch = json!({ "batch": [
        quote_form("mixed", "mixed-0", T0),
        { "type": "track", "event": "Form Submitted", "userId": "mixed", "timestamp": "2026-03-02T10:00:00" },
        { "type": "track", "event": 5, "userId": "mixed" },
        { "type": "track", "event": "Form Submitted", "userId": "mixed", "properties": ["quote"] },
        { "type": "bogus", "event": "Form Submitted", "userId": "mixed" },
        pricing,
        { "type": "track", "event": "Form Submitted", "properties": { "form": "quote" } },
        "not an event",
    ]});
    let reply = server.post("/api/v1/events", &batch).await;
    let body = reply.expect(StatusCode::MULTI_STATUS);
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["duplicates"], 0);
    assert_eq!(
        body["results"],
        json!([
            { "index": 0, "status": "stored", "contact": "mixed" },
            { "index": 5, "status": "stored", "contact": "mixed" },
        ])
    );
    let rejected = body["rejected"].as_array().unwrap();
    let expected = [
        (1, "no time zone"),
        (2, "`event` must be a string"),
        (3, "`properties` must be an object"),
        (4, "unknown type"),
        (6, "needs `userId`, `email` or `anonymousId`"),
        (7, "must be a JSON object"),
    ];
    assert_eq!(rejected.len(), expected.len(), "{rejected:?}");
    for (item, (index, reason)) in rejected.iter().zip(expected) {
        assert_eq!(item["index"], index, "{item}");
        let text = item["reason"].as_str().unwrap();
        assert!(text.contains(reason), "index {index}: {text:?} should mention {reason:?}");
    }

    // The two good events are stored and scored: 50 + 25.
    let mixed = server.contact("mixed").await;
    assert_eq!(card(&mixed, "b2b"), expected_card(0.0, 75.0, "warm", 4, "D", "researcher"));
    let export = server.get("/api/v1/contacts/mixed/export").await;
    let events = export.expect(StatusCode::OK)["events"].as_array().unwrap().clone();
    let message_ids: Vec<&str> = events.iter().map(|e| e["messageId"].as_str().unwrap()).collect();
    assert_eq!(message_ids, ["mixed-0", "mixed-5"]);
    assert_eq!(events[1]["properties"], json!({ "path": "/pricing", "plan": "pro" }));

    // A single bad event is a 422 that names the problem; nothing is stored.
    let reply = server.post("/api/v1/events", &json!({ "type": "track", "userId": "mixed", "timestamp": "yesterday", "event": "x" })).await;
    let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(error["message"].as_str().unwrap().contains("RFC 3339"), "{error}");
    assert_eq!(error["details"]["rejected"][0]["index"], 0);
    assert_eq!(server.state.store.contact_events("mixed").await.unwrap().len(), 2);
}

// 4a. Every error has the shape {"error": {"code", "message"}} and the right status.
async fn errors_have_the_json_shape_and_status(server: TestServer) {
    // Malformed JSON, an empty body, and JSON of the wrong shape.
    let malformed =
        server.request(Method::POST, "/api/v1/events", Some(ADMIN_KEY)).header("content-type", "application/json").body(r#"{"event": "x", "userId": "#);
    server.send(malformed).await.expect_error(StatusCode::BAD_REQUEST, "malformed_json");
    let empty = server.request(Method::POST, "/api/v1/events", Some(ADMIN_KEY)).body("");
    server.send(empty).await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    server.post("/api/v1/contacts", &json!({ "id": "x", "attributes": [1] })).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    // A body over 4 MiB.
    let blob = "a".repeat(4 * 1024 * 1024);
    let oversize = server.post("/api/v1/events", &json!({ "event": "Big", "userId": "u", "properties": { "blob": blob } })).await;
    oversize.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // A batch over 1,000 events.
    let many: Vec<Value> = (0..1001).map(|n| quote_form("u", &format!("m{n}"), T0)).collect();
    server.post("/api/v1/events", &json!({ "batch": many })).await.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large");

    // Unknown routes and methods, unknown things.
    server.get("/api/v1/nope").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.get("/nope").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    let wrong_method = server.request(Method::PUT, "/api/v1/events", Some(ADMIN_KEY));
    server.send(wrong_method).await.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    server.get("/api/v1/contacts/nobody").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.get("/api/v1/models/nothing").await.expect_error(StatusCode::NOT_FOUND, "not_found");

    // Missing, malformed and unknown keys.
    let no_key = server.request(Method::GET, "/api/v1/contacts", None);
    server.send(no_key).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let basic = server.request(Method::GET, "/api/v1/contacts", None).header("authorization", "Basic dXNlcjpwdw==");
    server.send(basic).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let unknown = server.request(Method::GET, "/api/v1/contacts", Some("lsk_not_a_key"));
    server.send(unknown).await.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // An ingest-only key on a read route and an admin route.
    let key = server.post("/api/v1/keys", &json!({ "name": "website", "scopes": ["ingest"] })).await;
    let ingest_key = key.expect(StatusCode::CREATED)["key"].as_str().unwrap().to_string();
    for (method, path) in [(Method::GET, "/api/v1/contacts"), (Method::GET, "/api/v1/models"), (Method::GET, "/api/v1/keys")] {
        let request = server.request(method, path, Some(&ingest_key));
        server.send(request).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
}

// 4b. An invalid model is refused whole with every problem listed; the live one stays.
async fn invalid_model_lists_every_problem_and_keeps_the_live_model(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(platform_contact("kim", json!({ "job_title": "CTO" }))).await;
    server.ingest(quote_form("kim", "kim-1", T0)).await;
    let before = server.contact("kim").await;

    let invalid = r#"
name = "b2b"
colour = "blue"
[decay]
half_life = "30 days"
[[bands]]
name = "warm"
min = 50
[[bands]]
name = "hot"
min = 100
[[fit]]
name = "Title"
when = { attribute = "job_title", op = "resembles", value = "ceo" }
points = 10
[[activity]]
name = "Pricing"
event = "page"
when = { property = "path", op = "matches", value = "[unclosed" }
points = 25
"#;
    let reply = server.put_model("b2b", invalid).await;
    let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let problems = error["details"]["problems"].as_array().unwrap();
    let expected = [
        ("", "unknown field"),                                        // colour
        ("decay.half_life", "duration"),                              // bad duration
        ("bands[1].min", "highest first"),                            // band order
        ("fit[0] \"Title\".when.op", "unknown operator"),             // unknown op
        ("activity[0] \"Pricing\".when.value", "regular expression"), // bad regex
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (path, message) in expected {
        assert!(
            problems.iter().any(|p| p["path"].as_str().unwrap().starts_with(path) && p["message"].as_str().unwrap().contains(message)),
            "no problem at {path:?} mentioning {message:?} in {problems:#?}"
        );
    }

    // A TOML syntax error names its line.
    let reply = server.put_model("b2b", "name = \"b2b\"\n[decay\n").await;
    let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(error["details"]["problems"][0]["path"], "line 2");

    // Validation without publishing reports the same problems.
    let validate = server.request(Method::POST, "/api/v1/models/validate", Some(ADMIN_KEY)).header("content-type", "application/toml").body(invalid);
    let validated = server.send(validate).await;
    assert_eq!(validated.expect(StatusCode::OK)["valid"], false);
    assert_eq!(validated.body["problems"].as_array().unwrap().len(), expected.len());

    // The live model and the scores are untouched.
    let model = server.get("/api/v1/models/b2b").await;
    assert_eq!(model.expect(StatusCode::OK)["version"], 1);
    let versions = server.get("/api/v1/models/b2b/versions").await;
    assert_eq!(versions.expect(StatusCode::OK)["versions"].as_array().unwrap().len(), 1);
    assert_eq!(server.contact("kim").await["scores"], before["scores"]);
}

// 5. The lead list: best first, paginated without gaps or repeats, filtered.
async fn lead_list_paginates_in_order_with_filters(server: TestServer) {
    server.publish("b2b", &example_model()).await;

    // (id, job_title, company_size, groups, owner): fit 30 for c1 c2 c4, 20 for c0 c7 c8,
    // 10 for c3, 0 for c6, -20 for c5.
    type Lead = (&'static str, &'static str, u32, &'static [&'static str], Option<&'static str>);
    let leads: [Lead; 9] = [
        ("c0", "Director", 10, &[], None),
        ("c1", "CTO", 250, &["austin"], Some("rep-a")),
        ("c2", "Sales Director", 250, &["austin"], Some("rep-b")),
        ("c3", "Manager", 10, &[], Some("rep-a")),
        ("c4", "CTO", 250, &["austin", "vip"], None),
        ("c5", "Intern", 10, &["austin"], None),
        ("c6", "", 10, &[], Some("rep-a")),
        ("c7", "Manager", 500, &[], None),
        ("c8", "CTO", 10, &["boston"], None),
    ];
    for (id, title, size, groups, owner) in leads {
        let mut contact = platform_contact(id, json!({ "job_title": title, "company_size": size }));
        contact["groups"] = json!(groups);
        contact["owner"] = json!(owner);
        server.create_contact(contact).await;
    }
    // Totals: c4 30 + 75 = 105, c3 10 + 75 = 85, c1 and c2 30 + 50 = 80, c8 20 + 15 = 35,
    // c0 and c7 20, c6 0, c5 -20.
    server
        .ingest(json!({ "batch": [
            quote_form("c1", "c1-quote", T0),
            quote_form("c2", "c2-quote", T0),
            quote_form("c3", "c3-quote", T0),
            page("c3", "c3-pricing", "/pricing", T0),
            quote_form("c4", "c4-quote", T0),
            page("c4", "c4-pricing", "/pricing", T0),
            track("c8", "c8-webinar", "Webinar Attended", json!({}), T0),
        ]}))
        .await;
    // Not in the model's segment, so not on its lead list.
    server.create_contact(json!({ "id": "outsider", "attributes": { "job_title": "CTO", "product_interest": "services" } })).await;

    let best_first = ["c4", "c3", "c1", "c2", "c8", "c0", "c7", "c6", "c5"];
    for limit in [1, 2, 3, 4, 9, 50] {
        assert_eq!(walk_lead_list(&server, &[("model", "b2b"), ("sort", "-total")], limit).await, best_first, "limit {limit}");
    }
    // The default sort is -total; the shown totals fall along the list.
    let first_page = server.get_query("/api/v1/contacts", &[("model", "b2b")]).await;
    assert_eq!(totals(first_page.expect(StatusCode::OK), "b2b"), [105.0, 85.0, 80.0, 80.0, 35.0, 20.0, 20.0, 0.0, -20.0]);
    assert_eq!(first_page.body["next_cursor"], Value::Null);

    let worst_first = ["c5", "c6", "c0", "c7", "c8", "c1", "c2", "c3", "c4"];
    assert_eq!(walk_lead_list(&server, &[("model", "b2b"), ("sort", "total")], 2).await, worst_first);
    // Ties in fit across page boundaries are ordered by id.
    let by_fit = ["c1", "c2", "c4", "c0", "c7", "c8", "c3", "c6", "c5"];
    assert_eq!(walk_lead_list(&server, &[("model", "b2b"), ("sort", "-fit")], 2).await, by_fit);

    let filtered = |filters: &'static [(&'static str, &'static str)]| {
        let server = &server;
        async move {
            let mut query = vec![("model", "b2b"), ("sort", "-total")];
            query.extend_from_slice(filters);
            walk_lead_list(server, &query, 2).await
        }
    };
    assert_eq!(filtered(&[("band", "hot")]).await, ["c4"]);
    assert_eq!(filtered(&[("band", "warm")]).await, ["c3", "c1", "c2"]);
    assert_eq!(filtered(&[("band", "cold")]).await, ["c8", "c0", "c7", "c6", "c5"]);
    assert_eq!(filtered(&[("group", "austin")]).await, ["c4", "c1", "c2", "c5"]);
    assert_eq!(filtered(&[("group", "vip")]).await, ["c4"]);
    assert_eq!(filtered(&[("owner", "rep-a")]).await, ["c3", "c1", "c6"]);
    assert_eq!(filtered(&[("group", "austin"), ("band", "warm")]).await, ["c1", "c2"]);
    assert_eq!(filtered(&[("group", "austin"), ("owner", "rep-b")]).await, ["c2"]);
    assert!(filtered(&[("group", "nobody")]).await.is_empty());

    // Without a model: every contact once, in id order.
    let everyone = walk_lead_list(&server, &[], 4).await;
    assert_eq!(everyone, ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "outsider"]);

    // Bad list queries.
    for query in [
        vec![("model", "b2b"), ("band", "lukewarm")],
        vec![("model", "b2b"), ("sort", "-mood")],
        vec![("model", "b2b"), ("limit", "0")],
        vec![("model", "b2b"), ("cursor", "garbage")],
        vec![("band", "hot")],
    ] {
        server.get_query("/api/v1/contacts", &query).await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    server.get_query("/api/v1/contacts", &[("model", "nope")]).await.expect_error(StatusCode::NOT_FOUND, "not_found");
}

// 5b. Decay moves scores without events; the sweep brings the lead list's stored scores
// (which it sorts and filters by) up to what contacts show.
async fn decay_sweep_refreshes_the_lead_list(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    for id in ["fading", "fresh"] {
        server.create_contact(platform_contact(id, json!({}))).await;
    }
    server.ingest(json!({ "batch": [quote_form("fading", "fading-1", T0), page("fading", "fading-2", "/pricing", T0)] })).await;
    server.set_now(T0 + 60 * DAY);
    server.ingest(quote_form("fresh", "fresh-1", T0 + 60 * DAY)).await;
    // Two half-lives and eight idle weeks: 75 / 4 - 8 * 5 stops at 0.
    assert_eq!(card(&server.contact("fading").await, "b2b"), expected_card(0.0, 0.0, "cold", 0, "D", "unqualified"));
    assert_eq!(card(&server.contact("fresh").await, "b2b"), expected_card(0.0, 50.0, "warm", 3, "D", "researcher"));

    let report = leadscore_app::workers::decay_sweep(&server.state).await.unwrap();
    assert_eq!((report.seen, report.changed), (2, 1));
    let list = |band: &'static str| {
        let server = &server;
        async move { ids(server.get_query("/api/v1/contacts", &[("model", "b2b"), ("band", band)]).await.expect(StatusCode::OK)) }
    };
    assert_eq!(list("warm").await, ["fresh"]);
    assert_eq!(list("cold").await, ["fading"]);
    let all = server.get_query("/api/v1/contacts", &[("model", "b2b"), ("sort", "-total")]).await;
    assert_eq!(ids(all.expect(StatusCode::OK)), ["fresh", "fading"]);
}

// 6a. PATCH merges attributes and rescores fit at once.
async fn patch_rescores_fit(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(platform_contact("pat", json!({ "job_title": "Intern" }))).await;
    server.ingest(quote_form("pat", "pat-1", T0)).await;
    assert_eq!(card(&server.contact("pat").await, "b2b"), expected_card(-20.0, 50.0, "cold", 2, "D", "researcher"));

    // Manager (+10), company_size 101 (+10).
    let patch = json!({ "attributes": { "job_title": "IT Manager", "company_size": 101 }, "add_groups": ["austin"], "owner": "rep-a" });
    let patched = server.patch("/api/v1/contacts/pat", &patch).await;
    let patched = patched.expect(StatusCode::OK);
    assert_eq!(card(patched, "b2b"), expected_card(20.0, 50.0, "warm", 3, "C", "researcher"));
    assert_eq!(patched["groups"], json!(["austin"]));
    assert_eq!(patched["owner"], "rep-a");
    assert_eq!(card(&server.contact("pat").await, "b2b"), expected_card(20.0, 50.0, "warm", 3, "C", "researcher"));
    // The lead list's stored score moved too.
    let warm = server.get_query("/api/v1/contacts", &[("model", "b2b"), ("band", "warm"), ("group", "austin")]).await;
    assert_eq!(ids(warm.expect(StatusCode::OK)), ["pat"]);

    // null removes an attribute.
    let patched = server.patch("/api/v1/contacts/pat", &json!({ "attributes": { "company_size": null } })).await;
    let patched = patched.expect(StatusCode::OK);
    assert!(patched["attributes"].get("company_size").is_none());
    assert_eq!(card(patched, "b2b"), expected_card(10.0, 50.0, "warm", 3, "C", "researcher"));

    // Leaving the segment drops the score; coming back replays the events.
    let outside = server.patch("/api/v1/contacts/pat", &json!({ "attributes": { "product_interest": "hardware" } })).await;
    assert_eq!(outside.expect(StatusCode::OK)["scores"], json!({}));
    assert!(ids(server.get_query("/api/v1/contacts", &[("model", "b2b")]).await.expect(StatusCode::OK)).is_empty());
    let back = server.patch("/api/v1/contacts/pat", &json!({ "attributes": { "product_interest": "platform" } })).await;
    assert_eq!(card(back.expect(StatusCode::OK), "b2b"), expected_card(10.0, 50.0, "warm", 3, "C", "researcher"));

    server.patch("/api/v1/contacts/nobody", &json!({ "attributes": { "a": 1 } })).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.patch("/api/v1/contacts/pat", &json!({ "atributes": {} })).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
}

// 6b. DELETE erases the contact with its events, scores and history (F27).
async fn delete_erases_the_contact_and_its_events(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(json!({ "id": "gone", "email": "gone@example.com", "attributes": { "product_interest": "platform" } })).await;
    server.ingest(json!({ "batch": [quote_form("gone", "gone-1", T0), page("gone", "gone-2", "/pricing", T0)] })).await;
    assert_eq!(server.state.store.contact_events("gone").await.unwrap().len(), 2);

    assert_eq!(server.delete("/api/v1/contacts/gone").await.status, StatusCode::NO_CONTENT);
    server.get("/api/v1/contacts/gone").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.get("/api/v1/contacts/gone/history?model=b2b").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.get("/api/v1/contacts/gone/export").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    server.delete("/api/v1/contacts/gone").await.expect_error(StatusCode::NOT_FOUND, "not_found");
    assert!(server.state.store.contact_events("gone").await.unwrap().is_empty());
    assert!(server.state.store.contact_log("gone").await.unwrap().is_empty());
    assert!(ids(server.get_query("/api/v1/contacts", &[("model", "b2b")]).await.expect(StatusCode::OK)).is_empty());
    // The erasure log says that it happened, when and by which key; not what (issue 15.4).
    let log = server.get("/api/v1/erasures").await.expect(StatusCode::OK).clone();
    assert_eq!(log["erasures"].as_array().map(Vec::len), Some(1), "{log}");
    assert_eq!(log["erasures"][0]["at"], format_time(T0));
    assert!(log["erasures"][0]["by"].as_str().is_some_and(|by| !by.is_empty()), "{log}");
    assert!(!log.to_string().contains("gone"), "the log names no contact: {log}");

    // Nothing of it remains: the email is free, and its old messageIds are new again.
    let again = server.create_contact(json!({ "id": "gone", "email": "gone@example.com", "attributes": { "product_interest": "platform" } })).await;
    assert_eq!(card(&again, "b2b"), expected_card(0.0, 0.0, "cold", 0, "D", "unqualified"));
    let reply = server.ingest(page("gone", "gone-2", "/pricing", T0)).await;
    assert_eq!(reply["results"][0]["status"], "stored");
    assert_eq!(card(&server.contact("gone").await, "b2b"), expected_card(0.0, 25.0, "cold", 2, "D", "unqualified"));
}

// 6c. ?at= reads the scores as of a past instant: later events are ignored (F30).
async fn reading_at_a_past_instant_ignores_later_events(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(platform_contact("tess", json!({ "job_title": "CTO", "company_size": 250 }))).await;
    // The clock is moved first: an event more than a day ahead of it would be refused.
    server.set_now(T0 + 2 * DAY);
    server
        .ingest(json!({ "batch": [
            quote_form("tess", "tess-1", T0),
            page("tess", "tess-2", "/pricing", T0 + DAY),
            track("tess", "tess-3", "Webinar Attended", json!({}), T0 + 2 * DAY),
        ]}))
        .await;
    let at = |t: i64| {
        let server = &server;
        async move { card(&contact_at(server, "tess", t).await, "b2b") }
    };
    assert_eq!(at(T0 - DAY).await, expected_card(30.0, 0.0, "cold", 2, "B", "long-term target"));
    assert_eq!(at(T0).await, expected_card(30.0, 50.0, "warm", 4, "B", "sales-ready"));
    // 50 * 2^(-1/30) + 25 = 48.858 + 25, to 2 decimals.
    assert_eq!(at(T0 + DAY).await, expected_card(30.0, 73.86, "hot", 5, "B", "sales-ready"));
    assert_eq!(at(T0 + DAY - 1).await["activity"], 48.86);
    // Now: 50 * 2^(-2/30) + 25 * 2^(-1/30) + 15 = 47.742 + 24.429 + 15.
    assert_eq!(card(&server.contact("tess").await, "b2b"), expected_card(30.0, 87.17, "hot", 5, "B", "sales-ready"));

    // A time without a zone is refused, not guessed.
    let reply = server.get_query("/api/v1/contacts/tess", &[("at", "2026-03-02T09:00:00")]).await;
    let error = reply.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(error["message"].as_str().unwrap().contains("no time zone"), "{error}");
}

// 7. Publishing a changed model makes a new version and rescores every contact (F10).
async fn publishing_a_new_version_rescores_existing_contacts(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    for n in 0..5 {
        let id = format!("r{n}");
        server.create_contact(platform_contact(&id, json!({}))).await;
        server.ingest(quote_form(&id, &format!("{id}-quote"), T0)).await;
    }
    server.create_contact(json!({ "id": "z-outsider", "attributes": { "product_interest": "services" } })).await;
    assert!(ids(server.get_query("/api/v1/contacts", &[("model", "b2b"), ("band", "hot")]).await.expect(StatusCode::OK)).is_empty());

    // Version 2: a quote is worth 100.
    let v2 = example_model().replacen("points = 50\n", "points = 100\n", 1);
    assert_ne!(v2, example_model());
    let reply = server.put_model("b2b", &v2).await;
    let body = reply.expect(StatusCode::CREATED);
    assert_eq!(body["version"], 2);
    assert_eq!(body["rescore"]["version"], 2);
    assert_eq!(body["rescore"]["total"], 6);
    let job = server.wait_for_rescore("b2b", 2).await;
    assert_eq!((job["done"].as_u64(), job["total"].as_u64(), job["percent"].as_f64()), (Some(6), Some(6), Some(100.0)));

    // Every stored score is under version 2, so the lead list sees the new scores.
    for n in 0..5 {
        let id = format!("r{n}");
        let contact = server.state.store.get_contact(&id).await.unwrap().unwrap();
        assert_eq!(contact.scores["b2b"].version, 2, "{id}");
        assert_eq!(card(&server.contact(&id).await, "b2b"), expected_card(0.0, 100.0, "hot", 5, "D", "researcher"));
    }
    let outsider = server.state.store.get_contact("z-outsider").await.unwrap().unwrap();
    assert!(outsider.scores.is_empty());
    let hot = server.get_query("/api/v1/contacts", &[("model", "b2b"), ("band", "hot")]).await;
    assert_eq!(ids(hot.expect(StatusCode::OK)), ["r0", "r1", "r2", "r3", "r4"]);

    // Both versions are kept; the second is live.
    let versions = server.get("/api/v1/models/b2b/versions").await;
    let versions = versions.expect(StatusCode::OK)["versions"].as_array().unwrap().clone();
    let summary: Vec<(u64, bool)> = versions.iter().map(|v| (v["version"].as_u64().unwrap(), v["live"].as_bool().unwrap())).collect();
    assert_eq!(summary, [(1, false), (2, true)]);
    assert_eq!(versions[0]["source"], example_model());
    assert_eq!(versions[1]["source"], v2);
    let model = server.get("/api/v1/models/b2b").await;
    assert_eq!(model.expect(StatusCode::OK)["version"], 2);
    assert_eq!(model.body["definition"]["activity"][0]["points"], 100);
    let source = server.get("/api/v1/models/b2b?format=source").await;
    assert_eq!(source.text, v2);
    let models = server.get("/api/v1/models").await;
    assert_eq!(models.expect(StatusCode::OK)["models"][0]["version"], 2);

    // The same model as JSON is version 3, in JSON, and scores the same.
    let definition = model.body["definition"].clone();
    let put_json = server.request(Method::PUT, "/api/v1/models/b2b", Some(ADMIN_KEY)).json(&definition);
    assert_eq!(server.send(put_json).await.expect(StatusCode::CREATED)["version"], 3);
    server.wait_for_rescore("b2b", 3).await;
    let model = server.get("/api/v1/models/b2b").await;
    assert_eq!((&model.body["version"], &model.body["format"]), (&json!(3), &json!("json")));
    assert_eq!(card(&server.contact("r0").await, "b2b"), expected_card(0.0, 100.0, "hot", 5, "D", "researcher"));

    // The rescore job is also a function tests can drive step by step.
    let mut job = leadscore_app::models::create_claimed_job(&server.state, "b2b").await.unwrap();
    assert_eq!(job.total, 6);
    let mut steps = 0;
    while leadscore_app::models::rescore_step(&server.state, &mut job).await.unwrap() {
        steps += 1;
        assert!(steps < 10);
    }
    assert_eq!((job.state.as_str(), job.done), ("done", 6));
}

// 8. History explains the score: every award with rule, points and resulting totals (F8).
async fn history_lists_awards_with_rule_names_points_and_totals(server: TestServer) {
    // Without decay, so every resulting score is an exact sum.
    server.publish("b2b", &example_model_without_decay("b2b")).await;
    server.create_contact(platform_contact("hal", json!({ "job_title": "CTO", "company_size": 250 }))).await;
    server.set_now(T0 + 4 * HOUR);
    server
        .ingest(json!({ "batch": [
            quote_form("hal", "hal-1", T0 + HOUR),
            page("hal", "hal-2", "/pricing", T0 + 2 * HOUR),
            page("hal", "hal-3", "/pricing", T0 + 3 * HOUR), // capped: no award, no entry
            page("hal", "hal-4", "/careers", T0 + 3 * HOUR + SECOND),
        ]}))
        .await;
    server.set_now(T0 + 5 * HOUR);
    server.patch("/api/v1/contacts/hal", &json!({ "attributes": { "job_title": "Intern" } })).await.expect(StatusCode::OK);

    let history = server.get("/api/v1/contacts/hal/history?model=b2b").await;
    let history = history.expect(StatusCode::OK);
    assert_eq!((&history["contact"], &history["model"], &history["version"]), (&json!("hal"), &json!("b2b"), &json!(1)));
    let award = |at: i64, message_id: &str, event: &str, rule: &str, points: f64, activity: f64, total: f64| {
        json!({
            "at": format_time(at), "kind": "activity", "rule": rule, "event": event, "message_id": message_id,
            "points": points, "fit": 30.0, "activity": activity, "total": total,
        })
    };
    let expected = json!([
        {
            "at": format_time(T0), "kind": "created", "points": 30.0, "fit": 30.0, "activity": 0.0, "total": 30.0,
            "fit_rules": [{ "rule": "Job title", "points": 20.0 }, { "rule": "Company size > 100", "points": 10.0 }],
        },
        award(T0 + HOUR, "hal-1", "Form Submitted", "Request a quote", 50.0, 50.0, 80.0),
        award(T0 + 2 * HOUR, "hal-2", "page", "Visited pricing page", 25.0, 75.0, 105.0),
        award(T0 + 3 * HOUR + SECOND, "hal-4", "page", "Careers page", -10.0, 65.0, 95.0),
        {
            "at": format_time(T0 + 5 * HOUR), "kind": "attributes", "points": -40.0, "fit": -10.0, "activity": 65.0, "total": 55.0,
            "fit_rules": [{ "rule": "Job title", "points": -20.0 }, { "rule": "Company size > 100", "points": 10.0 }],
        },
    ]);
    assert_eq!(history["entries"], expected);
    assert_eq!(history["current"], expected_card(-10.0, 65.0, "warm", 3, "D", "researcher"));

    // As of a past instant: only what had happened by then.
    let then = server.get_query("/api/v1/contacts/hal/history", &[("model", "b2b"), ("at", &format_time(T0 + 2 * HOUR))]).await;
    let entries = then.expect(StatusCode::OK)["entries"].as_array().unwrap().clone();
    assert_eq!(entries, expected.as_array().unwrap()[..3]);

    server.get("/api/v1/contacts/hal/history?model=nope").await.expect_error(StatusCode::NOT_FOUND, "not_found");
}

// 8b. Fit that came from identify traits counts in the history's resulting totals.
async fn history_counts_fit_from_identify_traits(server: TestServer) {
    server.publish("b2b", &example_model_without_decay("b2b")).await;
    server
        .ingest(json!({ "batch": [
            { "type": "identify", "messageId": "ivy-1", "userId": "ivy", "timestamp": format_time(T0),
              "traits": { "job_title": "CTO", "company_size": 250, "product_interest": "platform" } },
            quote_form("ivy", "ivy-2", T0 + HOUR),
        ]}))
        .await;
    assert_eq!(card(&server.contact("ivy").await, "b2b"), expected_card(30.0, 50.0, "warm", 4, "B", "sales-ready"));

    let history = server.get("/api/v1/contacts/ivy/history?model=b2b").await;
    let history = history.expect(StatusCode::OK);
    let last = history["entries"].as_array().unwrap().last().unwrap();
    assert_eq!(last["rule"], "Request a quote");
    assert_eq!(
        (&last["fit"], &last["total"]),
        (&json!(30.0), &json!(80.0)),
        "the award's resulting scores ignore the fit set by identify: {:#}",
        history["entries"]
    );
}

// 8c. §4: "an anonymousId later identified merges its events into the contact".
async fn identify_merges_anonymous_events_into_the_contact(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    let visit = json!({ "type": "page", "messageId": "v-1", "anonymousId": "visitor-7",
                        "properties": { "path": "/pricing" }, "timestamp": format_time(T0) });
    server.ingest(visit).await;
    let identify = json!({ "type": "identify", "messageId": "v-2", "anonymousId": "visitor-7", "userId": "una",
                           "traits": { "product_interest": "platform" }, "timestamp": format_time(T0 + HOUR) });
    assert_eq!(server.ingest(identify).await["results"][0]["contact"], "una");

    let export = server.get("/api/v1/contacts/una/export").await;
    let events: Vec<&str> = export.expect(StatusCode::OK)["events"].as_array().unwrap().iter().map(|e| e["messageId"].as_str().unwrap()).collect();
    assert_eq!(events, ["v-1"], "the anonymous visit was not merged into the identified contact");
    assert_eq!(card(&export.body["contact"], "b2b")["activity"], 25.0);
}

// 9. API keys: scoped, shown once, revocable (F26).
async fn ingest_keys_ingest_but_cannot_read_and_revoked_keys_are_refused(server: TestServer) {
    server.publish("b2b", &example_model()).await;

    let created = server.post("/api/v1/keys", &json!({ "name": "website", "scopes": ["ingest"] })).await;
    let created = created.expect(StatusCode::CREATED).clone();
    let key = created["key"].as_str().unwrap().to_string();
    let key_id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("lsk_") && key.len() == 68, "{key}");
    assert_eq!(created["scopes"], json!(["ingest"]));
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));

    // It ingests…
    let ingest = server.request(Method::POST, "/api/v1/events", Some(&key)).json(&quote_form("vic", "vic-1", T0));
    assert_eq!(server.send(ingest).await.expect(StatusCode::OK)["accepted"], 1);
    // …but cannot read or administer.
    for (method, path) in [
        (Method::GET, "/api/v1/contacts/vic"),
        (Method::GET, "/api/v1/contacts"),
        (Method::GET, "/api/v1/contacts/vic/history"),
        (Method::GET, "/api/v1/models/b2b"),
        (Method::GET, "/api/v1/keys"),
        (Method::DELETE, "/api/v1/contacts/vic"),
    ] {
        let request = server.request(method.clone(), path, Some(&key));
        let reply = server.send(request).await;
        reply.expect_error(StatusCode::FORBIDDEN, "forbidden");
        assert!(reply.body["error"]["message"].as_str().unwrap().contains("scope"), "{method} {path}: {}", reply.text);
    }
    let create_key = server.request(Method::POST, "/api/v1/keys", Some(&key)).json(&json!({ "name": "mine", "scopes": ["admin"] }));
    server.send(create_key).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    let put_model = server.request(Method::PUT, "/api/v1/models/b2b", Some(&key)).body(example_model());
    server.send(put_model).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(server.contact("vic").await["id"], "vic");

    // A read key reads but does not ingest.
    let read = server.post("/api/v1/keys", &json!({ "name": "dashboard", "scopes": ["read"] })).await;
    let read_key = read.expect(StatusCode::CREATED)["key"].as_str().unwrap().to_string();
    let get = server.request(Method::GET, "/api/v1/contacts/vic", Some(&read_key));
    assert_eq!(server.send(get).await.expect(StatusCode::OK)["id"], "vic");
    let ingest = server.request(Method::POST, "/api/v1/events", Some(&read_key)).json(&quote_form("vic", "vic-2", T0));
    server.send(ingest).await.expect_error(StatusCode::FORBIDDEN, "forbidden");

    // The list shows keys without their secrets.
    let list = server.get("/api/v1/keys").await;
    assert!(!list.text.contains(&key) && !list.text.contains(&read_key), "a key leaked: {}", list.text);
    let names: Vec<&str> = list.expect(StatusCode::OK)["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"website") && names.contains(&"dashboard"));

    // Revoked: refused at once.
    assert_eq!(server.delete(&format!("/api/v1/keys/{key_id}")).await.status, StatusCode::NO_CONTENT);
    let ingest = server.request(Method::POST, "/api/v1/events", Some(&key)).json(&quote_form("vic", "vic-3", T0));
    let reply = server.send(ingest).await;
    reply.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("revoked"));
    server.delete(&format!("/api/v1/keys/{key_id}")).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    let list = server.get("/api/v1/keys").await;
    let revoked = list.body["keys"].as_array().unwrap().iter().find(|k| k["id"] == key_id.as_str()).unwrap().clone();
    assert_eq!(revoked["revoked_at"], format_time(T0));

    // Bad key requests.
    server.post("/api/v1/keys", &json!({ "name": "x", "scopes": ["root"] })).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    server.post("/api/v1/keys", &json!({ "name": "x", "scopes": [] })).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
}

// 10. Health, metrics and the API description.
async fn health_metrics_and_openapi(server: TestServer) {
    let health = server.send(server.request(Method::GET, "/healthz", None)).await;
    assert_eq!(health.expect(StatusCode::OK)["status"], "ok");

    server.get("/api/v1/models").await.expect(StatusCode::OK);
    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.text.contains("leadscore_http_requests_total"), "{}", metrics.text);
    assert!(metrics.text.contains(r#"route="/api/v1/models""#), "requests are counted by route: {}", metrics.text);

    let openapi = server.get("/openapi.json").await;
    let document = openapi.expect(StatusCode::OK).clone();
    assert_eq!(document["openapi"], "3.1.0");
    // The document is made from the routers themselves (`openapi::routes`): every route it
    // describes exists and asks for the scope its x-scope says, and on a described path no
    // method answers that the document does not describe.
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let scope = operation["x-scope"].as_str().unwrap_or_else(|| panic!("{method} {path} has no x-scope")).to_string();
            operations.push((method.to_uppercase().parse::<Method>().unwrap(), path.clone(), scope));
        }
    }
    assert!(operations.len() >= 82, "{} operations", operations.len());
    let mut keys = Vec::new();
    for scope in ["read", "ingest"] {
        let created = server.post("/api/v1/keys", &json!({ "name": scope, "scopes": [scope] })).await;
        keys.push(created.expect(StatusCode::CREATED)["key"].as_str().unwrap().to_string());
    }
    let (read_key, ingest_key) = (&keys[0], &keys[1]);
    let basic = |key: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")))
    };
    let refused = [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN];
    for (method, path, scope) in &operations {
        let concrete = path.replace("{id}", "someone").replace("{name}", "b2b").replace("{version}", "1");
        // Without a key: 401 from every route that needs one; the others answer.
        let reply = server.send(server.request(method.clone(), &concrete, None)).await;
        if scope == "none" {
            assert_eq!(reply.status, StatusCode::OK, "{method} {path}");
            continue;
        }
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}: {}", reply.text);
        // A key without the scope is refused (403); one with it is not (the requests carry
        // no body, so routes that need one answer 400, after the scope check). Admin
        // routes are only checked with a key that may not use them.
        let (lacking, holding) = match scope.as_str() {
            "read" => (ingest_key, Some(read_key)),
            "ingest" => (read_key, Some(ingest_key)),
            "admin" => (read_key, None),
            other => panic!("{method} {path}: no key to check scope {other}"),
        };
        let with_key = |key: &str| {
            // The Segment dialect takes the write key as HTTP Basic, the rest as a bearer.
            let request = server.request(method.clone(), &concrete, None);
            if path.starts_with("/v1/") { request.header("authorization", basic(key)) } else { request.bearer_auth(key) }
        };
        let reply = server.send(with_key(lacking)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path} with a key without {scope}: {}", reply.text);
        if let Some(holding) = holding {
            let reply = server.send(with_key(holding)).await;
            assert!(!refused.contains(&reply.status), "{method} {path} with a {scope} key: {} {}", reply.status, reply.text);
        }
    }
    // Methods the document does not describe on a path it describes: 405, whatever the key.
    let paths: std::collections::BTreeSet<&String> = operations.iter().map(|(_, path, _)| path).collect();
    for path in paths {
        let concrete = path.replace("{id}", "someone").replace("{name}", "b2b").replace("{version}", "1");
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            if operations.iter().any(|(m, p, _)| p == path && *m == method) {
                continue;
            }
            let reply = server.send(server.request(method.clone(), &concrete, None)).await;
            assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is not described: {}", reply.text);
        }
    }
}

// Upsert answers 201 only when it created the contact, whether found by id or by email.
async fn upsert_says_whether_it_created(server: TestServer) {
    let first = server.post("/api/v1/contacts", &json!({ "email": "Zoe@Example.com", "attributes": { "plan": "free" } })).await;
    assert_eq!(first.expect(StatusCode::CREATED)["email"], "zoe@example.com");
    let again = server.post("/api/v1/contacts", &json!({ "email": "zoe@example.com", "attributes": { "plan": "pro" } })).await;
    // The email may also come as an attribute only.
    let by_attribute = server.post("/api/v1/contacts", &json!({ "attributes": { "email": "ZOE@example.com", "seats": 5 } })).await;
    assert_eq!(by_attribute.expect(StatusCode::OK)["attributes"]["seats"], 5);
    server.post("/api/v1/contacts", &json!({ "attributes": { "email": 7 } })).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    server.post("/api/v1/contacts", &json!({ "attributes": { "plan": "x" } })).await.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(again.expect(StatusCode::OK)["attributes"]["plan"], "pro");
    server.post("/api/v1/contacts", &json!({ "id": "z1" })).await.expect(StatusCode::CREATED);
    server.post("/api/v1/contacts", &json!({ "id": "z1" })).await.expect(StatusCode::OK);
}

// Cursors and instants that cannot be right are refused instead of giving odd pages.
async fn nonsense_cursors_and_instants_are_refused(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    for cursor in ["NaN~x", "inf~x", "12", "abc~x"] {
        server.get_query("/api/v1/contacts", &[("model", "b2b"), ("cursor", cursor)]).await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    server.post("/api/v1/contacts", &json!({ "id": "old", "attributes": { "product_interest": "platform" } })).await.expect(StatusCode::CREATED);
    server.get_query("/api/v1/contacts/old", &[("at", "0001-01-01T00:00:00Z")]).await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    let reply =
        server.post("/api/v1/events", &json!({ "batch": [{ "type": "track", "event": "x", "userId": "old", "timestamp": "0001-01-01T00:00:00Z" }] })).await;
    let reply = reply.expect(StatusCode::MULTI_STATUS);
    assert!(reply["rejected"][0]["reason"].as_str().unwrap().contains("outside"), "{reply}");
}

// Issue 12.9: publishing the text that is live already keeps the version and rescores
// nothing; any change (here a comment) is a new version.
async fn republishing_the_live_model_changes_nothing(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(platform_contact("u1", json!({}))).await;
    let jobs_before = server.state.store.latest_job("b2b").await.unwrap().map(|j| j.id);
    let again = server.put_model("b2b", &format!("{}\n\n", example_model())).await;
    let again = again.expect(StatusCode::OK).clone();
    assert_eq!((again["version"].as_u64(), again["unchanged"].as_bool()), (Some(1), Some(true)), "{again}");
    assert_eq!(server.state.store.latest_job("b2b").await.unwrap().map(|j| j.id), jobs_before, "no rescore started");
    let versions = server.get("/api/v1/models/b2b/versions").await.expect(StatusCode::OK)["versions"].as_array().unwrap().len();
    assert_eq!(versions, 1);
    let edited = server.put_model("b2b", &format!("# reviewed\n{}", example_model())).await;
    assert_eq!(edited.expect(StatusCode::CREATED)["version"], 2);
}

// Issue 12.11: the lead list can leave closed deals out (`open=true`), filter by status
// (`new` includes contacts without one) and come as CSV.
async fn lead_list_filters_by_status_and_comes_as_csv(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.set_now(T0 + DAY);
    for (n, status) in ["won", "disqualified", "contacted", "", "lost"].iter().enumerate() {
        let id = format!("s{n}");
        server.create_contact(platform_contact(&id, json!({ "job_title": "CTO" }))).await;
        server.ingest(quote_form(&id, &format!("{id}-quote"), T0 + n as i64)).await;
        if !status.is_empty() {
            server.record_status(&id, status, T0 + HOUR).await;
        }
    }
    let list = |query: &'static [(&'static str, &'static str)]| {
        let server = &server;
        async move { ids(server.get_query("/api/v1/contacts", query).await.expect(StatusCode::OK)) }
    };
    assert_eq!(list(&[("model", "b2b"), ("band", "warm"), ("open", "true")]).await, ["s2", "s3"], "won, lost and disqualified left out");
    assert_eq!(list(&[("model", "b2b"), ("status", "new")]).await, ["s3"]);
    assert_eq!(list(&[("model", "b2b"), ("status", "won")]).await, ["s0"]);
    server.get_query("/api/v1/contacts", &[("model", "b2b"), ("status", "maybe")]).await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    server.get_query("/api/v1/contacts", &[("status", "new")]).await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    let csv = server.get_query("/api/v1/contacts", &[("model", "b2b"), ("open", "true"), ("format", "csv"), ("limit", "1")]).await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(
        lines,
        ["id,email,owner,status,groups,fit,activity,total,band,flames,grade,quadrant,predictive", "s2,,,contacted,,20.0,48.86,68.86,warm,3,C,researcher,"],
        "a day of 30-day half-life: 50 × 0.5^(1/30) = 48.86; {}",
        csv.text
    );
}

// An address that is not one, and a timestamp far ahead of the server's clock, are refused
// per event like any malformed one (the CSV import refuses the same addresses).
async fn bad_emails_and_future_timestamps_are_refused_per_event(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(platform_contact("sane", json!({}))).await;
    let batch = json!({ "batch": [
        quote_form("sane", "sane-0", T0),
        { "type": "track", "event": "Form Submitted", "email": "not an email", "messageId": "sane-1" },
        { "type": "identify", "userId": "sane", "traits": { "email": "n/a" }, "messageId": "sane-2" },
        { "type": "track", "event": "Form Submitted", "userId": "sane", "timestamp": "2099-01-01T00:00:00Z", "messageId": "sane-3" },
        // Up to a day ahead is a sender's clock running fast, not a mistake: kept.
        page("sane", "sane-4", "/pricing", T0 + 23 * HOUR),
    ]});
    let reply = server.post("/api/v1/events", &batch).await;
    let body = reply.expect(StatusCode::MULTI_STATUS);
    assert_eq!(body["accepted"], 2, "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    let expected = [(1, "\"not an email\" is not an email address"), (2, "\"n/a\" is not an email address"), (3, "ahead of the server's clock")];
    assert_eq!(rejected.len(), expected.len(), "{rejected:?}");
    for (item, (index, reason)) in rejected.iter().zip(expected) {
        assert_eq!(item["index"], index, "{item}");
        let text = item["reason"].as_str().unwrap();
        assert!(text.contains(reason), "index {index}: {text:?} should mention {reason:?}");
    }
    let message_ids: Vec<String> = server.state.store.contact_events("sane").await.unwrap().iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(message_ids, ["sane-0", "sane-4"]);
    let nobody = server.get_query("/api/v1/contacts", &[]).await;
    assert_eq!(nobody.expect(StatusCode::OK)["contacts"].as_array().unwrap().len(), 1, "no contact was made for the bad address");

    // A single event: 422 with the reason.
    let reply = server.post("/api/v1/events", &json!({ "event": "x", "email": "not an email" })).await;
    let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(error["message"].as_str().unwrap().contains("not an email address"), "{error}");
    let reply = server.post("/api/v1/events", &json!({ "event": "x", "userId": "sane", "timestamp": format_time(T0 + 2 * DAY) })).await;
    let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(error["message"].as_str().unwrap().contains("LEADSCORE_MAX_FUTURE_SKEW"), "{error}");

    // Contacts written through the API follow the same rule.
    let reply = server.post("/api/v1/contacts", &json!({ "email": "not an email" })).await;
    reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let reply = server.patch("/api/v1/contacts/sane", &json!({ "email": "not an email" })).await;
    reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
}

// The allowed skew is the server's setting (LEADSCORE_MAX_FUTURE_SKEW).
#[tokio::test(flavor = "multi_thread")]
async fn the_future_skew_is_configurable() {
    let config = leadscore_server::ServerConfig {
        engine: leadscore_server::EngineConfig { max_future_skew: std::time::Duration::from_secs(3600), ..test_config().engine },
        ..test_config()
    };
    let server = TestServer::start_configured(config).await;
    let reply = server.post("/api/v1/events", &json!({ "event": "x", "userId": "u", "timestamp": format_time(T0 + 2 * HOUR) })).await;
    let error = reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(error["message"].as_str().unwrap().contains("more than 1h ahead"), "{error}");
    server.post("/api/v1/events", &json!({ "event": "x", "userId": "u", "timestamp": format_time(T0 + 30 * 60 * SECOND) })).await.expect(StatusCode::OK);
}

// Compressed bodies (gzip, deflate) are accepted; the size limit holds for what they
// inflate to, so a small body that inflates past 4 MiB is refused without being inflated
// into memory; a corrupt body and an unknown encoding are refused with the JSON shape.
async fn compressed_events_are_accepted_within_the_limit(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(platform_contact("zip", json!({}))).await;
    let post_encoded = |encoding: &'static str, body: Vec<u8>| {
        let request = server
            .request(Method::POST, "/api/v1/events", Some(ADMIN_KEY))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body);
        server.send(request)
    };
    let batch = json!({ "batch": [quote_form("zip", "zip-1", T0)] }).to_string();
    assert_eq!(post_encoded("gzip", gzip(batch.as_bytes())).await.expect(StatusCode::OK)["accepted"], 1);
    let single = page("zip", "zip-2", "/pricing", T0).to_string();
    assert_eq!(post_encoded("deflate", deflate(single.as_bytes(), true)).await.expect(StatusCode::OK)["accepted"], 1);
    let raw = page("zip", "zip-3", "/pricing", T0 + HOUR).to_string();
    assert_eq!(post_encoded("deflate", deflate(raw.as_bytes(), false)).await.expect(StatusCode::OK)["accepted"], 1);
    let events = server.state.store.contact_events("zip").await.unwrap();
    assert_eq!(events.iter().map(|e| e.message_id.as_str()).collect::<Vec<_>>(), ["zip-1", "zip-2", "zip-3"]);

    let bomb = post_encoded("gzip", gzip_bomb()).await;
    let error = bomb.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(error["message"].as_str().unwrap().contains("4 MiB"), "the limit is named: {error}");

    let mut corrupt = gzip(batch.as_bytes());
    let middle = corrupt.len() / 2;
    corrupt[middle..].iter_mut().for_each(|b| *b = !*b);
    let error = post_encoded("gzip", corrupt).await.expect_error(StatusCode::BAD_REQUEST, "bad_request").clone();
    assert!(error["message"].as_str().unwrap().contains("not valid gzip"), "{error}");
    let error = post_encoded("gzip", batch.clone().into_bytes()).await.expect_error(StatusCode::BAD_REQUEST, "bad_request").clone();
    assert!(error["message"].as_str().unwrap().contains("not valid gzip"), "plain JSON labelled gzip: {error}");

    let error = post_encoded("br", batch.into_bytes()).await.expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding").clone();
    assert!(error["message"].as_str().unwrap().contains("gzip"), "says what is supported: {error}");
    assert_eq!(server.state.store.contact_events("zip").await.unwrap().len(), 3, "nothing refused was stored");
}

// One rule for query strings on every JSON route that takes parameters: an unknown one is a
// 400 in the JSON error shape naming it (`/deliveries?contact=` used to list every row),
// and so is a query string that does not parse.
async fn every_route_refuses_unknown_query_parameters(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(platform_contact("q1", json!({ "account": "acme" }))).await;
    let routes = [
        (Method::GET, "/api/v1/contacts"),
        (Method::GET, "/api/v1/contacts/q1"),
        (Method::GET, "/api/v1/contacts/q1/history"),
        (Method::GET, "/api/v1/accounts"),
        (Method::GET, "/api/v1/accounts/acme"),
        (Method::GET, "/api/v1/automations/runs"),
        (Method::GET, "/api/v1/deliveries"),
        (Method::GET, "/api/v1/models/b2b"),
        (Method::PUT, "/api/v1/models/b2b"),
        (Method::GET, "/api/v1/reports/brackets"),
        (Method::GET, "/api/v1/reports/distribution"),
        (Method::GET, "/api/v1/reports/sources"),
        (Method::GET, "/api/v1/reports/feedback"),
        (Method::GET, "/api/v1/reports/speed"),
        (Method::GET, "/api/v1/reports/accuracy"),
        (Method::GET, "/api/v1/reports/compare"),
    ];
    for (method, path) in routes {
        let reply = server.send(server.request(method.clone(), path, Some(ADMIN_KEY)).query(&[("zzz", "1")])).await;
        let error = reply.expect_error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(error["message"].as_str().unwrap().contains("`zzz`"), "{method} {path} names the parameter: {error}");
    }
    let reply = server.get_query("/api/v1/deliveries", &[("contact", "zzz")]).await;
    let error = reply.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(error["message"].as_str().unwrap().contains("`contact`") && error["message"].as_str().unwrap().contains("automation"), "{error}");
    assert_eq!(error["details"]["parameter"], "contact", "{error}");
    for query in [[("limit", "ten")], [("limit", "-1")]] {
        server.get_query("/api/v1/deliveries", &query).await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
        server.get_query("/api/v1/automations/runs", &query).await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    let twice = server.get_query("/api/v1/accounts", &[("cursor", "a"), ("cursor", "b")]).await;
    twice.expect_error(StatusCode::BAD_REQUEST, "bad_request");
}

// Refusals say what to do: a body over the limit names the limit (and, for events, how to
// split a batch); a JSON array sent as events says to wrap it in {"batch": [...]}; a
// cursor no page gave out is a 400 in the JSON shape on every paginated route (a NUL in
// one used to be a storage error on PostgreSQL).
async fn refusals_say_what_to_do(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    let blob = "a".repeat(4 * 1024 * 1024);
    let oversize = server.post("/api/v1/events", &json!({ "event": "Big", "userId": "u", "properties": { "blob": blob } })).await;
    let error = oversize.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("4 MiB") && message.contains("1000 events"), "{message}");
    let over = "a".repeat(4 * 1024 * 1024 + 1);
    let model = server.request(Method::PUT, "/api/v1/models/b2b", Some(ADMIN_KEY)).header("content-type", "application/toml").body(over);
    let error = server.send(model).await.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").clone();
    assert!(error["message"].as_str().unwrap().contains("4 MiB"), "{error}");

    let listed = server.post("/api/v1/events", &json!([quote_form("u", "u-1", T0), quote_form("u", "u-2", T0)])).await;
    let error = listed.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(error["message"].as_str().unwrap().contains(r#"{"batch": [...]}"#), "{error}");
    assert_eq!(server.get("/api/v1/contacts/u").await.status, StatusCode::NOT_FOUND);

    // (route, its other parameters, cursors no page of it gives out)
    type CursorCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let bad_cursors: [CursorCase; 5] = [
        ("/api/v1/contacts", &[], &["\u{0}", "x\u{1}"]),
        ("/api/v1/contacts", &[("model", "b2b")], &["garbage", "NaN~x", "1~\u{0}"]),
        ("/api/v1/accounts", &[], &["garbage", "NaN,x", "1,\u{0}"]),
        ("/api/v1/deliveries", &[], &["garbage", "yesterday,x", "2026-01-01T00:00:00Z,\u{0}"]),
        ("/api/v1/automations/runs", &[], &["garbage", ",", "2026-01-01T00:00:00Z,\u{0}"]),
    ];
    for (path, query, cursors) in bad_cursors {
        for cursor in cursors {
            let mut params = query.to_vec();
            params.push(("cursor", cursor));
            let reply = server.get_query(path, &params).await;
            let error = reply.expect_error(StatusCode::BAD_REQUEST, "bad_request");
            assert!(error["message"].as_str().unwrap().contains("next_cursor"), "{path} {cursor:?}: {error}");
        }
        // An empty cursor is the first page, on every list alike.
        let mut params = query.to_vec();
        params.push(("cursor", ""));
        server.get_query(path, &params).await.expect(StatusCode::OK);
    }
}

// Issue 15.3: the answer to an ingest key names no contact, so a key in a web page cannot
// tell a customer's address from a stranger's; a key that may read still gets the ids.
async fn ingest_keys_learn_no_contact_ids(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(json!({ "id": "victim", "email": "victim@bigco.com", "attributes": { "product_interest": "platform" } })).await;
    let key =
        server.post("/api/v1/keys", &json!({ "name": "website", "scopes": ["ingest"] })).await.expect(StatusCode::CREATED)["key"].as_str().unwrap().to_string();
    let event =
        |email: &str, id: &str| json!({ "type": "page", "messageId": id, "email": email, "properties": { "path": "/pricing" }, "timestamp": format_time(T0) });
    for (email, id) in [("victim@bigco.com", "p-1"), ("stranger@else.com", "p-2")] {
        let request = server.request(Method::POST, "/api/v1/events", Some(&key)).json(&json!({ "batch": [event(email, id)] }));
        let reply = server.send(request).await.expect(StatusCode::OK).clone();
        assert_eq!(reply["results"], json!([{ "index": 0, "status": "stored" }]), "{email}: {reply}");
        assert!(!reply.to_string().contains("victim"), "{reply}");
    }
    let by_admin = server.ingest(json!({ "batch": [event("victim@bigco.com", "p-3")] })).await;
    assert_eq!(by_admin["results"][0]["contact"], "victim", "an admin (or read) key still sees whom it wrote to");
}

// Issue 15.5: refusals written by extractors answered 400 in plain text, and the scope
// check ran after the query was parsed (an ingest key learned how a query parses). Every
// one of these is a JSON error, and a key without the scope gets 403 before anything else.
async fn malformed_requests_get_json_errors_after_the_scope_check(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    let ingest_key =
        server.post("/api/v1/keys", &json!({ "name": "website", "scopes": ["ingest"] })).await.expect(StatusCode::CREATED)["key"].as_str().unwrap().to_string();
    let malformed = [
        "/api/v1/reports/compare",
        "/api/v1/deliveries?limit=-1",
        "/api/v1/automations/runs?limit=-1",
        "/api/v1/accounts?model=b2b&limit=abc",
        "/api/v1/reports/distribution?bins=-1",
        "/api/v1/contacts/c1/history?model=b2b&model=x",
        "/api/v1/contacts/%FF%FE",
    ];
    for path in malformed {
        let reply = server.send(server.request(Method::GET, path, Some(ADMIN_KEY))).await;
        assert!(reply.status.is_client_error(), "{path}: {} {}", reply.status, reply.text);
        assert!(reply.body["error"]["code"].is_string() && reply.body["error"]["message"].is_string(), "{path}: not the JSON error shape: {}", reply.text);
        let reply = server.send(server.request(Method::GET, path, Some(&ingest_key))).await;
        reply.expect_error(StatusCode::FORBIDDEN, "forbidden");
        let reply = server.send(server.request(Method::GET, path, None)).await;
        reply.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

// Issue 15.7: wrong keys were never limited (each a database read), and a read key could
// start backtests without end. An address that keeps failing waits (keys known good keep
// working from it); a key runs a few replays at once, then is told to wait.
async fn failed_credentials_and_replays_are_limited(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    let created = server.post("/api/v1/keys", &json!({ "name": "analyst", "scopes": ["read"] })).await.expect(StatusCode::CREATED).clone();
    let (key, key_id) = (created["key"].as_str().unwrap().to_string(), created["id"].as_str().unwrap().to_string());
    let candidate = json!({ "model": example_model(), "background": true });
    let held: Vec<_> = (0..2).map(|_| server.state.quotas.replay(&key_id).unwrap()).collect();
    let busy = server.send(server.request(Method::POST, "/api/v1/backtest", Some(&key)).json(&candidate)).await;
    busy.expect_error(StatusCode::TOO_MANY_REQUESTS, "busy");
    drop(held);
    server.send(server.request(Method::POST, "/api/v1/backtest", Some(&key)).json(&candidate)).await.expect(StatusCode::ACCEPTED);

    let mut limited = None;
    for attempt in 0..40 {
        let reply = server.send(server.request(Method::GET, "/api/v1/models", Some(&format!("lsk_wrong_{attempt}")))).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((attempt, reply));
            break;
        }
        reply.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (attempt, reply) = limited.expect("wrong keys are never limited");
    assert_eq!(attempt, 20, "twenty failures are allowed in a burst");
    reply.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(reply.body["error"]["details"]["retry_after_seconds"].as_f64().unwrap() >= 1.0);
    // Keys known good keep working from the address.
    server.get("/api/v1/models").await.expect(StatusCode::OK);
    server.send(server.request(Method::GET, "/api/v1/models", Some(&key))).await.expect(StatusCode::OK);
}

// Issue 15.7: the history and the export of a busy contact were one answer (28,000
// entries seen). Both come in pages with cursors; the pages add up to the whole.
async fn history_and_export_come_in_pages(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    server.create_contact(platform_contact("busy", json!({ "job_title": "CTO" }))).await;
    let events: Vec<Value> = (0..25).map(|i| track("busy", &format!("b-{i}"), "Webinar Attended", json!({}), T0 - (30 - i) * HOUR)).collect();
    server.ingest(json!({ "batch": events })).await;
    let whole = server.get("/api/v1/contacts/busy/history?model=b2b").await.expect(StatusCode::OK).clone();
    assert!(whole.get("next_cursor").is_none(), "one page: {whole}");
    let total = whole["entries"].as_array().unwrap().len();
    assert!(total > 20, "{total}");
    for (path, field) in [("/api/v1/contacts/busy/history?model=b2b&limit=7", "entries"), ("/api/v1/contacts/busy/export?limit=7", "events")] {
        let mut collected = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}&cursor={c}"),
                None => path.to_string(),
            };
            let reply = server.get(&url).await.expect(StatusCode::OK).clone();
            let entries = reply[field].as_array().unwrap().clone();
            assert!(entries.len() <= 7);
            collected.extend(entries);
            pages += 1;
            match reply["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let expected = if field == "entries" { total } else { 25 };
        assert_eq!(collected.len(), expected, "{path}");
        assert_eq!(pages, expected.div_ceil(7), "{path}");
        if field == "entries" {
            assert_eq!(Value::Array(collected), whole["entries"]);
        }
    }
    server.get("/api/v1/contacts/busy/history?model=b2b&cursor=nope").await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    server.get("/api/v1/contacts/busy/export?limit=0").await.expect_error(StatusCode::BAD_REQUEST, "bad_request");
}

// Issue 15: an audit log of who changed which model, automation, key, user, secret and
// connection, and when, readable by admins; data routes are not in it, secrets never.
async fn configuration_changes_are_audited(server: TestServer) {
    server.publish("b2b", &example_model()).await;
    let secret = server.request(Method::PUT, "/api/v1/secrets/crm", Some(ADMIN_KEY)).json(&json!({ "value": "whsec_ZG9ub3Rsb2dtZXBsZWFzZQ==" }));
    let stored = server.send(secret).await;
    assert!(stored.status.is_success(), "{}", stored.text);
    let reader =
        server.post("/api/v1/keys", &json!({ "name": "reader", "scopes": ["read"] })).await.expect(StatusCode::CREATED)["key"].as_str().unwrap().to_string();
    server.ingest(json!({ "batch": [page("u1", "a-1", "/pricing", T0)] })).await;
    server.delete("/api/v1/models/nope").await.expect_error(StatusCode::NOT_FOUND, "not_found");

    let log = server.get("/api/v1/audit").await.expect(StatusCode::OK).clone();
    let entries: Vec<(String, String)> =
        log["audit"].as_array().unwrap().iter().map(|e| (e["action"].as_str().unwrap().to_string(), e["target"].as_str().unwrap().to_string())).collect();
    assert_eq!(
        entries,
        vec![("POST".to_string(), "/api/v1/keys".to_string()), ("PUT".into(), "/api/v1/secrets/crm".into()), ("PUT".into(), "/api/v1/models/b2b".into())],
        "newest first; the ingest and the failed delete are not changes: {log}"
    );
    let admin_key_id = server.state.store.find_key_by_hash(&leadscore_server::auth::hash_key(ADMIN_KEY)).await.unwrap().unwrap().id;
    assert!(log["audit"].as_array().unwrap().iter().all(|e| e["actor"] == admin_key_id.as_str()), "{log}");
    assert!(!log.to_string().contains("whsec_ZG9ub3Rsb2dtZXBsZWFzZQ=="));
    server.send(server.request(Method::GET, "/api/v1/audit", Some(&reader))).await.expect_error(StatusCode::FORBIDDEN, "forbidden");
}

// Every test above runs on SQLite, and on PostgreSQL when LEADSCORE_TEST_POSTGRES_URL is set.
common::both_backends!(
    example_model_scores_single_and_batched_events,
    late_and_duplicate_events_score_like_sorted_ones,
    batch_reports_bad_events_by_index_and_keeps_good_ones,
    errors_have_the_json_shape_and_status,
    invalid_model_lists_every_problem_and_keeps_the_live_model,
    lead_list_paginates_in_order_with_filters,
    decay_sweep_refreshes_the_lead_list,
    patch_rescores_fit,
    delete_erases_the_contact_and_its_events,
    reading_at_a_past_instant_ignores_later_events,
    publishing_a_new_version_rescores_existing_contacts,
    history_lists_awards_with_rule_names_points_and_totals,
    history_counts_fit_from_identify_traits,
    identify_merges_anonymous_events_into_the_contact,
    ingest_keys_ingest_but_cannot_read_and_revoked_keys_are_refused,
    health_metrics_and_openapi,
    upsert_says_whether_it_created,
    nonsense_cursors_and_instants_are_refused,
    republishing_the_live_model_changes_nothing,
    lead_list_filters_by_status_and_comes_as_csv,
    bad_emails_and_future_timestamps_are_refused_per_event,
    compressed_events_are_accepted_within_the_limit,
    every_route_refuses_unknown_query_parameters,
    refusals_say_what_to_do,
    ingest_keys_learn_no_contact_ids,
    malformed_requests_get_json_errors_after_the_scope_check,
    failed_credentials_and_replays_are_limited,
    history_and_export_come_in_pages,
    configuration_changes_are_audited,
);

mod users_api {
    use super::*;

    async fn users_are_managed_by_admins(server: TestServer) {
        let created =
            server.post("/api/v1/users", &json!({ "email": "Ana@Example.com", "password": "correct horse battery", "role": "sales", "name": "Ana" })).await;
        let ana = created.expect(StatusCode::CREATED).clone();
        assert_eq!((ana["email"].as_str(), ana["role"].as_str()), (Some("ana@example.com"), Some("sales")));
        assert!(created.text.find("argon2").is_none() && created.text.find("password").is_none(), "no hash or password in the answer: {}", created.text);
        server
            .post("/api/v1/users", &json!({ "email": "ana@example.com", "password": "correct horse battery", "role": "sales" }))
            .await
            .expect_error(StatusCode::CONFLICT, "conflict");
        server
            .post("/api/v1/users", &json!({ "email": "bo@example.com", "password": "short", "role": "sales" }))
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        server
            .post("/api/v1/users", &json!({ "email": "bo@example.com", "password": "correct horse battery", "role": "boss" }))
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        let id = ana["id"].as_str().unwrap();
        let changed = server
            .request(Method::PATCH, &format!("/api/v1/users/{id}"), Some(ADMIN_KEY))
            .json(&json!({ "role": "marketing", "disabled": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), StatusCode::OK);
        let listed = server.get("/api/v1/users").await;
        let users = listed.expect(StatusCode::OK)["users"].as_array().unwrap().clone();
        assert_eq!(users.len(), 1);
        assert_eq!((users[0]["role"].as_str(), users[0]["disabled"].as_bool()), (Some("marketing"), Some(true)));
        // A read key may not see users.
        let key = server.post("/api/v1/keys", &json!({ "name": "reader", "scopes": ["read"] })).await.expect(StatusCode::CREATED)["key"]
            .as_str()
            .unwrap()
            .to_string();
        let refused = server.request(Method::GET, "/api/v1/users", Some(&key)).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let deleted = server.request(Method::DELETE, &format!("/api/v1/users/{id}"), Some(ADMIN_KEY)).send().await.unwrap();
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        server.get(&format!("/api/v1/users/{id}")).await.expect_error(StatusCode::NOT_FOUND, "not_found");
    }

    both_backends!(users_are_managed_by_admins);
}
