//! The condition parser, and the evaluator on every condition it accepts (against a
//! contact with attributes of every JSON type, and against nothing).

#![no_main]

use std::sync::LazyLock;

use leadscore_core::condition::parse_condition;
use leadscore_core::problems::Problems;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

static ATTRIBUTES: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    let attributes = json!({ "title": "CTO", "size": 120, "country": "DE", "email": "a@b.io", "industry": null, "tags": ["x", 1], "score": 2.5, "active": true, "nested": { "a": 1 } });
    attributes.as_object().cloned().unwrap_or_default()
});
static PROPERTIES: LazyLock<Map<String, Value>> = LazyLock::new(|| json!({ "path": "/pricing", "amount": -3 }).as_object().cloned().unwrap_or_default());

fuzz_target!(|input: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(input) else { return };
    let mut problems = Problems::default();
    if let Some(condition) = parse_condition(&value, "when", &mut problems) {
        let _ = condition.matches(&ATTRIBUTES, &PROPERTIES);
        let _ = condition.matches(&Map::new(), &Map::new());
    }
});
