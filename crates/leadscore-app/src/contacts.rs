//! Contacts: create, change, merge, erase, bulk changes, the lead list, and a contact's
//! cards under every live model, now or as of a past instant.

use std::collections::BTreeMap;
use std::sync::Arc;

use leadscore_core::scorer::{QUADRANTS, activity_history, normalize_events, round2};
use leadscore_core::{EventRef, ScoreCard};
use leadscore_store::scoring::{ScoringEvent, card_at, card_from_events};
use leadscore_store::{BulkUpdate, ContactPatch, ContactRecord, ContactUpsert, LeadQuery, Millis, ModelSet, PublishedModel, SortKey, StoreError};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::Engine;
use crate::ModelChoiceError;
use crate::access::Reach;
use crate::error::AppError;
use crate::paging::PageError;

/// Why a contact, its history or export, or the lead list cannot be had or changed.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// What was sent breaks a rule (an id, an e-mail address, a time, nothing to change): 422.
    #[error("{0}")]
    Invalid(String),
    /// The question cannot be answered as asked (a sort, a filter, a limit): 400.
    #[error("{0}")]
    BadQuery(String),
    /// No such contact, or one out of the reader's reach.
    #[error("no contact {0:?}")]
    NotFound(String),
    #[error("no model {0:?}")]
    NoModel(String),
    #[error(transparent)]
    Model(#[from] ModelChoiceError),
    #[error(transparent)]
    Page(#[from] PageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ContactError> for AppError {
    fn from(err: ContactError) -> Self {
        match err {
            ContactError::Invalid(message) => AppError::invalid(message),
            ContactError::BadQuery(message) => AppError::bad_request(message),
            ContactError::NotFound(_) | ContactError::NoModel(_) => AppError::not_found(err.to_string()),
            ContactError::Model(err) => err.into(),
            ContactError::Page(err) => err.into(),
            ContactError::Store(err) => AppError::Store(err),
        }
    }
}

impl ContactError {
    /// Whether the contact is not there (or not for this reader), as the engine or the
    /// store found it: pages answer their own 404 then.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ContactError::NotFound(_) | ContactError::Store(StoreError::NotFound(_)))
    }
}

type ContactResult<T> = Result<T, ContactError>;
use crate::paging::{bad_cursor, page_cursor};
use crate::time::{format_time, parse_time};

const MAX_ID_LEN: usize = 256;

pub fn check_id(id: &str, what: &str) -> ContactResult<()> {
    if id.trim().is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(ContactError::Invalid(format!("{what} must be 1-{MAX_ID_LEN} printable characters")));
    }
    Ok(())
}

/// A contact's cards under every live model that scores it, as of `at` (now if None).
/// Stored states answer directly; a past `at` or a rescore still under way replays events.
pub async fn current_cards(engine: &Engine, contact: &ContactRecord, at: Option<Millis>) -> Result<Vec<(Arc<PublishedModel>, ScoreCard)>, StoreError> {
    let mut models = engine.models();
    // A row scored under a model or version this process has not loaded yet was written
    // after a publish through another process: load the live set now rather than showing
    // the contact without it until the next periodic reload.
    let newer = |models: &ModelSet| contact.scores.iter().any(|(name, row)| models.iter().find(|m| &m.name == name).is_none_or(|m| m.version < row.version));
    if newer(&models) {
        engine.reload_models().await?;
        models = engine.models();
    }
    let mut cards = Vec::new();
    let mut events: Option<Vec<ScoringEvent>> = None;
    for published in models.iter() {
        if !published.model.applies_to(&contact.attributes) {
            continue;
        }
        let row = contact.scores.get(&published.name).filter(|r| r.version == published.version);
        let when = at.unwrap_or_else(|| row.map_or(engine.now(), |r| leadscore_store::scoring::effective_now(&r.state, engine.now())));
        let card = match row.and_then(|r| card_at(published, r, &contact.attributes, when)) {
            Some(card) => card,
            None => {
                if events.is_none() {
                    events = Some(ScoringEvent::from_stored(&engine.store.contact_events(&contact.id).await?));
                }
                let all = events.as_deref().unwrap_or_default();
                let when = at.unwrap_or_else(|| all.iter().map(|e| e.timestamp).max().map_or(engine.now(), |t| t.max(engine.now())));
                card_from_events(published, &contact.attributes, all, when)
            }
        };
        cards.push((published.clone(), card));
    }
    Ok(cards)
}

/// One model's card on a contact, with the version that scored it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ModelCard {
    #[serde(flatten)]
    #[schema(value_type = crate::schema::ScoreCardSchema)]
    pub card: ScoreCard,
    pub version: u32,
}

/// A contact as every front end shows it (contract §5): its fields, each live model's
/// card, and for a model that does not score it, why (its segment).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ContactView {
    /// The instant the scores are for, when one was asked (`?at=`).
    #[schema(required = true)]
    pub as_of: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    pub created_at: String,
    #[schema(required = true)]
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub id: String,
    #[schema(required = true)]
    pub last_event_at: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub not_scored: BTreeMap<String, String>,
    #[schema(required = true)]
    pub owner: Option<String>,
    #[schema(required = true)]
    pub predictive: Option<crate::predictive::PredictiveScore>,
    pub scores: BTreeMap<String, ModelCard>,
    #[schema(required = true)]
    pub status: Option<String>,
    pub updated_at: String,
}

/// The contact's view as of `at` (now if None).
pub async fn view(engine: &Engine, contact: &ContactRecord, at: Option<Millis>) -> ContactResult<ContactView> {
    let scores: BTreeMap<String, ModelCard> = current_cards(engine, contact, at)
        .await?
        .into_iter()
        .map(|(published, card)| (published.name.clone(), ModelCard { card, version: published.version }))
        .collect();
    // A contact a model does not score says so and why (its segment), instead of a bare
    // `"scores": {}` (issue 12.12).
    let not_scored = engine
        .models()
        .iter()
        .filter(|m| !m.is_shadow() && !scores.contains_key(&m.name))
        .filter_map(|m| m.model.why_not_applies(&contact.attributes).map(|why| (m.name.clone(), why)))
        .collect();
    let cards: BTreeMap<String, ScoreCard> = scores.iter().map(|(name, card)| (name.clone(), card.card.clone())).collect();
    let predictive = crate::predictive::score(engine, contact, &cards, at).await?;
    Ok(ContactView {
        as_of: at.map(format_time),
        attributes: contact.attributes.clone(),
        created_at: format_time(contact.created_at),
        email: contact.email.clone(),
        groups: contact.groups.clone(),
        id: contact.id.clone(),
        last_event_at: contact.last_event_at.map(format_time),
        not_scored,
        owner: contact.owner.clone(),
        predictive,
        scores,
        status: contact.status.clone(),
        updated_at: format_time(contact.updated_at),
    })
}

/// The contact `id`, or not found.
pub async fn find(engine: &Engine, id: &str) -> ContactResult<ContactRecord> {
    engine.store.get_contact(id).await?.ok_or_else(|| ContactError::NotFound(id.to_string()))
}

/// [`find`] for a caller with this reach: a contact out of it is not found, as one that
/// does not exist.
pub async fn find_within(engine: &Engine, id: &str, reach: &Reach) -> ContactResult<ContactRecord> {
    let contact = find(engine, id).await?;
    // Out of reach reads as not there, so a rep cannot learn which ids are taken.
    if reach.reaches(contact.owner.as_deref()) { Ok(contact) } else { Err(ContactError::NotFound(contact.id)) }
}

/// A contact to create or update, as a caller sends it (the e-mail may also come as an
/// attribute; the field wins).
#[derive(Clone, Debug, Default)]
pub struct NewContact {
    pub id: Option<String>,
    pub email: Option<String>,
    pub attributes: Map<String, Value>,
    pub groups: Vec<String>,
    pub owner: Option<String>,
    pub created_at: Option<String>,
}

/// Creates or updates a contact by id or e-mail, scores it, and runs its automations before
/// answering. Answers the contact as stored and whether it was created.
pub async fn upsert(engine: &Engine, new: NewContact) -> ContactResult<(ContactRecord, bool)> {
    if let Some(id) = &new.id {
        check_id(id, "id")?;
    }
    let created_at = new.created_at.as_deref().map(parse_time).transpose().map_err(ContactError::Invalid)?;
    let mut attributes = new.attributes;
    let email = match attributes.remove("email") {
        Some(Value::String(email)) => new.email.or(Some(email)),
        Some(Value::Null) | None => new.email,
        Some(other) => return Err(ContactError::Invalid(format!("attributes.email must be a string, got {other}"))),
    };
    if new.id.is_none() && email.is_none() {
        return Err(ContactError::Invalid("a contact needs an `id` or an `email`".into()));
    }
    if let Some(email) = &email {
        leadscore_core::email::check_email(email).map_err(ContactError::Invalid)?;
    }
    let upsert = ContactUpsert { id: new.id, email, attributes, groups: new.groups, owner: new.owner, created_at, historical: false };
    let (contact, created) = engine.store.upsert_contact(upsert, &engine.models(), engine.now()).await?;
    Ok((after_write(engine, contact).await?, created))
}

/// What a PATCH changes: attributes (an e-mail among them), groups, the owner.
#[derive(Clone, Debug, Default)]
pub struct ContactChanges {
    pub attributes: Map<String, Value>,
    pub add_groups: Vec<String>,
    pub remove_groups: Vec<String>,
    /// `Some(None)` clears the owner.
    pub owner: Option<Option<String>>,
    pub email: Option<String>,
}

/// Changes a contact, rescoring it, and runs its automations before answering.
pub async fn patch(engine: &Engine, id: &str, changes: ContactChanges) -> ContactResult<ContactRecord> {
    let mut attributes = changes.attributes;
    if let Some(email) = changes.email {
        attributes.insert("email".into(), Value::String(email));
    }
    if let Some(Value::String(email)) = attributes.get("email") {
        leadscore_core::email::check_email(email).map_err(ContactError::Invalid)?;
    }
    let patch = ContactPatch { attributes, add_groups: changes.add_groups, remove_groups: changes.remove_groups, owner: changes.owner, status: None };
    let contact = engine.store.patch_contact(id, patch, &engine.models(), engine.now()).await?;
    after_write(engine, contact).await
}

/// The most contacts one bulk action on chosen contacts takes (the lead list's checkboxes;
/// `POST /bulk` changes any number by filter).
pub const MAX_CHOSEN: usize = 1000;

/// The same changes to each chosen contact (the lead list's bulk actions), one contact per
/// transaction. A contact that is gone or out of `reach` is skipped, not refused: the
/// others still change. Returns how many changed.
pub async fn change_chosen(engine: &Engine, ids: &[String], changes: &ContactChanges, reach: &Reach) -> ContactResult<usize> {
    if ids.len() > MAX_CHOSEN {
        return Err(ContactError::BadQuery(format!("at most {MAX_CHOSEN} contacts at once; use a filter (POST /bulk) for more")));
    }
    let mut changed = 0;
    for id in ids {
        let Some(contact) = engine.store.get_contact(id).await? else { continue };
        if reach.reaches(contact.owner.as_deref()) {
            patch(engine, id, changes.clone()).await?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// A written contact after its automations ran (they may have changed it).
async fn after_write(engine: &Engine, contact: ContactRecord) -> ContactResult<ContactRecord> {
    if engine.runtime.automations().is_empty() && engine.predictive().is_none() {
        return Ok(contact);
    }
    crate::runtime::after_contact_write(engine, &contact.id).await;
    Ok(engine.store.get_contact(&contact.id).await?.unwrap_or(contact))
}

/// Erases a contact (F27) for `by` (the key's or the user's id), which the erasure log
/// keeps with the time — never what was erased.
pub async fn erase(engine: &Engine, id: &str, by: &str) -> ContactResult<()> {
    let erasure = leadscore_store::ErasureRecord { at: engine.now(), by: by.to_string() };
    if !engine.store.delete_contact(id, &erasure).await? {
        return Err(ContactError::NotFound(id.to_string()));
    }
    tracing::info!(by, "contact erased");
    Ok(())
}

/// An entry of the erasure log as front ends show it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ErasureView {
    pub at: String,
    pub by: String,
}

/// The erasure log, newest first.
pub async fn erasures(engine: &Engine, limit: usize) -> ContactResult<Vec<ErasureView>> {
    Ok(engine.store.list_erasures(limit).await?.into_iter().map(|e| ErasureView { at: format_time(e.at), by: e.by }).collect())
}

/// One person known under two ids becomes one contact (`into`), scored as if every event
/// had been its own; `from` is deleted.
pub async fn merge(engine: &Engine, from: &str, into: &str) -> ContactResult<ContactRecord> {
    let contact = engine.store.merge_contacts(from, into, &engine.models(), engine.now()).await?;
    crate::runtime::refresh_predictive(engine, std::slice::from_ref(&contact.id)).await;
    crate::runtime::contacts_changed(engine);
    tracing::info!(into = %into, from = %from, "contacts merged");
    Ok(contact)
}

/// Changes every contact the filter selects; answers how many.
pub async fn bulk(engine: &Engine, update: BulkUpdate) -> ContactResult<u64> {
    let patch = &update.patch;
    if patch.attributes.is_empty() && patch.add_groups.is_empty() && patch.remove_groups.is_empty() && patch.owner.is_none() {
        return Err(ContactError::Invalid("nothing to change: give set_attributes, add_groups, remove_groups or owner".into()));
    }
    if let Some(model) = &update.filter.model
        && engine.model(model).is_none()
    {
        return Err(ContactError::NoModel(model.to_string()));
    }
    let mut changed = 0u64;
    let mut after = String::new();
    loop {
        let chunk = engine.store.bulk_update_chunk(&update, &after, &engine.models(), engine.now()).await?;
        // Each chunk's predictive scores are stored before the next chunk is written, so
        // they are current when the call returns, as after any other write.
        crate::runtime::refresh_predictive(engine, &chunk.changed).await;
        changed += chunk.changed.len() as u64;
        match chunk.next {
            Some(next) => after = next,
            None => break,
        }
    }
    crate::runtime::contacts_changed(engine);
    Ok(changed)
}

/// The longest search text the lead list takes.
pub const MAX_SEARCH_LEN: usize = 200;

/// What the lead list is asked for (contract §5): `model` makes it the lead list, sorted
/// by a score; without one, every contact in id order.
#[derive(Clone, Debug, Default)]
pub struct LeadListQuery {
    pub model: Option<String>,
    /// `total`, `fit`, `activity` or `predictive`, `-` first for descending [default: `-total`].
    pub sort: Option<String>,
    /// Only contacts whose predictive score is at least this (0–100).
    pub predictive_min: Option<u8>,
    pub band: Option<String>,
    pub group: Option<String>,
    pub owner: Option<String>,
    pub status: Option<String>,
    /// Leave closed deals (won, lost, disqualified) out.
    pub open: Option<bool>,
    /// Only this fit × activity quadrant of the model.
    pub quadrant: Option<String>,
    /// Only contacts whose `source` attribute is this.
    pub source: Option<String>,
    /// Only contacts whose e-mail, name or company contains this (ASCII case ignored).
    pub search: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    /// Whose contacts may be listed: a sales rep's own (and the pool) whatever `owner` says.
    pub reach: Reach,
}

/// One page of the lead list: the contacts and the cursor of the next page.
#[derive(Clone, Debug)]
pub struct LeadPage {
    pub model: Option<String>,
    pub contacts: Vec<ContactRecord>,
    pub next_cursor: Option<String>,
}

fn parse_sort(sort: Option<&str>) -> ContactResult<(SortKey, bool)> {
    let sort = sort.unwrap_or("-total");
    let (descending, key) = match sort.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, sort.strip_prefix('+').unwrap_or(sort)),
    };
    let key = match key {
        "total" => SortKey::Total,
        "fit" => SortKey::Fit,
        "activity" => SortKey::Activity,
        "predictive" => SortKey::Predictive,
        other => return Err(ContactError::BadQuery(format!("cannot sort by {other:?}; use total, fit, activity or predictive, `-` for descending"))),
    };
    Ok((key, descending))
}

/// Cursor for the lead list: `<sort value>~<contact id>`, opaque to clients.
fn parse_lead_cursor(cursor: &str) -> ContactResult<(f64, String)> {
    let (value, id) = cursor.split_once('~').ok_or_else(bad_cursor)?;
    let value: f64 = value.parse().ok().filter(|v: &f64| v.is_finite()).ok_or_else(bad_cursor)?;
    Ok((value, id.to_string()))
}

/// The lead list, best first, one page at a time.
pub async fn lead_list(engine: &Engine, q: LeadListQuery) -> ContactResult<LeadPage> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ContactError::BadQuery("limit must be from 1 to 1000".into()));
    }
    if let Some(status) = &q.status
        && !leadscore_store::STATUSES.contains(&status.as_str())
    {
        return Err(ContactError::BadQuery(format!("status {status:?} is not one of {}", leadscore_store::STATUSES.join(", "))));
    }
    let Some(model_name) = q.model.clone() else {
        if q.band.is_some() || q.sort.is_some() || q.status.is_some() || q.open.is_some() || q.quadrant.is_some() || q.predictive_min.is_some() {
            return Err(ContactError::BadQuery(
                "`band`, `sort`, `status`, `open`, `quadrant`, `predictive_min` and `format` need `model` (the lead list)".into(),
            ));
        }
        // Without a model: every contact in id order (the filters need a model).
        if q.group.is_some() || q.owner.is_some() || q.source.is_some() || q.search.is_some() {
            return Err(ContactError::BadQuery("`group`, `owner`, `source` and `q` filters need `model` (the lead list)".into()));
        }
        if !q.reach.is_everyone() {
            return Err(ContactError::BadQuery("a sales rep lists their contacts through the lead list: give `model`".into()));
        }
        let contacts = engine.store.list_contacts(page_cursor(q.cursor.as_deref())?, limit).await?;
        let next_cursor = (contacts.len() == limit).then(|| contacts.last().map(|c| c.id.clone())).flatten();
        return Ok(LeadPage { model: None, contacts, next_cursor });
    };
    let published = engine.model(&model_name).ok_or_else(|| ContactError::NoModel(model_name.clone()))?;
    if let Some(band) = &q.band
        && !published.model.bands.iter().any(|b| &b.name == band)
    {
        let names: Vec<&str> = published.model.bands.iter().map(|b| b.name.as_str()).collect();
        return Err(ContactError::BadQuery(format!("model {model_name:?} has no band {band:?}; bands: {}", names.join(", "))));
    }
    if let Some(quadrant) = &q.quadrant
        && !QUADRANTS.contains(&quadrant.as_str())
    {
        return Err(ContactError::BadQuery(format!("quadrant {quadrant:?} is not one of {}", QUADRANTS.join(", "))));
    }
    let search = q.search.map(|text| text.trim().to_string()).filter(|text| !text.is_empty());
    if search.as_ref().is_some_and(|text| text.chars().count() > MAX_SEARCH_LEN) {
        return Err(ContactError::BadQuery(format!("the search text is longer than {MAX_SEARCH_LEN} characters")));
    }
    let (sort, descending) = parse_sort(q.sort.as_deref())?;
    if (sort == SortKey::Predictive || q.predictive_min.is_some()) && engine.predictive().is_none() {
        return Err(ContactError::BadQuery("no predictive model is live yet: train one first (`leadscore train`, POST /api/v1/predictive/train)".into()));
    }
    if q.predictive_min.is_some_and(|min| min > 100) {
        return Err(ContactError::BadQuery("predictive_min runs from 0 to 100".into()));
    }
    let after = page_cursor(q.cursor.as_deref())?.map(parse_lead_cursor).transpose()?;
    let (owner, unassigned_too) = match q.reach {
        Reach::Everyone => (q.owner, false),
        // A rep asking for another rep's leads gets their own: the filter cannot widen the reach.
        Reach::Own { owner, pool } => (Some(owner), pool),
    };
    let lead_query = LeadQuery {
        model: model_name.clone(),
        sort: sort.clone(),
        descending,
        band: q.band,
        group: q.group,
        owner,
        unassigned_too,
        quadrant: q.quadrant,
        source: q.source,
        search,
        status: q.status,
        open: q.open.unwrap_or(false),
        predictive_min: q.predictive_min,
        limit,
        after,
    };
    let contacts = engine.store.list_leads(&lead_query).await?;
    let next_cursor = if contacts.len() == limit {
        contacts.last().and_then(|c| {
            let card = &c.scores.get(&model_name)?.card;
            let value = match sort {
                SortKey::Total => card.total,
                SortKey::Fit => card.fit,
                SortKey::Activity => card.activity,
                SortKey::Predictive => c.predictive.as_ref()?.probability,
            };
            Some(format!("{value}~{}", c.id))
        })
    } else {
        None
    };
    Ok(LeadPage { model: Some(model_name), contacts, next_cursor })
}

/// A contact's score history under one model: every award and attribute change with the
/// rule behind it and the resulting scores, oldest first (contract §5).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HistoryView {
    pub contact: String,
    pub model: String,
    pub version: u32,
    pub entries: Vec<HistoryEntry>,
    /// The contact's card under the model as of now.
    #[schema(required = true, value_type = Option<crate::schema::ScoreCardSchema>)]
    pub current: Option<ScoreCard>,
    /// Where the next page starts, when the history is longer than this page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// One step of a contact's score history.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum HistoryEntry {
    Activity(ActivityEntry),
    Attributes(AttributesEntry),
    Log(LogEntryView),
}

/// Points an event earned by an activity rule, with the scores right after.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ActivityEntry {
    /// Activity right after the award, as of the event's time (decayed).
    pub activity: f64,
    pub at: String,
    /// The event's name.
    pub event: String,
    pub fit: f64,
    pub kind: ActivityKind,
    pub message_id: String,
    pub points: f64,
    /// The activity rule that awarded the points.
    pub rule: String,
    pub total: f64,
}

/// The `kind` of an [`ActivityEntry`]: always `activity`.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    Activity,
}

/// A change of attributes, with the fit it gives and the rules behind it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AttributesEntry {
    /// Activity at the time (unchanged by attributes).
    pub activity: f64,
    pub at: String,
    /// The fit the attributes give.
    pub fit: f64,
    /// Each fit rule that matches, with its points.
    pub fit_rules: Vec<FitReason>,
    /// What changed them: `attributes`, `identify`, …
    pub kind: String,
    /// How much the fit changed.
    pub points: f64,
    pub total: f64,
}

/// A fit rule that matches, and its points.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FitReason {
    pub points: f64,
    pub rule: String,
}

/// An entry of the contact's log (a merge, an erasure request, …) as recorded.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LogEntryView {
    pub at: String,
    /// What was recorded, by kind.
    #[schema(value_type = Object)]
    pub data: Value,
    pub kind: String,
}

impl From<&leadscore_store::LogEntry> for LogEntryView {
    fn from(entry: &leadscore_store::LogEntry) -> Self {
        LogEntryView { at: format_time(entry.at), data: entry.data.clone(), kind: entry.kind.clone() }
    }
}

/// Entries of a history page (and events of an export page) unless asked otherwise, and
/// at most.
pub const HISTORY_PAGE: (usize, usize) = (1_000, 10_000);
pub const EXPORT_PAGE: (usize, usize) = (10_000, 50_000);

/// The history of contact `id` under `model` (the only live one when None), up to `at`,
/// oldest first, the entries of `window`.
pub async fn history(engine: &Engine, id: &str, model: Option<&str>, at: Option<Millis>, window: crate::paging::Window) -> ContactResult<HistoryView> {
    let contact = find(engine, id).await?;
    let q_at = at;
    let published = engine.named_or_only_model(model)?;
    let at = q_at.unwrap_or(Millis::MAX);
    let events = ScoringEvent::from_stored(&engine.store.contact_events(id).await?);
    let mut refs: Vec<EventRef<'_>> = events.iter().map(ScoringEvent::as_ref).collect();
    normalize_events(&mut refs);
    let steps = activity_history(&published.model, refs, at);
    let log = engine.store.contact_log(id).await?;

    // Merge awards and attribute changes on one timeline with the resulting scores.
    let model = &published.model;
    let mut entries = Vec::new();
    // Events older than the first known attributes (a contact created after its history
    // was imported) are shown with the fit of those first attributes, not with 0.
    let first_fit = log.iter().find_map(|entry| entry.data.get("attributes").and_then(Value::as_object)).map_or(0.0, |attributes| model.fit(attributes));
    let mut fit: Option<f64> = None;
    let mut activity = 0.0;
    let mut log_iter = log.into_iter().filter(|e| e.at <= at).peekable();
    let mut steps_iter = steps.into_iter().peekable();
    loop {
        let take_log = match (log_iter.peek(), steps_iter.peek()) {
            (Some(l), Some(s)) => l.at <= s.timestamp,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_log {
            let Some(entry) = log_iter.next() else { break };
            let Some(attributes) = entry.data.get("attributes").and_then(Value::as_object) else {
                entries.push(HistoryEntry::Log(LogEntryView::from(&entry)));
                continue;
            };
            let new_fit = model.fit(attributes);
            let fit_rules = model.fit_breakdown(attributes).map(|(rule, points)| FitReason { points, rule: rule.to_string() }).collect();
            entries.push(HistoryEntry::Attributes(AttributesEntry {
                activity,
                at: format_time(entry.at),
                fit: round2(new_fit),
                fit_rules,
                kind: entry.kind,
                points: round2(new_fit - fit.unwrap_or(0.0)),
                total: round2(new_fit + activity),
            }));
            fit = Some(new_fit);
        } else {
            let Some(step) = steps_iter.next() else { break };
            activity = step.activity;
            let fit = fit.unwrap_or(first_fit);
            entries.push(HistoryEntry::Activity(ActivityEntry {
                activity,
                at: format_time(step.timestamp),
                event: step.event,
                fit: round2(fit),
                kind: ActivityKind::Activity,
                message_id: step.message_id,
                points: step.points,
                rule: step.rule,
                total: round2(fit + activity),
            }));
        }
    }
    let current = current_cards(engine, &contact, None).await?.into_iter().find(|(m, _)| m.name == published.name).map(|(_, card)| card);
    let (entries, next_cursor) = window.take(entries);
    Ok(HistoryView { contact: id.to_string(), model: published.name.clone(), version: published.version, entries, current, next_cursor })
}

/// Everything held on a contact (contract §5, the right of access).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ContactExport {
    pub contact: ContactView,
    /// The contact's events, oldest first.
    pub events: Vec<ExportedEvent>,
    pub log: Vec<LogEntryView>,
    /// Where the next page of events starts, when there are more than this page holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// Everything held on contact `id`, its events (oldest first) in `window`.
pub async fn export(engine: &Engine, id: &str, window: crate::paging::Window) -> ContactResult<ContactExport> {
    let contact = find(engine, id).await?;
    let events = engine.store.contact_events(id).await?;
    let log = engine.store.contact_log(id).await?;
    let events: Vec<ExportedEvent> = events
        .iter()
        .map(|e| ExportedEvent {
            context: e.context.clone(),
            event: e.name.clone(),
            message_id: e.message_id.clone(),
            properties: e.properties.clone(),
            received_at: format_time(e.received_at),
            timestamp: format_time(e.timestamp),
            kind: e.kind,
        })
        .collect();
    let log: Vec<LogEntryView> = log.iter().map(LogEntryView::from).collect();
    let (events, next_cursor) = window.take(events);
    Ok(ContactExport { contact: view(engine, &contact, None).await?, events, log, next_cursor })
}

/// A stored event as the export shows it (the Segment shape it came in).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ExportedEvent {
    /// The sender's context, as sent.
    #[schema(required = true, value_type = Option<Object>)]
    pub context: Option<Value>,
    pub event: String,
    #[serde(rename = "messageId")]
    pub message_id: String,
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    pub received_at: String,
    pub timestamp: String,
    /// track, page, screen or identify.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: leadscore_store::EventKind,
}

/// When the contact first entered the model's top band (None: never, or no top band with
/// a minimum): where a hot lead's wait for its first touch starts.
pub async fn became_hot_at(engine: &Engine, contact: &ContactRecord, published: &PublishedModel) -> ContactResult<Option<Millis>> {
    let Some(line) = published.model.bands.first().and_then(|b| b.min) else { return Ok(None) };
    let events = ScoringEvent::from_stored(&engine.store.contact_events(&contact.id).await?);
    let mut refs: Vec<EventRef<'_>> = events.iter().map(ScoringEvent::as_ref).collect();
    normalize_events(&mut refs);
    let fit = published.model.fit(&contact.attributes);
    Ok(leadscore_core::scorer::first_crossing(&published.model, fit, refs, line, Millis::MIN, Millis::MAX))
}
