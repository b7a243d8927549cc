//! Mutation fuzzing of everything that reads untrusted text (issue 15): the model parser
//! and validator with the scorer on what it accepts, the automation parser, the condition
//! parser and evaluator, the native event parser and the Segment message parser.
//!
//! The same targets also run coverage-guided under `cargo +nightly fuzz` (libFuzzer, the
//! project in `fuzz/`; see RELIABILITY.md). This harness is their stable companion, run by
//! the normal test suite. Each target starts from its corpus (`fuzz/corpus/<target>/`,
//! kept in the repository, grown by the libFuzzer runs) and mutates it — bit flips, byte
//! insertions and deletions, repeated ranges, splices of two inputs, and tokens of the formats (quotes, brackets,
//! huge and negative numbers, operators) — for `LEADSCORE_FUZZ_ITERATIONS` inputs each
//! (default 3,000, a short run for CI; `LEADSCORE_FUZZ_ITERATIONS=1000000` for a long one,
//! `LEADSCORE_FUZZ_SEED` to vary it). It is not coverage-guided. An input that panics, or
//! a model the validator accepts that then scores to a number that is not finite, fails
//! the test and is written to `target/fuzz-failures/` to be added to the corpus once fixed.

#![allow(clippy::unwrap_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use leadscore_core::Model;
use leadscore_core::automation::Automation;
use leadscore_core::condition::parse_condition;
use leadscore_core::problems::Problems;
use leadscore_core::scorer::{EventRef, score_contact};
use serde_json::{Map, Value, json};

#[path = "../../../fuzz/harness.rs"]
mod harness;

use harness::{Rng, corpus, fuzz, iterations};

fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

const NOW: i64 = 1_772_442_000_000;

/// Leaves a mutated model may get: the edges of numbers, operators, durations, patterns.
fn leaf(rng: &mut Rng) -> toml::Value {
    let numbers = [0.0, -1.0, 1.0, 0.5, 1e308, -1e308, 1e-320, f64::INFINITY, f64::NAN, 9.007_199_254_740_993e15, -0.0];
    let strings = ["", "eq", "in", "regex", "between", "gte", "lt", "exists", "contains", "(a+)+$", "0d", "1ms", "100000d", "7d", "hot", "é", "x"];
    match rng.below(5) {
        0 => toml::Value::Float(numbers[rng.below(numbers.len())]),
        1 => toml::Value::Integer([0, -1, 1, i64::MAX, i64::MIN, 100_000][rng.below(6)]),
        2 => toml::Value::Boolean(rng.below(2) == 0),
        3 => toml::Value::Array((0..rng.below(4)).map(|_| toml::Value::String(strings[rng.below(strings.len())].into())).collect()),
        _ => toml::Value::String(strings[rng.below(strings.len())].into()),
    }
}

/// Changes one place of a TOML document: a leaf replaced, a key dropped, an array entry
/// repeated or dropped. The syntax stays valid, so the validator is what decides.
fn mutate_tree(rng: &mut Rng, value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) if !table.is_empty() => {
            let keys: Vec<String> = table.keys().cloned().collect();
            let key = &keys[rng.below(keys.len())];
            match rng.below(6) {
                0 => {
                    table.remove(key);
                }
                1 => {
                    table.insert(key.clone(), leaf(rng));
                }
                _ => mutate_tree(rng, table.get_mut(key).unwrap()),
            }
        }
        toml::Value::Array(items) if !items.is_empty() => {
            let i = rng.below(items.len());
            match rng.below(5) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.extend(std::iter::repeat_n(copy, 1 + rng.below(50)));
                }
                _ => mutate_tree(rng, &mut items[i]),
            }
        }
        other => *other = leaf(rng),
    }
}

#[test]
fn model_parser_and_scorer() {
    let attributes: Map<String, Value> =
        json!({ "job_title": "VP Marketing", "company_size": 250, "industry": "software", "country": "US", "x": "a" }).as_object().unwrap().clone();
    let properties: Map<String, Value> = json!({ "path": "/pricing", "form": "quote" }).as_object().unwrap().clone();
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    fuzz("model", |input| {
        let Ok(model) = Model::parse(&text(input)) else { return Ok(()) };
        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let names = ["page", "Form Submitted", "Webinar Attended", "Email Link Clicked"];
        let ids: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
        let events: Vec<EventRef<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| EventRef { timestamp: NOW - (i as i64) * 3_600_000 * 7, message_id: id, name: names[i % names.len()], properties: &properties })
            .collect();
        let card = score_contact(&model, &attributes, &events, NOW);
        if [card.fit, card.activity, card.total].iter().all(|x| x.is_finite()) { Ok(()) } else { Err(format!("an accepted model scored {card:?}")) }
    });
    // Byte mutants mostly test the parser's refusals; these reach the validator and, when
    // it accepts, the scorer. They start from the corpus's TOML models that are valid (most
    // of what libFuzzer kept is not).
    let trees: Vec<toml::Value> = corpus("model")
        .iter()
        .map(|bytes| text(bytes))
        .filter(|source| Model::parse(source).is_ok())
        .filter_map(|source| toml::from_str(&source).ok())
        .collect();
    assert!(!trees.is_empty(), "no valid TOML model in fuzz/corpus/model/");
    let mut rng = Rng(0x5eed_f7ee);
    let before = accepted.load(std::sync::atomic::Ordering::Relaxed);
    let mut checked = 0;
    for _ in 0..iterations() {
        let mut tree = trees[rng.below(trees.len())].clone();
        for _ in 0..=rng.below(2) {
            mutate_tree(&mut rng, &mut tree);
        }
        let Ok(source) = toml::to_string(&tree) else { continue };
        checked += 1;
        if let Ok(model) = Model::parse(&source) {
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let card = catch_unwind(AssertUnwindSafe(|| score_contact(&model, &attributes, &[], NOW)));
            let finite = card.as_ref().is_ok_and(|card| [card.fit, card.activity, card.total].iter().all(|x| x.is_finite()));
            assert!(finite, "an accepted model scored {card:?}:\n{source}");
        }
    }
    let accepted_trees = accepted.into_inner() - before;
    assert!(accepted_trees * 20 > checked, "fewer than 1 in 20 tree mutants are valid models ({accepted_trees} of {checked})");
}

#[test]
fn automation_parser() {
    fuzz("automation", |input| {
        let text = text(input);
        let _ = Automation::parse_file(&text);
        let _ = Automation::parse(&text);
        Ok(())
    });
}

#[test]
fn condition_parser_and_evaluator() {
    let attributes: Map<String, Value> =
        json!({ "title": "CTO", "size": 120, "country": "DE", "email": "a@b.io", "industry": null, "tags": ["x", 1] }).as_object().unwrap().clone();
    let properties: Map<String, Value> = json!({ "path": "/pricing" }).as_object().unwrap().clone();
    fuzz("condition", |input| {
        let Ok(value) = serde_json::from_slice::<Value>(input) else { return Ok(()) };
        let mut problems = Problems::default();
        if let Some(condition) = parse_condition(&value, "when", &mut problems) {
            let _ = condition.matches(&attributes, &properties);
            let _ = condition.matches(&Map::new(), &Map::new());
        }
        Ok(())
    });
}

#[test]
fn native_event_parser() {
    fuzz("event", |input| {
        let Ok(value) = serde_json::from_slice::<Value>(input) else { return Ok(()) };
        let _ = leadscore_app::events::parse_event(&value, NOW);
        if let Some(batch) = value.get("batch").and_then(Value::as_array) {
            for item in batch {
                let _ = leadscore_app::events::parse_event(item, NOW);
            }
        }
        Ok(())
    });
}

#[test]
fn segment_message_parser() {
    let parsed = std::sync::atomic::AtomicUsize::new(0);
    fuzz("segment", |input| {
        let Ok(value) = serde_json::from_slice::<Value>(input) else { return Ok(()) };
        parsed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for kind in [None, Some("track"), Some("page"), Some("identify"), Some("group"), Some("alias")] {
            let _ = leadscore_server::segment::segment_event(&value, kind, value.get("sentAt").and_then(Value::as_str), NOW);
        }
        Ok(())
    });
    assert!(parsed.into_inner() * 20 > iterations(), "fewer than 1 in 20 mutated messages are JSON");
}
