//! Health, Prometheus metrics, the OpenAPI document, and per-request metrics.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::CanRead;
use crate::error::{ApiError, ErrorBody};

/// How often the recorded histogram samples are folded into their buckets.
pub const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder (metrics has one global recorder per process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let (recorder, handle) = recorder_with_upkeep(METRICS_UPKEEP_EVERY);
            // Fails only if another recorder was installed first; then ours stays unused.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A recorder whose histogram samples are folded into buckets every `every`. Built by hand
/// (the exporter's own HTTP listener is not wanted), a recorder gets no upkeep of its own:
/// every sample would stay in memory until the next scrape of `/metrics`, so a server
/// nobody scrapes would grow with every request (the soak found it: RELIABILITY.md).
pub fn recorder_with_upkeep(every: Duration) -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0])
        .map(|b| b.build_recorder())
        .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
    let handle = recorder.handle();
    let upkeep = handle.clone();
    let started = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(every);
            upkeep.run_upkeep();
        }
    });
    if let Err(err) = started {
        tracing::warn!(error = %err, "cannot start the metrics upkeep: histogram samples wait for a scrape of /metrics");
    }
    (recorder, handle)
}

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(render_metrics)).routes(routes!(openapi))
}

/// The answer of a healthy server.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Live and shadow models loaded.
    pub models: usize,
    /// Always `ok`.
    pub status: String,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    summary = "Health check",
    responses(
        (status = OK, description = "The database answers", body = Health),
        (status = SERVICE_UNAVAILABLE, description = "The database does not answer", body = ErrorBody),
    ),
    extensions(("x-scope" = json!("none"))),
)]
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.health().await {
        Ok(models) => Json(Health { models, status: "ok".into() }).into_response(),
        Err(err) => crate::error::ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("the database does not answer: {err}"))
            .into_response(),
    }
}

/// Metrics and the API description need a key like everything but health (PRODUCT.md §7);
/// Prometheus sends one with `authorization: { credentials: <read key> }`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    summary = "Prometheus metrics",
    responses((status = OK, description = "The metrics in Prometheus' text format", body = String, content_type = "text/plain")),
    extensions(("x-scope" = json!("read"))),
)]
async fn render_metrics(State(state): State<Arc<AppState>>, _: CanRead) -> Result<Response, ApiError> {
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response())
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    summary = "This document",
    responses((status = OK, description = "The OpenAPI 3.1 description of this API", body = Object)),
    extensions(("x-scope" = json!("read"))),
)]
async fn openapi(_: CanRead) -> Result<Json<&'static utoipa::openapi::OpenApi>, ApiError> {
    Ok(Json(crate::openapi::document()))
}

/// Counts requests and their latency by matched route and status.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("leadscore_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status).increment(1);
    metrics::histogram!("leadscore_http_request_seconds", "route" => route, "method" => method).record(started.elapsed().as_secs_f64());
    response
}

/// Writes the audit log (issue 15) for every change to the configuration made through the
/// API: a successful POST, PUT, PATCH or DELETE, except the data routes (events, contacts
/// and what sales record; an erasure has its own log; a backtest changes nothing). The
/// actor is the key the request's credential check accepted.
pub async fn audit_changes(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    // Inside the /api/v1 router the path comes without that prefix; the log keeps the
    // path as the client sent it.
    let route = request.uri().path().to_string();
    let path = request.extensions().get::<axum::extract::OriginalUri>().map_or_else(|| format!("/api/v1{route}"), |uri| uri.path().to_string());
    if !changes_configuration(&method, &route) {
        return next.run(request).await;
    }
    let actor = leadscore_app::audit::ActorSlot::default();
    request.extensions_mut().insert(actor.clone());
    let response = next.run(request).await;
    if response.status().is_success() {
        let who = actor.get().unwrap_or_else(|| "unknown".into());
        leadscore_app::audit::record(&state, &who, method.as_str(), &path).await;
    }
    response
}

/// `route`: the path within /api/v1.
fn changes_configuration(method: &axum::http::Method, route: &str) -> bool {
    use axum::http::Method;
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        return false;
    }
    let route = route.trim_start_matches('/');
    let data = route == "events" || route == "backtest" || route == "models/validate" || (route.starts_with("contacts") && !route.ends_with("/merge"));
    !data
}
