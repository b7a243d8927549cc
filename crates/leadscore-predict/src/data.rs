//! The input types: one raw cell, a feature's description and a labelled data set.

use serde::{Deserialize, Serialize};

/// One raw cell of a contact's feature row, as the engine extracted it.
///
/// Only [`Value::Missing`] is missing: the caller decides which raw strings mean "not filled
/// in" (an empty form field, a dropdown's "Select") and maps them to `Missing` before calling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Missing,
    Number(f64),
    Text(String),
}

impl Value {
    /// The cell read as a number: a finite `Number`, or `Text` that parses as a finite number.
    /// Anything else (missing, unparseable text, NaN, infinities) is `None` and counts as missing.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Missing => None,
            Value::Number(x) => x.is_finite().then_some(*x),
            Value::Text(text) => text.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        }
    }

    /// The cell read as a categorical level: text as is, a number in its shortest decimal form
    /// (so `Number(3.0)` and `Text("3")` are the same level), `None` when missing.
    pub fn as_level(&self) -> Option<String> {
        match self {
            Value::Missing => None,
            Value::Number(x) if x.is_nan() => None,
            Value::Number(x) => Some(format_number(*x)),
            Value::Text(text) => Some(text.clone()),
        }
    }
}

/// How a feature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeatureKind {
    /// Levels (text): one-hot for the logistic model, native category splits in the trees.
    Categorical,
    /// A quantity: standardised for the logistic model, quantile bins in the trees.
    Numeric,
}

/// One input column. `name` is what explanations and suggested points show, so it should be
/// the words a person uses ("Lead Source", "webinars in 30 days").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    pub kind: FeatureKind,
}

impl FeatureSpec {
    pub fn categorical(name: impl Into<String>) -> Self {
        FeatureSpec { name: name.into(), kind: FeatureKind::Categorical }
    }

    pub fn numeric(name: impl Into<String>) -> Self {
        FeatureSpec { name: name.into(), kind: FeatureKind::Numeric }
    }
}

/// Closed contacts: one row per contact (cells in the order of `features`) and whether it was
/// won (`true`) or lost (`false`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Dataset {
    pub features: Vec<FeatureSpec>,
    pub rows: Vec<Vec<Value>>,
    pub labels: Vec<bool>,
}

/// A number in words: integers without a decimal point, others to at most 6 significant digits
/// so explanations read "2.5" rather than "2.4999999999999996".
pub(crate) fn format_number(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        // What `format!("{x:.0}")` writes, without its slow exact-digits path.
        return if x == 0.0 && x.is_sign_negative() { "-0".to_string() } else { (x as i64).to_string() };
    }
    let magnitude = if x == 0.0 { 0 } else { x.abs().log10().floor() as i32 };
    let decimals = (5 - magnitude).clamp(0, 15) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(-12.0), "-12");
        for x in [0.0, -0.0, 7.0, -3.0, 999_999_999_999_999.0, -123_456_789.0] {
            assert_eq!(format_number(x), format!("{x:.0}"));
        }
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(0.1 + 0.2), "0.3");
        assert_eq!(format_number(1234.56789), "1234.57");
        assert_eq!(format_number(0.000123456789), "0.000123457");
    }

    #[test]
    fn cells_read_as_numbers_and_levels() {
        assert_eq!(Value::Text(" 4.5 ".into()).as_number(), Some(4.5));
        assert_eq!(Value::Text("four".into()).as_number(), None);
        assert_eq!(Value::Number(f64::NAN).as_number(), None);
        assert_eq!(Value::Missing.as_number(), None);
        assert_eq!(Value::Number(3.0).as_level().as_deref(), Some("3"));
        assert_eq!(Value::Text("Reference".into()).as_level().as_deref(), Some("Reference"));
        assert_eq!(Value::Missing.as_level(), None);
    }
}
