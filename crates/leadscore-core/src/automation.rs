//! Automations (PRODUCT.md §3): the file format, its validation (every problem with its
//! path, like models), and the pure decisions — does a trigger fire, does the filter let
//! the contact through, do the limits allow another run. Storage, delivery and the
//! scheduler live elsewhere; they call these with the instant passed in.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::condition::{Condition, Source, check_only_keys, parse_condition};
use crate::duration::Span;
use crate::model::{Format, ModelError, is_valid_name, parse_document};
use crate::problems::Problems;

#[derive(Clone, Debug)]
pub struct Automation {
    pub name: String,
    /// The model whose scores the trigger and filter read (None: the only live model).
    pub model: Option<String>,
    pub trigger: Trigger,
    pub filter: Filter,
    pub limits: Limits,
    pub actions: Vec<Action>,
    pub enabled: bool,
    /// The automation as JSON, as given.
    pub definition: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ScoreField {
    Fit,
    Activity,
    Total,
    /// The contact's stored predictive score (0–100), not a rule model's.
    Predictive,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Direction {
    Above,
    Below,
}

#[derive(Clone, Debug)]
pub enum Trigger {
    /// Activity points earned in the trailing `within` reach `points`.
    Hot { points: f64, within: Span },
    /// Fewer than `points` activity points in the trailing `within`, for contacts that
    /// have existed at least that long.
    Cold { points: f64, within: Span },
    /// The score crosses `value` in `direction`; re-armed only once it is back past
    /// `rearm` (default: `value` itself).
    Threshold { score: ScoreField, direction: Direction, value: f64, rearm: Option<f64> },
    /// The band changes (to `to` only, when given).
    Band { model: Option<String>, to: Option<String> },
    /// An event of this name arrives.
    Event { name: String },
}

/// Which contacts an automation may run for; every part given must hold.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub group: Option<String>,
    pub band: Option<String>,
    pub owner: Option<String>,
    /// The contact's predictive score is above (or below) this; a contact without one is
    /// not admitted.
    pub predictive: Option<(Direction, f64)>,
    pub condition: Option<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// At most `max` runs per contact within the trailing `per`.
    pub max: Option<(u32, Span)>,
    /// No run within `cooldown` after the previous one.
    pub cooldown: Option<Span>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AssignStrategy {
    RoundRobin { team: String },
    ByAttribute { attribute: String, teams: BTreeMap<String, String>, fallback: Option<String> },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Webhook { url: String, secret_ref: Option<String> },
    Email { to: String, subject: String, body: Option<String> },
    Assign(AssignStrategy),
    Set { attribute: String, value: Value },
    AddGroup { group: String },
    RemoveGroup { group: String },
    Nurture { track_per_band: BTreeMap<String, String> },
}

impl Automation {
    /// The models the automation names, each with where it names it (`model`,
    /// `trigger.band.model`).
    pub fn named_models(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let band_model = match &self.trigger {
            Trigger::Band { model, .. } => model.as_deref(),
            _ => None,
        };
        [("model", self.model.as_deref()), ("trigger.band.model", band_model)].into_iter().filter_map(|(path, model)| Some((path, model?)))
    }

    /// Parses one automation (a TOML table or JSON object).
    pub fn parse(text: &str) -> Result<Automation, ModelError> {
        Self::from_value(parse_document(text, Format::sniff(text))?)
    }

    /// Parses a file of several `[[automation]]` tables (or a JSON list / `{automation: [...]}`).
    pub fn parse_file(text: &str) -> Result<Vec<Automation>, ModelError> {
        let document = parse_document(text, Format::sniff(text))?;
        let items = match document {
            Value::Array(items) => items,
            Value::Object(mut root) => match root.remove("automation") {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(ModelError::Invalid(vec![crate::problems::Problem {
                        path: "automation".into(),
                        message: "expected [[automation]] tables".into(),
                    }]));
                }
            },
            _ => return Err(ModelError::Invalid(vec![crate::problems::Problem { path: String::new(), message: "expected [[automation]] tables".into() }])),
        };
        let mut problems = Problems::default();
        let mut automations = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let label = item.get("name").and_then(Value::as_str).map_or(format!("automation[{index}]"), |n| format!("automation[{index}] {n:?}"));
            let mut own = Problems::default();
            if let Some(automation) = compile(item, &mut own)
                && own.is_empty()
            {
                automations.push(automation);
            }
            for problem in own.into_vec() {
                let path = if problem.path.is_empty() { label.clone() } else { format!("{label}.{}", problem.path) };
                problems.add(&path, &problem.message);
            }
        }
        let mut seen = std::collections::HashSet::new();
        for automation in &automations {
            if !seen.insert(automation.name.clone()) {
                problems.add("automation", &format!("the name {:?} is used twice", automation.name));
            }
        }
        if problems.is_empty() { Ok(automations) } else { Err(ModelError::Invalid(problems.into_vec())) }
    }

    pub fn from_value(definition: Value) -> Result<Automation, ModelError> {
        let mut problems = Problems::default();
        match compile(&definition, &mut problems) {
            Some(automation) if problems.is_empty() => Ok(automation),
            _ => Err(ModelError::Invalid(problems.into_vec())),
        }
    }
}

fn compile(definition: &Value, problems: &mut Problems) -> Option<Automation> {
    let Some(root) = definition.as_object() else {
        problems.add("", "an automation must be a table");
        return None;
    };
    check_only_keys(root, &["name", "model", "trigger", "filter", "limits", "actions", "enabled", "description"], "", problems);
    let name = match root.get("name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() && n.len() <= 200 => n.to_string(),
        _ => {
            problems.add("name", "required: 1-200 characters");
            String::new()
        }
    };
    let model = match root.get("model") {
        None => None,
        Some(Value::String(m)) if is_valid_name(m) => Some(m.clone()),
        Some(other) => {
            problems.add("model", &format!("{other} is not a model name"));
            None
        }
    };
    let enabled = match root.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            problems.add("enabled", "must be true or false");
            true
        }
    };
    let trigger = match root.get("trigger") {
        Some(t) => parse_trigger(t, problems),
        None => {
            problems.add("trigger", "required: hot, cold, threshold, band or event");
            None
        }
    };
    let filter = root.get("filter").map(|f| parse_filter(f, problems)).unwrap_or_default();
    let limits = root.get("limits").map(|l| parse_limits(l, problems)).unwrap_or_default();
    let actions = match root.get("actions").and_then(Value::as_array) {
        Some(items) if !items.is_empty() => items.iter().enumerate().filter_map(|(i, a)| parse_action(a, &format!("actions[{i}]"), problems)).collect(),
        _ => {
            problems.add("actions", "required: a non-empty list of actions");
            Vec::new()
        }
    };
    Some(Automation { name, model, trigger: trigger?, filter, limits, actions, enabled, definition: definition.clone() })
}

/// The single `{ kind = {...} }` entry of a table such as `trigger` or an action.
fn single_entry<'a>(value: &'a Value, path: &str, kinds: &[&str], problems: &mut Problems) -> Option<(&'a str, &'a Map<String, Value>)> {
    let Some(table) = value.as_object().filter(|t| t.len() == 1) else {
        problems.add(path, &format!("must be a table with exactly one of {}", kinds.join(", ")));
        return None;
    };
    let (kind, body) = table.iter().next()?;
    if !kinds.contains(&kind.as_str()) {
        problems.add(path, &format!("unknown {kind:?}; one of {}", kinds.join(", ")));
        return None;
    }
    let Some(body) = body.as_object() else {
        problems.add(&format!("{path}.{kind}"), "must be a table");
        return None;
    };
    Some((kind.as_str(), body))
}

fn number(t: &Map<String, Value>, key: &str, path: &str, problems: &mut Problems) -> Option<f64> {
    let n = t.get(key).and_then(Value::as_f64).filter(|f| f.is_finite());
    if n.is_none() {
        problems.add(&format!("{path}.{key}"), "required: a number");
    }
    n
}

fn span(t: &Map<String, Value>, key: &str, path: &str, problems: &mut Problems) -> Option<Span> {
    match t.get(key).and_then(Value::as_str) {
        Some(s) => Span::parse(s).map_err(|e| problems.add(&format!("{path}.{key}"), &e)).ok(),
        None => {
            problems.add(&format!("{path}.{key}"), "required: a duration such as \"1d\"");
            None
        }
    }
}

fn string(t: &Map<String, Value>, key: &str, path: &str, problems: &mut Problems) -> Option<String> {
    match t.get(key).and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => Some(s.to_string()),
        _ => {
            problems.add(&format!("{path}.{key}"), "required: a non-empty string");
            None
        }
    }
}

fn parse_trigger(value: &Value, problems: &mut Problems) -> Option<Trigger> {
    let (kind, body) = single_entry(value, "trigger", &["hot", "cold", "threshold", "band", "event"], problems)?;
    let path = format!("trigger.{kind}");
    match kind {
        "hot" | "cold" => {
            check_only_keys(body, &["points", "within"], &path, problems);
            let points = number(body, "points", &path, problems);
            let within = span(body, "within", &path, problems);
            let (points, within) = (points?, within?);
            Some(if kind == "hot" { Trigger::Hot { points, within } } else { Trigger::Cold { points, within } })
        }
        "threshold" => {
            check_only_keys(body, &["score", "above", "below", "rearm"], &path, problems);
            let score = match body.get("score").and_then(Value::as_str).unwrap_or("total") {
                "total" => ScoreField::Total,
                "fit" => ScoreField::Fit,
                "activity" => ScoreField::Activity,
                "predictive" => ScoreField::Predictive,
                other => {
                    problems.add(&format!("{path}.score"), &format!("{other:?} is not a score; use total, fit, activity or predictive"));
                    return None;
                }
            };
            let (direction, value) = match (body.get("above").and_then(Value::as_f64), body.get("below").and_then(Value::as_f64)) {
                (Some(v), None) => (Direction::Above, v),
                (None, Some(v)) => (Direction::Below, v),
                _ => {
                    problems.add(&path, "give exactly one of `above` or `below` (a number)");
                    return None;
                }
            };
            let rearm = body.get("rearm").map(|r| r.as_f64());
            let rearm = match rearm {
                None => None,
                Some(Some(r)) if (direction == Direction::Above && r <= value) || (direction == Direction::Below && r >= value) => Some(r),
                Some(_) => {
                    problems.add(&format!("{path}.rearm"), "must be a number on the other side of the threshold (below `above`, above `below`)");
                    None
                }
            };
            Some(Trigger::Threshold { score, direction, value, rearm })
        }
        "band" => {
            check_only_keys(body, &["model", "to"], &path, problems);
            let model = body.get("model").and_then(Value::as_str).map(str::to_string);
            let to = body.get("to").and_then(Value::as_str).map(str::to_string);
            Some(Trigger::Band { model, to })
        }
        _ => {
            check_only_keys(body, &["name"], &path, problems);
            Some(Trigger::Event { name: string(body, "name", &path, problems)? })
        }
    }
}

fn parse_filter(value: &Value, problems: &mut Problems) -> Filter {
    let Some(table) = value.as_object() else {
        problems.add("filter", "must be a table: { group = … }, { band = … }, { owner = … } or a condition");
        return Filter::default();
    };
    let shorthand = |key: &str| table.get(key).and_then(Value::as_str).map(str::to_string);
    let mut filter = Filter { group: shorthand("group"), band: shorthand("band"), owner: shorthand("owner"), predictive: None, condition: None };
    let mut rest = table.clone();
    if let Some(predictive) = rest.remove("predictive") {
        filter.predictive = parse_predictive_filter(&predictive, problems);
    }
    for key in ["group", "band", "owner"] {
        if let Some(v) = rest.remove(key)
            && !v.is_string()
        {
            problems.add(&format!("filter.{key}"), "must be a string");
        }
    }
    if !rest.is_empty() {
        filter.condition = parse_condition(&Value::Object(rest), "filter", problems);
        if filter.condition.as_ref().is_some_and(|c| c.reads(Source::Property)) {
            problems.add("filter", "a filter reads contact attributes (`attribute = …`), not event properties");
        }
    }
    filter
}

/// `predictive = { above = 60 }` or `{ below = 20 }`, on the 0–100 scale.
fn parse_predictive_filter(value: &Value, problems: &mut Problems) -> Option<(Direction, f64)> {
    let path = "filter.predictive";
    let Some(body) = value.as_object() else {
        problems.add(path, "must be a table: { above = 60 } or { below = 20 }");
        return None;
    };
    check_only_keys(body, &["above", "below"], path, problems);
    let bound = match (body.get("above").map(Value::as_f64), body.get("below").map(Value::as_f64)) {
        (Some(Some(v)), None) => (Direction::Above, v),
        (None, Some(Some(v))) => (Direction::Below, v),
        _ => {
            problems.add(path, "give exactly one of `above` or `below` (a number from 0 to 100)");
            return None;
        }
    };
    if !(0.0..=100.0).contains(&bound.1) {
        problems.add(path, "the predictive score runs from 0 to 100");
        return None;
    }
    Some(bound)
}

fn parse_limits(value: &Value, problems: &mut Problems) -> Limits {
    let Some(table) = value.as_object() else {
        problems.add("limits", "must be a table such as { max = 1, per = \"7d\", cooldown = \"1d\" }");
        return Limits::default();
    };
    check_only_keys(table, &["max", "per", "cooldown"], "limits", problems);
    let max = match (table.get("max"), table.get("per")) {
        (None, None) => None,
        (Some(m), Some(_)) => match m.as_u64().filter(|m| (1..=1_000_000).contains(m)) {
            Some(m) => span(table, "per", "limits", problems).map(|per| (m as u32, per)),
            None => {
                problems.add("limits.max", "must be a whole number from 1");
                None
            }
        },
        _ => {
            problems.add("limits", "`max` and `per` go together");
            None
        }
    };
    let cooldown = table.get("cooldown").and_then(|_| span(table, "cooldown", "limits", problems));
    Limits { max, cooldown }
}

fn parse_action(value: &Value, path: &str, problems: &mut Problems) -> Option<Action> {
    let kinds = ["webhook", "email", "assign", "set", "add_group", "remove_group", "nurture"];
    let (kind, body) = single_entry(value, path, &kinds, problems)?;
    let path = format!("{path}.{kind}");
    Some(match kind {
        "webhook" => {
            check_only_keys(body, &["url", "secret_ref"], &path, problems);
            let url = string(body, "url", &path, problems)?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.add(&format!("{path}.url"), "must be an http(s) URL");
            }
            Action::Webhook { url, secret_ref: body.get("secret_ref").and_then(Value::as_str).map(str::to_string) }
        }
        "email" => {
            check_only_keys(body, &["to", "subject", "body"], &path, problems);
            let to = string(body, "to", &path, problems)?;
            if to != "owner" && !to.contains('@') {
                problems.add(&format!("{path}.to"), "must be \"owner\" or an e-mail address");
            }
            let subject = string(body, "subject", &path, problems)?;
            Action::Email { to, subject, body: body.get("body").and_then(Value::as_str).map(str::to_string) }
        }
        "assign" => {
            check_only_keys(body, &["team", "strategy", "by_attribute", "teams", "fallback"], &path, problems);
            if let Some(attribute) = body.get("by_attribute").and_then(Value::as_str) {
                let teams: BTreeMap<String, String> = body
                    .get("teams")
                    .and_then(Value::as_object)
                    .map(|t| t.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                    .unwrap_or_default();
                if teams.is_empty() {
                    problems.add(&format!("{path}.teams"), "by_attribute needs `teams = { VALUE = \"team\" }`");
                }
                Action::Assign(AssignStrategy::ByAttribute {
                    attribute: attribute.to_string(),
                    teams,
                    fallback: body.get("fallback").and_then(Value::as_str).map(str::to_string),
                })
            } else {
                let team = string(body, "team", &path, problems)?;
                match body.get("strategy").and_then(Value::as_str).unwrap_or("round_robin") {
                    "round_robin" => {}
                    other => problems.add(&format!("{path}.strategy"), &format!("{other:?} is not a strategy; use round_robin (or by_attribute)")),
                }
                Action::Assign(AssignStrategy::RoundRobin { team })
            }
        }
        "set" => {
            check_only_keys(body, &["attribute", "value"], &path, problems);
            let attribute = string(body, "attribute", &path, problems)?;
            let Some(value) = body.get("value").cloned() else {
                problems.add(&format!("{path}.value"), "required");
                return None;
            };
            Action::Set { attribute, value }
        }
        "add_group" | "remove_group" => {
            check_only_keys(body, &["group"], &path, problems);
            let group = string(body, "group", &path, problems)?;
            if kind == "add_group" { Action::AddGroup { group } } else { Action::RemoveGroup { group } }
        }
        _ => {
            check_only_keys(body, &["track_per_band"], &path, problems);
            let tracks: BTreeMap<String, String> = body
                .get("track_per_band")
                .and_then(Value::as_object)
                .map(|t| t.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default();
            if tracks.is_empty() {
                problems.add(&format!("{path}.track_per_band"), "required: { BAND = \"track\" } (\"\" leaves every track)");
            }
            Action::Nurture { track_per_band: tracks }
        }
    })
}

/// What the filter sees of a contact.
pub struct FilterInput<'a> {
    pub attributes: &'a Map<String, Value>,
    pub groups: &'a [String],
    pub owner: Option<&'a str>,
    pub band: Option<&'a str>,
    /// The contact's predictive score (0–100), None when it has none.
    pub predictive: Option<f64>,
}

impl Filter {
    pub fn admits(&self, contact: &FilterInput<'_>) -> bool {
        self.group.as_ref().is_none_or(|g| contact.groups.contains(g))
            && self.band.as_deref().is_none_or(|b| contact.band == Some(b))
            && self.owner.as_deref().is_none_or(|o| contact.owner == Some(o))
            && self.predictive.as_ref().is_none_or(|(direction, value)| contact.predictive.is_some_and(|score| crossed(direction, *value, score)))
            && self.condition.as_ref().is_none_or(|c| c.matches(contact.attributes, &Map::new()))
    }
}

/// Whether `score` is at or past `value` in `direction`.
pub fn crossed(direction: &Direction, value: f64, score: f64) -> bool {
    match direction {
        Direction::Above => score >= value,
        Direction::Below => score <= value,
    }
}

/// Activity points (raw, undecayed) earned in the trailing window (t − within, t].
pub fn points_within(awards: &[(i64, f64)], at: i64, within: Span) -> f64 {
    awards.iter().filter(|(t, _)| *t > at - within.millis() && *t <= at).map(|(_, p)| p).sum()
}

/// A hot trigger fires when an event lifts the trailing window's points from below
/// `points` to at least `points`: `before` is the window's sum without the event's awards.
pub fn hot_fires(points: f64, before: f64, after: f64) -> bool {
    before < points && after >= points
}

/// A cold trigger holds for a contact created at least `within` before `at` whose
/// trailing window holds fewer than `points`.
pub fn cold_holds(points: f64, within: Span, created_at: i64, window_points: f64, at: i64) -> bool {
    at - created_at >= within.millis() && window_points < points
}

/// Threshold state per contact: armed until it fires, re-armed once the score is back
/// past the re-arm line. Returns (fires, armed afterwards).
pub fn threshold_step(direction: &Direction, value: f64, rearm: Option<f64>, armed: bool, score: f64) -> (bool, bool) {
    let rearm = rearm.unwrap_or(value);
    let (crossed, back) = match direction {
        Direction::Above => (score >= value, score < rearm),
        Direction::Below => (score <= value, score > rearm),
    };
    if armed && crossed {
        (true, false)
    } else if !armed && back {
        (false, true)
    } else {
        (false, armed)
    }
}

/// Whether the limits allow a run at `at`, given this contact's recorded runs (times). A
/// run recorded with a later time counts too: evaluations in several processes take `at`
/// before they wait for the contact's lock, so the run that got the lock first can carry
/// a later time than the one that waited.
pub fn limits_allow(limits: &Limits, runs: &[i64], at: i64) -> bool {
    if let Some(cooldown) = limits.cooldown
        && runs.iter().any(|t| at - t < cooldown.millis())
    {
        return false;
    }
    if let Some((max, per)) = limits.max {
        let recent = runs.iter().filter(|t| **t > at - per.millis()).count();
        if recent >= max as usize {
            return false;
        }
    }
    true
}

/// The example automations of PRODUCT.md §3.
pub const EXAMPLE_AUTOMATIONS_TOML: &str = include_str!("example_automations.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::{DAY_MS, HOUR_MS};

    #[test]
    fn the_contract_examples_parse() {
        let automations = Automation::parse_file(EXAMPLE_AUTOMATIONS_TOML).unwrap();
        assert_eq!(automations.len(), 4);
        assert!(matches!(automations[0].trigger, Trigger::Hot { points, .. } if points == 20.0));
        assert_eq!(automations[0].filter.group.as_deref(), Some("austin"));
        assert_eq!(automations[0].limits.max.map(|(m, p)| (m, p.millis())), Some((1, 7 * DAY_MS)));
        assert_eq!(automations[0].actions.len(), 3);
        assert!(matches!(automations[1].trigger, Trigger::Cold { .. }));
        assert!(matches!(&automations[2].trigger, Trigger::Threshold { direction: Direction::Above, value, .. } if *value == 100.0));
        assert!(matches!(&automations[2].actions[1], Action::Assign(AssignStrategy::ByAttribute { teams, .. }) if teams["DE"] == "emea-sales"));
        assert!(matches!(&automations[3].actions[0], Action::Nurture { track_per_band } if track_per_band["hot"].is_empty()));
    }

    #[test]
    fn lists_every_problem() {
        let text = r#"
[[automation]]
name = "bad"
trigger = { lukewarm = { points = 1 } }
filter = { group = 5, attribute = "x", op = "near", value = 1 }
limits = { max = 0, per = "7 days" }
actions = [ { webhook = { url = "ftp://x" } }, { email = { to = "nobody", subject = "" } }, { teleport = {} } ]
[[automation]]
name = "ok"
trigger = { event = { name = "Unsubscribed" } }
actions = [ { add_group = { group = "unsubscribed" } } ]
"#;
        let err = Automation::parse_file(text).unwrap_err();
        let problems: Vec<String> = err.problems().iter().map(|p| format!("{} | {}", p.path, p.message)).collect();
        for expect in [
            "automation[0] \"bad\".trigger | unknown \"lukewarm\"",
            "automation[0] \"bad\".filter.group | must be a string",
            "automation[0] \"bad\".filter.op | unknown operator",
            "automation[0] \"bad\".limits.max | must be a whole number",
            "automation[0] \"bad\".actions[0].webhook.url | must be an http(s) URL",
            "automation[0] \"bad\".actions[1].email.to | must be \"owner\"",
            "automation[0] \"bad\".actions[1].email.subject | required",
            "automation[0] \"bad\".actions[2] | unknown \"teleport\"",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(expect)), "missing {expect:?} in {problems:#?}");
        }
    }

    #[test]
    fn hot_fires_on_the_crossing_only() {
        let within = Span::parse("1d").unwrap();
        let awards = [(0, 15.0), (HOUR_MS, 3.0), (2 * HOUR_MS, 3.0)];
        let before = points_within(&awards[..2], 2 * HOUR_MS, within);
        let after = points_within(&awards, 2 * HOUR_MS, within);
        assert_eq!((before, after), (18.0, 21.0));
        assert!(hot_fires(20.0, before, after));
        assert!(!hot_fires(20.0, after, after + 3.0), "already hot: no second firing");
        // A day later the first award has left the half-open window.
        assert_eq!(points_within(&awards, DAY_MS, within), 6.0);
    }

    #[test]
    fn cold_needs_age_and_quiet() {
        let within = Span::parse("90d").unwrap();
        assert!(cold_holds(2.0, within, 0, 0.0, 90 * DAY_MS));
        assert!(!cold_holds(2.0, within, 0, 0.0, 90 * DAY_MS - 1), "too young");
        assert!(!cold_holds(2.0, within, 0, 2.0, 120 * DAY_MS), "2 points is not fewer than 2");
    }

    #[test]
    fn thresholds_do_not_refire_while_hovering() {
        let mut armed = true;
        let mut fired = Vec::new();
        for score in [90.0, 100.0, 99.0, 101.0, 95.0, 89.0, 100.0] {
            let (fires, next) = threshold_step(&Direction::Above, 100.0, Some(90.0), armed, score);
            armed = next;
            fired.push(fires);
        }
        // Fires at 100, not again at 101 (not re-armed above 90), re-arms at 89, fires at 100.
        assert_eq!(fired, [false, true, false, false, false, false, true]);
        let (fires, _) = threshold_step(&Direction::Below, 10.0, None, true, 9.0);
        assert!(fires);
    }

    #[test]
    fn limits_count_runs_in_windows() {
        let limits = Limits { max: Some((2, Span::parse("7d").unwrap())), cooldown: Some(Span::parse("1d").unwrap()) };
        assert!(limits_allow(&limits, &[], 0));
        assert!(!limits_allow(&limits, &[0], DAY_MS - 1), "cooldown");
        assert!(limits_allow(&limits, &[0], DAY_MS));
        assert!(!limits_allow(&limits, &[0, 2 * DAY_MS], 4 * DAY_MS), "max 2 per 7d");
        assert!(limits_allow(&limits, &[0, 2 * DAY_MS], 7 * DAY_MS), "the first run left the window");
        // Another process recorded a run with a slightly later clock than this evaluation's.
        let once = Limits { max: Some((1, Span::from_millis(30 * DAY_MS))), cooldown: None };
        assert!(!limits_allow(&once, &[1_000], 900), "a run stamped after `at` still counts");
        assert!(!limits_allow(&limits, &[1_000], 900), "and holds the cooldown");
    }

    #[test]
    fn filters_combine() {
        let filter = Automation::parse(r#"{"name": "f", "trigger": {"event": {"name": "x"}}, "filter": {"group": "austin", "attribute": "country", "op": "eq", "value": "US"}, "actions": [{"add_group": {"group": "g"}}]}"#)
            .unwrap()
            .filter;
        let attributes = serde_json::json!({"country": "US"}).as_object().cloned().unwrap();
        let groups = vec!["austin".to_string()];
        let input = FilterInput { attributes: &attributes, groups: &groups, owner: None, band: Some("hot"), predictive: None };
        assert!(filter.admits(&input));
        let input = FilterInput { attributes: &attributes, groups: &[], owner: None, band: Some("hot"), predictive: None };
        assert!(!filter.admits(&input));
    }

    #[test]
    fn a_predictive_filter_admits_scores_past_its_line_and_never_a_contact_without_one() {
        let parse = |filter: &str| {
            Automation::parse(&format!(
                r#"{{"name": "f", "trigger": {{"threshold": {{"score": "predictive", "above": 70}}}}, "filter": {filter}, "actions": [{{"add_group": {{"group": "g"}}}}]}}"#
            ))
        };
        let automation = parse(r#"{"predictive": {"above": 60}, "attribute": "country", "op": "eq", "value": "US"}"#).unwrap();
        assert!(matches!(automation.trigger, Trigger::Threshold { score: ScoreField::Predictive, .. }));
        let attributes = serde_json::json!({"country": "US"}).as_object().cloned().unwrap();
        let admits =
            |predictive: Option<f64>| automation.filter.admits(&FilterInput { attributes: &attributes, groups: &[], owner: None, band: None, predictive });
        assert!(admits(Some(60.0)) && admits(Some(99.0)));
        assert!(!admits(Some(59.0)), "below the line");
        assert!(!admits(None), "no predictive score yet");
        for (filter, says) in [
            (r#"{"predictive": {"above": 101}}"#, "runs from 0 to 100"),
            (r#"{"predictive": {"above": 50, "below": 20}}"#, "exactly one of `above` or `below`"),
            (r#"{"predictive": 50}"#, "must be a table"),
        ] {
            let problems = parse(filter).unwrap_err().to_string();
            assert!(problems.contains(says), "{filter}: {problems}");
        }
    }
}
