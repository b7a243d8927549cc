//! Credentials: API keys (`Authorization: Bearer <key>`, looked up by SHA-256 hash; keys
//! are 32 random bytes, so a fast hash is enough and the key itself is never stored), and
//! a signed-in user's session cookie (contract §8: the same role rules as the pages; a
//! state-changing request with a cookie must come from this site). A key's scopes decide
//! what it may call; a user's role does, and a sales rep reaches only their own contacts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use leadscore_app::access::Reach;
use leadscore_store::{ApiKeyRecord, IdentityTrust, Role, Scope};

use crate::AppState;
use crate::error::ApiError;

pub use leadscore_app::keys::{KEY_PREFIX, generate_key, hash_key};

/// Who is calling, with what scopes.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The API key's id, or the signed-in user's id: who the audit and erasure logs name.
    pub key_id: String,
    pub scopes: Vec<Scope>,
    /// A signed-in user's role (None for an API key): the routes' role rules apply.
    pub role: Option<Role>,
    /// Which contacts the caller reaches: every one for keys, a sales rep's own.
    pub reach: Reach,
}

impl Principal {
    /// `admin` may do everything, `identify` ingest too; otherwise the scope must be granted.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.iter().any(|held| held.grants(scope)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this key lacks the `{}` scope", scope.as_str())))
        }
    }

    /// Whether this caller may change who a known contact is (merge known people, replace
    /// an address): a server-side key, not one that may sit in a web page.
    pub fn identity_trust(&self) -> IdentityTrust {
        if self.require(Scope::Identify).is_ok() { IdentityTrust::Trusted } else { IdentityTrust::Visitor }
    }
}

/// Recently seen keys, so a request does not cost a database read. Short-lived, so a
/// revoked key stops working within `TTL` even on another process.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Option<ApiKeyRecord>, Instant)>>,
}

const TTL: Duration = Duration::from_secs(10);

impl KeyCache {
    pub fn forget_all(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// A token bucket per key: `per_second` tokens a second, holding at most twice that, so a
/// client may burst briefly but not flood. In memory, per process.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one token for `key`, or answers 429 with how long to wait.
    pub fn admit(&self, key: &str, per_second: u32, now: Instant) -> Result<(), ApiError> {
        let rate = f64::from(per_second.max(1));
        let capacity = 2.0 * rate;
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((capacity, now));
        let refilled = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(capacity);
        *last = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            return Ok(());
        }
        *tokens = refilled;
        let wait = ((1.0 - refilled) / rate).ceil().max(1.0);
        metrics::counter!("leadscore_rate_limited_total").increment(1);
        Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this key sends more than {per_second} requests a second; retry in {wait} s"),
        )
        .with_details(serde_json::json!({ "retry_after_seconds": wait })))
    }
}

/// Failed credentials per client address (issue 15.7: wrong keys were never limited, and
/// each cost a database read). An address may fail `BURST` times, then once every
/// `REFILL`; beyond, it is answered 429 before any lookup. Keys already known good (in the
/// cache) still work from it, so a flood from a shared address does not lock out its
/// working clients.
#[derive(Default)]
pub struct FailedAuthLimiter {
    addresses: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl FailedAuthLimiter {
    const BURST: f64 = 20.0;
    const REFILL: Duration = Duration::from_secs(3);

    fn tokens(entry: (f64, Instant), now: Instant) -> f64 {
        (entry.0 + now.saturating_duration_since(entry.1).as_secs_f64() / Self::REFILL.as_secs_f64()).min(Self::BURST)
    }

    /// Refuses an address that has failed too often lately.
    pub fn check(&self, address: IpAddr, now: Instant) -> Result<(), ApiError> {
        let Ok(addresses) = self.addresses.lock() else { return Ok(()) };
        let Some(entry) = addresses.get(&address) else { return Ok(()) };
        let tokens = Self::tokens(*entry, now);
        if tokens >= 1.0 {
            return Ok(());
        }
        let wait = ((1.0 - tokens) * Self::REFILL.as_secs_f64()).ceil().max(1.0);
        metrics::counter!("leadscore_auth_failures_limited_total").increment(1);
        Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many failed credentials from this address; retry in {wait} s"),
        )
        .with_details(serde_json::json!({ "retry_after_seconds": wait })))
    }

    /// Counts a failure of `address`.
    pub fn failed(&self, address: IpAddr, now: Instant) {
        let Ok(mut addresses) = self.addresses.lock() else { return };
        if addresses.len() > 100_000 {
            // Bounded memory under a flood from many addresses: start over.
            addresses.clear();
        }
        let entry = addresses.entry(address).or_insert((Self::BURST, now));
        *entry = ((Self::tokens(*entry, now) - 1.0).max(0.0), now);
    }
}

/// The key's record, from the cache when it was looked up lately.
fn cached_record(state: &AppState, hash: &str) -> Option<Option<ApiKeyRecord>> {
    state.keys.entries.lock().ok().and_then(|entries| entries.get(hash).filter(|(_, at)| at.elapsed() < TTL).map(|(record, _)| record.clone()))
}

/// Checks an API key; `peer` is the client's address, for the failed-credentials limit.
pub async fn authenticate(state: &AppState, key: &str, peer: Option<IpAddr>) -> Result<Principal, ApiError> {
    let hash = hash_key(key);
    let cached = cached_record(state, &hash);
    let known_good = matches!(&cached, Some(Some(record)) if record.revoked_at.is_none());
    if !known_good && let Some(peer) = peer {
        state.failed_auth.check(peer, Instant::now())?;
    }
    let principal = check_record(state, &hash, key, cached).await;
    if principal.as_ref().is_err_and(|e| e.status == axum::http::StatusCode::UNAUTHORIZED)
        && let Some(peer) = peer
    {
        state.failed_auth.failed(peer, Instant::now());
    }
    principal
}

async fn check_record(state: &AppState, hash: &str, key: &str, cached: Option<Option<ApiKeyRecord>>) -> Result<Principal, ApiError> {
    let hash = hash.to_string();
    let record = match cached {
        Some(record) => record,
        None => {
            let record = leadscore_app::keys::find(state, key).await?;
            if let Ok(mut entries) = state.keys.entries.lock() {
                if entries.len() > 10_000 {
                    entries.clear();
                }
                entries.insert(hash, (record.clone(), Instant::now()));
            }
            record
        }
    };
    match record {
        Some(record) if record.revoked_at.is_none() => {
            if let Some(per_second) = state.config.rate_limit {
                state.limits.admit(&record.id, per_second, Instant::now())?;
            }
            Ok(Principal { key_id: record.id, scopes: record.scopes, role: None, reach: Reach::Everyone })
        }
        Some(_) => Err(ApiError::unauthorized("this API key was revoked")),
        None => Err(ApiError::unauthorized("unknown API key")),
    }
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.ip());
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return match leadscore_app::users::session_cookie(parts.headers.get_all(axum::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok())) {
                Some(token) => signed_in(state, parts, &token, peer).await,
                None => Err(ApiError::unauthorized("missing `Authorization: Bearer <API key>` header (or a signed-in session)")),
            };
        };
        let text = header.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let key = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::unauthorized("use `Authorization: Bearer <API key>`"))?;
        authenticate(state, key, peer).await
    }
}

/// The user of a session cookie. A request that changes something must say it comes from
/// this site, as the pages' forms do: another site cannot make a browser send it (CSRF).
async fn signed_in(state: &AppState, parts: &Parts, token: &str, peer: Option<IpAddr>) -> Result<Principal, ApiError> {
    if let Some(peer) = peer {
        state.failed_auth.check(peer, Instant::now())?;
    }
    let user = match leadscore_app::users::session_user(state, token, state.config.engine.sessions).await? {
        Some(user) => user,
        None => {
            if let Some(peer) = peer {
                state.failed_auth.failed(peer, Instant::now());
            }
            return Err(ApiError::unauthorized("the session has ended; sign in again"));
        }
    };
    if !parts.method.is_safe() {
        let text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        if !leadscore_app::users::from_this_site(text("sec-fetch-site"), text("origin"), text("host")) {
            return Err(ApiError::forbidden("a request with a session cookie from another site is refused"));
        }
    }
    if let Some(per_second) = state.config.rate_limit {
        state.limits.admit(&user.id, per_second, Instant::now())?;
    }
    let scopes = match user.role {
        Role::Admin => vec![Scope::Admin],
        Role::Marketing | Role::Sales => vec![Scope::Read],
    };
    Ok(Principal { key_id: user.id.clone(), scopes, role: Some(user.role), reach: Reach::of(state, &user) })
}

/// What a route needs, as a type, so the check is an extractor: it runs before the
/// route's path, query and body are read, and a caller without the right gets 403 whatever
/// else is wrong with the request (a read key never learns how a query parses). An API key
/// needs the scope; a signed-in user needs one of the roles (contract §8).
pub trait RequiredScope {
    const SCOPE: Scope;
    const ROLES: &'static [Role];
    /// What the route is, for the refusal: "manage models and automations".
    const WHAT: &'static str;
}

/// Reading: contacts (a sales rep's own), accounts, reports, models — every role.
pub struct ReadScope;
/// Reading what marketing runs: automations and their runs, the outbox.
pub struct ReadSetupScope;
/// Recording a contact's status and rating: every role (a sales rep, on their own contacts).
pub struct WorkScope;
/// Ingesting events.
pub struct IngestScope;
/// Changing contacts, models, automations, deliveries, training: admins and marketing.
pub struct ManageScope;
/// Access control and data protection (keys, users, secrets, teams, webhooks, erasure and
/// the logs): admins only.
pub struct AdminScope;

const EVERY_ROLE: &[Role] = &[Role::Admin, Role::Marketing, Role::Sales];
const MARKETING: &[Role] = &[Role::Admin, Role::Marketing];
const ADMIN: &[Role] = &[Role::Admin];

impl RequiredScope for ReadScope {
    const SCOPE: Scope = Scope::Read;
    const ROLES: &'static [Role] = EVERY_ROLE;
    const WHAT: &'static str = "read";
}
impl RequiredScope for ReadSetupScope {
    const SCOPE: Scope = Scope::Read;
    const ROLES: &'static [Role] = MARKETING;
    const WHAT: &'static str = "read automations, runs and deliveries";
}
impl RequiredScope for WorkScope {
    const SCOPE: Scope = Scope::Admin;
    const ROLES: &'static [Role] = EVERY_ROLE;
    const WHAT: &'static str = "record outcomes";
}
impl RequiredScope for IngestScope {
    const SCOPE: Scope = Scope::Ingest;
    const ROLES: &'static [Role] = ADMIN;
    const WHAT: &'static str = "ingest events";
}
impl RequiredScope for ManageScope {
    const SCOPE: Scope = Scope::Admin;
    const ROLES: &'static [Role] = MARKETING;
    const WHAT: &'static str = "change contacts, models, automations and deliveries";
}
impl RequiredScope for AdminScope {
    const SCOPE: Scope = Scope::Admin;
    const ROLES: &'static [Role] = ADMIN;
    const WHAT: &'static str = "administer access and data protection";
}

/// A caller granted `S`. Put it before the path, query and body extractors of the
/// handler: extractors run in order.
pub struct Granted<S: RequiredScope>(pub Principal, std::marker::PhantomData<S>);

pub type CanRead = Granted<ReadScope>;
pub type CanReadSetup = Granted<ReadSetupScope>;
pub type CanWork = Granted<WorkScope>;
pub type CanIngest = Granted<IngestScope>;
pub type CanManage = Granted<ManageScope>;
pub type CanAdmin = Granted<AdminScope>;

impl<S: RequiredScope> std::ops::Deref for Granted<S> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: RequiredScope + Send + Sync> FromRequestParts<Arc<AppState>> for Granted<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        match principal.role {
            Some(role) if !S::ROLES.contains(&role) => {
                return Err(ApiError::forbidden(format!("a {} user may not {}", role.as_str(), S::WHAT)));
            }
            Some(_) => {}
            None => principal.require(S::SCOPE)?,
        }
        if let Some(actor) = parts.extensions.get::<leadscore_app::audit::ActorSlot>() {
            actor.set(&principal.key_id);
        }
        Ok(Granted(principal, std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_that_keeps_failing_waits() {
        let limiter = FailedAuthLimiter::default();
        let (here, there) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..20 {
            assert!(limiter.check(here, start).is_ok());
            limiter.failed(here, start);
        }
        let refused = limiter.check(here, start).unwrap_err();
        assert_eq!(refused.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(limiter.check(there, start).is_ok(), "another address is not affected");
        assert!(limiter.check(here, start + FailedAuthLimiter::REFILL).is_ok(), "one more try after the refill");
    }

    #[test]
    fn the_bucket_allows_bursts_then_refills() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        // 10 a second: a burst of 20, then the 21st is refused.
        for _ in 0..20 {
            assert!(limiter.admit("k", 10, start).is_ok());
        }
        let refused = limiter.admit("k", 10, start).unwrap_err();
        assert_eq!(refused.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        // Other keys are not affected; a tenth of a second later one more is allowed.
        assert!(limiter.admit("other", 10, start).is_ok());
        assert!(limiter.admit("k", 10, start + Duration::from_millis(100)).is_ok());
        assert!(limiter.admit("k", 10, start + Duration::from_millis(100)).is_err());
    }
}
