//! Native ingest over HTTP: `POST /api/v1/events` with one event or `{ "batch": [...] }`;
//! bad events are reported by index with a reason while the good ones are stored and
//! scored (by the engine) before the response.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use leadscore_app::events::{self, Rejected};
use leadscore_store::{IngestStatus, Scope};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::CanIngest;
use crate::error::{ApiError, ApiResult};
use crate::input::Body;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(ingest))
}

/// What ingesting answers: how many events were stored, which were refused and why, and
/// each stored or duplicate event's result.
#[derive(Serialize, ToSchema)]
pub struct IngestAnswer {
    /// Events stored.
    pub accepted: usize,
    /// Events already stored (same messageId): ignored.
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
    pub results: Vec<IngestResult>,
}

/// What became of one event of the batch that was not refused.
#[derive(Serialize, ToSchema)]
pub struct IngestResult {
    /// The contact it was stored for: only to keys that may read contacts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub contact: Option<String>,
    /// Its index in the batch.
    pub index: usize,
    /// stored or duplicate.
    #[schema(value_type = String)]
    pub status: IngestStatus,
}

#[utoipa::path(
    post,
    path = "/events",
    tag = "events",
    summary = "Ingest one event or {batch: [...]} (Segment shape)",
    request_body(
        content = Object,
        description = "One event `{messageId, type: track|page|identify, event, userId | anonymousId | email, properties, traits, timestamp}` \
                       or `{\"batch\": [...]}` of up to 1,000 events (4 MiB); each event is checked on its own",
    ),
    responses(
        (status = OK, description = "Every event stored (or a duplicate)", body = IngestAnswer),
        (status = MULTI_STATUS, description = "Some events refused (`rejected`), the others stored", body = IngestAnswer),
    ),
    extensions(("x-scope" = json!("ingest"))),
)]
async fn ingest(State(state): State<Arc<AppState>>, principal: CanIngest, body: Result<Body, ApiError>) -> ApiResult<(StatusCode, Json<IngestAnswer>)> {
    let body = body.map_err(|error| match error.code {
        "payload_too_large" => {
            let limit = crate::input::format_size(state.config.max_body_bytes);
            let max_batch = state.config.max_batch;
            ApiError { message: format!("{}; send at most {max_batch} events or {limit} per request", error.message), ..error }
        }
        _ => error,
    })?;
    let started = Instant::now();
    let value: Value = body.json()?;
    let now = state.now();
    let (items, single) = match value {
        Value::Object(mut object) if object.contains_key("batch") => match object.remove("batch") {
            Some(Value::Array(items)) => (items, false),
            _ => return Err(ApiError::invalid("`batch` must be a list of events")),
        },
        Value::Array(_) => {
            return Err(ApiError::invalid(r#"the body is a JSON array, but an event must be a JSON object; send several events as {"batch": [...]}"#));
        }
        other => (vec![other], true),
    };
    if items.is_empty() {
        return Err(ApiError::invalid("the batch is empty"));
    }
    if items.len() > state.config.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("a batch holds at most {} events; this one has {}", state.config.max_batch, items.len()),
        ));
    }
    let checked = events::check_batch(&state, &items, now);
    let rejected = checked.rejected;
    if single && let Some(first) = rejected.first() {
        return Err(ApiError::invalid(first.reason.clone()).with_details(json!({ "rejected": rejected })));
    }
    let outcomes = events::ingest(&state, checked.events, now, "native", principal.identity_trust()).await?;
    let accepted = outcomes.iter().filter(|o| o.status == IngestStatus::Stored).count();
    let duplicates = outcomes.len() - accepted;
    metrics::counter!("leadscore_events_rejected_total").increment(rejected.len() as u64);
    metrics::histogram!("leadscore_ingest_seconds").record(started.elapsed().as_secs_f64());
    // A key that cannot read contacts (an ingest key, safe in a web page) learns no contact
    // ids: an event for victim@bigco.com answering `"contact": "victim"` would tell anyone
    // who is a customer (issue 15.3).
    let reveal_contacts = principal.require(Scope::Read).is_ok();
    let results = outcomes
        .iter()
        .zip(checked.indexes)
        .map(|(o, index)| IngestResult { contact: reveal_contacts.then(|| o.contact_id.clone()), index, status: o.status.clone() })
        .collect();
    let status = if rejected.is_empty() { StatusCode::OK } else { StatusCode::MULTI_STATUS };
    Ok((status, Json(IngestAnswer { accepted, duplicates, rejected, results })))
}
