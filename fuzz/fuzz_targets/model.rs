//! The model parser and validator (TOML or JSON, sniffed), and the scorer on every model
//! they accept: an accepted model must score a contact, with and without events, to finite
//! numbers; and renamed as a promotion renames a shadow (`renamed_source`), it must still be
//! accepted and score the same.

#![no_main]

use std::sync::LazyLock;

use leadscore_core::model::renamed_source;
use leadscore_core::scorer::{EventRef, score_contact};
use leadscore_core::{Format, Model};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

const NOW: i64 = 1_772_442_000_000;

static ATTRIBUTES: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    let attributes = json!({ "job_title": "VP Marketing", "company_size": 250, "industry": "software", "country": "US", "x": "a" });
    attributes.as_object().cloned().unwrap_or_default()
});
static PROPERTIES: LazyLock<Map<String, Value>> = LazyLock::new(|| json!({ "path": "/pricing", "form": "quote" }).as_object().cloned().unwrap_or_default());
static IDS: LazyLock<Vec<String>> = LazyLock::new(|| (0..8).map(|i| format!("m{i}")).collect());

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let Ok(model) = Model::parse(text) else { return };
    let names = ["page", "Form Submitted", "Webinar Attended", "Email Link Clicked"];
    let events: Vec<EventRef<'_>> = IDS
        .iter()
        .enumerate()
        .map(|(i, id)| EventRef { timestamp: NOW - (i as i64) * 3_600_000 * 7, message_id: id, name: names[i % names.len()], properties: &PROPERTIES })
        .collect();
    let renamed = renamed_source(text, Format::sniff(text), "renamed").map(|source| Model::parse(&source));
    if let Ok(again) = &renamed {
        assert!(again.is_ok(), "an accepted model, renamed, is refused: {:?}", again.as_ref().err());
    }
    for events in [&events[..], &[]] {
        for attributes in [&*ATTRIBUTES, &Map::new()] {
            let card = score_contact(&model, attributes, events, NOW);
            assert!([card.fit, card.activity, card.total].iter().all(|x| x.is_finite()), "an accepted model scored {card:?}");
            if let Ok(Ok(again)) = &renamed {
                let other = score_contact(again, attributes, events, NOW);
                assert!(
                    [card.fit, card.activity, card.total].map(f64::to_bits) == [other.fit, other.activity, other.total].map(f64::to_bits),
                    "renamed, a model scores {other:?} instead of {card:?}"
                );
            }
        }
    }
});
