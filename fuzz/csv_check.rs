//! The CSV importer's fuzz check, shared by its `cargo fuzz` target
//! (`fuzz/fuzz_targets/csv.rs`) and its stable harness (`crates/leadscore/tests/fuzz_csv.rs`),
//! included by path: a file read as `import contacts` and `import events` read it.

use std::path::Path;

use leadscore::csv_rows::{ContactColumns, ContactOptions, CsvRows, Seen, Summary, event_object};

/// Reads a CSV as `import contacts` and `import events` do, without a store: every row
/// read, mapped (columns, cells, e-mail, times, outcome), checked for duplicates, or
/// rejected with a reason. Rows come in file order, after the header, and never more
/// rows than the file has lines (a reader that loops would hang the import). `file` holds
/// `input`.
pub fn read_csv_as_an_import(file: &Path, input: &[u8], delimiter: Option<char>, outcome: Option<&str>) -> Result<(), String> {
    let lines = input.split(|b| *b == b'\n' || *b == b'\r').count() as u64;
    let options = ContactOptions {
        historical: true,
        outcome: outcome.map(str::to_string),
        map: Vec::new(),
        id_column: None,
        email_column: None,
        missing: vec!["Select".into()],
        delimiter,
    };
    let mut summary = Summary::default();
    let mut last = 1;
    let mut in_order = |line: u64, rows: u64| -> Result<(), String> {
        if line <= last {
            return Err(format!("a row at line {line} after one at line {last}"));
        }
        if rows > lines + 1 {
            return Err(format!("{rows} rows from {lines} lines"));
        }
        last = line;
        Ok(())
    };
    let Ok(mut rows) = CsvRows::open(file, delimiter, false) else { return Ok(()) };
    if let Ok(columns) = ContactColumns::new(&rows.headers, &options) {
        let seen = Seen::new().map_err(|e| e.to_string())?;
        let mut record = csv::StringRecord::new();
        while let Some(line) = rows.next_readable(&mut record, &mut summary).map_err(|e| format!("{e:#}"))? {
            summary.rows += 1;
            in_order(line, summary.rows)?;
            if let Ok((upsert, _)) = columns.row(&record, true) {
                seen.duplicate(upsert.id.as_deref(), upsert.email.as_deref(), line).map_err(|e| format!("{e:#}"))?;
            }
        }
    }
    let mut rows = match CsvRows::open(file, Some(','), false) {
        Ok(rows) => rows,
        Err(_) => return Ok(()),
    };
    let mut record = csv::StringRecord::new();
    let (mut summary, mut count) = (Summary::default(), 0);
    while let Some(line) = rows.next_readable(&mut record, &mut summary).map_err(|e| format!("{e:#}"))? {
        count += 1;
        if count > lines + 1 {
            return Err(format!("{count} event rows from {lines} lines (at line {line})"));
        }
        let _ = leadscore_app::events::parse_event(&event_object(&rows.headers, &record), 1_772_442_000_000);
    }
    for (line, _) in &summary.rejected {
        if *line < 2 || *line > lines + 1 {
            return Err(format!("a row rejected at line {line} of {lines}"));
        }
    }
    Ok(())
}

/// Both reads of one input: contacts with the delimiter sniffed, then with `;` and an
/// outcome column (and events each time). `file` is where the input is written.
pub fn check(file: &Path, input: &[u8]) -> Result<(), String> {
    std::fs::write(file, input).map_err(|e| e.to_string())?;
    read_csv_as_an_import(file, input, None, None)?;
    read_csv_as_an_import(file, input, Some(';'), Some("Converted"))
}
