//! leadscore's HTTP server: one `AppState`, routers per feature, auth by API key, and the
//! background work (model rescoring) whose single steps tests can call.

pub mod accounts;
pub mod auth;
pub mod automations;
pub mod backtest;
pub mod compare;
pub mod contacts;
pub mod deliveries;
pub mod error;
pub mod events;
pub mod input;
pub mod keys;
pub mod models;
pub mod openapi;
pub mod outcomes;
pub mod reports;
pub mod runtime;
pub mod segment;
pub mod settings;
pub mod system;
pub mod workers;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use leadscore_core::Model;
use leadscore_store::{ApiKeyRecord, Millis, ModelSet, PublishedModel, Scope, Store, StoreError};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;

/// The wall clock in milliseconds, or a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest accepted request body in bytes (event batches are the biggest).
    pub max_body_bytes: usize,
    /// Largest event batch.
    pub max_batch: usize,
    /// How far ahead of the server's clock an event's timestamp may be (LEADSCORE_MAX_FUTURE_SKEW):
    /// a little is a sender's clock running fast, far more (`2099-01-01`) is a mistake that
    /// would keep the contact's activity from ever decaying.
    pub max_future_skew: std::time::Duration,
    /// Contacts per rescore transaction.
    pub rescore_chunk: usize,
    /// How often stored scores of decaying models are refreshed (None: never).
    pub sweep_interval: Option<std::time::Duration>,
    /// Requests per second allowed per API key, with bursts of twice that (None: no limit).
    pub rate_limit: Option<u32>,
    /// How often the scheduler looks for cold contacts (LEADSCORE_SCHEDULER_INTERVAL).
    pub scheduler_interval: std::time::Duration,
    /// The first retry delay of the outbox; later ones grow from it (LEADSCORE_DELIVERY_BACKOFF).
    pub delivery_backoff: std::time::Duration,
    /// Attempts before a delivery is dead-lettered.
    pub delivery_attempts: u32,
    /// How long a claimed delivery stays with its process; after a crash, another process
    /// takes it once this has passed (LEADSCORE_DELIVERY_LEASE). Longer than a send can take.
    pub delivery_lease: std::time::Duration,
    /// Allows webhook targets in loopback/private ranges (LEADSCORE_ALLOW_PRIVATE_WEBHOOKS).
    pub allow_private_webhooks: bool,
    /// SMTP server for e-mail actions (LEADSCORE_SMTP_URL), and the sender address.
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// Whether this process runs the background workers (tests may drive the steps alone).
    pub workers: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_batch: 1000,
            max_future_skew: std::time::Duration::from_secs(24 * 3600),
            rescore_chunk: 10000,
            sweep_interval: Some(std::time::Duration::from_secs(300)),
            rate_limit: Some(2000),
            scheduler_interval: std::time::Duration::from_secs(60),
            delivery_backoff: std::time::Duration::from_secs(30),
            delivery_attempts: 10,
            delivery_lease: std::time::Duration::from_secs(60),
            allow_private_webhooks: false,
            smtp_url: None,
            smtp_from: "leadscore@localhost".into(),
            workers: true,
        }
    }
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The live models; replaced whole when one is published or deleted.
    pub models: RwLock<Arc<ModelSet>>,
    pub clock: Clock,
    pub metrics: PrometheusHandle,
    pub keys: auth::KeyCache,
    pub limits: auth::RateLimiter,
    pub config: ServerConfig,
    /// Compiled automations, the outbox senders and the worker wake-ups.
    pub runtime: runtime::Runtime,
}

impl AppState {
    /// Loads the live models from the store.
    pub async fn new(store: Arc<dyn Store>, clock: Clock, config: ServerConfig) -> Result<Arc<Self>, StoreError> {
        let state = Arc::new(Self {
            store,
            models: RwLock::new(Arc::new(Vec::new())),
            clock,
            metrics: system::metrics_handle(),
            keys: auth::KeyCache::default(),
            limits: auth::RateLimiter::default(),
            runtime: runtime::Runtime::new(&config),
            config,
        });
        state.reload_models().await?;
        state.reload_automations().await?;
        Ok(state)
    }

    pub fn now(&self) -> Millis {
        (self.clock)()
    }

    pub fn models(&self) -> Arc<ModelSet> {
        self.models.read().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn model(&self, name: &str) -> Option<Arc<PublishedModel>> {
        self.models().iter().find(|m| m.name == name).cloned()
    }

    /// The model a request names, or when it names none the only live model that is not a
    /// shadow (a shadow is only ever read when named).
    pub fn named_or_only_model(&self, name: Option<&str>) -> Result<Arc<PublishedModel>, ModelChoiceError> {
        let models = self.models();
        match name {
            Some(name) => models.iter().find(|m| m.name == name).cloned().ok_or_else(|| ModelChoiceError::Unknown(name.to_string())),
            None => match models.iter().filter(|m| !m.is_shadow()).collect::<Vec<_>>().as_slice() {
                [only] => Ok((*only).clone()),
                [] => Err(ModelChoiceError::NoModel),
                _ => Err(ModelChoiceError::Several),
            },
        }
    }

    /// Re-reads the live models from the store (after a publish or delete).
    pub async fn reload_models(&self) -> Result<(), StoreError> {
        let mut set: ModelSet = Vec::new();
        for version in self.store.live_models().await? {
            match Model::parse(&version.source) {
                Ok(model) => set.push(Arc::new(PublishedModel { name: version.name, version: version.version, model, shadow_of: version.shadow_of })),
                Err(err) => {
                    tracing::error!(model = %version.name, version = version.version, error = %leadscore_store::ErrorChain(&err), "stored model no longer parses; skipped")
                }
            }
        }
        if let Ok(mut models) = self.models.write() {
            *models = Arc::new(set);
        }
        Ok(())
    }

    /// Makes sure an admin key exists. With `admin_key` given (LEADSCORE_ADMIN_KEY) that key
    /// is registered; otherwise, on a store without keys, a new one is generated and
    /// returned so the caller can show it once.
    pub async fn bootstrap_admin_key(&self, admin_key: Option<&str>) -> Result<Option<String>, StoreError> {
        let now = self.now();
        if let Some(key) = admin_key {
            let hash = auth::hash_key(key);
            if self.store.find_key_by_hash(&hash).await?.is_none() {
                match self.store.insert_key(admin_record("admin (LEADSCORE_ADMIN_KEY)", key, now)).await {
                    // Several processes starting together with the same key: one stores it.
                    Err(StoreError::Conflict(_)) if self.store.find_key_by_hash(&hash).await?.is_some() => {}
                    other => other?,
                }
            }
            return Ok(None);
        }
        if self.store.count_keys().await? > 0 {
            return Ok(None);
        }
        self.create_admin_key("admin (first start)").await.map(Some)
    }

    /// Creates a new admin key and answers it: the only time it is seen (only its hash is
    /// stored). The way back in when the first start's key is lost.
    pub async fn create_admin_key(&self, name: &str) -> Result<String, StoreError> {
        let key = auth::generate_key();
        self.store.insert_key(admin_record(name, &key, self.now())).await?;
        Ok(key)
    }
}

fn admin_record(name: &str, key: &str, now: Millis) -> ApiKeyRecord {
    ApiKeyRecord {
        id: format!("key_{}", &auth::hash_key(key)[..12]),
        name: name.into(),
        hash: auth::hash_key(key),
        prefix: key.chars().take(10).collect(),
        scopes: vec![Scope::Admin],
        created_at: now,
        revoked_at: None,
    }
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .merge(contacts::router())
        .merge(events::router())
        .merge(models::router())
        .merge(automations::router())
        .merge(deliveries::router())
        .merge(outcomes::router())
        .merge(accounts::router())
        .merge(backtest::router())
        .merge(compare::router())
        .merge(reports::router())
        .merge(settings::router())
        .merge(keys::router());
    Router::new()
        .nest("/api/v1", api)
        .merge(segment::router())
        .merge(system::router())
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method") })
        .layer(input::body_limit(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn(system::track_requests))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| ApiError::internal("an internal error occurred; see the server log").into_response()))
        .with_state(state)
}

/// How long stopping waits for the background workers once the HTTP server has stopped.
pub const WORKER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until `shutdown` resolves; resumes unfinished rescore jobs and starts the
/// background workers first. Then stops: no new connections, the requests in flight
/// answered, the workers told to stop (each finishes the step it is in) and waited for,
/// up to [`WORKER_GRACE`].
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    models::spawn_job_worker(state.clone());
    if let Some(every) = state.config.sweep_interval {
        workers::spawn_decay_sweeper(state.clone(), every);
    }
    workers::spawn_model_reloader(state.clone(), std::time::Duration::from_secs(5));
    if state.config.workers {
        runtime::spawn_workers(state.clone());
    }
    let app = router(state.clone());
    // The workers are told at once, so they stop while the last requests are answered.
    let stopping = state.runtime.shutdown.clone();
    let signal = async move {
        shutdown.await;
        stopping.cancel();
    };
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(signal).await;
    state.runtime.shutdown.cancel();
    tracing::info!("HTTP server stopped; waiting for the background workers");
    state.runtime.tasks.close();
    match tokio::time::timeout(WORKER_GRACE, state.runtime.tasks.wait()).await {
        Ok(()) => tracing::info!("background workers stopped"),
        Err(_) => tracing::warn!(still_running = state.runtime.tasks.len(), "background workers did not stop within {WORKER_GRACE:?}; leaving them"),
    }
    served
}

/// Why a request's model could not be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ModelChoiceError {
    #[error("no live model {0:?}")]
    Unknown(String),
    #[error("no live model yet: publish one first (`leadscore model apply MODEL.toml`, or PUT /api/v1/models/NAME)")]
    NoModel,
    #[error("several models are live; choose one with model=")]
    Several,
}

impl From<ModelChoiceError> for error::ApiError {
    fn from(err: ModelChoiceError) -> Self {
        match err {
            ModelChoiceError::Unknown(_) | ModelChoiceError::NoModel => error::ApiError::not_found(err.to_string()),
            ModelChoiceError::Several => error::ApiError::bad_request(err.to_string()),
        }
    }
}
