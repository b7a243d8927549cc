//! UserStore (0008: users, sessions).

use async_trait::async_trait;
use leadscore_store::{Millis, Role, SessionRecord, StoreError, StoreResult, UserRecord, UserStore};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use crate::contacts::count;
use crate::{Db, PgError, PgResult, PostgresStore, RetryOn, write_tx};

const USER_COLUMNS: &str = "id, email, name, role, password_hash, disabled, created_at, updated_at";

fn user_from_row(row: &Row) -> PgResult<UserRecord> {
    let role: String = row.try_get(3)?;
    Ok(UserRecord {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        name: row.try_get(2)?,
        // A role this version does not know reads as the least one.
        role: Role::parse(&role).unwrap_or(Role::Sales),
        password_hash: row.try_get(4)?,
        disabled: row.try_get(5)?,
        created_at: row.try_get(6)?,
        updated_at: row.try_get(7)?,
    })
}

fn session_from_row(row: &Row) -> PgResult<SessionRecord> {
    Ok(SessionRecord { id_hash: row.try_get(0)?, user_id: row.try_get(1)?, created_at: row.try_get(2)?, last_seen_at: row.try_get(3)? })
}

fn conflict_on_email(err: PgError) -> StoreError {
    match &err {
        PgError::Db(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => StoreError::Conflict("a user with this e-mail exists".into()),
        _ => err.into(),
    }
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn insert_user(&self, user: UserRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .exec(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                &[&user.id, &user.email, &user.name, &user.role.as_str(), &user.password_hash, &user.disabled, &user.created_at, &user.updated_at],
            )
            .await
            .map_err(conflict_on_email)?;
        Ok(())
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let client = self.client().await?;
        let row = client.row_opt(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"), &[&id]).await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let client = self.client().await?;
        let row = client.row_opt(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"), &[&email]).await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let client = self.client().await?;
        let rows = client.rows(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY email"), &[]).await?;
        Ok(rows.iter().map(user_from_row).collect::<PgResult<Vec<_>>>()?)
    }

    async fn update_user(&self, user: UserRecord) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .exec(
                "UPDATE users SET email = $2, name = $3, role = $4, password_hash = $5, disabled = $6, updated_at = $7 WHERE id = $1",
                &[&user.id, &user.email, &user.name, &user.role.as_str(), &user.password_hash, &user.disabled, &user.updated_at],
            )
            .await
            .map_err(conflict_on_email)?;
        Ok(n > 0)
    }

    async fn count_users(&self) -> StoreResult<u64> {
        count(self, "SELECT COUNT(*) FROM users").await
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        let deleted = write_tx!(self, RetryOn::Contention, |tx| {
            tx.exec("DELETE FROM sessions WHERE user_id = $1", &[&id]).await?;
            Ok::<bool, PgError>(tx.exec("DELETE FROM users WHERE id = $1", &[&id]).await? > 0)
        })?;
        Ok(deleted)
    }

    async fn insert_session(&self, session: SessionRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .exec(
                "INSERT INTO sessions (id_hash, user_id, created_at, last_seen_at) VALUES ($1, $2, $3, $4)",
                &[&session.id_hash, &session.user_id, &session.created_at, &session.last_seen_at],
            )
            .await?;
        Ok(())
    }

    async fn get_session(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let client = self.client().await?;
        let row = client.row_opt("SELECT id_hash, user_id, created_at, last_seen_at FROM sessions WHERE id_hash = $1", &[&id_hash]).await?;
        Ok(row.as_ref().map(session_from_row).transpose()?)
    }

    async fn touch_session(&self, id_hash: &str, at: Millis) -> StoreResult<()> {
        let client = self.client().await?;
        client.exec("UPDATE sessions SET last_seen_at = GREATEST(last_seen_at, $2) WHERE id_hash = $1", &[&id_hash, &at]).await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<bool> {
        let client = self.client().await?;
        Ok(client.exec("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash]).await? > 0)
    }

    async fn delete_user_sessions(&self, user_id: &str) -> StoreResult<u64> {
        let client = self.client().await?;
        Ok(client.exec("DELETE FROM sessions WHERE user_id = $1", &[&user_id]).await?)
    }

    async fn delete_expired_sessions(&self, idle_before: Millis, created_before: Millis) -> StoreResult<u64> {
        let client = self.client().await?;
        Ok(client.exec("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2", &[&idle_before, &created_before]).await?)
    }
}
