//! The CSV importer's stable fuzz harness: the mutation fuzzer of `fuzz/harness.rs` over
//! `fuzz/corpus/csv/`, with the checks of `fuzz/csv_check.rs` (the same the `cargo fuzz`
//! target `csv` runs, coverage-guided, on nightly: see RELIABILITY.md). Contacts with the
//! delimiter sniffed, and with `;` and an outcome column; events.

#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/harness.rs"]
mod harness;

#[path = "../../../fuzz/csv_check.rs"]
mod csv_check;

#[test]
fn fuzz_csv_importer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.csv");
    harness::fuzz("csv", |input| csv_check::check(&file, input));
}
