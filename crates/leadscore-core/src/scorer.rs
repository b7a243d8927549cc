//! The scorer: score = f(model, attributes, events, at). Pure: no IO, no clock.
//!
//! Activity is computed by folding a contact's events, in event order (timestamp, then
//! messageId), into an [`ActivityState`]. The state holds exactly what later events and
//! later reads need (recent award times per `limit`, unused matches per `frequency`, the
//! decaying sum), so an in-order event costs O(rules). An event that sorts before the
//! newest folded one cannot be folded: the caller replays the contact's events from the
//! start ([`ScoreError::OutOfOrder`]). Full scoring is the same fold from an empty
//! state, which is why incremental and full scoring agree exactly.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::Model;

/// One event as the scorer sees it. `timestamp` is milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub struct EventRef<'a> {
    pub timestamp: i64,
    pub message_id: &'a str,
    pub name: &'a str,
    pub properties: &'a Map<String, Value>,
}

impl EventRef<'_> {
    fn key(&self) -> (i64, &str) {
        (self.timestamp, self.message_id)
    }
}

/// Points given by one activity rule for one event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Award {
    pub rule: usize,
    pub points: f64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    #[error("the event sorts before (or equal to) the newest event already scored; replay the contact")]
    OutOfOrder,
}

/// What the scorer keeps between events for one contact and one model. It is stored with
/// every score row, so its serialized form is kept short (one-letter names, empty parts
/// left out). Unknown fields are refused, so a state of another format is never misread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityState {
    /// (timestamp, messageId) of the newest event folded in.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    last: Option<(i64, String)>,
    /// Per activity rule, in model order.
    #[serde(rename = "r", default)]
    rules: Vec<RuleState>,
    /// Decayed sum of awards as of `sum_at` (no decay: the plain sum). Unused when the
    /// model has `expire_after`; then `live_awards` holds what may still count.
    #[serde(rename = "s", default)]
    sum: f64,
    #[serde(rename = "t", default)]
    sum_at: i64,
    #[serde(rename = "w", default, skip_serializing_if = "VecDeque::is_empty")]
    live_awards: VecDeque<(i64, f64)>,
    /// How many events were folded (of any name).
    #[serde(rename = "n", default)]
    events: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleState {
    /// Times of awards still inside the rule's `limit.per` window.
    #[serde(rename = "a", default, skip_serializing_if = "VecDeque::is_empty")]
    recent_awards: VecDeque<i64>,
    /// Times of matches not yet used by a `frequency` award, inside `frequency.within`.
    #[serde(rename = "p", default, skip_serializing_if = "VecDeque::is_empty")]
    pending: VecDeque<i64>,
}

impl ActivityState {
    pub fn new(model: &Model) -> Self {
        Self { rules: vec![RuleState::default(); model.activity.len()], ..Self::default() }
    }

    /// The newest event folded in, as (timestamp ms, messageId).
    pub fn last_event(&self) -> Option<(i64, &str)> {
        self.last.as_ref().map(|(t, m)| (*t, m.as_str()))
    }

    pub fn event_count(&self) -> u64 {
        self.events
    }

    /// Whether `event` can be folded in without replaying (it sorts after the newest).
    pub fn accepts(&self, event: &EventRef<'_>) -> bool {
        self.last.as_ref().is_none_or(|(t, m)| event.key() > (*t, m.as_str()))
    }

    /// Folds one event in and returns the awards it earned, in rule order.
    pub fn apply(&mut self, model: &Model, event: &EventRef<'_>) -> Result<Vec<Award>, ScoreError> {
        if !self.accepts(event) {
            return Err(ScoreError::OutOfOrder);
        }
        if self.rules.len() != model.activity.len() {
            // A state from another model shape must never be folded into; start clean.
            *self = Self::new(model);
        }
        let t = event.timestamp;
        let no_attributes = Map::new();
        let mut awards = Vec::new();
        for (index, rule) in model.activity.iter().enumerate() {
            if rule.event != event.name {
                continue;
            }
            if rule.when.as_ref().is_some_and(|c| !c.matches(&no_attributes, event.properties)) {
                continue;
            }
            let state = &mut self.rules[index];
            if let Some(frequency) = rule.frequency {
                state.pending.push_back(t);
                while state.pending.front().is_some_and(|&p| p <= t - frequency.within.millis()) {
                    state.pending.pop_front();
                }
                if state.pending.len() < frequency.count as usize {
                    continue;
                }
            }
            if let Some(limit) = rule.limit {
                while state.recent_awards.front().is_some_and(|&a| a <= t - limit.per.millis()) {
                    state.recent_awards.pop_front();
                }
                if state.recent_awards.len() >= limit.count as usize {
                    // Blocked by the limit: matches a frequency rule collected stay unused.
                    continue;
                }
                state.recent_awards.push_back(t);
            }
            state.pending.clear();
            awards.push(Award { rule: index, points: rule.points, timestamp: t });
        }
        self.add_awards(model, t, &awards);
        self.last = Some((t, event.message_id.to_string()));
        self.events += 1;
        Ok(awards)
    }

    fn add_awards(&mut self, model: &Model, t: i64, awards: &[Award]) {
        if let Some(expire) = model.decay.expire_after {
            while self.live_awards.front().is_some_and(|&(at, _)| t - at >= expire.millis()) {
                self.live_awards.pop_front();
            }
            self.live_awards.extend(awards.iter().map(|a| (t, a.points)));
            return;
        }
        if awards.is_empty() {
            return;
        }
        if let Some(half_life) = model.decay.half_life {
            self.sum *= half_life_factor(t - self.sum_at, half_life.millis());
        }
        self.sum += awards.iter().map(|a| a.points).sum::<f64>();
        self.sum_at = t;
    }

    /// Activity as of `at`, unrounded, with decay and the inactivity penalty applied.
    /// `None` when `at` is before the newest folded event: the caller must replay the
    /// events up to `at` instead.
    pub fn activity_at(&self, model: &Model, at: i64) -> Option<f64> {
        activity_at(model, self.last.as_ref().map(|(t, _)| *t), self.sum, self.sum_at, &self.live_awards, at)
    }
}

/// The parts of a stored [`ActivityState`] that activity as of an instant reads: the time
/// of the newest event, the decayed sum and the awards inside `expire_after`. Parsed from
/// a state's JSON with the per-rule parts and the messageId skipped unread, for the reads
/// that only need the score as of now (reports over every contact). Its
/// [`DecayView::activity_at`] is [`ActivityState::activity_at`] (one computation).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecayView {
    #[serde(rename = "l", default, deserialize_with = "newest_event_time")]
    last: Option<i64>,
    #[serde(rename = "r", default)]
    _rules: serde::de::IgnoredAny,
    #[serde(rename = "s", default)]
    sum: f64,
    #[serde(rename = "t", default)]
    sum_at: i64,
    #[serde(rename = "w", default)]
    live_awards: VecDeque<(i64, f64)>,
    #[serde(rename = "n", default)]
    _events: serde::de::IgnoredAny,
}

/// The timestamp of a state's `l` (timestamp, messageId), the messageId skipped.
fn newest_event_time<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let last: Option<(i64, serde::de::IgnoredAny)> = Deserialize::deserialize(deserializer)?;
    Ok(last.map(|(t, _)| t))
}

impl DecayView {
    /// As [`ActivityState::activity_at`].
    pub fn activity_at(&self, model: &Model, at: i64) -> Option<f64> {
        activity_at(model, self.last, self.sum, self.sum_at, &self.live_awards, at)
    }
}

impl From<&ActivityState> for DecayView {
    fn from(state: &ActivityState) -> Self {
        Self { last: state.last.as_ref().map(|(t, _)| *t), sum: state.sum, sum_at: state.sum_at, live_awards: state.live_awards.clone(), ..Self::default() }
    }
}

fn activity_at(model: &Model, last: Option<i64>, sum: f64, sum_at: i64, live_awards: &VecDeque<(i64, f64)>, at: i64) -> Option<f64> {
    if last.is_some_and(|t| at < t) {
        return None;
    }
    let decay = &model.decay;
    let raw = if let Some(expire) = decay.expire_after {
        live_awards
            .iter()
            .filter(|(t, _)| at - t < expire.millis())
            .map(|(t, p)| p * decay.half_life.map_or(1.0, |h| half_life_factor(at - t, h.millis())))
            .sum()
    } else if sum == 0.0 {
        0.0
    } else if let Some(half_life) = decay.half_life {
        sum * half_life_factor(at - sum_at, half_life.millis())
    } else {
        sum
    };
    Some(match (&decay.inactivity, last) {
        (Some(inactivity), Some(last)) if raw > 0.0 => {
            let idle_periods = ((at - last) / inactivity.every.millis()) as f64;
            (raw - idle_periods * inactivity.points).max(0.0)
        }
        _ => raw,
    })
}

fn half_life_factor(age_ms: i64, half_life_ms: i64) -> f64 {
    0.5f64.powf(age_ms as f64 / half_life_ms as f64)
}

pub use crate::numbers::round2;

/// A contact's scores under one model, as reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreCard {
    pub fit: f64,
    pub activity: f64,
    pub total: f64,
    pub band: Option<String>,
    pub flames: u8,
    pub grade: Option<String>,
    pub quadrant: Option<String>,
}

pub const QUADRANT_SALES_READY: &str = "sales-ready";
pub const QUADRANT_LONG_TERM: &str = "long-term target";
pub const QUADRANT_RESEARCHER: &str = "researcher";
pub const QUADRANT_UNQUALIFIED: &str = "unqualified";
/// Every quadrant, in the order of the matrix: both high, fit high, activity high, neither.
pub const QUADRANTS: [&str; 4] = [QUADRANT_SALES_READY, QUADRANT_LONG_TERM, QUADRANT_RESEARCHER, QUADRANT_UNQUALIFIED];

impl Model {
    /// Builds the reported scores from unrounded fit and activity.
    pub fn card(&self, fit: f64, activity: f64) -> ScoreCard {
        let fit = round2(fit);
        let activity = round2(activity);
        let total = round2(fit + activity);
        let band = self.bands.iter().find(|b| b.min.is_none_or(|m| m <= total)).map(|b| b.name.clone());
        let flames = self.flames.iter().filter(|&&f| f <= total).count() as u8;
        let grade = self.grades.as_ref().map(|g| {
            let letter = if fit >= g.a {
                "A"
            } else if fit >= g.b {
                "B"
            } else if fit >= g.c {
                "C"
            } else {
                "D"
            };
            letter.to_string()
        });
        let quadrant = self.quadrant.as_ref().map(|q| {
            match (fit >= q.fit, activity >= q.activity) {
                (true, true) => QUADRANT_SALES_READY,
                (true, false) => QUADRANT_LONG_TERM,
                (false, true) => QUADRANT_RESEARCHER,
                (false, false) => QUADRANT_UNQUALIFIED,
            }
            .to_string()
        });
        ScoreCard { fit, activity, total, band, flames, grade, quadrant }
    }
}

/// Sorts events into scoring order and drops repeated messageIds (the first in order
/// stays). Events that share timestamp and messageId but differ (a client reusing ids) are
/// ordered by their content, so which one stays never depends on the input order.
pub fn normalize_events(events: &mut Vec<EventRef<'_>>) {
    events.sort_by(|a, b| {
        a.key().cmp(&b.key()).then_with(|| {
            a.name.cmp(b.name).then_with(|| {
                let a = serde_json::to_string(a.properties).unwrap_or_default();
                let b = serde_json::to_string(b.properties).unwrap_or_default();
                a.cmp(&b)
            })
        })
    });
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    events.retain(|e| seen.insert(e.message_id.to_string()));
}

/// Folds events (already in scoring order, without repeats) from an empty state, skipping
/// events after `at`.
pub fn fold_events<'a>(model: &Model, events: impl IntoIterator<Item = EventRef<'a>>, at: i64) -> ActivityState {
    let mut state = ActivityState::new(model);
    for event in events {
        if event.timestamp > at {
            break;
        }
        // Events are in order and unique, so apply cannot refuse them.
        let _ = state.apply(model, &event);
    }
    state
}

/// Scores a contact from scratch as of `at`: events in any order, repeats allowed.
pub fn score_contact(model: &Model, attributes: &Map<String, Value>, events: &[EventRef<'_>], at: i64) -> ScoreCard {
    let mut events = events.to_vec();
    normalize_events(&mut events);
    let state = fold_events(model, events, at);
    let activity = state.activity_at(model, at).unwrap_or(0.0);
    model.card(model.fit(attributes), activity)
}

/// One step of a contact's activity history: an event that earned points.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryStep {
    pub timestamp: i64,
    pub message_id: String,
    pub event: String,
    pub rule: String,
    pub points: f64,
    /// Activity right after this award, as of the event's time (decayed).
    pub activity: f64,
}

/// When a contact with this fit first entered the band starting at `line` within
/// `[from, to)`: its events (in scoring order, unique) are replayed and its total checked
/// after every event that earned points; a crossing counts when the total was below the
/// line at the previous such check (the same checks as [`activity_history`]'s steps, without
/// building them).
pub fn first_crossing<'a>(model: &Model, fit: f64, events: impl IntoIterator<Item = EventRef<'a>>, line: f64, from: i64, to: i64) -> Option<i64> {
    let mut state = ActivityState::new(model);
    let mut above = false;
    for event in events {
        if event.timestamp >= to {
            break;
        }
        match state.apply(model, &event) {
            Ok(awards) if !awards.is_empty() => {}
            _ => continue,
        }
        let activity = round2(state.activity_at(model, event.timestamp).unwrap_or(0.0));
        let now_above = round2(fit + activity) >= line;
        if now_above && !above && event.timestamp >= from {
            return Some(event.timestamp);
        }
        above = now_above;
    }
    None
}

/// Replays events (in scoring order, unique) and lists every award with the resulting
/// activity, so "why is this lead hot?" has an answer.
pub fn activity_history<'a>(model: &Model, events: impl IntoIterator<Item = EventRef<'a>>, at: i64) -> Vec<HistoryStep> {
    let mut state = ActivityState::new(model);
    let mut steps = Vec::new();
    for event in events {
        if event.timestamp > at {
            break;
        }
        let Ok(awards) = state.apply(model, &event) else { continue };
        if awards.is_empty() {
            continue;
        }
        let activity = round2(state.activity_at(model, event.timestamp).unwrap_or(0.0));
        for award in awards {
            steps.push(HistoryStep {
                timestamp: event.timestamp,
                message_id: event.message_id.to_string(),
                event: event.name.to_string(),
                rule: model.activity[award.rule].name.clone(),
                points: award.points,
                activity,
            });
        }
    }
    steps
}
