#!/usr/bin/env bash
# A short coverage-guided run of every `cargo fuzz` target, from its corpus in
# fuzz/corpus/<target>/ (CI runs it; see RELIABILITY.md, "Fuzzing"). A crash, a panic, a
# failed check, a hang (over 10 s on one input) or an input using over 2 GB fails it, with
# the input printed in base64 and saved in fuzz/artifacts/<target>/ of the build (the mirror below).
#
#   fuzz/smoke.sh [SECONDS per target, default 15]
#
# Built with --dev (no optimisation: the quickest build; debug assertions and overflow
# checks on, as in the long runs) and no sanitizer (the workspace forbids unsafe code), into
# $LEADSCORE_FUZZ_TARGET_DIR (default ~/.cache/leadscore/fuzz-target), kept between runs on
# one machine so that only the changed crates are built again.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-15}"

if ! cargo fuzz --version 2>/dev/null | grep -q "0.13.2"; then
    cargo install --locked --quiet cargo-fuzz@0.13.2
fi
cache="${LEADSCORE_FUZZ_CACHE:-$HOME/.cache/leadscore}"
target_dir="${LEADSCORE_FUZZ_TARGET_DIR:-$cache/fuzz-target}"
# Cargo tells crates apart by their path, so every fresh clone (each CI run) would add a
# copy of the workspace's crates to the shared build. The build runs from one mirror of the
# checkout instead; --checksum leaves unchanged files (and their times) alone, so only what
# changed is built again. Without rsync it builds in place.
if command -v rsync >/dev/null 2>&1; then
    mirror="$cache/fuzz-src"
    mkdir -p "$mirror"
    rsync -a --checksum --delete --exclude /target/ --exclude /fuzz/artifacts/ --exclude /.git/ ../ "$mirror/"
    cd "$mirror/fuzz"
fi
# A build that grew past 20 GB (clones built in place) starts again.
if [ -d "$target_dir" ] && [ "$(du -sm "$target_dir" | cut -f1)" -gt 20000 ]; then
    rm -rf "$target_dir"
fi
build=(--dev --sanitizer none --target-dir "$target_dir")
start=$SECONDS
cargo +nightly fuzz build "${build[@]}"
echo "fuzz: targets built in $((SECONDS - start)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in model automation condition event segment csv; do
    mkdir -p "$scratch/$target" "artifacts/$target"
    # What the run finds goes to the scratch directory: the corpus stays as committed.
    if ! cargo +nightly fuzz run "${build[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$scratch/$target.log" 2>&1; then
        tail -n 60 "$scratch/$target.log"
        for input in artifacts/"$target"/*; do
            [ -f "$input" ] && echo "fuzz: $target: $input (base64): $(base64 -w0 "$input")"
        done
        echo "fuzz: $target failed" >&2
        exit 1
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$target.log")"
    coverage="$(grep -o 'cov: [0-9]* ft: [0-9]*' "$scratch/$target.log" | tail -n 1)"
    echo "fuzz: $target: $runs inputs in ${seconds} s, $coverage, no failure"
done
echo "fuzz: done in $((SECONDS - start)) s"
