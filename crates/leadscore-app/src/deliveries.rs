//! The outbox (F16): deliveries by state, one with its attempts, and sending one again by
//! hand.

use leadscore_store::runner::{Delivery, DeliveryAttempt, DeliveryQuery, DeliveryState};

use crate::Engine;
use crate::error::{AppError, AppResult};
use crate::paging::{next_time_cursor, parse_time_cursor};

/// One page of the outbox, newest first, with the count of deliveries in each state.
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    pub next_cursor: Option<String>,
    pub counts: Vec<(DeliveryState, u64)>,
}

/// The deliveries in `state` (`pending`, `delivered`, `failed`, `all`/None), of one
/// automation when named, a page after `cursor`.
pub async fn list(engine: &Engine, state: Option<&str>, automation: Option<String>, limit: Option<usize>, cursor: Option<&str>) -> AppResult<DeliveryPage> {
    let wanted = match state {
        None | Some("") | Some("all") => None,
        Some(text) => Some(
            DeliveryState::parse(text)
                .ok_or_else(|| AppError::invalid(format!("state {text:?} is not one of pending, delivered, failed (dead-lettered), all")))?,
        ),
    };
    let limit = limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::invalid("limit must be between 1 and 1000"));
    }
    let before = parse_time_cursor(cursor)?;
    let deliveries = engine.store.list_deliveries(&DeliveryQuery { state: wanted, automation, before, limit }).await?;
    let next_cursor = next_time_cursor(deliveries.len(), limit, deliveries.last().map(|d| (d.created_at, d.id.as_str())));
    let counts = engine.store.count_deliveries().await?;
    Ok(DeliveryPage { deliveries, next_cursor, counts })
}

/// A delivery with every attempt made so far.
pub async fn get(engine: &Engine, id: &str) -> AppResult<(Delivery, Vec<DeliveryAttempt>)> {
    engine.store.get_delivery(id).await?.ok_or_else(|| AppError::not_found(format!("no delivery {id:?}")))
}

/// Queues a delivery again (a dead letter after its receiver was fixed), now.
pub async fn retry(engine: &Engine, id: &str) -> AppResult<Delivery> {
    let delivery = engine.store.retry_delivery(id, engine.now()).await?.ok_or_else(|| AppError::not_found(format!("no delivery {id:?}")))?;
    tracing::info!(delivery = %id, "delivery queued again by hand");
    engine.runtime.wake_delivery.notify_one();
    Ok(delivery)
}
