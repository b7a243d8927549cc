//! The Segment message parser: a single call of every type (the type from the endpoint),
//! and a batch (`{"batch": [...], "sentAt"}`) read as `/v1/batch` reads it: each message
//! with the batch's `sentAt` for the clock-skew correction, then the check on how far
//! ahead its timestamp may be.

#![no_main]

use std::time::Duration;

use leadscore_app::events::check_not_ahead;
use leadscore_server::segment::segment_event;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOW: i64 = 1_772_442_000_000;

fuzz_target!(|input: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(input) else { return };
    for kind in [None, Some("track"), Some("page"), Some("screen"), Some("identify"), Some("group"), Some("alias")] {
        let _ = segment_event(&value, kind, value.get("sentAt").and_then(Value::as_str), NOW);
    }
    if let Some(messages) = value.get("batch").and_then(Value::as_array) {
        let sent_at = value.get("sentAt").and_then(Value::as_str);
        for message in messages {
            if let Ok(event) = segment_event(message, None, sent_at, NOW) {
                let _ = check_not_ahead(event.timestamp, NOW, Duration::from_secs(300));
            }
        }
    }
});
