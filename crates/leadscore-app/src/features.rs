//! The predictive model's features of a contact as of an instant (F21, contract §9): its
//! attributes, counts of what it did in the trailing 7 / 30 / 90 days, days since its last
//! activity, the rule models' fit and activity, and what the rest of its account did.
//! Pure: a function of the contact's attributes, events, cards and account activity and
//! of the instant, which the caller passes — training passes the outcome's time, so
//! nothing recorded after it can reach its features.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use leadscore_core::ScoreCard;
use leadscore_predict::{FeatureKind, FeatureSpec, Value as Cell};
use leadscore_store::scoring::ScoringEvent;
use leadscore_store::{AccountActivity, LogEntry, Millis};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const DAY: Millis = 24 * 3_600_000;
/// The trailing windows events are counted in.
pub const WINDOWS_DAYS: [i64; 3] = [7, 30, 90];
/// Page views are counted per first path segment in these windows.
const PAGE_WINDOWS_DAYS: [i64; 2] = [30, 90];
/// At most this many event names and page groups become features (the most frequent).
const MAX_EVENT_NAMES: usize = 40;
const MAX_PAGE_GROUPS: usize = 20;
/// A name, group or attribute seen fewer times than this in training is not a feature.
const MIN_SEEN: usize = 10;
/// Attributes that name a contact rather than describe it.
const IDENTIFYING_ATTRIBUTES: &[&str] = &["email", "anonymous_id", "id", "name", "first_name", "last_name", "phone"];

/// Which features a model reads, decided from its training data; stored with the model so
/// that scoring builds the very same row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSchema {
    pub attributes: Vec<AttributeFeature>,
    /// Event names counted over [`WINDOWS_DAYS`].
    pub events: Vec<String>,
    /// First path segments of page views (`/pricing`), counted over the page windows.
    pub page_groups: Vec<String>,
    /// Rule models whose fit and activity are features.
    pub models: Vec<String>,
    /// Whether what the rest of the contact's account did is read: on when enough
    /// training contacts had an account (versions trained before account features existed
    /// read none).
    #[serde(default)]
    pub accounts: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeFeature {
    pub key: String,
    pub kind: FeatureKind,
}

/// What a feature counts or reads, for turning learned weights into rules.
#[derive(Clone, Debug, PartialEq)]
pub enum FeatureSource {
    Attribute(String),
    /// Events of this name in a trailing window.
    EventCount(String),
    /// Page views under this first path segment in a trailing window.
    PageCount(String),
    /// Every event in a trailing window.
    AllEvents,
    DaysIdle,
    /// A rule model's fit or activity.
    RuleModel,
    /// What the rest of the contact's account did.
    Account,
}

/// An attribute training did not use, and why (shown in the report).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkippedAttribute {
    pub attribute: String,
    pub reason: String,
}

/// A contact as of an instant: what its features are computed from (training passes a
/// closed contact as of its outcome, scoring a contact as of now).
pub struct Snapshot<'a> {
    pub attributes: &'a Map<String, Value>,
    pub events: &'a [ScoringEvent],
    pub cards: &'a BTreeMap<String, ScoreCard>,
    /// What the rest of its account did by `at`; None without an account.
    pub account: Option<AccountActivity>,
    pub at: Millis,
}

/// The attributes a contact had at `at`, from its log (every entry carries the attributes
/// it left). A contact whose log starts after `at` (history imported after the fact)
/// counts with the attributes it was created with; without a log, `current`.
pub fn attributes_as_of(log: &[LogEntry], at: Millis, current: &Map<String, Value>) -> Map<String, Value> {
    let with_attributes = || log.iter().filter_map(|entry| entry.data.get("attributes").and_then(Value::as_object).map(|a| (entry.at, a)));
    let before = with_attributes().filter(|(when, _)| *when <= at).max_by_key(|(when, _)| *when).map(|(_, a)| a.clone());
    before.or_else(|| with_attributes().min_by_key(|(when, _)| *when).map(|(_, a)| a.clone())).unwrap_or_else(|| current.clone())
}

/// The first path segment of a page view (`/pricing/teams` → `/pricing`), if it has a path.
fn page_group(event: &ScoringEvent) -> Option<String> {
    if event.name != "page" {
        return None;
    }
    let path = event.properties.get("path").and_then(Value::as_str)?;
    let first = path.trim_start_matches('/').split(['/', '?', '#']).next().unwrap_or("");
    Some(format!("/{first}"))
}

/// An attribute's value as a cell: absent, null or empty text is missing.
fn attribute_cell(value: Option<&Value>) -> Cell {
    match value {
        None | Some(Value::Null) => Cell::Missing,
        Some(Value::String(text)) if text.trim().is_empty() => Cell::Missing,
        Some(Value::String(text)) => Cell::Text(text.trim().to_string()),
        Some(Value::Number(number)) => number.as_f64().map_or(Cell::Missing, Cell::Number),
        Some(Value::Bool(flag)) => Cell::Text(flag.to_string()),
        Some(other) => Cell::Text(other.to_string()),
    }
}

impl FeatureSchema {
    /// Chooses the features from the training snapshots: attributes present often enough
    /// that do not identify the contact (an id, an e-mail, a value nearly every contact has
    /// its own of), numeric when nearly all their values are numbers; the most frequent
    /// event names and page groups; the rule models named; the account's activity when
    /// enough of them had an account.
    pub fn from_training(snapshots: &[Snapshot<'_>], models: Vec<String>, exclude: &[String]) -> (FeatureSchema, Vec<SkippedAttribute>) {
        let mut values: BTreeMap<&str, Vec<Cell>> = BTreeMap::new();
        for snapshot in snapshots {
            for (key, value) in snapshot.attributes {
                let cell = attribute_cell(Some(value));
                if cell != Cell::Missing {
                    values.entry(key.as_str()).or_default().push(cell);
                }
            }
        }
        let mut attributes = Vec::new();
        let mut skipped = Vec::new();
        let mut skip = |key: &str, reason: String| skipped.push(SkippedAttribute { attribute: key.to_string(), reason });
        for (key, cells) in values {
            if exclude.iter().any(|e| e == key) {
                skip(key, "excluded by the request".into());
                continue;
            }
            if IDENTIFYING_ATTRIBUTES.contains(&key.to_ascii_lowercase().as_str()) {
                skip(key, "identifies the contact".into());
                continue;
            }
            if cells.len() < MIN_SEEN {
                skip(key, format!("set on only {} closed contacts", cells.len()));
                continue;
            }
            let numeric = cells.iter().filter(|c| c.as_number().is_some()).count();
            let distinct: BTreeSet<String> = cells.iter().filter_map(Cell::as_level).collect();
            let kind = if numeric * 100 >= cells.len() * 95 { FeatureKind::Numeric } else { FeatureKind::Categorical };
            // An identifier: every value its own (numeric ids), or nearly so (text ids).
            let identifier = match kind {
                FeatureKind::Numeric => distinct.len() == cells.len() && cells.iter().all(|c| c.as_number().is_some_and(|x| x.fract() == 0.0)),
                FeatureKind::Categorical => distinct.len() * 2 > cells.len(),
            };
            if identifier {
                skip(key, format!("{} different values in {} contacts: identifies the contact", distinct.len(), cells.len()));
                continue;
            }
            attributes.push(AttributeFeature { key: key.to_string(), kind });
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut groups: HashMap<String, usize> = HashMap::new();
        for snapshot in snapshots {
            for event in snapshot.events.iter().filter(|e| e.timestamp <= snapshot.at) {
                *names.entry(event.name.as_str()).or_default() += 1;
                if let Some(group) = page_group(event) {
                    *groups.entry(group).or_default() += 1;
                }
            }
        }
        let most_frequent = |counts: Vec<(String, usize)>, max: usize| {
            let mut counts: Vec<(String, usize)> = counts.into_iter().filter(|(_, n)| *n >= MIN_SEEN).collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            counts.into_iter().take(max).map(|(name, _)| name).collect::<Vec<_>>()
        };
        let events = most_frequent(names.into_iter().map(|(n, c)| (n.to_string(), c)).collect(), MAX_EVENT_NAMES);
        let page_groups = most_frequent(groups.into_iter().collect(), MAX_PAGE_GROUPS);
        let accounts = snapshots.iter().filter(|s| s.account.is_some()).count() >= MIN_SEEN;
        (FeatureSchema { attributes, events, page_groups, models, accounts }, skipped)
    }

    /// Where each feature comes from, in row order (the order of [`specs`](Self::specs)).
    pub fn sources(&self) -> Vec<FeatureSource> {
        let mut sources: Vec<FeatureSource> = self.attributes.iter().map(|a| FeatureSource::Attribute(a.key.clone())).collect();
        for name in &self.events {
            sources.extend(WINDOWS_DAYS.iter().map(|_| FeatureSource::EventCount(name.clone())));
        }
        for group in &self.page_groups {
            sources.extend(PAGE_WINDOWS_DAYS.iter().map(|_| FeatureSource::PageCount(group.clone())));
        }
        sources.extend(WINDOWS_DAYS.iter().map(|_| FeatureSource::AllEvents));
        sources.push(FeatureSource::DaysIdle);
        for _ in &self.models {
            sources.extend([FeatureSource::RuleModel, FeatureSource::RuleModel]);
        }
        if self.accounts {
            sources.push(FeatureSource::Account);
            sources.extend(AccountActivity::WINDOWS_DAYS.iter().map(|_| FeatureSource::Account));
        }
        sources
    }

    /// The features in row order, named as a person reads them.
    pub fn specs(&self) -> Vec<FeatureSpec> {
        let mut specs: Vec<FeatureSpec> = self.attributes.iter().map(|a| FeatureSpec { name: a.key.clone(), kind: a.kind }).collect();
        for name in &self.events {
            // Page and screen views are events named `page` and `screen`: said in words.
            let said = match name.as_str() {
                "page" => "page views",
                "screen" => "screen views",
                other => other,
            };
            for days in WINDOWS_DAYS {
                specs.push(FeatureSpec::numeric(format!("{said} in {days} days")));
            }
        }
        for group in &self.page_groups {
            for days in PAGE_WINDOWS_DAYS {
                specs.push(FeatureSpec::numeric(format!("pages under {group} in {days} days")));
            }
        }
        for days in WINDOWS_DAYS {
            specs.push(FeatureSpec::numeric(format!("events in {days} days")));
        }
        specs.push(FeatureSpec::numeric("days since the last activity"));
        for model in &self.models {
            specs.push(FeatureSpec::numeric(format!("{model} fit")));
            specs.push(FeatureSpec::numeric(format!("{model} activity")));
        }
        if self.accounts {
            let [_, longest] = AccountActivity::WINDOWS_DAYS;
            specs.push(FeatureSpec::numeric(format!("colleagues active in {longest} days")));
            for days in AccountActivity::WINDOWS_DAYS {
                specs.push(FeatureSpec::numeric(format!("colleagues' events in {days} days")));
            }
        }
        specs
    }

    /// A contact's row as of its instant: events after it are not looked at, whatever the
    /// caller passed.
    pub fn row(&self, contact: &Snapshot<'_>) -> Vec<Cell> {
        let Snapshot { attributes, events, cards, account, at } = *contact;
        let mut row: Vec<Cell> = self.attributes.iter().map(|a| attribute_cell(attributes.get(&a.key))).collect();
        let seen: Vec<&ScoringEvent> = events.iter().filter(|e| e.timestamp <= at).collect();
        let within = |event: &ScoringEvent, days: i64| event.timestamp > at - days * DAY;
        for name in &self.events {
            for days in WINDOWS_DAYS {
                let count = seen.iter().filter(|e| &e.name == name && within(e, days)).count();
                row.push(Cell::Number(count as f64));
            }
        }
        let groups: Vec<(Option<String>, Millis)> = seen.iter().map(|e| (page_group(e), e.timestamp)).collect();
        for group in &self.page_groups {
            for days in PAGE_WINDOWS_DAYS {
                let count = groups.iter().filter(|(g, t)| g.as_ref() == Some(group) && *t > at - days * DAY).count();
                row.push(Cell::Number(count as f64));
            }
        }
        for days in WINDOWS_DAYS {
            row.push(Cell::Number(seen.iter().filter(|e| within(e, days)).count() as f64));
        }
        let last = seen.iter().map(|e| e.timestamp).max();
        row.push(last.map_or(Cell::Missing, |t| Cell::Number(((at - t) as f64 / DAY as f64 * 10.0).round() / 10.0)));
        for model in &self.models {
            match cards.get(model) {
                Some(card) => {
                    row.push(Cell::Number(card.fit));
                    row.push(Cell::Number(card.activity));
                }
                None => row.extend([Cell::Missing, Cell::Missing]),
            }
        }
        if self.accounts {
            match account {
                Some(a) => row.extend([a.active_colleagues, a.events_30d, a.events_90d].map(|n| Cell::Number(n as f64))),
                // No account is not a quiet account: the model learns it apart.
                None => row.extend([Cell::Missing, Cell::Missing, Cell::Missing]),
            }
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, path: Option<&str>, at: Millis) -> ScoringEvent {
        let mut properties = Map::new();
        if let Some(path) = path {
            properties.insert("path".into(), json!(path));
        }
        ScoringEvent { timestamp: at, message_id: format!("m{at}"), name: name.into(), properties }
    }

    fn schema() -> FeatureSchema {
        FeatureSchema {
            attributes: vec![
                AttributeFeature { key: "source".into(), kind: FeatureKind::Categorical },
                AttributeFeature { key: "size".into(), kind: FeatureKind::Numeric },
            ],
            events: vec!["Webinar Attended".into()],
            page_groups: vec!["/pricing".into()],
            models: vec!["b2b".into()],
            accounts: true,
        }
    }

    #[test]
    fn a_row_sees_nothing_after_its_instant() {
        let at = 100 * DAY;
        let attributes = json!({ "source": "Reference", "size": 250 }).as_object().cloned().unwrap_or_default();
        let before =
            vec![event("Webinar Attended", None, at - 3 * DAY), event("page", Some("/pricing/teams"), at - 20 * DAY), event("page", Some("/careers"), at)];
        let mut with_later = before.clone();
        with_later.push(event("Webinar Attended", None, at + 1));
        with_later.push(event("page", Some("/pricing"), at + DAY));
        let cards =
            BTreeMap::from([("b2b".to_string(), ScoreCard { fit: 30.0, activity: 40.0, total: 70.0, band: None, flames: 2, grade: None, quadrant: None })]);
        let account = Some(AccountActivity { active_colleagues: 2, events_30d: 5, events_90d: 9 });
        let contact = |events| Snapshot { attributes: &attributes, events, cards: &cards, account, at };
        let row = schema().row(&contact(&before));
        assert_eq!(row, schema().row(&contact(&with_later)), "events after the instant changed the row");
        assert_eq!(row.len(), schema().specs().len());
        assert_eq!(schema().sources().len(), schema().specs().len(), "a source for every feature");
        let expected = vec![
            Cell::Text("Reference".into()),
            Cell::Number(250.0),
            // Webinars in 7 / 30 / 90 days.
            Cell::Number(1.0),
            Cell::Number(1.0),
            Cell::Number(1.0),
            // Pages under /pricing in 30 / 90 days.
            Cell::Number(1.0),
            Cell::Number(1.0),
            // Events in 7 / 30 / 90 days (the careers page at the instant itself counts).
            Cell::Number(2.0),
            Cell::Number(3.0),
            Cell::Number(3.0),
            // Days since the last activity.
            Cell::Number(0.0),
            Cell::Number(30.0),
            Cell::Number(40.0),
            // Colleagues active in 90 days, their events in 30 / 90 days.
            Cell::Number(2.0),
            Cell::Number(5.0),
            Cell::Number(9.0),
        ];
        assert_eq!(row, expected);
        // No activity at all: counts are 0 and the idle time is unknown; no card, no
        // account: missing.
        let (nothing, no_cards) = (Map::new(), BTreeMap::new());
        let empty = schema().row(&Snapshot { attributes: &nothing, events: &[], cards: &no_cards, account: None, at });
        assert_eq!(empty[2], Cell::Number(0.0));
        for missing in [0, 10, 11, 12, 13, 14, 15] {
            assert_eq!(empty[missing], Cell::Missing, "feature {missing}");
        }
    }

    #[test]
    fn attributes_are_read_as_of_the_instant() {
        let entry = |at: Millis, attributes: Value| LogEntry { at, kind: "attributes".into(), data: json!({ "attributes": attributes }) };
        let log =
            vec![entry(10, json!({ "stage": "lead" })), entry(20, json!({ "stage": "lead", "quality": "high" })), entry(30, json!({ "stage": "customer" }))];
        let current = json!({ "stage": "now" }).as_object().cloned().unwrap_or_default();
        assert_eq!(attributes_as_of(&log, 25, &current), json!({ "stage": "lead", "quality": "high" }).as_object().cloned().unwrap_or_default());
        assert_eq!(attributes_as_of(&log, 30, &current)["stage"], "customer");
        // A log that starts after the instant: the attributes it was created with.
        assert_eq!(attributes_as_of(&log, 5, &current)["stage"], "lead");
        assert_eq!(attributes_as_of(&[], 5, &current)["stage"], "now");
    }

    #[test]
    fn identifiers_and_rare_attributes_are_not_features() {
        let at = 100 * DAY;
        let people: Vec<Map<String, Value>> = (0..40)
            .map(|i| json!({ "email": format!("p{i}@x.io"), "Lead Number": 1000 + i, "source": if i % 2 == 0 { "Ads" } else { "Reference" }, "size": i % 7, "rare": if i == 0 { json!("x") } else { Value::Null }, "Tags": "Will revert" }).as_object().cloned().unwrap_or_default())
            .collect();
        let cards = BTreeMap::new();
        let snapshots: Vec<Snapshot<'_>> = people.iter().map(|attributes| Snapshot { attributes, events: &[], cards: &cards, account: None, at }).collect();
        let (schema, skipped) = FeatureSchema::from_training(&snapshots, vec![], &["Tags".to_string()]);
        let keys: Vec<(&str, FeatureKind)> = schema.attributes.iter().map(|a| (a.key.as_str(), a.kind)).collect();
        assert_eq!(keys, vec![("size", FeatureKind::Numeric), ("source", FeatureKind::Categorical)]);
        let skipped: Vec<&str> = skipped.iter().map(|s| s.attribute.as_str()).collect();
        assert_eq!(skipped, vec!["Lead Number", "Tags", "email", "rare"]);
    }
}
