//! The native event parser (`POST /api/v1/events`, NDJSON and CSV imports): one event,
//! and each item of `{"batch": [...]}`, with the check on how far ahead a timestamp may be.

#![no_main]

use std::time::Duration;

use leadscore_app::events::{check_not_ahead, parse_event};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOW: i64 = 1_772_442_000_000;

fuzz_target!(|input: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(input) else { return };
    let items = match value.get("batch").and_then(Value::as_array) {
        Some(batch) => batch.iter().chain([&value]).collect::<Vec<_>>(),
        None => vec![&value],
    };
    for item in items {
        if let Ok(event) = parse_event(item, NOW) {
            let _ = check_not_ahead(event.timestamp, NOW, Duration::from_secs(300));
        }
    }
});
