//! Reports over HTTP (F19): the query parameters, JSON or CSV; the reports themselves are
//! the engine's (`leadscore_app::reports`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use leadscore_app::reports::*;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::CanRead;
use crate::error::{ApiError, ApiResult};
use crate::input::Query;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(report_brackets))
        .routes(routes!(report_predictive))
        .routes(routes!(report_accuracy))
        .routes(routes!(report_distribution))
        .routes(routes!(report_sources))
        .routes(routes!(report_feedback))
        .routes(routes!(report_speed))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// The model (default: the only live model).
    model: Option<String>,
    /// Outcomes from this instant (RFC 3339).
    from: Option<String>,
    /// Outcomes before this instant (RFC 3339).
    to: Option<String>,
    /// Comma-separated bracket edges (brackets only).
    edges: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// Histogram bins (distribution only; default 10).
    bins: Option<usize>,
    /// The source attribute (sources only; default `source`).
    attribute: Option<String>,
    /// The speed-to-lead SLA (speed only; default 24h).
    sla: Option<String>,
}

impl ReportQuery {
    fn range(&self) -> ReportRange {
        ReportRange { model: self.model.clone(), from: self.from.clone(), to: self.to.clone() }
    }
}

fn wants_csv(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::invalid(format!("format {other:?} is not json or csv"))),
    }
}

/// A route's answer in the format asked for: the typed view as JSON, or a CSV of it.
pub enum JsonOrCsv<T> {
    Json(T),
    Csv(Response),
}

impl<T: serde::Serialize> IntoResponse for JsonOrCsv<T> {
    fn into_response(self) -> Response {
        match self {
            JsonOrCsv::Json(view) => Json(view).into_response(),
            JsonOrCsv::Csv(response) => response,
        }
    }
}

/// A CSV answer.
pub fn csv_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// `view` as JSON, or as CSV by `csv` when `wants_csv`.
fn answer<T>(wants_csv: bool, view: T, csv: impl FnOnce(&T) -> String) -> JsonOrCsv<T> {
    if wants_csv { JsonOrCsv::Csv(csv_response(csv(&view))) } else { JsonOrCsv::Json(view) }
}

#[utoipa::path(
    get,
    path = "/reports/brackets",
    tag = "reports",
    summary = "Conversion by score bracket (bands and deciles, or ?edges=), Wilson intervals, points-backwards check; ?model=&from=&to=&format=csv",
    params(ReportQuery),
    responses((status = OK, description = "The brackets report", content((BracketsReport = "application/json"), (String = "text/csv")))),
    extensions(("x-scope" = json!("read"))),
)]
async fn report_brackets(State(state): State<Arc<AppState>>, caller: CanRead, Query(q): Query<ReportQuery>) -> ApiResult<JsonOrCsv<BracketsReport>> {
    let csv = wants_csv(q.format.as_deref())?;
    let report = brackets(&state, &caller.reach, &q.range(), q.edges.as_deref()).await?;
    Ok(answer(csv, report, brackets_csv))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PredictiveReportQuery {
    /// Outcomes from this instant (RFC 3339).
    from: Option<String>,
    /// Outcomes before this instant (RFC 3339).
    to: Option<String>,
    /// Comma-separated bracket edges on the 0-100 scale (default: every ten points, and deciles).
    edges: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/reports/predictive",
    tag = "reports",
    summary = "Conversion by predictive score bracket (every ten points and deciles, or ?edges=), each contact scored by the live predictive version as of its close (else its latest status); ?from=&to=&format=csv",
    params(PredictiveReportQuery),
    responses((status = OK, description = "The predictive brackets report", content((PredictiveBracketsReport = "application/json"), (String = "text/csv")))),
    extensions(("x-scope" = json!("read"))),
)]
async fn report_predictive(
    State(state): State<Arc<AppState>>,
    caller: CanRead,
    Query(q): Query<PredictiveReportQuery>,
) -> ApiResult<JsonOrCsv<PredictiveBracketsReport>> {
    let csv = wants_csv(q.format.as_deref())?;
    let report = predictive_brackets(&state, &caller.reach, q.from.as_deref(), q.to.as_deref(), q.edges.as_deref()).await?;
    Ok(answer(csv, report, predictive_brackets_csv))
}

#[utoipa::path(
    get,
    path = "/reports/accuracy",
    tag = "reports",
    summary = "ROC AUC of the score at close, won deals in the top band, average score won vs lost; ?model=&from=&to=&format=csv",
    params(ReportQuery),
    responses((status = OK, description = "The accuracy report", content((AccuracyReport = "application/json"), (String = "text/csv")))),
    extensions(("x-scope" = json!("read"))),
)]
async fn report_accuracy(State(state): State<Arc<AppState>>, caller: CanRead, Query(q): Query<ReportQuery>) -> ApiResult<JsonOrCsv<AccuracyReport>> {
    let csv = wants_csv(q.format.as_deref())?;
    let report = accuracy(&state, &caller.reach, &q.range()).await?;
    Ok(answer(csv, report, accuracy_csv))
}

#[utoipa::path(
    get,
    path = "/reports/distribution",
    tag = "reports",
    summary = "Histogram of current totals (?bins=), contacts per band, too many/too few in the top band; ?model=&format=csv",
    params(ReportQuery),
    responses((status = OK, description = "The distribution report (CSV: the histogram)", content((DistributionReport = "application/json"), (String = "text/csv")))),
    extensions(("x-scope" = json!("read"))),
)]
async fn report_distribution(State(state): State<Arc<AppState>>, caller: CanRead, Query(q): Query<ReportQuery>) -> ApiResult<JsonOrCsv<DistributionReport>> {
    let csv = wants_csv(q.format.as_deref())?;
    let report = distribution(&state, &caller.reach, &q.range(), q.bins).await?;
    Ok(answer(csv, report, |r| rows_csv(&r.histogram, &["lower", "upper", "contacts"])))
}

#[utoipa::path(
    get,
    path = "/reports/sources",
    tag = "reports",
    summary = "Per value of a source attribute (?attribute=, default source): contacts, average score, conversion; ?model=&from=&to=&format=csv",
    params(ReportQuery),
    responses((status = OK, description = "The sources report", content((SourcesReport = "application/json"), (String = "text/csv")))),
    extensions(("x-scope" = json!("read"))),
)]
async fn report_sources(State(state): State<Arc<AppState>>, caller: CanRead, Query(q): Query<ReportQuery>) -> ApiResult<JsonOrCsv<SourcesReport>> {
    let csv = wants_csv(q.format.as_deref())?;
    let report = sources(&state, &caller.reach, &q.range(), q.attribute.as_deref()).await?;
    Ok(answer(csv, report, |r| rows_csv(&r.sources, &["source", "contacts", "average_score", "won", "lost", "conversion"])))
}

#[utoipa::path(
    get,
    path = "/reports/feedback",
    tag = "reports",
    summary = "Average sales rating by band when rated; sales cycle (created → won) median and p90 in days; ?model=&from=&to=&format=csv",
    params(ReportQuery),
    responses((status = OK, description = "The feedback report (CSV: ratings by band)", content((FeedbackReport = "application/json"), (String = "text/csv")))),
    extensions(("x-scope" = json!("read"))),
)]
async fn report_feedback(State(state): State<Arc<AppState>>, caller: CanRead, Query(q): Query<ReportQuery>) -> ApiResult<JsonOrCsv<FeedbackReport>> {
    let csv = wants_csv(q.format.as_deref())?;
    let report = feedback(&state, &caller.reach, &q.range()).await?;
    Ok(answer(csv, report, |r| rows_csv(&r.ratings_by_band, &["band", "ratings", "average_rating"])))
}

#[utoipa::path(
    get,
    path = "/reports/speed",
    tag = "reports",
    summary = "Leads that became hot in the range: hot → qualified rate (warning below 50 %), time to first sales touch (median, p90, SLA breaches per owner; ?sla=24h); ?model=&from=&to=&format=csv",
    params(ReportQuery),
    responses((status = OK, description = "The speed report (CSV: speed to lead per owner)", content((SpeedReport = "application/json"), (String = "text/csv")))),
    extensions(("x-scope" = json!("read"))),
)]
async fn report_speed(State(state): State<Arc<AppState>>, caller: CanRead, Query(q): Query<ReportQuery>) -> ApiResult<JsonOrCsv<SpeedReport>> {
    let csv = wants_csv(q.format.as_deref())?;
    let report = speed(&state, &caller.reach, &q.range(), q.sla.as_deref()).await?;
    Ok(answer(csv, report, |r| rows_csv(&r.speed, &["owner", "hot", "contacted", "median_hours", "p90_hours", "sla_breaches"])))
}
