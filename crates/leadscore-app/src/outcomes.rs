//! Outcomes (F18): sales records a contact's status and rates leads; each outcome keeps
//! the contact's scores as of its time, so the reports judge the scoring on what sales saw.

use std::collections::BTreeMap;

use leadscore_core::ScoreCard;
use leadscore_store::{ContactRecord, Millis, NewOutcome, OutcomeKind, OutcomeRecord, STATUSES, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Engine;
use crate::contacts::current_cards;
use crate::error::AppError;
use crate::time::{format_time, parse_time};

/// Why an outcome cannot be recorded or read.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    #[error("no contact {0:?}")]
    NoContact(String),
    /// An unknown status, a rating outside 1–5, a time that does not parse or lies ahead.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<OutcomeError> for AppError {
    fn from(err: OutcomeError) -> Self {
        match err {
            OutcomeError::NoContact(_) => AppError::not_found(err.to_string()),
            OutcomeError::Invalid(message) => AppError::invalid(message),
            OutcomeError::Store(err) => AppError::Store(err),
        }
    }
}

/// An outcome may be dated in the past (imports of history), not in the future beyond
/// a little clock skew.
const FUTURE_SKEW_MS: Millis = 5 * 60 * 1000;

/// The time of an outcome: given (RFC 3339) or now; never in the future.
pub fn outcome_time(engine: &Engine, at: Option<&str>) -> Result<Millis, String> {
    let now = engine.now();
    let at = match at {
        Some(text) => parse_time(text)?,
        None => now,
    };
    if at > now + FUTURE_SKEW_MS {
        return Err(format!("`at` {} is in the future", format_time(at)));
    }
    Ok(at)
}

/// The contact's cards as of `at` under every live model that applies to it.
pub async fn cards_at(engine: &Engine, contact: &ContactRecord, at: Millis) -> Result<BTreeMap<String, ScoreCard>, StoreError> {
    Ok(current_cards(engine, contact, Some(at)).await?.into_iter().map(|(model, card)| (model.name.clone(), card)).collect())
}

/// Records one outcome for a contact: its scores as of `at` go with it.
pub async fn record(engine: &Engine, contact_id: &str, kind: OutcomeKind, at: Millis) -> Result<OutcomeRecord, OutcomeError> {
    let contact = engine.store.get_contact(contact_id).await?.ok_or_else(|| OutcomeError::NoContact(contact_id.to_string()))?;
    Ok(record_for(engine, &contact, kind, at).await?)
}

/// [`record`] for a contact the caller has just read or written (an import), without
/// reading it again.
pub async fn record_for(engine: &Engine, contact: &ContactRecord, kind: OutcomeKind, at: Millis) -> Result<OutcomeRecord, StoreError> {
    let scores = cards_at(engine, contact, at).await?;
    engine.store.record_outcome(NewOutcome { contact_id: contact.id.clone(), kind, at, scores }, engine.now()).await
}

/// Records a status sales set (`qualified`, `won`, …; any case), dated `at` or now.
pub async fn record_status(engine: &Engine, contact_id: &str, status: &str, at: Option<&str>) -> Result<OutcomeRecord, OutcomeError> {
    let status = status.trim().to_lowercase();
    check_status(&status).map_err(OutcomeError::Invalid)?;
    let at = outcome_time(engine, at).map_err(OutcomeError::Invalid)?;
    record(engine, contact_id, OutcomeKind::Status { status }, at).await
}

/// Records a 1–5 rating of a lead with an optional note, dated `at` or now.
pub async fn record_feedback(
    engine: &Engine,
    contact_id: &str,
    rating: i64,
    note: Option<String>,
    author: Option<String>,
    at: Option<&str>,
) -> Result<OutcomeRecord, OutcomeError> {
    let rating = check_rating(rating).map_err(OutcomeError::Invalid)?;
    let at = outcome_time(engine, at).map_err(OutcomeError::Invalid)?;
    let note = note.filter(|n| !n.trim().is_empty());
    record(engine, contact_id, OutcomeKind::Feedback { rating, note, author }, at).await
}

/// A contact's outcomes, oldest first.
pub async fn contact_outcomes(engine: &Engine, contact_id: &str) -> Result<Vec<OutcomeRecord>, OutcomeError> {
    if engine.store.get_contact(contact_id).await?.is_none() {
        return Err(OutcomeError::NoContact(contact_id.to_string()));
    }
    Ok(engine.store.contact_outcomes(contact_id).await?)
}

pub fn check_status(status: &str) -> Result<(), String> {
    if STATUSES.contains(&status) { Ok(()) } else { Err(format!("status {status:?} is not one of {}", STATUSES.join(", "))) }
}

pub fn check_rating(rating: i64) -> Result<u8, String> {
    u8::try_from(rating).ok().filter(|r| (1..=5).contains(r)).ok_or_else(|| format!("rating {rating} is not between 1 and 5"))
}

/// An outcome as front ends show it: what sales recorded, when, and the contact's cards
/// as of then.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OutcomeView {
    /// When it happened (may be in the past).
    pub at: String,
    pub contact: String,
    pub id: i64,
    /// When it was recorded.
    pub recorded_at: String,
    /// The contact's cards as of `at`, per model.
    #[schema(value_type = BTreeMap<String, crate::schema::ScoreCardSchema>)]
    pub scores: BTreeMap<String, ScoreCard>,
    #[serde(flatten)]
    pub recorded: Recorded,
}

/// What sales recorded: a status or a rating.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recorded {
    /// One of new, contacted, qualified, disqualified, won, lost.
    Status { status: String },
    /// A rating of the lead, 1 (poor) to 5 (excellent).
    Feedback {
        #[schema(required = true)]
        author: Option<String>,
        #[schema(required = true)]
        note: Option<String>,
        rating: u8,
    },
}

impl From<&OutcomeRecord> for OutcomeView {
    fn from(outcome: &OutcomeRecord) -> Self {
        let recorded = match &outcome.kind {
            OutcomeKind::Status { status } => Recorded::Status { status: status.clone() },
            OutcomeKind::Feedback { rating, note, author } => Recorded::Feedback { author: author.clone(), note: note.clone(), rating: *rating },
        };
        OutcomeView {
            at: format_time(outcome.at),
            contact: outcome.contact_id.clone(),
            id: outcome.id,
            recorded_at: format_time(outcome.recorded_at),
            scores: outcome.scores.clone(),
            recorded,
        }
    }
}
