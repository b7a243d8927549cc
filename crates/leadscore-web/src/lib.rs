//! The web app (F24, contract §8): server-rendered pages over the engine, for the people
//! who use leadscore every day. Users sign in with e-mail and password; a session is a
//! random token in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` when the public URL is
//! https). Every state-changing form is a POST checked for its origin (`Sec-Fetch-Site`,
//! else `Origin`), so another site cannot submit it. Pages escape what they show (maud does
//! by default) and answer errors with a page of their own, never a stack trace.

mod models;
mod pages;
mod settings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use leadscore_app::Engine;
use leadscore_app::access::Reach;
use leadscore_app::users;
use leadscore_store::UserRecord;
use serde::Deserialize;

pub use pages::Page;

pub use leadscore_app::users::SESSION_COOKIE;

#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// Where people reach leadscore (LEADSCORE_PUBLIC_URL); an `https://` one makes the
    /// session cookie `Secure` (TLS ends at a proxy in front of leadscore).
    pub public_url: Option<String>,
}

impl WebConfig {
    fn secure_cookies(&self) -> bool {
        self.public_url.as_deref().is_some_and(|url| url.starts_with("https://"))
    }
}

pub struct Web {
    pub engine: Arc<Engine>,
    pub config: WebConfig,
    logins: LoginLimiter,
    /// Today's tiles per (model, version, owner), with when they were computed.
    kpis: Mutex<HashMap<String, (Instant, pages::Kpis)>>,
    /// The tiles being computed now, so that reloads do not start the same work again.
    kpis_running: Mutex<std::collections::HashSet<String>>,
}

/// The pages, to be merged with the API's routes (same port). Paths as in contract §8.
pub fn router(engine: Arc<Engine>, config: WebConfig) -> Router {
    let web = Arc::new(Web { engine, config, logins: LoginLimiter::default(), kpis: Mutex::default(), kpis_running: Mutex::default() });
    Router::new()
        .route("/", get(pages::today))
        .route("/login", get(pages::login_form).post(login))
        .route("/logout", post(logout))
        .route("/leads", get(pages::leads))
        .route("/leads/bulk", post(pages::bulk_leads))
        .route("/contacts/{id}", get(pages::contact))
        .route("/contacts/{id}/status", post(pages::record_status))
        .route("/contacts/{id}/feedback", post(pages::record_feedback))
        .route("/contacts/{id}/export", get(pages::export_contact))
        .route("/contacts/{id}/erase", post(pages::erase_contact))
        .route("/accounts", get(pages::accounts))
        .route("/accounts/{id}", get(pages::account))
        .route("/models", get(models::list))
        .route("/models/{name}", get(models::page))
        .route("/settings", get(settings::page))
        .route("/settings/users", post(settings::add_user))
        .route("/settings/users/{id}", post(settings::change_user))
        .route("/settings/keys", post(settings::create_key))
        .route("/settings/keys/{id}/revoke", post(settings::revoke_key))
        .route("/settings/pool", post(settings::set_pool))
        .route("/settings/teams", post(settings::put_team))
        .route("/settings/teams/{name}/delete", post(settings::delete_team))
        .route("/settings/secrets", post(settings::put_secret))
        .route("/settings/secrets/{name}/delete", post(settings::delete_secret))
        .route("/settings/webhooks", post(settings::put_webhook))
        .route("/settings/webhooks/{name}/delete", post(settings::delete_webhook))
        .route("/assets/app.css", get(stylesheet))
        .fallback(|| async { pages::error_page(StatusCode::NOT_FOUND, "There is no page at this address. The pages are Today, Leads, Accounts and Settings.") })
        .layer(axum::middleware::from_fn(same_origin_posts))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(web)
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], include_str!("../assets/app.css")).into_response()
}

/// Headers every page gets: no framing (clickjacking), no sniffing, scripts and styles
/// from this origin only, no referrer leaving the site.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Refuses a POST another site made a browser send (CSRF): browsers say where a request
/// comes from in `Sec-Fetch-Site`, older ones at least in `Origin`. A request with neither
/// (a script, curl) carries no browser's cookie by accident and is let through.
async fn same_origin_posts(request: Request, next: Next) -> Response {
    if request.method() == Method::POST && !from_this_site(request.headers()) {
        return pages::error_page(StatusCode::FORBIDDEN, "This form was sent from another site, so it was refused. Open the page here and send it again.");
    }
    next.run(request).await
}

fn from_this_site(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    users::from_this_site(text(header::HeaderName::from_static("sec-fetch-site")), text(header::ORIGIN), text(header::HOST))
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    users::session_cookie(headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()))
}

/// The signed-in user of a request; a page without one sends the browser to `/login`.
pub struct SignedIn {
    pub user: UserRecord,
}

impl SignedIn {
    /// Which contacts the user may see and change: sales their own (and the pool when the
    /// server allows it), everyone else all.
    pub fn reach(&self, web: &Web) -> Reach {
        Reach::of(&web.engine, &self.user)
    }
}

impl FromRequestParts<Arc<Web>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next =
                parts.uri.path_and_query().map(|p| p.as_str()).filter(|p| *p != "/").map(|p| format!("?next={}", pages::url_encode(p))).unwrap_or_default();
            Redirect::to(&format!("/login{next}")).into_response()
        };
        let Some(token) = session_token(&parts.headers) else { return Err(to_login()) };
        match users::session_user(&web.engine, &token, web.engine.config.sessions).await {
            Ok(Some(user)) => Ok(SignedIn { user }),
            Ok(None) => Err(to_login()),
            Err(err) => Err(pages::app_error(err)),
        }
    }
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// Signs in: a new session (and so a new id) on every sign-in, the cookie set, then on to
/// the page asked for (a path on this site only).
async fn login(State(web): State<Arc<Web>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Form(form): Form<LoginForm>) -> Response {
    let email = form.email.trim().to_lowercase();
    let address = peer.ip().to_string();
    if let Err(wait) = web.logins.check(&email, &address) {
        let message = format!("Too many failed sign-ins. Try again in {} minutes.", wait.as_secs().div_ceil(60));
        return pages::login_page(StatusCode::TOO_MANY_REQUESTS, &form.email, &form.next, Some(&message));
    }
    match users::login(&web.engine, &email, &form.password).await {
        Ok((_, token)) => {
            web.logins.succeeded(&email);
            let next = if is_local_path(&form.next) { form.next.as_str() } else { "/" };
            let mut response = Redirect::to(next).into_response();
            set_cookie(&mut response, &web.config, &token, None);
            response
        }
        Err(refused @ users::UserError::WrongCredentials) => {
            web.logins.failed(&email, &address);
            pages::login_page(StatusCode::UNAUTHORIZED, &form.email, &form.next, Some(&refused.to_string()))
        }
        Err(other) => pages::app_error(other),
    }
}

/// A path on this site: `/leads`, not `//evil.example` or `/\evil.example` (browsers read a
/// backslash as a slash there), so the sign-in cannot send anyone elsewhere.
pub(crate) fn is_local_path(next: &str) -> bool {
    next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.chars().any(char::is_control)
}

async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers)
        && let Err(err) = users::logout(&web.engine, &token).await
    {
        return pages::app_error(err);
    }
    let mut response = Redirect::to("/login").into_response();
    set_cookie(&mut response, &web.config, "", Some(0));
    response
}

fn set_cookie(response: &mut Response, config: &WebConfig, value: &str, max_age: Option<u64>) {
    let secure = if config.secure_cookies() { "; Secure" } else { "" };
    let max_age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    if let Ok(value) = HeaderValue::from_str(&format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{max_age}")) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Failed sign-ins per account and per address in a sliding quarter of an hour: after 5
/// for an account or 20 from an address, sign-ins wait. In memory, per process.
#[derive(Default)]
struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
const ACCOUNT_FAILURES: u32 = 5;
const ADDRESS_FAILURES: u32 = 20;

impl LoginLimiter {
    fn check(&self, email: &str, address: &str) -> Result<(), Duration> {
        let Ok(failures) = self.failures.lock() else { return Ok(()) };
        for (key, limit) in [(format!("account:{email}"), ACCOUNT_FAILURES), (format!("address:{address}"), ADDRESS_FAILURES)] {
            if let Some((count, since)) = failures.get(&key)
                && *count >= limit
                && since.elapsed() < LOGIN_WINDOW
            {
                return Err(LOGIN_WINDOW.saturating_sub(since.elapsed()));
            }
        }
        Ok(())
    }

    fn failed(&self, email: &str, address: &str) {
        let Ok(mut failures) = self.failures.lock() else { return };
        if failures.len() > 100_000 {
            failures.retain(|_, (_, since)| since.elapsed() < LOGIN_WINDOW);
        }
        for key in [format!("account:{email}"), format!("address:{address}")] {
            let entry = failures.entry(key).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= LOGIN_WINDOW {
                *entry = (0, Instant::now());
            }
            entry.0 += 1;
        }
    }

    fn succeeded(&self, email: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&format!("account:{email}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_from_another_site_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(from_this_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!from_this_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!from_this_site(&headers(&[("sec-fetch-site", "same-site")])), "a sibling subdomain is another site here");
        assert!(from_this_site(&headers(&[("origin", "http://leads.example.com"), ("host", "leads.example.com")])));
        assert!(!from_this_site(&headers(&[("origin", "https://evil.example"), ("host", "leads.example.com")])));
        assert!(from_this_site(&headers(&[])), "no browser headers: not a browser's cross-site request");
    }

    #[test]
    fn failed_sign_ins_wait_per_account_and_address() {
        let limiter = LoginLimiter::default();
        for _ in 0..ACCOUNT_FAILURES {
            assert!(limiter.check("ana@example.com", "10.0.0.1").is_ok());
            limiter.failed("ana@example.com", "10.0.0.1");
        }
        assert!(limiter.check("ana@example.com", "10.0.0.2").is_err(), "the account waits, from any address");
        assert!(limiter.check("bo@example.com", "10.0.0.1").is_ok(), "another account from the same address does not, yet");
        for n in 0..ADDRESS_FAILURES {
            limiter.failed(&format!("user{n}@example.com"), "10.0.0.3");
        }
        assert!(limiter.check("new@example.com", "10.0.0.3").is_err(), "the address waits");
    }

    #[test]
    fn after_sign_in_only_paths_of_this_site() {
        assert!(is_local_path("/leads?band=hot"));
        for elsewhere in ["//evil.example", "/\\evil.example", "https://evil.example", "", "/\tx", "leads"] {
            assert!(!is_local_path(elsewhere), "{elsewhere:?}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("theme=dark; leadscore_session=abc123; other=1"));
        assert_eq!(session_token(&headers).as_deref(), Some("abc123"));
    }
}
