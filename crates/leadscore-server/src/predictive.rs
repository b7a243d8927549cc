//! Predictive scoring over HTTP (F21, contract §9): train a version, list the versions
//! with their evaluation (the live one marked), make a version live. The learning is the
//! engine's (`leadscore_app::predictive`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use leadscore_app::predictive::{self, PredictiveVersionView, TrainRequest};
use leadscore_app::suggested::{self, SuggestedModelView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{CanManage, CanRead, CanReadSetup};
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Path, Query};

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(train_predictive))
        .routes(routes!(list_predictive_models))
        .routes(routes!(promote_predictive_model))
        .routes(routes!(suggested_model))
}

/// `POST /predictive/train`: trains on every closed contact and answers the new version
/// (201), live or not; 422 with what is missing below the guard rails.
#[utoipa::path(
    post,
    path = "/predictive/train",
    tag = "predictive",
    summary = "Train a predictive model on closed contacts {target?: won|qualified, holdout?, seed?, min_closed?, k_folds?, allow_leaky?, exclude?, live?} → the version with holdout AUC, log loss, calibration, features; 422 below the guard rails",
    request_body(content = TrainRequest, description = "Every field has a default; an empty body trains with the defaults"),
    responses((status = CREATED, description = "The version trained (live or not)", body = PredictiveVersionView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn train_predictive(State(state): State<Arc<AppState>>, _: CanManage, body: Body) -> ApiResult<(StatusCode, Json<PredictiveVersionView>)> {
    let request: TrainRequest = if body.0.iter().all(u8::is_ascii_whitespace) { TrainRequest::default() } else { body.json()? };
    let version = predictive::train(&state, request, Arc::new(|_| {})).await?;
    Ok((StatusCode::CREATED, Json(version)))
}

#[derive(Serialize, ToSchema)]
struct PredictiveVersionList {
    /// The live version's number, if any.
    #[schema(required = true)]
    live: Option<i64>,
    models: Vec<PredictiveVersionView>,
}

#[utoipa::path(
    get,
    path = "/predictive/models",
    tag = "predictive",
    summary = "Predictive model versions, newest first, with their evaluation; the live one marked",
    responses((status = OK, description = "The versions", body = PredictiveVersionList)),
    extensions(("x-scope" = json!("read"))),
)]
async fn list_predictive_models(State(state): State<Arc<AppState>>, _: CanRead) -> ApiResult<Json<PredictiveVersionList>> {
    let models = predictive::list(&state).await?;
    Ok(Json(PredictiveVersionList { live: models.iter().find(|m| m.live).map(|m| m.version), models }))
}

#[utoipa::path(
    post,
    path = "/predictive/models/{version}/promote",
    tag = "predictive",
    summary = "Make a predictive model version the live one",
    params(("version" = i64, Path, description = "The version's number")),
    responses((status = OK, description = "The version, now live", body = PredictiveVersionView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn promote_predictive_model(State(state): State<Arc<AppState>>, _: CanManage, Path(version): Path<String>) -> ApiResult<Json<PredictiveVersionView>> {
    let version: i64 = version.parse().map_err(|_| ApiError::not_found(format!("no predictive model version {version:?}")))?;
    Ok(Json(predictive::promote(&state, version).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SuggestedQuery {
    /// The live rule model the draft is backtested against and takes its bands from
    /// [default: the only one].
    against: Option<String>,
}

/// `GET /predictive/suggested`: the live predictive model's weights as a rule model draft,
/// with its backtest beside a live rule model.
#[utoipa::path(
    get,
    path = "/predictive/suggested",
    tag = "predictive",
    summary = "A rule model drafted from the live predictive model's weights (integer points per attribute value and per event), as TOML, with its backtest beside the live rule model `against`",
    params(SuggestedQuery),
    responses((status = OK, description = "The draft and its backtest", body = SuggestedModelView)),
    extensions(("x-scope" = json!("read"))),
)]
async fn suggested_model(State(state): State<Arc<AppState>>, caller: CanReadSetup, Query(q): Query<SuggestedQuery>) -> ApiResult<Json<SuggestedModelView>> {
    // A replay costs a core for a while: it counts against the same quota as backtests.
    let slot = state.quotas.replay(&caller.key_id)?;
    let view = suggested::suggest(&state, q.against.as_deref()).await?;
    drop(slot);
    Ok(Json(view))
}
