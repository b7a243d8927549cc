//! Running automations, the part every backend shares. [`evaluate`] is the whole step,
//! pure: from a contact as stored, what happened to it (its queued entries), the
//! per-automation state, the automations and the time, it decides which automations fire
//! ([`plan`]) and turns the runs into effects — contact changes, outbox deliveries, log
//! entries, state changes, team cursor moves ([`execute`]). A backend only loads that input
//! and writes the [`Evaluation`] in one transaction, under the contact's write lock, so two
//! evaluations of one contact never interleave and a `max = 1` automation cannot fire twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use leadscore_core::ScoreCard;
use leadscore_core::automation::{
    Action, AssignStrategy, Automation, Direction, FilterInput, ScoreField, Trigger, cold_holds, crossed, hot_fires, limits_allow, threshold_step,
};
use leadscore_core::scorer::activity_history;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::scoring::{ScoringEvent, card_at};
use crate::types::{ContactRecord, Millis, ModelSet};

/// An automation that is live, compiled once by the server and shared by every evaluation.
#[derive(Debug)]
pub struct LiveAutomation {
    pub automation: Automation,
    /// When the definition was stored: contacts seen before it get their trigger state
    /// initialised from what they looked like before the change that woke them.
    pub updated_at: Millis,
}

pub type AutomationSet = Vec<Arc<LiveAutomation>>;

/// Whether `set` is the stored automations: `stored` lists (name, updated_at, enabled) of
/// every stored automation. Evaluations check this in their transaction, so a process
/// that has not yet loaded a change made elsewhere cannot consume changes with old rules.
pub fn is_current(set: &AutomationSet, stored: &[(String, Millis, bool)]) -> bool {
    set.len() == stored.len()
        && stored.iter().all(|(name, updated_at, enabled)| {
            set.iter().any(|live| &live.automation.name == name && live.updated_at == *updated_at && live.automation.enabled == *enabled)
        })
}

/// The error for a stale automation set.
pub fn stale_automations() -> crate::StoreError {
    crate::StoreError::Stale("the automations changed since they were loaded".into())
}

/// One thing that happened to a contact since its automations were last evaluated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueEntry {
    pub seq: i64,
    /// A new activity event (hot and event triggers look at these).
    pub event: Option<QueuedEvent>,
    /// The contact's cards before the change, per model: threshold and band triggers of a
    /// contact without state compare against these, so the first change they see can fire.
    pub before: Option<BTreeMap<String, ScoreCard>>,
    /// Set on the entry of a predictive score change: the score before it (None when the
    /// contact had none). Predictive threshold triggers compare against the first one.
    pub before_predictive: Option<Option<u8>>,
}

/// The `before` column of a queue entry: the cards alone, or, for a predictive score
/// change, the cards and the predictive score before it.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum BeforeText {
    Predictive { cards: BTreeMap<String, ScoreCard>, predictive: Option<u8> },
    Cards(BTreeMap<String, ScoreCard>),
}

/// A queue entry's `before` and `before_predictive`, as decoded from its `before` column.
pub type DecodedBefore = (BTreeMap<String, ScoreCard>, Option<Option<u8>>);

impl QueueEntry {
    /// Decodes a stored `before` column into the entry's `before` and `before_predictive`.
    pub fn decode_before(text: &str) -> serde_json::Result<DecodedBefore> {
        Ok(match serde_json::from_str(text)? {
            BeforeText::Predictive { cards, predictive } => (cards, Some(predictive)),
            BeforeText::Cards(cards) => (cards, None),
        })
    }

    /// The `before` column of a predictive score change's entry.
    pub fn encode_predictive_before(cards: &BTreeMap<String, ScoreCard>, predictive: Option<u8>) -> serde_json::Result<String> {
        serde_json::to_string(&BeforeText::Predictive { cards: cards.clone(), predictive })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueuedEvent {
    #[serde(rename = "t")]
    pub timestamp: Millis,
    #[serde(rename = "m")]
    pub message_id: String,
    #[serde(rename = "n")]
    pub name: String,
}

/// What an automation remembers about one contact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AutomationState {
    /// Threshold and cold triggers: whether the next crossing fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed: Option<bool>,
    /// Band triggers: the band last seen (`seen` tells "no band" from "never looked").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seen: bool,
    /// Times of recent runs, for the limits (pruned to the longest limit window).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Millis>,
    /// Nurture actions: the track the contact is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
}

/// What the planner needs to know about one contact.
struct PlanInput<'a> {
    pub contact: &'a ContactRecord,
    pub models: &'a ModelSet,
    pub automations: &'a AutomationSet,
    /// In queue order.
    pub queued: &'a [QueueEntry],
    pub states: &'a HashMap<String, AutomationState>,
    /// Every activity event of the contact in scoring order, when [`needs_events`] said so.
    pub events: Option<&'a [ScoringEvent]>,
    /// The scheduler asks: look for cold contacts too.
    pub check_cold: bool,
    pub now: Millis,
}

#[derive(Clone, Debug, PartialEq)]
struct PlannedRun {
    pub automation: String,
    pub reason: Value,
    pub actions: Vec<Action>,
}

#[derive(Debug, Default)]
struct Plan {
    pub runs: Vec<PlannedRun>,
    /// Every state that changed, to write back.
    pub states: Vec<(String, AutomationState)>,
}

/// Everything one evaluation of a contact reads. `events` and `teams` are loaded only when
/// [`evaluate`] asks for them (most evaluations need neither).
pub struct EvaluationInput<'a> {
    /// The contact as stored, its score rows as written (decay since then is applied here).
    pub contact: &'a ContactRecord,
    /// The live models (shadow ones included: their scores are taken off the contact).
    pub models: &'a ModelSet,
    pub automations: &'a AutomationSet,
    /// In queue order.
    pub queued: &'a [QueueEntry],
    pub states: &'a HashMap<String, AutomationState>,
    /// Every activity event of the contact in scoring order, once asked for.
    pub events: Option<&'a [ScoringEvent]>,
    /// The teams with their cursors, once asked for; a backend that holds them anyway
    /// passes them every time.
    pub teams: Option<&'a mut HashMap<String, Team>>,
    pub subscriptions: &'a [Subscription],
    /// The scheduler asks: look for cold contacts too.
    pub check_cold: bool,
    pub now: Millis,
}

/// What one evaluation decided; the backend writes all of it in the same transaction.
#[derive(Debug)]
pub struct Evaluation {
    /// The contact as judged and changed by the actions (saved and rescored when
    /// `effects.contact_changed`); shadow scores are off it.
    pub contact: ContactRecord,
    /// Every automation state that changed.
    pub states: Vec<(String, AutomationState)>,
    pub effects: Effects,
    /// The queue entries up to this sequence number were consumed.
    pub consumed_through: Option<i64>,
}

/// The answer of [`evaluate`]: done, or a part of the input it needs first. Asking again
/// with the part given decides the same (the step has no memory).
#[derive(Debug)]
pub enum Evaluated {
    Done(Box<Evaluation>),
    /// Load the contact's activity events (a hot, event or cold trigger looks back).
    NeedsEvents,
    /// Load (and lock, where other processes assign too) the teams: a run assigns an owner.
    NeedsTeams,
}

/// The contact as automations judge it now: every card brought to `now` (decay since the
/// row was written counts) and the shadow scores taken off.
pub fn judged_now(contact: &ContactRecord, models: &ModelSet, now: Millis) -> ContactRecord {
    let mut contact = contact.clone();
    for published in models.iter() {
        if let Some(row) = contact.scores.get_mut(&published.name)
            && let Some(card) = card_at(published, row, &contact.attributes, now)
        {
            row.card = card;
        }
    }
    hide_shadow_scores(&mut contact, models);
    contact
}

/// One contact's automation step: which automations fire and everything that follows.
pub fn evaluate(input: EvaluationInput<'_>) -> Evaluated {
    let EvaluationInput { contact, models, automations, queued, states, events, teams, subscriptions, check_cold, now } = input;
    let mut contact = judged_now(contact, models, now);
    if events.is_none() && needs_events(automations, &contact, queued, states, check_cold, now) {
        return Evaluated::NeedsEvents;
    }
    let plan = plan(&PlanInput { contact: &contact, models, automations, queued, states, events, check_cold, now });
    let assigns = plan.runs.iter().any(|run| run.actions.iter().any(|action| matches!(action, Action::Assign(_))));
    let mut no_teams = HashMap::new();
    let teams = match teams {
        Some(teams) => teams,
        None if assigns => return Evaluated::NeedsTeams,
        None => &mut no_teams,
    };
    let mut changed_states = plan.states;
    let effects = execute(plan.runs, &mut contact, ExecuteInput { teams, subscriptions, states: &mut changed_states, prior_states: states, now });
    Evaluated::Done(Box::new(Evaluation { contact, states: changed_states, effects, consumed_through: queued.last().map(|entry| entry.seq) }))
}

/// Takes the scores of shadow models (F31) off a contact about to be judged by automations
/// or sent out: automations never read a shadow and no payload carries one. Every backend
/// calls this on the contact it evaluates and on the contacts it syncs.
pub fn hide_shadow_scores(contact: &mut ContactRecord, models: &ModelSet) {
    for shadow in models.iter().filter(|m| m.is_shadow()) {
        contact.scores.remove(&shadow.name);
    }
}

/// Whether the automation names a shadow model (it then never fires: shadows fire no
/// automations; the API refuses such automations, this covers a model turned shadow later).
fn reads_shadow(automation: &Automation, models: &ModelSet) -> bool {
    automation.named_models().any(|(_, name)| models.iter().any(|m| m.name == name && m.is_shadow()))
}

/// The model an automation reads: its own, or the contact's only (first) scored model.
fn model_of<'a>(automation: &'a Automation, contact: &'a ContactRecord) -> Option<&'a str> {
    match &automation.model {
        Some(model) => Some(model.as_str()),
        None => contact.scores.keys().next().map(String::as_str),
    }
}

fn admits(automation: &Automation, contact: &ContactRecord, band: Option<&str>) -> bool {
    automation.filter.admits(&FilterInput {
        attributes: &contact.attributes,
        groups: &contact.groups,
        owner: contact.owner.as_deref(),
        band,
        predictive: contact.predictive.as_ref().map(|p| f64::from(p.score)),
    })
}

fn band_of<'a>(contact: &'a ContactRecord, model: Option<&str>) -> Option<&'a str> {
    model.and_then(|m| contact.scores.get(m)).and_then(|row| row.card.band.as_deref())
}

/// Whether the planner will need the contact's events: a hot trigger with new events to
/// judge; a cold trigger whose window holds events, when the scheduler asks or when new
/// events may re-arm a cold trigger that fired (an idle contact needs none).
fn needs_events(
    automations: &AutomationSet,
    contact: &ContactRecord,
    queued: &[QueueEntry],
    states: &HashMap<String, AutomationState>,
    check_cold: bool,
    now: Millis,
) -> bool {
    let new_events = queued.iter().any(|q| q.event.is_some());
    automations.iter().filter(|a| a.automation.enabled).any(|live| {
        let automation = &live.automation;
        let band = band_of(contact, model_of(automation, contact));
        match automation.trigger {
            Trigger::Hot { .. } => new_events && admits(automation, contact, band),
            Trigger::Cold { within, .. } => {
                let disarmed = states.get(&automation.name).is_some_and(|s| s.armed == Some(false));
                (check_cold || (new_events && disarmed)) && contact.last_event_at.is_some_and(|t| t > now - within.millis())
            }
            _ => false,
        }
    })
}

/// Awards of the contact's events under a model, as (timestamp, messageId, points).
fn awards(model: &leadscore_core::Model, events: &[ScoringEvent]) -> Vec<(Millis, String, f64)> {
    activity_history(model, events.iter().map(ScoringEvent::as_ref), Millis::MAX)
        .into_iter()
        .map(|step| (step.timestamp, step.message_id, step.points))
        .collect()
}

fn score_value(card: &ScoreCard, field: &ScoreField) -> f64 {
    match field {
        ScoreField::Fit => card.fit,
        ScoreField::Activity => card.activity,
        ScoreField::Total => card.total,
        ScoreField::Predictive => unreachable!("the predictive score is not on a rule model's card"),
    }
}

/// The predictive score before the first queued predictive change: None when none is
/// queued (the score did not change), Some(None) when the contact had none.
fn before_predictive(queued: &[QueueEntry]) -> Option<Option<u8>> {
    queued.iter().find_map(|q| q.before_predictive)
}

/// The cards the contact had before the first queued change, per model.
fn before_card<'a>(queued: &'a [QueueEntry], model: &str) -> Option<Option<&'a ScoreCard>> {
    queued.iter().find_map(|q| q.before.as_ref()).map(|before| before.get(model))
}

/// Decides which automations fire for one contact.
fn plan(input: &PlanInput<'_>) -> Plan {
    let contact = input.contact;
    let now = input.now;
    let mut plan = Plan::default();
    for live in input.automations.iter().filter(|a| a.automation.enabled) {
        let automation = &live.automation;
        // A scheduler visit (nothing queued) only judges cold triggers: the others react
        // to changes, and there is none.
        if input.queued.is_empty() && !matches!(automation.trigger, Trigger::Cold { .. }) || reads_shadow(automation, input.models) {
            continue;
        }
        let model_name = model_of(automation, contact);
        let row = model_name.and_then(|m| contact.scores.get(m));
        let band = row.and_then(|r| r.card.band.as_deref());
        let prior = input.states.get(&automation.name);
        let mut state = prior.cloned().unwrap_or_default();
        let mut reasons: Vec<Value> = Vec::new();
        match &automation.trigger {
            Trigger::Event { name } => {
                for event in input.queued.iter().filter_map(|q| q.event.as_ref()).filter(|e| &e.name == name) {
                    reasons.push(json!({ "trigger": "event", "event": { "name": event.name, "message_id": event.message_id, "timestamp": chrono_like_rfc3339(event.timestamp) } }));
                }
            }
            Trigger::Hot { points, within } => {
                let new_events: Vec<&QueuedEvent> = input.queued.iter().filter_map(|q| q.event.as_ref()).collect();
                if let (Some(model), Some(events), false) = (model_name.and_then(|m| find_model(input.models, m)), input.events, new_events.is_empty()) {
                    let awards = awards(model, events);
                    for event in new_events {
                        // A late event whose window has long closed did not make the contact hot now.
                        if event.timestamp <= now - within.millis() {
                            continue;
                        }
                        let key = (event.timestamp, event.message_id.as_str());
                        let in_window = |t: Millis| t > event.timestamp - within.millis() && t <= event.timestamp;
                        let before: f64 = awards.iter().filter(|(t, m, _)| in_window(*t) && (*t, m.as_str()) < key).map(|a| a.2).sum();
                        let own: f64 = awards.iter().filter(|(t, m, _)| *t == event.timestamp && m == &event.message_id).map(|a| a.2).sum();
                        if hot_fires(*points, before, before + own) {
                            reasons.push(json!({
                                "trigger": "hot",
                                "points": leadscore_core::scorer::round2(before + own),
                                "needed": points,
                                "within": within.to_string(),
                                "event": { "name": event.name, "message_id": event.message_id, "timestamp": chrono_like_rfc3339(event.timestamp) },
                            }));
                        }
                    }
                }
            }
            Trigger::Threshold { score, direction, value, rearm } => {
                // The score now and before the first queued change (None: not known, Some(None):
                // the contact had no such score), and the rule model it is of.
                let judged = match score {
                    ScoreField::Predictive => contact.predictive.as_ref().map(|p| {
                        // Queued changes that left the predictive score alone: it was what it is.
                        let unchanged = input.queued.iter().any(|q| q.before.is_some()).then_some(Some(p.score));
                        let before = before_predictive(input.queued).or(unchanged);
                        (f64::from(p.score), before.map(|b| b.map(f64::from)), None)
                    }),
                    _ => model_name.zip(row).map(|(model, row)| {
                        let before = before_card(input.queued, model).map(|card| card.map(|c| score_value(c, score)));
                        (score_value(&row.card, score), before, Some(model))
                    }),
                };
                if let Some((current, before, model)) = judged {
                    let armed = state.armed.unwrap_or_else(|| match before {
                        // Seen before: armed unless it was already past the line.
                        Some(Some(before)) => !crossed(direction, *value, before),
                        // A contact that had no such score counts as 0 before: a new contact at
                        // 120 crosses "above 100"; one at 0 does not cross "below 20".
                        Some(None) => !crossed(direction, *value, 0.0),
                        // Woken without a before-picture (the scheduler): judge from now on.
                        None => !crossed(direction, *value, current),
                    });
                    let (fires, armed_after) = threshold_step(direction, *value, *rearm, armed, current);
                    state.armed = Some(armed_after);
                    if fires {
                        let field = match score {
                            ScoreField::Fit => "fit",
                            ScoreField::Activity => "activity",
                            ScoreField::Total => "total",
                            ScoreField::Predictive => "predictive",
                        };
                        let way = match direction {
                            Direction::Above => "above",
                            Direction::Below => "below",
                        };
                        let mut reason = json!({ "trigger": "threshold", "score": field, way: value, "value": current });
                        if let Some(model) = model {
                            reason["model"] = json!(model);
                        }
                        reasons.push(reason);
                    }
                }
            }
            Trigger::Band { model: band_model, to } => {
                let model = band_model.as_deref().or(model_name);
                if let Some(model) = model {
                    let current = contact.scores.get(model).and_then(|r| r.card.band.clone());
                    let previous =
                        if state.seen { Some(state.band.clone()) } else { before_card(input.queued, model).map(|card| card.and_then(|c| c.band.clone())) };
                    // Without a state or a before-picture the contact is only being met: nothing changed.
                    if let Some(previous) = previous
                        && previous != current
                        && current.is_some()
                        && to.as_ref().is_none_or(|to| current.as_ref() == Some(to))
                    {
                        reasons.push(json!({ "trigger": "band", "model": model, "from": previous, "to": current }));
                    }
                    state.seen = true;
                    state.band = current;
                }
            }
            Trigger::Cold { points, within } => {
                if let Some(model) = model_name.and_then(|m| find_model(input.models, m)) {
                    let idle = contact.last_event_at.is_none_or(|t| t <= now - within.millis());
                    let window_points = if idle {
                        Some(0.0)
                    } else {
                        input.events.map(|events| awards(model, events).iter().filter(|(t, _, _)| *t > now - within.millis() && *t <= now).map(|a| a.2).sum())
                    };
                    if let Some(window_points) = window_points {
                        let holds = cold_holds(*points, *within, contact.created_at, window_points, now);
                        let armed = state.armed.unwrap_or(true);
                        // Cold is the scheduler's to find; other visits only re-arm it.
                        if holds && armed && input.check_cold {
                            reasons.push(json!({
                                "trigger": "cold",
                                "points": leadscore_core::scorer::round2(window_points),
                                "below": points,
                                "within": within.to_string(),
                            }));
                            state.armed = Some(false);
                        } else if window_points >= *points || state.armed.is_none() {
                            // Points again re-arm it; a first visit starts armed.
                            state.armed = Some(true);
                        }
                    }
                }
            }
        }
        let limit_window =
            [automation.limits.max.map(|(_, per)| per.millis()), automation.limits.cooldown.map(|c| c.millis())].into_iter().flatten().max().unwrap_or(0);
        state.runs.retain(|t| *t > now - limit_window);
        if !reasons.is_empty() && admits(automation, contact, band) {
            for reason in reasons {
                if !limits_allow(&automation.limits, &state.runs, now) {
                    break;
                }
                if limit_window > 0 {
                    state.runs.push(now);
                }
                plan.runs.push(PlannedRun { automation: automation.name.clone(), reason, actions: automation.actions.clone() });
            }
        }
        if prior != Some(&state) {
            plan.states.push((automation.name.clone(), state));
        }
    }
    plan
}

fn find_model<'a>(models: &'a ModelSet, name: &str) -> Option<&'a leadscore_core::Model> {
    models.iter().find(|m| m.name == name && !m.is_shadow()).map(|m| &m.model)
}

/// A sales team: who gets leads, and where round robin stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Team {
    pub name: String,
    pub members: Vec<String>,
    /// How many leads the team was given; the next goes to `members[cursor % len]`.
    pub cursor: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A webhook endpoint subscribed to event types (`score.changed`, `nurture.changed`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Subscription {
    pub name: String,
    pub url: String,
    pub secret_ref: Option<String>,
    pub events: Vec<String>,
    /// score.changed: leadscore field → the receiver's field name (e.g. total → lead_score__c).
    pub fields: BTreeMap<String, String>,
    /// score.changed: how long a contact's changes are gathered before they are sent.
    pub debounce_ms: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A message for the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDelivery {
    /// Also the `webhook-id`, the same on every attempt.
    pub id: String,
    pub channel: Channel,
    pub event_type: String,
    pub automation: Option<String>,
    pub run_id: Option<String>,
    pub contact_id: Option<String>,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Channel {
    /// `body` is the exact JSON that is signed and sent.
    Webhook {
        url: String,
        secret_ref: Option<String>,
        body: String,
    },
    Email {
        to: String,
        subject: String,
        body: String,
    },
}

/// A run as recorded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub automation: String,
    pub contact_id: String,
    pub at: Millis,
    pub reason: Value,
    /// One outcome per action, in order.
    pub actions: Vec<Value>,
}

/// Everything one evaluation writes, besides the states.
#[derive(Debug, Default)]
pub struct Effects {
    pub runs: Vec<RunRecord>,
    pub deliveries: Vec<NewDelivery>,
    /// Contact log entries (kind, data).
    pub log: Vec<(String, Value)>,
    /// Whether attributes, groups or owner changed (the contact is saved and fit rescored).
    pub contact_changed: bool,
    /// Teams whose cursor moved.
    pub teams: Vec<Team>,
}

/// Random ids for runs and deliveries: a prefix and 27 base62 characters (like Svix ids).
pub fn new_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..27).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("{prefix}_{tail}")
}

/// The contact as automations send it: what a receiver needs to act without calling back.
pub fn contact_payload(contact: &ContactRecord) -> Value {
    let scores: Map<String, Value> =
        contact.scores.iter().map(|(model, row)| (model.clone(), serde_json::to_value(&row.card).unwrap_or(Value::Null))).collect();
    json!({
        "id": contact.id,
        "email": contact.email,
        "attributes": contact.attributes,
        "groups": contact.groups,
        "owner": contact.owner,
        "status": contact.status,
        "scores": scores,
    })
}

/// The JSON body of a Standard Webhooks message.
pub fn webhook_body(event_type: &str, at: Millis, data: Value) -> String {
    let timestamp = chrono_like_rfc3339(at);
    json!({ "type": event_type, "timestamp": timestamp, "data": data }).to_string()
}

/// RFC 3339 in UTC with milliseconds, without pulling a time crate into the store.
pub fn chrono_like_rfc3339(millis: Millis) -> String {
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// Replaces `{{ path }}` by the value at that dotted path of `context` (strings bare,
/// other values as JSON, missing as nothing).
pub fn render(template: &str, context: &Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start + 2..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let path = rest[start + 2..start + 2 + end].trim();
        let mut value = Some(context);
        for part in path.split('.') {
            value = value.and_then(|v| v.get(part));
        }
        match value {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Null) | None => {}
            // Scores are floats; people read 10, not 10.0.
            Some(Value::Number(n)) if n.as_f64().is_some_and(|x| x.fract() == 0.0 && x.abs() < 1e15) => {
                out.push_str(&(n.as_f64().unwrap_or_default() as i64).to_string())
            }
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &rest[start + 2 + end + 2..];
    }
    out.push_str(rest);
    out
}

/// Everything [`execute`] needs besides the runs.
struct ExecuteInput<'a> {
    pub teams: &'a mut HashMap<String, Team>,
    pub subscriptions: &'a [Subscription],
    /// Nurture tracks per automation, updated as nurture actions run.
    pub states: &'a mut Vec<(String, AutomationState)>,
    pub prior_states: &'a HashMap<String, AutomationState>,
    pub now: Millis,
}

/// Carries out the planned runs on the contact (in memory) and lists what to write.
fn execute(runs: Vec<PlannedRun>, contact: &mut ContactRecord, mut input: ExecuteInput<'_>) -> Effects {
    let now = input.now;
    let mut effects = Effects::default();
    for planned in runs {
        let run_id = new_id("run");
        let mut outcomes = Vec::with_capacity(planned.actions.len());
        for action in &planned.actions {
            let outcome = match action {
                Action::Webhook { url, secret_ref } => {
                    let id = new_id("msg");
                    let data = json!({
                        "automation": planned.automation,
                        "run_id": run_id,
                        "reason": planned.reason,
                        "contact": contact_payload(contact),
                    });
                    effects.deliveries.push(NewDelivery {
                        id: id.clone(),
                        channel: Channel::Webhook { url: url.clone(), secret_ref: secret_ref.clone(), body: webhook_body("automation.fired", now, data) },
                        event_type: "automation.fired".into(),
                        automation: Some(planned.automation.clone()),
                        run_id: Some(run_id.clone()),
                        contact_id: Some(contact.id.clone()),
                        created_at: now,
                    });
                    json!({ "action": "webhook", "outcome": "queued", "delivery": id, "url": url })
                }
                Action::Email { to, subject, body } => {
                    let address = if to == "owner" { contact.owner.clone() } else { Some(to.clone()) };
                    match address.filter(|a| a.contains('@')) {
                        None => {
                            json!({ "action": "email", "outcome": "skipped", "error": "the contact has no owner with an e-mail address" })
                        }
                        Some(address) => {
                            let context = json!({
                                "contact": contact_payload(contact),
                                "automation": { "name": planned.automation },
                                "reason": planned.reason,
                            });
                            let subject = render(subject, &context);
                            let default_body =
                                format!("{} fired for {}.\n\nWhy: {}\n", planned.automation, contact.email.as_deref().unwrap_or(&contact.id), planned.reason);
                            let body = body.as_deref().map_or(default_body, |b| render(b, &context));
                            let id = new_id("msg");
                            effects.deliveries.push(NewDelivery {
                                id: id.clone(),
                                channel: Channel::Email { to: address.clone(), subject, body },
                                event_type: "automation.fired".into(),
                                automation: Some(planned.automation.clone()),
                                run_id: Some(run_id.clone()),
                                contact_id: Some(contact.id.clone()),
                                created_at: now,
                            });
                            json!({ "action": "email", "outcome": "queued", "delivery": id, "to": address })
                        }
                    }
                }
                Action::Assign(strategy) => {
                    let team_name = match strategy {
                        AssignStrategy::RoundRobin { team } => Some(team.clone()),
                        AssignStrategy::ByAttribute { attribute, teams, fallback } => {
                            let value = contact.attributes.get(attribute).map(|v| match v {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            });
                            value.and_then(|v| teams.get(&v).cloned()).or_else(|| fallback.clone())
                        }
                    };
                    match team_name.as_ref().and_then(|name| input.teams.get_mut(name)) {
                        Some(team) if !team.members.is_empty() => {
                            let owner = team.members[(team.cursor % team.members.len() as u64) as usize].clone();
                            team.cursor += 1;
                            team.updated_at = now;
                            effects.teams.retain(|t| t.name != team.name);
                            effects.teams.push(team.clone());
                            let previous = contact.owner.replace(owner.clone());
                            effects.contact_changed = true;
                            effects.log.push((
                                "assigned".into(),
                                json!({ "automation": planned.automation, "run_id": run_id, "team": team.name, "owner": owner, "previous": previous }),
                            ));
                            json!({ "action": "assign", "outcome": "done", "team": team.name, "owner": owner })
                        }
                        Some(team) => {
                            json!({ "action": "assign", "outcome": "skipped", "error": format!("team {:?} has no members", team.name) })
                        }
                        None => {
                            json!({ "action": "assign", "outcome": "skipped", "error": match team_name {
                            Some(name) => format!("no team {name:?}"),
                            None => "no team for this contact's attribute value and no fallback".to_string(),
                        } })
                        }
                    }
                }
                Action::Set { attribute, value } => {
                    let previous = contact.attributes.insert(attribute.clone(), value.clone());
                    effects.contact_changed |= previous.as_ref() != Some(value);
                    effects.log.push((
                        "automation_set".into(),
                        json!({ "automation": planned.automation, "run_id": run_id, "set": { attribute: value }, "attributes": contact.attributes }),
                    ));
                    json!({ "action": "set", "outcome": "done", "attribute": attribute, "value": value })
                }
                Action::AddGroup { group } => {
                    if !contact.groups.contains(group) {
                        contact.groups.push(group.clone());
                        effects.contact_changed = true;
                    }
                    json!({ "action": "add_group", "outcome": "done", "group": group })
                }
                Action::RemoveGroup { group } => {
                    let before = contact.groups.len();
                    contact.groups.retain(|g| g != group);
                    effects.contact_changed |= before != contact.groups.len();
                    json!({ "action": "remove_group", "outcome": "done", "group": group })
                }
                Action::Nurture { track_per_band } => nurture(&planned, &run_id, track_per_band, contact, &mut input, &mut effects, now),
            };
            outcomes.push(outcome);
        }
        effects.runs.push(RunRecord {
            id: run_id,
            automation: planned.automation,
            contact_id: contact.id.clone(),
            at: now,
            reason: planned.reason,
            actions: outcomes,
        });
    }
    if effects.contact_changed {
        contact.updated_at = now;
    }
    effects
}

/// Moves the contact to the track of its new band; "" (or a band not listed) leaves every
/// track. The track is kept in the automation's state and mirrored in the contact's
/// `nurture_track` attribute (so lists and filters can use it); subscribers of
/// `nurture.changed` are told.
fn nurture(
    planned: &PlannedRun,
    run_id: &str,
    track_per_band: &BTreeMap<String, String>,
    contact: &mut ContactRecord,
    input: &mut ExecuteInput<'_>,
    effects: &mut Effects,
    now: Millis,
) -> Value {
    let band = contact
        .scores
        .get(planned.reason.get("model").and_then(Value::as_str).unwrap_or_default())
        .and_then(|row| row.card.band.clone())
        .or_else(|| planned.reason.get("to").and_then(Value::as_str).map(str::to_string));
    let target = band.as_ref().and_then(|b| track_per_band.get(b)).filter(|t| !t.is_empty()).cloned();
    let position = input.states.iter().position(|(name, _)| name == &planned.automation);
    let mut state = match position {
        Some(index) => input.states[index].1.clone(),
        None => input.prior_states.get(&planned.automation).cloned().unwrap_or_default(),
    };
    let previous = state.track.clone();
    if previous == target {
        return json!({ "action": "nurture", "outcome": "unchanged", "track": target });
    }
    state.track = target.clone();
    match position {
        Some(index) => input.states[index].1 = state,
        None => input.states.push((planned.automation.clone(), state)),
    }
    match &target {
        Some(track) => contact.attributes.insert("nurture_track".into(), Value::String(track.clone())),
        None => contact.attributes.remove("nurture_track"),
    };
    effects.contact_changed = true;
    effects.log.push(("nurture".into(), json!({ "automation": planned.automation, "run_id": run_id, "from": previous, "to": target })));
    for subscription in input.subscriptions.iter().filter(|s| s.events.iter().any(|e| e == "nurture.changed")) {
        let data = json!({ "contact": contact_payload(contact), "automation": planned.automation, "from": previous, "to": target, "band": band });
        effects.deliveries.push(NewDelivery {
            id: new_id("msg"),
            channel: Channel::Webhook {
                url: subscription.url.clone(),
                secret_ref: subscription.secret_ref.clone(),
                body: webhook_body("nurture.changed", now, data),
            },
            event_type: "nurture.changed".into(),
            automation: Some(planned.automation.clone()),
            run_id: Some(run_id.to_string()),
            contact_id: Some(contact.id.clone()),
            created_at: now,
        });
    }
    json!({ "action": "nurture", "outcome": "done", "from": previous, "to": target })
}

/// A delivery in the outbox, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub channel: Channel,
    pub event_type: String,
    pub automation: Option<String>,
    pub run_id: Option<String>,
    pub contact_id: Option<String>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Option<Millis>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub delivered_at: Option<Millis>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt (never tried, or failed and not yet given up).
    Pending,
    Delivered,
    /// Dead-lettered after the last attempt; only a manual retry sends it again.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            _ => return None,
        })
    }
}

/// One attempt's result, as the delivery worker reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryAttempt {
    pub at: Millis,
    pub success: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    pub automation: Option<String>,
    pub contact_id: Option<String>,
    /// Newest first; continue before this (at, id).
    pub before: Option<(Millis, String)>,
    pub limit: usize,
}

/// Per automation: when it last fired and how often lately (the overview, F17).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunStats {
    pub automation: String,
    pub last_fired_at: Option<Millis>,
    pub runs_last_day: u64,
    pub runs_last_week: u64,
    pub runs_total: u64,
}

/// What the delivery list asks for.
#[derive(Clone, Debug, Default)]
pub struct DeliveryQuery {
    pub state: Option<DeliveryState>,
    pub automation: Option<String>,
    /// Newest first; continue before this (created_at, id).
    pub before: Option<(Millis, String)>,
    pub limit: usize,
}

/// The score fields a `score.changed` subscription sends for one contact, under the
/// receiver's names: `fields` maps `fit|activity|total|band|flames|grade|quadrant`
/// (optionally `MODEL.field`) and `predictive` to the receiver's name; empty sends every
/// field as is, per model, and the predictive score.
pub fn sync_snapshot(subscription: &Subscription, contact: &ContactRecord) -> Map<String, Value> {
    let card_field = |card: &ScoreCard, field: &str| -> Option<Value> {
        Some(match field {
            "fit" => json!(card.fit),
            "activity" => json!(card.activity),
            "total" => json!(card.total),
            "band" => json!(card.band),
            "flames" => json!(card.flames),
            "grade" => json!(card.grade),
            "quadrant" => json!(card.quadrant),
            _ => return None,
        })
    };
    let mut out = Map::new();
    if subscription.fields.is_empty() {
        for (model, row) in &contact.scores {
            out.insert(model.clone(), serde_json::to_value(&row.card).unwrap_or(Value::Null));
        }
        if let Some(predictive) = &contact.predictive {
            out.insert(PREDICTIVE_FIELD.into(), json!({ "score": predictive.score, "probability": predictive.probability, "version": predictive.version }));
        }
        return out;
    }
    for (source, target) in &subscription.fields {
        if source == PREDICTIVE_FIELD {
            out.insert(target.clone(), contact.predictive.as_ref().map_or(Value::Null, |p| json!(p.score)));
            continue;
        }
        let (model, field) = match source.split_once('.') {
            Some((model, field)) => (Some(model), field),
            None => (None, source.as_str()),
        };
        let row = match model {
            Some(model) => contact.scores.get(model),
            None => contact.scores.values().next(),
        };
        let value = row.and_then(|r| card_field(&r.card, field)).unwrap_or(Value::Null);
        out.insert(target.clone(), value);
    }
    out
}

/// Field names a subscription may map from (a rule model's card fields, or the
/// predictive score, 0–100).
pub const SYNC_FIELDS: &[&str] = &["fit", "activity", "total", "band", "flames", "grade", "quadrant", PREDICTIVE_FIELD];

/// The predictive score's field name in a subscription's `fields` (of no rule model: it
/// takes no `MODEL.` prefix). With no `fields`, it is sent as `predictive: { score,
/// probability, version }` beside the models' cards.
pub const PREDICTIVE_FIELD: &str = "predictive";

/// One contact in a `score.changed` delivery: its id and e-mail beside the mapped fields.
pub fn sync_contact(contact: &ContactRecord, snapshot: Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(contact.id));
    out.insert("email".into(), json!(contact.email));
    out.extend(snapshot);
    Value::Object(out)
}

/// A batched `score.changed` delivery for a subscription.
pub fn sync_delivery(subscription: &Subscription, contacts: Vec<Value>, now: Millis) -> NewDelivery {
    let data = json!({ "subscription": subscription.name, "contacts": contacts });
    NewDelivery {
        id: new_id("msg"),
        channel: Channel::Webhook {
            url: subscription.url.clone(),
            secret_ref: subscription.secret_ref.clone(),
            body: webhook_body("score.changed", now, data),
        },
        event_type: "score.changed".into(),
        automation: None,
        run_id: None,
        contact_id: None,
        created_at: now,
    }
}

/// What erasing a contact does to a batched `score.changed` delivery's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scrubbed {
    /// The contact is not in it.
    Untouched,
    /// The body without the contact.
    Rewritten(String),
    /// The contact was all it held: the delivery goes.
    Empty,
}

/// Takes contact `contact_id` out of a batched `score.changed` body (its id, e-mail and
/// scores), so an erased contact is not sent out after its erasure (issue 15.4).
pub fn scrub_contact(body: &str, contact_id: &str) -> Scrubbed {
    let Ok(mut value) = serde_json::from_str::<Value>(body) else { return Scrubbed::Untouched };
    let Some(contacts) = value.pointer_mut("/data/contacts").and_then(Value::as_array_mut) else { return Scrubbed::Untouched };
    let before = contacts.len();
    contacts.retain(|c| c.get("id").and_then(Value::as_str) != Some(contact_id));
    match contacts.len() {
        n if n == before => Scrubbed::Untouched,
        0 => Scrubbed::Empty,
        _ => Scrubbed::Rewritten(value.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_erased_contact_leaves_a_batch() {
        let body = webhook_body("score.changed", 0, json!({ "subscription": "crm", "contacts": [{ "id": "a", "email": "a@x.io" }, { "id": "b" }] }));
        let Scrubbed::Rewritten(without_a) = scrub_contact(&body, "a") else { panic!("a was in it") };
        assert!(!without_a.contains("a@x.io") && without_a.contains(r#""id":"b""#), "{without_a}");
        assert_eq!(scrub_contact(&without_a, "a"), Scrubbed::Untouched);
        assert_eq!(scrub_contact(&without_a, "b"), Scrubbed::Empty);
        assert_eq!(scrub_contact("not json", "a"), Scrubbed::Untouched);
    }

    #[test]
    fn the_predictive_score_maps_to_a_crm_field_and_rides_along_unmapped() {
        let mut record = contact(None);
        let subscription = |fields: &[(&str, &str)]| Subscription {
            name: "crm".into(),
            url: "https://crm.example.com".into(),
            secret_ref: None,
            events: vec!["score.changed".into()],
            fields: fields.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            debounce_ms: 0,
            created_at: 0,
            updated_at: 0,
        };
        let mapped = subscription(&[("predictive", "ai_score__c")]);
        assert_eq!(sync_snapshot(&mapped, &record)["ai_score__c"], Value::Null, "no score yet");
        record.predictive = Some(crate::PredictiveScoreRow { version: 3, score: 72, probability: 0.7213, as_of: 5 });
        assert_eq!(sync_snapshot(&mapped, &record)["ai_score__c"], json!(72));
        let everything = sync_snapshot(&subscription(&[]), &record);
        assert_eq!(everything["predictive"], json!({ "score": 72, "probability": 0.7213, "version": 3 }));
    }

    #[test]
    fn rfc3339_without_a_time_crate() {
        assert_eq!(chrono_like_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(chrono_like_rfc3339(1_772_442_000_000), "2026-03-02T09:00:00.000Z");
        assert_eq!(chrono_like_rfc3339(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(chrono_like_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn templates_fill_dotted_paths() {
        let context = json!({ "contact": { "email": "a@b.c", "scores": { "b2b": { "total": 42.0, "fit": 2.5 } }, "groups": ["x"] } });
        assert_eq!(render("Hot: {{contact.email}} ({{ contact.scores.b2b.total }})", &context), "Hot: a@b.c (42)");
        assert_eq!(render("{{contact.scores.b2b.fit}} {{contact.groups}} [{{nope.x}}]", &context), "2.5 [\"x\"] []");
        assert_eq!(render("unclosed {{contact.email", &context), "unclosed {{contact.email");
    }

    fn live(toml: &str) -> AutomationSet {
        vec![Arc::new(LiveAutomation { automation: Automation::parse(toml).unwrap(), updated_at: 1 })]
    }

    fn contact(last_event_at: Option<Millis>) -> ContactRecord {
        ContactRecord {
            id: "c1".into(),
            email: Some("ann@acme.io".into()),
            attributes: Map::new(),
            groups: Vec::new(),
            owner: None,
            status: None,
            created_at: 0,
            updated_at: 0,
            last_event_at,
            scores: BTreeMap::new(),
            predictive: None,
        }
    }

    fn queued_event(seq: i64, name: &str, at: Millis) -> QueueEntry {
        QueueEntry { seq, event: Some(QueuedEvent { timestamp: at, message_id: format!("m{seq}"), name: name.into() }), before: None, before_predictive: None }
    }

    #[test]
    fn evaluation_asks_for_the_teams_only_when_a_run_assigns() {
        let automations = live(
            "name = \"demo\"\ntrigger = { event = { name = \"Demo Requested\" } }\nlimits = { max = 1, per = \"7d\" }\nactions = [ { assign = { team = \"sales\", strategy = \"round_robin\" } } ]\n",
        );
        let (stored, models, states) = (contact(Some(1_000)), ModelSet::new(), HashMap::new());
        macro_rules! input {
            ($queued:expr, $teams:expr) => {
                EvaluationInput {
                    contact: &stored,
                    models: &models,
                    automations: &automations,
                    queued: $queued,
                    states: &states,
                    events: None,
                    teams: $teams,
                    subscriptions: &[],
                    check_cold: false,
                    now: 2_000,
                }
            };
        }
        let Evaluated::Done(quiet) = evaluate(input!(&[queued_event(7, "Page Viewed", 1_000)], None)) else { panic!("no run assigns, so no teams are needed") };
        assert!(quiet.effects.runs.is_empty() && !quiet.effects.contact_changed);
        assert_eq!(quiet.consumed_through, Some(7), "the entry is consumed even when nothing fires");

        let demo = [queued_event(8, "Demo Requested", 1_500)];
        assert!(matches!(evaluate(input!(&demo, None)), Evaluated::NeedsTeams));
        let team = Team { name: "sales".into(), members: vec!["rep-a".into(), "rep-b".into()], cursor: 1, created_at: 0, updated_at: 0 };
        let mut teams = HashMap::from([("sales".to_string(), team)]);
        let Evaluated::Done(assigned) = evaluate(input!(&demo, Some(&mut teams))) else { panic!("the teams were given") };
        assert_eq!(assigned.contact.owner.as_deref(), Some("rep-b"), "round robin from the team's cursor");
        assert!(assigned.effects.contact_changed);
        assert_eq!(assigned.effects.runs.len(), 1);
        assert_eq!(assigned.effects.teams.iter().map(|t| t.cursor).collect::<Vec<_>>(), vec![2]);
        assert_eq!(assigned.consumed_through, Some(8));
        assert!(assigned.states.iter().any(|(name, state)| name == "demo" && state.runs == vec![2_000]), "the run is remembered for the limits");
    }

    #[test]
    fn a_cold_check_asks_for_the_events_of_a_recently_active_contact() {
        let automations = live("name = \"touch\"\ntrigger = { cold = { points = 2, within = \"90d\" } }\nactions = [ { add_group = { group = \"cold\" } } ]\n");
        let states = HashMap::new();
        let now = 100 * leadscore_core::duration::DAY_MS;
        let evaluate_cold = |stored: &ContactRecord, events: Option<&[ScoringEvent]>| {
            evaluate(EvaluationInput {
                contact: stored,
                models: &ModelSet::new(),
                automations: &automations,
                queued: &[],
                states: &states,
                events,
                teams: None,
                subscriptions: &[],
                check_cold: true,
                now,
            })
        };
        assert!(matches!(evaluate_cold(&contact(Some(now - 1_000)), None), Evaluated::NeedsEvents));
        assert!(matches!(evaluate_cold(&contact(Some(now - 1_000)), Some(&[])), Evaluated::Done(_)), "given, they are not asked for again");
        assert!(matches!(evaluate_cold(&contact(None), None), Evaluated::Done(_)), "a contact never active has nothing to look back at");
    }

    #[test]
    fn a_set_is_current_only_when_names_times_and_flags_match() {
        let automation = Automation::parse("name = \"a\"\ntrigger = { event = { name = \"x\" } }\nactions = [ { add_group = { group = \"g\" } } ]\n").unwrap();
        let set: AutomationSet = vec![Arc::new(LiveAutomation { automation, updated_at: 5 })];
        assert!(is_current(&set, &[("a".into(), 5, true)]));
        assert!(!is_current(&set, &[("a".into(), 6, true)]), "changed since");
        assert!(!is_current(&set, &[("a".into(), 5, false)]), "disabled since");
        assert!(!is_current(&set, &[("a".into(), 5, true), ("b".into(), 1, true)]), "one added");
        assert!(!is_current(&set, &[]), "deleted");
    }
}
