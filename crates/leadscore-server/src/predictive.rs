//! Predictive scoring over HTTP (F21, contract §9): train a version, list the versions
//! with their evaluation (the live one marked), make a version live. The learning is the
//! engine's (`leadscore_app::predictive`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use leadscore_app::predictive::{self, PredictiveVersionView, TrainRequest};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{CanManage, CanRead};
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Path};

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(train_predictive)).routes(routes!(list_predictive_models)).routes(routes!(promote_predictive_model))
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
