//! `leadscore import contacts|events|outcomes`: streaming imports with a progress bar.
//! Rejected rows are reported with their line numbers; the rest are stored. Re-running an
//! import gives the same state (contacts upsert by id/email; events dedupe by messageId,
//! or by content when they have none).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use leadscore::csv_rows::{ContactColumns, ContactOptions, CsvRows, Seen, Summary, event_object, open_with_progress};
use leadscore_app::Engine;
use leadscore_store::{ContactUpsert, NewEvent};
use serde_json::{Map, Value};

use crate::{DataArgs, open_store, start_engine};

/// How an import ends, for scripts: the same for every import command.
pub const EXIT_STATUS: &str = "Exit status: 0 when every row was imported (or was there already), \
2 when the import finished but rejected some rows (each listed with its line; the others are stored), \
1 when it failed (the error says why).";

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
    let mut refresh = PredictiveRefresh::new(state);
    let mut tasks: tokio::task::JoinSet<(u64, Result<Imported, String>)> = tokio::task::JoinSet::new();
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
            (
                number,
                store
                    .upsert_contact(upsert, &models, now)
                    .await
                    .map(|(contact, created)| Imported { id: contact.id, created })
                    .map_err(|e| leadscore_store::ErrorChain(&e).to_string()),
            )
        });
        if tasks.len() >= 256 {
            collect_one(&mut tasks, &mut summary, &mut refresh).await?;
        }
    }
    while !tasks.is_empty() {
        collect_one(&mut tasks, &mut summary, &mut refresh).await?;
    }
    refresh.finish().await;
    bar.finish_and_clear();
    summary.rejected.sort_by_key(|(line, _)| *line);
    Ok(summary)
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
    let mut refresh = PredictiveRefresh::new(state);
    let mut tasks: tokio::task::JoinSet<(u64, Result<Imported, String>)> = tokio::task::JoinSet::new();
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
                    record_import_outcome(&state, &outcome_reads, &contact, created, status, created_at).await.map(|()| Imported { id: contact.id, created })
                }
                (stored, _) => stored.map(|(contact, created)| Imported { id: contact.id, created }),
            };
            (line, result)
        });
        if tasks.len() >= 256 {
            collect_one(&mut tasks, &mut summary, &mut refresh).await?;
        }
    }
    while !tasks.is_empty() {
        collect_one(&mut tasks, &mut summary, &mut refresh).await?;
    }
    refresh.finish().await;
    rows.bar().finish_and_clear();
    summary.rejected.sort_by_key(|(line, _)| *line);
    Ok(summary)
}

/// A contact row stored.
struct Imported {
    id: String,
    created: bool,
}

async fn collect_one(
    tasks: &mut tokio::task::JoinSet<(u64, Result<Imported, String>)>,
    summary: &mut Summary,
    refresh: &mut PredictiveRefresh<'_>,
) -> Result<()> {
    if let Some(done) = tasks.join_next().await {
        let (line, result) = done.context("an import task failed")?;
        match result {
            Ok(imported) => {
                summary.imported += 1;
                if imported.created {
                    summary.created = Some(summary.created.unwrap_or(0) + 1);
                }
                refresh.add(imported.id).await;
            }
            Err(reason) => summary.reject(line, reason),
        }
    }
    Ok(())
}

/// Stores the predictive scores of imported contacts, as every other write does, a
/// thousand at a time (nothing to do before a predictive version is live).
struct PredictiveRefresh<'a> {
    engine: &'a Engine,
    pending: Vec<String>,
}

impl<'a> PredictiveRefresh<'a> {
    const CHUNK: usize = 1000;

    fn new(engine: &'a Engine) -> Self {
        Self { engine, pending: Vec::new() }
    }

    async fn add(&mut self, id: String) {
        if self.engine.predictive().is_none() {
            return;
        }
        self.pending.push(id);
        if self.pending.len() >= Self::CHUNK {
            self.finish().await;
        }
    }

    /// Stores the scores of the contacts added since the last call.
    async fn finish(&mut self) {
        let mut ids = std::mem::take(&mut self.pending);
        ids.sort();
        ids.dedup();
        leadscore_app::runtime::refresh_predictive(self.engine, &ids).await;
    }
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

async fn flush(state: &Arc<Engine>, batch: &mut Vec<(u64, NewEvent)>, summary: &mut Summary, fire_automations: bool) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let events: Vec<NewEvent> = batch.iter().map(|(_, e)| e.clone()).collect();
    let options = leadscore_store::IngestOptions { fire_automations, trust: leadscore_store::IdentityTrust::Trusted };
    let ingested = state.store.ingest_events(events, &state.models(), state.now(), options).await.context("storing a batch of events failed")?;
    for outcome in &ingested.outcomes {
        match outcome.status {
            leadscore_store::IngestStatus::Stored => summary.imported += 1,
            leadscore_store::IngestStatus::Duplicate => summary.duplicates += 1,
        }
    }
    // As after every write: the contacts' predictive scores (nothing before a version is live).
    leadscore_app::runtime::refresh_predictive_of(state, &ingested.contacts).await;
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
