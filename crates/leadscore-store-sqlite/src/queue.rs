//! The automation queue's writing side: every contact write (ingest, upsert, patch,
//! merge, bulk, decay refresh) queues the contact here when anything listens. Below the
//! modules that write contacts, so none of them depends on the evaluator in `runs`.

use std::collections::BTreeMap;

use leadscore_core::ScoreCard;
use leadscore_store::runner::QueuedEvent;
use leadscore_store::scoring::ScoringEvent;
use leadscore_store::{Millis, ScoreRow, StoreResult};
use rusqlite::{Connection, params};

use crate::db_err;

/// Whether anything listens to contact changes: an enabled automation or a subscription.
/// Writes skip the queue otherwise, so ingest without automations pays nothing.
pub(crate) fn automations_active(conn: &Connection) -> StoreResult<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM automations WHERE enabled = 1) OR EXISTS (SELECT 1 FROM webhooks)")
        .map_err(db_err)?
        .query_row([], |r| r.get(0))
        .map_err(db_err)
}

pub(crate) fn cards_of(scores: &BTreeMap<String, ScoreRow>) -> BTreeMap<String, ScoreCard> {
    scores.iter().map(|(model, row)| (model.clone(), row.card.clone())).collect()
}

/// Queues a contact for evaluation: one entry per new activity event (the first carries
/// the cards before the change), or one entry without an event for other changes.
pub(crate) fn enqueue(conn: &Connection, contact_id: &str, before: &BTreeMap<String, ScoreCard>, events: &[ScoringEvent], now: Millis) -> StoreResult<()> {
    let before_text = serde_json::to_string(before).map_err(db_err)?;
    let mut stmt = conn.prepare_cached("INSERT INTO automation_queue (contact_id, event, before, enqueued_at) VALUES (?1, ?2, ?3, ?4)").map_err(db_err)?;
    if events.is_empty() {
        stmt.execute(params![contact_id, Option::<String>::None, before_text, now]).map_err(db_err)?;
        return Ok(());
    }
    for (index, event) in events.iter().enumerate() {
        let queued = QueuedEvent { timestamp: event.timestamp, message_id: event.message_id.clone(), name: event.name.clone() };
        let text = serde_json::to_string(&queued).map_err(db_err)?;
        let before = (index == 0).then_some(before_text.as_str());
        stmt.execute(params![contact_id, text, before, now]).map_err(db_err)?;
    }
    Ok(())
}
