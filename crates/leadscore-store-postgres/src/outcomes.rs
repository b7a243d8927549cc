//! OutcomeStore: statuses and ratings with the scores as of their time.
//!
//! A status becomes the contact's `status` when it is the contact's latest by (at, id).
//! Recording takes the contact's row lock (the lock ingest and evaluation take) before it
//! reads the latest status, so two processes recording for one contact at once take turns:
//! the second sees the first's outcome, and the contact ends with the status that is
//! latest of both, whatever order they commit in.

use std::collections::BTreeMap;

use async_trait::async_trait;
use leadscore_core::ScoreCard;
use leadscore_store::{Millis, NewOutcome, OutcomeKind, OutcomeRecord, OutcomeStore, StoreError, StoreResult};
use tokio_postgres::Row;

use crate::contacts::lock_contact;
use crate::rows::corrupt;
use crate::{Db, PgResult, PostgresStore, RetryOn, write_tx};

const COLUMNS: &str = "id, contact_id, kind, status, rating, note, author, at, scores, recorded_at";

fn record(row: &Row) -> PgResult<OutcomeRecord> {
    let id: i64 = row.try_get(0)?;
    let kind: String = row.try_get(2)?;
    let kind = match kind.as_str() {
        "status" => OutcomeKind::Status { status: row.try_get::<_, Option<String>>(3)?.unwrap_or_default() },
        _ => OutcomeKind::Feedback { rating: row.try_get::<_, Option<i64>>(4)?.unwrap_or(0).clamp(0, 5) as u8, note: row.try_get(5)?, author: row.try_get(6)? },
    };
    let scores: String = row.try_get(8)?;
    let scores = serde_json::from_str(&scores).map_err(|e| crate::rows::corrupt_in(format!("outcome {id}: scores are not JSON"), e))?;
    Ok(OutcomeRecord { id, contact_id: row.try_get(1)?, kind, at: row.try_get(7)?, scores, recorded_at: row.try_get(9)? })
}

/// Records the outcome inside the caller's write transaction; returns its id.
async fn insert(db: &dyn Db, outcome: &NewOutcome, scores: &str, now: Millis) -> PgResult<i64> {
    // The contact's lock before its latest status is read: a concurrent recording for it
    // commits first (and its outcome is seen here), or waits for this one.
    if !lock_contact(db, &outcome.contact_id).await? {
        return Err(StoreError::NotFound(format!("contact {}", outcome.contact_id)).into());
    }
    let (kind, status, rating, note, author) = match &outcome.kind {
        OutcomeKind::Status { status } => ("status", Some(status.as_str()), None, None, None),
        OutcomeKind::Feedback { rating, note, author } => ("feedback", None, Some(i64::from(*rating)), note.as_deref(), author.as_deref()),
    };
    let row = db
        .row_opt(
            "INSERT INTO outcomes (contact_id, kind, status, rating, note, author, at, scores, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &[&outcome.contact_id, &kind, &status, &rating, &note, &author, &outcome.at, &scores, &now],
        )
        .await?
        .ok_or_else(|| crate::rows::corrupt_msg("INSERT … RETURNING gave no row"))?;
    let id: i64 = row.try_get(0)?;
    if let OutcomeKind::Status { status } = &outcome.kind {
        // The contact's status is its latest by time, whatever order they were recorded in.
        let latest: Option<String> = match db
            .row_opt("SELECT status FROM outcomes WHERE contact_id = $1 AND kind = 'status' ORDER BY at DESC, id DESC LIMIT 1", &[&outcome.contact_id])
            .await?
        {
            Some(row) => row.try_get(0)?,
            None => None,
        };
        if latest.as_deref() == Some(status.as_str()) {
            db.exec("UPDATE contacts SET status = $2, updated_at = $3 WHERE id = $1", &[&outcome.contact_id, status, &now]).await?;
        }
    }
    Ok(id)
}

async fn set_cards(db: &dyn Db, model: &str, cards: &[(i64, Option<ScoreCard>)]) -> PgResult<()> {
    let ids: Vec<i64> = cards.iter().map(|(id, _)| *id).collect();
    let rows = db.rows("SELECT id, scores FROM outcomes WHERE id = ANY($1) ORDER BY id FOR UPDATE", &[&ids]).await?;
    let mut stored: BTreeMap<i64, String> = BTreeMap::new();
    for row in &rows {
        stored.insert(row.try_get(0)?, row.try_get(1)?);
    }
    let (mut updated_ids, mut texts) = (Vec::new(), Vec::new());
    for (id, card) in cards {
        let Some(text) = stored.get(id) else { continue };
        let mut scores: BTreeMap<String, ScoreCard> =
            serde_json::from_str(text).map_err(|e| crate::rows::corrupt_in(format!("outcome {id}: scores are not JSON"), e))?;
        match card {
            Some(card) => scores.insert(model.to_string(), card.clone()),
            None => scores.remove(model),
        };
        updated_ids.push(*id);
        texts.push(serde_json::to_string(&scores).map_err(corrupt)?);
    }
    db.exec("UPDATE outcomes o SET scores = u.scores FROM unnest($1::BIGINT[], $2::TEXT[]) AS u(id, scores) WHERE o.id = u.id", &[&updated_ids, &texts])
        .await?;
    Ok(())
}

#[async_trait]
impl OutcomeStore for PostgresStore {
    async fn set_outcome_cards(&self, model: &str, cards: Vec<(i64, Option<ScoreCard>)>) -> StoreResult<()> {
        write_tx!(self, RetryOn::Contention, |tx| set_cards(&tx, model, &cards).await)
    }

    async fn record_outcome(&self, outcome: NewOutcome, now: Millis) -> StoreResult<OutcomeRecord> {
        let scores = serde_json::to_string(&outcome.scores).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let id = write_tx!(self, RetryOn::Contention, |tx| insert(&tx, &outcome, &scores, now).await)?;
        Ok(OutcomeRecord { id, contact_id: outcome.contact_id, kind: outcome.kind, at: outcome.at, scores: outcome.scores, recorded_at: now })
    }

    async fn contact_outcomes(&self, contact_id: &str) -> StoreResult<Vec<OutcomeRecord>> {
        let client = self.client().await?;
        let rows = client.rows(&format!("SELECT {COLUMNS} FROM outcomes WHERE contact_id = $1 ORDER BY at, id"), &[&contact_id]).await?;
        Ok(rows.iter().map(record).collect::<PgResult<Vec<_>>>()?)
    }

    async fn list_outcomes(&self, from: Millis, to: Millis, after_id: Option<i64>, limit: usize) -> StoreResult<Vec<OutcomeRecord>> {
        let after = after_id.unwrap_or(0);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .rows(&format!("SELECT {COLUMNS} FROM outcomes WHERE id > $1 AND at >= $2 AND at < $3 ORDER BY id LIMIT $4"), &[&after, &from, &to, &limit])
            .await?;
        Ok(rows.iter().map(record).collect::<PgResult<Vec<_>>>()?)
    }
}
