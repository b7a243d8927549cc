//! The model file (PRODUCT.md §2): parsing from TOML or JSON, validation that lists every
//! problem with its path, and the compiled form the scorer runs.

use serde_json::{Map, Value};

pub use crate::band::Band;
use crate::condition::{Condition, Source, check_only_keys, parse_condition};
use crate::duration::Span;
use crate::limits;
use crate::problems::{Problem, Problems};

#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    pub description: Option<String>,
    pub applies_to: Option<Condition>,
    /// Totals needed for 1..=5 flames, ascending.
    pub flames: Vec<f64>,
    pub grades: Option<Grades>,
    pub quadrant: Option<QuadrantSplit>,
    pub decay: Decay,
    /// Highest first; only the last may lack a `min`.
    pub bands: Vec<Band>,
    pub fit: Vec<FitRule>,
    pub activity: Vec<ActivityRule>,
    /// How the contacts of an account add up to the account's score (F29).
    pub accounts: crate::accounts::AccountRule,
    /// The model as JSON, exactly as given (after TOML → JSON), for reads and exports.
    pub definition: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Grades {
    pub a: f64,
    pub b: f64,
    pub c: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuadrantSplit {
    pub fit: f64,
    pub activity: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decay {
    pub half_life: Option<Span>,
    pub expire_after: Option<Span>,
    pub inactivity: Option<Inactivity>,
}

impl Decay {
    pub fn is_none(&self) -> bool {
        self.half_life.is_none() && self.expire_after.is_none() && self.inactivity.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Inactivity {
    pub points: f64,
    pub every: Span,
}

#[derive(Clone, Debug)]
pub struct FitRule {
    pub name: String,
    pub cases: Vec<FitCase>,
}

/// A single-`when` fit rule is a rule with one case.
#[derive(Clone, Debug)]
pub struct FitCase {
    pub when: Option<Condition>,
    pub points: f64,
}

#[derive(Clone, Debug)]
pub struct ActivityRule {
    pub name: String,
    pub event: String,
    pub when: Option<Condition>,
    pub points: f64,
    pub limit: Option<Limit>,
    pub frequency: Option<Frequency>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub count: u32,
    pub per: Span,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frequency {
    pub count: u32,
    pub within: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// JSON when the text starts with `{`, TOML otherwise.
    pub fn sniff(text: &str) -> Self {
        if text.trim_start().starts_with('{') { Format::Json } else { Format::Toml }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model is not valid {format}: {message}")]
    Syntax { format: &'static str, message: String, line: Option<usize> },
    #[error("the model has {} problem(s): {}", .0.len(), summarize(.0))]
    Invalid(Vec<Problem>),
}

impl ModelError {
    /// Every problem, syntax errors included, in the `{path, message}` shape.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ModelError::Syntax { message, line, .. } => vec![Problem { path: line.map(|l| format!("line {l}")).unwrap_or_default(), message: message.clone() }],
            ModelError::Invalid(problems) => problems.clone(),
        }
    }
}

fn summarize(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; ")
}

/// The model text with its `name` set to `name`, all else as written (TOML keeps its
/// comments and layout; JSON is re-serialised). Promoting a shadow model uses it: the
/// shadow's rules become a version of the model it shadows.
pub fn renamed_source(text: &str, format: Format, name: &str) -> Result<String, ModelError> {
    match format {
        Format::Toml => {
            let mut document: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
                let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
                ModelError::Syntax { format: "TOML", message: e.message().to_string(), line }
            })?;
            document["name"] = toml_edit::value(name);
            Ok(document.to_string())
        }
        Format::Json => {
            let mut document = parse_document(text, Format::Json)?;
            match document.as_object_mut() {
                Some(object) => object.insert("name".into(), Value::String(name.into())),
                None => return Err(ModelError::Syntax { format: "JSON", message: "the model is not a JSON object".into(), line: None }),
            };
            serde_json::to_string_pretty(&document).map_err(|e| ModelError::Syntax { format: "JSON", message: e.to_string(), line: None })
        }
    }
}

/// Parses TOML or JSON text (the format sniffed) into a table as JSON.
pub fn parse_document(text: &str, format: Format) -> Result<Value, ModelError> {
    match format {
        Format::Json => serde_json::from_str::<Value>(text).map_err(|e| ModelError::Syntax { format: "JSON", message: e.to_string(), line: Some(e.line()) }),
        Format::Toml => {
            let table: toml::Table = toml::from_str(text).map_err(|e| {
                let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
                ModelError::Syntax { format: "TOML", message: e.message().to_string(), line }
            })?;
            serde_json::to_value(table).map_err(|e| ModelError::Syntax { format: "TOML", message: e.to_string(), line: None })
        }
    }
}

impl Model {
    pub fn parse(text: &str) -> Result<Model, ModelError> {
        Self::parse_as(text, Format::sniff(text))
    }

    pub fn parse_as(text: &str, format: Format) -> Result<Model, ModelError> {
        if text.len() > limits::MAX_MODEL_BYTES {
            let problem = Problem {
                path: String::new(),
                message: format!("a model is at most {} KiB, this one is {} KiB", limits::MAX_MODEL_BYTES / 1024, text.len() / 1024),
            };
            return Err(ModelError::Invalid(vec![problem]));
        }
        Self::from_value(parse_document(text, format)?)
    }

    pub fn from_value(definition: Value) -> Result<Model, ModelError> {
        let mut problems = Problems::default();
        let model = compile(&definition, &mut problems);
        match model {
            Some(model) if problems.is_empty() => Ok(model),
            _ => Err(ModelError::Invalid(problems.into_vec())),
        }
    }

    /// Whether this model scores a contact with these attributes (its `applies_to`).
    pub fn applies_to(&self, attributes: &Map<String, Value>) -> bool {
        self.applies_to.as_ref().is_none_or(|c| c.matches(attributes, &Map::new()))
    }

    /// Why this model does not score a contact with these attributes, in words (None when
    /// it does): its segment, and what the contact has of the attributes the segment reads.
    pub fn why_not_applies(&self, attributes: &Map<String, Value>) -> Option<String> {
        if self.applies_to(attributes) {
            return None;
        }
        let segment = self.definition.get("applies_to")?;
        let mut read = Vec::new();
        attributes_read(segment, &mut read);
        read.dedup();
        let has: Vec<String> = read
            .iter()
            .map(|name| match attributes.get(name.as_str()) {
                Some(value) => format!("{name} is {value}"),
                None => format!("{name} is not set"),
            })
            .collect();
        Some(format!("it applies only where {}; this contact's {}", describe_condition(segment), has.join(", ")))
    }

    /// The event property keys (top level) that any activity rule reads. Scoring needs no
    /// other property, so bulk paths decode only these.
    pub fn activity_property_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for rule in &self.activity {
            if let Some(when) = &rule.when {
                when.collect_roots(crate::condition::Source::Property, &mut keys);
            }
        }
        keys
    }

    /// Sum of the fit rules that match (first matching case per rule).
    pub fn fit(&self, attributes: &Map<String, Value>) -> f64 {
        self.fit_breakdown(attributes).map(|(_, points)| points).sum()
    }

    /// The fit rules that award points for these attributes, with their points.
    pub fn fit_breakdown<'a>(&'a self, attributes: &'a Map<String, Value>) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        let empty = Map::new();
        self.fit.iter().filter_map(move |rule| {
            rule.cases.iter().find(|case| case.when.as_ref().is_none_or(|c| c.matches(attributes, &empty))).map(|case| (rule.name.as_str(), case.points))
        })
    }
}

fn compile(definition: &Value, problems: &mut Problems) -> Option<Model> {
    let Some(root) = definition.as_object() else {
        problems.add("", "a model must be a table");
        return None;
    };
    check_only_keys(
        root,
        &["name", "description", "applies_to", "flames", "grades", "quadrant", "decay", "bands", "fit", "activity", "accounts"],
        "",
        problems,
    );
    let name = match root.get("name").and_then(Value::as_str) {
        Some(n) if is_valid_name(n) => n.to_string(),
        Some(n) => {
            problems.add("name", &format!("{n:?} is not a valid name: use 1-64 of a-z, 0-9, _ and -"));
            String::new()
        }
        None => {
            problems.add("name", "required: a name of a-z, 0-9, _ and -");
            String::new()
        }
    };
    let description = match root.get("description") {
        None => None,
        Some(Value::String(s)) if s.chars().count() > limits::MAX_DESCRIPTION_CHARS => {
            problems.add("description", &format!("at most {} characters, got {}", limits::MAX_DESCRIPTION_CHARS, s.chars().count()));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.add("description", "must be a string");
            None
        }
    };
    let applies_to = root.get("applies_to").and_then(|v| {
        let c = parse_condition(v, "applies_to", problems)?;
        if c.reads(Source::Property) {
            problems.add("applies_to", "a segment reads contact attributes (`attribute = …`), not event properties");
        }
        Some(c)
    });
    let flames = parse_flames(root.get("flames"), problems);
    let grades = root.get("grades").and_then(|v| parse_grades(v, problems));
    let quadrant = root.get("quadrant").and_then(|v| {
        let t = table(v, "quadrant", problems)?;
        check_only_keys(t, &["fit", "activity"], "quadrant", problems);
        Some(QuadrantSplit { fit: number_field(t, "fit", "quadrant.fit", problems)?, activity: number_field(t, "activity", "quadrant.activity", problems)? })
    });
    let decay = root.get("decay").map(|v| parse_decay(v, problems)).unwrap_or_default();
    let bands = root.get("bands").map(|v| parse_bands(v, "bands", problems)).unwrap_or_default();
    let fit = root.get("fit").map(|v| parse_fit_rules(v, problems)).unwrap_or_default();
    let activity = root.get("activity").map(|v| parse_activity_rules(v, problems)).unwrap_or_default();
    let accounts = root.get("accounts").map(|v| parse_accounts(v, problems)).unwrap_or_default();
    let rules = fit.len() + activity.len();
    if rules > limits::MAX_RULES {
        problems.add("", &format!("a model has at most {} rules (fit and activity together), this one has {rules}", limits::MAX_RULES));
    }
    Some(Model { name, description, applies_to, flames, grades, quadrant, decay, bands, fit, activity, accounts, definition: definition.clone() })
}

pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn table<'a>(value: &'a Value, path: &str, problems: &mut Problems) -> Option<&'a Map<String, Value>> {
    let t = value.as_object();
    if t.is_none() {
        problems.add(path, "must be a table");
    }
    t
}

fn number_field(t: &Map<String, Value>, key: &str, path: &str, problems: &mut Problems) -> Option<f64> {
    match t.get(key) {
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()),
        Some(other) => {
            problems.add(path, &format!("must be a number, got {other}"));
            None
        }
        None => {
            problems.add(path, "required");
            None
        }
    }
}

fn span_field(t: &Map<String, Value>, key: &str, path: &str, problems: &mut Problems) -> Option<Span> {
    match t.get(key) {
        Some(Value::String(s)) => Span::parse(s).map_err(|e| problems.add(path, &e)).ok(),
        Some(other) => {
            problems.add(path, &format!("must be a duration string such as \"7d\", got {other}"));
            None
        }
        None => {
            problems.add(path, "required");
            None
        }
    }
}

fn count_field(t: &Map<String, Value>, key: &str, path: &str, problems: &mut Problems) -> Option<u32> {
    match t.get(key).and_then(Value::as_u64) {
        Some(n) if (1..=1_000_000).contains(&n) => Some(n as u32),
        _ => {
            problems.add(path, "must be a whole number from 1 to 1000000");
            None
        }
    }
}

fn parse_flames(value: Option<&Value>, problems: &mut Problems) -> Vec<f64> {
    let Some(value) = value else { return Vec::new() };
    let Some(items) = value.as_array() else {
        problems.add("flames", "must be a list of up to 5 ascending totals, e.g. [10, 25, 50, 75, 100]");
        return Vec::new();
    };
    if items.len() > 5 {
        problems.add("flames", "at most 5 thresholds (1 to 5 flames)");
    }
    let numbers: Vec<f64> = items
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let n = v.as_f64();
            if n.is_none() {
                problems.add(&format!("flames[{i}]"), "must be a number");
            }
            n
        })
        .collect();
    if numbers.windows(2).any(|w| w[0] >= w[1]) {
        problems.add("flames", "thresholds must rise strictly");
    }
    numbers
}

fn parse_grades(value: &Value, problems: &mut Problems) -> Option<Grades> {
    let t = table(value, "grades", problems)?;
    check_only_keys(t, &["A", "B", "C"], "grades", problems);
    let grades = Grades {
        a: number_field(t, "A", "grades.A", problems)?,
        b: number_field(t, "B", "grades.B", problems)?,
        c: number_field(t, "C", "grades.C", problems)?,
    };
    if !(grades.a > grades.b && grades.b > grades.c) {
        problems.add("grades", "thresholds must fall strictly from A to C");
    }
    Some(grades)
}

fn parse_decay(value: &Value, problems: &mut Problems) -> Decay {
    let Some(t) = table(value, "decay", problems) else { return Decay::default() };
    check_only_keys(t, &["half_life", "expire_after", "inactivity"], "decay", problems);
    let half_life = t.get("half_life").and_then(|_| span_field(t, "half_life", "decay.half_life", problems));
    let expire_after = t.get("expire_after").and_then(|_| span_field(t, "expire_after", "decay.expire_after", problems));
    let inactivity = t.get("inactivity").and_then(|v| {
        let it = table(v, "decay.inactivity", problems)?;
        check_only_keys(it, &["points", "every"], "decay.inactivity", problems);
        let points = number_field(it, "points", "decay.inactivity.points", problems);
        let every = span_field(it, "every", "decay.inactivity.every", problems);
        if points.is_some_and(|p| p <= 0.0 || p > limits::MAX_POINTS) {
            problems.add("decay.inactivity.points", &format!("must be positive (it is subtracted per idle period) and at most {}", limits::MAX_POINTS));
        }
        Some(Inactivity { points: points?, every: every? })
    });
    Decay { half_life, expire_after, inactivity }
}

/// `[accounts]`: `aggregate = "sum" | "max" | "mean_top_n"`, `top_n` (mean_top_n, default
/// 3), and `bands` like the contact bands.
fn parse_accounts(value: &Value, problems: &mut Problems) -> crate::accounts::AccountRule {
    use crate::accounts::{AccountAggregate, AccountRule};
    let Some(t) = table(value, "accounts", problems) else { return AccountRule::default() };
    check_only_keys(t, &["aggregate", "top_n", "bands"], "accounts", problems);
    let top_n = match t.get("top_n") {
        None => None,
        Some(v) => match v.as_u64().filter(|n| (1..=1000).contains(n)) {
            Some(n) => Some(n as usize),
            None => {
                problems.add("accounts.top_n", "must be a whole number from 1 to 1000");
                None
            }
        },
    };
    let aggregate = match t.get("aggregate").map(|v| v.as_str()) {
        None | Some(Some("sum")) => AccountAggregate::Sum,
        Some(Some("max")) => AccountAggregate::Max,
        Some(Some("mean_top_n")) => AccountAggregate::MeanTopN(top_n.unwrap_or(3)),
        Some(other) => {
            problems.add("accounts.aggregate", &format!("{} is not sum, max or mean_top_n", other.map_or("a non-string".to_string(), |s| format!("{s:?}"))));
            AccountAggregate::Sum
        }
    };
    if top_n.is_some() && !matches!(aggregate, AccountAggregate::MeanTopN(_)) {
        problems.add("accounts.top_n", "only means something with aggregate = \"mean_top_n\"");
    }
    let bands = t.get("bands").map(|v| parse_bands(v, "accounts.bands", problems)).unwrap_or_default();
    AccountRule { aggregate, bands }
}

fn parse_bands(value: &Value, section: &str, problems: &mut Problems) -> Vec<Band> {
    let Some(items) = value.as_array() else {
        problems.add(section, "must be a list of bands (name and min), highest first");
        return Vec::new();
    };
    let mut bands: Vec<Band> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{section}[{i}]");
        let Some(t) = table(item, &path, problems) else { continue };
        check_only_keys(t, &["name", "min"], &path, problems);
        let name = match t.get("name").and_then(Value::as_str) {
            Some(n) if !n.trim().is_empty() => n.to_string(),
            _ => {
                problems.add(&format!("{path}.name"), "required: a non-empty string");
                continue;
            }
        };
        let min = t.get("min").and_then(|_| number_field(t, "min", &format!("{path}.min"), problems));
        if bands.iter().any(|b| b.name == name) {
            problems.add(&format!("{path}.name"), &format!("band {name:?} is defined twice"));
        }
        if let Some(previous) = bands.last() {
            match (previous.min, min) {
                (None, _) => problems.add(&path.to_string(), &format!("band {:?} has no min and catches everything, so it must be the last", previous.name)),
                (Some(prev), Some(this)) if this >= prev => problems
                    .add(&format!("{path}.min"), &format!("bands go highest first: {name:?} (min {this}) must be below {:?} (min {prev})", previous.name)),
                _ => {}
            }
        }
        bands.push(Band { name, min });
    }
    bands
}

fn rule_path(section: &str, index: usize, rule: &Map<String, Value>) -> String {
    match rule.get("name").and_then(Value::as_str) {
        Some(name) => format!("{section}[{index}] {name:?}"),
        None => format!("{section}[{index}]"),
    }
}

fn rule_name(rule: &Map<String, Value>, path: &str, seen: &mut Vec<String>, problems: &mut Problems) -> String {
    match rule.get("name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() => {
            if seen.iter().any(|s| s == n) {
                problems.add(&format!("{path}.name"), "rule names must be unique within fit and within activity");
            }
            seen.push(n.to_string());
            n.to_string()
        }
        _ => {
            problems.add(&format!("{path}.name"), "required: a non-empty string (it is shown as the reason)");
            String::new()
        }
    }
}

/// Points of a rule, bounded so no sum of them can overflow into infinity (a score that
/// reads `null` while its band says hot).
fn points_field(t: &Map<String, Value>, path: &str, problems: &mut Problems) -> Option<f64> {
    let path = format!("{path}.points");
    let points = number_field(t, "points", &path, problems)?;
    if points.abs() > limits::MAX_POINTS {
        problems.add(&path, &format!("must be between -{max} and {max}, got {points}", max = limits::MAX_POINTS));
        return None;
    }
    Some(points)
}

fn fit_condition(value: &Value, path: &str, problems: &mut Problems) -> Option<Condition> {
    let c = parse_condition(value, path, problems)?;
    if c.reads(Source::Property) {
        problems.add(path, "fit rules read contact attributes (`attribute = …`); event properties belong in activity rules");
    }
    Some(c)
}

fn parse_fit_rules(value: &Value, problems: &mut Problems) -> Vec<FitRule> {
    let Some(items) = value.as_array() else {
        problems.add("fit", "must be a list of [[fit]] rules");
        return Vec::new();
    };
    let mut seen = Vec::new();
    let mut rules = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(t) = table(item, &format!("fit[{i}]"), problems) else { continue };
        let path = rule_path("fit", i, t);
        check_only_keys(t, &["name", "when", "points", "cases"], &path, problems);
        let name = rule_name(t, &path, &mut seen, problems);
        let cases = if let Some(cases) = t.get("cases") {
            if t.contains_key("when") || t.contains_key("points") {
                problems.add(&path, "give either `cases` or `when` + `points`, not both");
            }
            let Some(cases) = cases.as_array().filter(|c| !c.is_empty()) else {
                problems.add(&format!("{path}.cases"), "must be a non-empty list of { when, points }");
                continue;
            };
            cases
                .iter()
                .enumerate()
                .filter_map(|(ci, case)| {
                    let cpath = format!("{path}.cases[{ci}]");
                    let ct = table(case, &cpath, problems)?;
                    check_only_keys(ct, &["when", "points"], &cpath, problems);
                    let when = match ct.get("when") {
                        Some(w) => Some(fit_condition(w, &format!("{cpath}.when"), problems)?),
                        None => None,
                    };
                    Some(FitCase { when, points: points_field(ct, &cpath, problems)? })
                })
                .collect()
        } else {
            let when = match t.get("when") {
                Some(w) => fit_condition(w, &format!("{path}.when"), problems),
                None => {
                    problems.add(&format!("{path}.when"), "required (or `cases`)");
                    None
                }
            };
            let points = points_field(t, &path, problems);
            match (when, points) {
                (Some(when), Some(points)) => vec![FitCase { when: Some(when), points }],
                _ => continue,
            }
        };
        rules.push(FitRule { name, cases });
    }
    rules
}

fn parse_activity_rules(value: &Value, problems: &mut Problems) -> Vec<ActivityRule> {
    let Some(items) = value.as_array() else {
        problems.add("activity", "must be a list of [[activity]] rules");
        return Vec::new();
    };
    let mut seen = Vec::new();
    let mut rules = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(t) = table(item, &format!("activity[{i}]"), problems) else { continue };
        let path = rule_path("activity", i, t);
        check_only_keys(t, &["name", "event", "when", "points", "limit", "frequency"], &path, problems);
        let name = rule_name(t, &path, &mut seen, problems);
        let event = match t.get("event").and_then(Value::as_str) {
            Some(e) if !e.is_empty() => Some(e.to_string()),
            _ => {
                problems.add(&format!("{path}.event"), "required: the event name (page views are \"page\")");
                None
            }
        };
        if matches!(event.as_deref(), Some("identify" | "alias" | "group")) {
            problems.add(&format!("{path}.event"), "identify, alias and group calls change identity, not activity; no activity rule can match them");
        }
        let when = t.get("when").and_then(|w| {
            let c = parse_condition(w, &format!("{path}.when"), problems)?;
            if c.reads(Source::Attribute) {
                problems.add(&format!("{path}.when"), "activity rules read event properties (`property = …`); segment contacts with `applies_to` or fit rules");
            }
            Some(c)
        });
        let points = points_field(t, &path, problems);
        let limit = t.get("limit").and_then(|v| {
            let lp = format!("{path}.limit");
            let lt = table(v, &lp, problems)?;
            check_only_keys(lt, &["count", "per"], &lp, problems);
            Some(Limit { count: count_field(lt, "count", &format!("{lp}.count"), problems)?, per: span_field(lt, "per", &format!("{lp}.per"), problems)? })
        });
        let frequency = t.get("frequency").and_then(|v| {
            let fp = format!("{path}.frequency");
            let ft = table(v, &fp, problems)?;
            check_only_keys(ft, &["count", "within"], &fp, problems);
            Some(Frequency {
                count: count_field(ft, "count", &format!("{fp}.count"), problems)?,
                within: span_field(ft, "within", &format!("{fp}.within"), problems)?,
            })
        });
        if let (Some(event), Some(points)) = (event, points) {
            rules.push(ActivityRule { name, event, when, points, limit, frequency });
        }
    }
    rules
}

/// The example model of PRODUCT.md §2, used by `leadscore demo` and tests.
pub const EXAMPLE_MODEL_TOML: &str = include_str!("example_model.toml");

/// A condition as written in a model, in words: `product_interest eq "platform" or
/// product_interest not_exists`.
pub fn describe_condition(condition: &Value) -> String {
    let joined = |items: &Value, word: &str| -> String {
        let parts: Vec<String> = items.as_array().into_iter().flatten().map(describe_nested).collect();
        parts.join(&format!(" {word} "))
    };
    if let Some(all) = condition.get("all") {
        return joined(all, "and");
    }
    if let Some(any) = condition.get("any") {
        return joined(any, "or");
    }
    if let Some(not) = condition.get("not") {
        return format!("not {}", describe_nested(not));
    }
    let subject = condition.get("attribute").or_else(|| condition.get("property")).and_then(Value::as_str).unwrap_or("?");
    let op = condition.get("op").and_then(Value::as_str).unwrap_or("?");
    match condition.get("value") {
        Some(value) => format!("{subject} {op} {value}"),
        None => format!("{subject} {op}"),
    }
}

fn describe_nested(condition: &Value) -> String {
    let text = describe_condition(condition);
    if condition.get("all").is_some() || condition.get("any").is_some() { format!("({text})") } else { text }
}

fn attributes_read(condition: &Value, out: &mut Vec<String>) {
    for key in ["all", "any"] {
        for nested in condition.get(key).and_then(Value::as_array).into_iter().flatten() {
            attributes_read(nested, out);
        }
    }
    if let Some(not) = condition.get("not") {
        attributes_read(not, out);
    }
    if let Some(name) = condition.get("attribute").and_then(Value::as_str)
        && !out.iter().any(|seen| seen == name)
    {
        out.push(name.to_string());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn renaming_a_source_keeps_everything_else() {
        let toml = "# the b2b rules\nname = \"b2b-next\"   # candidate\nflames = [10, 20, 30, 40, 50]\n\n[[bands]]\nname = \"hot\"\nmin = 10\n\n[[bands]]\nname = \"cold\"\n";
        let renamed = renamed_source(toml, Format::Toml, "b2b").unwrap();
        assert!(renamed.starts_with("# the b2b rules\nname = \"b2b\""), "{renamed}");
        assert!(renamed.contains("name = \"hot\""), "band names are not the model's name: {renamed}");
        assert_eq!(Model::parse(&renamed).unwrap().name, "b2b");
        let json = r#"{"name": "b2b-next", "bands": [{"name": "cold"}]}"#;
        let renamed = renamed_source(json, Format::Json, "b2b").unwrap();
        assert_eq!(parse_document(&renamed, Format::Json).unwrap()["name"], "b2b");
        assert_eq!(parse_document(&renamed, Format::Json).unwrap()["bands"][0]["name"], "cold");
        assert!(renamed_source("[1]", Format::Json, "b2b").is_err());
    }

    use super::*;

    #[test]
    fn example_model_parses() {
        let model = Model::parse(EXAMPLE_MODEL_TOML).unwrap();
        assert_eq!(model.name, "b2b");
        assert_eq!(model.fit.len(), 3);
        assert_eq!(model.fit[0].cases.len(), 4);
        assert_eq!(model.activity.len(), 7);
        assert_eq!(model.bands.len(), 3);
        assert_eq!(model.flames, vec![10.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(model.decay.half_life.unwrap().millis(), 30 * crate::duration::DAY_MS);
        assert_eq!(model.activity[2].frequency.unwrap().count, 3);
    }

    #[test]
    fn lists_the_property_keys_rules_read() {
        let model = Model::parse(EXAMPLE_MODEL_TOML).unwrap();
        assert_eq!(model.activity_property_keys(), vec!["form".to_string(), "path".to_string()]);
    }

    #[test]
    fn json_equivalent_parses_the_same() {
        let model = Model::parse(EXAMPLE_MODEL_TOML).unwrap();
        let json = serde_json::to_string(&model.definition).unwrap();
        let again = Model::parse(&json).unwrap();
        assert_eq!(again.definition, model.definition);
        assert_eq!(again.activity.len(), model.activity.len());
    }

    #[test]
    fn lists_every_problem_with_its_path() {
        let text = r#"
name = "Bad Name"
colour = "blue"
[decay]
half_life = "30 days"
[[bands]]
name = "warm"
min = 50
[[bands]]
name = "hot"
min = 100
[[fit]]
name = "Title"
when = { attribute = "job_title", op = "resembles", value = "ceo" }
points = 10
[[activity]]
name = "Pricing"
event = "page"
when = { property = "path", op = "matches", value = "[unclosed" }
points = "lots"
limit = { count = 1, per = "1 day" }
"#;
        let err = Model::parse(text).unwrap_err();
        let problems: Vec<String> = err.problems().iter().map(|p| format!("{} | {}", p.path, p.message)).collect();
        let expect = [
            ".colour | unknown field",
            "name | \"Bad Name\" is not a valid name",
            "decay.half_life | duration",
            "bands[1].min | bands go highest first",
            "fit[0] \"Title\".when.op | unknown operator \"resembles\"",
            "activity[0] \"Pricing\".when.value | bad regular expression",
            "activity[0] \"Pricing\".points | must be a number",
            "activity[0] \"Pricing\".limit.per | duration",
        ];
        for e in expect {
            assert!(problems.iter().any(|p| p.starts_with(e)), "missing {e:?} in {problems:#?}");
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let err = Model::parse("name = \"x\"\n[decay\n").unwrap_err();
        match err {
            ModelError::Syntax { line, .. } => assert_eq!(line, Some(2)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(Model::parse("{\"name\": }"), Err(ModelError::Syntax { format: "JSON", .. })));
    }

    #[test]
    fn sources_are_checked_per_section() {
        let err = Model::parse(
            r#"
name = "m"
[[fit]]
name = "f"
when = { property = "path", op = "exists" }
points = 1
[[activity]]
name = "a"
event = "identify"
when = { attribute = "x", op = "exists" }
points = 1
"#,
        )
        .unwrap_err();
        assert_eq!(err.problems().len(), 3, "{:#?}", err.problems());
    }

    #[test]
    fn the_model_file_says_how_accounts_score() {
        let model =
            Model::parse("name = \"m\"\n[accounts]\naggregate = \"mean_top_n\"\ntop_n = 2\nbands = [{ name = \"key\", min = 100 }, { name = \"other\" }]\n")
                .unwrap();
        assert_eq!(model.accounts.aggregate, crate::accounts::AccountAggregate::MeanTopN(2));
        assert_eq!(model.accounts.bands.len(), 2);
        assert_eq!(Model::parse("name = \"m\"\n").unwrap().accounts, crate::accounts::AccountRule::default(), "sum, no bands");
        let err =
            Model::parse("name = \"m\"\n[accounts]\naggregate = \"median\"\ntop_n = 0\nbands = [{ name = \"a\" }, { name = \"b\", min = 1 }]\nextra = 1\n")
                .unwrap_err();
        let paths: Vec<String> = err.problems().into_iter().map(|p| p.path).collect();
        for expected in ["accounts.aggregate", "accounts.top_n", "accounts.bands[1]", "accounts.extra"] {
            assert!(paths.iter().any(|p| p == expected), "{expected} in {paths:?}");
        }
    }

    // Issue 15.6: two rules of 1e308 points summed to infinity (a score of `null` with a
    // band of hot); huge models cost seconds per publish. Every bound is refused with its path.
    #[test]
    fn models_are_bounded() {
        let huge = "name = \"m\"\n[[activity]]\nname = \"a\"\nevent = \"x\"\npoints = 1e308\n[[activity]]\nname = \"b\"\nevent = \"x\"\npoints = 1e308\n";
        let paths: Vec<String> = Model::parse(huge).unwrap_err().problems().into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["activity[0] \"a\".points", "activity[1] \"b\".points"]);
        let mut many = String::from("name = \"m\"\n");
        for i in 0..=limits::MAX_RULES {
            many.push_str(&format!("[[activity]]\nname = \"r{i}\"\nevent = \"x\"\npoints = 1\n"));
        }
        assert!(Model::parse(&many).unwrap_err().to_string().contains("at most 500 rules"));
        let values: Vec<String> = (0..=limits::MAX_LIST_VALUES).map(|i| format!("\"v{i}\"")).collect();
        let long_list = format!("name = \"m\"\napplies_to = {{ attribute = \"a\", op = \"in\", value = [{}] }}\n", values.join(", "));
        assert!(Model::parse(&long_list).unwrap_err().to_string().contains("at most 1000 values"));
        let description = format!("name = \"m\"\ndescription = \"{}\"\n", "x".repeat(limits::MAX_DESCRIPTION_CHARS + 1));
        assert_eq!(Model::parse(&description).unwrap_err().problems()[0].path, "description");
        let big = format!("name = \"m\"\n# {}\n", "x".repeat(limits::MAX_MODEL_BYTES));
        assert!(Model::parse(&big).unwrap_err().to_string().contains("at most 256 KiB"));
        // At the bounds, a model is fine.
        assert!(Model::parse("name = \"m\"\n[[fit]]\nname = \"f\"\nwhen = { attribute = \"a\", op = \"exists\" }\npoints = -1000000\n").is_ok());
    }
}
