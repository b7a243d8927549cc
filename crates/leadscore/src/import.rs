//! `leadscore import contacts|events|outcomes`: streaming imports with a progress bar.
//! Rejected rows are reported with their line numbers; the rest are stored. Re-running an
//! import gives the same state (contacts upsert by id/email; events dedupe by messageId,
//! or by content when they have none).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use leadscore_app::Engine;
use leadscore_store::{ContactUpsert, NewEvent};
use serde_json::{Map, Value, json};

use crate::{DataArgs, open_store, start_engine};

/// How an import ends, for scripts: the same for every import command.
pub const EXIT_STATUS: &str = "Exit status: 0 when every row was imported (or was there already), \
2 when the import finished but rejected some rows (each listed with its line; the others are stored), \
1 when it failed (the error says why).";

/// The exit code of an import that finished but rejected rows (1 stays "failed").
const ROWS_REJECTED: u8 = 2;

#[derive(Subcommand)]
#[command(after_help = EXIT_STATUS)]
pub enum ImportCommand {
    /// Import contacts from CSV (one row per contact, columns become attributes) or from
    /// NDJSON as `leadscore export contacts` writes it (.ndjson / .jsonl)
    #[command(after_help = EXIT_STATUS)]
    Contacts {
        #[command(flatten)]
        data: DataArgs,
        /// The file: CSV with a header line, or NDJSON (.ndjson / .jsonl)
        file: PathBuf,
        /// Rename a column: --map "Lead Source=source" (repeatable); `=-` drops the column
        #[arg(long = "map", value_name = "COLUMN=ATTRIBUTE")]
        map: Vec<String>,
        /// Column holding the contact id [default: id, contact_id or user_id if present]
        #[arg(long)]
        id_column: Option<String>,
        /// Column holding the email [default: email if present]
        #[arg(long)]
        email_column: Option<String>,
        /// Extra cell values meaning "missing" (repeatable), e.g. --missing Select
        #[arg(long)]
        missing: Vec<String>,
        /// Field delimiter [default: , or ; sniffed from the header]
        #[arg(long)]
        delimiter: Option<char>,
        /// Let the imported changes fire automations (an import is history: by default it does not)
        #[arg(long)]
        fire_automations: bool,
        /// A column holding each contact's outcome (CSV only): 1/yes/true/won/converted → won,
        /// 0/no/false/lost → lost, or a status name; recorded as of the row's created_at (or
        /// the contact's), with the scores then; not kept as an attribute
        #[arg(long, value_name = "COLUMN")]
        outcome: Option<String>,
        /// Print the summary (counts, every rejected row) as JSON
        #[arg(long)]
        json: bool,
    },
    /// Import outcomes from CSV: a contact id column (id, contact_id, contact or email),
    /// `status` and/or `rating` (1-5), optional `at` (RFC 3339, or a date for its midnight
    /// UTC; default now), `note`, `author`. Each outcome keeps the contact's scores as of
    /// `at`; rows already imported are skipped (a row without `at`: when the contact has that
    /// outcome already, so re-running a file records nothing twice)
    #[command(after_help = EXIT_STATUS)]
    Outcomes {
        #[command(flatten)]
        data: DataArgs,
        /// The CSV file, with a header line
        file: PathBuf,
        /// Print the summary (counts, every rejected row) as JSON
        #[arg(long)]
        json: bool,
    },
    /// Import events from NDJSON (Segment shape, one per line) or CSV
    #[command(after_help = EXIT_STATUS)]
    Events {
        #[command(flatten)]
        data: DataArgs,
        /// The file: NDJSON (one event per line) or CSV (.csv; columns messageId, type,
        /// event, userId, email, timestamp, properties.NAME)
        file: PathBuf,
        /// Let the imported events fire automations (an import is history: by default it does not)
        #[arg(long)]
        fire_automations: bool,
        /// Print the summary (counts, every rejected row) as JSON
        #[arg(long)]
        json: bool,
    },
}

/// What an import did, printed at the end.
#[derive(Default)]
struct Summary {
    rows: u64,
    imported: u64,
    /// Contacts that did not exist before (contacts imports only).
    created: Option<u64>,
    duplicates: u64,
    rejected: Vec<(u64, String)>,
}

impl Summary {
    fn reject(&mut self, line: u64, reason: impl Into<String>) {
        self.rejected.push((line, reason.into()));
    }

    fn exit_code(&self) -> ExitCode {
        if self.rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(ROWS_REJECTED) }
    }

    fn print(&self, what: &str, json: bool) {
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

pub async fn run(command: ImportCommand) -> Result<ExitCode> {
    let summary = match command {
        ImportCommand::Contacts { data, file, map, id_column, email_column, missing, delimiter, fire_automations, outcome, json } => {
            let state = start_engine(&data, open_store(&data).await?).await?;
            if outcome.is_some() && is_ndjson(&file) {
                bail!("--outcome reads a CSV column; NDJSON contacts carry no outcome column");
            }
            let options = ContactOptions { map, id_column, email_column, missing, delimiter, historical: !fire_automations, outcome };
            let summary = if is_ndjson(&file) {
                import_contacts_ndjson(&state, &file, options.historical).await?
            } else {
                import_contacts(&state, &file, &options).await?
            };
            summary.print("contacts", json);
            summary
        }
        ImportCommand::Outcomes { data, file, json } => {
            let state = start_engine(&data, open_store(&data).await?).await?;
            let summary = import_outcomes(&state, &file).await?;
            summary.print("outcomes", json);
            summary
        }
        ImportCommand::Events { data, file, fire_automations, json } => {
            let state = start_engine(&data, open_store(&data).await?).await?;
            let summary = import_events(&state, &file, fire_automations).await?;
            summary.print("events", json);
            summary
        }
    };
    Ok(summary.exit_code())
}

fn is_ndjson(file: &Path) -> bool {
    file.extension().is_some_and(|e| e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl"))
}

/// One contact per line: `{id?, email?, attributes?, groups?, owner?, created_at?}`.
fn contact_line(value: &Value, historical: bool) -> Result<ContactUpsert, String> {
    let object = value.as_object().ok_or("a contact must be a JSON object")?;
    let text = |key: &str| -> Result<Option<String>, String> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(Value::String(_)) => Ok(None),
            Some(other) => Err(format!("`{key}` must be a string, got {other}")),
        }
    };
    let attributes = match object.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => return Err(format!("`attributes` must be an object, got {other}")),
    };
    let groups = match object.get("groups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(|g| g.as_str().map(str::to_string).ok_or("`groups` must be strings")).collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`groups` must be a list, got {other}")),
    };
    let created_at = text("created_at")?.map(|t| leadscore_app::time::parse_time(&t)).transpose()?;
    let upsert = ContactUpsert { id: text("id")?, email: text("email")?, attributes, groups, owner: text("owner")?, created_at, historical };
    if upsert.id.is_none() && upsert.email.is_none() {
        return Err("no id and no email".into());
    }
    if let Some(email) = &upsert.email {
        leadscore_core::email::check_email(email)?;
    }
    Ok(upsert)
}

async fn import_contacts_ndjson(state: &Arc<Engine>, file: &Path, historical: bool) -> Result<Summary> {
    let reader = open_with_progress(file)?;
    let bar = reader.bar.clone();
    let mut summary = Summary { created: Some(0), ..Summary::default() };
    let models = state.models();
    let now = state.now();
    let seen = Seen::new()?;
    let mut tasks: tokio::task::JoinSet<(u64, Result<bool, String>)> = tokio::task::JoinSet::new();
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let number = index as u64 + 1;
        let text = line.with_context(|| format!("cannot read line {number}"))?;
        if text.trim().is_empty() {
            continue;
        }
        summary.rows += 1;
        let upsert = match serde_json::from_str::<Value>(&text).map_err(|e| format!("not JSON: {e}")).and_then(|v| contact_line(&v, historical)) {
            Ok(upsert) => upsert,
            Err(reason) => {
                summary.reject(number, reason);
                continue;
            }
        };
        if let Some(reason) = seen.duplicate(upsert.id.as_deref(), upsert.email.as_deref(), number)? {
            summary.reject(number, reason);
            continue;
        }
        let store = state.store.clone();
        let models = models.clone();
        tasks.spawn(async move {
            (number, store.upsert_contact(upsert, &models, now).await.map(|(_, created)| created).map_err(|e| leadscore_store::ErrorChain(&e).to_string()))
        });
        if tasks.len() >= 256 {
            collect_one(&mut tasks, &mut summary).await?;
        }
    }
    while !tasks.is_empty() {
        collect_one(&mut tasks, &mut summary).await?;
    }
    bar.finish_and_clear();
    summary.rejected.sort_by_key(|(line, _)| *line);
    Ok(summary)
}

struct ContactOptions {
    /// False with --fire-automations.
    historical: bool,
    /// The outcome column (--outcome).
    outcome: Option<String>,
    map: Vec<String>,
    id_column: Option<String>,
    email_column: Option<String>,
    missing: Vec<String>,
    delimiter: Option<char>,
}

/// The rows of one file seen so far, by id (else email), so that a second row for the same
/// contact is rejected instead of silently overwriting the first (its `created_at`
/// included). Kept on disk (`SeenKeys`), so a file of millions of rows stays in constant
/// memory.
struct Seen(leadscore_store_sqlite::scratch::SeenKeys);

impl Seen {
    fn new() -> Result<Self> {
        Ok(Self(leadscore_store_sqlite::scratch::SeenKeys::new().context("cannot set up the duplicate check")?))
    }

    /// Why this row is a duplicate of an earlier one, or None (then it is recorded as seen).
    fn duplicate(&self, id: Option<&str>, email: Option<&str>, line: u64) -> Result<Option<String>> {
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
struct CsvRows {
    csv: csv::Reader<Progress<File>>,
    /// A second handle on the file, to look at the bytes of a record again.
    raw: File,
    delimiter: u8,
    headers: Vec<String>,
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
    fn open(file: &Path, delimiter: Option<char>, flexible: bool) -> Result<Self> {
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

    fn bar(&self) -> &indicatif::ProgressBar {
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
    fn next_readable(&mut self, record: &mut csv::StringRecord, summary: &mut Summary) -> Result<Option<u64>> {
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
struct Progress<R> {
    inner: R,
    bar: indicatif::ProgressBar,
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

fn open_with_progress(file: &Path) -> Result<Progress<File>> {
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
fn attribute_name(header: &str) -> String {
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
fn cell_value(cell: &str) -> Value {
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
struct ContactColumns {
    id: Option<usize>,
    created_at: Option<usize>,
    outcome: Option<usize>,
    /// The attribute each column fills (None: the column is not an attribute).
    attributes: Vec<Option<String>>,
    /// Cell values that mean "missing".
    missing: Vec<String>,
    /// The column taken as the id because its name ends in `_id` (said to the user).
    guessed_id: Option<String>,
}

impl ContactColumns {
    fn new(headers: &[String], options: &ContactOptions) -> Result<Self> {
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
    fn row(&self, record: &csv::StringRecord, historical: bool) -> Result<(ContactUpsert, Option<String>), String> {
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

async fn import_contacts(state: &Arc<Engine>, file: &Path, options: &ContactOptions) -> Result<Summary> {
    let mut rows = CsvRows::open(file, options.delimiter, false)?;
    let columns = ContactColumns::new(&rows.headers, options)?;
    if let Some(column) = &columns.guessed_id {
        eprintln!("using column {column:?} as the contact id (choose another with --id-column)");
    }

    let mut summary = Summary { created: Some(0), ..Summary::default() };
    let models = state.models();
    let now = state.now();
    let seen = Seen::new()?;
    let outcome_reads = Arc::new(tokio::sync::Semaphore::new(OUTCOME_READS));
    let mut tasks: tokio::task::JoinSet<(u64, Result<bool, String>)> = tokio::task::JoinSet::new();
    let mut record = csv::StringRecord::new();
    loop {
        let Some(line) = rows.next_readable(&mut record, &mut summary)? else { break };
        summary.rows += 1;
        let (upsert, outcome) = match columns.row(&record, options.historical) {
            Ok(row) => row,
            Err(reason) => {
                summary.reject(line, reason);
                continue;
            }
        };
        if let Some(reason) = seen.duplicate(upsert.id.as_deref(), upsert.email.as_deref(), line)? {
            summary.reject(line, reason);
            continue;
        }
        let created_at = upsert.created_at;
        let state = state.clone();
        let models = models.clone();
        let outcome_reads = outcome_reads.clone();
        tasks.spawn(async move {
            let stored = state.store.upsert_contact(upsert, &models, now).await.map_err(|e| leadscore_store::ErrorChain(&e).to_string());
            let result = match (stored, outcome) {
                (Ok((contact, created)), Some(status)) => {
                    record_import_outcome(&state, &outcome_reads, &contact, created, status, created_at).await.map(|()| created)
                }
                (stored, _) => stored.map(|(_, created)| created),
            };
            (line, result)
        });
        if tasks.len() >= 256 {
            collect_one(&mut tasks, &mut summary).await?;
        }
    }
    while !tasks.is_empty() {
        collect_one(&mut tasks, &mut summary).await?;
    }
    rows.bar().finish_and_clear();
    summary.rejected.sort_by_key(|(line, _)| *line);
    Ok(summary)
}

async fn collect_one(tasks: &mut tokio::task::JoinSet<(u64, Result<bool, String>)>, summary: &mut Summary) -> Result<()> {
    if let Some(done) = tasks.join_next().await {
        let (line, result) = done.context("an import task failed")?;
        match result {
            Ok(created) => {
                summary.imported += 1;
                if created {
                    summary.created = Some(summary.created.unwrap_or(0) + 1);
                }
            }
            Err(reason) => summary.reject(line, reason),
        }
    }
    Ok(())
}

async fn import_events(state: &Arc<Engine>, file: &Path, fire_automations: bool) -> Result<Summary> {
    let is_csv = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut summary = Summary::default();
    let mut batch: Vec<(u64, NewEvent)> = Vec::with_capacity(1000);
    let now = state.now();
    let push = |line: u64, value: Value, summary: &mut Summary, batch: &mut Vec<(u64, NewEvent)>| {
        summary.rows += 1;
        match leadscore_app::events::parse_event(&value, now) {
            Ok(event) => batch.push((line, event)),
            Err(reason) => summary.reject(line, reason),
        }
    };
    let bar = if is_csv {
        let mut rows = CsvRows::open(file, Some(','), false)?;
        let mut record = csv::StringRecord::new();
        loop {
            let Some(line) = rows.next_readable(&mut record, &mut summary)? else { break };
            push(line, event_object(&rows.headers, &record), &mut summary, &mut batch);
            if batch.len() >= 1000 {
                flush(state, &mut batch, &mut summary, fire_automations).await?;
            }
        }
        rows.bar().clone()
    } else {
        let reader = open_with_progress(file)?;
        let bar = reader.bar.clone();
        let lines = BufReader::new(reader).lines();
        for (index, line) in lines.enumerate() {
            let number = index as u64 + 1;
            let text = line.with_context(|| format!("cannot read line {number}"))?;
            if text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&text) {
                Ok(value) => push(number, value, &mut summary, &mut batch),
                Err(err) => {
                    summary.rows += 1;
                    summary.reject(number, format!("not JSON: {err}"));
                }
            }
            if batch.len() >= 1000 {
                flush(state, &mut batch, &mut summary, fire_automations).await?;
            }
        }
        bar
    };
    flush(state, &mut batch, &mut summary, fire_automations).await?;
    bar.finish_and_clear();
    summary.rejected.sort_by_key(|(line, _)| *line);
    Ok(summary)
}

/// A row of an events CSV as the native event shape: `properties.NAME` columns go into
/// `properties` (numbers inferred), the others are the event's fields as text.
fn event_object(headers: &[String], record: &csv::StringRecord) -> Value {
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

async fn flush(state: &Arc<Engine>, batch: &mut Vec<(u64, NewEvent)>, summary: &mut Summary, fire_automations: bool) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let events: Vec<NewEvent> = batch.iter().map(|(_, e)| e.clone()).collect();
    let outcomes = state.store.ingest_with(events, &state.models(), state.now(), fire_automations).await.context("storing a batch of events failed")?;
    for outcome in outcomes {
        match outcome.status {
            leadscore_store::IngestStatus::Stored => summary.imported += 1,
            leadscore_store::IngestStatus::Duplicate => summary.duplicates += 1,
        }
    }
    batch.clear();
    Ok(())
}

/// When an outcome row happened: its own `at`, or none given (then recorded as of now).
#[derive(Clone, Copy)]
enum OutcomeAt {
    Given(leadscore_store::Millis),
    Now(leadscore_store::Millis),
}

impl OutcomeAt {
    fn millis(self) -> leadscore_store::Millis {
        match self {
            OutcomeAt::Given(at) | OutcomeAt::Now(at) => at,
        }
    }

    /// Whether an outcome of this kind is stored already. A row with its `at` is there when
    /// the same outcome at the same instant is. A row without one would get a new instant
    /// on every run, so it is there when the contact has that outcome at all: re-running a
    /// file records nothing twice, and a new row is still recorded (recording the same
    /// status again needs its `at`).
    fn stored_in(self, kind: &leadscore_store::OutcomeKind, stored: &[(leadscore_store::OutcomeKind, leadscore_store::Millis)]) -> bool {
        match self {
            OutcomeAt::Given(at) => stored.iter().any(|(k, t)| k == kind && *t == at),
            OutcomeAt::Now(_) => stored.iter().any(|(k, _)| k == kind),
        }
    }
}

/// One outcome row: which contact, what, when.
fn outcome_row(state: &Engine, record: &csv::StringRecord, columns: &OutcomeColumns) -> Result<(String, Vec<leadscore_store::OutcomeKind>, OutcomeAt), String> {
    let cell = |index: Option<usize>| index.and_then(|i| record.get(i)).map(str::trim).filter(|s| !s.is_empty());
    let contact = cell(Some(columns.contact)).ok_or("no contact id")?.to_string();
    let given = cell(columns.at);
    let millis = leadscore_app::outcomes::outcome_time(state, given)?;
    let at = if given.is_some() { OutcomeAt::Given(millis) } else { OutcomeAt::Now(millis) };
    let mut kinds = Vec::new();
    if let Some(status) = cell(columns.status) {
        let status = status.to_lowercase();
        leadscore_app::outcomes::check_status(&status)?;
        kinds.push(leadscore_store::OutcomeKind::Status { status });
    }
    if let Some(rating) = cell(columns.rating) {
        let rating: i64 = rating.parse().map_err(|_| format!("rating {rating:?} is not a number"))?;
        let rating = leadscore_app::outcomes::check_rating(rating)?;
        kinds.push(leadscore_store::OutcomeKind::Feedback {
            rating,
            note: cell(columns.note).map(str::to_string),
            author: cell(columns.author).map(str::to_string),
        });
    }
    if kinds.is_empty() {
        return Err("neither a status nor a rating".into());
    }
    Ok((contact, kinds, at))
}

struct OutcomeColumns {
    contact: usize,
    status: Option<usize>,
    rating: Option<usize>,
    at: Option<usize>,
    note: Option<usize>,
    author: Option<usize>,
}

async fn import_outcomes(state: &Arc<Engine>, file: &Path) -> Result<Summary> {
    let mut rows = CsvRows::open(file, Some(','), true)?;
    let headers: Vec<String> = rows.headers.iter().map(|h| h.trim().to_lowercase()).collect();
    let find = |names: &[&str]| names.iter().find_map(|n| headers.iter().position(|h| h == n));
    let columns = OutcomeColumns {
        contact: find(&["id", "contact_id", "contact", "email"]).context("the file needs a contact column: id, contact_id, contact or email")?,
        status: find(&["status"]),
        rating: find(&["rating"]),
        at: find(&["at", "timestamp", "date"]),
        note: find(&["note"]),
        author: find(&["author"]),
    };
    if columns.status.is_none() && columns.rating.is_none() {
        bail!("the file needs a `status` or `rating` column");
    }
    let mut summary = Summary::default();
    // Outcomes already stored, per contact, so a re-run imports nothing twice.
    let mut known: std::collections::HashMap<String, Vec<(leadscore_store::OutcomeKind, leadscore_store::Millis)>> = Default::default();
    let mut record = csv::StringRecord::new();
    loop {
        let Some(line) = rows.next_readable(&mut record, &mut summary)? else { break };
        summary.rows += 1;
        let (contact, kinds, at) = match outcome_row(state, &record, &columns) {
            Ok(row) => row,
            Err(reason) => {
                summary.reject(line, reason);
                continue;
            }
        };
        if !known.contains_key(&contact) {
            let stored = state.store.contact_outcomes(&contact).await?;
            known.insert(contact.clone(), stored.into_iter().map(|o| (o.kind, o.at)).collect());
        }
        for kind in kinds {
            let stored = known.get_mut(&contact).context("outcomes of the contact were loaded")?;
            if at.stored_in(&kind, stored) {
                summary.duplicates += 1;
                continue;
            }
            match leadscore_app::outcomes::record(state, &contact, kind.clone(), at.millis()).await {
                Ok(_) => {
                    stored.push((kind, at.millis()));
                    summary.imported += 1;
                }
                Err(
                    leadscore_app::outcomes::OutcomeError::NoContact(_)
                    | leadscore_app::outcomes::OutcomeError::Store(leadscore_store::StoreError::NotFound(_)),
                ) => summary.reject(line, format!("no contact with id {contact:?}")),
                Err(err) => bail!("storing the outcome of line {line} failed: {}", leadscore_store::ErrorChain(&err)),
            }
        }
    }
    rows.bar().finish_and_clear();
    Ok(summary)
}

/// The status an outcome cell names: 1/yes/true/won/converted → won, 0/no/false/lost →
/// lost, or a status by name; empty → none.
fn outcome_status(cell: &str) -> Result<Option<String>, String> {
    let value = cell.trim().to_lowercase();
    Ok(Some(match value.as_str() {
        "" => return Ok(None),
        "1" | "yes" | "true" | "won" | "converted" => "won".to_string(),
        "0" | "no" | "false" | "lost" => "lost".to_string(),
        other if leadscore_store::STATUSES.contains(&other) => other.to_string(),
        other => return Err(format!("outcome {other:?} is not 1/0, yes/no, true/false or one of {}", leadscore_store::STATUSES.join(", "))),
    }))
}

/// How many import tasks read a contact's outcomes at once. Every read connection keeps a
/// page cache (64 MiB each when this was measured, 8 MiB since): reads from all 256 tasks
/// spread over every pooled connection (a re-run of a 1,000,000-row file with --outcome:
/// 620 MiB), where two keep the cores busy on two caches.
const OUTCOME_READS: usize = 2;

/// Records an imported contact's outcome as of its creation, once: a re-run finds it.
/// With the contact as the upsert stored it: no read to find it again, and none for the
/// outcomes of a contact the upsert has just created (it has none).
async fn record_import_outcome(
    state: &Engine,
    reads: &tokio::sync::Semaphore,
    contact: &leadscore_store::ContactRecord,
    created: bool,
    status: String,
    created_at: Option<leadscore_store::Millis>,
) -> Result<(), String> {
    let at = created_at.unwrap_or(contact.created_at);
    let kind = leadscore_store::OutcomeKind::Status { status };
    if !created {
        let permit = reads.acquire().await.map_err(|e| e.to_string())?;
        let known = state.store.contact_outcomes(&contact.id).await.map_err(|e| leadscore_store::ErrorChain(&e).to_string());
        drop(permit);
        let known = known?;
        if known.iter().any(|o| o.kind == kind && o.at == at) {
            return Ok(());
        }
    }
    leadscore_app::outcomes::record_for(state, contact, kind, at).await.map(|_| ()).map_err(|e| leadscore_store::ErrorChain(&e).to_string())
}

/// The shared mutation fuzzer (see `fuzz/harness.rs`), for the CSV importer's target.
#[cfg(test)]
#[path = "../../../fuzz/harness.rs"]
mod fuzz_harness;

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a CSV as `import contacts` and `import events` do, without a store: every row
    /// read, mapped (columns, cells, e-mail, times, outcome), checked for duplicates, or
    /// rejected with a reason. Rows come in file order, after the header, and never more
    /// rows than the file has lines (a reader that loops would hang the import).
    fn read_csv_as_an_import(file: &Path, input: &[u8], delimiter: Option<char>, outcome: Option<&str>) -> Result<(), String> {
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

    /// The CSV importer's fuzz target: contacts (delimiter sniffed, and `;`, with an
    /// outcome column) and events, from `fuzz/corpus/csv/`.
    #[test]
    fn fuzz_csv_importer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("input.csv");
        fuzz_harness::fuzz("csv", |input| {
            std::fs::write(&file, input).map_err(|e| e.to_string())?;
            read_csv_as_an_import(&file, input, None, None)?;
            read_csv_as_an_import(&file, input, Some(';'), Some("Converted"))
        });
    }

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
