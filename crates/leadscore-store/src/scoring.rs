//! Backend-agnostic scoring steps that every store runs inside its write transaction, so
//! that what is stored and what is scored never disagree.

use leadscore_core::scorer::{EventRef, fold_events};
use leadscore_core::{ActivityState, ScoreCard};
use serde_json::{Map, Value};

use crate::types::{Millis, PublishedModel, ScoreRow};

/// An activity event as the scorer needs it, owned (decoded from the store).
#[derive(Clone, Debug)]
pub struct ScoringEvent {
    pub timestamp: Millis,
    pub message_id: String,
    pub name: String,
    pub properties: Map<String, Value>,
}

impl ScoringEvent {
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

/// The card as of `at` from the contact's events (any order; later ones ignored).
pub fn card_from_events(model: &PublishedModel, attributes: &Map<String, Value>, events: &[ScoringEvent], at: Millis) -> ScoreCard {
    let refs: Vec<EventRef<'_>> = events.iter().map(ScoringEvent::as_ref).collect();
    leadscore_core::scorer::score_contact(&model.model, attributes, &refs, at)
}
