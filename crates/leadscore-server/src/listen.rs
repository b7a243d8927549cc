//! Accepting connections, with the limits a server facing the internet needs (issue 15.1):
//! a deadline for a request's head (which is also how long an idle keep-alive connection
//! stays open), a deadline for its body, a cap on open connections with headroom kept
//! for health checks, and recovery when the process runs out of file descriptors.
//!
//! axum's own `serve` sets none of these: a socket that sends nothing, or a header a
//! byte a second, stays open for ever, and enough of them starve `/healthz`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

use crate::error::ApiError;

/// The connection limits. Defaults suit a server behind a load balancer or facing browsers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client has to send a request's head, counted from the moment the
    /// connection is ready for it: after accepting, and after each answer on a keep-alive
    /// connection (so it is also the idle timeout).
    pub header_timeout: Duration,
    /// How long a client has to send a request's whole body.
    pub body_timeout: Duration,
    /// Open connections served normally.
    pub max_connections: usize,
    /// Connections beyond `max_connections` still accepted, one request each, that answer
    /// only `/healthz` (anything else: 503 with `Retry-After`), so a health check gets
    /// through while the server is full.
    pub health_headroom: usize,
}

/// Descriptors kept out of the connection cap for everything else the process opens
/// (database files and connections, outgoing webhooks, logs).
const DESCRIPTORS_KEPT: usize = 128;

/// Open connections served normally unless configured: 2,000, or fewer when the
/// process may open fewer files, so that connections never exhaust the descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2_000;

impl Default for ConnectionLimits {
    fn default() -> Self {
        let health_headroom = 32;
        let max_connections = match descriptor_limit() {
            Some(limit) => DEFAULT_MAX_CONNECTIONS.min(limit.saturating_sub(DESCRIPTORS_KEPT + health_headroom).max(16)),
            None => DEFAULT_MAX_CONNECTIONS,
        };
        Self { header_timeout: Duration::from_secs(15), body_timeout: Duration::from_secs(30), max_connections, health_headroom }
    }
}

/// The soft limit on open files of this process (`ulimit -n`), where the system says
/// (Linux's /proc); None elsewhere or when unlimited.
pub fn descriptor_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// How long a connection on the health-check headroom may take to send its request: a
/// health check sends it at once, and a short wait keeps idle sockets from holding the
/// headroom the way they hold the normal slots.
const HEADROOM_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// What a connection may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Normal,
    /// Over the cap: one request, health checks only.
    HealthOnly,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets every
/// open connection finish the request it is in (idle ones close at once), and returns
/// when they have.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let normal = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let headroom = Arc::new(Semaphore::new(limits.health_headroom));
    // Each connection holds a receiver: a value sent on it tells them to stop, and
    // `closed()` resolves once every connection has ended and dropped its receiver.
    let (stop_sender, stop_receiver) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    wait_after_accept_error(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (permit, slot) = match normal.clone().try_acquire_owned() {
            Ok(permit) => (permit, Slot::Normal),
            Err(_) => match headroom.clone().try_acquire_owned() {
                Ok(permit) => (permit, Slot::HealthOnly),
                Err(_) => {
                    // Full, headroom too: closing at once frees the descriptor now.
                    metrics::counter!("leadscore_connections_refused_total").increment(1);
                    drop(stream);
                    continue;
                }
            },
        };
        metrics::counter!("leadscore_connections_accepted_total").increment(1);
        tokio::spawn(serve_one(stream, remote, app.clone(), limits.header_timeout, slot, permit, stop_receiver.clone()));
    }
    drop(stop_receiver);
    drop(listener);
    stop_sender.send_replace(());
    stop_sender.closed().await;
    Ok(())
}

/// How the accept loop goes on after an error. A client that gave up before being
/// accepted is its own business; anything else (out of descriptors, above all) is waited
/// out briefly, since connections closing (idle ones do within the header timeout) give
/// descriptors back.
async fn wait_after_accept_error(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(error.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset) {
        return;
    }
    metrics::counter!("leadscore_accept_errors_total").increment(1);
    tracing::error!(%error, "accepting a connection failed (out of file descriptors?); retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn serve_one(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    header_timeout: Duration,
    slot: Slot,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let service = tower::service_fn(move |mut request: Request<Incoming>| {
        let app = app.clone();
        async move {
            request.extensions_mut().insert(ConnectInfo(remote));
            let request = request.map(Body::new);
            if slot == Slot::HealthOnly && request.uri().path() != "/healthz" {
                return Ok::<Response, Infallible>(server_full());
            }
            app.oneshot(request).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    let header_timeout = if slot == Slot::Normal { header_timeout } else { header_timeout.min(HEADROOM_HEADER_TIMEOUT) };
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(slot == Slot::Normal);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => log_connection_end(result),
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            log_connection_end(connection.await);
        }
    }
    drop(permit);
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        if error.is_timeout() {
            metrics::counter!("leadscore_connections_timed_out_total").increment(1);
        }
        tracing::debug!(%error, "connection ended");
    }
}

fn server_full() -> Response {
    let mut response = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the server has too many open connections; retry shortly")
        .with_details(serde_json::json!({ "retry_after_seconds": 1 }))
        .into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Gives a request's body `timeout` to arrive whole (issue 15.1: a body sent a byte a
/// second held a connection and a task for as long as the client liked). The body still
/// streams to the route, which keeps its own size limit; past the deadline, reading it
/// fails with [`BodyTimedOut`], which the body extractor answers with `408`.
pub async fn body_deadline(timeout: Duration, request: Request, next: axum::middleware::Next) -> Response {
    if http_body::Body::is_end_stream(request.body()) {
        // No body to wait for (most GETs): no timer either.
        return next.run(request).await;
    }
    let request = request.map(|body| Body::new(DeadlineBody { inner: body, deadline: Box::pin(tokio::time::sleep(timeout)), timeout }));
    next.run(request).await
}

/// Why a body could not be read: it did not arrive within the deadline.
#[derive(Debug, thiserror::Error)]
#[error("the body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimedOut(pub Duration);

struct DeadlineBody {
    inner: Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        // Polled first, so the timer wakes this body even while the client sends nothing.
        if this.deadline.as_mut().poll(cx).is_ready() {
            metrics::counter!("leadscore_request_body_timeouts_total").increment(1);
            return std::task::Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.timeout)))));
        }
        std::pin::Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The body deadline an error, or one of its causes, reports, if any.
pub fn body_timeout_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimedOut> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(timed_out) = error.downcast_ref::<BodyTimedOut>() {
            return Some(timed_out);
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_descriptors_for_the_rest() {
        let limits = ConnectionLimits::default();
        assert!(limits.max_connections <= DEFAULT_MAX_CONNECTIONS);
        if let Some(descriptors) = descriptor_limit().filter(|d| *d > 16 + limits.health_headroom + DESCRIPTORS_KEPT) {
            assert!(limits.max_connections + limits.health_headroom + DESCRIPTORS_KEPT <= descriptors);
        }
    }
}
