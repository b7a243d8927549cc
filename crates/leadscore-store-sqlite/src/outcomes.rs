//! OutcomeStore: statuses and ratings with the scores as of their time.

use std::collections::BTreeMap;

use async_trait::async_trait;
use leadscore_core::ScoreCard;
use leadscore_store::{Millis, NewOutcome, OutcomeKind, OutcomeRecord, OutcomeStore, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::contacts::contact_exists;
use crate::{SqliteStore, db_err};

const COLUMNS: &str = "id, contact_id, kind, status, rating, note, author, at, scores, recorded_at";

type RawOutcome = (i64, String, String, Option<String>, Option<i64>, Option<String>, Option<String>, Millis, String, Millis);

fn raw(row: &Row<'_>) -> rusqlite::Result<RawOutcome> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?, row.get(8)?, row.get(9)?))
}

fn record((id, contact_id, kind, status, rating, note, author, at, scores, recorded_at): RawOutcome) -> StoreResult<OutcomeRecord> {
    let kind = match kind.as_str() {
        "status" => OutcomeKind::Status { status: status.unwrap_or_default() },
        _ => OutcomeKind::Feedback { rating: rating.unwrap_or(0).clamp(0, 5) as u8, note, author },
    };
    let scores = serde_json::from_str(&scores).map_err(|e| StoreError::database(format!("outcome {id}: scores are not JSON"), e))?;
    Ok(OutcomeRecord { id, contact_id, kind, at, scores, recorded_at })
}

fn insert(conn: &Connection, outcome: &NewOutcome, now: Millis) -> StoreResult<OutcomeRecord> {
    if !contact_exists(conn, &outcome.contact_id)? {
        return Err(StoreError::NotFound(format!("contact {}", outcome.contact_id)));
    }
    let scores = serde_json::to_string(&outcome.scores).map_err(db_err)?;
    let (kind, status, rating, note, author) = match &outcome.kind {
        OutcomeKind::Status { status } => ("status", Some(status.as_str()), None, None, None),
        OutcomeKind::Feedback { rating, note, author } => ("feedback", None, Some(i64::from(*rating)), note.as_deref(), author.as_deref()),
    };
    conn.prepare_cached(
        "INSERT INTO outcomes (contact_id, kind, status, rating, note, author, at, scores, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(db_err)?
    .execute(params![outcome.contact_id, kind, status, rating, note, author, outcome.at, scores, now])
    .map_err(db_err)?;
    let id = conn.last_insert_rowid();
    if let OutcomeKind::Status { status } = &outcome.kind {
        // The contact's status is its latest by time, whatever order they were recorded in.
        let latest: Option<String> = conn
            .prepare_cached("SELECT status FROM outcomes WHERE contact_id = ?1 AND kind = 'status' ORDER BY at DESC, id DESC LIMIT 1")
            .map_err(db_err)?
            .query_row([&outcome.contact_id], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        if latest.as_deref() == Some(status.as_str()) {
            conn.prepare_cached("UPDATE contacts SET status = ?2, updated_at = ?3 WHERE id = ?1")
                .map_err(db_err)?
                .execute(params![outcome.contact_id, status, now])
                .map_err(db_err)?;
        }
    }
    Ok(OutcomeRecord {
        id,
        contact_id: outcome.contact_id.clone(),
        kind: outcome.kind.clone(),
        at: outcome.at,
        scores: outcome.scores.clone(),
        recorded_at: now,
    })
}

fn set_cards(conn: &Connection, model: &str, cards: &[(i64, Option<ScoreCard>)]) -> StoreResult<()> {
    for (id, card) in cards {
        let Some(text) = conn
            .prepare_cached("SELECT scores FROM outcomes WHERE id = ?1")
            .map_err(db_err)?
            .query_row([id], |r| r.get::<_, String>(0))
            .optional()
            .map_err(db_err)?
        else {
            continue;
        };
        let mut scores: BTreeMap<String, ScoreCard> =
            serde_json::from_str(&text).map_err(|e| StoreError::database(format!("outcome {id}: scores are not JSON"), e))?;
        match card {
            Some(card) => scores.insert(model.to_string(), card.clone()),
            None => scores.remove(model),
        };
        let text = serde_json::to_string(&scores).map_err(db_err)?;
        conn.prepare_cached("UPDATE outcomes SET scores = ?2 WHERE id = ?1").map_err(db_err)?.execute(params![id, text]).map_err(db_err)?;
    }
    Ok(())
}

#[async_trait]
impl OutcomeStore for SqliteStore {
    async fn set_outcome_cards(&self, model: &str, cards: Vec<(i64, Option<ScoreCard>)>) -> StoreResult<()> {
        let model = model.to_string();
        self.write(move |conn| set_cards(conn, &model, &cards)).await
    }

    async fn record_outcome(&self, outcome: NewOutcome, now: Millis) -> StoreResult<OutcomeRecord> {
        self.write(move |conn| insert(conn, &outcome, now)).await
    }

    async fn contact_outcomes(&self, contact_id: &str) -> StoreResult<Vec<OutcomeRecord>> {
        let contact_id = contact_id.to_string();
        self.read(move |conn| {
            let rows: Vec<RawOutcome> = conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM outcomes WHERE contact_id = ?1 ORDER BY at, id"))
                .map_err(db_err)?
                .query_map([&contact_id], raw)
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            rows.into_iter().map(record).collect()
        })
        .await
    }

    async fn list_outcomes(&self, from: Millis, to: Millis, after_id: Option<i64>, limit: usize) -> StoreResult<Vec<OutcomeRecord>> {
        self.read(move |conn| {
            let rows: Vec<RawOutcome> = conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM outcomes WHERE id > ?1 AND at >= ?2 AND at < ?3 ORDER BY id LIMIT ?4"))
                .map_err(db_err)?
                .query_map(params![after_id.unwrap_or(0), from, to, limit as i64], raw)
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            rows.into_iter().map(record).collect()
        })
        .await
    }
}
