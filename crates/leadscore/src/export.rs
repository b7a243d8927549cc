//! `leadscore export contacts|events FILE`: writes what leadscore holds in files that
//! `leadscore import` reads back to the same state. NDJSON keeps every value's type
//! (contacts: id, email, attributes, groups, owner, created_at; events: the Segment shape
//! with messageId, so re-importing deduplicates). Contacts also export as CSV for
//! spreadsheets (attributes as columns; types are re-inferred on import).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use leadscore_store::{EventKind, Store};
use serde_json::{Value, json};

use crate::{DataArgs, open_existing_store, progress_bar};

#[derive(Subcommand)]
pub enum ExportCommand {
    /// Contacts as NDJSON (exact) or CSV (by the file's extension)
    Contacts {
        #[command(flatten)]
        data: DataArgs,
        /// The file to write: .csv for CSV, anything else NDJSON
        file: PathBuf,
    },
    /// Activity events as NDJSON in the Segment shape
    Events {
        #[command(flatten)]
        data: DataArgs,
        /// The NDJSON file to write
        file: PathBuf,
    },
}

const PAGE: usize = 1000;

pub async fn run(command: ExportCommand) -> Result<()> {
    match command {
        ExportCommand::Contacts { data, file } => {
            let store = open_existing_store(&data).await?;
            let count = if is_csv(&file) { contacts_csv(&store, &file).await? } else { contacts_ndjson(&store, &file).await? };
            eprintln!("exported {count} contacts to {}", file.display());
        }
        ExportCommand::Events { data, file } => {
            if is_csv(&file) {
                bail!("events export as NDJSON only (their properties are nested); use a .ndjson file");
            }
            let store = open_existing_store(&data).await?;
            let count = events_ndjson(&store, &file).await?;
            eprintln!("exported {count} events to {}", file.display());
        }
    }
    Ok(())
}

fn is_csv(file: &Path) -> bool {
    file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

fn create(file: &Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::new(File::create(file).with_context(|| format!("cannot create {}", file.display()))?))
}

fn time(millis: i64) -> String {
    leadscore_app::time::format_time(millis)
}

/// Pages through every contact in id order, calling `each` (constant memory).
async fn for_each_contact(store: &Arc<dyn Store>, mut each: impl FnMut(&leadscore_store::ContactRecord) -> Result<()>) -> Result<u64> {
    let bar = progress_bar(store.count_contacts().await?, "contacts");
    let mut after: Option<String> = None;
    let mut count = 0;
    loop {
        let page = store.list_contacts(after.as_deref(), PAGE).await?;
        for contact in &page {
            each(contact)?;
            count += 1;
        }
        bar.inc(page.len() as u64);
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.id.clone()),
            _ => break,
        }
    }
    bar.finish_and_clear();
    Ok(count)
}

async fn contacts_ndjson(store: &Arc<dyn Store>, file: &Path) -> Result<u64> {
    let mut out = create(file)?;
    let count = for_each_contact(store, |c| {
        let line = json!({
            "id": c.id,
            "email": c.email,
            "attributes": c.attributes,
            "groups": c.groups,
            "owner": c.owner,
            "created_at": time(c.created_at),
        });
        writeln!(out, "{line}").context("cannot write the export")
    })
    .await?;
    out.flush()?;
    Ok(count)
}

async fn contacts_csv(store: &Arc<dyn Store>, file: &Path) -> Result<u64> {
    // Two passes: the columns are every attribute any contact has.
    let mut keys = BTreeSet::new();
    for_each_contact(store, |c| {
        keys.extend(c.attributes.keys().filter(|k| k.as_str() != "email").cloned());
        Ok(())
    })
    .await?;
    let mut writer = csv::Writer::from_path(file).with_context(|| format!("cannot create {}", file.display()))?;
    let mut header = vec!["id".to_string(), "email".into(), "created_at".into()];
    header.extend(keys.iter().cloned());
    writer.write_record(&header)?;
    let count = for_each_contact(store, |c| {
        let mut record = vec![c.id.clone(), c.email.clone().unwrap_or_default(), time(c.created_at)];
        for key in &keys {
            record.push(match c.attributes.get(key) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            });
        }
        writer.write_record(&record).context("cannot write the export")
    })
    .await?;
    writer.flush()?;
    Ok(count)
}

async fn events_ndjson(store: &Arc<dyn Store>, file: &Path) -> Result<u64> {
    let mut ids = Vec::new();
    for_each_contact(store, |c| {
        ids.push(c.id.clone());
        Ok(())
    })
    .await?;
    let mut out = create(file)?;
    let bar = progress_bar(ids.len() as u64, "events of contacts");
    let mut count = 0;
    for id in ids {
        for event in store.contact_events(&id).await? {
            let mut line = json!({
                "messageId": event.message_id,
                "type": event.kind.as_str(),
                "timestamp": time(event.timestamp),
                "properties": event.properties,
            });
            // Visitors (`anon:<id>`) go back out under their anonymousId.
            match id.strip_prefix("anon:") {
                Some(anonymous) => line["anonymousId"] = json!(anonymous),
                None => line["userId"] = json!(id),
            }
            if event.kind == EventKind::Track {
                line["event"] = json!(event.name);
            }
            if let Some(context) = &event.context {
                line["context"] = context.clone();
            }
            writeln!(out, "{line}").context("cannot write the export")?;
            count += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.flush()?;
    Ok(count)
}
