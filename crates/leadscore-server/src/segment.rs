//! The Segment-compatible HTTP Tracking API: `POST /v1/{track,page,screen,identify,batch}`
//! with the write key as HTTP Basic user name (or `writeKey` in the body), Segment's size
//! limits (32 KB per message, 500 KB per batch, `400` beyond), clock-skew correction from
//! `sentAt`, and `{"success": true}` answers, so existing Segment/RudderStack SDKs and
//! analytics.js can send to leadscore unchanged.

use std::convert::Infallible;
use std::sync::Arc;

use std::net::SocketAddr;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use leadscore_store::{IdentityTrust, IngestStatus, Millis, NewEvent, Scope};
use serde_json::{Map, Value, json};

use leadscore_app::events::Rejected;
use leadscore_app::identity;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::authenticate;
use crate::error::{ApiError, ApiResult, SegmentErrorBody};
use crate::input::{Body, body_limit, parse_time};
use leadscore_app::events::parse_event;

/// Segment's limits.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    // Browsers (analytics.js, the snippet) post from the customer's own site; write keys
    // are ingest-only, so any origin may send. The layer sits on each method router, which
    // has an OPTIONS route so that preflights reach the layer.
    let cors = tower_http::cors::CorsLayer::new().allow_origin(tower_http::cors::Any).allow_methods([axum::http::Method::POST]).allow_headers([
        header::CONTENT_TYPE,
        header::AUTHORIZATION,
        header::CONTENT_ENCODING,
    ]);
    let one_message = |route| for_browsers(route, MAX_MESSAGE_BYTES, &cors);
    let messages = |route| for_browsers(route, MAX_BATCH_BYTES, &cors);
    // analytics.js posts to the one-letter paths (`{apiHost}/t`, `/p`, `/i`, `/s`, `/a`,
    // `/g`, and `/b` when batching).
    OpenApiRouter::new()
        .routes(one_message(routes!(track)))
        .routes(one_message(routes!(analytics_js_track)))
        .routes(one_message(routes!(page)))
        .routes(one_message(routes!(analytics_js_page)))
        .routes(one_message(routes!(screen)))
        .routes(one_message(routes!(analytics_js_screen)))
        .routes(one_message(routes!(identify)))
        .routes(one_message(routes!(analytics_js_identify)))
        .routes(one_message(routes!(alias)))
        .routes(one_message(routes!(analytics_js_alias)))
        .routes(one_message(routes!(group)))
        .routes(one_message(routes!(analytics_js_group)))
        .routes(messages(routes!(batch)))
        .routes(messages(routes!(analytics_js_batch)))
        .routes(messages(routes!(import)))
        .routes(routes!(snippet))
}

/// A Segment route as browsers call it: a body limit, CORS, and an OPTIONS route for the
/// preflight.
fn for_browsers(route: UtoipaMethodRouter<Arc<AppState>>, limit: usize, cors: &tower_http::cors::CorsLayer) -> UtoipaMethodRouter<Arc<AppState>> {
    route.map(|methods| methods.options(preflight)).layer::<_, Infallible>(body_limit(limit)).layer::<_, Infallible>(cors.clone())
}

/// A handler of one Segment message kind at `path`.
macro_rules! message_route {
    ($handler:ident, $path:tt, $kind:tt, $summary:tt) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "segment",
            summary = $summary,
            request_body(content = Object, description = "One Segment message; the write key may come as `writeKey` in it instead of HTTP Basic (32 KB at most)"),
            responses(
                (status = OK, description = "Accepted", body = Accepted),
                (status = "4XX", description = "Refused (400 for a body over Segment's limits), with `code` and `message` at the top level too", body = SegmentErrorBody),
            ),
            security(("writeKey" = [])),
            extensions(("x-scope" = json!("ingest"))),
        )]
        async fn $handler(
            state: State<Arc<AppState>>,
            peer: Option<Extension<ConnectInfo<SocketAddr>>>,
            headers: HeaderMap,
            body: Result<Body, ApiError>,
        ) -> Result<Json<Accepted>, SegmentError> {
            single_call(state, peer, headers, body, $kind).await
        }
    };
}

/// A handler of Segment batches at `path`.
macro_rules! batch_route {
    ($handler:ident, $path:tt, $summary:tt) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "segment",
            summary = $summary,
            request_body(
                content = Object,
                description = "`{batch: [messages], sentAt?, writeKey?}` (500 KB at most, 32 KB per message); a message that cannot be used is dropped and reported in `rejected`"
            ),
            responses(
                (status = OK, description = "Accepted", body = BatchAccepted),
                (status = "4XX", description = "Refused (400 for a body over Segment's limits), with `code` and `message` at the top level too", body = SegmentErrorBody),
            ),
            security(("writeKey" = [])),
            extensions(("x-scope" = json!("ingest"))),
        )]
        async fn $handler(
            state: State<Arc<AppState>>,
            peer: Option<Extension<ConnectInfo<SocketAddr>>>,
            headers: HeaderMap,
            body: Result<Body, ApiError>,
        ) -> Result<Json<BatchAccepted>, SegmentError> {
            batch_call(state, peer, headers, body).await
        }
    };
}

message_route!(track, "/v1/track", "track", "Segment-compatible track (HTTP Basic: write key as user name)");
message_route!(analytics_js_track, "/v1/t", "track", "analytics.js track");
message_route!(page, "/v1/page", "page", "Segment-compatible page");
message_route!(analytics_js_page, "/v1/p", "page", "analytics.js page");
message_route!(screen, "/v1/screen", "screen", "Segment-compatible screen");
message_route!(analytics_js_screen, "/v1/s", "screen", "analytics.js screen");
message_route!(identify, "/v1/identify", "identify", "Segment-compatible identify");
message_route!(analytics_js_identify, "/v1/i", "identify", "analytics.js identify");
message_route!(alias, "/v1/alias", "alias", "Segment-compatible alias: previousId's contact merges into userId");
message_route!(analytics_js_alias, "/v1/a", "alias", "analytics.js alias");
message_route!(group, "/v1/group", "group", "Segment-compatible group: account_id and account_* traits");
message_route!(analytics_js_group, "/v1/g", "group", "analytics.js group");
batch_route!(batch, "/v1/batch", "Segment-compatible batch (500 KB, 32 KB per message)");
batch_route!(analytics_js_batch, "/v1/b", "analytics.js batch");
batch_route!(import, "/v1/import", "Segment-compatible import (same as batch)");

/// The website script (assets/leadscore.js): public, cacheable, no key needed to fetch it.
pub const SNIPPET: &str = include_str!("../assets/leadscore.js");

#[utoipa::path(
    get,
    path = "/js/leadscore.js",
    tag = "segment",
    summary = "The website script (page views, identify, track)",
    responses((status = OK, description = "The script", body = String, content_type = "application/javascript")),
    extensions(("x-scope" = json!("none"))),
)]
async fn snippet() -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], SNIPPET)
}

/// CORS preflights are answered by the CORS layer; the route only has to exist.
async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// What Segment's API answers to an accepted message: `{"success": true}`.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// Always true.
    pub success: bool,
}

/// What a batch answers: accepted, with the messages that were dropped and why (Segment
/// accepts a batch and drops what it cannot use, so SDKs do not send it again).
#[derive(Serialize, ToSchema)]
pub struct BatchAccepted {
    pub rejected: Vec<Rejected>,
    /// Always true.
    pub success: bool,
}

/// An error of the `/v1` routes: answered with `code` and `message` at the top level too,
/// where Segment-style SDKs read them (see [`ApiError::into_segment_response`]).
pub struct SegmentError(ApiError);

impl From<ApiError> for SegmentError {
    fn from(error: ApiError) -> Self {
        SegmentError(error)
    }
}

impl IntoResponse for SegmentError {
    fn into_response(self) -> Response {
        self.0.into_segment_response()
    }
}

/// The write key: HTTP Basic user name (password empty), else `writeKey` in the body.
fn write_key(headers: &HeaderMap, body: &Value) -> Option<String> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .map(|pair| pair.split_once(':').map_or(pair.clone(), |(user, _)| user.to_string()))
        .filter(|key| !key.is_empty());
    from_header.or_else(|| body.get("writeKey").and_then(Value::as_str).map(str::to_string))
}

/// Checks the write key, then returns the parsed body and whether the key may change who
/// a known contact is: a caller without a key learns that first, whatever the body holds.
async fn authorized_body(
    state: &AppState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    body: &Body,
) -> ApiResult<(Value, IdentityTrust)> {
    let parsed = body_json(body);
    let key = write_key(headers, parsed.as_ref().unwrap_or(&Value::Null))
        .ok_or_else(|| ApiError::unauthorized("send the write key (an ingest API key) as the HTTP Basic user name"))?;
    let principal = authenticate(state, &key, peer.map(|Extension(ConnectInfo(address))| address.ip())).await?;
    principal.require(Scope::Ingest)?;
    Ok((parsed?, principal.identity_trust()))
}

/// Segment answers 400 for bodies over its limits; so do we (axum's own answer is 413).
fn body_json(body: &Body) -> ApiResult<Value> {
    body.json::<Value>().map_err(|e| ApiError { status: StatusCode::BAD_REQUEST, ..e })
}

fn too_large(body: Result<Body, ApiError>) -> ApiResult<Body> {
    body.map_err(|e| if e.status == StatusCode::PAYLOAD_TOO_LARGE { ApiError { status: StatusCode::BAD_REQUEST, ..e } } else { e })
}

/// Turns one Segment message into an event: the type from the endpoint or the message,
/// the time corrected for the sender's clock skew when it says when it sent (Segment's
/// rule: timestamp = receivedAt − (sentAt − originalTimestamp); with a correct clock the
/// correction is only the network delay), page fields taken from `context.page` when the
/// properties lack them, and the e-mail from `context.traits`.
pub fn segment_event(message: &Value, kind: Option<&str>, batch_sent_at: Option<&str>, received_at: Millis) -> Result<NewEvent, String> {
    let Some(object) = message.as_object() else {
        return Err("a message must be a JSON object".into());
    };
    let size = message.to_string().len();
    if size > MAX_MESSAGE_BYTES {
        return Err(format!("the message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}"));
    }
    let mut object = object.clone();
    if let Some(kind) = kind {
        object.insert("type".into(), Value::String(kind.into()));
    }
    let stamped = ["timestamp", "originalTimestamp"].iter().find_map(|key| object.get(*key).and_then(Value::as_str).map(str::to_string));
    if let Some(original) = stamped {
        let original = parse_time(&original)?;
        let sent_at = object.get("sentAt").and_then(Value::as_str).or(batch_sent_at).map(parse_time).transpose()?;
        let corrected = match sent_at {
            Some(sent_at) => received_at - (sent_at - original),
            None => original,
        };
        object.insert("timestamp".into(), Value::String(crate::input::format_time(corrected)));
    }
    let is_page = matches!(object.get("type").and_then(Value::as_str), Some("page" | "screen"));
    if is_page && let Some(page) = object.get("context").and_then(|c| c.get("page")).and_then(Value::as_object).cloned() {
        let properties = object.entry("properties").or_insert_with(|| Value::Object(Map::new()));
        if let Some(properties) = properties.as_object_mut() {
            for field in ["path", "url", "title", "referrer", "search"] {
                if let Some(value) = page.get(field).filter(|v| !v.is_null()) {
                    properties.entry(field).or_insert_with(|| value.clone());
                }
            }
        }
    }
    // RudderStack's SDKs send identify traits in `context.traits` only.
    let is_identify = object.get("type").and_then(Value::as_str) == Some("identify");
    if is_identify
        && object.get("traits").is_none_or(Value::is_null)
        && let Some(traits) = object.get("context").and_then(|c| c.get("traits")).filter(|t| t.is_object()).cloned()
    {
        object.insert("traits".into(), traits);
    }
    if object.get("email").is_none() {
        let email = object.get("context").and_then(|c| c.get("traits")).and_then(|t| t.get("email")).cloned();
        if let Some(email) = email.filter(Value::is_string) {
            object.insert("email".into(), email);
        }
    }
    parse_event(&Value::Object(object), received_at)
}

/// What a Segment message asks for: an event to store, or an identity change.
enum Message {
    Event(NewEvent),
    /// `alias`: the contact known as `previous_id` is the person `user_id`.
    Alias {
        previous_id: String,
        user_id: String,
    },
    /// `group`: the contact belongs to the account `group_id` (with its traits).
    Group {
        contact_id: String,
        group_id: String,
        traits: Map<String, Value>,
    },
}

fn message_kind(message: &Value, kind: Option<&str>) -> Option<String> {
    kind.map(str::to_string).or_else(|| message.get("type").and_then(Value::as_str).map(str::to_string))
}

fn id_field(message: &Value, key: &str) -> Option<String> {
    match message.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn segment_message(state: &AppState, message: &Value, kind: Option<&str>, batch_sent_at: Option<&str>, received_at: Millis) -> Result<Message, String> {
    match message_kind(message, kind).as_deref() {
        Some("alias") => {
            let previous_id = id_field(message, "previousId").ok_or("an alias needs `previousId`")?;
            let user_id = id_field(message, "userId").ok_or("an alias needs `userId`")?;
            Ok(Message::Alias { previous_id, user_id })
        }
        Some("group") => {
            let group_id = id_field(message, "groupId").ok_or("a group call needs `groupId`")?;
            let contact_id = match (id_field(message, "userId"), id_field(message, "anonymousId")) {
                (Some(user), _) => user,
                (None, Some(anonymous)) => format!("anon:{anonymous}"),
                (None, None) => return Err("a group call needs `userId` or `anonymousId`".into()),
            };
            let traits = message.get("traits").and_then(Value::as_object).cloned().unwrap_or_default();
            Ok(Message::Group { contact_id, group_id, traits })
        }
        _ => {
            // Checked after the sentAt correction: a sender whose whole clock runs ahead is
            // corrected, only a timestamp that is itself far ahead is refused.
            let event = segment_event(message, kind, batch_sent_at, received_at)?;
            leadscore_app::events::check_not_ahead(event.timestamp, received_at, state.engine.config.max_future_skew)?;
            Ok(Message::Event(event))
        }
    }
}

/// Carries out alias and group calls, after the batch's events are stored (so a visitor's
/// page views of the same batch are merged too). alias: the contact known as `previousId`
/// (that id, else the anonymous visitor `anon:<previousId>`) is merged into `userId`.
/// group: the contact gets `account_id` and the group's traits as `account_<trait>`.
async fn apply_identity(state: &AppState, messages: Vec<Message>, trust: IdentityTrust) -> ApiResult<()> {
    for message in messages {
        match message {
            Message::Event(_) => {}
            Message::Alias { previous_id, user_id } => identity::alias(state, &previous_id, &user_id, trust).await?,
            Message::Group { contact_id, group_id, traits } => identity::group(state, contact_id, group_id, traits).await?,
        }
    }
    Ok(())
}

/// Splits messages into events to store and identity changes to apply after them.
fn split(messages: Vec<Message>) -> (Vec<NewEvent>, Vec<Message>) {
    let mut events = Vec::new();
    let mut identity = Vec::new();
    for message in messages {
        match message {
            Message::Event(event) => events.push(event),
            other => identity.push(other),
        }
    }
    (events, identity)
}

async fn store(state: &AppState, events: Vec<NewEvent>, trust: IdentityTrust) -> ApiResult<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let outcomes = leadscore_app::events::ingest(state, events, state.now(), "segment", trust).await?;
    let stored = outcomes.iter().filter(|o| o.status == IngestStatus::Stored).count();
    Ok(stored)
}

async fn single_call(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Body, ApiError>,
    kind: &'static str,
) -> Result<Json<Accepted>, SegmentError> {
    let body = too_large(body)?;
    let (message, trust) = authorized_body(&state, peer, &headers, &body).await?;
    let parsed = segment_message(&state, &message, Some(kind), None, state.now()).map_err(|reason| {
        metrics::counter!("leadscore_events_rejected_total", "api" => "segment").increment(1);
        ApiError::bad_request(reason)
    })?;
    let (events, identity) = split(vec![parsed]);
    store(&state, events, trust).await?;
    apply_identity(&state, identity, trust).await?;
    Ok(Json(Accepted { success: true }))
}

async fn batch_call(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Body, ApiError>,
) -> Result<Json<BatchAccepted>, SegmentError> {
    let body = too_large(body)?;
    let (value, trust) = authorized_body(&state, peer, &headers, &body).await?;
    let Some(messages) = value.get("batch").and_then(Value::as_array) else {
        return Err(ApiError::bad_request("the body needs `batch`: a list of messages").into());
    };
    let sent_at = value.get("sentAt").and_then(Value::as_str);
    let now = state.now();
    let mut parsed = Vec::with_capacity(messages.len());
    let mut rejected = Vec::new();
    let mut oversized = 0usize;
    for (index, message) in messages.iter().enumerate() {
        oversized += usize::from(message.to_string().len() > MAX_MESSAGE_BYTES);
        match segment_message(&state, message, None, sent_at, now) {
            Ok(message) => parsed.push(message),
            Err(reason) => rejected.push(Rejected { index, reason }),
        }
    }
    // An oversized message is reported like any bad one and its neighbours are stored
    // (issue 15.8: one 40 KB message lost the whole batch). Only a batch with nothing but
    // oversized messages is refused, as a single call over the limit is.
    if oversized > 0 && oversized == messages.len() {
        return Err(ApiError::bad_request(format!("every message is over {} KB", MAX_MESSAGE_BYTES / 1024))
            .with_details(json!({ "rejected": rejected }))
            .into());
    }
    let (events, identity) = split(parsed);
    if !rejected.is_empty() {
        // Segment accepts the batch and drops what it cannot use; the SDKs must not retry it.
        tracing::warn!(rejected = rejected.len(), "segment batch: messages rejected");
        metrics::counter!("leadscore_events_rejected_total", "api" => "segment").increment(rejected.len() as u64);
    }
    store(&state, events, trust).await?;
    apply_identity(&state, identity, trust).await?;
    Ok(Json(BatchAccepted { rejected, success: true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrects_clock_skew_from_sent_at() {
        let received = parse_time("2026-05-01T12:00:10Z").unwrap();
        // The client clock is 1 hour behind: it stamped the event 5 s before sending.
        let message = json!({ "userId": "u", "event": "x", "originalTimestamp": "2026-05-01T11:00:00Z", "sentAt": "2026-05-01T11:00:05Z" });
        let event = segment_event(&message, Some("track"), None, received).unwrap();
        assert_eq!(event.timestamp, parse_time("2026-05-01T12:00:05Z").unwrap());
        // A historical timestamp from a sender with a correct clock moves only by the delay.
        let message = json!({ "userId": "u", "event": "x", "timestamp": "2026-01-01T00:00:00Z", "sentAt": "2026-05-01T12:00:09Z" });
        assert_eq!(segment_event(&message, Some("track"), None, received).unwrap().timestamp, parse_time("2026-01-01T00:00:01Z").unwrap());
        // Without sentAt, the timestamp is used as is.
        let message = json!({ "userId": "u", "event": "x", "timestamp": "2026-01-01T00:00:00Z" });
        assert_eq!(segment_event(&message, Some("track"), None, received).unwrap().timestamp, parse_time("2026-01-01T00:00:00Z").unwrap());
    }

    #[test]
    fn page_fields_come_from_context() {
        let message = json!({ "anonymousId": "a1", "context": { "page": { "path": "/pricing", "url": "https://x.io/pricing", "title": "Pricing" }, "traits": { "email": "a@x.io" } } });
        let event = segment_event(&message, Some("page"), None, 0).unwrap();
        assert_eq!(event.name, "page");
        assert_eq!(event.properties["path"], "/pricing");
        assert_eq!(event.identity.email.as_deref(), Some("a@x.io"));
    }

    #[test]
    fn identify_traits_may_come_in_context() {
        // RudderStack's shape: traits in context.traits only.
        let message = json!({ "userId": "u", "context": { "traits": { "email": "r@x.io", "plan": "pro" } } });
        let event = segment_event(&message, Some("identify"), None, 0).unwrap();
        assert_eq!((event.traits["plan"].as_str(), event.identity.email.as_deref()), (Some("pro"), Some("r@x.io")));
        let message = json!({ "userId": "u", "traits": { "plan": "free" }, "context": { "traits": { "plan": "pro" } } });
        assert_eq!(segment_event(&message, Some("identify"), None, 0).unwrap().traits["plan"], "free", "top-level traits win");
        let message = json!({ "userId": "u", "event": "x", "context": { "traits": { "plan": "pro" } } });
        assert!(segment_event(&message, Some("track"), None, 0).unwrap().traits.is_empty(), "only identify takes them");
    }

    #[test]
    fn refuses_oversized_messages() {
        let message = json!({ "userId": "u", "event": "x", "properties": { "blob": "x".repeat(MAX_MESSAGE_BYTES) } });
        assert!(segment_event(&message, Some("track"), None, 0).unwrap_err().contains("the limit is"));
    }

    #[test]
    fn reads_the_write_key() {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("lsk_abc:");
        headers.insert(header::AUTHORIZATION, format!("Basic {encoded}").parse().unwrap());
        assert_eq!(write_key(&headers, &json!({})).as_deref(), Some("lsk_abc"));
        assert_eq!(write_key(&HeaderMap::new(), &json!({ "writeKey": "lsk_def" })).as_deref(), Some("lsk_def"));
        assert_eq!(write_key(&HeaderMap::new(), &json!({})), None);
    }
}
