//! Users and their sessions (F26): e-mail and password (argon2id with OWASP's parameters,
//! hashed and checked on a blocking thread), roles, sign-in and sign-out. A session is a
//! random token in the browser's cookie; the database holds only its SHA-256, so a copy of
//! the database signs nobody in.

use std::time::Duration;

use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use leadscore_store::{Millis, Role, SessionRecord, StoreError, UserRecord};
use rand::RngCore;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Engine;
use crate::error::AppError;

/// Why a user cannot be added, changed, found or signed in.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Email(String),
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    PasswordShort,
    #[error("a password has at most {MAX_PASSWORD_BYTES} bytes")]
    PasswordLong,
    #[error("{0}")]
    Hashing(String),
    #[error("a user with the e-mail {0} exists")]
    EmailTaken(String),
    /// Nobody could manage users then.
    #[error("this is the last admin who can sign in: make another user admin first")]
    LastAdmin,
    #[error("no user {0:?}")]
    NotFound(String),
    /// Every failure to sign in reads the same (an unknown e-mail, a wrong password, a
    /// disabled user), so the answer does not tell who has an account.
    #[error("wrong e-mail or password")]
    WrongCredentials,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<UserError> for AppError {
    fn from(err: UserError) -> Self {
        match err {
            UserError::Email(_) | UserError::PasswordShort | UserError::PasswordLong | UserError::Hashing(_) => AppError::invalid(err.to_string()),
            UserError::EmailTaken(_) | UserError::LastAdmin => AppError::Conflict(err.to_string()),
            UserError::NotFound(_) => AppError::not_found(err.to_string()),
            UserError::WrongCredentials => AppError::Unauthorized(err.to_string()),
            UserError::Store(err) => AppError::Store(err),
        }
    }
}
use crate::keys::hash_key;

/// Shorter passwords are refused (OWASP: at least 8; a passphrase is better).
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longer ones are refused too: hashing megabytes would be a way to burn CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// How long a session lasts: `idle` without a request, `lifetime` at most.
#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    pub idle: Duration,
    pub lifetime: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        // A working day without a click signs out; a week at most, whatever happens.
        Self { idle: Duration::from_secs(8 * 3600), lifetime: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// Sessions seen within this long are not written again on every request.
const TOUCH_EVERY_MS: Millis = 60_000;

fn argon2() -> Argon2<'static> {
    // OWASP's first recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password` (a fresh random salt each time), computed off the async
/// threads: a hash takes tens of milliseconds by design.
pub async fn hash_password(password: String) -> Result<String, UserError> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hashing(format!("cannot make a salt: {e}")))?;
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| UserError::Hashing(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| UserError::Store(StoreError::Backend(format!("the hashing thread failed: {e}"))))?
}

/// Whether `password` matches the PHC string, off the async threads.
async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || PasswordHash::new(&hash).is_ok_and(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok()))
        .await
        .unwrap_or(false)
}

/// A hash no password matches, checked for unknown e-mails so that a wrong e-mail takes
/// as long as a wrong password and timing does not tell who has an account.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::encode_b64(b"leadscore-dummy!").ok();
        salt.and_then(|salt| argon2().hash_password(b"not a password anyone has", &salt).ok().map(|h| h.to_string())).unwrap_or_default()
    })
}

fn normalize_email(email: &str) -> Result<String, UserError> {
    let email = email.trim().to_lowercase();
    leadscore_core::email::check_email(&email).map_err(UserError::Email)?;
    Ok(email)
}

fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::PasswordShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(UserError::PasswordLong);
    }
    Ok(())
}

/// A user to create.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: String,
    pub password: String,
    pub role: Role,
    pub name: Option<String>,
}

pub async fn add_user(engine: &Engine, new: NewUser) -> Result<UserRecord, UserError> {
    let email = normalize_email(&new.email)?;
    check_password(&new.password)?;
    let password_hash = hash_password(new.password).await?;
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    let now = engine.now();
    let name = new.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let user =
        UserRecord { id: format!("usr_{}", hex::encode(id)), email, name, role: new.role, password_hash, disabled: false, created_at: now, updated_at: now };
    match engine.store.insert_user(user.clone()).await {
        Ok(()) => {
            tracing::info!(user = %user.id, role = user.role.as_str(), "user added");
            Ok(user)
        }
        Err(StoreError::Conflict(_)) => Err(UserError::EmailTaken(user.email)),
        Err(other) => Err(other.into()),
    }
}

pub async fn list_users(engine: &Engine) -> Result<Vec<UserRecord>, StoreError> {
    engine.store.list_users().await
}

pub async fn get_user(engine: &Engine, id: &str) -> Result<UserRecord, UserError> {
    engine.store.get_user(id).await?.ok_or_else(|| UserError::NotFound(id.to_string()))
}

/// What an admin changes about a user; None leaves it as it is.
#[derive(Clone, Debug, Default)]
pub struct UserChanges {
    pub email: Option<String>,
    pub name: Option<Option<String>>,
    pub role: Option<Role>,
    pub password: Option<String>,
    pub disabled: Option<bool>,
}

/// Changes a user. A new password or disabling signs the user out everywhere; the last
/// admin who can sign in cannot be demoted or disabled (nobody could manage users then).
pub async fn update_user(engine: &Engine, id: &str, changes: UserChanges) -> Result<UserRecord, UserError> {
    let mut user = get_user(engine, id).await?;
    let was_active_admin = user.role == Role::Admin && !user.disabled;
    if let Some(email) = &changes.email {
        user.email = normalize_email(email)?;
    }
    if let Some(name) = changes.name {
        user.name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    }
    if let Some(role) = changes.role {
        user.role = role;
    }
    if let Some(disabled) = changes.disabled {
        user.disabled = disabled;
    }
    if was_active_admin && (user.role != Role::Admin || user.disabled) {
        let admins = engine.store.list_users().await?.into_iter().filter(|u| u.role == Role::Admin && !u.disabled).count();
        if admins <= 1 {
            return Err(UserError::LastAdmin);
        }
    }
    let signs_out = changes.password.is_some() || changes.disabled == Some(true);
    if let Some(password) = changes.password {
        check_password(&password)?;
        user.password_hash = hash_password(password).await?;
    }
    user.updated_at = engine.now();
    match engine.store.update_user(user.clone()).await {
        Ok(true) => {}
        Ok(false) => return Err(UserError::NotFound(id.to_string())),
        Err(StoreError::Conflict(_)) => return Err(UserError::EmailTaken(user.email)),
        Err(other) => return Err(other.into()),
    }
    if signs_out {
        engine.store.delete_user_sessions(&user.id).await?;
    }
    tracing::info!(user = %user.id, role = user.role.as_str(), disabled = user.disabled, "user changed");
    Ok(user)
}

/// Deletes a user and their sessions; the last admin who can sign in stays.
pub async fn delete_user(engine: &Engine, id: &str) -> Result<(), UserError> {
    let user = get_user(engine, id).await?;
    if user.role == Role::Admin && !user.disabled {
        let admins = engine.store.list_users().await?.into_iter().filter(|u| u.role == Role::Admin && !u.disabled).count();
        if admins <= 1 {
            return Err(UserError::LastAdmin);
        }
    }
    if !engine.store.delete_user(id).await? {
        return Err(UserError::NotFound(id.to_string()));
    }
    tracing::info!(user = %id, "user deleted");
    Ok(())
}

/// Checks an e-mail and password and opens a session: answers the user and the token for
/// the cookie (the only time it exists outside the browser). Every failure reads the same.
pub async fn login(engine: &Engine, email: &str, password: &str) -> Result<(UserRecord, String), UserError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(UserError::WrongCredentials);
    }
    let user = engine.store.find_user_by_email(&email.trim().to_lowercase()).await?;
    let hash = user.as_ref().map_or_else(|| dummy_hash().to_string(), |u| u.password_hash.clone());
    let matches = verify_password(password.to_string(), hash).await;
    let user = match user {
        Some(user) if matches && !user.disabled => user,
        _ => return Err(UserError::WrongCredentials),
    };
    let token = session_token();
    let now = engine.now();
    engine.store.insert_session(SessionRecord { id_hash: hash_key(&token), user_id: user.id.clone(), created_at: now, last_seen_at: now }).await?;
    tracing::info!(user = %user.id, "signed in");
    Ok((user, token))
}

fn session_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The user a session token belongs to, while the session lasts and the user may sign in;
/// an expired session is deleted.
pub async fn session_user(engine: &Engine, token: &str, policy: SessionPolicy) -> Result<Option<UserRecord>, StoreError> {
    if token.len() != 64 {
        return Ok(None);
    }
    let id_hash = hash_key(token);
    let Some(session) = engine.store.get_session(&id_hash).await? else { return Ok(None) };
    let now = engine.now();
    let idle = Millis::try_from(policy.idle.as_millis()).unwrap_or(Millis::MAX);
    let lifetime = Millis::try_from(policy.lifetime.as_millis()).unwrap_or(Millis::MAX);
    if now.saturating_sub(session.last_seen_at) > idle || now.saturating_sub(session.created_at) > lifetime {
        engine.store.delete_session(&id_hash).await?;
        return Ok(None);
    }
    let Some(user) = engine.store.get_user(&session.user_id).await?.filter(|u| !u.disabled) else {
        engine.store.delete_session(&id_hash).await?;
        return Ok(None);
    };
    if now - session.last_seen_at > TOUCH_EVERY_MS {
        engine.store.touch_session(&id_hash, now).await?;
    }
    Ok(Some(user))
}

/// Ends the session of `token` (nothing happens for an unknown one).
pub async fn logout(engine: &Engine, token: &str) -> Result<(), StoreError> {
    engine.store.delete_session(&hash_key(token)).await?;
    Ok(())
}

/// Deletes the sessions past their timeouts (the web app runs this now and then).
pub async fn expire_sessions(engine: &Engine, policy: SessionPolicy) -> Result<u64, StoreError> {
    let now = engine.now();
    let idle = Millis::try_from(policy.idle.as_millis()).unwrap_or(Millis::MAX);
    let lifetime = Millis::try_from(policy.lifetime.as_millis()).unwrap_or(Millis::MAX);
    engine.store.delete_expired_sessions(now.saturating_sub(idle), now.saturating_sub(lifetime)).await
}

/// A user as front ends show it (never the password hash).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserView {
    pub created_at: String,
    pub disabled: bool,
    pub email: String,
    pub id: String,
    #[schema(required = true)]
    pub name: Option<String>,
    /// admin, marketing or sales.
    #[schema(value_type = String)]
    pub role: Role,
    pub updated_at: String,
}

impl From<&UserRecord> for UserView {
    fn from(user: &UserRecord) -> Self {
        UserView {
            created_at: crate::time::format_time(user.created_at),
            disabled: user.disabled,
            email: user.email.clone(),
            id: user.id.clone(),
            name: user.name.clone(),
            role: user.role,
            updated_at: crate::time::format_time(user.updated_at),
        }
    }
}

/// The session cookie's name (the pages set it; the pages and the JSON API read it).
pub const SESSION_COOKIE: &str = "leadscore_session";

/// The session token among a request's `Cookie` header values.
pub fn session_cookie<'a>(cookie_headers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    cookie_headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Whether a browser request came from this site, so a cookie it carries was meant for it
/// (CSRF): browsers say where a request comes from in `Sec-Fetch-Site`, older ones at
/// least in `Origin`. A request with neither (a script, curl) carries no browser's cookie
/// by accident and is let through.
pub fn from_this_site(sec_fetch_site: Option<&str>, origin: Option<&str>, host: Option<&str>) -> bool {
    if let Some(site) = sec_fetch_site {
        return matches!(site, "same-origin" | "none");
    }
    match (origin, host) {
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, rest)| rest == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}
