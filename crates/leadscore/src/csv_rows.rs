//! Reading CSV files as `leadscore import` does, without a store: records with their
//! lines (CRLF and CR line ends, unbalanced quotes caught), contacts' columns and cells,
//! the duplicate check, events' rows, and the summary an import prints. In the library
//! (not the binary) so that the CSV importer's fuzz target (`fuzz/fuzz_targets/csv.rs`)
//! and its stable harness (`tests/fuzz_csv.rs`) call the very code the import runs.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use leadscore_store::ContactUpsert;
use serde_json::{Map, Value, json};

/// The exit code of an import that finished but rejected rows (1 stays "failed").
const ROWS_REJECTED: u8 = 2;

/// What an import did, printed at the end.
#[derive(Default)]
pub struct Summary {
    pub rows: u64,
    pub imported: u64,
    /// Contacts that did not exist before (contacts imports only).
    pub created: Option<u64>,
    pub duplicates: u64,
    pub rejected: Vec<(u64, String)>,
}

impl Summary {
    pub fn reject(&mut self, line: u64, reason: impl Into<String>) {
        self.rejected.push((line, reason.into()));
    }

    pub fn exit_code(&self) -> ExitCode {
        if self.rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(ROWS_REJECTED) }
    }

    pub fn print(&self, what: &str, json: bool) {
        if json {
            let rejected: Vec<Value> = self.rejected.iter().map(|(line, reason)| json!({ "line": line, "reason": reason })).collect();
            println!(
                "{}",
                json!({ "rows": self.rows, "imported": self.imported, "created": self.created, "duplicates": self.duplicates, "rejected": rejected })
            );
            return;
        }
        let created = self.created.map(|n| format!(" ({n} new)")).unwrap_or_default();
        println!(
            "{what}: {} rows read, {} imported{created}, {} duplicates skipped, {} rejected",
            self.rows,
            self.imported,
            self.duplicates,
            self.rejected.len()
        );
        for (line, reason) in self.rejected.iter().take(20) {
            println!("  line {line}: {reason}");
        }
        if self.rejected.len() > 20 {
            println!("  … and {} more (use --json for all)", self.rejected.len() - 20);
        }
    }
}

pub struct ContactOptions {
    /// False with --fire-automations.
    pub historical: bool,
    /// The outcome column (--outcome).
    pub outcome: Option<String>,
    pub map: Vec<String>,
    pub id_column: Option<String>,
    pub email_column: Option<String>,
    pub missing: Vec<String>,
    pub delimiter: Option<char>,
}

/// The rows of one file seen so far, by id (else email), so that a second row for the same
/// contact is rejected instead of silently overwriting the first (its `created_at`
/// included). Kept on disk (`SeenKeys`), so a file of millions of rows stays in constant
/// memory.
pub struct Seen(leadscore_store_sqlite::scratch::SeenKeys);

impl Seen {
    pub fn new() -> Result<Self> {
        Ok(Self(leadscore_store_sqlite::scratch::SeenKeys::new().context("cannot set up the duplicate check")?))
    }

    /// Why this row is a duplicate of an earlier one, or None (then it is recorded as seen).
    pub fn duplicate(&self, id: Option<&str>, email: Option<&str>, line: u64) -> Result<Option<String>> {
        let (what, key) = match (id, email) {
            (Some(id), _) => ("id", id.to_string()),
            // The store matches emails in lower case: so does the check.
            (None, Some(email)) => ("email", email.trim().to_lowercase()),
            (None, None) => return Ok(None),
        };
        let first = self.0.first_seen(&format!("{what}:{key}"), line).context("the duplicate check failed")?;
        Ok(first.map(|first| format!("duplicate {what} {key}, first seen on line {first}")))
    }
}

/// A CSV file read one record at a time, each with its line in the file (1-based; the
/// header is line 1). A row broken by an unbalanced quote is caught instead of swallowing
/// the rows after it: the csv crate reads on to the next quote, wherever it is, so a
/// record whose quoted field runs over a line break and does not close cleanly (its
/// closing quote followed by text, or the file ending inside it) is rejected, and reading
/// starts again on the line after the one it started on.
pub struct CsvRows {
    csv: csv::Reader<Progress<File>>,
    /// A second handle on the file, to look at the bytes of a record again.
    raw: File,
    delimiter: u8,
    pub headers: Vec<String>,
    /// Line numbers, counted by us: the csv crate counts `\n` only, so a file with CRLF
    /// line ends (Windows, most exports) had every row reported one line early, and one
    /// with CR line ends every row on line 1.
    lines: LineCounter,
}

/// Lines up to a byte of the file, counted forward as reading goes: `\n`, `\r\n` and a
/// lone `\r` each end a line.
#[derive(Default)]
struct LineCounter {
    /// Bytes counted so far.
    byte: u64,
    /// Line ends in them.
    ends: u64,
    /// Whether the last byte counted was `\r` (then a `\n` right after it ends no line).
    after_cr: bool,
}

impl LineCounter {
    fn count(&mut self, byte: u8) {
        match byte {
            b'\r' => self.ends += 1,
            b'\n' if !self.after_cr => self.ends += 1,
            _ => {}
        }
        self.after_cr = byte == b'\r';
        self.byte += 1;
    }

    /// The line (1-based) of the record that starts at byte `start`: line ends before it,
    /// and the ones it starts with (the csv crate may start a record at the `\n` of a
    /// `\r\n`, or on an empty line it skips).
    fn line_of(&mut self, file: &File, start: u64) -> Result<u64> {
        if start < self.byte {
            *self = Self::default();
        }
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(self.byte)).context("cannot read the file")?;
        let mut bytes = reader.bytes();
        while self.byte < start {
            match bytes.next() {
                Some(byte) => self.count(byte.context("cannot read the file")?),
                None => break,
            }
        }
        // The record's own leading line ends, counted without moving past them for good:
        // the next record may start at the same byte.
        let mut at_record = Self { byte: self.byte, ends: self.ends, after_cr: self.after_cr };
        for byte in bytes {
            let byte = byte.context("cannot read the file")?;
            if byte != b'\r' && byte != b'\n' {
                break;
            }
            at_record.count(byte);
        }
        Ok(at_record.ends + 1)
    }
}

/// One step through a CSV file.
enum Row {
    /// A record (in the caller's buffer), and its line.
    Record(u64),
    /// A record that cannot be read, its line, and why.
    Rejected(u64, String),
    End,
}

impl CsvRows {
    /// Opens `file`; the delimiter, when not given, is `;` if the header has more of
    /// them than commas, else `,`. `flexible` lets rows have fewer or more fields than the
    /// header.
    pub fn open(file: &Path, delimiter: Option<char>, flexible: bool) -> Result<Self> {
        let mut reader = open_with_progress(file)?;
        let delimiter = match delimiter {
            Some(c) => u8::try_from(c).ok().filter(u8::is_ascii).with_context(|| format!("--delimiter {c:?}: give one ASCII character"))?,
            None => {
                let mut head = Vec::with_capacity(4096);
                (&mut reader.inner).take(4096).read_to_end(&mut head).with_context(|| format!("cannot read {}", file.display()))?;
                reader.inner.seek(SeekFrom::Start(0)).with_context(|| format!("cannot read {}", file.display()))?;
                let first_line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                if first_line.matches(';').count() > first_line.matches(',').count() { b';' } else { b',' }
            }
        };
        let raw = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        let mut csv = csv::ReaderBuilder::new().delimiter(delimiter).flexible(flexible).from_reader(reader);
        let headers = csv.headers().context("cannot read the CSV header")?.iter().map(str::to_string).collect();
        Ok(Self { csv, raw, delimiter, headers, lines: LineCounter::default() })
    }

    pub fn bar(&self) -> &indicatif::ProgressBar {
        &self.csv.get_ref().bar
    }

    fn next(&mut self, record: &mut csv::StringRecord) -> Result<Row> {
        let before = self.csv.position().clone();
        let result = self.csv.read_record(record);
        let after = self.csv.position().clone();
        let (start, problem) = match result {
            Ok(false) => return Ok(Row::End),
            Ok(true) => {
                let start = record.position().cloned().unwrap_or(before);
                // Only a quoted field can hold a line break: records without one are as
                // the file means them.
                if !record.iter().any(|field| field.contains(['\n', '\r'])) {
                    return Ok(Row::Record(self.lines.line_of(&self.raw, start.byte())?));
                }
                (start, None)
            }
            Err(err) => {
                if matches!(err.kind(), csv::ErrorKind::Io(_)) {
                    return Err(anyhow::Error::new(err).context("cannot read the file"));
                }
                let start = err.position().cloned().unwrap_or(before);
                // Said in our words: the csv crate's message carries a position of its own
                // (`line: …, byte: …`) beside the line we report.
                let reason = match err.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!("{len} fields, but the header has {expected_len}"),
                    csv::ErrorKind::Utf8 { err, .. } => format!("field {} is not UTF-8 text", err.field() + 1),
                    _ => format!("unreadable row: {err}"),
                };
                (start, Some(reason))
            }
        };
        let line = self.lines.line_of(&self.raw, start.byte())?;
        if let Some((reason, resume)) = self.broken_quote(&start, line, after.byte())? {
            // Read on from the line after the row's first: the lines the quote took along
            // are rows of their own.
            let mut next = csv::Position::new();
            next.set_byte(resume).set_line(start.line() + 1).set_record(start.record() + 1);
            self.csv.seek(next).context("cannot read the file")?;
            return Ok(Row::Rejected(line, reason));
        }
        Ok(match problem {
            Some(reason) => Row::Rejected(line, reason),
            None => Row::Record(line),
        })
    }

    /// The line of the next record that reads (None at the end of the file); the rows on
    /// the way that cannot be read are counted and rejected in `summary`.
    pub fn next_readable(&mut self, record: &mut csv::StringRecord, summary: &mut Summary) -> Result<Option<u64>> {
        loop {
            match self.next(record)? {
                Row::End => return Ok(None),
                Row::Record(line) => return Ok(Some(line)),
                Row::Rejected(line, reason) => {
                    summary.rows += 1;
                    summary.reject(line, reason);
                }
            }
        }
    }

    /// Whether the record's bytes (`start` up to `end`; its first line is `first_line`) hold
    /// a quoted field that does not close cleanly: why, and the byte offset of the record's
    /// second line.
    fn broken_quote(&mut self, start: &csv::Position, first_line: u64, end: u64) -> Result<Option<(String, u64)>> {
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            FieldStart,
            Unquoted,
            Quoted,
            /// A quote inside a quoted field: doubled (a literal quote) or the closing one.
            QuoteInQuoted,
        }
        self.raw.seek(SeekFrom::Start(start.byte())).context("cannot read the file")?;
        let bytes = BufReader::new((&self.raw).take(end.saturating_sub(start.byte())));
        let mut state = State::FieldStart;
        let mut line = first_line;
        let mut second_line = end;
        let mut broken = None;
        // Line ends before the record's first field (the `\n` of a `\r\n` the csv crate
        // starts it at) are not in it; `\n`, `\r\n` and a lone `\r` each end a line.
        let (mut content, mut after_cr) = (false, false);
        for (offset, byte) in bytes.bytes().enumerate() {
            let byte = byte.context("cannot read the file")?;
            let newline = byte == b'\n' || byte == b'\r';
            if !content && newline {
                after_cr = byte == b'\r';
                continue;
            }
            content = true;
            state = match state {
                State::FieldStart if byte == b'"' => State::Quoted,
                State::FieldStart | State::Unquoted if byte == self.delimiter || newline => State::FieldStart,
                State::FieldStart | State::Unquoted => State::Unquoted,
                State::Quoted if byte == b'"' => State::QuoteInQuoted,
                State::Quoted => State::Quoted,
                State::QuoteInQuoted if byte == b'"' => State::Quoted,
                State::QuoteInQuoted if byte == self.delimiter || newline => State::FieldStart,
                State::QuoteInQuoted => {
                    broken = Some(line);
                    State::Unquoted
                }
            };
            let next_byte = start.byte() + offset as u64 + 1;
            if byte == b'\r' || (byte == b'\n' && !after_cr) {
                line += 1;
                if line == first_line + 1 {
                    second_line = next_byte;
                }
            } else if byte == b'\n' && line == first_line + 1 && second_line == next_byte - 1 {
                // The `\n` of the first line's `\r\n`: the second line starts after it.
                second_line = next_byte;
            }
            after_cr = byte == b'\r';
        }
        let reason = match broken {
            Some(closed) if closed > first_line => {
                format!(
                    "unbalanced quote: a quoted field in this row runs on to line {closed}; the row is skipped and line {} read as the next row",
                    first_line + 1
                )
            }
            Some(_) => return Ok(None),
            None if state == State::Quoted => {
                format!(
                    "unclosed quote: a quoted field in this row runs to the end of the file; the row is skipped and line {} read as the next row",
                    first_line + 1
                )
            }
            None => return Ok(None),
        };
        Ok(Some((reason, second_line)))
    }
}

/// A progress bar over the bytes of a file.
pub struct Progress<R> {
    inner: R,
    pub bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for Progress<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let at = self.inner.seek(to)?;
        self.bar.set_position(at);
        Ok(at)
    }
}

pub fn open_with_progress(file: &Path) -> Result<Progress<File>> {
    let handle = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("importing {}", file.display()));
    Ok(Progress { inner: handle, bar })
}

/// Attribute name for a column header: lower case, non-alphanumerics to `_`.
pub fn attribute_name(header: &str) -> String {
    let mut name = String::new();
    for c in header.trim().chars() {
        if c.is_alphanumeric() {
            name.extend(c.to_lowercase());
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    name.trim_matches('_').to_string()
}

/// A cell as JSON: numbers inferred ("250", "3.5"; not "007" or "1e5"), strings otherwise.
pub fn cell_value(cell: &str) -> Value {
    let trimmed = cell.trim();
    let looks_numeric = !trimmed.is_empty()
        && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        && !(trimmed.len() > 1 && trimmed.starts_with('0') && !trimmed.starts_with("0."));
    if looks_numeric {
        if let Ok(i) = trimmed.parse::<i64>() {
            return json!(i);
        }
        if let Ok(f) = trimmed.parse::<f64>()
            && f.is_finite()
        {
            return json!(f);
        }
    }
    Value::String(trimmed.to_string())
}

const DEFAULT_MISSING: &[&str] = &["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"];

/// Where a contacts CSV keeps what: chosen from its header and the options.
pub struct ContactColumns {
    id: Option<usize>,
    created_at: Option<usize>,
    outcome: Option<usize>,
    /// The attribute each column fills (None: the column is not an attribute).
    attributes: Vec<Option<String>>,
    /// Cell values that mean "missing".
    missing: Vec<String>,
    /// The column taken as the id because its name ends in `_id` (said to the user).
    pub guessed_id: Option<String>,
}

impl ContactColumns {
    pub fn new(headers: &[String], options: &ContactOptions) -> Result<Self> {
        let mut renames: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for entry in &options.map {
            let (column, attribute) = entry.split_once('=').with_context(|| format!("--map {entry:?}: use COLUMN=ATTRIBUTE"))?;
            if !headers.iter().any(|h| h == column) {
                bail!("--map {entry:?}: the file has no column {column:?} (columns: {})", headers.join(", "));
            }
            renames.insert(column.to_string(), attribute.to_string());
        }
        let find = |given: &Option<String>, candidates: &[&str]| -> Result<Option<usize>> {
            match given {
                Some(name) => headers
                    .iter()
                    .position(|h| h == name)
                    .map(Some)
                    .with_context(|| format!("the file has no column {name:?} (columns: {})", headers.join(", "))),
                None => Ok(headers.iter().position(|h| candidates.contains(&attribute_name(h).as_str()))),
            }
        };
        let mut id_index = find(&options.id_column, &["id", "contact_id", "user_id", "userid"])?;
        let mut guessed_id = None;
        if id_index.is_none() && options.id_column.is_none() {
            // One column named like `Prospect ID` or `lead_id` is taken as the id.
            let candidates: Vec<usize> = (0..headers.len()).filter(|&i| attribute_name(&headers[i]).ends_with("_id")).collect();
            if let [only] = candidates[..] {
                guessed_id = Some(headers[only].clone());
                id_index = Some(only);
            }
        }
        let email_index = find(&options.email_column, &["email", "e_mail", "email_address"])?;
        if id_index.is_none() && email_index.is_none() {
            bail!("no id or email column found; name one with --id-column or --email-column (columns: {})", headers.join(", "));
        }
        let created_index = headers.iter().position(|h| attribute_name(h) == "created_at");
        let outcome_index = match &options.outcome {
            Some(name) => Some(
                headers
                    .iter()
                    .position(|h| h == name)
                    .with_context(|| format!("--outcome: the file has no column {name:?} (columns: {})", headers.join(", ")))?,
            ),
            None => None,
        };
        let missing = DEFAULT_MISSING.iter().map(|m| m.to_string()).chain(options.missing.iter().cloned()).collect();
        let attributes = headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if Some(i) == id_index || Some(i) == created_index || Some(i) == outcome_index {
                    return None;
                }
                match renames.get(h) {
                    Some(a) if a == "-" => None,
                    Some(a) => Some(a.clone()),
                    None if Some(i) == email_index => Some("email".into()),
                    None => Some(attribute_name(h)),
                }
            })
            .collect();
        Ok(Self { id: id_index, created_at: created_index, outcome: outcome_index, attributes, missing, guessed_id })
    }

    fn is_missing(&self, cell: &str) -> bool {
        self.missing.iter().any(|m| m == cell.trim())
    }

    /// One row as a contact upsert and its outcome's status (`--outcome`), or why the row
    /// is rejected.
    pub fn row(&self, record: &csv::StringRecord, historical: bool) -> Result<(ContactUpsert, Option<String>), String> {
        let mut attributes = Map::new();
        for (i, cell) in record.iter().enumerate() {
            let Some(Some(name)) = self.attributes.get(i) else {
                continue;
            };
            if self.is_missing(cell) {
                continue;
            }
            attributes.insert(name.clone(), cell_value(cell));
        }
        let id = self.id.and_then(|i| record.get(i)).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        let email = attributes.remove("email").and_then(|v| v.as_str().map(str::to_string));
        if id.is_none() && email.is_none() {
            return Err("no id and no email".into());
        }
        if let Some(email) = email.as_deref() {
            leadscore_core::email::check_email(email)?;
        }
        let created_at = match self.created_at.and_then(|i| record.get(i)).filter(|s| !s.trim().is_empty()) {
            Some(text) => Some(leadscore_app::time::parse_time(text)?),
            None => None,
        };
        let outcome = match self.outcome.and_then(|i| record.get(i)).filter(|cell| !self.is_missing(cell)) {
            Some(cell) => outcome_status(cell)?,
            None => None,
        };
        Ok((ContactUpsert { id, email, attributes, groups: Vec::new(), owner: None, created_at, historical }, outcome))
    }
}

/// A row of an events CSV as the native event shape: `properties.NAME` columns go into
/// `properties` (numbers inferred), the others are the event's fields as text.
pub fn event_object(headers: &[String], record: &csv::StringRecord) -> Value {
    let mut object = Map::new();
    let mut properties = Map::new();
    for (header, cell) in headers.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        match header.strip_prefix("properties.") {
            Some(key) => {
                properties.insert(key.to_string(), cell_value(cell));
            }
            None => {
                object.insert(header.clone(), Value::String(cell.to_string()));
            }
        }
    }
    object.insert("properties".into(), Value::Object(properties));
    Value::Object(object)
}

/// The status an outcome cell names: 1/yes/true/won/converted → won, 0/no/false/lost →
/// lost, or a status by name; empty → none.
pub fn outcome_status(cell: &str) -> Result<Option<String>, String> {
    let value = cell.trim().to_lowercase();
    Ok(Some(match value.as_str() {
        "" => return Ok(None),
        "1" | "yes" | "true" | "won" | "converted" => "won".to_string(),
        "0" | "no" | "false" | "lost" => "lost".to_string(),
        other if leadscore_store::STATUSES.contains(&other) => other.to_string(),
        other => return Err(format!("outcome {other:?} is not 1/0, yes/no, true/false or one of {}", leadscore_store::STATUSES.join(", "))),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_and_cells() {
        assert_eq!(attribute_name("Lead Source"), "lead_source");
        assert_eq!(attribute_name("What is your current occupation"), "what_is_your_current_occupation");
        assert_eq!(attribute_name("Total Time Spent on Website"), "total_time_spent_on_website");
        assert_eq!(cell_value("250"), json!(250));
        assert_eq!(cell_value("2.5"), json!(2.5));
        assert_eq!(cell_value("007"), json!("007"));
        assert_eq!(cell_value("Select"), json!("Select"));
        assert_eq!(cell_value("-3"), json!(-3));
    }
}
