//! SettingsStore: teams, secrets, webhook subscriptions and leases.

use std::collections::BTreeMap;

use async_trait::async_trait;
use leadscore_store::runner::{Subscription, Team};
use leadscore_store::{Millis, SettingsStore, StoreResult};
use tokio_postgres::Row;

use crate::rows::corrupt;
use crate::{Db, PgError, PgResult, PostgresStore, RetryOn, write_tx};

const TEAM_COLUMNS: &str = "name, members, cursor, created_at, updated_at";

fn team(row: &Row) -> PgResult<Team> {
    let members: String = row.try_get(1)?;
    let cursor: i64 = row.try_get(2)?;
    Ok(Team {
        name: row.try_get(0)?,
        members: serde_json::from_str(&members).map_err(corrupt)?,
        cursor: u64::try_from(cursor).unwrap_or(0),
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
    })
}

/// Every team, locked until the transaction ends (in name order, so two evaluations
/// assigning at once queue instead of deadlocking): the cursor read is the latest, and
/// the one written back is not overwritten by another process.
pub(crate) async fn lock_teams(db: &dyn Db) -> PgResult<Vec<Team>> {
    db.rows(&format!("SELECT {TEAM_COLUMNS} FROM teams ORDER BY name FOR UPDATE"), &[]).await?.iter().map(team).collect()
}

pub(crate) async fn save_team_cursor(db: &dyn Db, team: &Team) -> PgResult<()> {
    let cursor = i64::try_from(team.cursor).unwrap_or(i64::MAX);
    db.exec("UPDATE teams SET cursor = $2, updated_at = $3 WHERE name = $1", &[&team.name, &cursor, &team.updated_at]).await?;
    Ok(())
}

const SUBSCRIPTION_COLUMNS: &str = "name, url, secret_ref, events, fields, debounce_ms, created_at, updated_at";

fn subscription(row: &Row) -> PgResult<Subscription> {
    let events: String = row.try_get(3)?;
    let fields: String = row.try_get(4)?;
    Ok(Subscription {
        name: row.try_get(0)?,
        url: row.try_get(1)?,
        secret_ref: row.try_get(2)?,
        events: serde_json::from_str(&events).map_err(corrupt)?,
        fields: serde_json::from_str::<BTreeMap<String, String>>(&fields).map_err(corrupt)?,
        debounce_ms: row.try_get(5)?,
        created_at: row.try_get(6)?,
        updated_at: row.try_get(7)?,
    })
}

pub(crate) async fn load_subscriptions(db: &dyn Db) -> PgResult<Vec<Subscription>> {
    db.rows(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhooks ORDER BY name"), &[]).await?.iter().map(subscription).collect()
}

async fn delete_named(store: &PostgresStore, table: &str, name: &str) -> StoreResult<bool> {
    let client = store.client().await?;
    Ok(client.exec(&format!("DELETE FROM {table} WHERE name = $1"), &[&name]).await? > 0)
}

#[async_trait]
impl SettingsStore for PostgresStore {
    async fn put_team(&self, name: &str, members: Vec<String>, now: Millis) -> StoreResult<(Team, bool)> {
        let members = serde_json::to_string(&members).map_err(corrupt)?;
        write_tx!(self, RetryOn::ContentionAndUniqueness, |tx| {
            // Insert, else update (two statements, so the caller learns which happened).
            // Changing the members keeps the cursor: the rotation goes on where it was.
            let inserted = tx
                .row_opt(
                    &format!(
                        "INSERT INTO teams (name, members, cursor, created_at, updated_at) VALUES ($1, $2, 0, $3, $3)
                         ON CONFLICT (name) DO NOTHING RETURNING {TEAM_COLUMNS}"
                    ),
                    &[&name, &members, &now],
                )
                .await?;
            if let Some(row) = inserted {
                return Ok((team(&row)?, true));
            }
            let updated = tx
                .row_opt(&format!("UPDATE teams SET members = $2, updated_at = $3 WHERE name = $1 RETURNING {TEAM_COLUMNS}"), &[&name, &members, &now])
                .await?;
            match updated {
                Some(row) => Ok((team(&row)?, false)),
                // Deleted by another process between the two statements: try again.
                None => Err(PgError::Retry),
            }
        })
    }

    async fn get_team(&self, name: &str) -> StoreResult<Option<Team>> {
        let client = self.client().await?;
        let row = client.row_opt(&format!("SELECT {TEAM_COLUMNS} FROM teams WHERE name = $1"), &[&name]).await?;
        Ok(row.as_ref().map(team).transpose()?)
    }

    async fn list_teams(&self) -> StoreResult<Vec<Team>> {
        let client = self.client().await?;
        let rows = client.rows(&format!("SELECT {TEAM_COLUMNS} FROM teams ORDER BY name"), &[]).await?;
        Ok(rows.iter().map(team).collect::<PgResult<Vec<_>>>()?)
    }

    async fn delete_team(&self, name: &str) -> StoreResult<bool> {
        delete_named(self, "teams", name).await
    }

    async fn put_secret(&self, name: &str, value: &str, now: Millis) -> StoreResult<bool> {
        write_tx!(self, RetryOn::ContentionAndUniqueness, |tx| {
            let inserted = tx
                .exec("INSERT INTO secrets (name, value, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING", &[&name, &value, &now])
                .await?;
            if inserted > 0 {
                return Ok(true);
            }
            match tx.exec("UPDATE secrets SET value = $2, updated_at = $3 WHERE name = $1", &[&name, &value, &now]).await? {
                0 => Err(PgError::Retry),
                _ => Ok(false),
            }
        })
    }

    async fn get_secret(&self, name: &str) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let row = client.row_opt("SELECT value FROM secrets WHERE name = $1", &[&name]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose().map_err(PgError::from)?)
    }

    async fn list_secrets(&self) -> StoreResult<Vec<(String, Millis, Millis)>> {
        let client = self.client().await?;
        let rows = client.rows("SELECT name, created_at, updated_at FROM secrets ORDER BY name", &[]).await?;
        Ok(rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect::<PgResult<Vec<_>>>()?)
    }

    async fn delete_secret(&self, name: &str) -> StoreResult<bool> {
        delete_named(self, "secrets", name).await
    }

    async fn put_subscription(&self, subscription: Subscription) -> StoreResult<(Subscription, bool)> {
        let events = serde_json::to_string(&subscription.events).map_err(corrupt)?;
        let fields = serde_json::to_string(&subscription.fields).map_err(corrupt)?;
        let s = &subscription;
        let (created_at, created) = write_tx!(self, RetryOn::ContentionAndUniqueness, |tx| {
            let inserted = tx
                .exec(
                    "INSERT INTO webhooks (name, url, secret_ref, events, fields, debounce_ms, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
                    &[&s.name, &s.url, &s.secret_ref, &events, &fields, &s.debounce_ms, &s.created_at, &s.updated_at],
                )
                .await?;
            if inserted > 0 {
                return Ok((s.created_at, true));
            }
            // A replacement keeps when the subscription was first created.
            let updated = tx
                .row_opt(
                    "UPDATE webhooks SET url = $2, secret_ref = $3, events = $4, fields = $5, debounce_ms = $6, updated_at = $7
                     WHERE name = $1 RETURNING created_at",
                    &[&s.name, &s.url, &s.secret_ref, &events, &fields, &s.debounce_ms, &s.updated_at],
                )
                .await?;
            match updated {
                Some(row) => Ok((row.try_get::<_, Millis>(0)?, false)),
                None => Err(PgError::Retry),
            }
        })?;
        Ok((Subscription { created_at, ..subscription }, created))
    }

    async fn list_subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        let client = self.client().await?;
        Ok(load_subscriptions(&*client).await?)
    }

    async fn delete_subscription(&self, name: &str) -> StoreResult<bool> {
        write_tx!(self, RetryOn::Contention, |tx| {
            for sql in ["DELETE FROM sync_pending WHERE subscription = $1", "DELETE FROM sync_sent WHERE subscription = $1"] {
                tx.exec(sql, &[&name]).await?;
            }
            Ok(tx.exec("DELETE FROM webhooks WHERE name = $1", &[&name]).await? > 0)
        })
    }

    async fn get_option(&self, name: &str) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let row = client.row_opt("SELECT value FROM options WHERE name = $1", &[&name]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose().map_err(PgError::from)?)
    }

    async fn put_option(&self, name: &str, value: &str, now: Millis) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .exec(
                "INSERT INTO options (name, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                &[&name, &value, &now],
            )
            .await?;
        Ok(())
    }

    async fn try_lease(&self, name: &str, owner: &str, duration: Millis, now: Millis) -> StoreResult<bool> {
        let client = self.client().await?;
        // One statement: a concurrent taker of the same lease waits for this row and then
        // evaluates the WHERE against what this one wrote.
        let taken = client
            .exec(
                "INSERT INTO leases (name, owner, until) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
                 WHERE leases.owner = excluded.owner OR leases.until < $4",
                &[&name, &owner, &(now + duration), &now],
            )
            .await?;
        Ok(taken > 0)
    }
}
