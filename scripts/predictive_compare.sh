#!/usr/bin/env bash
# Compares leadscore's predictive model with scikit-learn on the shared data sets.
#
#   scripts/predictive_compare.sh [--seeds "42 1 2"] [DATA_DIR]
#
# --seeds: the split seeds to run, one table row per data set and seed (default: 42).
# DATA_DIR (or $LEADSCORE_SHARED_DATA) holds leads_x_education.csv and bank_marketing.csv;
# default: ../shared/data relative to the repository root. Creates a Python venv with
# scikit-learn and pandas in target/sklearn-venv when missing, builds the csv_auc example in
# release, runs both data sets through it and through scripts/predictive_compare.py, prints a
# markdown table for BENCHMARKS.md, and exits non-zero if any bar fails (AUCs within the
# margins of scikit-learn's, leadscore's training faster) or anything else goes wrong.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

seeds="42"
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) seeds="${2:?--seeds needs a list such as \"42 1 2\"}"; shift 2 ;;
        --seeds=*) seeds="${1#--seeds=}"; shift ;;
        -*) echo "predictive_compare: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
for seed in $seeds; do
    case "$seed" in
        '' | *[!0-9]*) echo "predictive_compare: seed $seed is not a non-negative integer" >&2; exit 2 ;;
    esac
done
data="${1:-${LEADSCORE_SHARED_DATA:-$root/../shared/data}}"
for file in leads_x_education.csv bank_marketing.csv; do
    if [ ! -f "$data/$file" ]; then
        echo "predictive_compare: $data/$file not found (pass the data directory or set LEADSCORE_SHARED_DATA)" >&2
        exit 2
    fi
done

venv="$root/target/sklearn-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import sklearn, pandas" 2>/dev/null; then
    echo "predictive_compare: creating $venv with scikit-learn and pandas" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check scikit-learn pandas
fi

# A target directory of its own: this script also runs from `cargo test`, whose cargo holds
# the lock on the main target directory while the tests run.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/predictive-compare"
cargo build --release --locked --quiet -p leadscore-predict --example csv_auc
csv_auc="$CARGO_TARGET_DIR/release/examples/csv_auc"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

leads_args=(--target Converted --positive 1
    --drop "Prospect ID" "Lead Number" Tags "Lead Quality" "Lead Profile" "Asymmetrique Activity Index"
    "Asymmetrique Profile Index" "Asymmetrique Activity Score" "Asymmetrique Profile Score" "Last Notable Activity"
    --numeric TotalVisits "Total Time Spent on Website" "Page Views Per Visit"
    --missing Select)
bank_args=(--sep ';' --target y --positive yes --drop duration --numeric age balance day campaign pdays previous)

status=0
header=--header
run() {
    local name="$1" file="$2" seed="$3"
    shift 3
    "$csv_auc" --csv "$data/$file" "$@" --seed "$seed" --out "$out/result.json"
    "$venv/bin/python" scripts/predictive_compare.py $header --name "$name" --seed "$seed" --csv "$data/$file" --result "$out/result.json" "$@" >>"$out/table.md" || status=1
    header=
}
for seed in $seeds; do
    run "X Education leads" leads_x_education.csv "$seed" "${leads_args[@]}"
    run "UCI bank marketing" bank_marketing.csv "$seed" "${bank_args[@]}"
done

echo
echo "Holdout ROC AUC and training time (both models), seeds $seeds, $(nproc) cores:"
echo
cat "$out/table.md"
if [ "$status" -ne 0 ]; then
    echo "predictive_compare: a bar failed (see above)" >&2
fi
exit "$status"
