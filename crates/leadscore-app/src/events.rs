//! Ingest in the native shape (`POST /api/v1/events`, imports): each event is checked on
//! its own, and the good ones are stored, scored and run through the automations before
//! the caller answers.

use leadscore_store::{EventKind, Identity, IdentityTrust, IngestOptions, IngestOutcome, IngestStatus, Millis, NewEvent};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::Engine;
use crate::time::{format_time, parse_time};

/// Top-level fields of the Segment shape; any other top-level field is kept in `properties`.
const KNOWN_FIELDS: &[&str] = &[
    "messageId",
    "type",
    "event",
    "name",
    "userId",
    "anonymousId",
    "email",
    "properties",
    "traits",
    "timestamp",
    "context",
    "sentAt",
    "receivedAt",
    "originalTimestamp",
    "integrations",
    "writeKey",
    "channel",
    "version",
];

/// Parses one event of the Segment shape. `now` fills a missing timestamp.
pub fn parse_event(value: &Value, now: Millis) -> Result<NewEvent, String> {
    let Some(object) = value.as_object() else {
        return Err("an event must be a JSON object".into());
    };
    let string = |key: &str| -> Result<Option<String>, String> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) if s.len() > 256 => Err(format!("`{key}` is longer than 256 characters")),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if key == "userId" || key == "anonymousId" => Ok(Some(n.to_string())),
            Some(other) => Err(format!("`{key}` must be a string, got {other}")),
        }
    };
    let object_field = |key: &str| -> Result<Map<String, Value>, String> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(other) => Err(format!("`{key}` must be an object, got {other}")),
        }
    };
    let kind_text = string("type")?;
    let event_name = string("event")?;
    let kind = match kind_text.as_deref() {
        Some(t) => EventKind::parse(t).ok_or_else(|| format!("unknown type {t:?}; use track, page, screen or identify"))?,
        None if event_name.is_some() => EventKind::Track,
        None => return Err("`type` is missing (track, page, screen or identify)".into()),
    };
    let mut properties = object_field("properties")?;
    let traits = object_field("traits")?;
    let name = match kind {
        EventKind::Track => event_name.ok_or("a track event needs `event` (its name)")?,
        EventKind::Page | EventKind::Screen => {
            if let Some(page_name) = string("name")? {
                properties.entry("name").or_insert(Value::String(page_name));
            }
            kind.as_str().to_string()
        }
        EventKind::Identify => "identify".to_string(),
    };
    for (key, value) in object {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            properties.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    let email = string("email")?.or_else(|| traits.get("email").and_then(Value::as_str).map(str::to_string));
    if let Some(email) = &email {
        leadscore_core::email::check_email(email)?;
    }
    let identity = Identity { user_id: string("userId")?, email, anonymous_id: string("anonymousId")? };
    if identity.user_id.is_none() && identity.email.is_none() && identity.anonymous_id.is_none() {
        return Err("an event needs `userId`, `email` or `anonymousId`".into());
    }
    let timestamp = match object.get("timestamp") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => parse_time(s)?,
        Some(other) => {
            return Err(format!("`timestamp` must be an RFC 3339 string, got {other}"));
        }
    };
    let context = object.get("context").filter(|c| !c.is_null()).cloned();
    let message_id = match string("messageId")? {
        Some(id) => id,
        // Without a messageId, the content and the instant decide: the same event sent
        // twice is one event. The instant counts even when the server assigned it, so
        // two real page views without ids or timestamps stay two.
        None => {
            let mut hasher = Sha256::new();
            hasher.update(value.to_string().as_bytes());
            hasher.update(timestamp.to_be_bytes());
            format!("h_{}", &hex::encode(hasher.finalize())[..32])
        }
    };
    Ok(NewEvent { message_id, identity, kind, name, properties, traits, context, timestamp })
}

/// Refuses an event stamped more than `max_ahead` after `now`. A sender's clock running a
/// little fast is normal (reads already treat "now" as at least the newest event), but a
/// timestamp like `2099-01-01` would sort after every real event and never decay.
pub fn check_not_ahead(timestamp: Millis, now: Millis, max_ahead: std::time::Duration) -> Result<(), String> {
    let max_ahead_ms = Millis::try_from(max_ahead.as_millis()).unwrap_or(Millis::MAX);
    if timestamp.saturating_sub(now) <= max_ahead_ms {
        return Ok(());
    }
    Err(format!(
        "timestamp {} is more than {} ahead of the server's clock ({}); check the sender's clock (LEADSCORE_MAX_FUTURE_SKEW sets how far ahead is accepted)",
        format_time(timestamp),
        leadscore_core::Span::from_millis(max_ahead_ms),
        format_time(now)
    ))
}

/// A batch checked event by event: the good events with their index in the batch, and
/// why each of the others was refused.
#[derive(Debug, Default)]
pub struct CheckedBatch {
    pub events: Vec<NewEvent>,
    pub indexes: Vec<usize>,
    pub rejected: Vec<Rejected>,
}

/// A message of a batch that was refused, by its index in the batch, and why (the others
/// are stored).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

/// Checks each item of a batch: the native shape, and a timestamp not far ahead of now.
pub fn check_batch(engine: &Engine, items: &[Value], now: Millis) -> CheckedBatch {
    let mut checked = CheckedBatch { events: Vec::with_capacity(items.len()), indexes: Vec::with_capacity(items.len()), rejected: Vec::new() };
    for (index, item) in items.iter().enumerate() {
        match parse_event(item, now).and_then(|event| check_not_ahead(event.timestamp, now, engine.config.max_future_skew).map(|()| event)) {
            Ok(event) => {
                checked.events.push(event);
                checked.indexes.push(index);
            }
            Err(reason) => checked.rejected.push(Rejected { index, reason }),
        }
    }
    checked
}

/// Stores and scores events (duplicates are answered as such), then evaluates the
/// automations of the contacts they touched. The outcomes are in the events' order; `api`
/// labels the ingest counters (`native`, `segment`); `trust` says whether the sender may
/// change who a known contact is (`leadscore_store::records::identity`).
pub async fn ingest(
    engine: &Engine,
    events: Vec<NewEvent>,
    now: Millis,
    api: &'static str,
    trust: IdentityTrust,
) -> Result<Vec<IngestOutcome>, leadscore_store::StoreError> {
    let options = IngestOptions { fire_automations: true, trust };
    let ingested = if events.is_empty() { Default::default() } else { engine.store.ingest_events(events, &engine.models(), now, options).await? };
    crate::runtime::after_ingest(engine, &ingested.contacts).await;
    let outcomes = ingested.outcomes;
    let stored = outcomes.iter().filter(|o| o.status == IngestStatus::Stored).count();
    let duplicates = (outcomes.len() - stored) as u64;
    if api == "native" {
        metrics::counter!("leadscore_events_ingested_total").increment(stored as u64);
        metrics::counter!("leadscore_events_duplicate_total").increment(duplicates);
    } else {
        metrics::counter!("leadscore_events_ingested_total", "api" => api).increment(stored as u64);
        metrics::counter!("leadscore_events_duplicate_total", "api" => api).increment(duplicates);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_segment_shape() {
        let e =
            parse_event(&json!({"type": "page", "userId": "u1", "properties": {"path": "/pricing"}, "timestamp": "2026-01-01T00:00:00Z", "plan": "pro"}), 5)
                .unwrap();
        assert_eq!(e.name, "page");
        assert_eq!(e.properties["path"], "/pricing");
        assert_eq!(e.properties["plan"], "pro", "unknown fields are kept in properties");
        assert_eq!(e.timestamp, 1_767_225_600_000);
        assert!(e.message_id.starts_with("h_"));
        let e = parse_event(&json!({"event": "Signed Up", "email": "A@B.com"}), 5).unwrap();
        assert_eq!((e.kind, e.timestamp, e.identity.email.as_deref()), (EventKind::Track, 5, Some("A@B.com")));
        let same = parse_event(&json!({"event": "Signed Up", "email": "A@B.com"}), 5).unwrap();
        let later = parse_event(&json!({"event": "Signed Up", "email": "A@B.com"}), 6).unwrap();
        assert_eq!(e.message_id, same.message_id, "a resent event is the same event");
        assert_ne!(e.message_id, later.message_id, "a new event without id or timestamp is a new event");
    }

    #[test]
    fn explains_what_is_wrong() {
        let cases = [
            (json!([1]), "must be a JSON object"),
            (json!({"type": "track", "userId": "u"}), "needs `event`"),
            (json!({"type": "bogus", "userId": "u"}), "unknown type"),
            (json!({"event": "x"}), "needs `userId`"),
            (json!({"event": "x", "userId": "u", "timestamp": "2026-01-01T00:00:00"}), "no time zone"),
            (json!({"event": "x", "userId": "u", "timestamp": 17}), "RFC 3339"),
            (json!({"event": "x", "userId": "u", "properties": [1]}), "`properties` must be an object"),
            (json!({"event": 5, "userId": "u"}), "`event` must be a string"),
            (json!({"event": "x", "email": "not an email"}), "is not an email address"),
            (json!({"type": "identify", "userId": "u", "traits": {"email": "n/a"}}), "is not an email address"),
        ];
        for (value, expect) in cases {
            let err = parse_event(&value, 0).unwrap_err();
            assert!(err.contains(expect), "{value}: {err}");
        }
    }

    #[test]
    fn refuses_timestamps_far_ahead() {
        let day = std::time::Duration::from_secs(86_400);
        assert!(check_not_ahead(1_000, 1_000 + 5, day).is_ok(), "the past is fine");
        assert!(check_not_ahead(86_400_000, 0, day).is_ok(), "exactly the skew is fine");
        let err = check_not_ahead(86_400_001, 0, day).unwrap_err();
        assert!(err.contains("more than 1d ahead") && err.contains("LEADSCORE_MAX_FUTURE_SKEW"), "{err}");
    }
}
