//! Models: publish (a new version + a background rescore), read, list, validate, delete,
//! versions. The rescore job is a loop of `rescore_step`, which tests call directly.

use std::sync::Arc;

use crate::input::Path;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leadscore_core::Model;
use leadscore_core::model::Format;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use leadscore_app::models::{self, JobView, ModelListItem, ModelVersionView, ModelView, promote, start_rescore};

use crate::AppState;
use crate::auth::{CanManage, CanRead};
use crate::error::ApiResult;
use crate::input::{Body, Query};

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(validate_model))
        .routes(routes!(get_model, put_model, delete_model))
        .routes(routes!(model_versions))
        .routes(routes!(rescore_model))
        .routes(routes!(promote_model))
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

/// What publishing a model answers: the version live now and its rescore.
#[derive(Serialize, ToSchema)]
pub struct PublishAnswer {
    pub name: String,
    /// The rescore of the new version (for an unchanged model: the latest one, if any).
    #[schema(required = true)]
    pub rescore: Option<JobView>,
    #[schema(required = true)]
    pub shadow_of: Option<String>,
    /// Present (true) when the live version already held this text: nothing was published.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
    pub version: u32,
}

/// What promoting a shadow answers: the new version of the model it shadowed.
#[derive(Serialize, ToSchema)]
pub struct PromoteAnswer {
    /// The live model that got the shadow's rules.
    pub name: String,
    /// The shadow promoted (now deleted).
    pub promoted: String,
    pub rescore: JobView,
    pub version: u32,
}

/// A rescore started by hand.
#[derive(Serialize, ToSchema)]
pub struct RescoreAnswer {
    pub rescore: JobView,
}

/// The live and shadow models.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelListItem>,
}

/// Every version of a model, oldest first.
#[derive(Serialize, ToSchema)]
pub struct ModelVersions {
    pub name: String,
    pub versions: Vec<ModelVersionView>,
}

/// Whether a model text is valid, without publishing it.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ModelValidation {
    Valid(ValidModel),
    Invalid(InvalidModel),
}

/// A valid model, summed up.
#[derive(Serialize, ToSchema)]
pub struct ValidModel {
    pub activity_rules: usize,
    /// Band names, best first.
    pub bands: Vec<String>,
    pub fit_rules: usize,
    pub name: String,
    /// Always true.
    pub valid: bool,
}

/// An invalid model: every problem, with where it is.
#[derive(Serialize, ToSchema)]
pub struct InvalidModel {
    #[schema(value_type = Vec<leadscore_app::schema::ProblemSchema>)]
    pub problems: Vec<leadscore_core::Problem>,
    /// Always false.
    pub valid: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PutQuery {
    /// Publish as a shadow of this live model (F31).
    shadow_of: Option<String>,
}

#[utoipa::path(
    put,
    path = "/models/{name}",
    tag = "models",
    summary = "Publish a new version (TOML or JSON) and rescore in the background; ?shadow_of=LIVE publishes a shadow model: scores live traffic, fires no automations, never sent out",
    params(("name" = String, Path, description = "The model's name"), PutQuery),
    request_body(
        description = "The model (contract §2) as TOML, or as the equivalent JSON (by Content-Type, else sniffed)",
        content((String = "application/toml"), (Object = "application/json")),
    ),
    responses(
        (status = CREATED, description = "Published; the rescore runs in the background", body = PublishAnswer),
        (status = OK, description = "The live version already holds this text: nothing published", body = PublishAnswer),
    ),
    extensions(("x-scope" = json!("admin"))),
)]
async fn put_model(
    State(state): State<Arc<AppState>>,
    _: CanManage,
    Path(name): Path<String>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<PublishAnswer>)> {
    let text = body.text()?;
    let (status, answer) = match models::put(&state.engine, &name, text, body_format(&headers, text), q.shadow_of).await? {
        models::Put::Unchanged(live, job) => (
            StatusCode::OK,
            PublishAnswer { name, rescore: job.as_ref().map(JobView::from), shadow_of: live.shadow_of, unchanged: true, version: live.version },
        ),
        models::Put::Published(version, job) => (
            StatusCode::CREATED,
            PublishAnswer { name, rescore: Some(JobView::from(&job)), shadow_of: version.shadow_of, unchanged: false, version: version.version },
        ),
    };
    Ok((status, Json(answer)))
}

#[utoipa::path(
    post,
    path = "/models/{name}/promote",
    tag = "models",
    summary = "Promote a shadow model: its rules become a new version of the model it shadows (rescored), the shadow is deleted",
    params(("name" = String, Path, description = "The shadow model")),
    responses((status = CREATED, description = "The new version of the live model", body = PromoteAnswer)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn promote_model(State(state): State<Arc<AppState>>, _: CanManage, Path(name): Path<String>) -> ApiResult<(StatusCode, Json<PromoteAnswer>)> {
    let version = promote(&state, &name).await?;
    let job = start_rescore(&state.engine, &version.name).await?;
    Ok((StatusCode::CREATED, Json(PromoteAnswer { name: version.name, promoted: name, rescore: JobView::from(&job), version: version.version })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct GetQuery {
    /// `source` (or `toml`): the text as published instead of the JSON view.
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/models/{name}",
    tag = "models",
    summary = "A live model, its definition and rescore progress",
    params(("name" = String, Path, description = "The model's name"), GetQuery),
    responses((
        status = OK,
        description = "The model (format=source: the text as published, as application/toml, or application/json for a model published as JSON)",
        content((ModelView = "application/json"), (String = "application/toml")),
    )),
    extensions(("x-scope" = json!("read"))),
)]
async fn get_model(State(state): State<Arc<AppState>>, _: CanRead, Path(name): Path<String>, Query(q): Query<GetQuery>) -> ApiResult<JsonOrSource<ModelView>> {
    let overview = models::overview(&state, &name).await?;
    if q.format.as_deref() == Some("source") || q.format.as_deref() == Some("toml") {
        let content_type = if overview.current.format == "json" { "application/json" } else { "application/toml" };
        return Ok(JsonOrSource::Source(([(header::CONTENT_TYPE, content_type)], overview.current.source).into_response()));
    }
    Ok(JsonOrSource::Json(ModelView::new(&overview)))
}

/// A model as JSON, or its text as published.
pub enum JsonOrSource<T> {
    Json(T),
    Source(Response),
}

impl<T: Serialize> IntoResponse for JsonOrSource<T> {
    fn into_response(self) -> Response {
        match self {
            JsonOrSource::Json(view) => Json(view).into_response(),
            JsonOrSource::Source(response) => response,
        }
    }
}

#[utoipa::path(
    get,
    path = "/models",
    tag = "models",
    summary = "Live and shadow models (shadow_of) with rescore progress",
    responses((status = OK, description = "The models", body = ModelList)),
    extensions(("x-scope" = json!("read"))),
)]
async fn list_models(State(state): State<Arc<AppState>>, _: CanRead) -> ApiResult<Json<ModelList>> {
    let models = models::list(&state).await?.iter().map(|(version, job)| ModelListItem::new(version, job.as_ref())).collect();
    Ok(Json(ModelList { models }))
}

#[utoipa::path(
    get,
    path = "/models/{name}/versions",
    tag = "models",
    summary = "Every version of a model",
    params(("name" = String, Path, description = "The model's name")),
    responses((status = OK, description = "The versions, oldest first", body = ModelVersions)),
    extensions(("x-scope" = json!("read"))),
)]
async fn model_versions(State(state): State<Arc<AppState>>, _: CanRead, Path(name): Path<String>) -> ApiResult<Json<ModelVersions>> {
    let (versions, live) = models::versions(&state, &name).await?;
    Ok(Json(ModelVersions { name, versions: versions.iter().map(|v| ModelVersionView::new(v, live)).collect() }))
}

#[utoipa::path(
    post,
    path = "/models/validate",
    tag = "models",
    summary = "Validate a model (TOML or JSON) without publishing",
    request_body(
        description = "The model (contract §2) as TOML, or as the equivalent JSON (by Content-Type, else sniffed)",
        content((String = "application/toml"), (Object = "application/json")),
    ),
    responses((status = OK, description = "Valid, or every problem with where it is", body = ModelValidation)),
    extensions(("x-scope" = json!("read"))),
)]
async fn validate_model(_: CanRead, headers: HeaderMap, body: Body) -> ApiResult<Json<ModelValidation>> {
    let text = body.text()?;
    Ok(Json(match Model::parse_as(text, body_format(&headers, text)) {
        Ok(model) => ModelValidation::Valid(ValidModel {
            activity_rules: model.activity.len(),
            bands: model.bands.iter().map(|b| b.name.clone()).collect(),
            fit_rules: model.fit.len(),
            name: model.name,
            valid: true,
        }),
        Err(err) => ModelValidation::Invalid(InvalidModel { problems: err.problems(), valid: false }),
    }))
}

#[utoipa::path(
    delete,
    path = "/models/{name}",
    tag = "models",
    summary = "Delete a model and its scores (versions are kept); 409 while it has shadow models",
    params(("name" = String, Path, description = "The model's name")),
    responses((status = NO_CONTENT, description = "Deleted")),
    extensions(("x-scope" = json!("admin"))),
)]
async fn delete_model(State(state): State<Arc<AppState>>, _: CanManage, Path(name): Path<String>) -> ApiResult<StatusCode> {
    leadscore_app::models::delete(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/models/{name}/rescore",
    tag = "models",
    summary = "Rescore every contact under the live version",
    params(("name" = String, Path, description = "The model's name")),
    responses((status = ACCEPTED, description = "The rescore, running in the background", body = RescoreAnswer)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn rescore_model(State(state): State<Arc<AppState>>, _: CanManage, Path(name): Path<String>) -> ApiResult<(StatusCode, Json<RescoreAnswer>)> {
    let job = models::rescore(&state.engine, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(RescoreAnswer { rescore: JobView::from(&job) })))
}
