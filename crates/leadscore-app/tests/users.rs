//! Users and sessions through the engine, on SQLite: sign-in, the timeouts, what signs a
//! user out, and the last admin.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use leadscore_app::users::{self, NewUser, SessionPolicy, UserChanges, UserError};
use leadscore_app::{Engine, EngineConfig};
use leadscore_store::Role;
use leadscore_store_sqlite::SqliteStore;

const T0: i64 = 1_772_442_000_000;

async fn engine() -> (tempfile::TempDir, Arc<Engine>, Arc<AtomicI64>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let now = Arc::new(AtomicI64::new(T0));
    let clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let engine = Engine::new(store, clock, EngineConfig { workers: false, sweep_interval: None, ..EngineConfig::default() }).await.unwrap();
    (dir, engine, now)
}

fn new_user(email: &str, role: Role) -> NewUser {
    NewUser { email: email.into(), password: "correct horse battery".into(), role, name: None }
}

#[tokio::test]
async fn signs_in_with_the_right_password_only() {
    let (_dir, engine, _) = engine().await;
    let ana = users::add_user(&engine, new_user(" Ana@Example.com ", Role::Sales)).await.unwrap();
    assert_eq!(ana.email, "ana@example.com", "e-mails are kept trimmed and in lower case");
    assert!(ana.password_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", ana.password_hash);
    assert!(matches!(users::add_user(&engine, new_user("ana@example.com", Role::Admin)).await, Err(UserError::EmailTaken(_))));
    let short = NewUser { password: "short".into(), ..new_user("bo@example.com", Role::Sales) };
    assert!(matches!(users::add_user(&engine, short).await, Err(UserError::PasswordShort)));

    let (user, token) = users::login(&engine, "ANA@example.com", "correct horse battery").await.unwrap();
    assert_eq!(user.id, ana.id);
    assert_eq!(users::session_user(&engine, &token, SessionPolicy::default()).await.unwrap().map(|u| u.id), Some(ana.id.clone()));
    for (email, password) in [("ana@example.com", "wrong horse battery"), ("nobody@example.com", "correct horse battery")] {
        let refused = users::login(&engine, email, password).await.unwrap_err();
        assert_eq!(refused.to_string(), "wrong e-mail or password", "the same answer for a wrong password and an unknown e-mail");
    }
    users::logout(&engine, &token).await.unwrap();
    assert!(users::session_user(&engine, &token, SessionPolicy::default()).await.unwrap().is_none(), "signed out");
    assert!(users::session_user(&engine, "not a token", SessionPolicy::default()).await.unwrap().is_none());
}

#[tokio::test]
async fn sessions_end_when_idle_or_old_and_on_password_change() {
    let (_dir, engine, now) = engine().await;
    let ana = users::add_user(&engine, new_user("ana@example.com", Role::Sales)).await.unwrap();
    let policy = SessionPolicy { idle: Duration::from_secs(3600), lifetime: Duration::from_secs(3 * 3600) };
    let (_, token) = users::login(&engine, "ana@example.com", "correct horse battery").await.unwrap();
    // Used every 50 minutes: the idle timeout never strikes, the absolute one does.
    for step in 1..=3 {
        now.store(T0 + step * 50 * 60_000, Ordering::SeqCst);
        assert!(users::session_user(&engine, &token, policy).await.unwrap().is_some(), "step {step}");
    }
    now.store(T0 + 3 * 3_600_000 + 1, Ordering::SeqCst);
    assert!(users::session_user(&engine, &token, policy).await.unwrap().is_none(), "past the absolute timeout");

    let (_, idle) = users::login(&engine, "ana@example.com", "correct horse battery").await.unwrap();
    now.store(now.load(Ordering::SeqCst) + 3_600_000 + 1, Ordering::SeqCst);
    assert!(users::session_user(&engine, &idle, policy).await.unwrap().is_none(), "idle too long");

    let (_, before) = users::login(&engine, "ana@example.com", "correct horse battery").await.unwrap();
    users::update_user(&engine, &ana.id, UserChanges { password: Some("a brand new passphrase".into()), ..UserChanges::default() }).await.unwrap();
    assert!(users::session_user(&engine, &before, policy).await.unwrap().is_none(), "a new password signs out everywhere");
    assert!(users::login(&engine, "ana@example.com", "correct horse battery").await.is_err());
    let (_, after) = users::login(&engine, "ana@example.com", "a brand new passphrase").await.unwrap();
    users::update_user(&engine, &ana.id, UserChanges { disabled: Some(true), ..UserChanges::default() }).await.unwrap();
    assert!(users::session_user(&engine, &after, policy).await.unwrap().is_none(), "disabling signs out");
    assert!(users::login(&engine, "ana@example.com", "a brand new passphrase").await.is_err(), "a disabled user cannot sign in");
}

#[tokio::test]
async fn the_last_admin_stays_admin() {
    let (_dir, engine, _) = engine().await;
    let root = users::add_user(&engine, new_user("root@example.com", Role::Admin)).await.unwrap();
    let demote = UserChanges { role: Some(Role::Sales), ..UserChanges::default() };
    assert!(matches!(users::update_user(&engine, &root.id, demote.clone()).await, Err(UserError::LastAdmin)));
    assert!(matches!(users::update_user(&engine, &root.id, UserChanges { disabled: Some(true), ..UserChanges::default() }).await, Err(UserError::LastAdmin)));
    users::add_user(&engine, new_user("second@example.com", Role::Admin)).await.unwrap();
    assert_eq!(users::update_user(&engine, &root.id, demote).await.unwrap().role, Role::Sales, "with another admin it may go");
}
