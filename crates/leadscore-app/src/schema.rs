//! OpenAPI schemas of the types the views carry from crates that know no OpenAPI
//! (`leadscore-core`'s score card and problems, `leadscore-predict`'s evaluation). A view
//! field of such a type names its schema here with `#[schema(value_type = ...)]`; the
//! tests below check each schema against what the type really serializes, so the
//! description cannot drift from the answer.

use utoipa::ToSchema;

/// A model's scores for one contact (contract §5).
#[derive(ToSchema)]
#[schema(as = ScoreCard)]
#[allow(dead_code)]
pub struct ScoreCardSchema {
    /// Points from attributes.
    fit: f64,
    /// Points from events, decayed as of the instant the card is for.
    activity: f64,
    /// fit + activity.
    total: f64,
    /// The first band whose `min` is at most the total.
    #[schema(required = true)]
    band: Option<String>,
    /// 0-5: how many of the model's flame thresholds the total reaches.
    flames: u8,
    /// A-D from the fit, when the model has grades.
    #[schema(required = true)]
    grade: Option<String>,
    /// sales-ready, long-term target, researcher or unqualified, when the model has a quadrant.
    #[schema(required = true)]
    quadrant: Option<String>,
}

/// One problem of a model or automation: where, and what is wrong.
#[derive(ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemSchema {
    /// Where: `fit[0] "Job title".cases[2].when.op`, `decay.half_life`, …
    path: String,
    message: String,
}

/// How well a predictive model did on the holdout.
#[derive(ToSchema)]
#[schema(as = Evaluation)]
#[allow(dead_code)]
pub struct EvaluationSchema {
    auc: f64,
    log_loss: f64,
    calibration: Vec<CalibrationBinSchema>,
    /// Stratified k-fold AUCs over the training part, when asked for.
    #[schema(required = true)]
    cv_auc: Option<Vec<f64>>,
}

/// One row of the calibration table: predictions in [lo, hi).
#[derive(ToSchema)]
#[schema(as = CalibrationBin)]
#[allow(dead_code)]
pub struct CalibrationBinSchema {
    lo: f64,
    hi: f64,
    count: usize,
    mean_predicted: f64,
    observed_rate: f64,
}

/// A feature that separates won from lost (almost) alone.
#[derive(ToSchema)]
#[schema(as = LeakageWarning)]
#[allow(dead_code)]
pub struct LeakageWarningSchema {
    feature: String,
    auc: f64,
    message: String,
}

/// The learner a predictive model uses.
#[derive(ToSchema)]
#[schema(as = Algorithm)]
#[allow(dead_code)]
pub enum AlgorithmSchema {
    Logistic,
    Boosted,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use serde::Serialize;
    use serde_json::Value;
    use utoipa::PartialSchema;

    use super::*;

    /// The schema as JSON.
    fn schema_of<T: PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    /// The properties a schema declares, and the ones it requires.
    fn declared<T: PartialSchema>() -> (BTreeSet<String>, BTreeSet<String>) {
        let schema = schema_of::<T>();
        let properties = schema["properties"].as_object().unwrap().keys().cloned().collect();
        let required = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
        (properties, required)
    }

    /// The keys a value serializes with.
    fn serialized(value: &impl Serialize) -> BTreeSet<String> {
        serde_json::to_value(value).unwrap().as_object().unwrap().keys().cloned().collect()
    }

    /// `sample` must serialize with exactly the schema's properties, all of them required
    /// (these types always write every key, null or not).
    fn matches<T: PartialSchema>(sample: &impl Serialize) {
        let (properties, required) = declared::<T>();
        let keys = serialized(sample);
        assert_eq!(properties, keys, "the schema's properties are the keys the type serializes");
        assert_eq!(required, keys, "every key is always there");
    }

    #[test]
    fn score_card() {
        let card = leadscore_core::ScoreCard {
            fit: 1.0,
            activity: 2.0,
            total: 3.0,
            band: Some("hot".into()),
            flames: 1,
            grade: Some("A".into()),
            quadrant: Some("researcher".into()),
        };
        matches::<ScoreCardSchema>(&card);
    }

    #[test]
    fn problem() {
        matches::<ProblemSchema>(&leadscore_core::Problem { path: "fit[0]".into(), message: "no".into() });
    }

    #[test]
    fn evaluation() {
        let bin = leadscore_predict::CalibrationBin { lo: 0.0, hi: 0.1, count: 3, mean_predicted: 0.05, observed_rate: 0.0 };
        matches::<CalibrationBinSchema>(&bin);
        let evaluation = leadscore_predict::Evaluation { auc: 0.8, log_loss: 0.4, calibration: vec![bin], cv_auc: Some(vec![0.8]) };
        matches::<EvaluationSchema>(&evaluation);
        let warning = leadscore_predict::LeakageWarning { feature: "x".into(), auc: 0.99, message: "leaks".into() };
        matches::<LeakageWarningSchema>(&warning);
    }

    #[test]
    fn algorithm() {
        let names: Vec<Value> =
            [leadscore_predict::Algorithm::Logistic, leadscore_predict::Algorithm::Boosted].iter().map(|a| serde_json::to_value(a).unwrap()).collect();
        assert_eq!(schema_of::<AlgorithmSchema>()["enum"], Value::Array(names));
    }
}
