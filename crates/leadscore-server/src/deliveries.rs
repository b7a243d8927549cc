//! The outbox over HTTP (F16): list deliveries by state, read one with its attempts, and
//! send one again by hand.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::input::Path;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use leadscore_app::deliveries::{self, DeliveryView};

use crate::AppState;
use crate::auth::{CanManage, CanReadSetup};
use crate::error::ApiResult;
use crate::input::Query;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_deliveries)).routes(routes!(get_delivery)).routes(routes!(retry_delivery))
}

/// A page of the outbox, newest first, with how many deliveries are in each state.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    /// Deliveries per state (pending, delivered, failed), over the whole outbox.
    pub counts: BTreeMap<String, u64>,
    pub deliveries: Vec<DeliveryView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// pending, delivered, failed (dead-lettered) or all (the default).
    state: Option<String>,
    /// Deliveries of this automation only.
    automation: Option<String>,
    /// Deliveries per page (1-1000, default 50).
    limit: Option<usize>,
    /// `created_at,id` of the last delivery of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/deliveries",
    tag = "deliveries",
    summary = "The outbox: deliveries by state (pending, delivered, failed = dead-lettered), newest first",
    params(ListQuery),
    responses((status = OK, description = "A page of the outbox", body = DeliveryList)),
    extensions(("x-scope" = json!("read"))),
)]
async fn list_deliveries(State(state): State<Arc<AppState>>, _: CanReadSetup, Query(query): Query<ListQuery>) -> ApiResult<Json<DeliveryList>> {
    let page = deliveries::list(&state, query.state.as_deref(), query.automation, query.limit, query.cursor.as_deref()).await?;
    Ok(Json(DeliveryList {
        counts: page.counts.into_iter().map(|(state, n)| (state.as_str().to_string(), n)).collect(),
        deliveries: page.deliveries.iter().map(DeliveryView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/deliveries/{id}",
    tag = "deliveries",
    summary = "A delivery with its payload and every attempt",
    params(("id" = String, Path, description = "The delivery's id (its webhook-id)")),
    responses((status = OK, description = "The delivery, with `attempt_log`", body = DeliveryView)),
    extensions(("x-scope" = json!("read"))),
)]
async fn get_delivery(State(state): State<Arc<AppState>>, _: CanReadSetup, Path(id): Path<String>) -> ApiResult<Json<DeliveryView>> {
    let (delivery, attempts) = deliveries::get(&state, &id).await?;
    Ok(Json(DeliveryView::with_attempts(&delivery, &attempts)))
}

#[utoipa::path(
    post,
    path = "/deliveries/{id}/retry",
    tag = "deliveries",
    summary = "Send a delivery again now (same webhook-id)",
    params(("id" = String, Path, description = "The delivery's id (its webhook-id)")),
    responses((status = OK, description = "The delivery, queued again", body = DeliveryView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn retry_delivery(State(state): State<Arc<AppState>>, _: CanManage, Path(id): Path<String>) -> ApiResult<Json<DeliveryView>> {
    let delivery = deliveries::retry(&state, &id).await?;
    Ok(Json(DeliveryView::from(&delivery)))
}
