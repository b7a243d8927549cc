//! Shadow models compared with the live model they shadow (F31). A shadow scores live
//! traffic, so unlike a backtest nothing is replayed: the outcomes recorded while both
//! models scored a contact carry both cards (what sales saw, and what the shadow would
//! have said), and today's stored cards of both give the band changes a promotion would
//! make. Same report shape as the backtest (`candidate` beside `live`), plus each side's
//! distribution.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use leadscore_app::compare::{CompareReport, compare, resolve_pair};

use crate::AppState;
use crate::auth::CanRead;
use crate::error::{ApiError, ApiResult};
use crate::input::Query;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/reports/compare", get(compare_route))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareQuery {
    /// The shadow model.
    model: String,
    /// The model to compare with [default: the one the shadow shadows].
    against: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

async fn compare_route(State(state): State<Arc<AppState>>, _: CanRead, Query(q): Query<CompareQuery>) -> ApiResult<Json<CompareReport>> {
    let (candidate, live, from, to) = resolve_pair(&state, &q.model, q.against.as_deref(), q.from.as_deref(), q.to.as_deref()).map_err(ApiError::invalid)?;
    Ok(Json(compare(&state, &candidate, &live, from, to).await?))
}
