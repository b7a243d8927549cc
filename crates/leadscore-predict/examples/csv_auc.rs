//! Trains leadscore's predictive model on a CSV (or a synthetic set), times it and writes the
//! holdout figures as JSON — the Rust half of `scripts/predictive_compare.sh`.
//!
//! ```text
//! cargo run --release -p leadscore-predict --example csv_auc -- \
//!     --csv leads.csv --target Converted --positive 1 [--sep ';'] [--drop COL ...] \
//!     [--numeric COL ...] [--missing Select ...] [--seed 42] [--min-closed 500] [--max-logistic-columns N] --out result.json
//!     [--max-iterations N] [--validation-fraction F] [--early-stopping ROUNDS (0: off)] [--leaf-l2 L2]
//!     [--learning-rate R] [--max-leaves N] [--min-samples-leaf N] [--small-data-folds K (0: off)]
//! cargo run --release -p leadscore-predict --example csv_auc -- --synthetic 100000 [--score 1000000] [--wide K] --out synthetic.json
//! ```
//! Empty cells are always missing; `--missing` adds more markers. Columns named by `--numeric`
//! are numbers, the others categorical. The JSON holds the holdout row indices (0-based data
//! rows of the CSV) so another tool can use exactly the same split. `--wide K` adds K
//! categorical features of high cardinality (up to 3,000 levels each, hundreds of them frequent)
//! to the synthetic set.

use std::error::Error;
use std::time::Instant;

use leadscore_predict::rng::{SplitMix64, stratified_split};
use leadscore_predict::{BoostingOptions, Dataset, FeatureSpec, TrainOptions, Trained, Value, metrics, train};
use rayon::prelude::*;

#[derive(Default)]
struct Args {
    csv: Option<String>,
    target: Option<String>,
    positive: Option<String>,
    sep: u8,
    drop: Vec<String>,
    numeric: Vec<String>,
    missing: Vec<String>,
    seed: u64,
    min_closed: Option<usize>,
    max_logistic_columns: Option<usize>,
    out: Option<String>,
    synthetic: Option<usize>,
    /// Extra high-cardinality categorical features in the synthetic set.
    wide: usize,
    score: usize,
    /// Boosting settings to experiment with (defaults: `BoostingOptions::default()`).
    boosting: BoostingOptions,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args { sep: b',', seed: 42, score: 1_000_000, ..Args::default() };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut index = 0;
    // Every value up to the next flag belongs to the current flag (so `--drop A B` works, as
    // does `--drop A --drop B`).
    let values = |index: &mut usize| -> Vec<String> {
        let mut taken = Vec::new();
        while *index + 1 < raw.len() && !raw[*index + 1].starts_with("--") {
            *index += 1;
            taken.push(raw[*index].clone());
        }
        taken
    };
    while index < raw.len() {
        let flag = raw[index].clone();
        let taken = values(&mut index);
        let single = || -> Result<String, Box<dyn Error>> {
            match taken.as_slice() {
                [value] => Ok(value.clone()),
                _ => Err(format!("{flag} takes one value").into()),
            }
        };
        match flag.as_str() {
            "--csv" => args.csv = Some(single()?),
            "--target" => args.target = Some(single()?),
            "--positive" => args.positive = Some(single()?),
            "--sep" => {
                let sep = single()?;
                args.sep = *sep.as_bytes().first().ok_or("--sep needs a character")?;
            }
            "--drop" => args.drop.extend(taken),
            "--numeric" => args.numeric.extend(taken),
            "--missing" => args.missing.extend(taken),
            "--seed" => args.seed = single()?.parse()?,
            "--min-closed" => args.min_closed = Some(single()?.parse()?),
            "--max-logistic-columns" => args.max_logistic_columns = Some(single()?.parse()?),
            "--out" => args.out = Some(single()?),
            "--synthetic" => args.synthetic = Some(single()?.parse()?),
            "--score" => args.score = single()?.parse()?,
            "--wide" => args.wide = single()?.parse()?,
            "--max-iterations" => args.boosting.max_iterations = single()?.parse()?,
            "--validation-fraction" => args.boosting.validation_fraction = single()?.parse()?,
            "--early-stopping" => args.boosting.early_stopping_rounds = Some(single()?.parse()?).filter(|&rounds| rounds > 0),
            "--leaf-l2" => args.boosting.l2 = single()?.parse()?,
            "--learning-rate" => args.boosting.learning_rate = single()?.parse()?,
            "--max-leaves" => args.boosting.max_leaves = single()?.parse()?,
            "--min-samples-leaf" => args.boosting.min_samples_leaf = single()?.parse()?,
            "--small-data-folds" => args.boosting.small_data_folds = single()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
        index += 1;
    }
    Ok(args)
}

fn read_csv(args: &Args) -> Result<Dataset, Box<dyn Error>> {
    let path = args.csv.as_deref().ok_or("--csv is required (or --synthetic)")?;
    let target = args.target.as_deref().ok_or("--target is required")?;
    let positive = args.positive.as_deref().ok_or("--positive is required")?;
    let mut reader = csv::ReaderBuilder::new().delimiter(args.sep).from_path(path)?;
    let headers: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let target_index = headers.iter().position(|h| h == target).ok_or_else(|| format!("no column {target} in {path}"))?;
    for name in args.drop.iter().chain(&args.numeric) {
        if !headers.contains(name) {
            return Err(format!("no column {name} in {path}").into());
        }
    }
    let columns: Vec<usize> = (0..headers.len()).filter(|&i| i != target_index && !args.drop.contains(&headers[i])).collect();
    let features = columns
        .iter()
        .map(|&i| if args.numeric.contains(&headers[i]) { FeatureSpec::numeric(&headers[i]) } else { FeatureSpec::categorical(&headers[i]) })
        .collect();
    let mut data = Dataset { features, rows: Vec::new(), labels: Vec::new() };
    for record in reader.records() {
        let record = record?;
        let cell = |i: usize| record.get(i).unwrap_or("").trim();
        data.labels.push(cell(target_index) == positive);
        data.rows.push(
            columns
                .iter()
                .map(|&i| {
                    let text = cell(i);
                    if text.is_empty() || args.missing.iter().any(|m| m == text) {
                        Value::Missing
                    } else if args.numeric.contains(&headers[i]) {
                        text.parse::<f64>().map_or_else(|_| Value::Text(text.to_string()), Value::Number)
                    } else {
                        Value::Text(text.to_string())
                    }
                })
                .collect(),
        );
    }
    Ok(data)
}

/// A CRM-like synthetic set with a known logit: sources, countries, job titles, a few activity
/// counts and an interaction (webinars matter more for one segment), some cells missing.
fn synthetic(rows: usize, wide: usize, seed: u64) -> Dataset {
    let mut rng = SplitMix64::new(seed);
    let mut features = vec![];
    let categorical = [("Lead Source", 12), ("Country", 30), ("Job Title", 20), ("Industry", 15), ("Company Size", 6), ("Plan", 4)];
    for (name, _) in categorical {
        features.push(FeatureSpec::categorical(name));
    }
    let numeric = ["visits in 30 days", "emails opened", "webinars in 30 days", "days since signup", "pages per visit", "form fills"];
    for name in numeric {
        features.push(FeatureSpec::numeric(name));
    }
    for attribute in 0..wide {
        features.push(FeatureSpec::categorical(format!("Attribute {attribute}")));
    }
    // Fixed level effects, drawn once from the same seed.
    let effects: Vec<Vec<f64>> = categorical.iter().map(|(_, levels)| (0..*levels).map(|_| 0.6 * rng.normal()).collect()).collect();
    let mut data = Dataset { features, rows: Vec::with_capacity(rows), labels: Vec::with_capacity(rows) };
    for _ in 0..rows {
        let mut row = Vec::with_capacity(12);
        let mut logit = -1.5;
        let mut first_level = 0;
        for (feature, (name, levels)) in categorical.iter().enumerate() {
            // Skewed level frequencies, like real CRM fields.
            let level = ((rng.next_f64().powi(2)) * *levels as f64) as usize;
            if feature == 0 {
                first_level = level;
            }
            logit += effects[feature][level];
            row.push(if rng.next_f64() < 0.03 { Value::Missing } else { Value::Text(format!("{name} {level}")) });
        }
        let visits = (rng.normal() * 3.0 + 5.0).max(0.0).round();
        let opened = (rng.normal() * 4.0 + 6.0).max(0.0).round();
        let webinars = (rng.next_f64() * 4.0).floor();
        let days = rng.next_f64() * 365.0;
        let pages = (rng.normal() + 3.0).max(1.0);
        let forms = (rng.next_f64() * 3.0).floor();
        logit += 0.15 * (visits - 5.0) + 0.05 * (opened - 6.0) - 0.004 * (days - 180.0) + 0.3 * forms;
        // Non-additive parts, which only the trees can learn: webinars count for one segment
        // only, and fresh sign-ups with many visits are hot.
        logit += if first_level < 3 { 0.8 * webinars } else { -0.2 * webinars };
        if days < 30.0 && visits >= 6.0 {
            logit += 1.5;
        }
        for (value, missing_rate) in [(visits, 0.02), (opened, 0.0), (webinars, 0.0), (days, 0.01), (pages, 0.05), (forms, 0.0)] {
            row.push(if rng.next_f64() < missing_rate { Value::Missing } else { Value::Number(value) });
        }
        for _ in 0..wide {
            // Zipf-like: level ≈ 3000^u, so the first few hundred levels are frequent.
            let level = (3000f64.powf(rng.next_f64()) as usize).min(2999);
            // Small effects for the frequent levels, none for the long tail.
            if level < 50 {
                logit += 0.05 * ((level % 7) as f64 - 3.0);
            }
            row.push(Value::Text(format!("value {level}")));
        }
        data.labels.push(rng.next_f64() < metrics::sigmoid(logit));
        data.rows.push(row);
    }
    data
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let data = match args.synthetic {
        Some(rows) => synthetic(rows, args.wide, args.seed),
        None => read_csv(&args)?,
    };
    let defaults = TrainOptions::default();
    let options = TrainOptions {
        seed: args.seed,
        min_closed: args.min_closed.unwrap_or(500),
        max_logistic_columns: args.max_logistic_columns.unwrap_or(defaults.max_logistic_columns),
        boosting: args.boosting.clone(),
        ..defaults
    };
    let started = Instant::now();
    let Trained { model, report } = train(&data, &options, &mut |_| {})?;
    let train_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (_, holdout) = stratified_split(&data.labels, options.holdout, options.seed);

    let mut result = serde_json::json!({
        "source": args.csv.clone().unwrap_or_else(|| format!("synthetic {}", data.rows.len())),
        "rows": report.rows,
        "positives": report.positives,
        "features": report.features,
        "excluded": report.excluded,
        "leakage": report.leakage,
        "seed": options.seed,
        "holdout_fraction": options.holdout,
        "holdout_indices": holdout,
        "train_rows": report.train_rows,
        "holdout_rows": report.holdout_rows,
        "chosen": report.chosen,
        "logistic": { "auc": report.logistic.auc, "log_loss": report.logistic.log_loss, "iterations": report.logistic_iterations },
        "boosted": { "auc": report.boosted.auc, "log_loss": report.boosted.log_loss, "trees": report.trees },
        "train_ms": train_ms,
        "threads": rayon::current_num_threads(),
    });

    if args.synthetic.is_some() && args.score > 0 {
        // Scoring speed of the stored model: cycle over the data's rows up to `--score` contacts.
        let rows = &data.rows;
        let started = Instant::now();
        let total: f64 = (0..args.score).into_par_iter().map(|i| model.predict(&rows[i % rows.len()]).probability).sum();
        let predict_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let fast_total: f64 = (0..args.score).into_par_iter().map(|i| model.probability(&rows[i % rows.len()])).sum();
        let probability_ms = started.elapsed().as_secs_f64() * 1000.0;
        result["scoring"] = serde_json::json!({
            "contacts": args.score,
            "algorithm": model.algorithm(),
            "predict_with_reasons_ms": predict_ms,
            "probability_only_ms": probability_ms,
            "mean_probability": total / args.score as f64,
            "mean_probability_fast": fast_total / args.score as f64,
        });
    }

    let json = serde_json::to_string_pretty(&result)?;
    match &args.out {
        Some(path) => std::fs::write(path, json + "\n")?,
        None => println!("{json}"),
    }
    eprintln!(
        "{}: {} rows, logistic AUC {:.4}, boosted AUC {:.4} ({} trees), chosen {:?}, trained in {:.0} ms",
        result["source"].as_str().unwrap_or(""),
        report.rows,
        report.logistic.auc,
        report.boosted.auc,
        report.trees,
        report.chosen,
        train_ms
    );
    if let Some(scoring) = result.get("scoring") {
        eprintln!("scoring: {scoring}");
    }
    Ok(())
}
