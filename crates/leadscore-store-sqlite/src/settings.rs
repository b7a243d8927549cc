//! SettingsStore: teams, secrets, webhook subscriptions and leases.

use std::collections::BTreeMap;

use async_trait::async_trait;
use leadscore_store::runner::{Subscription, Team};
use leadscore_store::{Millis, SettingsStore, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{SqliteStore, db_err};

type TeamRow = (String, String, i64, Millis, Millis);

fn team((name, members, cursor, created_at, updated_at): TeamRow) -> StoreResult<Team> {
    Ok(Team { name, members: serde_json::from_str(&members).map_err(db_err)?, cursor: cursor.max(0) as u64, created_at, updated_at })
}

pub(crate) fn load_teams(conn: &Connection) -> StoreResult<Vec<Team>> {
    let mut stmt = conn.prepare_cached("SELECT name, members, cursor, created_at, updated_at FROM teams ORDER BY name").map_err(db_err)?;
    let rows: Vec<TeamRow> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    rows.into_iter().map(team).collect()
}

pub(crate) fn save_team_cursor(conn: &Connection, team: &Team) -> StoreResult<()> {
    conn.prepare_cached("UPDATE teams SET cursor = ?2, updated_at = ?3 WHERE name = ?1")
        .map_err(db_err)?
        .execute(params![team.name, team.cursor as i64, team.updated_at])
        .map_err(db_err)?;
    Ok(())
}

type SubscriptionRow = (String, String, Option<String>, String, String, Millis, Millis, Millis);

fn subscription((name, url, secret_ref, events, fields, debounce_ms, created_at, updated_at): SubscriptionRow) -> StoreResult<Subscription> {
    Ok(Subscription {
        name,
        url,
        secret_ref,
        events: serde_json::from_str(&events).map_err(db_err)?,
        fields: serde_json::from_str::<BTreeMap<String, String>>(&fields).map_err(db_err)?,
        debounce_ms,
        created_at,
        updated_at,
    })
}

pub(crate) fn load_subscriptions(conn: &Connection) -> StoreResult<Vec<Subscription>> {
    let mut stmt =
        conn.prepare_cached("SELECT name, url, secret_ref, events, fields, debounce_ms, created_at, updated_at FROM webhooks ORDER BY name").map_err(db_err)?;
    let rows: Vec<SubscriptionRow> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)))
        .map_err(db_err)?
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    rows.into_iter().map(subscription).collect()
}

fn created_at(conn: &Connection, table: &str, name: &str) -> StoreResult<Option<Millis>> {
    conn.prepare_cached(&format!("SELECT created_at FROM {table} WHERE name = ?1")).map_err(db_err)?.query_row([name], |r| r.get(0)).optional().map_err(db_err)
}

fn delete_named(conn: &Connection, table: &str, name: &str) -> StoreResult<bool> {
    Ok(conn.prepare_cached(&format!("DELETE FROM {table} WHERE name = ?1")).map_err(db_err)?.execute([name]).map_err(db_err)? > 0)
}

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn put_team(&self, name: &str, members: Vec<String>, now: Millis) -> StoreResult<(Team, bool)> {
        let name = name.to_string();
        self.write(move |conn| {
            let existing = created_at(conn, "teams", &name)?;
            let members_text = serde_json::to_string(&members).map_err(db_err)?;
            // Changing the members keeps the cursor: the rotation goes on where it was.
            conn.prepare_cached(
                "INSERT INTO teams (name, members, cursor, created_at, updated_at) VALUES (?1, ?2, 0, ?3, ?3)
                 ON CONFLICT (name) DO UPDATE SET members = excluded.members, updated_at = excluded.updated_at",
            )
            .map_err(db_err)?
            .execute(params![name, members_text, now])
            .map_err(db_err)?;
            let stored = load_teams(conn)?.into_iter().find(|t| t.name == name).ok_or_else(|| db_err("the team vanished"))?;
            Ok((stored, existing.is_none()))
        })
        .await
    }

    async fn get_team(&self, name: &str) -> StoreResult<Option<Team>> {
        let name = name.to_string();
        self.read(move |conn| Ok(load_teams(conn)?.into_iter().find(|t| t.name == name))).await
    }

    async fn list_teams(&self) -> StoreResult<Vec<Team>> {
        self.read(load_teams).await
    }

    async fn delete_team(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_string();
        self.write(move |conn| delete_named(conn, "teams", &name)).await
    }

    async fn put_secret(&self, name: &str, value: &str, now: Millis) -> StoreResult<bool> {
        let (name, value) = (name.to_string(), value.to_string());
        self.write(move |conn| {
            let existing = created_at(conn, "secrets", &name)?;
            conn.prepare_cached(
                "INSERT INTO secrets (name, value, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .map_err(db_err)?
            .execute(params![name, value, now])
            .map_err(db_err)?;
            Ok(existing.is_none())
        })
        .await
    }

    async fn get_secret(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT value FROM secrets WHERE name = ?1").map_err(db_err)?.query_row([&name], |r| r.get(0)).optional().map_err(db_err)
        })
        .await
    }

    async fn list_secrets(&self) -> StoreResult<Vec<(String, Millis, Millis)>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT name, created_at, updated_at FROM secrets ORDER BY name")
                .map_err(db_err)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)
        })
        .await
    }

    async fn delete_secret(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_string();
        self.write(move |conn| delete_named(conn, "secrets", &name)).await
    }

    async fn put_subscription(&self, subscription: Subscription) -> StoreResult<(Subscription, bool)> {
        self.write(move |conn| {
            let existing = created_at(conn, "webhooks", &subscription.name)?;
            let created = existing.unwrap_or(subscription.created_at);
            conn.prepare_cached(
                "INSERT OR REPLACE INTO webhooks (name, url, secret_ref, events, fields, debounce_ms, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(db_err)?
            .execute(params![
                subscription.name,
                subscription.url,
                subscription.secret_ref,
                serde_json::to_string(&subscription.events).map_err(db_err)?,
                serde_json::to_string(&subscription.fields).map_err(db_err)?,
                subscription.debounce_ms,
                created,
                subscription.updated_at
            ])
            .map_err(db_err)?;
            Ok((Subscription { created_at: created, ..subscription }, existing.is_none()))
        })
        .await
    }

    async fn list_subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        self.read(load_subscriptions).await
    }

    async fn delete_subscription(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_string();
        self.write(move |conn| {
            for sql in ["DELETE FROM sync_pending WHERE subscription = ?1", "DELETE FROM sync_sent WHERE subscription = ?1"] {
                conn.prepare_cached(sql).map_err(db_err)?.execute([&name]).map_err(db_err)?;
            }
            delete_named(conn, "webhooks", &name)
        })
        .await
    }

    async fn get_option(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT value FROM options WHERE name = ?1").map_err(db_err)?.query_row([&name], |r| r.get(0)).optional().map_err(db_err)
        })
        .await
    }

    async fn put_option(&self, name: &str, value: &str, now: Millis) -> StoreResult<()> {
        let (name, value) = (name.to_string(), value.to_string());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO options (name, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .map_err(db_err)?
            .execute(params![name, value, now])
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn try_lease(&self, name: &str, owner: &str, duration: Millis, now: Millis) -> StoreResult<bool> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.write(move |conn| {
            let taken = conn
                .prepare_cached(
                    "INSERT INTO leases (name, owner, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
                     WHERE leases.owner = excluded.owner OR leases.until < ?4",
                )
                .map_err(db_err)?
                .execute(params![name, owner, now + duration, now])
                .map_err(db_err)?;
            Ok(taken > 0)
        })
        .await
    }
}
