//! The outbox (F16): deliveries by state, one with its attempts, and sending one again by
//! hand.

use leadscore_store::runner::{Channel, Delivery, DeliveryAttempt, DeliveryQuery, DeliveryState};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Engine;
use crate::error::AppError;
use crate::paging::{PageError, next_time_cursor, parse_time_cursor};
use crate::time::format_time;

/// Why the outbox cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("state {0:?} is not one of pending, delivered, failed (dead-lettered), all")]
    UnknownState(String),
    #[error("limit must be between 1 and 1000")]
    Limit,
    #[error(transparent)]
    Page(#[from] PageError),
    #[error("no delivery {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] leadscore_store::StoreError),
}

impl From<DeliveryError> for AppError {
    fn from(err: DeliveryError) -> Self {
        match err {
            DeliveryError::UnknownState(_) | DeliveryError::Limit => AppError::invalid(err.to_string()),
            DeliveryError::Page(err) => err.into(),
            DeliveryError::NotFound(_) => AppError::not_found(err.to_string()),
            DeliveryError::Store(err) => AppError::Store(err),
        }
    }
}

/// One page of the outbox, newest first, with the count of deliveries in each state.
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    pub next_cursor: Option<String>,
    pub counts: Vec<(DeliveryState, u64)>,
}

/// The deliveries in `state` (`pending`, `delivered`, `failed`, `all`/None), of one
/// automation when named, a page after `cursor`.
pub async fn list(
    engine: &Engine,
    state: Option<&str>,
    automation: Option<String>,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<DeliveryPage, DeliveryError> {
    let wanted = match state {
        None | Some("") | Some("all") => None,
        Some(text) => Some(DeliveryState::parse(text).ok_or_else(|| DeliveryError::UnknownState(text.to_string()))?),
    };
    let limit = limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(DeliveryError::Limit);
    }
    let before = parse_time_cursor(cursor)?;
    let deliveries = engine.store.list_deliveries(&DeliveryQuery { state: wanted, automation, before, limit }).await?;
    let next_cursor = next_time_cursor(deliveries.len(), limit, deliveries.last().map(|d| (d.created_at, d.id.as_str())));
    let counts = engine.store.count_deliveries().await?;
    Ok(DeliveryPage { deliveries, next_cursor, counts })
}

/// A delivery with every attempt made so far.
pub async fn get(engine: &Engine, id: &str) -> Result<(Delivery, Vec<DeliveryAttempt>), DeliveryError> {
    engine.store.get_delivery(id).await?.ok_or_else(|| DeliveryError::NotFound(id.to_string()))
}

/// Queues a delivery again (a dead letter after its receiver was fixed), now.
pub async fn retry(engine: &Engine, id: &str) -> Result<Delivery, DeliveryError> {
    let delivery = engine.store.retry_delivery(id, engine.now()).await?.ok_or_else(|| DeliveryError::NotFound(id.to_string()))?;
    tracing::info!(delivery = %id, "delivery queued again by hand");
    engine.runtime.wake_delivery.notify_one();
    Ok(delivery)
}

/// A delivery as front ends show it: where it goes, what it carries, where it stands.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Attempts made so far.
    pub attempts: u32,
    #[schema(required = true)]
    pub automation: Option<String>,
    /// `webhook` or `email`.
    pub channel: String,
    #[schema(required = true)]
    pub contact: Option<String>,
    pub created_at: String,
    #[schema(required = true)]
    pub delivered_at: Option<String>,
    /// Also the `webhook-id`, the same on every attempt.
    pub id: String,
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// The HTTP status of the last attempt.
    #[schema(required = true)]
    pub last_status: Option<u16>,
    #[schema(required = true)]
    pub next_attempt_at: Option<String>,
    #[schema(required = true)]
    pub run_id: Option<String>,
    /// pending, delivered or failed (dead-lettered).
    #[schema(value_type = String)]
    pub state: DeliveryState,
    /// The webhook's URL, or the e-mail's recipient.
    pub target: String,
    /// The event: `automation.fired`, `score.changed`, …
    #[serde(rename = "type")]
    pub event_type: String,
    pub updated_at: String,
    #[serde(flatten)]
    pub content: DeliveryContent,
    /// Every attempt, oldest first (a single delivery read by its id only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub attempt_log: Option<Vec<AttemptView>>,
}

/// What a delivery carries, by channel.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum DeliveryContent {
    Webhook {
        /// The JSON body sent (as text when it is not JSON).
        #[schema(value_type = Object)]
        payload: Value,
        /// The secret that signs it.
        #[schema(required = true)]
        secret_ref: Option<String>,
    },
    Email {
        body: String,
        subject: String,
    },
}

impl From<&Delivery> for DeliveryView {
    fn from(delivery: &Delivery) -> Self {
        let (channel, target, content) = match &delivery.channel {
            Channel::Webhook { url, secret_ref, body } => {
                let payload = serde_json::from_str::<Value>(body).unwrap_or_else(|_| Value::String(body.clone()));
                ("webhook", url.clone(), DeliveryContent::Webhook { payload, secret_ref: secret_ref.clone() })
            }
            Channel::Email { to, subject, body } => ("email", to.clone(), DeliveryContent::Email { body: body.clone(), subject: subject.clone() }),
        };
        DeliveryView {
            attempts: delivery.attempts,
            automation: delivery.automation.clone(),
            channel: channel.to_string(),
            contact: delivery.contact_id.clone(),
            created_at: format_time(delivery.created_at),
            delivered_at: delivery.delivered_at.map(format_time),
            id: delivery.id.clone(),
            last_error: delivery.last_error.clone(),
            last_status: delivery.last_status,
            next_attempt_at: delivery.next_attempt_at.map(format_time),
            run_id: delivery.run_id.clone(),
            state: delivery.state,
            target,
            event_type: delivery.event_type.clone(),
            updated_at: format_time(delivery.updated_at),
            content,
            attempt_log: None,
        }
    }
}

impl DeliveryView {
    /// The delivery with every attempt made so far.
    pub fn with_attempts(delivery: &Delivery, attempts: &[DeliveryAttempt]) -> Self {
        DeliveryView { attempt_log: Some(attempts.iter().map(AttemptView::from).collect()), ..DeliveryView::from(delivery) }
    }
}

/// One attempt to deliver.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub at: String,
    pub duration_ms: u64,
    #[schema(required = true)]
    pub error: Option<String>,
    /// The HTTP status answered (none for e-mail, or when no answer came).
    #[schema(required = true)]
    pub status: Option<u16>,
    pub success: bool,
}

impl From<&DeliveryAttempt> for AttemptView {
    fn from(attempt: &DeliveryAttempt) -> Self {
        AttemptView {
            at: format_time(attempt.at),
            duration_ms: attempt.duration_ms,
            error: attempt.error.clone(),
            status: attempt.status,
            success: attempt.success,
        }
    }
}
