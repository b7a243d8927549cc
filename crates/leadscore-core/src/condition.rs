//! Conditions of the model language: leaf comparisons on a contact attribute or an event
//! property, combined with `all`, `any` and `not`.

use regex::Regex;
use serde_json::{Map, Value};

use crate::problems::Problems;

/// Where a leaf condition reads its value from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A contact attribute (`attribute = "job_title"`).
    Attribute,
    /// A property of the event being scored (`property = "path"`).
    Property,
}

#[derive(Clone, Debug)]
pub enum Condition {
    Leaf(Leaf),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

#[derive(Clone, Debug)]
pub struct Leaf {
    pub source: Source,
    pub field: String,
    pub op: Op,
    pub case_insensitive: bool,
}

/// An operator with its operand prepared for matching (lower-cased when the comparison is
/// case-insensitive, numbers parsed, regexes compiled), so matching never re-parses.
#[derive(Clone, Debug)]
pub enum Op {
    Eq(Operand),
    Ne(Operand),
    In(Vec<Operand>),
    NotIn(Vec<Operand>),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Matches(Regex),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Between(f64, f64),
    Exists,
    NotExists,
}

/// A comparison value: compared numerically when both sides are numbers (or numeric
/// strings), as strings otherwise.
#[derive(Clone, Debug)]
pub struct Operand {
    text: String,
    number: Option<f64>,
}

impl Operand {
    fn new(value: &Value, case_insensitive: bool) -> Option<Self> {
        let text = scalar_text(value)?;
        let number = as_number(value);
        let text = if case_insensitive { text.to_lowercase() } else { text };
        Some(Self { text, number })
    }

    fn equals(&self, actual: &Value, case_insensitive: bool) -> bool {
        if let (Some(a), Some(b)) = (as_number(actual), self.number) {
            return a == b;
        }
        match scalar_text(actual) {
            Some(text) if case_insensitive => text.to_lowercase() == self.text,
            Some(text) => text == self.text,
            None => false,
        }
    }
}

pub const OPS: &[&str] =
    &["eq", "ne", "in", "not_in", "contains", "starts_with", "ends_with", "matches", "gt", "gte", "lt", "lte", "between", "exists", "not_exists"];

/// The text of a scalar JSON value, `None` for arrays, objects and null.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number, or a string that parses as a finite number ("250", " 3.5 ").
pub fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// Reads `field` from a JSON object: the exact key first, then a dotted path
/// (`utm.source` → `{"utm": {"source": …}}`). Null counts as missing.
pub fn lookup<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    let found = object.get(field).or_else(|| {
        let mut parts = field.split('.');
        let mut current = object.get(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current)
    });
    found.filter(|v| !v.is_null())
}

impl Condition {
    /// Evaluates the condition. `attributes` are the contact's; `properties` the event's
    /// (empty when no event is being scored).
    pub fn matches(&self, attributes: &Map<String, Value>, properties: &Map<String, Value>) -> bool {
        match self {
            Condition::All(items) => items.iter().all(|c| c.matches(attributes, properties)),
            Condition::Any(items) => items.iter().any(|c| c.matches(attributes, properties)),
            Condition::Not(inner) => !inner.matches(attributes, properties),
            Condition::Leaf(leaf) => {
                let object = match leaf.source {
                    Source::Attribute => attributes,
                    Source::Property => properties,
                };
                leaf.matches(lookup(object, &leaf.field))
            }
        }
    }

    /// Adds the top-level keys this condition reads from `source` (`utm.source` → `utm`).
    pub fn collect_roots(&self, source: Source, into: &mut Vec<String>) {
        match self {
            Condition::All(items) | Condition::Any(items) => items.iter().for_each(|c| c.collect_roots(source, into)),
            Condition::Not(inner) => inner.collect_roots(source, into),
            Condition::Leaf(leaf) if leaf.source == source => {
                // The exact key is tried first (it may contain dots), then the dotted path.
                for key in [leaf.field.as_str(), leaf.field.split('.').next().unwrap_or_default()] {
                    if !into.iter().any(|k| k == key) {
                        into.push(key.to_string());
                    }
                }
            }
            Condition::Leaf(_) => {}
        }
    }

    /// Whether any leaf reads from `source` (used to refuse `property` in fit rules).
    pub fn reads(&self, source: Source) -> bool {
        match self {
            Condition::All(items) | Condition::Any(items) => items.iter().any(|c| c.reads(source)),
            Condition::Not(inner) => inner.reads(source),
            Condition::Leaf(leaf) => leaf.source == source,
        }
    }
}

impl Leaf {
    fn matches(&self, actual: Option<&Value>) -> bool {
        let ci = self.case_insensitive;
        let Some(actual) = actual else {
            return matches!(self.op, Op::NotExists | Op::Ne(_) | Op::NotIn(_));
        };
        // A list attribute (e.g. tags) matches when any element matches.
        if let Value::Array(items) = actual {
            return match &self.op {
                Op::Exists => true,
                Op::NotExists => false,
                Op::Ne(_) | Op::NotIn(_) => items.iter().all(|item| self.matches(Some(item))),
                _ => items.iter().any(|item| self.matches(Some(item))),
            };
        }
        let text = || scalar_text(actual).map(|t| if ci { t.to_lowercase() } else { t });
        match &self.op {
            Op::Exists => true,
            Op::NotExists => false,
            Op::Eq(operand) => operand.equals(actual, ci),
            Op::Ne(operand) => !operand.equals(actual, ci),
            Op::In(operands) => operands.iter().any(|o| o.equals(actual, ci)),
            Op::NotIn(operands) => !operands.iter().any(|o| o.equals(actual, ci)),
            Op::Contains(needle) => text().is_some_and(|t| t.contains(needle.as_str())),
            Op::StartsWith(prefix) => text().is_some_and(|t| t.starts_with(prefix.as_str())),
            Op::EndsWith(suffix) => text().is_some_and(|t| t.ends_with(suffix.as_str())),
            Op::Matches(regex) => scalar_text(actual).is_some_and(|t| regex.is_match(&t)),
            Op::Gt(limit) => as_number(actual).is_some_and(|n| n > *limit),
            Op::Gte(limit) => as_number(actual).is_some_and(|n| n >= *limit),
            Op::Lt(limit) => as_number(actual).is_some_and(|n| n < *limit),
            Op::Lte(limit) => as_number(actual).is_some_and(|n| n <= *limit),
            Op::Between(lo, hi) => as_number(actual).is_some_and(|n| n >= *lo && n <= *hi),
        }
    }
}

/// Parses a condition from its JSON form, recording every problem under `path`.
/// `allowed` says which sources may appear (fit rules read attributes; activity rules
/// read event properties and, for segmenting, attributes).
pub fn parse_condition(value: &Value, path: &str, problems: &mut Problems) -> Option<Condition> {
    let Some(object) = value.as_object() else {
        problems.add(path, "a condition must be a table such as { attribute = \"x\", op = \"eq\", value = 1 }");
        return None;
    };
    for combinator in ["all", "any"] {
        if let Some(items) = object.get(combinator) {
            check_only_keys(object, &[combinator], path, problems);
            let Some(items) = items.as_array() else {
                problems.add(&format!("{path}.{combinator}"), "must be a list of conditions");
                return None;
            };
            if items.is_empty() {
                problems.add(&format!("{path}.{combinator}"), "must hold at least one condition");
            }
            let parsed: Vec<Option<Condition>> =
                items.iter().enumerate().map(|(i, item)| parse_condition(item, &format!("{path}.{combinator}[{i}]"), problems)).collect();
            let parsed: Option<Vec<Condition>> = parsed.into_iter().collect();
            return parsed.map(|items| if combinator == "all" { Condition::All(items) } else { Condition::Any(items) });
        }
    }
    if let Some(inner) = object.get("not") {
        check_only_keys(object, &["not"], path, problems);
        return parse_condition(inner, &format!("{path}.not"), problems).map(|c| Condition::Not(Box::new(c)));
    }
    check_only_keys(object, &["attribute", "property", "op", "value", "case_insensitive"], path, problems);
    let (source, field) = match (object.get("attribute"), object.get("property")) {
        (Some(_), Some(_)) => {
            problems.add(path, "give either `attribute` or `property`, not both");
            return None;
        }
        (Some(f), None) => (Source::Attribute, f),
        (None, Some(f)) => (Source::Property, f),
        (None, None) => {
            problems.add(path, "a condition needs `attribute` (contact) or `property` (event), or `all`/`any`/`not`");
            return None;
        }
    };
    let field = match field.as_str() {
        Some(f) if !f.trim().is_empty() => f.to_string(),
        _ => {
            problems.add(path, "the field name must be a non-empty string");
            return None;
        }
    };
    let case_insensitive = match object.get("case_insensitive") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            problems.add(&format!("{path}.case_insensitive"), "must be true or false");
            false
        }
    };
    let Some(op_name) = object.get("op").and_then(Value::as_str) else {
        problems.add(&format!("{path}.op"), &format!("missing or not a string; one of {}", OPS.join(", ")));
        return None;
    };
    let value = object.get("value");
    let op = parse_op(op_name, value, case_insensitive, &format!("{path}.value"), problems, path)?;
    Some(Condition::Leaf(Leaf { source, field, op, case_insensitive }))
}

fn parse_op(name: &str, value: Option<&Value>, ci: bool, value_path: &str, problems: &mut Problems, path: &str) -> Option<Op> {
    let need_value = |problems: &mut Problems| -> Option<&Value> {
        if value.is_none() {
            problems.add(value_path, &format!("`{name}` needs a `value`"));
        }
        value
    };
    let scalar = |problems: &mut Problems| -> Option<Operand> {
        let v = need_value(problems)?;
        let operand = Operand::new(v, ci);
        if operand.is_none() {
            problems.add(value_path, &format!("`{name}` needs a string, number or boolean"));
        }
        operand
    };
    let list = |problems: &mut Problems| -> Option<Vec<Operand>> {
        let v = need_value(problems)?;
        let Some(items) = v.as_array() else {
            problems.add(value_path, &format!("`{name}` needs a list, e.g. [\"a\", \"b\"]"));
            return None;
        };
        if items.len() > crate::limits::MAX_LIST_VALUES {
            problems.add(value_path, &format!("`{name}` takes at most {} values, got {}", crate::limits::MAX_LIST_VALUES, items.len()));
            return None;
        }
        let operands: Option<Vec<Operand>> = items.iter().map(|i| Operand::new(i, ci)).collect();
        if operands.is_none() {
            problems.add(value_path, "list items must be strings, numbers or booleans");
        }
        operands
    };
    let text = |problems: &mut Problems| -> Option<String> {
        let v = need_value(problems)?;
        match v.as_str() {
            Some(s) => Some(if ci { s.to_lowercase() } else { s.to_string() }),
            None => {
                problems.add(value_path, &format!("`{name}` needs a string"));
                None
            }
        }
    };
    let number = |problems: &mut Problems| -> Option<f64> {
        let v = need_value(problems)?;
        let n = as_number(v);
        if n.is_none() {
            problems.add(value_path, &format!("`{name}` needs a number, got {v}"));
        }
        n
    };
    let no_value = |problems: &mut Problems| {
        if value.is_some() {
            problems.add(value_path, &format!("`{name}` takes no `value`"));
        }
    };
    Some(match name {
        "eq" => Op::Eq(scalar(problems)?),
        "ne" => Op::Ne(scalar(problems)?),
        "in" => Op::In(list(problems)?),
        "not_in" => Op::NotIn(list(problems)?),
        "contains" => Op::Contains(text(problems)?),
        "starts_with" => Op::StartsWith(text(problems)?),
        "ends_with" => Op::EndsWith(text(problems)?),
        "matches" => {
            let pattern = need_value(problems)?;
            let Some(pattern) = pattern.as_str() else {
                problems.add(value_path, "`matches` needs a regular expression string");
                return None;
            };
            let pattern = if ci { format!("(?i){pattern}") } else { pattern.to_string() };
            match regex::RegexBuilder::new(&pattern).size_limit(1 << 20).build() {
                Ok(regex) => Op::Matches(regex),
                Err(err) => {
                    problems.add(value_path, &format!("bad regular expression: {}", one_line(&err.to_string())));
                    return None;
                }
            }
        }
        "gt" => Op::Gt(number(problems)?),
        "gte" => Op::Gte(number(problems)?),
        "lt" => Op::Lt(number(problems)?),
        "lte" => Op::Lte(number(problems)?),
        "between" => {
            let v = need_value(problems)?;
            let bounds = v.as_array().filter(|a| a.len() == 2).and_then(|a| Some((as_number(&a[0])?, as_number(&a[1])?)));
            let Some((lo, hi)) = bounds else {
                problems.add(value_path, "`between` needs two numbers, [lo, hi]");
                return None;
            };
            if lo > hi {
                problems.add(value_path, &format!("`between` bounds are reversed: {lo} > {hi}"));
            }
            Op::Between(lo, hi)
        }
        "exists" => {
            no_value(problems);
            Op::Exists
        }
        "not_exists" => {
            no_value(problems);
            Op::NotExists
        }
        other => {
            problems.add(&format!("{path}.op"), &format!("unknown operator {other:?}; one of {}", OPS.join(", ")));
            return None;
        }
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Records a problem for each key of `object` that is not in `allowed`.
pub fn check_only_keys(object: &Map<String, Value>, allowed: &[&str], path: &str, problems: &mut Problems) {
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            problems.add(&format!("{path}.{key}"), &format!("unknown field; expected one of {}", allowed.join(", ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(value: Value) -> Condition {
        let mut problems = Problems::default();
        let c = parse_condition(&value, "when", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        c.unwrap()
    }

    fn attrs(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn problems_of(value: Value) -> Vec<String> {
        let mut problems = Problems::default();
        parse_condition(&value, "when", &mut problems);
        problems.into_vec().into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect()
    }

    #[test]
    fn every_operator() {
        let a = attrs(json!({"title": "VP Sales", "size": "250", "n": 7, "tags": ["a", "b"], "flag": true}));
        let none = Map::new();
        let yes = |c: Value| assert!(cond(c.clone()).matches(&a, &none), "{c} should match");
        let no = |c: Value| assert!(!cond(c.clone()).matches(&a, &none), "{c} should not match");
        yes(json!({"attribute": "title", "op": "eq", "value": "VP Sales"}));
        no(json!({"attribute": "title", "op": "eq", "value": "vp sales"}));
        yes(json!({"attribute": "title", "op": "eq", "value": "vp sales", "case_insensitive": true}));
        yes(json!({"attribute": "size", "op": "eq", "value": 250}));
        yes(json!({"attribute": "size", "op": "eq", "value": "250.0"}));
        yes(json!({"attribute": "title", "op": "ne", "value": "CEO"}));
        yes(json!({"attribute": "n", "op": "in", "value": [1, 7]}));
        yes(json!({"attribute": "n", "op": "not_in", "value": [1, 2]}));
        yes(json!({"attribute": "title", "op": "contains", "value": "Sal"}));
        yes(json!({"attribute": "title", "op": "starts_with", "value": "VP"}));
        yes(json!({"attribute": "title", "op": "ends_with", "value": "SALES", "case_insensitive": true}));
        yes(json!({"attribute": "title", "op": "matches", "value": "(?i)^vp\\b"}));
        yes(json!({"attribute": "size", "op": "gt", "value": 100}));
        no(json!({"attribute": "title", "op": "gt", "value": 100}));
        yes(json!({"attribute": "size", "op": "gte", "value": 250}));
        yes(json!({"attribute": "n", "op": "lt", "value": 8}));
        yes(json!({"attribute": "n", "op": "lte", "value": 7}));
        yes(json!({"attribute": "n", "op": "between", "value": [7, 9]}));
        no(json!({"attribute": "n", "op": "between", "value": [8, 9]}));
        yes(json!({"attribute": "flag", "op": "exists"}));
        yes(json!({"attribute": "missing", "op": "not_exists"}));
        yes(json!({"attribute": "tags", "op": "eq", "value": "b"}));
        no(json!({"attribute": "tags", "op": "ne", "value": "b"}));
        yes(json!({"attribute": "flag", "op": "eq", "value": true}));
        yes(json!({"all": [{"attribute": "n", "op": "gt", "value": 1}, {"not": {"attribute": "n", "op": "gt", "value": 9}}]}));
        yes(json!({"any": [{"attribute": "n", "op": "gt", "value": 100}, {"attribute": "title", "op": "exists"}]}));
    }

    #[test]
    fn missing_attribute_matches_only_negations() {
        let a = Map::new();
        for (op, value, expect) in [
            ("eq", json!("x"), false),
            ("ne", json!("x"), true),
            ("in", json!(["x"]), false),
            ("not_in", json!(["x"]), true),
            ("contains", json!("x"), false),
            ("gt", json!(1), false),
            ("exists", Value::Null, false),
            ("not_exists", Value::Null, true),
        ] {
            let mut c = json!({"attribute": "missing", "op": op});
            if !value.is_null() {
                c["value"] = value;
            }
            assert_eq!(cond(c).matches(&a, &a), expect, "{op}");
        }
    }

    #[test]
    fn dotted_property_paths() {
        let props = attrs(json!({"utm": {"source": "google"}}));
        assert!(cond(json!({"property": "utm.source", "op": "eq", "value": "google"})).matches(&Map::new(), &props));
    }

    #[test]
    fn lists_every_problem() {
        let problems = problems_of(json!({"all": [
            {"attribute": "a", "op": "frobnicate", "value": 1},
            {"attribute": "b", "op": "matches", "value": "(unclosed"},
            {"attribute": "c", "op": "gt", "value": "ten"},
            {"attribute": "d", "op": "eq", "value": 1, "colour": "red"},
        ]}));
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].starts_with("when.all[0].op: unknown operator \"frobnicate\""));
        assert!(problems[1].starts_with("when.all[1].value: bad regular expression"));
        assert!(problems[2].starts_with("when.all[2].value: `gt` needs a number"));
        assert!(problems[3].starts_with("when.all[3].colour: unknown field"));
    }
}
