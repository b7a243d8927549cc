//! Issue 15.4: erased values stayed readable in the SQLite file and its write-ahead log
//! (no `secure_delete`, no checkpoint). After an erasure neither holds them.

use std::sync::Arc;

use leadscore_store::{ContactStore, ContactUpsert, ErasureRecord, EventKind, EventStore, Identity, NewEvent};
use leadscore_store_sqlite::SqliteStore;
use serde_json::{Map, Value, json};

const T0: i64 = 1_772_442_000_000;

fn bytes_hold(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the data directory") {
        let path = entry.expect("an entry").path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_values_are_gone_from_the_file_and_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open_dir(dir.path()).expect("open"));
    let email = "vanishing.person.7f3a@erase.example";
    let secret = "secret-note-9c1e5b";
    let mut attributes = Map::new();
    attributes.insert("note".into(), json!(secret));
    let upsert = ContactUpsert { id: Some("gone".into()), email: Some(email.into()), attributes, ..ContactUpsert::default() };
    store.upsert_contact(upsert, &Vec::new(), T0).await.expect("upsert");
    // Neighbours, so the erased rows share pages with rows that stay.
    for i in 0..200 {
        let upsert = ContactUpsert { id: Some(format!("stay{i:03}")), email: Some(format!("stay{i}@keep.example")), ..ContactUpsert::default() };
        store.upsert_contact(upsert, &Vec::new(), T0).await.expect("upsert");
    }
    let mut properties = Map::new();
    properties.insert("path".into(), Value::String(format!("/pricing?ref={secret}")));
    let event = NewEvent {
        message_id: "m1".into(),
        identity: Identity { user_id: Some("gone".into()), email: None, anonymous_id: None },
        kind: EventKind::Page,
        name: "page".into(),
        properties,
        traits: Map::new(),
        context: None,
        timestamp: T0,
    };
    store.ingest(vec![event], &Vec::new(), T0).await.expect("ingest");
    assert!(!bytes_hold(dir.path(), email).is_empty(), "the test must see the address before the erasure");

    assert!(store.delete_contact("gone", &ErasureRecord { at: T0 + 1, by: "key_admin".into() }).await.expect("erase"));
    for needle in [email, secret] {
        let found = bytes_hold(dir.path(), needle);
        assert!(found.is_empty(), "{needle:?} is still in {found:?}");
    }
    assert!(!bytes_hold(dir.path(), "stay7@keep.example").is_empty(), "the other contacts are still there");
}
