//! Predictive scoring over HTTP (F21, contract §9): train a version, list the versions
//! with their evaluation (the live one marked), make a version live. The learning is the
//! engine's (`leadscore_app::predictive`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_app::predictive::{self, PredictiveVersionView, TrainRequest};
use serde::Serialize;

use crate::AppState;
use crate::auth::{CanManage, CanRead};
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Path};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/predictive/train", post(train_route))
        .route("/predictive/models", get(list_route))
        .route("/predictive/models/{version}/promote", post(promote_route))
}

/// `POST /predictive/train`: trains on every closed contact and answers the new version
/// (201), live or not; 422 with what is missing below the guard rails.
async fn train_route(State(state): State<Arc<AppState>>, _: CanManage, body: Body) -> ApiResult<(StatusCode, Json<PredictiveVersionView>)> {
    let request: TrainRequest = if body.0.iter().all(u8::is_ascii_whitespace) { TrainRequest::default() } else { body.json()? };
    let version = predictive::train(&state, request, Arc::new(|_| {})).await?;
    Ok((StatusCode::CREATED, Json(version)))
}

#[derive(Serialize)]
struct VersionList {
    /// The live version's number, if any.
    live: Option<i64>,
    models: Vec<PredictiveVersionView>,
}

async fn list_route(State(state): State<Arc<AppState>>, _: CanRead) -> ApiResult<Json<VersionList>> {
    let models = predictive::list(&state).await?;
    Ok(Json(VersionList { live: models.iter().find(|m| m.live).map(|m| m.version), models }))
}

async fn promote_route(State(state): State<Arc<AppState>>, _: CanManage, Path(version): Path<String>) -> ApiResult<Json<PredictiveVersionView>> {
    let version: i64 = version.parse().map_err(|_| ApiError::not_found(format!("no predictive model version {version:?}")))?;
    Ok(Json(predictive::promote(&state, version).await?))
}
