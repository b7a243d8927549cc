//! The CSV importer: the input read as `leadscore import contacts` (the delimiter sniffed,
//! then `;` with an outcome column) and `leadscore import events` read a file, with the
//! checks of `fuzz/csv_check.rs` (rows in file order after the header, never more rows than
//! lines, rejections at lines that exist).

#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

#[path = "../csv_check.rs"]
mod csv_check;

/// The importer reads a file: each input is written to this one.
static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("a temporary directory"));
static FILE: LazyLock<PathBuf> = LazyLock::new(|| DIR.path().join("input.csv"));

fuzz_target!(|input: &[u8]| {
    if let Err(problem) = csv_check::check(&FILE, input) {
        panic!("{problem}");
    }
});
