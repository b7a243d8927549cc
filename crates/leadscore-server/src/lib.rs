//! leadscore's HTTP server: routing, credentials, request parsing, the JSON error shape,
//! the Segment dialect and OpenAPI. Every use case is the engine's (`leadscore_app`); the
//! handlers parse, call it and shape the answer.

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
pub mod listen;
pub mod models;
pub mod openapi;
pub mod outcomes;
pub mod predictive;
pub mod reports;
pub mod segment;
pub mod settings;
pub mod system;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
pub use leadscore_app::{Clock, Engine, EngineConfig, ModelChoiceError, system_clock};
use leadscore_store::{Store, StoreError};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest accepted request body in bytes (event batches are the biggest).
    pub max_body_bytes: usize,
    /// Largest event batch.
    pub max_batch: usize,
    /// Requests per second allowed per API key, with bursts of twice that (None: no limit).
    pub rate_limit: Option<u32>,
    /// Timeouts and the cap on open connections.
    pub connections: listen::ConnectionLimits,
    /// The engine's settings (timeouts, workers, the outbox, SMTP).
    pub engine: EngineConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_batch: 1000,
            rate_limit: Some(2000),
            connections: listen::ConnectionLimits::default(),
            engine: EngineConfig::default(),
        }
    }
}

/// The HTTP server's state: the engine, and what only HTTP needs (the key cache, the rate
/// limiter, the metrics endpoint, the body and rate limits). Derefs to the engine, so a
/// handler passes `&state` to a use case.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: PrometheusHandle,
    pub keys: auth::KeyCache,
    pub limits: auth::RateLimiter,
    /// Failed credentials per client address.
    pub failed_auth: auth::FailedAuthLimiter,
    pub config: ServerConfig,
}

impl std::ops::Deref for AppState {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl AppState {
    /// Starts the engine (loading the live models and automations) and wraps it.
    pub async fn new(store: Arc<dyn Store>, clock: Clock, config: ServerConfig) -> Result<Arc<Self>, StoreError> {
        let engine = Engine::new(store, clock, config.engine.clone()).await?;
        Ok(Self::with_engine(engine, config))
    }

    /// Serves an engine that is already running (the CLI's commands share one).
    pub fn with_engine(engine: Arc<Engine>, config: ServerConfig) -> Arc<Self> {
        Arc::new(Self {
            engine,
            metrics: system::metrics_handle(),
            keys: auth::KeyCache::default(),
            limits: auth::RateLimiter::default(),
            failed_auth: auth::FailedAuthLimiter::default(),
            config,
        })
    }
}

/// The whole HTTP API; any other path answers the JSON 404.
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, api_only())
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

/// The API with other routes beside it, under the same limits, tracing and panic guard.
/// `pages` brings the fallback for paths that are neither (the web app's HTML 404); paths
/// under `/api/` and `/v1/` always answer the API's JSON 404.
pub fn router_with(state: Arc<AppState>, pages: Router) -> Router {
    // Every route is one the OpenAPI document describes (`openapi::routes`); any other path
    // under /api/ or /v1/ answers the API's JSON 404 (not the pages' HTML one).
    let audit = axum::middleware::from_fn_with_state(state.clone(), system::audit_changes);
    let (documented, _) = openapi::routes(|api| api.layer(audit).fallback(api_not_found)).split_for_parts();
    documented
        .route("/api/{*rest}", axum::routing::any(api_not_found))
        .route("/v1/{*rest}", axum::routing::any(api_not_found))
        .layer(axum::middleware::from_fn(error::errors_in_json_shape))
        .with_state(state.clone())
        .merge(pages)
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method") })
        .layer(input::body_limit(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn({
            let timeout = state.config.connections.body_timeout;
            move |request, next| listen::body_deadline(timeout, request, next)
        }))
        .layer(axum::middleware::from_fn(system::track_requests))
        .layer(TraceLayer::new_for_http().on_failure(log_server_error))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| ApiError::internal("an internal error occurred; see the server log").into_response()))
}

/// A 503 is a state the client is told to wait out (the database busy, full or restarting;
/// the server stopping) and is logged once, as a warning with its cause, where it arises
/// (`ApiError::from(StoreError)`). tower-http's default would log every such answer again
/// at ERROR: thousands of error lines during an outage that needs nobody. Every other
/// server error stays an error.
fn log_server_error(class: ServerErrorsFailureClass, latency: std::time::Duration, _span: &tracing::Span) {
    let latency_ms = latency.as_secs_f64() * 1000.0;
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(status = 503, latency_ms, "answered 503 unavailable")
        }
        class => tracing::error!(classification = %class, latency_ms, "response failed"),
    }
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
    serve_with(state, listener, shutdown, api_only()).await
}

/// No pages: any path that is not the API's answers the API's JSON 404.
fn api_only() -> Router {
    Router::new().fallback(api_not_found)
}

/// [`serve`], with more routes on the same port (the web app's pages, which the binary
/// wires in: the API does not know them).
pub async fn serve_with(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    pages: Router,
) -> std::io::Result<()> {
    let engine = state.engine.clone();
    leadscore_app::models::spawn_job_worker(engine.clone());
    if let Some(every) = engine.config.sweep_interval {
        leadscore_app::workers::spawn_decay_sweeper(engine.clone(), every);
        leadscore_app::workers::spawn_predictive_sweeper(engine.clone(), every);
    }
    leadscore_app::workers::spawn_model_reloader(engine.clone(), std::time::Duration::from_secs(5));
    if let Some(every) = engine.config.retrain_interval {
        leadscore_app::workers::spawn_predictive_retrainer(engine.clone(), every);
    }
    if engine.config.workers {
        leadscore_app::runtime::spawn_workers(engine);
    }
    let app = router_with(state.clone(), pages);
    // The workers are told at once, so they stop while the last requests are answered.
    let stopping = state.runtime.shutdown.clone();
    let signal = async move {
        shutdown.await;
        stopping.cancel();
    };
    let served = listen::serve_connections(listener, app, state.config.connections.clone(), signal).await;
    state.runtime.shutdown.cancel();
    tracing::info!("HTTP server stopped; waiting for the background workers");
    state.runtime.tasks.close();
    match tokio::time::timeout(WORKER_GRACE, state.runtime.tasks.wait()).await {
        Ok(()) => tracing::info!("background workers stopped"),
        Err(_) => tracing::warn!(still_running = state.runtime.tasks.len(), "background workers did not stop within {WORKER_GRACE:?}; leaving them"),
    }
    served
}

impl From<ModelChoiceError> for error::ApiError {
    fn from(err: ModelChoiceError) -> Self {
        error::ApiError::from(leadscore_app::AppError::from(err))
    }
}
