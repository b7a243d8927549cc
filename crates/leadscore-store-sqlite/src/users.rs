//! UserStore (0008: users, sessions).

use async_trait::async_trait;
use leadscore_store::{Millis, Role, SessionRecord, StoreError, StoreResult, UserRecord, UserStore};
use rusqlite::{OptionalExtension, Row, params};

use crate::{SqliteStore, db_err};

const USER_COLUMNS: &str = "id, email, name, role, password_hash, disabled, created_at, updated_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    let role: String = row.get(3)?;
    Ok(UserRecord {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        // A role this version does not know reads as the least one.
        role: Role::parse(&role).unwrap_or(Role::Sales),
        password_hash: row.get(4)?,
        disabled: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

fn conflict_on_email(err: rusqlite::Error) -> StoreError {
    match err {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Conflict("a user with this e-mail exists".into())
        }
        other => db_err(other),
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn insert_user(&self, user: UserRecord) -> StoreResult<()> {
        self.write(move |conn| {
            conn.execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![user.id, user.email, user.name, user.role.as_str(), user.password_hash, user.disabled, user.created_at, user.updated_at],
            )
            .map_err(conflict_on_email)?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))
                .map_err(db_err)?
                .query_row([&id], user_from_row)
                .optional()
                .map_err(db_err)
        })
        .await
    }

    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let email = email.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"))
                .map_err(db_err)?
                .query_row([&email], user_from_row)
                .optional()
                .map_err(db_err)
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY email")).map_err(db_err)?;
            let rows = stmt.query_map([], user_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn update_user(&self, user: UserRecord) -> StoreResult<bool> {
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE users SET email = ?2, name = ?3, role = ?4, password_hash = ?5, disabled = ?6, updated_at = ?7 WHERE id = ?1",
                    params![user.id, user.email, user.name, user.role.as_str(), user.password_hash, user.disabled, user.updated_at],
                )
                .map_err(conflict_on_email)?;
            Ok(n > 0)
        })
        .await
    }

    async fn count_users(&self) -> StoreResult<u64> {
        self.read(|conn| conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(db_err)).await
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE user_id = ?1", [&id]).map_err(db_err)?;
            Ok(conn.execute("DELETE FROM users WHERE id = ?1", [&id]).map_err(db_err)? > 0)
        })
        .await
    }

    async fn insert_session(&self, session: SessionRecord) -> StoreResult<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO sessions (id_hash, user_id, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4)",
                params![session.id_hash, session.user_id, session.created_at, session.last_seen_at],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let id_hash = id_hash.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT id_hash, user_id, created_at, last_seen_at FROM sessions WHERE id_hash = ?1")
                .map_err(db_err)?
                .query_row([&id_hash], |row| {
                    Ok(SessionRecord { id_hash: row.get(0)?, user_id: row.get(1)?, created_at: row.get(2)?, last_seen_at: row.get(3)? })
                })
                .optional()
                .map_err(db_err)
        })
        .await
    }

    async fn touch_session(&self, id_hash: &str, at: Millis) -> StoreResult<()> {
        let id_hash = id_hash.to_string();
        self.write(move |conn| {
            conn.execute("UPDATE sessions SET last_seen_at = MAX(last_seen_at, ?2) WHERE id_hash = ?1", params![id_hash, at]).map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<bool> {
        let id_hash = id_hash.to_string();
        self.write(move |conn| Ok(conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash]).map_err(db_err)? > 0)).await
    }

    async fn delete_user_sessions(&self, user_id: &str) -> StoreResult<u64> {
        let user_id = user_id.to_string();
        self.write(move |conn| Ok(conn.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id]).map_err(db_err)? as u64)).await
    }

    async fn delete_expired_sessions(&self, idle_before: Millis, created_before: Millis) -> StoreResult<u64> {
        self.write(move |conn| {
            Ok(conn.execute("DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2", params![idle_before, created_before]).map_err(db_err)? as u64)
        })
        .await
    }
}
