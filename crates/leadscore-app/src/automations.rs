//! Automations: stored (validated whole, and checked against this installation), listed
//! in words, deleted; and their run log.

use leadscore_core::Format;
use leadscore_core::Problem;
use leadscore_core::automation::{Action, AssignStrategy, Automation, Direction, Filter, Limits, ScoreField, Trigger};
use leadscore_core::model::parse_document;
use leadscore_store::runner::{RunQuery, RunStats};
use leadscore_store::{AutomationRecord, NewAutomation};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::Engine;
use crate::access::{InReach, Reach};
use crate::error::AppError;
use crate::paging::PageError;

/// Why an automation cannot be stored, found or its run log read.
#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    /// Every problem of a refused automation, like an invalid model.
    #[error("the automation has {} problem(s): {}", .0.len(), problem_summary(.0))]
    Refused(Vec<Problem>),
    #[error("no automation {0:?}")]
    NotFound(String),
    /// No such contact, or one out of the reader's reach.
    #[error("no contact {0:?}")]
    NoContact(String),
    #[error("limit must be between 1 and 1000")]
    Limit,
    #[error(transparent)]
    Page(#[from] PageError),
    #[error(transparent)]
    Store(#[from] leadscore_store::StoreError),
}

fn problem_summary(problems: &[Problem]) -> String {
    let summary: Vec<String> = problems.iter().map(|p| if p.path.is_empty() { p.message.clone() } else { format!("{}: {}", p.path, p.message) }).collect();
    summary.join("; ")
}

impl From<AutomationError> for AppError {
    fn from(err: AutomationError) -> Self {
        match err {
            AutomationError::Refused(ref problems) => AppError::invalid_with(err.to_string(), json!({ "problems": problems })),
            AutomationError::NotFound(_) | AutomationError::NoContact(_) => AppError::not_found(err.to_string()),
            AutomationError::Limit => AppError::invalid(err.to_string()),
            AutomationError::Page(err) => err.into(),
            AutomationError::Store(err) => AppError::Store(err),
        }
    }
}
use crate::time::format_time;

/// What keeps a valid automation from being stored here, beyond its own validation: a
/// model it names that is a shadow (shadows fire no automations), and a webhook URL every
/// delivery would refuse. The API and `leadscore automation apply` both apply it.
pub async fn refusals(engine: &Engine, automation: &Automation) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (path, model) in automation.named_models() {
        if let Some(shadow) = engine.model(model).filter(|m| m.is_shadow()) {
            let live = shadow.shadow_of.as_deref().unwrap_or_default();
            problems.push(Problem {
                path: path.into(),
                message: format!("{} is a shadow of {live}: shadow models fire no automations (name {live} here, or promote the shadow)", shadow.name),
            });
        }
    }
    for (index, action) in automation.actions.iter().enumerate() {
        if let Action::Webhook { url, .. } = action
            && let Err(message) = crate::runtime::check_webhook_url(&engine.config, url).await
        {
            problems.push(Problem { path: format!("actions[{index}].webhook.url"), message });
        }
    }
    problems
}

/// One line of the overview (PRODUCT.md F17): what triggers it, for whom, how often, what
/// it does, in words.
pub fn overview(record: &AutomationRecord, stats: Option<&RunStats>) -> AutomationOverview {
    let stats = stats.cloned().unwrap_or_default();
    let mut item = AutomationOverview {
        actions: None,
        created_at: format_time(record.created_at),
        enabled: record.enabled,
        filter: None,
        last_fired_at: stats.last_fired_at.map(format_time),
        limits: None,
        model: None,
        name: record.name.clone(),
        problems: None,
        runs: RunCounts { last_day: stats.runs_last_day, last_week: stats.runs_last_week, total: stats.runs_total },
        trigger: None,
        updated_at: format_time(record.updated_at),
    };
    match Automation::from_value(record.definition.clone()) {
        Ok(automation) => {
            item.model = Some(automation.model.clone());
            item.trigger = Some(trigger_text(&automation.trigger));
            item.filter = Some(filter_text(&automation.filter, &record.definition));
            item.limits = Some(limits_text(&automation.limits));
            item.actions = Some(automation.actions.iter().map(action_text).collect());
        }
        // Stored definitions were valid when stored; one that no longer is (the format
        // changed) is listed with its problems rather than failing the whole list.
        Err(err) => item.problems = Some(err.problems()),
    }
    item
}

/// An automation in the overview (F17), in words. A stored definition that no longer
/// reads (the format changed since) has `problems` instead of `model`, `trigger`,
/// `filter`, `limits` and `actions`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AutomationOverview {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub actions: Option<Vec<String>>,
    pub created_at: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub filter: Option<String>,
    #[schema(required = true)]
    pub last_fired_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub limits: Option<String>,
    /// The model it names (null: none).
    // `Some(None)` writes null; `None` leaves the key out (a definition that no longer reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub model: Option<Option<String>>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Vec<crate::schema::ProblemSchema>)]
    pub problems: Option<Vec<Problem>>,
    pub runs: RunCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub trigger: Option<String>,
    pub updated_at: String,
}

/// How often an automation ran.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RunCounts {
    pub last_day: u64,
    pub last_week: u64,
    pub total: u64,
}

/// A stored automation: its definition as JSON, whether it is on, and when it changed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AutomationView {
    pub created_at: String,
    /// The automation as JSON (contract §3).
    #[schema(value_type = Object)]
    pub definition: Value,
    pub enabled: bool,
    pub name: String,
    pub updated_at: String,
}

impl From<&AutomationRecord> for AutomationView {
    fn from(record: &AutomationRecord) -> Self {
        AutomationView {
            created_at: format_time(record.created_at),
            definition: record.definition.clone(),
            enabled: record.enabled,
            name: record.name.clone(),
            updated_at: format_time(record.updated_at),
        }
    }
}

fn trigger_text(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Hot { points, within } => {
            format!("hot: at least {points} activity points within {within}")
        }
        Trigger::Cold { points, within } => {
            format!("cold: fewer than {points} activity points within {within} (contacts at least {within} old)")
        }
        Trigger::Threshold { score, direction, value, rearm } => {
            let score = match score {
                ScoreField::Fit => "fit",
                ScoreField::Activity => "activity",
                ScoreField::Total => "total",
                ScoreField::Predictive => "predictive",
            };
            let (way, back) = match direction {
                Direction::Above => ("above", "below"),
                Direction::Below => ("below", "above"),
            };
            let rearm = rearm.map_or(String::new(), |r| format!(", re-armed once back {back} {r}"));
            format!("threshold: {score} score crosses {way} {value}{rearm}")
        }
        Trigger::Band { model, to } => {
            let change = to.as_ref().map_or("any band change".to_string(), |to| format!("band becomes {to}"));
            match model {
                Some(model) => format!("band: {change} under {model}"),
                None => format!("band: {change}"),
            }
        }
        Trigger::Event { name } => format!("event: {name}"),
    }
}

fn filter_text(filter: &Filter, definition: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(group) = &filter.group {
        parts.push(format!("in group {group}"));
    }
    if let Some(band) = &filter.band {
        parts.push(format!("band {band}"));
    }
    if let Some(owner) = &filter.owner {
        parts.push(format!("owned by {owner}"));
    }
    if let Some((direction, value)) = &filter.predictive {
        let way = match direction {
            Direction::Above => "at least",
            Direction::Below => "at most",
        };
        parts.push(format!("predictive score {way} {value}"));
    }
    if filter.condition.is_some() {
        // The condition as written (without the shorthands above) reads better than any
        // paraphrase of nested all/any/not.
        let mut condition = definition.get("filter").cloned().unwrap_or(Value::Null);
        if let Some(table) = condition.as_object_mut() {
            for key in ["group", "band", "owner", "predictive"] {
                table.remove(key);
            }
        }
        parts.push(format!("attributes match {condition}"));
    }
    if parts.is_empty() { "every contact".into() } else { parts.join(" and ") }
}

fn limits_text(limits: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some((max, per)) = limits.max {
        parts.push(format!("at most {max} per {per}"));
    }
    if let Some(cooldown) = limits.cooldown {
        parts.push(format!("cooldown {cooldown}"));
    }
    if parts.is_empty() { "no limits".into() } else { format!("{} per contact", parts.join(", ")) }
}

fn action_text(action: &Action) -> String {
    match action {
        Action::Webhook { url, .. } => format!("webhook {url}"),
        Action::Email { to, subject, .. } => format!("email {to}: {subject}"),
        Action::Assign(AssignStrategy::RoundRobin { team }) => {
            format!("assign to {team} (round robin)")
        }
        Action::Assign(AssignStrategy::ByAttribute { attribute, teams, .. }) => {
            let teams: Vec<String> = teams.iter().map(|(value, team)| format!("{value} → {team}")).collect();
            format!("assign by {attribute} ({})", teams.join(", "))
        }
        Action::Set { attribute, value } => format!("set {attribute} = {value}"),
        Action::AddGroup { group } => format!("add to group {group}"),
        Action::RemoveGroup { group } => format!("remove from group {group}"),
        Action::Nurture { track_per_band } => {
            let tracks: Vec<String> =
                track_per_band.iter().map(|(band, track)| if track.is_empty() { format!("{band} → none") } else { format!("{band} → {track}") }).collect();
            format!("nurture ({})", tracks.join(", "))
        }
    }
}

/// Stores automation `name` from its TOML or JSON text (validated whole, then checked
/// against this installation: [`refusals`]) and reloads the set; true when created.
pub async fn put(engine: &Engine, name: &str, text: &str, format: Format) -> Result<(AutomationRecord, bool), AutomationError> {
    let document = parse_document(text, format).map_err(|e| AutomationError::Refused(e.problems()))?;
    let automation = Automation::from_value(document).map_err(|e| AutomationError::Refused(e.problems()))?;
    if automation.name != name {
        return Err(AutomationError::Refused(vec![Problem {
            path: "name".into(),
            message: format!("the automation is named {:?} but was sent to /automations/{name}", automation.name),
        }]));
    }
    let problems = refusals(engine, &automation).await;
    if !problems.is_empty() {
        return Err(AutomationError::Refused(problems));
    }
    let new = NewAutomation { name: automation.name, definition: automation.definition, enabled: automation.enabled };
    let (record, created) = engine.store.put_automation(new, engine.now()).await?;
    engine.reload_automations().await?;
    tracing::info!(automation = %record.name, created, "automation stored");
    Ok((record, created))
}

pub async fn get(engine: &Engine, name: &str) -> Result<AutomationRecord, AutomationError> {
    engine.store.get_automation(name).await?.ok_or_else(|| AutomationError::NotFound(name.to_string()))
}

pub async fn delete(engine: &Engine, name: &str) -> Result<(), AutomationError> {
    if !engine.store.delete_automation(name).await? {
        return Err(AutomationError::NotFound(name.to_string()));
    }
    engine.reload_automations().await?;
    Ok(())
}

/// Every automation in words, with when it last fired and how often.
pub async fn list(engine: &Engine) -> Result<Vec<AutomationOverview>, leadscore_store::StoreError> {
    let stats = engine.store.run_stats(engine.now()).await?;
    Ok(engine.store.list_automations().await?.iter().map(|record| overview(record, stats.iter().find(|s| s.automation == record.name))).collect())
}

/// Runs a rep's page of the run log reads at most before it answers.
pub const RUNS_SCANNED_PER_PAGE: usize = 10_000;

/// The run log, newest first: automation, contact, time, why it fired, and each action's
/// outcome (a queued delivery's outcome is where the outbox stands now).
///
/// A sales rep (`reach`) sees the runs for the contacts they reach: another rep's contact
/// named in `contact` is not found, and without `contact` the log is read on, up to
/// [`RUNS_SCANNED_PER_PAGE`] runs, until the page is full; a page can then hold fewer
/// runs than `limit` and still have a `next_cursor`.
pub async fn runs(
    engine: &Engine,
    reach: &Reach,
    automation: Option<String>,
    contact: Option<String>,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<(Vec<RunView>, Option<String>), AutomationError> {
    let limit = limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(AutomationError::Limit);
    }
    let mut before = crate::paging::parse_time_cursor(cursor)?;
    if let Some(contact) = &contact
        && !reach.is_everyone()
        && !engine.store.get_contact(contact).await?.is_some_and(|found| reach.reaches(found.owner.as_deref()))
    {
        return Err(AutomationError::NoContact(contact.clone()));
    }
    let narrowed = contact.is_none() && !reach.is_everyone();
    let mut in_reach = InReach::new(engine, reach);
    let (mut runs, mut scanned, mut next_cursor) = (Vec::new(), 0, None);
    loop {
        let mut page = engine.store.list_runs(&RunQuery { automation: automation.clone(), contact_id: contact.clone(), before: before.clone(), limit }).await?;
        scanned += page.len();
        let full = page.len() == limit;
        let last = page.last().map(|run| (run.at, run.id.clone()));
        if narrowed {
            in_reach.retain(&mut page, |run| &run.contact_id).await?;
        }
        let room = limit - runs.len();
        if page.len() >= room {
            page.truncate(room);
            runs.extend(page);
            next_cursor = crate::paging::next_time_cursor(runs.len(), limit, runs.last().map(|r| (r.at, r.id.as_str())));
            break;
        }
        runs.extend(page);
        if !full {
            break;
        }
        // The log goes on: read further unless this page has read enough for one answer.
        if !narrowed || scanned >= RUNS_SCANNED_PER_PAGE {
            next_cursor = last.map(|(at, id)| format!("{},{id}", format_time(at)));
            break;
        }
        before = last;
    }
    let mut items = Vec::with_capacity(runs.len());
    for run in &runs {
        let mut actions = Vec::with_capacity(run.actions.len());
        for action in &run.actions {
            let mut action = action.clone();
            if let Some(id) = action.get("delivery").and_then(Value::as_str).map(str::to_string)
                && let Some((delivery, _)) = engine.store.get_delivery(&id).await?
            {
                action["outcome"] = json!(delivery.state);
                action["attempts"] = json!(delivery.attempts);
                action["last_error"] = json!(delivery.last_error);
            }
            actions.push(action);
        }
        items.push(RunView {
            actions,
            at: format_time(run.at),
            automation: run.automation.clone(),
            contact: run.contact_id.clone(),
            id: run.id.clone(),
            reason: run.reason.clone(),
        });
    }
    Ok((items, next_cursor))
}

/// One run of the run log: which automation fired for whom, when, why, and what each
/// action did.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RunView {
    /// One outcome per action, in order (`action`, `outcome`, and what the action names; a
    /// queued delivery's `outcome`, `attempts` and `last_error` are where the outbox stands now).
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Value>,
    pub at: String,
    pub automation: String,
    pub contact: String,
    pub id: String,
    /// Why it fired: the trigger and what crossed (`trigger`, `model`, `from`, `to`, …).
    #[schema(value_type = Object)]
    pub reason: Value,
}
