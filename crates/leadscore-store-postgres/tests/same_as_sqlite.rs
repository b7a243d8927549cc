//! The PostgreSQL backend gives the same answers as the SQLite backend: one script of
//! operations (identity resolution, identify traits, anonymous merges, duplicates, patches,
//! bulk updates, the lead list, rescoring, the decay refresh, erasure, models, jobs, keys,
//! outcomes (the contact's status follows its latest), and automations: what each write queues, the runs, the outbox and the CRM sync) runs
//! against both, and every result is compared.
//!
//! Runs when `LEADSCORE_TEST_POSTGRES_URL` is set, in a schema of its own.

use std::sync::Arc;

use leadscore_core::Model;
use leadscore_core::automation::Automation;
use leadscore_core::model::EXAMPLE_MODEL_TOML;
use leadscore_store::conformance::{MODEL_A, MODEL_ALL};
use leadscore_store::runner::{AutomationSet, Channel, Delivery, DeliveryQuery, LiveAutomation, RunQuery, RunRecord, Subscription};
use leadscore_store::{
    ApiKeyRecord, BulkFilter, BulkUpdate, ChunkLimit, ContactPatch, ContactRecord, ContactUpsert, EventKind, Identity, LeadQuery, ModelSet, NewAutomation,
    NewEvent, NewJob, NewModelVersion, NewOutcome, OutcomeKind, PublishedModel, Scope, SortKey, Store, StoreError, StoreResult,
};
use leadscore_store_postgres::PostgresStore;
use leadscore_store_sqlite::SqliteStore;
use serde::Serialize;
use serde_json::{Map, Value, json};

const T0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;

fn obj(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn contact_json(c: &ContactRecord) -> Value {
    let scores: Map<String, Value> = c
        .scores
        .iter()
        .map(|(name, row)| (name.clone(), json!({ "version": row.version, "card": row.card, "state": row.state, "as_of": row.as_of })))
        .collect();
    json!({
        "id": c.id, "email": c.email, "attributes": c.attributes, "groups": c.groups, "owner": c.owner, "status": c.status,
        "created_at": c.created_at, "updated_at": c.updated_at, "last_event_at": c.last_event_at, "scores": scores,
    })
}

/// A result as comparable JSON; errors compare by kind only (messages may differ).
fn outcome<T>(result: StoreResult<T>, to_json: impl FnOnce(T) -> Value) -> Value {
    match result {
        Ok(value) => to_json(value),
        Err(StoreError::NotFound(_)) => json!("error: not found"),
        Err(StoreError::Conflict(_)) => json!("error: conflict"),
        Err(StoreError::Invalid(_)) => json!("error: invalid"),
        Err(StoreError::Closed) => json!("error: closed"),
        Err(StoreError::Stale(_)) => json!("error: stale"),
        Err(StoreError::Unavailable { .. }) => json!("error: unavailable"),
        Err(err @ (StoreError::Backend(_) | StoreError::Database { .. })) => json!(format!("error: backend: {}", leadscore_store::ErrorChain(&err))),
    }
}

fn ser<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

struct Both {
    sqlite: Arc<dyn Store>,
    postgres: Arc<dyn Store>,
    steps: usize,
}

impl Both {
    /// Runs one operation on both stores and asserts they agree; returns the result.
    async fn check<F, Fut>(&mut self, what: &str, op: F) -> Value
    where
        F: Fn(Arc<dyn Store>) -> Fut,
        Fut: std::future::Future<Output = Value>,
    {
        self.steps += 1;
        let from_sqlite = op(self.sqlite.clone()).await;
        let from_postgres = op(self.postgres.clone()).await;
        assert_eq!(from_postgres, from_sqlite, "step {} `{what}`: PostgreSQL (left) differs from SQLite (right)", self.steps);
        from_sqlite
    }

    async fn all_contacts(&mut self, what: &str) {
        self.check(what, |s| async move {
            let contacts = outcome(s.list_contacts(None, 1000).await, |cs| Value::Array(cs.iter().map(contact_json).collect()));
            let mut logs = Vec::new();
            let mut events = Vec::new();
            if let Value::Array(list) = &contacts {
                for c in list {
                    let id = c["id"].as_str().unwrap_or_default();
                    // Entries written by automation runs name the (random) run id.
                    logs.push(without_keys(outcome(s.contact_log(id).await, ser), &["run_id"]));
                    events.push(outcome(s.contact_events(id).await, ser));
                }
            }
            // Which writes queued which contacts for their automations, in queue order.
            let queue = json!([outcome(s.queue_depth().await, ser), outcome(s.queued_contacts(1000).await, ser)]);
            // The accounts (F29): their members under each model, and each account's contacts.
            let mut accounts = Vec::new();
            for model in ["a", "all", "b2b"] {
                let members = s.account_members(model).await;
                let mut names: Vec<String> = members.iter().flatten().map(|(account, _, _)| account.clone()).collect();
                names.dedup();
                accounts.push(json!([model, outcome(members, ser)]));
                for name in names {
                    accounts.push(json!([name, outcome(s.account_contacts(&name).await, |cs| Value::Array(cs.iter().map(contact_json).collect()))]));
                }
            }
            json!({ "contacts": contacts, "logs": logs, "events": events, "queue": queue, "accounts": accounts,
                    "counts": [outcome(s.count_contacts().await, ser), outcome(s.count_events().await, ser)] })
        })
        .await;
    }
}

fn ev(id: &str, identity: Identity, ts: i64, kind: EventKind, name: &str, properties: Value, traits: Value) -> NewEvent {
    NewEvent {
        message_id: id.into(),
        identity,
        kind,
        name: name.into(),
        properties: obj(properties),
        traits: obj(traits),
        context: Some(json!({ "ip": "203.0.113.9" })),
        timestamp: ts,
    }
}

fn user(id: &str) -> Identity {
    Identity { user_id: Some(id.into()), ..Identity::default() }
}

fn email(address: &str) -> Identity {
    Identity { email: Some(address.into()), ..Identity::default() }
}

fn anon(id: &str) -> Identity {
    Identity { anonymous_id: Some(id.into()), ..Identity::default() }
}

fn page(id: &str, who: Identity, ts: i64, path: &str) -> NewEvent {
    ev(id, who, ts, EventKind::Page, "page", json!({ "path": path, "title": "t" }), json!({}))
}

fn click(id: &str, who: Identity, ts: i64) -> NewEvent {
    ev(id, who, ts, EventKind::Track, "Email Link Clicked", json!({}), json!({}))
}

fn identify(id: &str, who: Identity, ts: i64, traits: Value) -> NewEvent {
    ev(id, who, ts, EventKind::Identify, "identify", json!({}), traits)
}

fn parse(text: &str, version: u32) -> Arc<PublishedModel> {
    let model = Model::parse(text).expect("model parses");
    Arc::new(PublishedModel { name: model.name.clone(), version, model, shadow_of: None })
}

async fn publish_both(both: &mut Both, text: &'static str) -> Arc<PublishedModel> {
    let published = both
        .check("publish", |s| async move {
            let name = Model::parse(text).map(|m| m.name).unwrap_or_default();
            outcome(s.publish_model(NewModelVersion { name, source: text.into(), format: "toml".into(), shadow_of: None }, T0).await, ser)
        })
        .await;
    parse(text, published["version"].as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(0))
}

async fn ingest(both: &mut Both, what: &str, events: Vec<NewEvent>, models: &ModelSet, now: i64) {
    both.check(what, |s| {
        let (events, models) = (events.clone(), models.clone());
        async move { outcome(s.ingest(events, &models, now).await, ser) }
    })
    .await;
}

const AUTOMATIONS: &[&str] = &[
    r#"
name = "form"
trigger = { event = { name = "Form Submitted" } }
actions = [ { webhook = { url = "https://crm.example.com/hook" } }, { add_group = { group = "form" } }, { set = { attribute = "stage", value = "lead" } } ]
"#,
    r#"
name = "hot-a"
model = "a"
trigger = { band = { to = "hot" } }
actions = [ { assign = { team = "sales" } }, { email = { to = "owner", subject = "Hot: {{contact.id}}" } } ]
"#,
    r#"
name = "nurture-a"
model = "a"
trigger = { band = {} }
actions = [ { nurture = { track_per_band = { hot = "fast", cold = "drip" } } } ]
"#,
    r#"
name = "fit"
model = "b2b"
trigger = { threshold = { score = "total", above = 20 } }
limits = { max = 1, per = "1d" }
actions = [ { add_group = { group = "qualified" } } ]
"#,
];

/// Stores the automations, a team and a subscription in both stores.
async fn put_automations(both: &mut Both) -> AutomationSet {
    let mut set: AutomationSet = Vec::new();
    for text in AUTOMATIONS {
        let automation = Automation::parse(text).expect("automation parses");
        let record = NewAutomation { name: automation.name.clone(), definition: automation.definition.clone(), enabled: true };
        both.check("put automation", |s| {
            let record = record.clone();
            async move { outcome(s.put_automation(record, T0).await, |(r, created)| json!([r.name, r.enabled, created])) }
        })
        .await;
        set.push(Arc::new(LiveAutomation { automation, updated_at: T0 }));
    }
    both.check("team", |s| async move { outcome(s.put_team("sales", vec!["ana@example.com".into(), "bo@example.com".into()], T0).await, ser) }).await;
    both.check("subscription", |s| async move {
        let subscription = Subscription {
            name: "crm".into(),
            url: "https://crm.example.com/sync".into(),
            secret_ref: None,
            events: vec!["score.changed".into(), "nurture.changed".into()],
            fields: [("a.total".to_string(), "score".to_string()), ("a.band".to_string(), "grade".to_string())].into_iter().collect(),
            debounce_ms: 60_000,
            created_at: T0,
            updated_at: T0,
        };
        outcome(s.put_subscription(subscription).await, ser)
    })
    .await;
    set
}

/// `value` without these keys at any depth.
fn without_keys(mut value: Value, keys: &[&str]) -> Value {
    match &mut value {
        Value::Object(map) => {
            for key in keys {
                map.remove(*key);
            }
            for item in map.values_mut() {
                *item = without_keys(item.take(), keys);
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = without_keys(item.take(), keys);
            }
        }
        _ => {}
    }
    value
}

/// Run ids and delivery ids are random: a run or a delivery compares without them.
fn without_ids(value: Value) -> Value {
    without_keys(value, &["id", "run_id", "delivery"])
}

fn run_json(run: &RunRecord) -> Value {
    without_ids(json!({ "automation": run.automation, "contact": run.contact_id, "at": run.at, "reason": run.reason, "actions": run.actions }))
}

fn delivery_json(delivery: &Delivery) -> Value {
    let channel = match &delivery.channel {
        Channel::Webhook { url, secret_ref, body } => {
            json!({ "webhook": url, "secret_ref": secret_ref, "body": serde_json::from_str::<Value>(body).unwrap_or(Value::Null) })
        }
        Channel::Email { to, subject, body } => json!({ "email": to, "subject": subject, "body": body }),
    };
    without_ids(json!({
        "channel": channel, "event_type": delivery.event_type, "automation": delivery.automation, "contact": delivery.contact_id,
        "state": delivery.state, "attempts": delivery.attempts, "next_attempt_at": delivery.next_attempt_at, "created_at": delivery.created_at,
    }))
}

/// Evaluates every queued contact, then sends the CRM sync, on both stores.
async fn evaluate_both(both: &mut Both, automations: &AutomationSet, models: &ModelSet, now: i64) {
    both.check("evaluate", |s| {
        let (automations, models) = (automations.clone(), models.clone());
        async move {
            let queued = match s.queued_contacts(1000).await {
                Ok(queued) => queued,
                Err(err) => return json!(format!("error {err}")),
            };
            let runs = outcome(s.evaluate_contacts(queued, false, &automations, &models, now).await, |runs| Value::Array(runs.iter().map(run_json).collect()));
            let query = RunQuery { limit: 1000, ..Default::default() };
            // The log is newest first by (at, id), and every run here has the same time:
            // sorted, so the random ids do not decide the order.
            let mut log = match s.list_runs(&query).await {
                Ok(list) => list.iter().map(run_json).collect::<Vec<_>>(),
                Err(err) => return json!(format!("error {err}")),
            };
            log.sort_by_key(|run| run.to_string());
            json!({ "runs": runs, "log": log, "stats": outcome(s.run_stats(now).await, ser),
                    "queue": outcome(s.queue_depth().await, ser), "team": outcome(s.get_team("sales").await, ser) })
        }
    })
    .await;
    both.all_contacts("after the evaluation").await;
    both.check("sync", |s| async move {
        let sent = json!([outcome(s.sync_step(2, now + 59_999).await, ser), outcome(s.sync_step(2, now + 60_000).await, ser)]);
        let mut deliveries = match s.list_deliveries(&DeliveryQuery { limit: 1000, ..Default::default() }).await {
            Ok(list) => list.iter().map(delivery_json).collect::<Vec<_>>(),
            Err(err) => return json!(format!("error {err}")),
        };
        deliveries.sort_by_key(|d| d.to_string());
        json!({ "sent": sent, "deliveries": deliveries, "counts": outcome(s.count_deliveries().await, ser) })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gives_the_same_answers_as_sqlite() {
    let Ok(url) = std::env::var("LEADSCORE_TEST_POSTGRES_URL") else {
        println!("postgres_gives_the_same_answers_as_sqlite: skipped, LEADSCORE_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("t_same_as_sqlite_{}", std::process::id());
    let run = {
        let (url, schema) = (url.clone(), schema.clone());
        tokio::spawn(async move { script(&url, &schema).await })
    };
    let outcome = run.await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    let connection = tokio::spawn(connection);
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.expect("drop schema");
    drop(client);
    let _ = connection.await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

async fn script(url: &str, schema: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(dir.path()).expect("open SQLite"));
    let postgres: Arc<dyn Store> = Arc::new(PostgresStore::connect(url, Some(schema)).await.expect("connect PostgreSQL"));
    let mut both = Both { sqlite, postgres, steps: 0 };

    let a = publish_both(&mut both, MODEL_A).await;
    let all = publish_both(&mut both, MODEL_ALL).await;
    let b2b = publish_both(&mut both, EXAMPLE_MODEL_TOML).await;
    let models: ModelSet = vec![a.clone(), all.clone(), b2b.clone()];

    // Automations from the start, so every write below queues its contacts for them (the
    // queue is compared with the contacts), and they are evaluated at the end.
    let automations = put_automations(&mut both).await;

    // Contacts: by id with email, by email only, with groups, owner and a past creation time.
    for (id, mail, attributes, groups, owner) in [
        (Some("p1"), Some("P1@Example.com "), json!({"segment": "a", "title": "CTO", "product_interest": "platform"}), vec!["austin"], Some("rep1")),
        (None, Some("p2@example.com"), json!({"segment": "a", "job_title": "Director of IT", "company_size": 250}), vec!["austin", "even"], None),
        (Some("p3"), None, json!({"segment": "b", "product_interest": ""}), vec![], Some("rep2")),
    ] {
        both.check("upsert", |s| {
            let upsert = ContactUpsert {
                id: id.map(Into::into),
                email: mail.map(Into::into),
                attributes: obj(attributes.clone()),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                owner: owner.map(Into::into),
                created_at: Some(T0 - 40 * 24 * HOUR),
                historical: false,
            };
            let models = models.clone();
            async move { outcome(s.upsert_contact(upsert, &models, T0).await, |(c, created)| json!([contact_json(&c), created])) }
        })
        .await;
    }
    // The same upsert again changes and logs nothing; a conflicting email is refused.
    both.check("repeat upsert", |s| {
        let models = models.clone();
        async move {
            let upsert = ContactUpsert { id: Some("p3".into()), attributes: obj(json!({"segment": "b"})), ..Default::default() };
            outcome(s.upsert_contact(upsert, &models, T0 + 1).await, |(c, created)| json!([contact_json(&c), created]))
        }
    })
    .await;
    both.check("email conflict", |s| {
        let models = models.clone();
        async move {
            let upsert = ContactUpsert { id: Some("p3".into()), email: Some("p2@example.com".into()), ..Default::default() };
            outcome(s.upsert_contact(upsert, &models, T0 + 1).await, |(c, created)| json!([contact_json(&c), created]))
        }
    })
    .await;

    // Events: by id, by known email, a new email-only person, an anonymous visitor, an
    // identify that moves a contact into a segment, duplicates inside the batch.
    ingest(
        &mut both,
        "first batch",
        vec![
            page("e1", user("p1"), T0 + HOUR, "/pricing"),
            click("e2", email("p2@example.com"), T0 + 2 * HOUR),
            page("e3", email("New@Example.com"), T0 + HOUR, "/features"),
            page("e4", anon("v1"), T0 + 3 * HOUR, "/pricing"),
            page("e5", anon("v1"), T0 + 2 * HOUR, "/careers"),
            identify("i1", user("p3"), T0 + 2 * HOUR, json!({"segment": "a", "title": "CTO", "email": "p3@example.com"})),
            page("e1", user("p1"), T0 + HOUR, "/pricing"),
            ev("f1", user("p1"), T0 + 4 * HOUR, EventKind::Track, "Form Submitted", json!({"form": "quote"}), json!({})),
        ],
        &models,
        T0 + 5 * HOUR,
    )
    .await;
    both.all_contacts("after the first batch").await;

    // Late events (replay), a repeated messageId, a person arriving with the visitor's
    // anonymousId (merge), and an identify for the merged person.
    ingest(
        &mut both,
        "second batch",
        vec![
            page("e0", user("p1"), T0 + 30 * 60_000, "/pricing"),
            page("e4", anon("v1"), T0 + 3 * HOUR, "/pricing"),
            ev(
                "m1",
                Identity { user_id: Some("p4".into()), anonymous_id: Some("v1".into()), email: None },
                T0 + 6 * HOUR,
                EventKind::Page,
                "page",
                json!({"path": "/features"}),
                json!({}),
            ),
            identify("i2", user("p4"), T0 + 6 * HOUR, json!({"segment": "a", "job_title": "Student"})),
            click("e6", user("p2@example.com"), T0 + 7 * HOUR),
        ],
        &models,
        T0 + 8 * HOUR,
    )
    .await;
    both.all_contacts("after the merge").await;

    // A merge into an existing contact that has an email; the visitor had one too.
    ingest(
        &mut both,
        "visitor 2",
        vec![page("w1", anon("v2"), T0 + HOUR, "/x"), identify("w2", anon("v2"), T0 + HOUR, json!({"email": "visitor@example.com", "title": "CTO"}))],
        &models,
        T0 + 8 * HOUR,
    )
    .await;
    ingest(
        &mut both,
        "merge 2",
        vec![click("w3", Identity { user_id: Some("p1".into()), anonymous_id: Some("v2".into()), email: None }, T0 + 9 * HOUR)],
        &models,
        T0 + 9 * HOUR,
    )
    .await;
    both.all_contacts("after the second merge").await;

    // Patches: leave a segment, groups, owner, status, email change and conflict, unknown.
    for (id, patch) in [
        (
            "p1",
            ContactPatch {
                attributes: obj(json!({"segment": null, "title": "Intern"})),
                add_groups: vec!["vip".into()],
                remove_groups: vec!["austin".into()],
                owner: Some(None),
                status: Some("contacted".into()),
            },
        ),
        (
            "p3",
            ContactPatch {
                attributes: obj(json!({"email": "p3-new@example.com", "company_size": "500"})),
                owner: Some(Some("rep1".into())),
                ..Default::default()
            },
        ),
        ("p3", ContactPatch { attributes: obj(json!({"email": "p2@example.com"})), ..Default::default() }),
        ("p3", ContactPatch { attributes: obj(json!({"email": 5})), ..Default::default() }),
        ("nobody", ContactPatch::default()),
    ] {
        both.check("patch", |s| {
            let (patch, models) = (patch.clone(), models.clone());
            async move { outcome(s.patch_contact(id, patch, &models, T0 + 10 * HOUR).await, |c| contact_json(&c)) }
        })
        .await;
    }

    // Bulk updates: by group with a condition; by model and band; a bad filter.
    for filter in [
        BulkFilter { group: Some("austin".into()), condition: Some(json!({"attribute": "segment", "op": "eq", "value": "a"})), ..Default::default() },
        BulkFilter { model: Some("all".into()), band: None, owner: Some("rep1".into()), ..Default::default() },
        BulkFilter { model: Some("b2b".into()), band: Some("cold".into()), ..Default::default() },
        BulkFilter { band: Some("hot".into()), ..Default::default() },
        BulkFilter { condition: Some(json!({"attribute": "x", "op": "nope"})), ..Default::default() },
    ] {
        both.check("bulk", |s| {
            let update = BulkUpdate {
                filter: filter.clone(),
                patch: ContactPatch { attributes: obj(json!({"lifecycle": "mql"})), add_groups: vec!["bulk".into()], ..Default::default() },
            };
            let models = models.clone();
            async move { outcome(s.bulk_update(update, &models, T0 + 11 * HOUR).await, ser) }
        })
        .await;
    }
    both.all_contacts("after bulk updates").await;

    // The lead list, every sort, direction and filter, paged by two.
    for sort in [SortKey::Total, SortKey::Fit, SortKey::Activity] {
        for descending in [true, false] {
            for (band, group, owner) in [(None, None, None), (Some("cold"), None, None), (None, Some("bulk"), None), (None, None, Some("rep1"))] {
                for model in ["a", "all", "b2b"] {
                    both.check("lead list", |s| {
                        let sort = sort.clone();
                        async move {
                            let mut pages = Vec::new();
                            let mut after = None;
                            loop {
                                let query = LeadQuery {
                                    model: model.into(),
                                    sort: sort.clone(),
                                    descending,
                                    band: band.map(Into::into),
                                    group: group.map(Into::into),
                                    owner: owner.map(Into::into),
                                    unassigned_too: false,
                                    quadrant: None,
                                    source: None,
                                    search: None,
                                    status: None,
                                    open: false,
                                    predictive_min: None,
                                    limit: 2,
                                    after: after.clone(),
                                };
                                let Ok(page) = s.list_leads(&query).await else { return json!("error") };
                                let Some(last) = page.last() else { break };
                                let card = &last.scores[model].card;
                                let value = match sort {
                                    SortKey::Total => card.total,
                                    SortKey::Fit => card.fit,
                                    SortKey::Activity => card.activity,
                                    // Not among the sorts this comparison draws.
                                    SortKey::Predictive => unreachable!("no predictive scores here"),
                                };
                                after = Some((value, last.id.clone()));
                                pages.push(Value::Array(page.iter().map(contact_json).collect()));
                            }
                            Value::Array(pages)
                        }
                    })
                    .await;
                }
            }
        }
    }

    // A new version of a model: rescored in chunks; a stale version is refused.
    let a2 = publish_both(
        &mut both,
        r#"
name = "a"
applies_to = { attribute = "segment", op = "eq", value = "a" }
[[bands]]
name = "hot"
min = 10
[[bands]]
name = "cold"
[[activity]]
name = "any page"
event = "page"
points = 3
"#,
    )
    .await;
    both.check("stale rescore", |s| {
        let a = a.clone();
        async move {
            outcome(s.rescore_chunk(&a, None, ChunkLimit { contacts: 2, events: 100 }, T0 + 12 * HOUR).await, |c| json!([c.last_contact, c.contacts, c.events]))
        }
    })
    .await;
    both.check("rescore", |s| {
        let a2 = a2.clone();
        async move {
            let mut chunks = Vec::new();
            let mut after = None;
            loop {
                match s.rescore_chunk(&a2, after.clone(), ChunkLimit { contacts: 2, events: 3 }, T0 + 12 * HOUR).await {
                    Ok(chunk) => {
                        chunks.push(json!([chunk.last_contact, chunk.contacts, chunk.events]));
                        match chunk.last_contact {
                            Some(last) => after = Some(last),
                            None => break,
                        }
                    }
                    Err(err) => return json!(format!("error {err}")),
                }
            }
            Value::Array(chunks)
        }
    })
    .await;
    both.all_contacts("after the rescore").await;

    // The decay refresh, a week later, in chunks.
    for model in [all.clone(), b2b.clone(), a2.clone()] {
        both.check("refresh", |s| {
            let model = model.clone();
            async move {
                let mut chunks = Vec::new();
                let mut after = None;
                loop {
                    match s.refresh_chunk(&model, after.clone(), 2, T0 + 7 * 24 * HOUR).await {
                        Ok(chunk) => {
                            chunks.push(json!([chunk.last_contact, chunk.seen, chunk.changed]));
                            match chunk.last_contact {
                                Some(last) => after = Some(last),
                                None => break,
                            }
                        }
                        Err(err) => return json!(format!("error {err}")),
                    }
                }
                Value::Array(chunks)
            }
        })
        .await;
    }
    both.all_contacts("after the refresh").await;

    // A write with the old model set scores with the live versions.
    ingest(&mut both, "stale set", vec![page("late1", user("p2@example.com"), T0 + 13 * HOUR, "/x")], &models, T0 + 13 * HOUR).await;

    // Erasure, model deletion, versions.
    both.check("erase", |s| async move {
        json!([
            outcome(s.delete_contact("p4", &leadscore_store::ErasureRecord { at: 1, by: "k".into() }).await, ser),
            outcome(s.delete_contact("p4", &leadscore_store::ErasureRecord { at: 1, by: "k".into() }).await, ser)
        ])
    })
    .await;
    ingest(
        &mut both,
        "reuse erased ids",
        vec![page("m1", user("p5"), T0 + 14 * HOUR, "/pricing"), identify("i2", user("p5"), T0 + 14 * HOUR, json!({"segment": "a"}))],
        &models,
        T0 + 14 * HOUR,
    )
    .await;
    both.check("delete model", |s| async move { json!([outcome(s.delete_model("all").await, ser), outcome(s.delete_model("all").await, ser)]) }).await;
    both.check("models", |s| async move {
        json!([outcome(s.live_models().await, ser), outcome(s.model_versions("a").await, ser), outcome(s.model_versions("none").await, ser)])
    })
    .await;
    ingest(&mut both, "after delete", vec![click("late2", user("p5"), T0 + 15 * HOUR)], &models, T0 + 15 * HOUR).await;
    both.all_contacts("at the end").await;

    // A visitor's events and identify, and the person revealing them, in one batch.
    ingest(
        &mut both,
        "merge in one batch",
        vec![
            page("z1", anon("v9"), T0 + 16 * HOUR, "/pricing"),
            identify("z2", anon("v9"), T0 + 16 * HOUR, json!({"title": "CTO", "segment": "a"})),
            ev(
                "z3",
                Identity { user_id: Some("p9".into()), anonymous_id: Some("v9".into()), email: None },
                T0 + 17 * HOUR,
                EventKind::Page,
                "page",
                json!({"path": "/x"}),
                json!({}),
            ),
            page("z4", anon("v9"), T0 + 15 * HOUR, "/features"),
        ],
        &models,
        T0 + 18 * HOUR,
    )
    .await;
    both.all_contacts("after a merge in one batch").await;

    evaluate_both(&mut both, &automations, &models, T0 + 19 * HOUR).await;

    // Outcomes: statuses in and out of time order, a rating, an unknown contact; the
    // contact's status follows its latest status by time.
    let recorded = both
        .check("outcomes", |s| async move {
            let card = leadscore_core::ScoreCard { fit: 1.5, activity: 2.25, total: 3.75, band: Some("warm".into()), flames: 1, grade: None, quadrant: None };
            let status = |id: &str, status: &str, at: i64| NewOutcome {
                contact_id: id.into(),
                kind: OutcomeKind::Status { status: status.into() },
                at,
                scores: [("a".to_string(), card.clone())].into_iter().collect(),
            };
            let rating = NewOutcome {
                contact_id: "p5".into(),
                kind: OutcomeKind::Feedback { rating: 3, note: Some("ok".into()), author: None },
                at: T0 + 19 * HOUR,
                scores: Default::default(),
            };
            let recorded = [
                s.record_outcome(status("p5", "qualified", T0 + 18 * HOUR), T0 + 20 * HOUR).await,
                s.record_outcome(status("p5", "contacted", T0 + 17 * HOUR), T0 + 20 * HOUR).await,
                s.record_outcome(rating, T0 + 20 * HOUR).await,
                s.record_outcome(status("p9", "won", T0 + 18 * HOUR), T0 + 20 * HOUR).await,
                s.record_outcome(status("p9", "lost", T0 + 18 * HOUR), T0 + 21 * HOUR).await,
                s.record_outcome(status("p4", "won", T0), T0 + 20 * HOUR).await,
            ];
            let recorded: Vec<Value> = recorded.into_iter().map(|r| outcome(r, ser)).collect();
            json!([
                recorded,
                outcome(s.contact_outcomes("p5").await, ser),
                outcome(s.contact_outcomes("p9").await, ser),
                outcome(s.list_outcomes(T0 + 17 * HOUR, T0 + 18 * HOUR, None, 10).await, ser),
                outcome(s.list_outcomes(0, i64::MAX, Some(2), 2).await, ser),
            ])
        })
        .await;
    assert_eq!(recorded[0].as_array().map(|r| r.iter().filter(|o| o["kind"] == "status").count()), Some(4), "{recorded}");
    assert_eq!(recorded[0][5], "error: not found", "an erased contact takes no outcome");
    both.all_contacts("after the outcomes").await;
    let merged = both
        .check("outcomes move with a merge", |s| {
            let models = models.clone();
            async move {
                let merged = outcome(s.merge_contacts("p9", "p5", &models, T0 + 22 * HOUR).await, |c| contact_json(&c));
                json!([merged, outcome(s.contact_outcomes("p5").await, ser), outcome(s.contact_outcomes("p9").await, ser)])
            }
        })
        .await;
    assert_eq!(merged[1].as_array().map(Vec::len), Some(5), "p9's outcomes moved to p5: {merged}");

    // Accounts: company e-mails of new contacts, account attributes from identify calls,
    // patches and bulk updates (an account_id attribute wins over account and the domain).
    ingest(
        &mut both,
        "accounts",
        vec![
            identify("ac1", email("Kim@Acme.IO"), T0 + 23 * HOUR, json!({"segment": "a", "title": "CTO"})),
            page("ac2", email("lee@acme.io"), T0 + 23 * HOUR, "/pricing"),
            identify("ac3", user("p1"), T0 + 23 * HOUR, json!({"account_id": "acme.io"})),
            identify("ac4", user("p5"), T0 + 23 * HOUR, json!({"account": 42})),
        ],
        &models,
        T0 + 23 * HOUR,
    )
    .await;
    for (id, patch) in [
        ("p3", ContactPatch { attributes: obj(json!({"account_id": "  beta "})), ..Default::default() }),
        ("lee@acme.io", ContactPatch { attributes: obj(json!({"email": "lee@beta.example.org"})), ..Default::default() }),
    ] {
        both.check("account patch", |s| {
            let (patch, models) = (patch.clone(), models.clone());
            async move { outcome(s.patch_contact(id, patch, &models, T0 + 24 * HOUR).await, |c| contact_json(&c)) }
        })
        .await;
    }
    both.check("account bulk", |s| {
        let update = BulkUpdate {
            filter: BulkFilter { group: Some("bulk".into()), ..Default::default() },
            patch: ContactPatch { attributes: obj(json!({"account": "bulk-co"})), ..Default::default() },
        };
        let models = models.clone();
        async move { outcome(s.bulk_update(update, &models, T0 + 24 * HOUR).await, ser) }
    })
    .await;
    let accounts = both
        .check("accounts", |s| async move {
            json!([
                outcome(s.account_members("a").await, ser),
                outcome(s.account_members("nope").await, ser),
                outcome(s.account_contacts("acme.io").await, |cs| json!(cs.iter().map(|c| c.id.clone()).collect::<Vec<_>>())),
                outcome(s.account_contacts("nope").await, |cs| json!(cs.len())),
            ])
        })
        .await;
    assert_eq!(accounts[2], json!(["kim@acme.io", "p1"]), "acme.io: the new contact and p1 (lee moved to beta.example.org): {accounts}");
    both.all_contacts("after the accounts").await;

    // Jobs and keys.
    both.check("jobs", |s| async move {
        let created = s.create_job(NewJob { kind: "rescore".into(), model: "a".into(), version: 2, total: 7, lease: None }, T0).await;
        let mut job = match created {
            Ok(job) => job,
            Err(err) => return json!(format!("error {err}")),
        };
        let mut seen = vec![ser(&job)];
        job.state = "running".into();
        job.done = 3;
        job.cursor = Some("p2".into());
        job.updated_at = T0 + 1;
        seen.push(outcome(s.update_job(&job).await, ser));
        seen.push(outcome(s.latest_job("a").await, ser));
        seen.push(outcome(s.unfinished_jobs().await, ser));
        job.state = "done".into();
        seen.push(outcome(s.update_job(&job).await, ser));
        seen.push(outcome(s.unfinished_jobs().await, ser));
        seen.push(outcome(s.latest_job("nothing").await, ser));
        Value::Array(seen)
    })
    .await;
    both.check("keys", |s| async move {
        let key = ApiKeyRecord {
            id: "k1".into(),
            name: "ingest".into(),
            hash: "abc".into(),
            prefix: "ls_ab".into(),
            scopes: vec![Scope::Ingest, Scope::Read],
            created_at: T0,
            revoked_at: None,
        };
        let hash_of = |k: Option<ApiKeyRecord>| json!(k.map(|k| json!([ser(&k), k.hash])));
        json!([
            outcome(s.insert_key(key.clone()).await, ser),
            outcome(s.insert_key(key.clone()).await, ser),
            outcome(s.insert_key(ApiKeyRecord { id: "k2".into(), hash: "def".into(), ..key.clone() }).await, ser),
            outcome(s.find_key_by_hash("abc").await, hash_of),
            outcome(s.find_key_by_hash("zzz").await, hash_of),
            outcome(s.revoke_key("k1", T0 + 5).await, ser),
            outcome(s.revoke_key("k1", T0 + 6).await, ser),
            outcome(s.list_keys().await, ser),
            outcome(s.count_keys().await, ser),
        ])
    })
    .await;
}
