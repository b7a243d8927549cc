//! The outbox over HTTP (F16): list deliveries by state, read one with its attempts, and
//! send one again by hand.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_store::runner::{Channel, Delivery, DeliveryAttempt};
use serde::Deserialize;
use serde_json::{Value, json};

use leadscore_app::deliveries;

use crate::AppState;
use crate::auth::{CanManage, CanReadSetup};
use crate::error::ApiResult;
use crate::input::{Query, format_time};

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/deliveries", get(list_deliveries)).route("/deliveries/{id}", get(get_delivery)).route("/deliveries/{id}/retry", post(retry_delivery))
}

pub fn delivery_json(delivery: &Delivery) -> Value {
    let (channel, target, extra) = match &delivery.channel {
        Channel::Webhook { url, secret_ref, body } => {
            let payload = serde_json::from_str::<Value>(body).unwrap_or_else(|_| Value::String(body.clone()));
            ("webhook", url.clone(), json!({ "secret_ref": secret_ref, "payload": payload }))
        }
        Channel::Email { to, subject, body } => ("email", to.clone(), json!({ "subject": subject, "body": body })),
    };
    let mut out = json!({
        "id": delivery.id,
        "channel": channel,
        "target": target,
        "type": delivery.event_type,
        "automation": delivery.automation,
        "run_id": delivery.run_id,
        "contact": delivery.contact_id,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.map(format_time),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": format_time(delivery.created_at),
        "updated_at": format_time(delivery.updated_at),
        "delivered_at": delivery.delivered_at.map(format_time),
    });
    if let (Some(out), Some(extra)) = (out.as_object_mut(), extra.as_object()) {
        out.extend(extra.clone());
    }
    out
}

fn attempt_json(attempt: &DeliveryAttempt) -> Value {
    json!({
        "at": format_time(attempt.at),
        "success": attempt.success,
        "status": attempt.status,
        "error": attempt.error,
        "duration_ms": attempt.duration_ms,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    automation: Option<String>,
    limit: Option<usize>,
    /// `created_at,id` of the last delivery of the previous page.
    cursor: Option<String>,
}

async fn list_deliveries(State(state): State<Arc<AppState>>, _: CanReadSetup, Query(query): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let page = deliveries::list(&state, query.state.as_deref(), query.automation, query.limit, query.cursor.as_deref()).await?;
    let (deliveries, next_cursor) = (page.deliveries, page.next_cursor);
    let counts: serde_json::Map<String, Value> = page.counts.into_iter().map(|(s, n)| (s.as_str().to_string(), json!(n))).collect();
    Ok(Json(json!({
        "deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
        "counts": counts,
    })))
}

async fn get_delivery(State(state): State<Arc<AppState>>, _: CanReadSetup, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let (delivery, attempts) = deliveries::get(&state, &id).await?;
    let mut out = delivery_json(&delivery);
    out["attempt_log"] = json!(attempts.iter().map(attempt_json).collect::<Vec<_>>());
    Ok(Json(out))
}

async fn retry_delivery(State(state): State<Arc<AppState>>, _: CanManage, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let delivery = deliveries::retry(&state, &id).await?;
    Ok(Json(delivery_json(&delivery)))
}
