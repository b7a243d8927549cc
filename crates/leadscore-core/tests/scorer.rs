//! The scoring semantics of PRODUCT.md §2, on small hand-checked cases, and property tests
//! for order independence, idempotency and incremental = full scoring.

#![allow(clippy::unwrap_used)]

use leadscore_core::duration::{DAY_MS, HOUR_MS};
use leadscore_core::scorer::{ActivityState, EventRef, activity_history, first_crossing, fold_events, normalize_events, score_contact};
use leadscore_core::{DecayView, Model, ScoreCard};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const T0: i64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
struct Ev {
    ts: i64,
    id: String,
    name: String,
    props: Map<String, Value>,
}

fn ev(ts: i64, id: &str, name: &str, props: Value) -> Ev {
    Ev { ts, id: id.to_string(), name: name.to_string(), props: props.as_object().cloned().unwrap_or_default() }
}

fn refs(events: &[Ev]) -> Vec<EventRef<'_>> {
    events.iter().map(|e| EventRef { timestamp: e.ts, message_id: &e.id, name: &e.name, properties: &e.props }).collect()
}

fn model(text: &str) -> Model {
    Model::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn attrs(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn activity(m: &Model, events: &[Ev], at: i64) -> f64 {
    score_contact(m, &Map::new(), &refs(events), at).activity
}

const BASIC: &str = r#"
name = "t"
[[activity]]
name = "pricing"
event = "page"
when = { property = "path", op = "starts_with", value = "/pricing" }
points = 25
limit = { count = 1, per = "1d" }
[[activity]]
name = "features x3"
event = "page"
when = { property = "path", op = "starts_with", value = "/features" }
frequency = { count = 3, within = "1d" }
points = 15
[[activity]]
name = "careers"
event = "page"
when = { property = "path", op = "starts_with", value = "/careers" }
points = -10
[[activity]]
name = "any page"
event = "page"
points = 1
"#;

#[test]
fn limit_window_is_half_open() {
    let m = model(BASIC);
    let p = json!({"path": "/pricing"});
    // Second visit exactly one day later: the first award is at t - per, outside (t - per, t].
    let events = [ev(T0, "a", "page", p.clone()), ev(T0 + DAY_MS - 1, "b", "page", p.clone()), ev(T0 + DAY_MS, "c", "page", p)];
    // pricing: awarded at T0 and at T0+1d (not at T0+1d-1ms); any page: 3.
    assert_eq!(activity(&m, &events, T0 + 2 * DAY_MS), 25.0 * 2.0 + 3.0);
}

#[test]
fn frequency_uses_up_matches() {
    let m = model(BASIC);
    let f = json!({"path": "/features/x"});
    let mut events: Vec<Ev> = (0..7).map(|i| ev(T0 + i * HOUR_MS, &format!("f{i}"), "page", f.clone())).collect();
    // 7 matches in a day: awards at the 3rd and 6th.
    assert_eq!(activity(&m, &events, T0 + DAY_MS), 15.0 * 2.0 + 7.0);
    // A match whose earlier two fell out of the window does not award.
    events.clear();
    events.push(ev(T0, "a", "page", f.clone()));
    events.push(ev(T0 + HOUR_MS, "b", "page", f.clone()));
    events.push(ev(T0 + DAY_MS + HOUR_MS, "c", "page", f.clone()));
    assert_eq!(activity(&m, &events, T0 + 3 * DAY_MS), 3.0);
    // ... and exactly at the window edge (T0 + 1d) the first one is out.
    events.clear();
    events.push(ev(T0, "a", "page", f.clone()));
    events.push(ev(T0 + 1, "b", "page", f.clone()));
    events.push(ev(T0 + DAY_MS, "c", "page", f.clone()));
    assert_eq!(activity(&m, &events, T0 + 3 * DAY_MS), 3.0);
    events.push(ev(T0 + DAY_MS, "d", "page", f));
    assert_eq!(activity(&m, &events, T0 + 3 * DAY_MS), 15.0 + 4.0);
}

#[test]
fn negative_points_and_event_name() {
    let m = model(BASIC);
    let events = [ev(T0, "a", "page", json!({"path": "/careers"})), ev(T0 + 1, "b", "Careers", json!({"path": "/careers"}))];
    assert_eq!(activity(&m, &events, T0 + 10), -9.0);
}

#[test]
fn ties_are_broken_by_message_id() {
    let m = model(BASIC);
    let p = json!({"path": "/pricing"});
    let a = [ev(T0, "b", "page", p.clone()), ev(T0, "a", "page", p.clone())];
    let steps = activity_history(
        &m,
        {
            let mut r = refs(&a);
            normalize_events(&mut r);
            r
        },
        T0,
    );
    assert_eq!(steps[0].message_id, "a");
    assert_eq!(steps[0].rule, "pricing");
    assert!(steps.iter().filter(|s| s.rule == "pricing").count() == 1);
}

#[test]
fn half_life_decay_and_rounding() {
    let m = model(
        r#"
name = "d"
decay = { half_life = "10d" }
[[activity]]
name = "w"
event = "Webinar Attended"
points = 15
"#,
    );
    let events = [ev(T0, "a", "Webinar Attended", json!({}))];
    assert_eq!(activity(&m, &events, T0), 15.0);
    assert_eq!(activity(&m, &events, T0 + 10 * DAY_MS), 7.5);
    assert_eq!(activity(&m, &events, T0 + 20 * DAY_MS), 3.75);
    // 15 * 0.5^(1/3) = 11.905507...
    assert_eq!(activity(&m, &events, T0 + 10 * DAY_MS / 3), 11.91);
}

#[test]
fn expire_after_is_half_open() {
    let m = model(
        r#"
name = "d"
decay = { expire_after = "90d" }
[[activity]]
name = "w"
event = "x"
points = 15
"#,
    );
    let events = [ev(T0, "a", "x", json!({})), ev(T0 + 50 * DAY_MS, "b", "x", json!({}))];
    assert_eq!(activity(&m, &events, T0 + 90 * DAY_MS - 1), 30.0);
    assert_eq!(activity(&m, &events, T0 + 90 * DAY_MS), 15.0);
    assert_eq!(activity(&m, &events, T0 + 140 * DAY_MS), 0.0);
}

#[test]
fn inactivity_penalty_floors_at_zero_and_spares_negatives() {
    let m = model(
        r#"
name = "d"
decay = { inactivity = { points = 5, every = "7d" } }
[[activity]]
name = "w"
event = "x"
points = 12
[[activity]]
name = "u"
event = "Unsubscribed"
points = -30
[[activity]]
name = "other"
event = "y"
points = 0
"#,
    );
    let events = [ev(T0, "a", "x", json!({}))];
    assert_eq!(activity(&m, &events, T0 + 7 * DAY_MS - 1), 12.0);
    assert_eq!(activity(&m, &events, T0 + 7 * DAY_MS), 7.0);
    assert_eq!(activity(&m, &events, T0 + 14 * DAY_MS), 2.0);
    assert_eq!(activity(&m, &events, T0 + 21 * DAY_MS), 0.0);
    // Any event, even one that earns nothing, resets the idle clock.
    let events = [ev(T0, "a", "x", json!({})), ev(T0 + 13 * DAY_MS, "b", "y", json!({}))];
    assert_eq!(activity(&m, &events, T0 + 14 * DAY_MS), 12.0);
    let events = [ev(T0, "a", "Unsubscribed", json!({}))];
    assert_eq!(activity(&m, &events, T0 + 70 * DAY_MS), -30.0);
}

#[test]
fn example_model_bands_flames_grade_quadrant() {
    let m = model(leadscore_core::model::EXAMPLE_MODEL_TOML);
    let a = attrs(json!({"job_title": "CTO", "company_size": "250", "email": "x@acme.com", "product_interest": "platform"}));
    assert_eq!(m.fit(&a), 30.0);
    let quote = ev(T0, "q", "Form Submitted", json!({"form": "quote"}));
    let pricing = ev(T0 + 1, "p", "page", json!({"path": "/pricing/enterprise"}));
    let webinar = ev(T0 + 2, "w", "Webinar Attended", json!({}));
    let all = [quote, pricing, webinar];
    let card = score_contact(&m, &a, &refs(&all), T0 + 2);
    assert_eq!(
        card,
        ScoreCard {
            fit: 30.0,
            activity: 90.0,
            total: 120.0,
            band: Some("hot".into()),
            flames: 5,
            grade: Some("B".into()),
            quadrant: Some("sales-ready".into()),
        }
    );
    let student = attrs(json!({"job_title": "Student", "email": "s@rivalcorp.com"}));
    let card = score_contact(&m, &student, &[], T0);
    assert_eq!(
        (card.fit, card.band.as_deref(), card.flames, card.grade.as_deref(), card.quadrant.as_deref()),
        (-120.0, Some("cold"), 0, Some("D"), Some("unqualified"))
    );
    assert!(!m.applies_to(&attrs(json!({"product_interest": "services"}))));
    // The segment is "the platform, or no product interest known" (PRODUCT.md §2).
    assert!(m.applies_to(&Map::new()));
    assert!(m.applies_to(&attrs(json!({"product_interest": "platform"}))));
    let why = m.why_not_applies(&attrs(json!({"product_interest": "services", "job_title": "CTO"}))).unwrap();
    assert_eq!(why, "it applies only where product_interest eq \"platform\" or product_interest not_exists; this contact's product_interest is \"services\"");
    assert_eq!(m.why_not_applies(&Map::new()), None);
}

#[test]
fn reads_in_the_past_need_a_replay() {
    let m = model(BASIC);
    let events = [ev(T0, "a", "page", json!({"path": "/x"})), ev(T0 + 10, "b", "page", json!({"path": "/x"}))];
    let state = fold_events(&m, refs(&events), i64::MAX);
    assert_eq!(state.activity_at(&m, T0 + 5), None);
    assert_eq!(activity(&m, &events, T0 + 5), 1.0);
}

#[test]
fn out_of_order_events_are_refused_by_the_state() {
    let m = model(BASIC);
    let events = [ev(T0 + 10, "b", "page", json!({})), ev(T0, "a", "page", json!({}))];
    let r = refs(&events);
    let mut state = ActivityState::new(&m);
    assert!(state.apply(&m, &r[0]).is_ok());
    assert!(state.apply(&m, &r[1]).is_err());
    assert!(state.apply(&m, &r[0]).is_err(), "a repeat is refused too");
}

// ---- property tests ----

const DECAYING: &str = r#"
name = "p"
[decay]
half_life = "3d"
expire_after = "20d"
inactivity = { points = 2, every = "2d" }
[[activity]]
name = "pricing"
event = "page"
when = { property = "path", op = "eq", value = "/pricing" }
points = 7
limit = { count = 2, per = "1d" }
[[activity]]
name = "features"
event = "page"
when = { property = "path", op = "eq", value = "/features" }
frequency = { count = 2, within = "12h" }
points = 5
limit = { count = 1, per = "2d" }
[[activity]]
name = "bad"
event = "bad"
points = -4
"#;

fn arb_events() -> impl Strategy<Value = Vec<Ev>> {
    let one = (0i64..40 * 24, 0usize..4, 0u32..1000).prop_map(|(hour, kind, salt)| {
        let (name, path) = [("page", "/pricing"), ("page", "/features"), ("bad", ""), ("page", "/other")][kind];
        // Coarse timestamps make ties (broken by messageId) frequent.
        ev(T0 + hour * HOUR_MS, &format!("m{salt:04}-{hour}"), name, json!({ "path": path }))
    });
    proptest::collection::vec(one, 0..60)
}

fn full_score(m: &Model, events: &[Ev], at: i64) -> f64 {
    activity(m, events, at)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn shuffled_and_duplicated_streams_score_the_same(events in arb_events(), seed in any::<u64>(), at_day in 0i64..60) {
        for text in [BASIC, DECAYING] {
            let m = model(text);
            let at = T0 + at_day * DAY_MS;
            let expect = full_score(&m, &events, at);
            // Shuffle deterministically and duplicate some events.
            let mut mixed: Vec<Ev> = events.iter().map(|e| ev(e.ts, &e.id, &e.name, Value::Object(e.props.clone()))).collect();
            for (i, e) in events.iter().enumerate() {
                if (seed >> (i % 64)) & 1 == 1 {
                    mixed.push(ev(e.ts, &e.id, &e.name, Value::Object(e.props.clone())));
                }
            }
            let mut rng = seed | 1;
            for i in (1..mixed.len()).rev() {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                mixed.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(full_score(&m, &mixed, at), expect);
        }
    }

    #[test]
    fn incremental_equals_full(events in arb_events(), split in 0usize..60) {
        for text in [BASIC, DECAYING] {
            let m = model(text);
            let mut sorted = refs(&events);
            normalize_events(&mut sorted);
            let at = sorted.last().map_or(T0, |e| e.timestamp) + 5 * DAY_MS;
            let full = fold_events(&m, sorted.iter().copied(), i64::MAX);
            // Fold the first part, serialize the state as the store does, then the rest.
            let split = split.min(sorted.len());
            let first = fold_events(&m, sorted[..split].iter().copied(), i64::MAX);
            let mut state: ActivityState = serde_json::from_str(&serde_json::to_string(&first).unwrap()).unwrap();
            for e in &sorted[split..] {
                prop_assert!(state.apply(&m, e).is_ok());
            }
            prop_assert_eq!(&state, &full);
            prop_assert_eq!(state.activity_at(&m, at), full.activity_at(&m, at));
        }
    }

    /// The decay view parsed from a stored state reads the same activity as the state,
    /// at every instant, for a model with half-life, expiry and inactivity, and one without.
    #[test]
    fn decay_view_reads_the_same_activity(events in arb_events(), later_hours in proptest::collection::vec(0i64..60 * 24, 1..8)) {
        let half_life_only = "name = \"h\"\ndecay = { half_life = \"2d\", inactivity = { points = 1, every = \"1d\" } }\n[[activity]]\nname = \"any\"\nevent = \"page\"\npoints = 3\n";
        for text in [BASIC, DECAYING, half_life_only] {
            let m = model(text);
            let mut sorted = refs(&events);
            normalize_events(&mut sorted);
            // Both parsed from the stored JSON, as the store reads them.
            let stored = serde_json::to_string(&fold_events(&m, sorted.iter().copied(), i64::MAX)).expect("serializes");
            let state: ActivityState = serde_json::from_str(&stored).expect("state parses");
            let view: DecayView = serde_json::from_str(&stored).expect("view parses");
            prop_assert_eq!(&view, &DecayView::from(&state));
            for hours in &later_hours {
                let at = T0 + hours * HOUR_MS;
                prop_assert_eq!(view.activity_at(&m, at), state.activity_at(&m, at));
            }
        }
    }

    /// The first crossing into a band is what the history's steps show: the first award
    /// in the window that takes the total from below the line to it or above.
    #[test]
    fn first_crossing_follows_the_history(events in arb_events(), fit in -5.0f64..10.0, line in 1.0f64..30.0, from_day in 0i64..30, days in 1i64..30) {
        for text in [BASIC, DECAYING] {
            let m = model(text);
            let mut sorted = refs(&events);
            normalize_events(&mut sorted);
            let (from, to) = (T0 + from_day * DAY_MS, T0 + (from_day + days) * DAY_MS);
            let mut above = false;
            let mut expected = None;
            for step in activity_history(&m, sorted.iter().copied(), i64::MAX) {
                let now_above = leadscore_core::scorer::round2(fit + step.activity) >= line;
                if now_above && !above && step.timestamp >= from && step.timestamp < to {
                    expected = Some(step.timestamp);
                    break;
                }
                above = now_above;
            }
            prop_assert_eq!(first_crossing(&m, fit, sorted.iter().copied(), line, from, to), expected);
        }
    }

    #[test]
    fn history_points_add_up_without_decay(events in arb_events()) {
        let m = model(BASIC);
        let mut sorted = refs(&events);
        normalize_events(&mut sorted);
        let steps = activity_history(&m, sorted.iter().copied(), i64::MAX);
        let sum: f64 = steps.iter().map(|s| s.points).sum();
        prop_assert_eq!(sum, full_score(&m, &events, i64::MAX / 2));
    }
}
