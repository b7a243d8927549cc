//! The automation queue's writing side: every contact write (ingest, upsert, patch,
//! merge, bulk, decay refresh) queues the contact here when anything listens. Below the
//! modules that write contacts, so none of them depends on the evaluator in `runs`.

use std::collections::BTreeMap;

use leadscore_core::ScoreCard;
use leadscore_store::runner::QueuedEvent;
use leadscore_store::scoring::ScoringEvent;
use leadscore_store::{Millis, ScoreRow};

use crate::rows::corrupt;
use crate::{Db, PgResult};

/// Whether anything listens to contact changes: an enabled automation or a subscription.
/// Writes skip the queue otherwise, so ingest without automations pays nothing.
pub(crate) async fn automations_active(db: &dyn Db) -> PgResult<bool> {
    let row = db
        .row_opt("SELECT EXISTS (SELECT 1 FROM automations WHERE enabled) OR EXISTS (SELECT 1 FROM webhooks)", &[])
        .await?
        .ok_or_else(|| crate::rows::corrupt_msg("EXISTS returned no row"))?;
    Ok(row.try_get(0)?)
}

pub(crate) fn cards_of(scores: &BTreeMap<String, ScoreRow>) -> BTreeMap<String, ScoreCard> {
    scores.iter().map(|(model, row)| (model.clone(), row.card.clone())).collect()
}

/// Queue entries waiting to be written, as column arrays: a write that changed many
/// contacts (an ingest batch, a bulk update, a decay refresh) queues them in one statement.
#[derive(Default)]
pub(crate) struct QueueRows {
    contact_ids: Vec<String>,
    events: Vec<Option<String>>,
    befores: Vec<Option<String>>,
}

impl QueueRows {
    /// One entry per new activity event (the first carries the cards before the change),
    /// or one entry without an event for other changes.
    pub(crate) fn push(&mut self, contact_id: &str, before: &BTreeMap<String, ScoreCard>, events: &[ScoringEvent]) -> PgResult<()> {
        let before_text = serde_json::to_string(before).map_err(corrupt)?;
        if events.is_empty() {
            self.contact_ids.push(contact_id.to_string());
            self.events.push(None);
            self.befores.push(Some(before_text));
            return Ok(());
        }
        for (index, event) in events.iter().enumerate() {
            let queued = QueuedEvent { timestamp: event.timestamp, message_id: event.message_id.clone(), name: event.name.clone() };
            self.contact_ids.push(contact_id.to_string());
            self.events.push(Some(serde_json::to_string(&queued).map_err(corrupt)?));
            self.befores.push((index == 0).then(|| before_text.clone()));
        }
        Ok(())
    }

    /// Writes the entries; `seq` follows the order they were pushed in.
    pub(crate) async fn insert(&self, db: &dyn Db, now: Millis) -> PgResult<()> {
        if self.contact_ids.is_empty() {
            return Ok(());
        }
        db.exec(
            "INSERT INTO automation_queue (contact_id, event, before, enqueued_at)
             SELECT u.contact_id, u.event, u.before, $4
             FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(contact_id, event, before, n) ORDER BY u.n",
            &[&self.contact_ids, &self.events, &self.befores, &now],
        )
        .await?;
        Ok(())
    }
}

/// Queues one contact (see [`QueueRows::push`]).
pub(crate) async fn enqueue(db: &dyn Db, contact_id: &str, before: &BTreeMap<String, ScoreCard>, events: &[ScoringEvent], now: Millis) -> PgResult<()> {
    let mut rows = QueueRows::default();
    rows.push(contact_id, before, events)?;
    rows.insert(db, now).await
}
