//! The suggested rule model (issue 14): the live predictive model's logistic weights
//! turned into a rule model people can read, discuss and edit — integer points per
//! attribute value and per event — with its backtest beside a live rule model.
//!
//! The points come from [`PredictiveModel::suggest_points`] (the strongest weight is 25
//! points, every other scaled alike). How each becomes a rule:
//! - a categorical attribute's level: a case `attribute = value` of one fit rule per
//!   attribute; a missing value: `not_exists`;
//! - a numeric attribute's points per standard deviation above its mean: cases at one and
//!   two deviations above and below it;
//! - counts of an event (or of page views under a path) in the trailing windows: points per
//!   event, the windows' points per event added up, with activity expiring after 90 days
//!   (the longest window the model reads);
//! - days since the last activity, when idleness costs: an inactivity penalty per week.
//!
//! What no rule can say (a level "other", counts of every event, the rule models' own
//! scores, colleagues' activity) is listed as left out. Bands are the live rule model's, so the backtest compares
//! like with like; the draft's points are on another scale, which its brackets show.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use leadscore_core::Model;
use leadscore_predict::{PointsCondition, PredictiveModel, SuggestedPoints};
use leadscore_store::{Millis, PublishedModel};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Engine;
use crate::backtest::BacktestReport;
use crate::features::{FeatureSchema, FeatureSource};
use crate::predictive::{PredictiveError, PredictiveReport};

/// A suggested rule model and how it fares against a live one.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SuggestedModelView {
    /// The predictive model version the points were learned by.
    pub version: i64,
    /// The draft as TOML: publish it, backtest it, or edit it first.
    pub model: String,
    /// Every learned weight as points, and the rule it went into (or why none).
    pub points: Vec<SuggestedPointsView>,
    /// The draft replayed beside the live rule model `against` (every outcome).
    pub backtest: BacktestReport,
    /// What to keep in mind reading the backtest.
    pub notes: Vec<String>,
}

/// One learned weight as points.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SuggestedPointsView {
    pub feature: String,
    /// The level for categorical features ("missing", "other"); absent for a numeric step.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub level: Option<String>,
    pub points: i64,
    /// For a numeric step: "per 1.8 above 3.4".
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub per: Option<String>,
    /// The draft's rule that carries it, or why no rule does.
    pub rule: String,
}

/// Trailing windows longer than this are not read by the model, so the draft's activity
/// expires after it.
const ACTIVITY_EXPIRES: &str = "90d";

/// The draft for the live predictive version, backtested against the live rule model
/// `against` (the only one when None) over every recorded outcome.
pub async fn suggest(engine: &Engine, against: Option<&str>) -> Result<SuggestedModelView, PredictiveError> {
    let live_rules = engine.named_or_only_model(against).map_err(|e| PredictiveError::Unreadable(e.to_string()))?;
    // The live version as this process loaded it (schema and model parsed once), and what
    // its training report says of how many deals it learned from.
    let live = engine.predictive().ok_or(PredictiveError::NoLiveVersion)?;
    let trained_on = engine
        .store
        .list_predictive()
        .await?
        .into_iter()
        .find(|v| v.version == live.version)
        .and_then(|v| serde_json::from_str::<PredictiveReport>(&v.report).ok())
        .map_or(0, |report| report.train_rows);
    let draft = draft(&live.schema, &live.model, &live_rules.model, &format!("{}-suggested", live_rules.name));
    let model = Model::parse(&draft.text).map_err(|e| PredictiveError::Unreadable(format!("the suggested model does not parse ({e}):\n{}", draft.text)))?;
    let candidate = Arc::new(PublishedModel { name: model.name.clone(), version: 0, model, shadow_of: None });
    let backtest = crate::backtest::run(engine, candidate, live_rules, 0, Millis::MAX, &mut |_, _| {}).await?;
    let notes = vec![
        "The draft's points are on their own scale (the strongest signal is 25 points) and its bands are the live model's: compare by ROC AUC, which does not depend on bands, and set the bands before publishing.".to_string(),
        format!(
            "The backtest judges every recorded outcome, {} of them the deals the predictive model learned from: the draft's figures are optimistic on those (its holdout figures are the version's).",
            backtest.judged_contacts.min(trained_on)
        ),
    ];
    Ok(SuggestedModelView { version: live.version, model: draft.text, points: draft.points, backtest, notes })
}

/// The draft's text and what became of each weight.
struct Draft {
    text: String,
    points: Vec<SuggestedPointsView>,
}

/// Where the points of one attribute go: its cases, first match wins.
#[derive(Default)]
struct FitRule {
    cases: Vec<(String, i64)>,
}

/// Builds the draft from the model's logistic weights; `bands_of` lends its bands.
fn draft(schema: &FeatureSchema, model: &PredictiveModel, bands_of: &Model, name: &str) -> Draft {
    let specs = schema.specs();
    let sources = schema.sources();
    let source_of = |feature: &str| specs.iter().position(|s| s.name == feature).and_then(|i| sources.get(i));
    let mut fit: BTreeMap<String, FitRule> = BTreeMap::new();
    // Points per event, by event name and by page group, summed over the windows.
    let mut per_event: BTreeMap<String, f64> = BTreeMap::new();
    let mut per_page: BTreeMap<String, f64> = BTreeMap::new();
    let mut idle_per_week = 0i64;
    let mut views = Vec::new();
    for suggestion in model.suggest_points() {
        let SuggestedPoints { feature, level, points, per, condition } = suggestion;
        let rule = match (source_of(&feature), &condition) {
            (Some(FeatureSource::Attribute(key)), PointsCondition::Level(value)) => {
                fit.entry(key.clone()).or_default().cases.push((format!("{{ attribute = {}, op = \"eq\", value = {} }}", quoted(key), quoted(value)), points));
                format!("fit rule {key:?}: {key} = {value}")
            }
            (Some(FeatureSource::Attribute(key)), PointsCondition::Missing) => {
                fit.entry(format!("{key} missing")).or_default().cases.push((format!("{{ attribute = {}, op = \"not_exists\" }}", quoted(key)), points));
                format!("fit rule \"{key} missing\"")
            }
            (Some(FeatureSource::Attribute(key)), PointsCondition::PerStep { step, mean }) => {
                let cases = &mut fit.entry(key.clone()).or_default().cases;
                for (deviations, op) in [(2.0, "gte"), (1.0, "gte"), (-2.0, "lte"), (-1.0, "lte")] {
                    let bound = nice(mean + deviations * step);
                    cases.push((format!("{{ attribute = {}, op = \"{op}\", value = {bound} }}", quoted(key)), points * deviations as i64));
                }
                format!("fit rule {key:?}: {points} points per {} above {}", nice(*step), nice(*mean))
            }
            (Some(FeatureSource::EventCount(event)), PointsCondition::PerStep { step, .. }) if *step > 0.0 => {
                *per_event.entry(event.clone()).or_default() += points as f64 / step;
                format!("activity rule \"{event}\" (points per event, the windows added up)")
            }
            (Some(FeatureSource::PageCount(group)), PointsCondition::PerStep { step, .. }) if *step > 0.0 => {
                *per_page.entry(group.clone()).or_default() += points as f64 / step;
                format!("activity rule \"Pages under {group}\" (points per page view, the windows added up)")
            }
            (Some(FeatureSource::DaysIdle), PointsCondition::PerStep { step, .. }) if points < 0 && *step > 0.0 => {
                idle_per_week = ((-points) as f64 * 7.0 / step).round() as i64;
                format!("inactivity: -{idle_per_week} per idle week")
            }
            (Some(FeatureSource::DaysIdle), _) => "left out: idleness that earns points has no rule (only an inactivity penalty)".to_string(),
            (Some(FeatureSource::AllEvents), _) => "left out: a rule awards one event name, not every event".to_string(),
            (Some(FeatureSource::RuleModel), _) => "left out: a rule model's own score".to_string(),
            (Some(FeatureSource::Account), _) => "left out: a rule scores a contact's own activity, not its colleagues'".to_string(),
            (_, PointsCondition::OtherLevel) => "left out: \"any other value\" has no rule (give the values it stands for their own cases)".to_string(),
            _ => "left out: no rule says this".to_string(),
        };
        views.push(SuggestedPointsView { feature, level, points, per, rule });
    }

    let mut text = String::new();
    let _ = writeln!(text, "# Suggested by leadscore from the predictive model's learned weights: edit freely.");
    let _ = writeln!(text, "name = {}", quoted(name));
    let _ = writeln!(text, "description = {}", quoted("Learned from won and lost deals; bands are the live model's"));
    let _ = writeln!(text, "\n[decay]\nexpire_after = \"{ACTIVITY_EXPIRES}\"");
    if idle_per_week > 0 {
        let _ = writeln!(text, "inactivity = {{ points = {idle_per_week}, every = \"7d\" }}");
    }
    for band in &bands_of.bands {
        let _ = writeln!(text, "\n[[bands]]\nname = {}", quoted(&band.name));
        if let Some(min) = band.min {
            let _ = writeln!(text, "min = {min}");
        }
    }
    for (rule, FitRule { cases }) in &fit {
        let _ = writeln!(text, "\n[[fit]]\nname = {}\ncases = [", quoted(rule));
        for (when, points) in cases.iter().filter(|(_, points)| *points != 0) {
            let _ = writeln!(text, "  {{ when = {when}, points = {points} }},");
        }
        let _ = writeln!(text, "]");
    }
    for (event, points) in &per_event {
        let points = points.round() as i64;
        if points != 0 {
            let _ = writeln!(text, "\n[[activity]]\nname = {}\nevent = {}\npoints = {points}", quoted(event), quoted(event));
        }
    }
    for (group, points) in &per_page {
        let points = points.round() as i64;
        if points != 0 {
            let _ = writeln!(
                text,
                "\n[[activity]]\nname = {}\nevent = \"page\"\nwhen = {{ property = \"path\", op = \"starts_with\", value = {} }}\npoints = {points}",
                quoted(&format!("Pages under {group}")),
                quoted(group)
            );
        }
    }
    Draft { text, points: views }
}

/// A TOML basic string (JSON's escapes are TOML's).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// A threshold a person would write: two significant digits from 10 up, else one decimal.
fn nice(x: f64) -> f64 {
    if x.abs() < 10.0 {
        return (x * 10.0).round() / 10.0;
    }
    let magnitude = 10f64.powi(x.abs().log10().floor() as i32 - 1);
    (x / magnitude).round() * magnitude
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_round_numbers() {
        assert_eq!(nice(394.2), 390.0);
        assert_eq!(nice(3.46), 3.5);
        assert_eq!(nice(-1234.0), -1200.0);
        assert_eq!(nice(0.04), 0.0);
    }

    #[test]
    fn names_are_quoted_for_toml() {
        assert_eq!(quoted("Lead \"Source\""), "\"Lead \\\"Source\\\"\"");
    }
}
