//! Backend-agnostic scoring steps that every store runs inside its write transaction, so
//! that what is stored and what is scored never disagree.

use std::borrow::Cow;

use leadscore_core::scorer::{EventRef, fold_events};
use leadscore_core::{ActivityState, Model, ScoreCard};
use serde_json::{Map, Value};

use crate::types::{Millis, PublishedModel, ScannedScore, ScoreRow, StoredEvent};

/// An activity event as the scorer needs it, owned (decoded from the store).
#[derive(Clone, Debug)]
pub struct ScoringEvent {
    pub timestamp: Millis,
    pub message_id: String,
    pub name: String,
    pub properties: Map<String, Value>,
}

impl ScoringEvent {
    /// What scoring reads of stored events (their ids and contacts are not part of it).
    pub fn from_stored(events: &[StoredEvent]) -> Vec<ScoringEvent> {
        events
            .iter()
            .map(|e| ScoringEvent { timestamp: e.timestamp, message_id: e.message_id.clone(), name: e.name.clone(), properties: e.properties.clone() })
            .collect()
    }

    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef { timestamp: self.timestamp, message_id: &self.message_id, name: &self.name, properties: &self.properties }
    }
}

/// "Now" for a stored state: the wall clock, or the newest event if that is later (a
/// client clock running ahead must not make its own events invisible).
pub fn effective_now(state: &ActivityState, now: Millis) -> Millis {
    state.last_event().map_or(now, |(t, _)| t.max(now))
}

/// The score row after folding `events` (in scoring order) from scratch.
pub fn full_score(model: &PublishedModel, attributes: &Map<String, Value>, events: &[ScoringEvent], now: Millis) -> ScoreRow {
    let state = fold_events(&model.model, events.iter().map(ScoringEvent::as_ref), Millis::MAX);
    row_from_state(model, attributes, state, now)
}

fn row_from_state(model: &PublishedModel, attributes: &Map<String, Value>, state: ActivityState, now: Millis) -> ScoreRow {
    let as_of = effective_now(&state, now);
    let activity = state.activity_at(&model.model, as_of).unwrap_or(0.0);
    let card = model.model.card(model.model.fit(attributes), activity);
    ScoreRow { version: model.version, card, state, as_of }
}

/// Brings a contact's score under `model` up to date after `new_events` (in scoring order)
/// were stored. Folds them into the stored state when they all sort after it; otherwise
/// (late events, a new model version, no prior state) replays every event of the contact,
/// which `load_all` returns in scoring order (it includes `new_events`).
pub fn update_score<E>(
    model: &PublishedModel,
    prior: Option<ScoreRow>,
    attributes: &Map<String, Value>,
    new_events: &[ScoringEvent],
    load_all: impl FnOnce() -> Result<Vec<ScoringEvent>, E>,
    now: Millis,
) -> Result<ScoreRow, E> {
    if let Some(prior) = prior.filter(|p| p.version == model.version) {
        let mut state = prior.state;
        let in_order = new_events.first().is_none_or(|first| state.accepts(&first.as_ref()));
        if in_order {
            for event in new_events {
                // In order and unique by construction; a refusal would mean a store bug, and
                // the replay below is the safe answer to it.
                if state.apply(&model.model, &event.as_ref()).is_err() {
                    let all = load_all()?;
                    return Ok(full_score(model, attributes, &all, now));
                }
            }
            return Ok(row_from_state(model, attributes, state, now));
        }
    }
    let all = load_all()?;
    Ok(full_score(model, attributes, &all, now))
}

/// Recomputes fit (and band etc.) after attributes changed, keeping the activity state.
pub fn refresh_fit(model: &PublishedModel, row: ScoreRow, attributes: &Map<String, Value>, now: Millis) -> ScoreRow {
    row_from_state(model, attributes, row.state, now)
}

/// The card as of `at` from a stored row, or None when `at` is before the newest event
/// folded into it (then the caller replays events up to `at`).
pub fn card_at(model: &PublishedModel, row: &ScoreRow, attributes: &Map<String, Value>, at: Millis) -> Option<ScoreCard> {
    let activity = row.state.activity_at(&model.model, at)?;
    Some(model.model.card(model.model.fit(attributes), activity))
}

/// Whether a model's activity moves with time alone (half-life, expiry, the inactivity
/// penalty). When it does not, a stored card is also the card as of any later instant.
pub fn moves_with_time(model: &Model) -> bool {
    !model.decay.is_none()
}

/// The card as of `now` (never before the row's `as_of`) of a row read by
/// [`crate::ContactStore::scan_scores`]: what [`card_at`] gives for the contact, without
/// reading its attributes. Fit depends only on the attributes and the model version, and
/// a row of the live version holds that fit (every attribute change rescores it), so
/// only activity is recomputed, and only when it [`moves_with_time`] (the scan must then
/// be asked for the states). None when the row is not of `model`'s version.
pub fn scanned_card_at<'a>(model: &PublishedModel, row: &'a ScannedScore, now: Millis) -> Option<Cow<'a, ScoreCard>> {
    if row.version != model.version {
        return None;
    }
    if !moves_with_time(&model.model) {
        return Some(Cow::Borrowed(&row.card));
    }
    debug_assert!(row.state.is_some(), "scan_scores must read the states of a model whose activity moves with time");
    let activity = row.state.as_ref().and_then(|state| state.activity_at(&model.model, now.max(row.as_of)));
    Some(match activity {
        Some(activity) => Cow::Owned(model.model.card(row.card.fit, activity)),
        None => Cow::Borrowed(&row.card),
    })
}

/// The card as of `at` from the contact's events (any order; later ones ignored).
pub fn card_from_events(model: &PublishedModel, attributes: &Map<String, Value>, events: &[ScoringEvent], at: Millis) -> ScoreCard {
    let refs: Vec<EventRef<'_>> = events.iter().map(ScoringEvent::as_ref).collect();
    leadscore_core::scorer::score_contact(&model.model, attributes, &refs, at)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HOUR: Millis = 3_600_000;
    const T0: Millis = 1_767_225_600_000;

    const FIT_AND_CLICKS: &str = r#"
name = "m"
flames = [10, 30]
grades = { A = 20, B = 10, C = 5 }
quadrant = { fit = 15, activity = 10 }
[[bands]]
name = "hot"
min = 30
[[bands]]
name = "cold"
[[fit]]
name = "title"
when = { attribute = "title", op = "eq", value = "CTO" }
points = 20.333
[[activity]]
name = "click"
event = "click"
points = 7.777
"#;

    fn published(extra: &str) -> PublishedModel {
        let text = format!("{extra}\n{FIT_AND_CLICKS}");
        PublishedModel::live("m", 3, Model::parse(&text).expect("test model parses"))
    }

    fn scanned(row: &ScoreRow, with_state: bool) -> ScannedScore {
        ScannedScore {
            contact_id: "c".into(),
            version: row.version,
            card: row.card.clone(),
            as_of: row.as_of,
            state: with_state.then(|| leadscore_core::DecayView::from(&row.state)),
            attribute: None,
        }
    }

    /// The scanned card equals `card_at` with the attributes, at every later instant, for
    /// models whose activity decays, expires, loses points when idle, or stays put.
    #[test]
    fn scanned_card_is_card_at() {
        let attributes: Map<String, Value> = json!({"title": "CTO"}).as_object().cloned().expect("object");
        let events: Vec<ScoringEvent> =
            (0..5).map(|i| ScoringEvent { timestamp: T0 + i * 5 * HOUR, message_id: format!("m{i}"), name: "click".into(), properties: Map::new() }).collect();
        for (extra, moves) in [
            ("decay = { half_life = \"1d\", inactivity = { points = 2, every = \"1d\" } }", true),
            ("decay = { expire_after = \"2d\" }", true),
            ("decay = { inactivity = { points = 3, every = \"12h\" } }", true),
            ("", false),
        ] {
            let model = published(extra);
            assert_eq!(moves_with_time(&model.model), moves, "{extra:?}");
            let row = full_score(&model, &attributes, &events, T0 + 30 * HOUR);
            let scan = scanned(&row, moves);
            for at in [T0, T0 + 30 * HOUR, T0 + 31 * HOUR, T0 + 3 * 24 * HOUR, T0 + 40 * 24 * HOUR] {
                let expected = card_at(&model, &row, &attributes, at.max(row.as_of)).unwrap_or_else(|| row.card.clone());
                let got = scanned_card_at(&model, &scan, at).expect("live version");
                assert_eq!(*got, expected, "{extra:?} at +{}h", (at - T0) / HOUR);
            }
            let moved = scanned_card_at(&model, &scan, T0 + 40 * 24 * HOUR).expect("live version").into_owned();
            assert_eq!(moved != row.card, moves, "{extra:?}: the card moves with time only if the model decays");
            let old = ScannedScore { version: 2, ..scan };
            assert!(scanned_card_at(&model, &old, T0).is_none(), "a row of another version is not counted");
        }
    }
}
