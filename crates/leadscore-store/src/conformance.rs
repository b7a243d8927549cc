//! The storage test suite every backend runs (SQLite always; PostgreSQL when
//! `LEADSCORE_TEST_POSTGRES_URL` is set). Each check takes a fresh, empty store and panics
//! with a message on failure.

use std::sync::Arc;

use leadscore_core::Model;
use serde_json::{Map, Value, json};

use crate::scoring::{ScoringEvent, card_from_events};
use crate::{
    AccountActivity, ChunkLimit, ContactPatch, ContactUpsert, EventKind, Identity, IngestOptions, IngestStatus, LeadQuery, ModelSet, NewEvent, NewModelVersion,
    PublishedModel, SortKey, Store,
};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const HOUR: i64 = 3_600_000;

pub const MODEL_A: &str = r#"
name = "a"
applies_to = { attribute = "segment", op = "eq", value = "a" }
[[bands]]
name = "hot"
min = 40
[[bands]]
name = "cold"
[[fit]]
name = "title"
when = { attribute = "title", op = "eq", value = "CTO" }
points = 20
[[activity]]
name = "pricing"
event = "page"
when = { property = "path", op = "eq", value = "/pricing" }
points = 25
limit = { count = 1, per = "1d" }
[[activity]]
name = "any page"
event = "page"
points = 1
"#;

pub const MODEL_ALL: &str = r#"
name = "all"
decay = { half_life = "1d" }
[[activity]]
name = "click"
event = "Email Link Clicked"
points = 8
"#;

fn attrs(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn page(id: &str, user: &str, ts: i64, path: &str) -> NewEvent {
    NewEvent {
        message_id: id.into(),
        identity: Identity { user_id: Some(user.into()), ..Identity::default() },
        kind: EventKind::Page,
        name: "page".into(),
        properties: attrs(json!({ "path": path })),
        traits: Map::new(),
        context: None,
        timestamp: ts,
    }
}

fn click(id: &str, user: &str, ts: i64) -> NewEvent {
    NewEvent { kind: EventKind::Track, name: "Email Link Clicked".into(), properties: Map::new(), ..page(id, user, ts, "") }
}

/// A page view by an anonymous visitor (only an `anonymousId`).
fn visitor_page(id: &str, visitor: &str, ts: i64, path: &str) -> NewEvent {
    NewEvent { identity: Identity { anonymous_id: Some(visitor.into()), ..Identity::default() }, ..page(id, "ignored", ts, path) }
}

/// The identify call that says the visitor is `user`, with these traits.
fn identify(id: &str, user: &str, visitor: &str, traits: Value, ts: i64) -> NewEvent {
    NewEvent {
        identity: Identity { user_id: Some(user.into()), anonymous_id: Some(visitor.into()), ..Identity::default() },
        kind: EventKind::Identify,
        name: "identify".into(),
        properties: Map::new(),
        traits: attrs(traits),
        ..page(id, user, ts, "")
    }
}

async fn publish(store: &dyn Store, text: &str) -> Arc<PublishedModel> {
    let model = Model::parse(text).expect("test model parses");
    let version = store
        .publish_model(NewModelVersion { name: model.name.clone(), source: text.into(), format: "toml".into(), shadow_of: None }, T0)
        .await
        .expect("publish");
    Arc::new(PublishedModel { name: version.name, version: version.version, model, shadow_of: None })
}

/// The lead list of `model`, best total first, 50 a page, no filter: tests change what
/// they look at.
fn lead_query(model: &str) -> LeadQuery {
    LeadQuery {
        model: model.into(),
        sort: SortKey::Total,
        descending: true,
        band: None,
        group: None,
        owner: None,
        unassigned_too: false,
        quadrant: None,
        source: None,
        search: None,
        status: None,
        open: false,
        predictive_min: None,
        limit: 50,
        after: None,
    }
}

async fn models(store: &dyn Store) -> ModelSet {
    vec![publish(store, MODEL_A).await, publish(store, MODEL_ALL).await]
}

/// Scores stored by ingest equal a full recomputation from the stored events, whatever the
/// arrival order, and duplicates are reported and ignored.
pub async fn ingest_scores_match_full_recompute(store: Arc<dyn Store>) {
    let set = models(store.as_ref()).await;
    let now = T0 + 10 * HOUR;
    store
        .upsert_contact(ContactUpsert { id: Some("u1".into()), attributes: attrs(json!({"segment": "a", "title": "CTO"})), ..Default::default() }, &set, T0)
        .await
        .expect("upsert");
    // Out of order across batches, with a duplicate.
    let first = store.ingest(vec![page("m3", "u1", T0 + 3 * HOUR, "/pricing"), click("m4", "u1", T0 + 4 * HOUR)], &set, now).await.expect("ingest");
    assert!(first.iter().all(|o| o.status == IngestStatus::Stored));
    let second = store
        .ingest(vec![page("m1", "u1", T0 + HOUR, "/pricing"), page("m3", "u1", T0 + 3 * HOUR, "/pricing"), page("m2", "u1", T0 + 2 * HOUR, "/x")], &set, now)
        .await
        .expect("ingest");
    assert_eq!(second[1].status, IngestStatus::Duplicate, "m3 was already stored");
    let contact = store.get_contact("u1").await.expect("get").expect("exists");
    let events: Vec<ScoringEvent> = store
        .contact_events("u1")
        .await
        .expect("events")
        .into_iter()
        .map(|e| ScoringEvent { timestamp: e.timestamp, message_id: e.message_id, name: e.name, properties: e.properties })
        .collect();
    assert_eq!(events.len(), 4);
    for published in &set {
        let stored = &contact.scores[&published.name];
        let full = card_from_events(published, &contact.attributes, &events, now);
        assert_eq!(stored.card, full, "model {}", published.name);
    }
    // pricing once (limit 1/day) + 3 pages + fit 20
    assert_eq!(contact.scores["a"].card.total, 20.0 + 25.0 + 3.0);
    assert_eq!(contact.scores["a"].card.band.as_deref(), Some("hot"));
}

/// A contact gets a score from every model whose segment matches, and gains or loses a
/// model's score when an attribute change moves it in or out of the segment.
pub async fn segments_follow_attributes(store: Arc<dyn Store>) {
    let set = models(store.as_ref()).await;
    store.ingest(vec![page("p1", "u2", T0, "/pricing")], &set, T0).await.expect("ingest");
    let contact = store.get_contact("u2").await.expect("get").expect("created by the event");
    assert_eq!(contact.scores.keys().collect::<Vec<_>>(), vec!["all"]);
    let patch = ContactPatch { attributes: attrs(json!({"segment": "a"})), ..Default::default() };
    let contact = store.patch_contact("u2", patch, &set, T0 + HOUR).await.expect("patch");
    assert_eq!(contact.scores["a"].card.activity, 26.0, "joining the segment replays past events");
    let patch = ContactPatch { attributes: attrs(json!({"segment": null})), ..Default::default() };
    let contact = store.patch_contact("u2", patch, &set, T0 + HOUR).await.expect("patch");
    assert!(!contact.scores.contains_key("a"));
    assert!(!store.get_contact("u2").await.expect("get").expect("exists").scores.contains_key("a"));
}

/// The lead list pages through every scored contact once, best first, with filters.
pub async fn lead_list_pages_in_order(store: Arc<dyn Store>) {
    let mut set = models(store.as_ref()).await;
    // Model `a` with a fit x activity quadrant: 3 page views or more make a researcher.
    set.push(publish(store.as_ref(), &MODEL_A.replace("name = \"a\"", "name = \"q\"\nquadrant = { fit = 10, activity = 3 }")).await);
    let mut events = Vec::new();
    for i in 0..25 {
        let user = format!("lead{i:02}");
        let company = if i % 5 == 0 { "Acme_Corp 100%" } else { "Globex" };
        let mut attributes = json!({"segment": "a", "company": company, "source": if i % 4 == 0 { "webinar" } else { "ads" }});
        if i == 7 {
            attributes["first_name"] = json!("Ann");
        }
        store
            .upsert_contact(
                ContactUpsert {
                    id: Some(user.clone()),
                    attributes: attrs(attributes),
                    groups: if i % 2 == 0 { vec!["even".into()] } else { vec![] },
                    owner: match i % 3 {
                        0 => Some("rep1".to_string()),
                        1 => Some("rep2".to_string()),
                        _ => None,
                    },
                    ..Default::default()
                },
                &set,
                T0,
            )
            .await
            .expect("upsert");
        for k in 0..(i % 7) {
            events.push(page(&format!("l{i}-{k}"), &user, T0 + k as i64 * 60_000, "/x"));
        }
    }
    store.ingest(events, &set, T0 + HOUR).await.expect("ingest");
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let query = LeadQuery { limit: 4, after: after.clone(), ..lead_query("a") };
        let page = store.list_leads(&query).await.expect("list");
        if page.is_empty() {
            break;
        }
        for c in &page {
            seen.push((c.scores["a"].card.total, c.id.clone()));
        }
        let last = page.last().expect("non-empty");
        after = Some((last.scores["a"].card.total, last.id.clone()));
    }
    assert_eq!(seen.len(), 25, "every contact exactly once");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(seen, sorted, "best first, ties by id");
    let query = LeadQuery { group: Some("even".into()), owner: Some("rep1".into()), ..lead_query("a") };
    let filtered = store.list_leads(&query).await.expect("list");
    let mut ids: Vec<String> = filtered.iter().map(|c| c.id.clone()).collect();
    let totals: Vec<f64> = filtered.iter().map(|c| c.scores["a"].card.total).collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "filtered list is best first: {totals:?}");
    ids.sort();
    let expect: Vec<String> = (0..25).filter(|i| i % 6 == 0).map(|i| format!("lead{i:02}")).collect();
    assert_eq!(ids, expect, "group `even` and owner `rep1`");

    // Statuses: `new` is also a contact without one; `open` leaves closed deals out.
    for (id, status) in [("lead00", "won"), ("lead06", "disqualified"), ("lead12", "contacted"), ("lead18", "new")] {
        let outcome =
            crate::NewOutcome { contact_id: id.into(), kind: crate::OutcomeKind::Status { status: status.into() }, at: T0, scores: Default::default() };
        store.record_outcome(outcome, T0).await.expect("status");
    }
    let listed = |status: Option<&str>, open: bool| {
        let query = LeadQuery { status: status.map(Into::into), open, ..query.clone() };
        let store = store.clone();
        async move {
            let mut ids: Vec<String> = store.list_leads(&query).await.expect("list").into_iter().map(|c| c.id).collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(listed(None, true).await, ["lead12", "lead18", "lead24"], "won and disqualified are closed");
    assert_eq!(listed(Some("new"), false).await, ["lead18", "lead24"], "recorded `new`, and no status at all");
    assert_eq!(listed(Some("contacted"), true).await, ["lead12"]);
    assert_eq!(listed(Some("won"), true).await, Vec::<String>::new());

    // Search, source, quadrant and a rep's unassigned pool.
    let everyone = LeadQuery { group: None, owner: None, status: None, open: false, ..query.clone() };
    let found = |query: LeadQuery| {
        let store = store.clone();
        async move {
            let mut ids: Vec<usize> = store.list_leads(&query).await.expect("list").into_iter().map(|c| c.id[4..].parse().expect("lead number")).collect();
            ids.sort();
            ids
        }
    };
    let ids = |keep: fn(usize) -> bool| (0..25).filter(|i| keep(*i)).collect::<Vec<usize>>();
    let search = |text: &str| LeadQuery { search: Some(text.into()), ..everyone.clone() };
    assert_eq!(found(search("ACME_corp 100%")).await, ids(|i| i % 5 == 0), "any case; `_` and `%` are themselves");
    assert_eq!(found(search("acme%corp")).await, ids(|_| false), "`%` is not a wildcard");
    assert_eq!(found(search("ann")).await, [7], "names are searched");
    assert_eq!(found(search("NN")).await, [7], "two letters too (no trigram to look up)");
    assert_eq!(found(LeadQuery { source: Some("webinar".into()), ..everyone.clone() }).await, ids(|i| i % 4 == 0));
    let pool = LeadQuery { owner: Some("rep1".into()), unassigned_too: true, ..everyone.clone() };
    assert_eq!(found(pool).await, ids(|i| i % 3 != 1), "rep1's contacts and nobody's");
    let quadrant = |name: &str| LeadQuery { model: "q".into(), quadrant: Some(name.into()), ..everyone.clone() };
    assert_eq!(found(quadrant("researcher")).await, ids(|i| i % 7 >= 3));
    assert_eq!(found(quadrant("unqualified")).await, ids(|i| i % 7 < 3));
}

/// A rescore chunk under a new version gives the same rows as ingest would, and the decay
/// refresh moves stored totals as time passes.
pub async fn rescore_and_refresh(store: Arc<dyn Store>) {
    let set = models(store.as_ref()).await;
    store.ingest(vec![click("c1", "u3", T0), click("c2", "u3", T0 + HOUR)], &set, T0 + HOUR).await.expect("ingest");
    let before = store.get_contact("u3").await.expect("get").expect("exists").scores["all"].card.clone();
    let v2 = publish(store.as_ref(), MODEL_ALL).await;
    assert_eq!(v2.version, 2);
    let chunk = store.rescore_chunk(&v2, None, ChunkLimit { contacts: 100, events: 100 }, T0 + HOUR).await.expect("rescore");
    assert_eq!(chunk.contacts, 1);
    let after = store.get_contact("u3").await.expect("get").expect("exists").scores["all"].clone();
    assert_eq!((after.version, &after.card), (2, &before));
    let refreshed = store.refresh_chunk(&v2, None, 100, T0 + 25 * HOUR).await.expect("refresh");
    assert_eq!((refreshed.seen, refreshed.changed), (1, 1));
    let decayed = store.get_contact("u3").await.expect("get").expect("exists").scores["all"].card.activity;
    assert_eq!(decayed, leadscore_core::scorer::round2(8.0 * 0.5f64.powf(25.0 / 24.0) + 8.0 * 0.5), "a day later the clicks have halved");
}

/// A rescore chunk ends before the contact whose events would take it past the event
/// bound (its memory stays flat as contacts gather events); a contact with more events
/// than the bound is a chunk of its own; every contact ends at the new version with the
/// scores ingest gave it, none skipped or taken twice.
pub async fn rescore_chunks_are_bounded_by_events(store: Arc<dyn Store>) {
    let set = models(store.as_ref()).await;
    // b and e have no events (an upsert makes them), d has more than the bound.
    let events_of = [("a", 3), ("b", 0), ("c", 2), ("d", 6), ("e", 0), ("f", 1)];
    for (contact, count) in events_of {
        let id = format!("bounded-{contact}");
        if count == 0 {
            let upsert = ContactUpsert { id: Some(id.clone()), attributes: attrs(json!({"segment": "a"})), ..Default::default() };
            store.upsert_contact(upsert, &set, T0).await.expect("upsert");
        }
        let clicks = (0..count).map(|n| click(&format!("{id}-{n}"), &id, T0 + n * 60_000)).collect();
        store.ingest(clicks, &set, T0 + HOUR).await.expect("ingest");
    }
    let before: Vec<leadscore_core::ScoreCard> = {
        let mut cards = Vec::new();
        for (contact, _) in events_of {
            cards.push(store.get_contact(&format!("bounded-{contact}")).await.expect("get").expect("exists").scores["all"].card.clone());
        }
        cards
    };
    let v2 = publish(store.as_ref(), MODEL_ALL).await;
    let limit = ChunkLimit { contacts: 100, events: 5 };
    let mut chunks = Vec::new();
    let mut after = Some("bounded-".to_string());
    while let Some(from) = after {
        let chunk = store.rescore_chunk(&v2, Some(from.clone()), limit, T0 + HOUR).await.expect("rescore");
        if chunk.contacts > 0 {
            chunks.push((chunk.last_contact.clone().expect("last contact"), chunk.contacts, chunk.events));
        }
        after = chunk.last_contact.filter(|last| last.starts_with("bounded-"));
    }
    assert_eq!(
        chunks[..3],
        [("bounded-c".to_string(), 3, 5), ("bounded-d".to_string(), 1, 6), ("bounded-f".to_string(), 2, 1)],
        "a, b, c fill the bound; d alone goes past it; e and f"
    );
    for ((contact, _), before) in events_of.iter().zip(&before) {
        let after = store.get_contact(&format!("bounded-{contact}")).await.expect("get").expect("exists").scores["all"].clone();
        assert_eq!((after.version, &after.card), (2, before), "bounded-{contact}");
    }
}

/// Erasure removes the contact with its events and scores; its messageIds are free again.
pub async fn erase_removes_everything(store: Arc<dyn Store>) {
    let set = models(store.as_ref()).await;
    store.ingest(vec![click("e1", "gone", T0)], &set, T0).await.expect("ingest");
    assert!(store.delete_contact("gone", &erasure()).await.expect("delete"));
    assert!(store.get_contact("gone").await.expect("get").is_none());
    assert!(store.contact_events("gone").await.expect("events").is_empty());
    assert!(!store.delete_contact("gone", &erasure()).await.expect("delete"));
    let again = store.ingest(vec![click("e1", "gone", T0)], &set, T0).await.expect("ingest");
    assert_eq!(again[0].status, IngestStatus::Stored);
}

/// A write that carries a superseded model set (it raced a publish, or another process
/// published) still stores scores under the live versions.
pub async fn writes_use_the_live_model_versions(store: Arc<dyn Store>) {
    let stale = models(store.as_ref()).await;
    let v2 = publish(store.as_ref(), MODEL_ALL).await;
    store.ingest(vec![click("s1", "u4", T0)], &stale, T0).await.expect("ingest");
    let contact = store.get_contact("u4").await.expect("get").expect("exists");
    assert_eq!(contact.scores["all"].version, v2.version);
    // A rescore chunk of a superseded version is refused, so it cannot overwrite newer rows.
    let old = stale.iter().find(|m| m.name == "all").expect("model all").clone();
    assert!(matches!(store.rescore_chunk(&old, None, ChunkLimit { contacts: 10, events: 100 }, T0).await, Err(crate::StoreError::Conflict(_))));
}

/// A visitor's page view and the identify that reveals who they are, in one batch: the
/// person gets the page view, and the visitor contact is gone.
pub async fn identify_merges_a_visitor_in_the_same_batch(store: Arc<dyn Store>) {
    let set = models(store.as_ref()).await;
    let view = visitor_page("v1", "visitor-1", T0, "/pricing");
    let identify = identify("v2", "person-1", "visitor-1", json!({ "segment": "a" }), T0 + HOUR);
    let outcomes = store.ingest(vec![view, identify], &set, T0 + HOUR).await.expect("ingest");
    assert_eq!(outcomes[1].contact_id, "person-1");
    let person = store.get_contact("person-1").await.expect("get").expect("exists");
    assert_eq!(person.scores["a"].card.activity, 26.0, "pricing 25 + any page 1");
    assert!(store.get_contact("anon:visitor-1").await.expect("get").is_none());
    assert_eq!(store.contact_events("person-1").await.expect("events").len(), 1);
}

/// An ingest answers every contact that received an event as it then reads from the store
/// (traits applied, scores moved), once each in first-touched order; a contact merged away
/// in the batch is not among them, and a batch of duplicates answers none.
pub async fn ingest_answers_the_contacts_as_written(store: Arc<dyn Store>) {
    let set = models(store.as_ref()).await;
    let trusted = IngestOptions { fire_automations: true, trust: crate::IdentityTrust::Trusted };
    store.ingest(vec![page("w0", "known", T0, "/x")], &set, T0).await.expect("ingest");
    let view = visitor_page("w1", "visitor-w", T0 + HOUR, "/pricing");
    let identify = identify("w2", "person-w", "visitor-w", json!({ "segment": "a", "email": "Person.W@Example.com" }), T0 + 2 * HOUR);
    let batch = vec![page("w3", "known", T0 + HOUR, "/pricing"), view, identify, page("w0", "known", T0, "/x"), click("w4", "known", T0 + 3 * HOUR)];
    let ingested = store.ingest_events(batch, &set, T0 + 3 * HOUR, trusted).await.expect("ingest");
    assert_eq!(ingested.outcomes.len(), 5);
    assert_eq!(ingested.outcomes[3].status, IngestStatus::Duplicate);
    let ids: Vec<&str> = ingested.contacts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["known", "person-w"], "each written contact once, the merged visitor not");
    for answered in &ingested.contacts {
        let stored = store.get_contact(&answered.id).await.expect("get").expect("exists");
        assert_eq!(contact_view(store.as_ref(), answered).await, contact_view(store.as_ref(), &stored).await, "{}", answered.id);
    }
    assert_eq!(ingested.contacts[1].email.as_deref(), Some("person.w@example.com"));
    assert_eq!(ingested.contacts[1].scores["a"].card.activity, 26.0, "pricing 25 + any page 1");

    let again = store.ingest_events(vec![page("w3", "known", T0 + HOUR, "/pricing")], &set, T0 + 4 * HOUR, trusted).await.expect("ingest");
    assert_eq!(again.outcomes[0].status, IngestStatus::Duplicate);
    assert!(again.contacts.is_empty(), "nothing was written");
}

/// Merging two contacts by hand: the survivor scores as if every event had been its own,
/// the other is gone, and nonsense merges are refused.
pub async fn merging_contacts_replays_the_survivor(store: Arc<dyn Store>) {
    let set = models(store.as_ref()).await;
    for id in ["keep", "dup"] {
        let upsert = ContactUpsert { id: Some(id.into()), attributes: attrs(json!({"segment": "a"})), ..Default::default() };
        store.upsert_contact(upsert, &set, T0).await.expect("upsert");
    }
    store.ingest(vec![page("k1", "keep", T0 + HOUR, "/pricing"), page("d1", "dup", T0, "/pricing")], &set, T0 + HOUR).await.expect("ingest");
    let merged = store.merge_contacts("dup", "keep", &set, T0 + 2 * HOUR).await.expect("merge");
    // The earlier pricing visit (from `dup`) now takes the once-a-day award; both pages count 1.
    assert_eq!(merged.scores["a"].card.activity, 25.0 + 2.0);
    let events: Vec<ScoringEvent> = store
        .contact_events("keep")
        .await
        .expect("events")
        .into_iter()
        .map(|e| ScoringEvent { timestamp: e.timestamp, message_id: e.message_id, name: e.name, properties: e.properties })
        .collect();
    let stored = store.get_contact("keep").await.expect("get").expect("exists");
    assert_eq!(stored.scores["a"].card, card_from_events(&set[0], &stored.attributes, &events, T0 + 2 * HOUR));
    assert!(store.get_contact("dup").await.expect("get").is_none());
    assert!(matches!(store.merge_contacts("dup", "keep", &set, T0).await, Err(crate::StoreError::NotFound(_))));
    assert!(matches!(store.merge_contacts("keep", "keep", &set, T0).await, Err(crate::StoreError::Invalid(_))));
}

fn automation(name: &str, points: i64, enabled: bool) -> crate::NewAutomation {
    crate::NewAutomation {
        name: name.into(),
        definition: json!({
            "name": name, "enabled": enabled,
            "trigger": { "hot": { "points": points, "within": "1d" } },
            "actions": [{ "webhook": { "url": "https://crm.example.com/hooks/hot" } }],
        }),
        enabled,
    }
}

/// Automation definitions: put creates, a second put replaces (keeping `created_at`,
/// moving `updated_at`), list is by name, delete says whether there was one.
pub async fn automations_put_get_list_replace_delete(store: Arc<dyn Store>) {
    assert!(store.list_automations().await.expect("list").is_empty());
    assert!(store.get_automation("Austin hot leads").await.expect("get").is_none());

    let (first, created) = store.put_automation(automation("Austin hot leads", 20, true), T0).await.expect("put");
    assert!(created);
    assert_eq!((first.created_at, first.updated_at, first.enabled), (T0, T0, true));
    let (_, created) = store.put_automation(automation("Zebra", 5, false), T0 + HOUR).await.expect("put");
    assert!(created);
    // Byte order: upper case before lower case, on every backend.
    let (_, created) = store.put_automation(automation("alpha", 1, true), T0 + HOUR).await.expect("put");
    assert!(created);

    let read = store.get_automation("Austin hot leads").await.expect("get").expect("exists");
    assert_eq!(read, first, "what was stored is what is read");
    assert_eq!(read.definition["trigger"]["hot"]["points"], 20);

    let (replaced, created) = store.put_automation(automation("Austin hot leads", 30, false), T0 + 2 * HOUR).await.expect("replace");
    assert!(!created, "a second put replaces");
    assert_eq!((replaced.created_at, replaced.updated_at, replaced.enabled), (T0, T0 + 2 * HOUR, false));
    let read = store.get_automation("Austin hot leads").await.expect("get").expect("exists");
    assert_eq!(read, replaced);
    assert_eq!(read.definition["trigger"]["hot"]["points"], 30, "the definition was replaced");

    let names: Vec<String> = store.list_automations().await.expect("list").into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["Austin hot leads", "Zebra", "alpha"]);

    assert!(store.delete_automation("Zebra").await.expect("delete"));
    assert!(!store.delete_automation("Zebra").await.expect("delete again"), "nothing left to delete");
    assert!(store.get_automation("Zebra").await.expect("get").is_none());
    assert_eq!(store.list_automations().await.expect("list").len(), 2);
    // A deleted name can be used again and starts over.
    let (again, created) = store.put_automation(automation("Zebra", 5, true), T0 + 3 * HOUR).await.expect("put");
    assert!(created);
    assert_eq!(again.created_at, T0 + 3 * HOUR);
}

/// Fills `source` with one of everything a store keeps: models with several versions and a
/// deleted one, contacts with attributes, groups, owner and status, events with context,
/// identify calls (messageIds and contact log), a merged visitor, a rescore job, API keys
/// (one revoked), automations (one disabled, one replaced).
pub async fn fill_for_transfer(store: &dyn Store) {
    let set = models(store).await;
    let set = {
        // A second version of `all`, live; the first stays in the record.
        let v2 = publish(store, MODEL_ALL).await;
        vec![set[0].clone(), v2]
    };
    publish(store, &MODEL_ALL.replace("name = \"all\"", "name = \"gone\"")).await;
    assert!(store.delete_model("gone").await.expect("delete model"));
    for i in 0..30 {
        let upsert = ContactUpsert {
            id: Some(format!("c{i:02}")),
            email: (i % 3 != 0).then(|| format!("c{i}@example.com")),
            attributes: attrs(json!({"segment": if i % 2 == 0 { "a" } else { "b" }, "title": if i % 5 == 0 { "CTO" } else { "dev" }, "n": i})),
            groups: if i % 4 == 0 { vec!["vip".into(), "trial".into()] } else { vec![] },
            owner: (i % 7 == 0).then(|| "rep1".to_string()),
            created_at: Some(T0 - i64::from(i) * HOUR),
            historical: false,
        };
        store.upsert_contact(upsert, &set, T0).await.expect("upsert");
    }
    let patch = ContactPatch { status: Some("customer".into()), attributes: attrs(json!({"title": "CTO"})), ..Default::default() };
    store.patch_contact("c01", patch, &set, T0 + HOUR).await.expect("patch");
    let mut events = Vec::new();
    for i in 0..30i64 {
        for k in 0..(i % 5) {
            let mut event = if k % 2 == 0 {
                page(&format!("p{i}-{k}"), &format!("c{i:02}"), T0 + k * HOUR, if k == 0 { "/pricing" } else { "/docs" })
            } else {
                click(&format!("k{i}-{k}"), &format!("c{i:02}"), T0 + k * HOUR)
            };
            event.context = (k == 1).then(|| json!({"ip": "10.0.0.1", "library": {"name": "test"}}));
            events.push(event);
        }
    }
    store.ingest(events, &set, T0 + 5 * HOUR).await.expect("ingest");
    let view = visitor_page("v1", "visitor-1", T0, "/pricing");
    let identify = identify("id1", "c02", "visitor-1", json!({ "plan": "pro" }), T0 + 6 * HOUR);
    let lone_visitor = visitor_page("v2", "visitor-2", T0, "/");
    store.ingest(vec![view, identify, lone_visitor], &set, T0 + 6 * HOUR).await.expect("ingest identify");
    let mut job = store.create_job(crate::NewJob { kind: "rescore".into(), model: "all".into(), version: 2, total: 31, lease: None }, T0).await.expect("job");
    job.state = "done".into();
    job.done = 31;
    job.cursor = Some("c29".into());
    store.update_job(&job).await.expect("update job");
    store.create_job(crate::NewJob { kind: "rescore".into(), model: "a".into(), version: 1, total: 31, lease: None }, T0).await.expect("job");
    for (id, scopes, revoked) in [("k1", vec![crate::Scope::Admin], false), ("k2", vec![crate::Scope::Ingest, crate::Scope::Read], true)] {
        let key = crate::ApiKeyRecord {
            id: id.into(),
            name: format!("key {id}"),
            hash: format!("{id:0>64}"),
            prefix: format!("ls_{id}"),
            scopes,
            created_at: T0,
            revoked_at: None,
        };
        store.insert_key(key).await.expect("insert key");
        if revoked {
            assert!(store.revoke_key(id, T0 + HOUR).await.expect("revoke"));
        }
    }
    store.insert_user(user("u1", "ana@example.com", crate::Role::Sales)).await.expect("insert user");
    store
        .insert_session(crate::SessionRecord { id_hash: "s".repeat(64), user_id: "u1".into(), created_at: T0, last_seen_at: T0 + HOUR })
        .await
        .expect("session");
    store.put_automation(automation("Austin hot leads", 20, true), T0).await.expect("put automation");
    store.put_automation(automation("Austin hot leads", 25, true), T0 + HOUR).await.expect("replace automation");
    store.put_automation(automation("paused", 5, false), T0).await.expect("put automation");
    fill_runs_and_outcomes(store, &set).await;
}

/// The automation side for a transfer: a team, a secret, a subscription, runs with their
/// deliveries (one attempted), trigger states, queued work, CRM sync rows, a lease, outcomes.
async fn fill_runs_and_outcomes(store: &dyn Store, set: &ModelSet) {
    store.put_team("sales", vec!["ana@example.com".into(), "bo@example.com".into()], T0).await.expect("team");
    store.put_secret("crm", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", T0).await.expect("secret");
    let subscription = crate::runner::Subscription { secret_ref: Some("crm".into()), debounce_ms: 0, ..crm_subscription(&[("total", "lead_score__c")]) };
    store.put_subscription(subscription).await.expect("subscription");
    let signup = store_automation(
        store,
        r#"
name = "signup"
trigger = { event = { name = "Signup" } }
actions = [ { webhook = { url = "https://crm.example.com/hook", secret_ref = "crm" } }, { assign = { team = "sales" } } ]
"#,
    )
    .await;
    let mut automations = vec![signup];
    for record in store.list_automations().await.expect("automations") {
        if record.name != "signup" {
            let automation = leadscore_core::automation::Automation::from_value(record.definition.clone()).expect("stored automation parses");
            let mut automation = automation;
            automation.enabled = record.enabled;
            automations.push(Arc::new(crate::runner::LiveAutomation { automation, updated_at: record.updated_at }));
        }
    }
    let now = T0 + 30 * HOUR;
    store.ingest(vec![track("t-s1", "c01", now, "Signup"), track("t-s2", "c02", now, "Signup")], set, now).await.expect("ingest");
    let ids = store.queued_contacts(10).await.expect("queued");
    let runs = store.evaluate_contacts(ids, false, &automations, set, now).await.expect("evaluate");
    assert_eq!(runs.len(), 2, "both signups fire");
    let claimed = store.claim_deliveries("w1", 1, 60_000, now).await.expect("claim");
    let attempt = crate::runner::DeliveryAttempt { at: now, success: false, status: Some(500), error: Some("boom".into()), duration_ms: 3 };
    store.record_attempt(&claimed[0].id, "w1", attempt, Some(now + 30_000)).await.expect("attempt");
    store.sync_step(1, now).await.expect("sync");
    // Queued, not yet evaluated.
    store.ingest(vec![track("t-s3", "c03", now + 1, "Signup")], set, now + 1).await.expect("ingest");
    store.try_lease("scheduler", "w1", 60_000, now).await.expect("lease");
    for (id, status, at) in [("c01", "won", now + HOUR), ("c02", "lost", now + HOUR), ("c04", "contacted", now)] {
        let outcome = crate::NewOutcome {
            contact_id: id.into(),
            kind: crate::OutcomeKind::Status { status: status.into() },
            at,
            scores: [("a".to_string(), leadscore_core::ScoreCard { fit: 1.0, activity: 2.0, total: 3.0, band: None, flames: 0, grade: None, quadrant: None })]
                .into_iter()
                .collect(),
        };
        store.record_outcome(outcome, now + 2 * HOUR).await.expect("outcome");
    }
}

/// Everything a contact shows through the traits, as JSON (so two stores compare exactly).
async fn contact_view(store: &dyn Store, contact: &crate::ContactRecord) -> Value {
    let scores: Map<String, Value> = contact
        .scores
        .iter()
        .map(|(model, row)| (model.clone(), json!({"version": row.version, "card": row.card, "state": row.state, "as_of": row.as_of})))
        .collect();
    json!({
        "id": contact.id, "email": contact.email, "attributes": contact.attributes, "groups": contact.groups,
        "owner": contact.owner, "status": contact.status, "created_at": contact.created_at, "updated_at": contact.updated_at,
        "last_event_at": contact.last_event_at, "scores": scores,
        "events": store.contact_events(&contact.id).await.expect("events"),
        "log": store.contact_log(&contact.id).await.expect("log"),
    })
}

/// What a whole store shows through the traits, as JSON.
async fn store_view(store: &dyn Store) -> Value {
    let mut contacts = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_contacts(after.as_deref(), 7).await.expect("list contacts");
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for contact in &page {
            contacts.push(contact_view(store, contact).await);
        }
    }
    let mut versions = Vec::new();
    for name in ["a", "all", "gone"] {
        versions.push(json!(store.model_versions(name).await.expect("versions")));
    }
    let keys: Vec<Value> = store.list_keys().await.expect("keys").iter().map(|k| json!({"key": k, "hash": k.hash})).collect();
    json!({
        "contacts": contacts,
        "live": store.live_models().await.expect("live"),
        "versions": versions,
        "keys": keys,
        "jobs": [store.latest_job("all").await.expect("job"), store.latest_job("a").await.expect("job")],
        "unfinished": store.unfinished_jobs().await.expect("jobs"),
        "automations": store.list_automations().await.expect("automations"),
    })
}

/// `transfer::copy_all` from a filled store into an empty one (any backends): every row of
/// every table and everything the traits show are the same on both sides, and the copy
/// keeps working as a store (generated keys continue, messageIds stay deduplicated,
/// version numbers continue after deleted models' versions).
pub async fn transfer_round_trip<S, D>(source: &S, destination: &D)
where
    S: Store + crate::TransferStore,
    D: Store + crate::TransferStore,
{
    use crate::transfer::{self, TABLES};
    fill_for_transfer(source).await;
    assert!(transfer::non_empty_tables(destination).await.expect("count").is_empty(), "the destination starts empty");
    let mut events = 0usize;
    let report = transfer::copy_all(source, destination, 16, &mut |_| events += 1).await.expect("copy");
    assert!(events >= 3 * TABLES.len(), "progress is reported per table");
    assert!(report.verified(), "{report:?}");
    assert!(report.tables.iter().any(|t| t.table == "events" && t.source > 16), "several chunks were copied: {report:?}");
    for table in TABLES {
        let from = transfer::all_rows(source, table).await.expect("rows");
        let to = transfer::all_rows(destination, table).await.expect("rows");
        assert_eq!(from, to, "table {}", table.name);
    }
    assert_eq!(store_view(source).await, store_view(destination).await);
    assert!(destination.find_key_by_hash(&format!("{:0>64}", "k1")).await.expect("find").is_some());

    // The copy is a working store.
    let live: ModelSet = {
        let mut set = Vec::new();
        for version in destination.live_models().await.expect("live") {
            let model = Model::parse(&version.source).expect("parses");
            set.push(Arc::new(PublishedModel { name: version.name, version: version.version, model, shadow_of: None }));
        }
        set
    };
    let again = destination
        .ingest(vec![page("p3-0", "c03", T0, "/pricing"), page("new-1", "c03", T0 + 9 * HOUR, "/pricing")], &live, T0 + 9 * HOUR)
        .await
        .expect("ingest");
    assert_eq!(again[0].status, IngestStatus::Duplicate, "messageIds came along");
    assert_eq!(again[1].status, IngestStatus::Stored);
    let patch = ContactPatch { attributes: attrs(json!({"title": "CEO"})), ..Default::default() };
    destination.patch_contact("c04", patch, &live, T0 + 9 * HOUR).await.expect("the contact log takes new entries");
    let log = destination.contact_log("c04").await.expect("log");
    assert!(log.len() >= 2, "{log:?}");
    let source_jobs = source.latest_job("a").await.expect("job").expect("exists").id;
    let job = destination.create_job(crate::NewJob { kind: "rescore".into(), model: "a".into(), version: 1, total: 1, lease: None }, T0).await.expect("job");
    assert!(job.id > source_jobs, "job ids continue after the copied ones");
    let gone = publish(destination, &MODEL_ALL.replace("name = \"all\"", "name = \"gone\"")).await;
    assert_eq!(gone.version, 2, "versions continue after the deleted model's");
}

fn live(text: &str) -> Arc<crate::runner::LiveAutomation> {
    let automation = leadscore_core::automation::Automation::parse(text).expect("test automation parses");
    Arc::new(crate::runner::LiveAutomation { automation, updated_at: T0 })
}

fn track(id: &str, user: &str, ts: i64, name: &str) -> NewEvent {
    NewEvent { kind: EventKind::Track, name: name.into(), properties: Map::new(), ..page(id, user, ts, "") }
}

async fn store_automation(store: &dyn Store, text: &str) -> Arc<crate::runner::LiveAutomation> {
    let automation = live(text);
    let definition = automation.automation.definition.clone();
    store.put_automation(crate::NewAutomation { name: automation.automation.name.clone(), definition, enabled: true }, T0).await.expect("put automation");
    automation
}

async fn evaluate_queue(store: &dyn Store, set: &crate::runner::AutomationSet, models: &ModelSet, now: i64) -> Vec<crate::runner::RunRecord> {
    let ids = store.queued_contacts(100).await.expect("queued");
    store.evaluate_contacts(ids, false, set, models, now).await.expect("evaluate")
}

/// Events queue their contact only while automations exist and only when they may fire;
/// evaluation records runs once (limits, hot crossing, threshold re-arm), carries the
/// actions out (attributes, groups, round robin, outbox), and empties the queue.
pub async fn automations_fire_from_the_queue(store: Arc<dyn Store>) {
    let set = vec![publish(store.as_ref(), MODEL_A).await];
    let now = T0 + 10 * HOUR;
    for id in ["u1", "u2"] {
        let upsert = ContactUpsert { id: Some(id.into()), attributes: attrs(json!({"segment": "a"})), ..Default::default() };
        store.upsert_contact(upsert, &set, T0).await.expect("upsert");
    }
    // No automation: nothing is queued.
    store.ingest(vec![page("m0", "u1", now, "/x")], &set, now).await.expect("ingest");
    assert!(store.queued_contacts(10).await.expect("queued").is_empty(), "no automation, no queue");
    assert_eq!(store.queue_depth().await.expect("depth"), 0);

    store.put_team("sales", vec!["ana@example.com".into(), "bo@example.com".into()], T0).await.expect("team");
    let automations: crate::runner::AutomationSet = vec![
        store_automation(
            store.as_ref(),
            r#"
name = "signup"
trigger = { event = { name = "Signup" } }
limits = { max = 1, per = "1d" }
actions = [ { webhook = { url = "https://crm.example.com/hook", secret_ref = "crm" } }, { add_group = { group = "signed-up" } } ]
"#,
        )
        .await,
        store_automation(
            store.as_ref(),
            r#"
name = "hot"
trigger = { hot = { points = 28, within = "1d" } }
actions = [ { assign = { team = "sales" } }, { email = { to = "owner", subject = "Hot: {{contact.id}}" } } ]
"#,
        )
        .await,
        store_automation(
            store.as_ref(),
            r#"
name = "handoff"
trigger = { threshold = { score = "total", above = 40, rearm = 30 } }
actions = [ { set = { attribute = "lifecycle_stage", value = "sql" } } ]
"#,
        )
        .await,
    ];
    // A historical import does not queue.
    store.ingest_with(vec![track("h1", "u2", now - HOUR, "Signup")], &set, now, false).await.expect("import");
    assert!(store.queued_contacts(10).await.expect("queued").is_empty(), "historical imports do not fire");

    // u1 has 1 point (m0); it signs up twice (the limit holds) and opens the pricing page
    // (25 + 1 points: 27 in the day), then two more pages: hot at 28.
    store
        .ingest(vec![track("s1", "u1", now + 1, "Signup"), track("s2", "u1", now + 2, "Signup"), page("p1", "u1", now + 3, "/pricing")], &set, now + 5)
        .await
        .expect("ingest");
    assert_eq!(store.queued_contacts(10).await.expect("queued"), ["u1"]);
    let runs = evaluate_queue(store.as_ref(), &automations, &set, now + 5).await;
    let names: Vec<&str> = runs.iter().map(|r| r.automation.as_str()).collect();
    assert_eq!(names, ["signup"], "the limit lets one signup run through; 27 points are not hot yet");
    assert!(store.queued_contacts(10).await.expect("queued").is_empty(), "the queue is consumed");
    let again = evaluate_queue(store.as_ref(), &automations, &set, now + 5).await;
    assert!(again.is_empty(), "evaluating again fires nothing");
    let contact = store.get_contact("u1").await.expect("get").expect("u1");
    assert!(contact.groups.contains(&"signed-up".to_string()), "add_group ran");

    store.ingest(vec![page("p2", "u1", now + 10, "/docs")], &set, now + 10).await.expect("ingest");
    let runs = evaluate_queue(store.as_ref(), &automations, &set, now + 10).await;
    assert_eq!(runs.iter().map(|r| r.automation.as_str()).collect::<Vec<_>>(), ["hot"], "the page that reaches 28 points fires hot");
    assert_eq!(runs[0].reason["trigger"], "hot");
    assert_eq!(runs[0].actions[0]["owner"], "ana@example.com", "round robin starts with the first member");
    assert_eq!(runs[0].actions[1]["outcome"], "queued");
    store.ingest(vec![page("p3", "u1", now + 11, "/docs")], &set, now + 11).await.expect("ingest");
    assert!(evaluate_queue(store.as_ref(), &automations, &set, now + 11).await.is_empty(), "still hot: no new crossing");

    // The fit lifts u1's total over 40: the threshold fires once, not again while above.
    let patch = ContactPatch { attributes: attrs(json!({"title": "CTO"})), ..Default::default() };
    store.patch_contact("u1", patch, &set, now + 20).await.expect("patch");
    let runs = evaluate_queue(store.as_ref(), &automations, &set, now + 20).await;
    assert_eq!(runs.iter().map(|r| r.automation.as_str()).collect::<Vec<_>>(), ["handoff"]);
    let contact = store.get_contact("u1").await.expect("get").expect("u1");
    assert_eq!(contact.attributes["lifecycle_stage"], "sql", "set ran");
    assert_eq!(contact.owner.as_deref(), Some("ana@example.com"));
    store.patch_contact("u1", ContactPatch { attributes: attrs(json!({"x": 1})), ..Default::default() }, &set, now + 21).await.expect("patch");
    assert!(evaluate_queue(store.as_ref(), &automations, &set, now + 21).await.is_empty(), "hovering above does not fire again");

    // The run log, newest first, with filters and a cursor.
    let all = store.list_runs(&crate::runner::RunQuery { limit: 10, ..Default::default() }).await.expect("runs");
    assert_eq!(all.iter().map(|r| r.automation.as_str()).collect::<Vec<_>>(), ["handoff", "hot", "signup"]);
    let page1 = store.list_runs(&crate::runner::RunQuery { limit: 2, ..Default::default() }).await.expect("runs");
    let last = page1.last().expect("a run");
    let page2 = store.list_runs(&crate::runner::RunQuery { limit: 2, before: Some((last.at, last.id.clone())), ..Default::default() }).await.expect("runs");
    assert_eq!(page2.iter().map(|r| r.automation.as_str()).collect::<Vec<_>>(), ["signup"]);
    let hot_only = store.list_runs(&crate::runner::RunQuery { automation: Some("hot".into()), limit: 10, ..Default::default() }).await.expect("runs");
    assert_eq!(hot_only.len(), 1);
    let stats = store.run_stats(now + 30).await.expect("stats");
    let signup = stats.iter().find(|s| s.automation == "signup").expect("signup stats");
    assert_eq!((signup.runs_last_day, signup.runs_total, signup.last_fired_at), (1, 1, Some(now + 5)));

    // The outbox holds the webhook and the e-mail.
    let deliveries = store.list_deliveries(&crate::runner::DeliveryQuery { limit: 10, ..Default::default() }).await.expect("deliveries");
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().all(|d| d.state == crate::runner::DeliveryState::Pending));
    let webhook = deliveries.iter().find(|d| matches!(d.channel, crate::runner::Channel::Webhook { .. })).expect("webhook");
    let crate::runner::Channel::Webhook { body, secret_ref, .. } = &webhook.channel else { unreachable!() };
    assert_eq!(secret_ref.as_deref(), Some("crm"));
    let body: Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(body["type"], "automation.fired");
    assert_eq!(body["data"]["contact"]["id"], "u1");
}

/// The outbox: claims with leases (a claimed row is not claimed again until its lease
/// expires), attempts recorded, retries scheduled, dead letters, manual retry.
pub async fn outbox_claims_retries_and_dead_letters(store: Arc<dyn Store>) {
    let set = vec![publish(store.as_ref(), MODEL_A).await];
    let now = T0 + HOUR;
    let automations = vec![
        store_automation(
            store.as_ref(),
            r#"
name = "signup"
trigger = { event = { name = "Signup" } }
actions = [ { webhook = { url = "https://crm.example.com/hook" } } ]
"#,
        )
        .await,
    ];
    store.ingest(vec![track("s1", "u1", now, "Signup"), track("s2", "u2", now, "Signup")], &set, now).await.expect("ingest");
    assert_eq!(evaluate_queue(store.as_ref(), &automations, &set, now).await.len(), 2);

    let claimed = store.claim_deliveries("w1", 10, 60_000, now).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    assert!(store.claim_deliveries("w2", 10, 60_000, now + 1).await.expect("claim").is_empty(), "leased rows are not claimed twice");
    let (first, second) = (&claimed[0], &claimed[1]);
    let failed = crate::runner::DeliveryAttempt { at: now + 2, success: false, status: Some(503), error: Some("busy".into()), duration_ms: 5 };
    assert!(!store.record_attempt(&first.id, "w2", failed.clone(), Some(now + 1000)).await.expect("record"), "another owner cannot record");
    assert!(store.record_attempt(&first.id, "w1", failed.clone(), Some(now + 1000)).await.expect("record"));
    let delivered = crate::runner::DeliveryAttempt { at: now + 2, success: true, status: Some(200), error: None, duration_ms: 5 };
    assert!(store.record_attempt(&second.id, "w1", delivered, None).await.expect("record"));

    assert!(store.claim_deliveries("w1", 10, 60_000, now + 999).await.expect("claim").is_empty(), "not due before its retry time");
    let retried = store.claim_deliveries("w2", 10, 60_000, now + 1000).await.expect("claim");
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id.as_str(), retried[0].attempts), (first.id.as_str(), 1), "the same delivery (same webhook-id) comes back");
    assert!(store.record_attempt(&first.id, "w2", failed.clone(), None).await.expect("record"), "the last attempt dead-letters");

    let (dead, attempts) = store.get_delivery(&first.id).await.expect("get").expect("exists");
    assert_eq!((dead.state, dead.attempts, dead.last_status), (crate::runner::DeliveryState::Failed, 2, Some(503)));
    assert_eq!(attempts.len(), 2);
    let failed_list = store
        .list_deliveries(&crate::runner::DeliveryQuery { state: Some(crate::runner::DeliveryState::Failed), limit: 10, ..Default::default() })
        .await
        .expect("list");
    assert_eq!(failed_list.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [first.id.as_str()]);
    let (ok, _) = store.get_delivery(&second.id).await.expect("get").expect("exists");
    assert_eq!((ok.state, ok.delivered_at), (crate::runner::DeliveryState::Delivered, Some(now + 2)));
    let counts = store.count_deliveries().await.expect("counts");
    assert!(counts.contains(&(crate::runner::DeliveryState::Failed, 1)) && counts.contains(&(crate::runner::DeliveryState::Delivered, 1)), "{counts:?}");

    let back = store.retry_delivery(&first.id, now + 5000).await.expect("retry").expect("exists");
    assert_eq!(back.state, crate::runner::DeliveryState::Pending);
    assert_eq!(store.claim_deliveries("w3", 10, 60_000, now + 5000).await.expect("claim").len(), 1, "a manual retry is due at once");
    assert!(store.retry_delivery("msg_nope", now).await.expect("retry").is_none());
    // A crashed owner's lease expires and another worker takes the row.
    assert_eq!(store.claim_deliveries("w4", 10, 60_000, now + 5000 + 60_001).await.expect("claim").len(), 1);
}

/// The scheduler's cold check: contacts old enough and quiet enough fire once, and re-arm
/// only after earning points again.
pub async fn cold_contacts_fire_from_the_scheduler(store: Arc<dyn Store>) {
    let set = vec![publish(store.as_ref(), MODEL_A).await];
    let day = 24 * HOUR;
    let automations = vec![
        store_automation(
            store.as_ref(),
            r#"
name = "quarterly"
trigger = { cold = { points = 2, within = "90d" } }
filter = { group = "clients" }
actions = [ { add_group = { group = "follow-up" } } ]
"#,
        )
        .await,
    ];
    for (id, age_days, group) in [("old", 200, "clients"), ("young", 5, "clients"), ("other", 200, "prospects")] {
        let upsert = ContactUpsert {
            id: Some(id.into()),
            attributes: attrs(json!({"segment": "a"})),
            groups: vec![group.into()],
            created_at: Some(T0 - age_days * day),
            historical: true,
            ..Default::default()
        };
        store.upsert_contact(upsert, &set, T0).await.expect("upsert");
    }
    // "old" was busy 10 days ago: 25 points in the window.
    store.ingest_with(vec![page("p1", "old", T0 - 10 * day, "/pricing")], &set, T0, false).await.expect("import");
    let scan = |at: i64| {
        let store = store.clone();
        let automations = automations.clone();
        let set = set.clone();
        async move {
            let ids = store.contacts_created_before(None, at - 90 * day, 100).await.expect("candidates");
            store.evaluate_contacts(ids, true, &automations, &set, at).await.expect("evaluate")
        }
    };
    assert!(scan(T0).await.is_empty(), "recent points keep the client warm");
    let later = T0 + 81 * day;
    let runs = scan(later).await;
    assert_eq!(runs.iter().map(|r| r.contact_id.as_str()).collect::<Vec<_>>(), ["old"], "only the old, quiet client (not the young one, not the prospect)");
    assert_eq!(runs[0].reason["trigger"], "cold");
    assert!(scan(later + day).await.is_empty(), "fires once while it stays cold");
    // Points again, then quiet again: it fires again.
    store.ingest(vec![page("p2", "old", later + 2 * day, "/pricing")], &set, later + 2 * day).await.expect("ingest");
    let _ = evaluate_queue(store.as_ref(), &automations, &set, later + 2 * day).await;
    assert!(scan(later + 3 * day).await.is_empty());
    let runs = scan(later + 95 * day).await;
    assert!(runs.iter().any(|r| r.contact_id == "old"), "re-armed by the points, cold again 90 days on");
    assert!(runs.iter().any(|r| r.contact_id == "young"), "the young client is old enough now");
}

/// Teams, secrets, subscriptions and leases.
pub async fn settings_round_trip(store: Arc<dyn Store>) {
    let (team, created) = store.put_team("emea", vec!["a@x.com".into()], T0).await.expect("team");
    assert!(created);
    assert_eq!(team.cursor, 0);
    let (team, created) = store.put_team("emea", vec!["a@x.com".into(), "b@x.com".into()], T0 + 1).await.expect("team");
    assert!(!created);
    assert_eq!((team.members.len(), team.created_at), (2, T0));
    assert_eq!(store.list_teams().await.expect("teams").len(), 1);
    assert!(store.delete_team("emea").await.expect("delete"));
    assert!(store.get_team("emea").await.expect("get").is_none());

    assert!(store.put_secret("crm", "whsec_AAAA", T0).await.expect("secret"));
    assert!(!store.put_secret("crm", "whsec_BBBB", T0 + 1).await.expect("secret"));
    assert_eq!(store.get_secret("crm").await.expect("get").as_deref(), Some("whsec_BBBB"));
    assert_eq!(store.list_secrets().await.expect("list"), [("crm".to_string(), T0, T0 + 1)]);
    assert!(store.delete_secret("crm").await.expect("delete"));
    assert!(store.get_secret("crm").await.expect("get").is_none());

    let subscription = crate::runner::Subscription { secret_ref: Some("crm".into()), ..crm_subscription(&[("total", "lead_score__c")]) };
    let (stored, created) = store.put_subscription(subscription.clone()).await.expect("subscription");
    assert!(created);
    assert_eq!(stored, subscription);
    assert_eq!(store.list_subscriptions().await.expect("list"), std::slice::from_ref(&subscription));
    assert!(store.delete_subscription("crm").await.expect("delete"));

    assert!(store.try_lease("scheduler", "p1", 1000, T0).await.expect("lease"));
    assert!(!store.try_lease("scheduler", "p2", 1000, T0 + 500).await.expect("lease"), "held by p1");
    assert!(store.try_lease("scheduler", "p1", 1000, T0 + 500).await.expect("lease"), "the holder renews");
    assert!(store.try_lease("scheduler", "p2", 1000, T0 + 1501).await.expect("lease"), "expired: p2 takes it");

    assert_eq!(store.get_option("sales_pool").await.expect("option"), None, "never set");
    store.put_option("sales_pool", "true", T0).await.expect("set");
    store.put_option("sales_pool", "false", T0 + 1).await.expect("replace");
    assert_eq!(store.get_option("sales_pool").await.expect("option").as_deref(), Some("false"));
}

/// CRM sync: score changes of subscribed contacts are debounced, batched and mapped.
pub async fn score_changes_sync_in_batches(store: Arc<dyn Store>) {
    let set = vec![publish(store.as_ref(), MODEL_A).await];
    let now = T0 + HOUR;
    let subscription = crm_subscription(&[("total", "lead_score__c"), ("band", "lead_grade__c")]);
    store.put_subscription(subscription).await.expect("subscription");
    for i in 0..3 {
        let upsert = ContactUpsert { id: Some(format!("u{i}")), attributes: attrs(json!({"segment": "a"})), historical: true, ..Default::default() };
        store.upsert_contact(upsert, &set, T0).await.expect("upsert");
    }
    let events: Vec<NewEvent> = (0..3).map(|i| page(&format!("p{i}"), &format!("u{i}"), now, "/pricing")).collect();
    store.ingest(events, &set, now).await.expect("ingest");
    let automations: crate::runner::AutomationSet = Vec::new();
    evaluate_queue(store.as_ref(), &automations, &set, now).await;
    assert_eq!(store.sync_step(100, now + 59_999).await.expect("sync"), 0, "debounced");
    assert_eq!(store.sync_step(2, now + 60_000).await.expect("sync"), 2, "batches of at most 2");
    assert_eq!(store.sync_step(2, now + 60_000).await.expect("sync"), 1);
    assert_eq!(store.sync_step(2, now + 60_000).await.expect("sync"), 0, "nothing left");
    let deliveries = store.list_deliveries(&crate::runner::DeliveryQuery { limit: 10, ..Default::default() }).await.expect("deliveries");
    assert_eq!(deliveries.len(), 2);
    let mut seen = Vec::new();
    for delivery in &deliveries {
        let crate::runner::Channel::Webhook { body, .. } = &delivery.channel else { panic!("a webhook") };
        let body: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body["type"], "score.changed");
        for contact in body["data"]["contacts"].as_array().expect("contacts") {
            assert_eq!(contact["lead_score__c"], 26.0);
            assert_eq!(contact["lead_grade__c"], "cold");
            seen.push(contact["id"].as_str().expect("id").to_string());
        }
    }
    seen.sort();
    assert_eq!(seen, ["u0", "u1", "u2"]);
    // An unchanged contact is not sent again.
    store.patch_contact("u0", ContactPatch { attributes: attrs(json!({"note": "x"})), ..Default::default() }, &set, now + 70_000).await.expect("patch");
    evaluate_queue(store.as_ref(), &automations, &set, now + 70_000).await;
    assert_eq!(store.sync_step(100, now + 200_000).await.expect("sync"), 0, "the mapped fields did not change");
}

/// Rescore jobs are claimed with leases: one owner at a time, progress recorded only by the
/// holder, a crashed owner's job taken over after its lease, finished jobs never claimed.
pub async fn jobs_are_claimed_with_leases(store: Arc<dyn Store>) {
    let job = store.create_job(crate::NewJob { kind: "rescore".into(), model: "a".into(), version: 1, total: 10, lease: None }, T0).await.expect("job");
    let mine = store.claim_job(None, "p1", 1000, T0).await.expect("claim").expect("a job to claim");
    assert_eq!(mine.id, job.id);
    assert!(store.claim_job(None, "p2", 1000, T0 + 1).await.expect("claim").is_none(), "held by p1");
    assert!(store.claim_job(Some(job.id), "p2", 1000, T0 + 1).await.expect("claim").is_none(), "held by p1, also by id");
    assert!(store.claim_job(Some(job.id), "p1", 1000, T0 + 1).await.expect("claim").is_some(), "the holder may claim again");
    let mut progress = mine.clone();
    progress.state = "running".into();
    progress.done = 4;
    progress.cursor = Some("c4".into());
    assert!(store.update_claimed_job(&progress, "p1", T0 + 1000).await.expect("update"));
    assert!(!store.update_claimed_job(&progress, "p2", T0 + 1000).await.expect("update"), "not p2's");
    // p1 dies: after its lease, p2 takes the job over where it stood.
    let taken = store.claim_job(None, "p2", 1000, T0 + 1001).await.expect("claim").expect("expired: p2 takes it");
    assert_eq!((taken.id, taken.done, taken.cursor.as_deref()), (job.id, 4, Some("c4")));
    assert!(!store.update_claimed_job(&progress, "p1", T0 + 2000).await.expect("update"), "p1 lost it");
    let mut finished = taken.clone();
    finished.state = "done".into();
    assert!(store.update_claimed_job(&finished, "p2", T0 + 1002).await.expect("update"));
    assert!(store.claim_job(None, "p3", 1000, T0 + 10_000).await.expect("claim").is_none(), "a finished job is not claimed");
    // A job created already leased (the starting process runs it) is nobody else's.
    let lease = Some(("p9".to_string(), T0 + 20_000));
    let leased = store.create_job(crate::NewJob { kind: "rescore".into(), model: "a".into(), version: 2, total: 1, lease }, T0 + 10_000).await.expect("job");
    assert!(store.claim_job(None, "p8", 1000, T0 + 10_001).await.expect("claim").is_none(), "leased at creation");
    assert!(store.claim_job(None, "p9", 1000, T0 + 10_001).await.expect("claim").is_none(), "its owner runs it already: no second copy");
    assert!(store.update_claimed_job(&leased, "p9", T0 + 30_000).await.expect("update"), "its owner records it");
}

/// Outcomes: recorded with their scores, the contact's status is its latest by time (not by
/// recording order), listed by range with a cursor, erased and merged with the contact.
pub async fn outcomes_record_list_erase_merge(store: Arc<dyn Store>) {
    let set = vec![publish(store.as_ref(), MODEL_A).await];
    for id in ["o1", "o2"] {
        let upsert = ContactUpsert { id: Some(id.into()), attributes: attrs(json!({"segment": "a"})), ..Default::default() };
        store.upsert_contact(upsert, &set, T0).await.expect("upsert");
    }
    let card = |total: f64| leadscore_core::ScoreCard { fit: 0.0, activity: total, total, band: Some("cold".into()), flames: 0, grade: None, quadrant: None };
    let status = |id: &str, status: &str, at: i64, total: f64| crate::NewOutcome {
        contact_id: id.into(),
        kind: crate::OutcomeKind::Status { status: status.into() },
        at,
        scores: [("a".to_string(), card(total))].into_iter().collect(),
    };
    let won = store.record_outcome(status("o1", "won", T0 + 3 * HOUR, 30.0), T0 + 10 * HOUR).await.expect("record");
    assert_eq!((won.at, won.recorded_at, won.scores["a"].total), (T0 + 3 * HOUR, T0 + 10 * HOUR, 30.0));
    // An earlier status imported afterwards does not replace the newer one.
    store.record_outcome(status("o1", "contacted", T0 + HOUR, 10.0), T0 + 11 * HOUR).await.expect("record");
    assert_eq!(store.get_contact("o1").await.expect("get").expect("o1").status.as_deref(), Some("won"));
    let feedback = crate::NewOutcome {
        contact_id: "o1".into(),
        kind: crate::OutcomeKind::Feedback { rating: 4, note: Some("good fit".into()), author: Some("ana".into()) },
        at: T0 + 4 * HOUR,
        scores: Default::default(),
    };
    store.record_outcome(feedback, T0 + 12 * HOUR).await.expect("feedback");
    store.record_outcome(status("o2", "lost", T0 + 2 * HOUR, 5.0), T0 + 12 * HOUR).await.expect("record");
    assert_eq!(store.get_contact("o2").await.expect("get").expect("o2").status.as_deref(), Some("lost"));
    assert!(matches!(store.record_outcome(status("nobody", "won", T0, 0.0), T0).await, Err(crate::StoreError::NotFound(_))));

    let history = store.contact_outcomes("o1").await.expect("history");
    let kinds: Vec<String> = history
        .iter()
        .map(|o| match &o.kind {
            crate::OutcomeKind::Status { status } => status.clone(),
            crate::OutcomeKind::Feedback { rating, .. } => format!("rating {rating}"),
        })
        .collect();
    assert_eq!(kinds, ["contacted", "won", "rating 4"], "by time");
    let in_range = store.list_outcomes(T0 + HOUR, T0 + 3 * HOUR, None, 10).await.expect("list");
    assert_eq!(in_range.len(), 2, "from inclusive, to exclusive: contacted (o1) and lost (o2)");
    let first = store.list_outcomes(0, i64::MAX, None, 2).await.expect("list");
    let rest = store.list_outcomes(0, i64::MAX, Some(first[1].id), 10).await.expect("list");
    assert_eq!((first.len(), rest.len()), (2, 2));
    assert!(first[1].id < rest[0].id);

    store.merge_contacts("o2", "o1", &set, T0 + 20 * HOUR).await.expect("merge");
    assert_eq!(store.contact_outcomes("o1").await.expect("history").len(), 4, "the merged contact's outcomes move along");
    assert!(store.delete_contact("o1", &erasure()).await.expect("erase"));
    assert!(store.list_outcomes(0, i64::MAX, None, 10).await.expect("list").is_empty(), "erasure takes the outcomes");

    // A rescore replaces one model's card and leaves the others; an unknown id is skipped.
    let upsert = ContactUpsert { id: Some("o3".into()), attributes: attrs(json!({"segment": "a"})), ..Default::default() };
    store.upsert_contact(upsert, &set, T0).await.expect("upsert");
    let mut with_two = status("o3", "contacted", T0, 1.0);
    with_two.scores.insert("b".into(), card(2.0));
    let two = store.record_outcome(with_two, T0 + 13 * HOUR).await.expect("record");
    let one = store.record_outcome(status("o3", "won", T0 + HOUR, 3.0), T0 + 13 * HOUR).await.expect("record");
    store.set_outcome_cards("a", vec![(two.id, Some(card(7.0))), (one.id, None), (i64::MAX, Some(card(1.0)))]).await.expect("set cards");
    let after = store.contact_outcomes("o3").await.expect("history");
    assert_eq!((after[0].scores["a"].total, after[0].scores["b"].total), (7.0, 2.0));
    assert!(after[1].scores.is_empty(), "the model no longer applies: its card went");
}

/// Accounts: from the account attributes, else the company e-mail domain (never a free
/// mailbox); kept up to date by upserts, patches and merges; members listed with their
/// totals under a model.
pub async fn accounts_follow_attributes_and_domains(store: Arc<dyn Store>) {
    let set = vec![publish(store.as_ref(), MODEL_A).await];
    let seg = |extra: Value| {
        let mut attributes = attrs(json!({"segment": "a"}));
        attributes.extend(attrs(extra));
        attributes
    };
    for (id, email, extra) in [
        ("ann", Some("ann@acme.com"), json!({})),
        ("bob", Some("bob@acme.com"), json!({"title": "CTO"})),
        ("cat", Some("cat@gmail.com"), json!({})),
        ("dan", None, json!({"account_id": "acme.com"})),
        ("eve", Some("eve@beta.io"), json!({"account_id": "beta-corp"})),
    ] {
        let upsert = ContactUpsert { id: Some(id.into()), email: email.map(Into::into), attributes: seg(extra), ..Default::default() };
        store.upsert_contact(upsert, &set, T0).await.expect("upsert");
    }
    store.ingest(vec![page("p1", "ann", T0, "/pricing")], &set, T0).await.expect("ingest");
    let members = store.account_members("a").await.expect("members");
    assert_eq!(
        members,
        [
            ("acme.com".to_string(), "ann".to_string(), 26.0),
            ("acme.com".to_string(), "bob".to_string(), 20.0),
            ("acme.com".to_string(), "dan".to_string(), 0.0),
            ("beta-corp".to_string(), "eve".to_string(), 0.0),
        ],
        "gmail is no account; an account_id attribute wins over the domain"
    );
    let acme: Vec<String> = store.account_contacts("acme.com").await.expect("contacts").into_iter().map(|c| c.id).collect();
    assert_eq!(acme, ["ann", "bob", "dan"]);
    // A patch moves a contact; a merge keeps the survivor's account.
    store
        .patch_contact("bob", ContactPatch { attributes: attrs(json!({"account_id": "beta-corp"})), ..Default::default() }, &set, T0 + 1)
        .await
        .expect("patch");
    assert_eq!(store.account_contacts("beta-corp").await.expect("contacts").len(), 2);
    store.merge_contacts("dan", "cat", &set, T0 + 2).await.expect("merge");
    let cat = store.account_contacts("acme.com").await.expect("contacts");
    assert_eq!(cat.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["ann", "cat"], "cat took dan's account_id attribute");
    assert!(store.account_members("nope").await.expect("members").is_empty());
}

/// Limits hold when evaluations carry clocks out of order: in several processes an
/// evaluation takes its time before it waits for the contact's lock, so it can come after
/// a run stamped later than itself.
pub async fn limits_hold_across_lagging_clocks(store: Arc<dyn Store>) {
    let set = vec![publish(store.as_ref(), MODEL_A).await];
    let automations = vec![
        store_automation(
            store.as_ref(),
            r#"
name = "once"
trigger = { event = { name = "Signup" } }
limits = { max = 1, per = "30d", cooldown = "1d" }
actions = [ { add_group = { group = "signed-up" } } ]
"#,
        )
        .await,
    ];
    let now = T0 + HOUR;
    store.ingest(vec![track("s1", "u1", now, "Signup")], &set, now).await.expect("ingest");
    assert_eq!(evaluate_queue(store.as_ref(), &automations, &set, now).await.len(), 1);
    store.ingest(vec![track("s2", "u1", now + 1, "Signup")], &set, now + 1).await.expect("ingest");
    let lagging = evaluate_queue(store.as_ref(), &automations, &set, now - 1_000).await;
    assert!(lagging.is_empty(), "the run stamped a second later still counts: {lagging:?}");
}

/// What the rest of a contact's account did by an instant: colleagues active in the 90
/// days up to it and their events in 30 and 90 days. The contact's own events, events
/// after the instant and other accounts' do not count (no leakage into training).
pub async fn account_activity_by_an_instant(store: Arc<dyn Store>) {
    let set = models(store.as_ref()).await;
    const DAY: i64 = 24 * HOUR;
    for (id, email) in [("xena", "xena@acme.com"), ("yuri", "yuri@acme.com"), ("will", "will@acme.com"), ("vera", "vera@acme.com"), ("otto", "otto@other.io")] {
        let upsert = ContactUpsert { id: Some(id.into()), email: Some(email.into()), attributes: attrs(json!({"segment": "a"})), ..Default::default() };
        store.upsert_contact(upsert, &set, T0 - 200 * DAY).await.expect("upsert");
    }
    let upsert = ContactUpsert { id: Some("gina".into()), email: Some("gina@gmail.com".into()), ..Default::default() };
    store.upsert_contact(upsert, &set, T0 - 200 * DAY).await.expect("upsert");
    let events = vec![
        click("x1", "xena", T0 - 100 * DAY),
        click("x2", "xena", T0 - 20 * DAY),
        click("x3", "xena", T0 - DAY),
        click("y1", "yuri", T0 - 60 * DAY),
        click("y2", "yuri", T0 - 5 * DAY),
        click("w1", "will", T0 + HOUR),
        click("v1", "vera", T0 - 100 * DAY),
        click("o1", "otto", T0 - DAY),
        click("g1", "gina", T0 - DAY),
    ];
    store.ingest(events, &set, T0 + 2 * HOUR).await.expect("ingest");
    let asks = [("xena", T0), ("yuri", T0), ("xena", T0 + 2 * HOUR), ("gina", T0), ("nobody", T0), ("otto", T0)];
    let activity = store.account_activity(asks.iter().map(|(id, at)| (id.to_string(), *at)).collect()).await.expect("account activity");
    let counts = |a: &Option<AccountActivity>| a.map(|a| (a.active_colleagues, a.events_30d, a.events_90d));
    assert_eq!(
        activity.iter().map(counts).collect::<Vec<_>>(),
        [
            Some((1, 1, 2)), // yuri; vera was active 100 days ago, will only after T0
            Some((1, 2, 2)), // xena's two clicks of the last 90 days
            Some((2, 2, 3)), // two hours on, will's click counts
            None,            // gmail is no account
            None,            // no such contact
            Some((0, 0, 0)), // alone in its account
        ]
    );

    // An account count taken from `counted` (as of T0) is used as given, and the contact's
    // own events are counted as of that instant: will's click an hour after T0 is not
    // subtracted from a count that did not hold it.
    let given = AccountActivity { active_colleagues: 10, events_30d: 10, events_90d: 10 };
    let counted = |account: &str, at: crate::Millis| (account != "other.io" && at == T0 + 2 * HOUR).then_some((T0, given));
    let read = store
        .account_activity_reusing(vec![("will".into(), T0 + 2 * HOUR), ("otto".into(), T0 + 2 * HOUR), ("gina".into(), T0)], &counted)
        .await
        .expect("account activity");
    assert_eq!(read.answers, [Some(given), Some(AccountActivity::default()), None]);
    let other = AccountActivity { active_colleagues: 1, events_30d: 1, events_90d: 1 };
    assert_eq!(read.newly_counted, [("other.io".to_string(), T0 + 2 * HOUR, other)], "only the account counted here");
}

/// The score-only read of the reports: one model's rows in contact id order, paged by
/// `after`, with the state only when asked and one attribute's value as stored (string,
/// number, array, missing; keys with quotes, dots and backslashes), equal to the full read.
pub async fn scan_scores_pages_one_model(store: Arc<dyn Store>) {
    let set = models(store.as_ref()).await;
    let odd_key = "we\"ird.key\\[0]";
    for (id, extra) in [
        ("c05", json!({"industry": [true, {"b": 1}]})),
        ("c01", json!({"industry": "soft\"ware", "title": "CTO"})),
        ("c04", json!({})),
        ("c03", json!({"industry": 120, "title": "CTO"})),
        ("c06", json!({"industry": 2.5, "weird": {"industry": "nested"}})),
        ("c02", json!({"segment": "b", "industry": "not in a"})),
    ] {
        let mut attributes = attrs(json!({"segment": "a", odd_key: id}));
        attributes.extend(attrs(extra));
        store.upsert_contact(ContactUpsert { id: Some(id.into()), attributes, ..Default::default() }, &set, T0).await.expect("upsert");
    }
    store
        .ingest(vec![click("k1", "c01", T0 + HOUR), page("k2", "c03", T0 + HOUR, "/pricing"), click("k3", "c06", T0 + 2 * HOUR)], &set, T0 + 2 * HOUR)
        .await
        .expect("ingest");
    let mut scanned = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.scan_scores("a", true, Some("industry"), after.as_deref(), 2).await.expect("scan");
        assert!(page.len() <= 2, "at most `limit` rows");
        let Some(last) = page.last() else { break };
        after = Some(last.contact_id.clone());
        scanned.extend(page);
    }
    let ids: Vec<&str> = scanned.iter().map(|s| s.contact_id.as_str()).collect();
    assert_eq!(ids, ["c01", "c03", "c04", "c05", "c06"], "by id, each once; c02 has no row under `a`");
    for row in &scanned {
        let contact = store.get_contact(&row.contact_id).await.expect("get").expect("exists");
        let full = &contact.scores["a"];
        assert_eq!((row.version, &row.card, row.as_of), (full.version, &full.card, full.as_of), "{}", row.contact_id);
        assert_eq!(row.state, Some(leadscore_core::DecayView::from(&full.state)), "{}", row.contact_id);
        assert_eq!(row.attribute, contact.attributes.get("industry").cloned(), "{}", row.contact_id);
    }
    // The same contacts read in one go: in the order asked, unknown ids left out.
    let asked: Vec<String> = ["c06", "nobody", "c01", "c02"].map(String::from).to_vec();
    let together = store.get_contacts(&asked).await.expect("get_contacts");
    assert_eq!(together.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c06", "c01", "c02"]);
    for contact in &together {
        let alone = store.get_contact(&contact.id).await.expect("get").expect("exists");
        assert_eq!(contact.attributes, alone.attributes, "{}", contact.id);
        let cards = |c: &crate::ContactRecord| c.scores.iter().map(|(m, row)| (m.clone(), row.version, row.card.clone())).collect::<Vec<_>>();
        assert_eq!(cards(contact), cards(&alone), "{}", contact.id);
    }
    assert!(store.get_contacts(&[]).await.expect("get_contacts").is_empty());
    let values: Vec<Option<Value>> = scanned.iter().map(|s| s.attribute.clone()).collect();
    assert_eq!(values, [Some(json!("soft\"ware")), Some(json!(120)), None, Some(json!([true, {"b": 1}])), Some(json!(2.5))]);

    let bare = store.scan_scores("a", false, None, Some("c03"), 10).await.expect("scan");
    assert_eq!(bare.iter().map(|s| s.contact_id.as_str()).collect::<Vec<_>>(), ["c04", "c05", "c06"], "after c03");
    assert!(bare.iter().all(|s| s.state.is_none() && s.attribute.is_none()), "no state, no attribute unless asked");
    let odd = store.scan_scores("a", false, Some(odd_key), None, 10).await.expect("scan");
    assert!(odd.iter().all(|s| s.attribute == Some(json!(s.contact_id))), "a key with quotes, dots and brackets: {odd:?}");

    let all = store.scan_scores("all", false, Some("industry"), None, 10).await.expect("scan");
    assert_eq!(all.len(), 6, "every contact has a row under `all`");
    assert_eq!(all[1].attribute, Some(json!("not in a")));
    assert!(store.scan_scores("nope", true, None, None, 10).await.expect("scan").is_empty());

    // The card as of a later instant from the scan is the one from the full read.
    let decaying = set.iter().find(|m| m.name == "all").expect("model all");
    let rows = store.scan_scores("all", true, None, None, 10).await.expect("scan");
    for row in &rows {
        let contact = store.get_contact(&row.contact_id).await.expect("get").expect("exists");
        let full = &contact.scores["all"];
        let later = T0 + 30 * HOUR;
        let expected = crate::scoring::card_at(decaying, full, &contact.attributes, later).unwrap_or_else(|| full.card.clone());
        assert_eq!(*crate::scoring::scanned_card_at(decaying, row, later).expect("live"), expected, "{}", row.contact_id);
    }
}

fn user(id: &str, email: &str, role: crate::Role) -> crate::UserRecord {
    crate::UserRecord {
        id: id.into(),
        email: email.into(),
        name: Some(format!("User {id}")),
        role,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${id}"),
        disabled: false,
        created_at: T0,
        updated_at: T0,
    }
}

/// Users: unique e-mails, read by id and e-mail, updated whole; sessions: stored by hash,
/// touched forward only, deleted one by one, per user and when expired.
pub async fn users_and_sessions(store: Arc<dyn Store>) {
    store.insert_user(user("u1", "ana@example.com", crate::Role::Sales)).await.expect("insert");
    store.insert_user(user("u2", "bo@example.com", crate::Role::Admin)).await.expect("insert");
    assert!(
        matches!(store.insert_user(user("u3", "ana@example.com", crate::Role::Marketing)).await, Err(crate::StoreError::Conflict(_))),
        "e-mails are unique"
    );
    assert_eq!(store.count_users().await.expect("count"), 2);
    let ana = store.find_user_by_email("ana@example.com").await.expect("find").expect("ana exists");
    assert_eq!((ana.id.as_str(), ana.role, ana.disabled), ("u1", crate::Role::Sales, false));
    assert_eq!(ana.password_hash, "$argon2id$v=19$m=19456,t=2,p=1$u1");
    assert!(store.find_user_by_email("nobody@example.com").await.expect("find").is_none());
    let listed: Vec<String> = store.list_users().await.expect("list").into_iter().map(|u| u.email).collect();
    assert_eq!(listed, ["ana@example.com", "bo@example.com"]);
    let changed = crate::UserRecord { role: crate::Role::Marketing, disabled: true, updated_at: T0 + HOUR, ..ana.clone() };
    assert!(store.update_user(changed).await.expect("update"));
    let ana = store.get_user("u1").await.expect("get").expect("still there");
    assert_eq!((ana.role, ana.disabled, ana.updated_at), (crate::Role::Marketing, true, T0 + HOUR));
    let taken = crate::UserRecord { email: "bo@example.com".into(), ..ana.clone() };
    assert!(matches!(store.update_user(taken).await, Err(crate::StoreError::Conflict(_))), "an update cannot take another's e-mail");
    assert!(!store.update_user(user("nobody", "x@example.com", crate::Role::Sales)).await.expect("update"), "no such user");

    let session =
        |hash: &str, user: &str, created: i64| crate::SessionRecord { id_hash: hash.into(), user_id: user.into(), created_at: created, last_seen_at: created };
    store.insert_session(session("h1", "u1", T0)).await.expect("session");
    store.insert_session(session("h2", "u1", T0 + HOUR)).await.expect("session");
    store.insert_session(session("h3", "u2", T0 + 2 * HOUR)).await.expect("session");
    store.touch_session("h1", T0 + 3 * HOUR).await.expect("touch");
    store.touch_session("h1", T0 + HOUR).await.expect("touch back");
    let h1 = store.get_session("h1").await.expect("get").expect("h1");
    assert_eq!((h1.user_id.as_str(), h1.created_at, h1.last_seen_at), ("u1", T0, T0 + 3 * HOUR), "a touch never moves last_seen back");
    assert!(store.delete_session("h1").await.expect("delete"));
    assert!(!store.delete_session("h1").await.expect("delete again"));
    assert_eq!(store.delete_user_sessions("u1").await.expect("per user"), 1, "h2");
    assert!(store.get_session("h3").await.expect("get").is_some());
    // Idle since before T0 + 2h + 1 ms: h3 (last seen at T0 + 2h) goes.
    assert_eq!(store.delete_expired_sessions(T0 + 2 * HOUR + 1, T0).await.expect("expire"), 1);
    assert!(store.get_session("h3").await.expect("get").is_none());
    store.insert_session(session("h4", "u2", T0 + 3 * HOUR)).await.expect("session");
    assert!(store.delete_user("u2").await.expect("delete user"));
    assert!(store.get_user("u2").await.expect("get").is_none() && store.get_session("h4").await.expect("get").is_none(), "the user's sessions go with them");
    assert!(!store.delete_user("u2").await.expect("delete again"));
}

/// Predictive versions: numbered from 1, listed newest first without their models, at
/// most one live.
pub async fn predictive_versions(store: Arc<dyn Store>) {
    assert!(store.live_predictive().await.expect("live").is_none());
    let first = store.insert_predictive("won", 1_000, "{\"m\":1}".into(), "{\"auc\":0.7}".into(), true).await.expect("insert");
    let second = store.insert_predictive("won", 2_000, "{\"m\":2}".into(), "{\"auc\":0.6}".into(), false).await.expect("insert");
    assert_eq!((first, second), (1, 2));
    let live = store.live_predictive().await.expect("live").expect("a live version");
    assert_eq!((live.version, live.model.as_str(), live.report.as_str()), (1, "{\"m\":1}", "{\"auc\":0.7}"));
    let listed = store.list_predictive().await.expect("list");
    assert_eq!(listed.iter().map(|v| (v.version, v.live, v.model.is_empty())).collect::<Vec<_>>(), vec![(2, false, true), (1, true, true)]);
    assert!(store.set_live_predictive(2).await.expect("promote"));
    assert!(!store.set_live_predictive(9).await.expect("no such version"));
    assert_eq!(store.live_predictive().await.expect("live").expect("live").version, 2);
    let third = store.insert_predictive("qualified", 3_000, "{}".into(), "{}".into(), true).await.expect("insert");
    let live: Vec<i64> = store.list_predictive().await.expect("list").iter().filter(|v| v.live).map(|v| v.version).collect();
    assert_eq!(live, vec![third], "one live version");
}

/// Stored predictive scores (F21): read back on the contact, sorted and filtered in the
/// lead list, found by the sweep when missing, stale or of another version, queued for
/// automations when they change, and a predictive threshold fires on a crossing only.
pub async fn predictive_scores_sort_sweep_and_fire(store: Arc<dyn Store>) {
    use crate::PredictiveScoreRow;
    let set = vec![publish(store.as_ref(), MODEL_A).await];
    for id in ["u1", "u2", "u3"] {
        let upsert = ContactUpsert { id: Some(id.into()), attributes: attrs(json!({"segment": "a"})), ..Default::default() };
        store.upsert_contact(upsert, &set, T0).await.expect("upsert");
    }
    let row = |score: u8, as_of: i64| PredictiveScoreRow { version: 1, score, probability: f64::from(score) / 100.0 + 0.001, as_of };
    let written =
        store.put_predictive_scores(vec![("u1".into(), row(80, T0)), ("u2".into(), row(30, T0 + HOUR)), ("ghost".into(), row(99, T0))], T0).await.expect("put");
    assert_eq!(written, 2, "a contact that does not exist gets no score");
    assert_eq!(store.get_contact("u1").await.expect("get").expect("u1").predictive, Some(row(80, T0)));
    assert_eq!(store.get_contact("u3").await.expect("get").expect("u3").predictive, None);
    assert!(store.queued_contacts(10).await.expect("queued").is_empty(), "nothing listens: nothing queued");

    let leads = |sort: SortKey, predictive_min: Option<u8>, after: Option<(f64, String)>| {
        let store = store.clone();
        async move {
            let query = LeadQuery { sort, predictive_min, limit: 10, after, ..lead_query("a") };
            store.list_leads(&query).await.expect("leads").into_iter().map(|c| c.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(leads(SortKey::Predictive, None, None).await, ["u1", "u2"], "best first; a contact without a score is not listed");
    assert_eq!(leads(SortKey::Predictive, Some(50), None).await, ["u1"]);
    assert_eq!(leads(SortKey::Predictive, None, Some((0.801, "u1".into()))).await, ["u2"], "the next page");
    assert_eq!(leads(SortKey::Total, Some(30), None).await.len(), 2, "the filter with another sort");

    assert_eq!(store.contacts_to_predict(1, T0 + 1, None, 10).await.expect("to predict"), ["u1", "u3"], "stale and missing");
    assert_eq!(store.contacts_to_predict(1, T0, None, 10).await.expect("to predict"), ["u3"]);
    assert_eq!(store.contacts_to_predict(2, T0, None, 10).await.expect("to predict"), ["u1", "u2", "u3"], "another version");
    assert_eq!(store.contacts_to_predict(2, T0, Some("u1"), 1).await.expect("to predict"), ["u2"], "paged by id");

    let automations: crate::runner::AutomationSet = vec![
        store_automation(
            store.as_ref(),
            r#"
name = "likely"
trigger = { threshold = { score = "predictive", above = 70 } }
actions = [ { add_group = { group = "likely" } } ]
"#,
        )
        .await,
    ];
    // u1 was at 80 before anything listened; moving to 81 crosses nothing. u2 crosses.
    store.put_predictive_scores(vec![("u1".into(), row(81, T0 + 2)), ("u2".into(), row(75, T0 + 2))], T0 + 2).await.expect("put");
    let mut queued = store.queued_contacts(10).await.expect("queued");
    queued.sort();
    assert_eq!(queued, ["u1", "u2"], "a changed score queues the contact");
    let runs = evaluate_queue(store.as_ref(), &automations, &set, T0 + 2).await;
    assert_eq!(runs.iter().map(|r| (r.automation.as_str(), r.contact_id.as_str())).collect::<Vec<_>>(), [("likely", "u2")]);
    assert_eq!((runs[0].reason["score"].as_str(), runs[0].reason["value"].as_f64()), (Some("predictive"), Some(75.0)));
    // The same score again queues nothing; a change above the line does not fire again.
    store.put_predictive_scores(vec![("u2".into(), row(75, T0 + 3))], T0 + 3).await.expect("put");
    assert!(store.queued_contacts(10).await.expect("queued").is_empty(), "an unchanged score queues nothing");
    store.put_predictive_scores(vec![("u2".into(), row(90, T0 + 4))], T0 + 4).await.expect("put");
    assert!(evaluate_queue(store.as_ref(), &automations, &set, T0 + 4).await.is_empty(), "still above: no new crossing");
    // An activity change with the score unchanged does not fire for a contact already above.
    store.put_predictive_scores(vec![("u3".into(), row(85, T0 + 5))], T0 + 5).await.expect("put");
    assert_eq!(evaluate_queue(store.as_ref(), &automations, &set, T0 + 5).await.len(), 1, "u3 had none: counts as 0 before");
    store.ingest(vec![page("pp", "u3", T0 + 6, "/x")], &set, T0 + 6).await.expect("ingest");
    assert!(evaluate_queue(store.as_ref(), &automations, &set, T0 + 6).await.is_empty());

    // Merged away and erased contacts take their scores with them.
    store.merge_contacts("u2", "u3", &set, T0 + 7).await.expect("merge");
    assert_eq!(store.contacts_to_predict(1, T0, None, 10).await.expect("to predict"), Vec::<String>::new(), "u2's row went with it");
    store.delete_contact("u1", &erasure()).await.expect("erase");
    assert_eq!(leads(SortKey::Predictive, None, None).await, ["u3"]);
}

fn erasure() -> crate::ErasureRecord {
    crate::ErasureRecord { at: T0, by: "key_test".into() }
}

/// Issue 15.4: after erasure a pending `score.changed` delivery still carried the contact's
/// id, e-mail and scores. The contact leaves every batch (a batch of it alone goes), and
/// the erasure log says when and by whom.
pub async fn erasure_reaches_batched_deliveries(store: Arc<dyn Store>) {
    let set = vec![publish(store.as_ref(), MODEL_A).await];
    let now = T0 + HOUR;
    let subscription = crm_subscription(&[("total", "lead_score__c")]);
    store.put_subscription(subscription).await.expect("subscription");
    for i in 0..3 {
        let upsert = ContactUpsert {
            id: Some(format!("u{i}")),
            email: Some(format!("person{i}@erase.example")),
            attributes: attrs(json!({"segment": "a"})),
            historical: true,
            ..Default::default()
        };
        store.upsert_contact(upsert, &set, T0).await.expect("upsert");
    }
    let events: Vec<NewEvent> = (0..3).map(|i| page(&format!("p{i}"), &format!("u{i}"), now, "/pricing")).collect();
    store.ingest(events, &set, now).await.expect("ingest");
    evaluate_queue(store.as_ref(), &Vec::new(), &set, now).await;
    assert_eq!(store.sync_step(2, now + 60_000).await.expect("sync"), 2);
    assert_eq!(store.sync_step(2, now + 60_000).await.expect("sync"), 1);
    let bodies = |deliveries: Vec<crate::runner::Delivery>| -> Vec<String> {
        deliveries
            .into_iter()
            .map(|d| match d.channel {
                crate::runner::Channel::Webhook { body, .. } => body,
                other => panic!("a webhook, not {other:?}"),
            })
            .collect()
    };
    let query = crate::runner::DeliveryQuery { limit: 10, ..Default::default() };
    let before = bodies(store.list_deliveries(&query).await.expect("deliveries"));
    assert_eq!(before.len(), 2);
    let alone = before.iter().find(|b| b.matches("@erase.example").count() == 1).expect("a batch of one").clone();
    let (alone_id, pair_ids) = if alone.contains("\"u2\"") { ("u2", ["u0", "u1"]) } else { panic!("u2 is the batch of one: {alone}") };
    assert!(store.delete_contact(pair_ids[0], &crate::ErasureRecord { at: now + 1, by: "key_a".into() }).await.expect("erase"));
    assert!(store.delete_contact(alone_id, &crate::ErasureRecord { at: now + 2, by: "usr_b".into() }).await.expect("erase"));
    let after = bodies(store.list_deliveries(&query).await.expect("deliveries"));
    assert_eq!(after.len(), 1, "the batch that held only the erased contact is gone");
    assert!(!after[0].contains("person0@erase.example") && !after[0].contains("\"u0\""), "{}", after[0]);
    assert!(after[0].contains("person1@erase.example"), "the other contact stays: {}", after[0]);
    let log = store.list_erasures(10).await.expect("log");
    assert_eq!(log, vec![crate::ErasureRecord { at: now + 2, by: "usr_b".into() }, crate::ErasureRecord { at: now + 1, by: "key_a".into() }]);
    assert!(!store.delete_contact("u0", &erasure()).await.expect("erase"), "already gone");
    assert_eq!(store.list_erasures(10).await.expect("log").len(), 2, "nothing erased, nothing logged");
}

/// The audit log keeps every entry, newest first.
pub async fn audit_log_keeps_entries(store: Arc<dyn Store>) {
    for (i, action) in ["PUT", "DELETE"].iter().enumerate() {
        let entry = crate::AuditRecord { at: T0 + i as i64, actor: "key_a".into(), action: (*action).into(), target: "/api/v1/models/b2b".into() };
        store.record_audit(entry).await.expect("record");
    }
    let log = store.list_audit(10).await.expect("list");
    assert_eq!(log.iter().map(|e| (e.at, e.action.as_str())).collect::<Vec<_>>(), vec![(T0 + 1, "DELETE"), (T0, "PUT")]);
    assert_eq!(store.list_audit(1).await.expect("list").len(), 1);
}

/// The `crm` subscription to `score.changed` the CRM tests use (debounced a minute, no
/// secret), mapping each (leadscore field, CRM field) pair.
fn crm_subscription(fields: &[(&str, &str)]) -> crate::runner::Subscription {
    crate::runner::Subscription {
        name: "crm".into(),
        url: "https://crm.example.com/sync".into(),
        secret_ref: None,
        events: vec!["score.changed".into()],
        fields: fields.iter().map(|(from, to)| (from.to_string(), to.to_string())).collect(),
        debounce_ms: 60_000,
        created_at: T0,
        updated_at: T0,
    }
}
