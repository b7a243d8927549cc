//! OutboxStore: deliveries claimed with a lease, attempts recorded, dead letters retried.
//! Delivery workers of several processes claim from one table: a claim locks the rows it
//! takes and skips rows another claim holds, so no delivery is handed out twice.

use async_trait::async_trait;
use leadscore_store::runner::{Channel, Delivery, DeliveryAttempt, DeliveryQuery, DeliveryState};
use leadscore_store::{Millis, OutboxStore, StoreError, StoreResult};
use tokio_postgres::Row;

use crate::contacts::SqlBuilder;
use crate::{Db, PgError, PgResult, PostgresStore, RetryOn, write_tx};

const COLUMNS: &str = "id, channel, target, secret_ref, subject, body, event_type, automation, run_id, contact_id, state, attempts,
    next_attempt_at, last_status, last_error, created_at, updated_at, delivered_at";

fn delivery_from_row(row: &Row) -> PgResult<Delivery> {
    let channel: String = row.try_get(1)?;
    let target: String = row.try_get(2)?;
    let body: String = row.try_get(5)?;
    let channel = if channel == "email" {
        Channel::Email { to: target, subject: row.try_get::<_, Option<String>>(4)?.unwrap_or_default(), body }
    } else {
        Channel::Webhook { url: target, secret_ref: row.try_get(3)?, body }
    };
    let state: String = row.try_get(10)?;
    let attempts: i64 = row.try_get(11)?;
    let last_status: Option<i64> = row.try_get(13)?;
    Ok(Delivery {
        id: row.try_get(0)?,
        channel,
        event_type: row.try_get(6)?,
        automation: row.try_get(7)?,
        run_id: row.try_get(8)?,
        contact_id: row.try_get(9)?,
        state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Failed),
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        next_attempt_at: row.try_get(12)?,
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get(14)?,
        created_at: row.try_get(15)?,
        updated_at: row.try_get(16)?,
        delivered_at: row.try_get(17)?,
    })
}

fn deliveries(rows: &[Row]) -> StoreResult<Vec<Delivery>> {
    Ok(rows.iter().map(delivery_from_row).collect::<PgResult<Vec<_>>>()?)
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn claim_deliveries(&self, owner: &str, limit: usize, lease: Millis, now: Millis) -> StoreResult<Vec<Delivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        // SKIP LOCKED: rows another claim is taking are passed over rather than waited for.
        // A row another claim took and committed meanwhile is re-checked against the
        // WHERE when locked (READ COMMITTED), and its fresh lease excludes it.
        let rows = client
            .rows(
                &format!(
                    "UPDATE deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN (
                         SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $3
                           AND (lease_until IS NULL OR lease_until < $3)
                         ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)
                     RETURNING {COLUMNS}"
                ),
                &[&owner, &(now + lease), &now, &limit],
            )
            .await?;
        let mut claimed = deliveries(&rows)?;
        // RETURNING has no order; hand them out oldest due first.
        claimed.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        Ok(claimed)
    }

    async fn record_attempt(&self, id: &str, owner: &str, attempt: DeliveryAttempt, retry_at: Option<Millis>) -> StoreResult<bool> {
        let attempt = &attempt;
        write_tx!(self, RetryOn::Contention, |tx| {
            let held =
                tx.row_opt("SELECT attempts FROM deliveries WHERE id = $1 AND lease_owner = $2 AND state = 'pending' FOR UPDATE", &[&id, &owner]).await?;
            let Some(held) = held else { return Ok(false) };
            let number = held.try_get::<_, i64>(0)? + 1;
            let status = attempt.status.map(i64::from);
            let duration = i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX);
            tx.exec(
                "INSERT INTO delivery_attempts (delivery_id, attempt, at, success, status, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&id, &number, &attempt.at, &attempt.success, &status, &attempt.error, &duration],
            )
            .await?;
            let (state, next, delivered_at) = match (attempt.success, retry_at) {
                (true, _) => ("delivered", None, Some(attempt.at)),
                (false, Some(at)) => ("pending", Some(at), None),
                (false, None) => ("failed", None, None),
            };
            tx.exec(
                "UPDATE deliveries SET state = $2, attempts = $3, next_attempt_at = $4, last_status = $5, last_error = $6,
                   delivered_at = COALESCE($7, delivered_at), updated_at = $8, lease_owner = NULL, lease_until = NULL WHERE id = $1",
                &[&id, &state, &number, &next, &status, &attempt.error, &delivered_at, &attempt.at],
            )
            .await?;
            Ok(true)
        })
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<(Delivery, Vec<DeliveryAttempt>)>> {
        let client = self.client().await?;
        let Some(row) = client.row_opt(&format!("SELECT {COLUMNS} FROM deliveries WHERE id = $1"), &[&id]).await? else {
            return Ok(None);
        };
        let delivery = delivery_from_row(&row)?;
        let rows = client.rows("SELECT at, success, status, error, duration_ms FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt", &[&id]).await?;
        let attempts = rows
            .iter()
            .map(|r| {
                let status: Option<i64> = r.try_get(2)?;
                let duration: i64 = r.try_get(4)?;
                Ok(DeliveryAttempt {
                    at: r.try_get(0)?,
                    success: r.try_get(1)?,
                    status: status.and_then(|s| u16::try_from(s).ok()),
                    error: r.try_get(3)?,
                    duration_ms: u64::try_from(duration).unwrap_or(0),
                })
            })
            .collect::<PgResult<Vec<_>>>()?;
        Ok(Some((delivery, attempts)))
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let state = query.state.map(DeliveryState::as_str);
        // Only the filters asked for are in the SQL, so each combination gets a plan that
        // uses its index.
        let mut sql = SqlBuilder::start(format!("SELECT {COLUMNS} FROM deliveries WHERE TRUE"));
        if let Some(state) = &state {
            sql.push(" AND state = ?", state);
        }
        if let Some(automation) = &query.automation {
            sql.push(" AND automation = ?", automation);
        }
        if let Some((at, id)) = &query.before {
            sql.push(" AND (created_at, id) < (?", at);
            sql.push(", ?)", id);
        }
        sql.push(" ORDER BY created_at DESC, id DESC LIMIT ?", &limit);
        let client = self.client().await?;
        deliveries(&client.rows(&sql.sql, &sql.values).await?)
    }

    async fn retry_delivery(&self, id: &str, now: Millis) -> StoreResult<Option<Delivery>> {
        let client = self.client().await?;
        let row = client
            .row_opt(
                &format!(
                    "UPDATE deliveries SET state = 'pending', next_attempt_at = $2, updated_at = $2, lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 RETURNING {COLUMNS}"
                ),
                &[&id, &now],
            )
            .await?;
        Ok(row.as_ref().map(delivery_from_row).transpose()?)
    }

    async fn count_deliveries(&self) -> StoreResult<Vec<(DeliveryState, u64)>> {
        let client = self.client().await?;
        let rows = client.rows("SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state", &[]).await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(0).map_err(PgError::from)?;
                let n: i64 = row.try_get(1).map_err(PgError::from)?;
                DeliveryState::parse(&state)
                    .map(|s| (s, u64::try_from(n).unwrap_or(0)))
                    .ok_or_else(|| StoreError::Backend(format!("unknown delivery state {state:?}")))
            })
            .collect()
    }
}
