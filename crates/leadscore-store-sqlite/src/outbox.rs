//! OutboxStore: deliveries claimed with a lease, attempts recorded, dead letters retried.

use async_trait::async_trait;
use leadscore_store::runner::{Channel, Delivery, DeliveryAttempt, DeliveryQuery, DeliveryState};
use leadscore_store::{Millis, OutboxStore, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{SqliteStore, db_err};

const COLUMNS: &str = "id, channel, target, secret_ref, subject, body, event_type, automation, run_id, contact_id, state, attempts,
    next_attempt_at, last_status, last_error, created_at, updated_at, delivered_at";

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let channel: String = row.get(1)?;
    let target: String = row.get(2)?;
    let body: String = row.get(5)?;
    let channel = if channel == "email" {
        Channel::Email { to: target, subject: row.get::<_, Option<String>>(4)?.unwrap_or_default(), body }
    } else {
        Channel::Webhook { url: target, secret_ref: row.get(3)?, body }
    };
    let state: String = row.get(10)?;
    Ok(Delivery {
        id: row.get(0)?,
        channel,
        event_type: row.get(6)?,
        automation: row.get(7)?,
        run_id: row.get(8)?,
        contact_id: row.get(9)?,
        state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Failed),
        attempts: row.get::<_, i64>(11)?.max(0) as u32,
        next_attempt_at: row.get(12)?,
        last_status: row.get::<_, Option<i64>>(13)?.map(|s| s as u16),
        last_error: row.get(14)?,
        created_at: row.get(15)?,
        updated_at: row.get(16)?,
        delivered_at: row.get(17)?,
    })
}

fn load_delivery(conn: &Connection, id: &str) -> StoreResult<Option<Delivery>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1"))
        .map_err(db_err)?
        .query_row([id], delivery_from_row)
        .optional()
        .map_err(db_err)
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_deliveries(&self, owner: &str, limit: usize, lease: Millis, now: Millis) -> StoreResult<Vec<Delivery>> {
        let owner = owner.to_string();
        self.write(move |conn| {
            let ids: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?1
                       AND (lease_until IS NULL OR lease_until < ?1) ORDER BY next_attempt_at, id LIMIT ?2",
                )
                .map_err(db_err)?
                .query_map(params![now, limit as i64], |r| r.get(0))
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                conn.prepare_cached("UPDATE deliveries SET lease_owner = ?2, lease_until = ?3 WHERE id = ?1")
                    .map_err(db_err)?
                    .execute(params![id, owner, now + lease])
                    .map_err(db_err)?;
                if let Some(delivery) = load_delivery(conn, &id)? {
                    claimed.push(delivery);
                }
            }
            Ok(claimed)
        })
        .await
    }

    async fn record_attempt(&self, id: &str, owner: &str, attempt: DeliveryAttempt, retry_at: Option<Millis>) -> StoreResult<bool> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.write(move |conn| {
            let held: Option<i64> = conn
                .prepare_cached("SELECT attempts FROM deliveries WHERE id = ?1 AND lease_owner = ?2 AND state = 'pending'")
                .map_err(db_err)?
                .query_row(params![id, owner], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            let Some(attempts) = held else { return Ok(false) };
            let number = attempts + 1;
            conn.prepare_cached(
                "INSERT INTO delivery_attempts (delivery_id, attempt, at, success, status, error, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(db_err)?
            .execute(params![id, number, attempt.at, attempt.success, attempt.status.map(i64::from), attempt.error, attempt.duration_ms as i64])
            .map_err(db_err)?;
            let (state, next, delivered_at) = match (attempt.success, retry_at) {
                (true, _) => ("delivered", None, Some(attempt.at)),
                (false, Some(at)) => ("pending", Some(at), None),
                (false, None) => ("failed", None, None),
            };
            conn.prepare_cached(
                "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, last_status = ?5, last_error = ?6,
                   delivered_at = COALESCE(?7, delivered_at), updated_at = ?8, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
            )
            .map_err(db_err)?
            .execute(params![id, state, number, next, attempt.status.map(i64::from), attempt.error, delivered_at, attempt.at])
            .map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<(Delivery, Vec<DeliveryAttempt>)>> {
        let id = id.to_string();
        self.read(move |conn| {
            let Some(delivery) = load_delivery(conn, &id)? else { return Ok(None) };
            let attempts = conn
                .prepare_cached("SELECT at, success, status, error, duration_ms FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY attempt")
                .map_err(db_err)?
                .query_map([&id], |r| {
                    Ok(DeliveryAttempt {
                        at: r.get(0)?,
                        success: r.get(1)?,
                        status: r.get::<_, Option<i64>>(2)?.map(|s| s as u16),
                        error: r.get(3)?,
                        duration_ms: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            Ok(Some((delivery, attempts)))
        })
        .await
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        let query = query.clone();
        self.read(move |conn| {
            let (before_at, before_id) = query.before.clone().unwrap_or((Millis::MAX, "\u{10FFFF}".to_string()));
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deliveries WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR automation = ?2)
                   AND (created_at, id) < (?3, ?4) ORDER BY created_at DESC, id DESC LIMIT ?5"
            ))
            .map_err(db_err)?
            .query_map(params![query.state.map(DeliveryState::as_str), query.automation, before_at, before_id, query.limit as i64], delivery_from_row)
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)
        })
        .await
    }

    async fn retry_delivery(&self, id: &str, now: Millis) -> StoreResult<Option<Delivery>> {
        let id = id.to_string();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, updated_at = ?2, lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1",
                )
                .map_err(db_err)?
                .execute(params![id, now])
                .map_err(db_err)?;
            if changed == 0 {
                return Ok(None);
            }
            load_delivery(conn, &id)
        })
        .await
    }

    async fn count_deliveries(&self) -> StoreResult<Vec<(DeliveryState, u64)>> {
        self.read(|conn| {
            let rows: Vec<(String, i64)> = conn
                .prepare_cached("SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state")
                .map_err(db_err)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            rows.into_iter()
                .map(|(state, n)| {
                    DeliveryState::parse(&state).map(|s| (s, n as u64)).ok_or_else(|| StoreError::Backend(format!("unknown delivery state {state:?}")))
                })
                .collect()
        })
        .await
    }
}
