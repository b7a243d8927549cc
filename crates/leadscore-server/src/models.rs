//! Models: publish (a new version + a background rescore), read, list, validate, delete,
//! versions. The rescore job is a loop of `rescore_step`, which tests call directly.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_core::Model;
use leadscore_core::model::Format;
use leadscore_store::{Job, ModelVersion};
use serde::Deserialize;
use serde_json::{Value, json};

use leadscore_app::models::{self, promote, start_rescore};

use crate::AppState;
use crate::auth::{CanManage, CanRead};
use crate::error::ApiResult;
use crate::input::{Body, Query, format_time};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/models", get(list_models))
        .route("/models/validate", post(validate_model))
        .route("/models/{name}", get(get_model).put(put_model).delete(delete_model))
        .route("/models/{name}/versions", get(model_versions))
        .route("/models/{name}/rescore", post(rescore_model))
        .route("/models/{name}/promote", post(promote_model))
}

pub(crate) fn body_format(headers: &HeaderMap, text: &str) -> Format {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.contains("json") {
        Format::Json
    } else if content_type.contains("toml") {
        Format::Toml
    } else {
        Format::sniff(text)
    }
}

pub fn job_json(job: &Job) -> Value {
    // Nothing to do is done once the job ends; before that (a backtest counts its work
    // once it has started) it is 0 %.
    let percent = match (job.total, job.state.as_str()) {
        (0, "done") => 100.0,
        (0, _) => 0.0,
        (total, _) => (job.done as f64 * 1000.0 / total as f64).round() / 10.0,
    };
    json!({
        "id": job.id,
        "kind": job.kind,
        "version": job.version,
        "state": job.state,
        "done": job.done,
        "total": job.total,
        "percent": percent.min(100.0),
        "started_at": format_time(job.created_at),
        "updated_at": format_time(job.updated_at),
        "error": job.error,
    })
}

fn version_json(v: &ModelVersion) -> Value {
    json!({ "name": v.name, "version": v.version, "format": v.format, "created_at": format_time(v.created_at), "shadow_of": v.shadow_of })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutQuery {
    /// Publish as a shadow of this live model (F31).
    shadow_of: Option<String>,
}

async fn put_model(
    State(state): State<Arc<AppState>>,
    _: CanManage,
    Path(name): Path<String>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let text = body.text()?;
    match models::put(&state.engine, &name, text, body_format(&headers, text), q.shadow_of).await? {
        models::Put::Unchanged(live, job) => {
            let body = json!({ "name": name, "version": live.version, "shadow_of": live.shadow_of, "unchanged": true, "rescore": job.as_ref().map(job_json) });
            Ok((StatusCode::OK, Json(body)))
        }
        models::Put::Published(version, job) => {
            Ok((StatusCode::CREATED, Json(json!({ "name": name, "version": version.version, "shadow_of": version.shadow_of, "rescore": job_json(&job) }))))
        }
    }
}

async fn promote_model(State(state): State<Arc<AppState>>, _: CanManage, Path(name): Path<String>) -> ApiResult<(StatusCode, Json<Value>)> {
    let version = promote(&state, &name).await?;
    let job = start_rescore(&state.engine, &version.name).await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": version.name, "version": version.version, "promoted": name, "rescore": job_json(&job) }))))
}

#[derive(Deserialize)]
struct GetQuery {
    format: Option<String>,
}

async fn get_model(State(state): State<Arc<AppState>>, _: CanRead, Path(name): Path<String>, Query(q): Query<GetQuery>) -> ApiResult<Response> {
    let models::ModelOverview { published, current, job, shadows } = models::overview(&state, &name).await?;
    if q.format.as_deref() == Some("source") || q.format.as_deref() == Some("toml") {
        let content_type = if current.format == "json" { "application/json" } else { "application/toml" };
        return Ok(([(header::CONTENT_TYPE, content_type)], current.source.clone()).into_response());
    }
    Ok(Json(json!({
        "name": name,
        "version": published.version,
        "description": published.model.description,
        "created_at": format_time(current.created_at),
        "format": current.format,
        "definition": published.model.definition,
        "shadow_of": published.shadow_of,
        "shadows": shadows,
        "rescore": job.as_ref().map(job_json),
    }))
    .into_response())
}

async fn list_models(State(state): State<Arc<AppState>>, _: CanRead) -> ApiResult<Json<Value>> {
    let mut items = Vec::new();
    for (version, job) in models::list(&state).await? {
        let mut item = version_json(&version);
        item["rescore"] = job.as_ref().map(job_json).unwrap_or(Value::Null);
        items.push(item);
    }
    Ok(Json(json!({ "models": items })))
}

async fn model_versions(State(state): State<Arc<AppState>>, _: CanRead, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let (versions, live) = models::versions(&state, &name).await?;
    let items: Vec<Value> = versions
        .iter()
        .map(|v| {
            let mut item = version_json(v);
            item["live"] = json!(Some(v.version) == live);
            item["source"] = json!(v.source);
            item
        })
        .collect();
    Ok(Json(json!({ "name": name, "versions": items })))
}

async fn validate_model(_: CanRead, headers: HeaderMap, body: Body) -> ApiResult<Json<Value>> {
    let text = body.text()?;
    Ok(Json(match Model::parse_as(text, body_format(&headers, text)) {
        Ok(model) => json!({
            "valid": true,
            "name": model.name,
            "fit_rules": model.fit.len(),
            "activity_rules": model.activity.len(),
            "bands": model.bands.iter().map(|b| b.name.clone()).collect::<Vec<_>>(),
        }),
        Err(err) => json!({ "valid": false, "problems": err.problems() }),
    }))
}

async fn delete_model(State(state): State<Arc<AppState>>, _: CanManage, Path(name): Path<String>) -> ApiResult<StatusCode> {
    leadscore_app::models::delete(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rescore_model(State(state): State<Arc<AppState>>, _: CanManage, Path(name): Path<String>) -> ApiResult<(StatusCode, Json<Value>)> {
    let job = models::rescore(&state.engine, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "rescore": job_json(&job) }))))
}
