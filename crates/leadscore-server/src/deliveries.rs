//! The outbox over HTTP (F16): list deliveries by state, read one with its attempts, and
//! send one again by hand.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use leadscore_app::deliveries::{self, DeliveryView};

use crate::AppState;
use crate::auth::{CanAdmin, CanRead};
use crate::error::ApiResult;
use crate::input::Query;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/deliveries", get(list_deliveries)).route("/deliveries/{id}", get(get_delivery)).route("/deliveries/{id}/retry", post(retry_delivery))
}

/// A page of the outbox, newest first, with how many deliveries are in each state.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    /// Deliveries per state (pending, delivered, failed), over the whole outbox.
    pub counts: BTreeMap<String, u64>,
    pub deliveries: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    automation: Option<String>,
    limit: Option<usize>,
    /// `created_at,id` of the last delivery of the previous page.
    cursor: Option<String>,
}

async fn list_deliveries(State(state): State<Arc<AppState>>, _: CanRead, Query(query): Query<ListQuery>) -> ApiResult<Json<DeliveryList>> {
    let page = deliveries::list(&state, query.state.as_deref(), query.automation, query.limit, query.cursor.as_deref()).await?;
    Ok(Json(DeliveryList {
        counts: page.counts.into_iter().map(|(state, n)| (state.as_str().to_string(), n)).collect(),
        deliveries: page.deliveries.iter().map(DeliveryView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

async fn get_delivery(State(state): State<Arc<AppState>>, _: CanRead, Path(id): Path<String>) -> ApiResult<Json<DeliveryView>> {
    let (delivery, attempts) = deliveries::get(&state, &id).await?;
    Ok(Json(DeliveryView::with_attempts(&delivery, &attempts)))
}

async fn retry_delivery(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>) -> ApiResult<Json<DeliveryView>> {
    let delivery = deliveries::retry(&state, &id).await?;
    Ok(Json(DeliveryView::from(&delivery)))
}
