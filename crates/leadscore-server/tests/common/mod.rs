//! A real leadscore server for integration tests: a fresh database (SQLite in a tempdir,
//! or a PostgreSQL schema of its own, dropped with the server), a clock the test sets, and
//! an HTTP client that talks to it on 127.0.0.1. `both_backends!` runs test bodies on both.

#![allow(dead_code, unused_macros, unused_imports, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use leadscore_server::input::format_time;
use leadscore_server::{AppState, Clock, EngineConfig, ServerConfig};
use leadscore_store_postgres::PostgresStore;
use leadscore_store_sqlite::SqliteStore;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const ADMIN_KEY: &str = "lsk_test_admin";

pub const SECOND: i64 = 1_000;
pub const HOUR: i64 = 3_600 * SECOND;
pub const DAY: i64 = 24 * HOUR;

/// 2026-03-02T09:00:00Z, where every test's clock starts.
pub const T0: i64 = 1_772_442_000_000;

/// An HTTP answer: status and body (JSON when it parses, else `Value::Null`; `text` keeps it raw).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Asserts the status and the error shape `{"error": {"code", "message"}}`, and returns
    /// the `error` object.
    pub fn expect_error(&self, status: StatusCode, code: &str) -> &Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "unexpected error code; body: {}", self.text);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "error without a message: {}", self.text);
        error
    }

    /// Asserts the status and returns the body.
    pub fn expect(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        &self.body
    }
}

/// Where `LEADSCORE_TEST_POSTGRES_URL` points the PostgreSQL runs (unset: SQLite only).
pub const POSTGRES_URL_VARIABLE: &str = "LEADSCORE_TEST_POSTGRES_URL";

/// Generates, for each named `async fn name(server: TestServer)`, the tests
/// `sqlite::name` (always) and `postgres::name` (which passes with a notice when
/// `LEADSCORE_TEST_POSTGRES_URL` is not set), so one `cargo test` covers both backends.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(crate::common::TestServer::start().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    match crate::common::TestServer::start_postgres().await {
                        Some(server) => super::$name(server).await,
                        None => println!("skipped: {} is not set", crate::common::POSTGRES_URL_VARIABLE),
                    }
                }
            )*
        }
    };
}
pub(crate) use both_backends;

/// The configuration tests run with: the default, except that webhooks may go to the
/// test's own receivers on 127.0.0.1.
pub fn test_config() -> ServerConfig {
    ServerConfig { engine: EngineConfig { allow_private_webhooks: true, ..EngineConfig::default() }, ..ServerConfig::default() }
}

/// What a server keeps to clean its database up.
enum Database {
    Sqlite(TempDir),
    /// (url, schema): the schema is dropped when the server is.
    Postgres(String, String),
}

pub struct TestServer {
    pub base: String,
    pub state: Arc<AppState>,
    client: reqwest::Client,
    clock: Arc<AtomicI64>,
    shutdown: Option<oneshot::Sender<()>>,
    database: Option<Database>,
}

/// A schema name no other test (or test process) uses.
fn unique_schema() -> String {
    static NEXT: AtomicI64 = AtomicI64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("api_{}_{nanos:x}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl TestServer {
    /// Boots a server on a free port with an empty SQLite database and the clock at `T0`.
    pub async fn start() -> TestServer {
        Self::start_configured(test_config()).await
    }

    /// Like `start`, with a server configuration of the test's own.
    pub async fn start_configured(config: ServerConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_dir(dir.path()).unwrap();
        Self::start_with(Arc::new(store), Database::Sqlite(dir), config).await
    }

    /// Boots a server on a fresh PostgreSQL schema (dropped when the server is), or None
    /// when `LEADSCORE_TEST_POSTGRES_URL` is not set.
    pub async fn start_postgres() -> Option<TestServer> {
        Self::start_postgres_configured(test_config()).await
    }

    /// Like `start_postgres`, with a server configuration of the test's own.
    pub async fn start_postgres_configured(config: ServerConfig) -> Option<TestServer> {
        let url = std::env::var(POSTGRES_URL_VARIABLE).ok().filter(|u| !u.trim().is_empty())?;
        let schema = unique_schema();
        // A small pool: tests run in parallel against one PostgreSQL.
        let store = PostgresStore::connect_with_pool_size(&url, Some(&schema), 4).await.unwrap();
        Some(Self::start_with(Arc::new(store), Database::Postgres(url, schema), config).await)
    }

    async fn start_with(store: Arc<dyn leadscore_store::Store>, database: Database, config: ServerConfig) -> TestServer {
        let now = Arc::new(AtomicI64::new(T0));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::SeqCst))
        };
        let state = AppState::new(store, clock, config).await.unwrap();
        state.bootstrap_admin_key(Some(ADMIN_KEY)).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(leadscore_server::serve(state.clone(), listener, async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
        TestServer { base, state, client, clock: now, shutdown: Some(shutdown), database: Some(database) }
    }

    pub fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    pub fn set_now(&self, millis: i64) {
        self.clock.store(millis, Ordering::SeqCst);
    }

    /// A request with `Authorization: Bearer <key>` (none when `key` is None).
    pub fn request(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, body, text }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path, Some(ADMIN_KEY))).await
    }

    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        self.send(self.request(Method::GET, path, Some(ADMIN_KEY)).query(query)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path, Some(ADMIN_KEY)).json(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(Method::PATCH, path, Some(ADMIN_KEY)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(Method::DELETE, path, Some(ADMIN_KEY))).await
    }

    /// PUT /api/v1/models/{name} with a TOML body.
    pub async fn put_model(&self, name: &str, toml: &str) -> Reply {
        let request =
            self.request(Method::PUT, &format!("/api/v1/models/{name}"), Some(ADMIN_KEY)).header("content-type", "application/toml").body(toml.to_string());
        self.send(request).await
    }

    /// Publishes a model and waits until its rescore job is done; returns the version.
    pub async fn publish(&self, name: &str, toml: &str) -> u64 {
        let reply = self.put_model(name, toml).await;
        let version = reply.expect(StatusCode::CREATED)["version"].as_u64().unwrap();
        self.wait_for_rescore(name, version).await;
        version
    }

    /// Polls GET /api/v1/models/{name} until the rescore of `version` is done; returns the job.
    pub async fn wait_for_rescore(&self, name: &str, version: u64) -> Value {
        for _ in 0..500 {
            let model = self.get(&format!("/api/v1/models/{name}")).await;
            let job = &model.expect(StatusCode::OK)["rescore"];
            if job["version"] == version && job["state"] == "done" {
                return job.clone();
            }
            assert!(job["state"] != "failed", "rescore failed: {job}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the rescore of {name} v{version} did not finish in 5 s");
    }

    /// POST /api/v1/contacts with the admin key; asserts 201 Created.
    pub async fn create_contact(&self, contact: Value) -> Value {
        self.post("/api/v1/contacts", &contact).await.expect(StatusCode::CREATED).clone()
    }

    /// POST /api/v1/events with one event or a batch; asserts 200 OK.
    pub async fn ingest(&self, body: Value) -> Value {
        self.post("/api/v1/events", &body).await.expect(StatusCode::OK).clone()
    }

    pub async fn contact(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/contacts/{id}")).await.expect(StatusCode::OK).clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(Database::Postgres(url, schema)) = self.database.take() {
            drop_schema(url, schema);
        }
    }
}

/// Drops a test schema from a plain thread with its own runtime: `Drop` cannot await, and
/// it also runs while a failed test unwinds, so the schema goes either way.
fn drop_schema(url: String, schema: String) {
    let dropped = std::thread::spawn(move || -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
            let connection = tokio::spawn(connection);
            // A background job of the stopped server may still hold a lock for a moment.
            let result = client.batch_execute(&format!("SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS {schema} CASCADE")).await.map_err(|e| e.to_string());
            drop(client);
            let _ = connection.await;
            result
        })
    })
    .join();
    if let Ok(Err(err)) | Err(err) = dropped.map_err(|_| "the drop thread panicked".to_string()) {
        eprintln!("could not drop the test schema: {err}");
    }
}

/// The contact's scores under `model`, without the `version` field, for comparing whole cards.
pub fn card(contact: &Value, model: &str) -> Value {
    let mut card = contact["scores"][model].clone();
    assert!(card.is_object(), "no {model} score in {contact}");
    card.as_object_mut().unwrap().remove("version");
    card
}

/// A whole score card as the API reports it.
pub fn expected_card(fit: f64, activity: f64, band: &str, flames: u8, grade: &str, quadrant: &str) -> Value {
    let total = ((fit + activity) * 100.0).round() / 100.0;
    json!({
        "fit": fit, "activity": activity, "total": total,
        "band": band, "flames": flames, "grade": grade, "quadrant": quadrant,
    })
}

pub fn track(user: &str, message_id: &str, event: &str, properties: Value, at: i64) -> Value {
    json!({
        "type": "track", "messageId": message_id, "userId": user, "event": event,
        "properties": properties, "timestamp": format_time(at),
    })
}

pub fn page(user: &str, message_id: &str, path: &str, at: i64) -> Value {
    json!({
        "type": "page", "messageId": message_id, "userId": user,
        "properties": { "path": path }, "timestamp": format_time(at),
    })
}

/// A model whose totals are easy to compute by hand: bands hot ≥ 60, warm ≥ 30, cold;
/// event Ten earns 10 points, Five 5 (the reports and shadow tests).
pub const TEN_FIVE_MODEL: &str = r#"
name = "b2b"
[[bands]]
name = "hot"
min = 60
[[bands]]
name = "warm"
min = 30
[[bands]]
name = "cold"
[[activity]]
name = "Ten"
event = "Ten"
points = 10
[[activity]]
name = "Five"
event = "Five"
points = 5
"#;

impl TestServer {
    /// Records `status` for `contact` as of `at` (201 expected) and returns the outcome.
    pub async fn record_status(&self, contact: &str, status: &str, at: i64) -> Value {
        let body = json!({ "status": status, "at": format_time(at) });
        self.post(&format!("/api/v1/contacts/{contact}/status"), &body).await.expect(StatusCode::CREATED).clone()
    }
}

pub fn quote_form(user: &str, message_id: &str, at: i64) -> Value {
    track(user, message_id, "Form Submitted", json!({ "form": "quote" }), at)
}

/// The example model of PRODUCT.md §2.
pub fn example_model() -> String {
    leadscore_core::model::EXAMPLE_MODEL_TOML.to_string()
}

/// The example model without its `[decay]` section, so activity is an exact integer sum.
pub fn example_model_without_decay(name: &str) -> String {
    let text: String = example_model()
        .lines()
        .filter(|line| !["[decay]", "half_life", "inactivity"].iter().any(|p| line.starts_with(p)))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(!text.contains("half_life"), "the example model changed shape");
    text.replacen("name = \"b2b\"", &format!("name = \"{name}\""), 1)
}

/// A contact the example model scores (`applies_to` wants `product_interest`).
pub fn platform_contact(id: &str, attributes: Value) -> Value {
    let mut attributes = attributes;
    attributes["product_interest"] = json!("platform");
    json!({ "id": id, "attributes": attributes })
}

/// A webhook receiver on 127.0.0.1: records every request (headers and body) and answers
/// with the status the test sets.
pub struct Receiver {
    pub url: String,
    pub received: Arc<std::sync::Mutex<Vec<Received>>>,
    status: Arc<std::sync::atomic::AtomicU16>,
    arrived: Arc<tokio::sync::Notify>,
    _shutdown: oneshot::Sender<()>,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

impl Receiver {
    pub async fn start(status: u16) -> Receiver {
        use axum::extract::State as AxState;
        type Shared = (Arc<std::sync::Mutex<Vec<Received>>>, Arc<std::sync::atomic::AtomicU16>, Arc<tokio::sync::Notify>);
        async fn record(
            AxState((received, status, arrived)): AxState<Shared>,
            uri: axum::http::Uri,
            headers: axum::http::HeaderMap,
            body: String,
        ) -> axum::http::StatusCode {
            let headers = headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string())).collect();
            received.lock().unwrap().push(Received { path: uri.path().to_string(), headers, body });
            arrived.notify_waiters();
            axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
        }
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = Arc::new(std::sync::atomic::AtomicU16::new(status));
        let arrived = Arc::new(tokio::sync::Notify::new());
        let app = axum::Router::new().fallback(record).with_state((received.clone(), status.clone(), arrived.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Receiver { url, received, status, arrived, _shutdown: shutdown }
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived (the server's delivery worker sends
    /// them in the background); panics after `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {count} webhook request(s) within {timeout:?}, got {}", self.requests().len());
            }
        }
    }
}

/// `data` gzip-compressed, as SDKs send it with `Content-Encoding: gzip`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// `data` as HTTP's `deflate`: a zlib stream (RFC 1950), or raw deflate (RFC 1951) as some
/// clients send it.
pub fn deflate(data: &[u8], zlib: bool) -> Vec<u8> {
    use std::io::Write;
    if zlib {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    } else {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }
}

/// A small gzip body that inflates to 10 MB of zeros.
pub fn gzip_bomb() -> Vec<u8> {
    let bomb = gzip(&vec![b'0'; 10 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024, "the bomb is small: {} bytes", bomb.len());
    bomb
}
