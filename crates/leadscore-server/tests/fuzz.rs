//! Mutation fuzzing of everything that reads untrusted text (issue 15): the model parser
//! and validator with the scorer on what it accepts, the automation parser, the condition
//! parser and evaluator, the native event parser and the Segment message parser.
//!
//! `cargo fuzz` needs a nightly toolchain, which this project's machines do not have; this
//! harness runs on stable. Each target starts from its corpus (`fuzz/corpus/<target>/`,
//! kept in the repository) and mutates it — bit flips, byte insertions and deletions,
//! repeated ranges, splices of two inputs, and tokens of the formats (quotes, brackets,
//! huge and negative numbers, operators) — for `LEADSCORE_FUZZ_ITERATIONS` inputs each
//! (default 3,000, a short run for CI; `LEADSCORE_FUZZ_ITERATIONS=1000000` for a long one,
//! `LEADSCORE_FUZZ_SEED` to vary it). It is not coverage-guided. An input that panics, or
//! a model the validator accepts that then scores to a number that is not finite, fails
//! the test and is written to `target/fuzz-failures/` to be added to the corpus once fixed.

#![allow(clippy::unwrap_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use leadscore_core::Model;
use leadscore_core::automation::Automation;
use leadscore_core::condition::parse_condition;
use leadscore_core::problems::Problems;
use leadscore_core::scorer::{EventRef, score_contact};
use serde_json::{Map, Value, json};

/// xorshift64*: deterministic, so a failure is reproduced by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces of the formats the mutator inserts whole.
const TOKENS: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    "=",
    ",",
    ":",
    "\n",
    "[[fit]]",
    "[[activity]]",
    "[[bands]]",
    "1e308",
    "-1e308",
    "1e-320",
    "NaN",
    "inf",
    "-0",
    "0",
    "18446744073709551616",
    "null",
    "true",
    "\"\"",
    "\\u0000",
    "\\ud800",
    "é",
    "𝔘",
    "(.*)*",
    "((a+)+)+",
    "\"op\": \"regex\"",
    "\"op\": \"in\"",
    "op = \"between\"",
    "points = ",
    "per = \"0d\"",
    "half_life = \"1ms\"",
    "\"timestamp\": ",
    "\"9999-12-31T23:59:59Z\"",
    "\"1969-01-01T00:00:00Z\"",
    "\"all\": [",
    "\"not\": ",
    "{\"any\": []}",
    "within = \"100000d\"",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, rng.next() as u8),
            2 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let piece = out[start..end].to_vec();
                out.splice(at..at, piece.iter().copied().cycle().take(piece.len() * (1 + rng.below(8))));
            }
            4 => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[cut..]);
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
        }
    }
    out.truncate(64 * 1024);
    out
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> =
        std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).map(|path| (path.clone(), std::fs::read(path).unwrap())).collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    inputs.into_iter().map(|(_, bytes)| bytes).collect()
}

/// Runs `check` on the corpus and its mutants; a panic or an `Err` fails the test with the
/// input saved.
fn iterations() -> usize {
    std::env::var("LEADSCORE_FUZZ_ITERATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(3_000)
}

fn fuzz(target: &str, check: impl Fn(&[u8]) -> Result<(), String>) {
    let iterations = iterations();
    let seed: u64 = std::env::var("LEADSCORE_FUZZ_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or(0x1ead_5c0e);
    let inputs = corpus(target);
    let mut rng = Rng(seed | 1);
    for n in 0..inputs.len() + iterations {
        let input = if n < inputs.len() {
            inputs[n].clone()
        } else {
            let parent = rng.below(inputs.len());
            mutate(&mut rng, &inputs[parent], &inputs)
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let problem = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(problem)) => problem,
            Err(panic) => format!(
                "panicked: {}",
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
            ),
        };
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{target}-{seed}-{n}"));
        std::fs::write(&file, &input).unwrap();
        panic!("{target}: input {n} (seed {seed}) failed: {problem}; saved to {}", file.display());
    }
}

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
    // it accepts, the scorer.
    let trees: Vec<toml::Value> = corpus("model").iter().map(|bytes| toml::from_str(&text(bytes)).unwrap()).collect();
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
