//! Shadow models compared with the live model they shadow (F31). A shadow scores live
//! traffic, so unlike a backtest nothing is replayed: the outcomes recorded while both
//! models scored a contact carry both cards (what sales saw, and what the shadow would
//! have said), and today's stored cards of both give the band changes a promotion would
//! make. Same report shape as the backtest (`candidate` beside `live`), plus each side's
//! distribution.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use leadscore_app::compare::{CompareReport, compare, resolve_pair};

use crate::AppState;
use crate::auth::CanReadSetup;
use crate::error::{ApiError, ApiResult};
use crate::input::Query;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(report_compare))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CompareQuery {
    /// The shadow model.
    model: String,
    /// The model to compare with [default: the one the shadow shadows].
    against: Option<String>,
    /// Outcomes from this instant (RFC 3339).
    from: Option<String>,
    /// Outcomes before this instant (RFC 3339).
    to: Option<String>,
}

#[utoipa::path(
    get,
    path = "/reports/compare",
    tag = "reports",
    summary = "A shadow model beside the live model it shadows (?model=SHADOW&against=&from=&to=): brackets and accuracy on outcomes recorded while both scored, distributions, band changes today",
    params(CompareQuery),
    responses((status = OK, description = "The comparison", body = CompareReport)),
    extensions(("x-scope" = json!("read"))),
)]
async fn report_compare(State(state): State<Arc<AppState>>, _: CanReadSetup, Query(q): Query<CompareQuery>) -> ApiResult<Json<CompareReport>> {
    let (candidate, live, from, to) = resolve_pair(&state, &q.model, q.against.as_deref(), q.from.as_deref(), q.to.as_deref()).map_err(ApiError::invalid)?;
    Ok(Json(compare(&state, &candidate, &live, from, to).await?))
}
