//! Training through the public API on small synthetic data sets.

use leadscore_predict::rng::SplitMix64;
use leadscore_predict::{
    Algorithm, BoostingOptions, Dataset, FeatureSpec, PointsCondition, PredictiveModel, Progress, TrainError, TrainOptions, Value, metrics, train,
};
use proptest::prelude::*;

const SOURCES: [&str; 5] = ["Reference", "Google", "Direct", "Olark Chat", "Fax"];

/// A lead-like data set: a source (with a rare level and missing cells), visits (with missing
/// cells) and noise, the outcome drawn from a known logit.
fn leads(rows: usize, seed: u64) -> Dataset {
    let mut rng = SplitMix64::new(seed);
    let features = vec![FeatureSpec::categorical("Lead Source"), FeatureSpec::numeric("visits"), FeatureSpec::numeric("noise")];
    let source_effect = [2.0, 0.3, 0.0, -1.0, 0.5];
    let mut data = Dataset { features, rows: vec![], labels: vec![] };
    for _ in 0..rows {
        // "Fax" is rare: it lands in "other".
        let source = if rng.next_f64() < 0.01 { 4 } else { rng.below(4) };
        let visits = (rng.normal() * 2.0 + 4.0).max(0.0).round();
        let logit = -1.0 + source_effect[source] + 0.4 * (visits - 4.0);
        data.labels.push(rng.next_f64() < metrics::sigmoid(logit));
        let source_cell = if rng.next_f64() < 0.05 { Value::Missing } else { Value::Text(SOURCES[source].to_string()) };
        let visits_cell = if rng.next_f64() < 0.05 { Value::Missing } else { Value::Number(visits) };
        data.rows.push(vec![source_cell, visits_cell, Value::Number(rng.normal())]);
    }
    data
}

fn quick() -> TrainOptions {
    TrainOptions { boosting: BoostingOptions { max_iterations: 40, ..BoostingOptions::default() }, ..TrainOptions::default() }
}

fn check_sum_invariant(model: &PredictiveModel, row: &[Value]) {
    let prediction = model.predict(row);
    let sum: f64 = prediction.intercept + prediction.reasons.iter().map(|r| r.contribution).sum::<f64>();
    assert!((sum - prediction.logit).abs() < 1e-9, "{sum} vs {}", prediction.logit);
    assert_eq!(prediction.probability, metrics::sigmoid(prediction.logit));
    assert_eq!(u32::from(prediction.score), (prediction.probability * 100.0).round() as u32);
    assert!((prediction.probability - model.probability(row)).abs() < 1e-12);
    for pair in prediction.reasons.windows(2) {
        assert!(pair[0].contribution.abs() >= pair[1].contribution.abs());
    }
    assert!(prediction.reasons.iter().all(|reason| reason.contribution != 0.0));
}

#[test]
fn trains_evaluates_and_explains() {
    let data = leads(3000, 1);
    let mut steps = vec![];
    let trained = train(&data, &quick(), &mut |step| steps.push(step)).unwrap();
    let report = &trained.report;
    assert_eq!((report.rows, report.train_rows, report.holdout_rows), (3000, 2400, 600));
    assert!(report.logistic.auc > 0.75, "{}", report.logistic.auc);
    assert!(report.boosted.auc > 0.7, "{}", report.boosted.auc);
    assert_eq!(report.features, vec!["Lead Source", "visits", "noise"]);
    assert!(report.leakage.is_empty() && report.excluded.is_empty());
    for evaluation in [&report.logistic, &report.boosted] {
        assert_eq!(evaluation.calibration.iter().map(|bin| bin.count).sum::<usize>(), report.holdout_rows);
        assert!(evaluation.log_loss > 0.3 && evaluation.log_loss < 0.65, "{}", evaluation.log_loss);
    }
    assert_eq!(steps.first(), Some(&Progress::Encoding));
    assert!(steps.contains(&Progress::Logistic { iteration: 1 }));
    // 2400 training rows: cross-validated, so the progress counts the refit's trees.
    assert!(steps.iter().any(|step| matches!(step, Progress::Boosting { tree: 1, of } if *of <= 40)));
    assert_eq!(steps.last(), Some(&Progress::Evaluating));

    let prediction = trained.model.predict(&[Value::Text("Reference".into()), Value::Number(5.0), Value::Number(0.0)]);
    assert!(prediction.probability > 0.6, "{prediction:?}");
    assert_eq!(prediction.reasons[0].feature, "Lead Source");
    assert_eq!(prediction.reasons[0].value, "Reference");
    let visits = prediction.reasons.iter().find(|reason| reason.feature == "visits").unwrap();
    assert_eq!(visits.value, "5");
    assert!(visits.contribution > 0.0);
}

#[test]
fn the_chosen_model_is_the_better_one_on_the_holdout() {
    let trained = train(&leads(2000, 2), &quick(), &mut |_| {}).unwrap();
    let report = &trained.report;
    let expected = if report.boosted.auc > report.logistic.auc { Algorithm::Boosted } else { Algorithm::Logistic };
    assert_eq!(report.chosen, expected);
    assert_eq!(trained.model.algorithm(), expected);
}

#[test]
fn logistic_model_recovers_the_generating_direction_and_suggests_points() {
    let options = TrainOptions { boosting: BoostingOptions { max_iterations: 5, ..BoostingOptions::default() }, ..TrainOptions::default() };
    let trained = train(&leads(5000, 3), &options, &mut |_| {}).unwrap();
    let points = trained.model.suggest_points();
    let level = |name: &str| points.iter().find(|p| p.condition == PointsCondition::Level(name.into())).map_or(0, |p| p.points);
    // Reference (+2.0) ≫ Google (+0.3) > Direct (0) > Olark Chat (−1.0).
    assert_eq!(level("Reference"), 25);
    assert!(level("Reference") > level("Google") && level("Google") > level("Direct") && level("Direct") > level("Olark Chat"));
    let visits = points.iter().find(|p| p.feature == "visits" && matches!(p.condition, PointsCondition::PerStep { .. })).unwrap();
    assert!(visits.points > 0);
    assert!(visits.per.as_deref().unwrap().starts_with("per "), "{:?}", visits.per);
    assert!(points.iter().all(|p| p.points != 0 && p.points.abs() <= 25));
}

#[test]
fn refuses_too_few_closed_contacts_with_the_numbers() {
    let data = leads(499, 4);
    let error = train(&data, &TrainOptions::default(), &mut |_| {}).unwrap_err();
    assert_eq!(error, TrainError::NotEnoughClosed { have: 499, need: 500 });
    let message = error.to_string();
    assert!(message.contains("499") && message.contains("500"), "{message}");
}

#[test]
fn refuses_too_few_of_a_class_with_the_numbers() {
    let mut data = leads(1000, 5);
    let mut positives = 0;
    for label in &mut data.labels {
        if *label {
            positives += 1;
            *label = positives <= 40;
        }
    }
    let error = train(&data, &TrainOptions::default(), &mut |_| {}).unwrap_err();
    assert!(matches!(error, TrainError::NotEnoughOfClass { have: 40, need: 50, .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("positive") && message.contains("40") && message.contains("50"), "{message}");
}

#[test]
fn rejects_malformed_data() {
    let mut data = leads(600, 6);
    data.rows[10].pop();
    let error = train(&data, &TrainOptions::default(), &mut |_| {}).unwrap_err();
    assert!(matches!(&error, TrainError::Invalid(message) if message.contains("row 10")), "{error:?}");
}

fn with_label_column(data: &Dataset) -> Dataset {
    let mut leaky = data.clone();
    leaky.features.push(FeatureSpec::categorical("Closed Reason"));
    for (row, &label) in leaky.rows.iter_mut().zip(&data.labels) {
        row.push(Value::Text(if label { "Signed".into() } else { "No budget".into() }));
    }
    leaky
}

#[test]
fn a_column_equal_to_the_outcome_is_flagged_and_left_out() {
    let data = with_label_column(&leads(1500, 7));
    let trained = train(&data, &quick(), &mut |_| {}).unwrap();
    let report = &trained.report;
    assert_eq!(report.leakage.len(), 1);
    assert_eq!(report.leakage[0].feature, "Closed Reason");
    assert_eq!(report.leakage[0].auc, 1.0);
    assert!(report.leakage[0].message.contains("allow_leaky"), "{}", report.leakage[0].message);
    assert_eq!(report.excluded, vec!["Closed Reason"]);
    assert!(!report.features.contains(&"Closed Reason".to_string()));
    assert!(report.logistic.auc < 0.95);
    // The model ignores the column: changing it changes nothing.
    let mut row = data.rows[0].clone();
    let before = trained.model.predict(&row);
    row[3] = Value::Text("Signed".into());
    assert_eq!(trained.model.predict(&row), before);
}

#[test]
fn a_leaky_column_is_kept_when_allowed() {
    let data = with_label_column(&leads(1500, 7));
    let options = TrainOptions { allow_leaky: vec!["Closed Reason".into()], ..quick() };
    let trained = train(&data, &options, &mut |_| {}).unwrap();
    assert_eq!(trained.report.leakage.len(), 1);
    assert!(trained.report.leakage[0].message.contains("kept"));
    assert!(trained.report.excluded.is_empty());
    assert!(trained.report.logistic.auc > 0.99);
}

#[test]
fn a_numeric_leak_through_missingness_is_flagged() {
    let mut data = leads(1500, 8);
    data.features.push(FeatureSpec::numeric("days to sign"));
    for (row, &label) in data.rows.iter_mut().zip(&data.labels) {
        row.push(if label { Value::Number(12.0) } else { Value::Missing });
    }
    let trained = train(&data, &quick(), &mut |_| {}).unwrap();
    assert_eq!(trained.report.excluded, vec!["days to sign"]);
}

#[test]
fn the_same_data_and_seed_give_byte_identical_json() {
    let data = leads(1200, 9);
    let options = TrainOptions { k_folds: Some(3), ..quick() };
    let first = train(&data, &options, &mut |_| {}).unwrap();
    let second = train(&data, &options, &mut |_| {}).unwrap();
    assert_eq!(serde_json::to_string(&first).unwrap(), serde_json::to_string(&second).unwrap());
    assert_eq!(first.report.logistic.cv_auc.as_ref().map(Vec::len), Some(3));
    let other_seed = train(&data, &TrainOptions { seed: 7, ..options }, &mut |_| {}).unwrap();
    assert_ne!(serde_json::to_string(&first.report).unwrap(), serde_json::to_string(&other_seed.report).unwrap());
}

#[test]
fn a_stored_model_predicts_the_same_after_a_json_round_trip() {
    for data in [leads(1500, 10), xor(1500, 10)] {
        let trained = train(&data, &quick(), &mut |_| {}).unwrap();
        let json = serde_json::to_string(&trained.model).unwrap();
        let restored: PredictiveModel = serde_json::from_str(&json).unwrap();
        assert_eq!(restored, trained.model);
        for row in data.rows.iter().take(50) {
            assert_eq!(restored.predict(row), trained.model.predict(row));
        }
    }
}

#[test]
fn a_small_training_part_averages_a_refit_with_the_fold_models() {
    let data = leads(3000, 14);
    // Five folds here (three by default), so the ensemble is plainly larger than one.
    let options = TrainOptions { boosting: BoostingOptions { small_data_folds: 5, ..quick().boosting }, ..quick() };
    let cross_validated = train(&data, &options, &mut |_| {}).unwrap();
    let one_slice = TrainOptions { boosting: BoostingOptions { small_data_folds: 0, ..options.boosting.clone() }, ..options.clone() };
    let single = train(&data, &one_slice, &mut |_| {}).unwrap();
    // Six ensembles (the refit and five fold models) against one.
    assert!(cross_validated.report.trees > 3 * single.report.trees, "{} vs {}", cross_validated.report.trees, single.report.trees);
    assert!(cross_validated.report.boosted.auc > 0.7, "{}", cross_validated.report.boosted.auc);
    // Calibrated on out-of-fold margins: the mean prediction is near the base rate.
    let rate = data.labels.iter().filter(|&&l| l).count() as f64 / data.labels.len() as f64;
    let mean = data.rows.iter().map(|row| cross_validated.model.probability(row)).sum::<f64>() / data.rows.len() as f64;
    assert!((mean - rate).abs() < 0.03, "{mean} vs {rate}");
    // Above the threshold, one validation slice as before.
    let large = TrainOptions { boosting: BoostingOptions { small_data_rows: 1000, ..options.boosting.clone() }, ..options };
    assert_eq!(train(&data, &large, &mut |_| {}).unwrap().report.trees, single.report.trees);
}

#[test]
fn a_stored_model_that_does_not_fit_together_is_refused() {
    let trained = train(&xor(1500, 15), &quick(), &mut |_| {}).unwrap();
    assert_eq!(trained.model.algorithm(), Algorithm::Boosted);
    let json: serde_json::Value = serde_json::to_value(&trained.model).unwrap();
    assert!(serde_json::from_value::<PredictiveModel>(json.clone()).is_ok());
    let mut wrong_feature = json.clone();
    wrong_feature["boosted"]["trees"][0]["nodes"][0]["split"]["feature"] = serde_json::json!(7);
    let mut wrong_child = json.clone();
    wrong_child["boosted"]["trees"][0]["nodes"][0]["split"]["left"] = serde_json::json!(0);
    let mut fewer_weights = json.clone();
    fewer_weights["logistic"]["weights"].as_array_mut().unwrap().pop();
    let mut fewer_encodings = json;
    fewer_encodings["encodings"].as_array_mut().unwrap().pop();
    for broken in [wrong_feature, wrong_child, fewer_weights, fewer_encodings] {
        assert!(serde_json::from_value::<PredictiveModel>(broken).is_err());
    }
}

/// XOR of two signs: no additive model can rank it, trees can.
fn xor(rows: usize, seed: u64) -> Dataset {
    let mut rng = SplitMix64::new(seed);
    let mut data = Dataset { features: vec![FeatureSpec::numeric("a"), FeatureSpec::numeric("b")], rows: vec![], labels: vec![] };
    for _ in 0..rows {
        let (a, b) = (rng.next_f64() * 2.0 - 1.0, rng.next_f64() * 2.0 - 1.0);
        let same_sign = (a > 0.0) == (b > 0.0);
        data.labels.push(if rng.next_f64() < 0.1 { !same_sign } else { same_sign });
        data.rows.push(vec![Value::Number(a), Value::Number(b)]);
    }
    data
}

#[test]
fn boosted_trees_beat_logistic_regression_on_xor() {
    let trained = train(&xor(2000, 11), &quick(), &mut |_| {}).unwrap();
    let report = &trained.report;
    assert!(report.logistic.auc < 0.6, "{}", report.logistic.auc);
    assert!(report.boosted.auc > 0.85, "{}", report.boosted.auc);
    assert_eq!(report.chosen, Algorithm::Boosted);
    assert_eq!(trained.model.algorithm(), Algorithm::Boosted);
    assert!(trained.model.tree_count() > 0);
    // Calibrated: the predicted rate in each populated bin is near the observed one.
    for bin in &report.boosted.calibration {
        if bin.count >= 100 {
            assert!((bin.mean_predicted - bin.observed_rate).abs() < 0.1, "{bin:?}");
        }
    }
}

fn cell_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Missing),
        (-5.0f64..15.0).prop_map(Value::Number),
        proptest::sample::select(vec!["Reference", "Google", "Direct", "Olark Chat", "Fax", "never seen", "3", ""]).prop_map(|s| Value::Text(s.into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn contributions_add_up_to_the_logit(rows in proptest::collection::vec(proptest::collection::vec(cell_strategy(), 0..4), 1..20)) {
        thread_local! {
            static MODELS: (PredictiveModel, PredictiveModel) = {
                let logistic = train(&leads(1500, 12), &quick(), &mut |_| {}).unwrap().model;
                let boosted = train(&xor(1500, 13), &quick(), &mut |_| {}).unwrap().model;
                (logistic, boosted)
            };
        }
        MODELS.with(|(first, second)| {
            for row in &rows {
                check_sum_invariant(first, row);
                check_sum_invariant(second, row);
            }
        });
    }
}
