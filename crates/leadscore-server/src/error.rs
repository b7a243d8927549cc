//! The one error type of the API: `{ "error": { "code", "message", "details"? } }`
//! (on `/v1`, `code` and `message` are repeated at the top level for Segment-style SDKs).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use leadscore_store::{ErrorChain, StoreError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: None }
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// What `Retry-After` says when the database is busy, full or unreachable: long enough for
/// a lock to be released or a restart to finish, short enough not to back ingest up.
pub const RETRY_AFTER_UNAVAILABLE: u64 = 2;

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => ApiError::invalid(m),
            StoreError::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down"),
            StoreError::Stale(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("{m}; try again")),
            // Busy, full or unreachable: the client is told to come back (Retry-After), and
            // nothing was acknowledged, so a retry of the same events is safe.
            err @ StoreError::Unavailable { .. } => {
                tracing::warn!(error = %ErrorChain(&err), "the database is unavailable; answering 503");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is temporarily unavailable; retry shortly")
                    .with_details(serde_json::json!({ "retry_after_seconds": RETRY_AFTER_UNAVAILABLE }))
            }
            // The client learns only that storage failed; the log gets the whole chain,
            // down to the driver's error.
            err @ (StoreError::Backend(_) | StoreError::Database { .. }) => {
                tracing::error!(error = %ErrorChain(&err), "storage error");
                ApiError::internal("a storage error occurred; see the server log")
            }
        }
    }
}

/// Each use case's own error answers as the kind of failure it is ([`leadscore_app::AppError`]).
macro_rules! use_case_errors {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for ApiError {
            fn from(err: $error) -> Self {
                ApiError::from(leadscore_app::AppError::from(err))
            }
        }
    )*};
}

use_case_errors!(
    leadscore_app::accounts::AccountError,
    leadscore_app::automations::AutomationError,
    leadscore_app::backtest::BacktestError,
    leadscore_app::contacts::ContactError,
    leadscore_app::deliveries::DeliveryError,
    leadscore_app::keys::KeyError,
    leadscore_app::models::ModelsError,
    leadscore_app::outcomes::OutcomeError,
    leadscore_app::paging::PageError,
    leadscore_app::predictive::PredictiveError,
    leadscore_app::quota::QuotaError,
    leadscore_app::reports::ReportError,
    leadscore_app::settings::SettingsError,
    leadscore_app::users::UserError,
);

impl From<leadscore_app::AppError> for ApiError {
    fn from(err: leadscore_app::AppError) -> Self {
        use leadscore_app::AppError;
        match err {
            AppError::Invalid { message, details: None } => ApiError::invalid(message),
            AppError::Invalid { message, details: Some(details) } => ApiError::invalid(message).with_details(details),
            AppError::BadRequest(message) => ApiError::bad_request(message),
            AppError::NotFound(message) => ApiError::not_found(message),
            AppError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            AppError::Unauthorized(message) => ApiError::unauthorized(message),
            AppError::Forbidden(message) => ApiError::forbidden(message),
            AppError::Busy { message, retry_after_seconds } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", message).with_details(serde_json::json!({ "retry_after_seconds": retry_after_seconds }))
            }
            AppError::Store(err) => ApiError::from(err),
        }
    }
}

impl ApiError {
    /// The answer of the Segment-compatible `/v1` routes: the usual shape, plus `code` and
    /// `message` at the top level, which is where Segment-style SDKs read them
    /// (RudderStack's Python SDK fails with `KeyError: 'code'` without them).
    pub fn into_segment_response(self) -> Response {
        self.respond(true)
    }

    fn respond(self, top_level_fields: bool) -> Response {
        let retry_after = self.details.as_ref().and_then(|d| d.get("retry_after_seconds")).and_then(Value::as_f64);
        let error = ErrorDetail { code: self.code.to_string(), details: self.details, message: self.message };
        let mut response = if top_level_fields {
            (self.status, Json(SegmentErrorBody { code: error.code.clone(), message: error.message.clone(), error })).into_response()
        } else {
            (self.status, Json(ErrorBody { error })).into_response()
        };
        if let Some(seconds) = retry_after {
            // Retry-After for HTTP clients; x-ratelimit-reset is what analytics.js reads.
            for name in ["retry-after", "x-ratelimit-reset"] {
                if let Ok(value) = axum::http::HeaderValue::from_str(&format!("{}", seconds.ceil() as u64)) {
                    response.headers_mut().insert(name, value);
                }
            }
        }
        response
    }
}

/// The body of every error answer: `{ "error": { "code", "message", "details"? } }`.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `bad_request`, `invalid`, `not_found`, `unauthorized`, `forbidden`,
    /// `conflict`, `rate_limited`, `payload_too_large`, …
    pub code: String,
    /// More about it, by code: the problems of an invalid model, the events refused, when
    /// to retry (`retry_after_seconds`), …
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub details: Option<Value>,
    /// What went wrong, for people.
    pub message: String,
}

/// An error of the Segment-compatible `/v1` routes: the usual body, with `code` and
/// `message` at the top level too, where Segment-style SDKs read them.
#[derive(Serialize, ToSchema)]
#[schema(as = SegmentError)]
pub struct SegmentErrorBody {
    pub code: String,
    pub error: ErrorDetail,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(false)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The last line of defence for the one error shape: an error answer that is not JSON
/// (a refusal written by axum or a tower layer rather than by a handler) is rewritten into
/// `{ "error": { "code", "message" } }` with the same status and headers. Handlers and the
/// extractors of this crate answer in the shape already; this catches whatever else.
pub async fn errors_in_json_shape(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ if status.is_server_error() => "internal",
        _ => "error",
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}
