#!/usr/bin/env python3
"""Compares leadscore's predictive model with scikit-learn on the same features and split.

Reads the CSV and the JSON written by leadscore's `csv_auc` example (which holds the holdout
row indices), builds the same features in pandas/scikit-learn, trains LogisticRegression(C=1)
and HistGradientBoostingClassifier (defaults, native categorical handling) on the same
training rows, and scores the same holdout.

Prints a markdown table row (for BENCHMARKS.md) on stdout, details on stderr, and exits 1
unless: leadscore's logistic AUC >= scikit-learn's - 0.02, leadscore's boosted AUC >=
scikit-learn's HGB - 0.01, and leadscore trained both models faster than scikit-learn did.
Pass --header to print the table header first.
"""

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

LOGISTIC_MARGIN = 0.02
BOOSTED_MARGIN = 0.01
HEADER = (
    "| data set | seed | rows | holdout | leadscore logistic AUC | sklearn LogisticRegression AUC "
    "| leadscore boosted AUC | sklearn HGB AUC | leadscore train (both) | sklearn train (both) |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--result", required=True, help="JSON written by the csv_auc example")
    parser.add_argument("--target", required=True)
    parser.add_argument("--positive", required=True)
    parser.add_argument("--sep", default=",")
    parser.add_argument("--drop", nargs="*", default=[])
    parser.add_argument("--numeric", nargs="*", default=[])
    parser.add_argument("--missing", nargs="*", default=[])
    parser.add_argument("--name", help="data set name in the table (default: the file name)")
    parser.add_argument("--seed", help="the split seed, for the table (default: the one in --result)")
    parser.add_argument("--header", action="store_true", help="print the markdown table header first")
    args = parser.parse_args()

    with open(args.result) as f:
        rust = json.load(f)

    # Everything as text first, so missing means exactly what it means to leadscore: an empty
    # cell or one of the --missing markers.
    raw = pd.read_csv(args.csv, sep=args.sep, dtype=str, keep_default_na=False)
    raw = raw.apply(lambda column: column.str.strip())
    if len(raw) != rust["rows"]:
        print(f"{args.csv}: {len(raw)} rows here, {rust['rows']} in {args.result}", file=sys.stderr)
        return 1
    y = (raw[args.target] == args.positive).to_numpy()
    features = [c for c in raw.columns if c != args.target and c not in args.drop]
    # leadscore may have left features out as leakage; compare on the features it used.
    features = [c for c in features if c in set(rust["features"])]
    numeric = [c for c in features if c in args.numeric]
    categorical = [c for c in features if c not in args.numeric]
    X = raw[features].replace([""] + args.missing, np.nan)
    for column in numeric:
        X[column] = pd.to_numeric(X[column], errors="coerce")

    holdout = np.zeros(len(X), dtype=bool)
    holdout[np.asarray(rust["holdout_indices"], dtype=int)] = True
    X_train, X_test, y_train, y_test = X[~holdout], X[holdout], y[~holdout], y[holdout]

    # Logistic regression: one-hot (levels seen < 10 times grouped, missing a level of its own)
    # and standardised numerics with a missing indicator, as leadscore encodes them.
    logistic = Pipeline([
        ("encode", ColumnTransformer([
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="mean", add_indicator=True)), ("scale", StandardScaler())]), numeric),
            ("categorical", Pipeline([
                ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
                ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10)),
            ]), categorical),
        ])),
        ("model", LogisticRegression(C=1.0, max_iter=10_000)),
    ])
    started = time.perf_counter()
    logistic.fit(X_train, y_train)
    logistic_seconds = time.perf_counter() - started
    logistic_auc = roc_auc_score(y_test, logistic.predict_proba(X_test)[:, 1])

    # Gradient boosting with default settings and native categorical splits (category dtype,
    # categories from the training part; unseen levels become missing).
    X_trees_train, X_trees_test = X_train.copy(), X_test.copy()
    for column in categorical:
        levels = pd.Index(sorted(X_trees_train[column].dropna().unique()))
        X_trees_train[column] = pd.Categorical(X_trees_train[column], categories=levels)
        unseen_as_missing = X_trees_test[column].where(X_trees_test[column].isin(levels))
        X_trees_test[column] = pd.Categorical(unseen_as_missing, categories=levels)
    boosted = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    started = time.perf_counter()
    boosted.fit(X_trees_train, y_train)
    boosted_seconds = time.perf_counter() - started
    boosted_auc = roc_auc_score(y_test, boosted.predict_proba(X_trees_test)[:, 1])

    sklearn_ms = 1000 * (logistic_seconds + boosted_seconds)
    rust_ms = rust["train_ms"]
    checks = [
        (f"logistic AUC {rust['logistic']['auc']:.4f} >= sklearn {logistic_auc:.4f} - {LOGISTIC_MARGIN}",
         rust["logistic"]["auc"] >= logistic_auc - LOGISTIC_MARGIN),
        (f"boosted AUC {rust['boosted']['auc']:.4f} >= sklearn HGB {boosted_auc:.4f} - {BOOSTED_MARGIN}",
         rust["boosted"]["auc"] >= boosted_auc - BOOSTED_MARGIN),
        (f"training {rust_ms:.0f} ms < sklearn {sklearn_ms:.0f} ms "
         f"(LogisticRegression {1000 * logistic_seconds:.0f} ms + HGB {1000 * boosted_seconds:.0f} ms, {boosted.n_iter_} trees)",
         rust_ms < sklearn_ms),
    ]
    name = args.name or args.csv.rsplit("/", 1)[-1]
    for text, ok in checks:
        print(f"{name}, seed {args.seed or rust.get('seed', '')}: {'ok  ' if ok else 'FAIL'} {text}", file=sys.stderr)

    if args.header:
        print(HEADER)
    print(
        f"| {name} | {args.seed or rust.get('seed', '')} | {rust['rows']} | {int(holdout.sum())} | {rust['logistic']['auc']:.4f} | {logistic_auc:.4f} "
        f"| {rust['boosted']['auc']:.4f} | {boosted_auc:.4f} | {rust_ms:.0f} ms | {sklearn_ms:.0f} ms |"
    )
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
