//! The model pages (contract §8, first slice): `/models` lists the rule models that score
//! contacts, `/models/{name}` shows one — its rules as published, its versions, its
//! latest rescore — and, for marketing and admins once a predictive model is live, the
//! rule model suggested from the predictive model's learned weights with its backtest
//! beside the live rules (issue 14). Everyone may read them; the suggestion is work for
//! the people who write rules. The visual rule builder, diffs and shadow comparison are
//! not built yet.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use leadscore_app::models::{self, JobView, ModelsError};
use leadscore_app::reports::AccuracyReport;
use leadscore_app::suggested::{self, SuggestedModelView};
use leadscore_app::time::format_time;
use leadscore_store::Role;
use maud::{Markup, html};
use serde::Deserialize;

use crate::pages::{Page, app_error, error_page, layout, url_encode};
use crate::{SignedIn, Web};

/// Where a rescore job stands, in words.
fn job_words(job: &JobView) -> String {
    match job.state.as_str() {
        "done" => "rescored".to_string(),
        "failed" => format!("rescore failed: {}", job.error.as_deref().unwrap_or("see the server log")),
        state => format!("rescore {state}, {:.1} %", job.percent),
    }
}

/// The rule models (`/models`): live ones and their shadows, with their versions.
pub async fn list(State(web): State<Arc<Web>>, signed: SignedIn) -> Response {
    let items = match models::list(&web.engine).await {
        Ok(items) => items,
        Err(err) => return app_error(err),
    };
    let content = html! {
        h1 { "Models" }
        p.lede { "The rule models that score contacts: each adds fit points for who a contact is and activity points for what it does." }
        @if items.is_empty() {
            section.card { p { "No model is published yet. Write one in TOML and publish it with " code { "leadscore model apply model.toml" } " or " code { "PUT /api/v1/models/{name}" } "." } }
        } @else {
            table {
                thead { tr { th scope="col" { "Model" } th scope="col" { "Version" } th scope="col" { "Scores" } th scope="col" { "Published" } th scope="col" { "Rescore" } } }
                tbody {
                    @for (version, job) in &items {
                        tr {
                            td { a href={"/models/" (url_encode(&version.name))} { (version.name) } }
                            td.num { (version.version) }
                            td { @match &version.shadow_of { Some(live) => { "in the shadow of " (live) }, None => "live" } }
                            td { (format_time(version.created_at)) }
                            td { (job.as_ref().map(|j| job_words(&JobView::from(j))).unwrap_or_else(|| "—".into())) }
                        }
                    }
                }
            }
        }
    };
    Page(StatusCode::OK, layout(Some(&signed.user), "Models", "models", content)).into_response()
}

#[derive(Deserialize)]
pub struct ModelPageQuery {
    /// Any value asks for the suggested rule model (a backtest over every outcome: only
    /// on request).
    suggest: Option<String>,
}

/// One rule model (`/models/{name}`).
pub async fn page(State(web): State<Arc<Web>>, signed: SignedIn, Path(name): Path<String>, Query(q): Query<ModelPageQuery>) -> Response {
    let (versions, live) = match models::versions(&web.engine, &name).await {
        Ok(found) => found,
        Err(ModelsError::NotFound(_)) => return error_page(StatusCode::NOT_FOUND, "There is no such model."),
        Err(err) => return app_error(err),
    };
    let Some(current) = versions.iter().rev().find(|v| Some(v.version) == live).or(versions.last()) else {
        return error_page(StatusCode::NOT_FOUND, "There is no such model.");
    };
    let published = web.engine.model(&name);
    let job = match models::overview(&web.engine, &name).await {
        Ok(overview) => overview.job.map(|job| JobView::from(&job)),
        Err(ModelsError::NotFound(_)) => None, // deleted: its versions stay for the record
        Err(err) => return app_error(err),
    };
    let writes_rules = signed.user.role != Role::Sales;
    let shadow_of = published.as_ref().and_then(|m| m.shadow_of.clone());
    let predictive = web.engine.predictive().map(|p| p.version);
    let suggestion = match (&q.suggest, writes_rules, shadow_of.is_none(), live.is_some()) {
        (Some(_), true, true, true) => Some(suggested::suggest(&web.engine, Some(&name)).await),
        _ => None,
    };
    let content = html! {
        p.crumbs { a href="/models" { "Models" } " / " (name) }
        h1 { (name) }
        p.lede {
            @match live {
                Some(version) => { "Version " (version) " is " @if let Some(live) = &shadow_of { "scoring in the shadow of " a href={"/models/" (url_encode(live))} { (live) } } @else { "live" } }
                None => { "Deleted: no version of it scores contacts." }
            }
            @if let Some(job) = &job { " · " (job_words(job)) }
        }
        @if let Some(model) = &published {
            section.scores {
                div.card { h2 { "Fit rules" } p.total { (model.model.fit.len()) } }
                div.card { h2 { "Activity rules" } p.total { (model.model.activity.len()) } }
                div.card {
                    h2 { "Bands" }
                    p { @for (i, band) in model.model.bands.iter().enumerate() { @if i > 0 { " · " } (band.name) @if let Some(min) = band.min { " ≥ " (min) } } @if model.model.bands.is_empty() { "none" } }
                }
            }
        }
        details open[published.is_some()] {
            summary { "Version " (current.version) " as published (" (current.format) ")" }
            pre.source { (current.source) }
        }
        table {
            caption { "Versions" }
            thead { tr { th scope="col" { "Version" } th scope="col" { "Published" } th scope="col" { "" } } }
            tbody {
                @for version in versions.iter().rev() {
                    tr { td.num { (version.version) } td { (format_time(version.created_at)) } td { @if Some(version.version) == live { "live" } } }
                }
            }
        }
        @if writes_rules && shadow_of.is_none() && live.is_some() {
            section.card.suggested {
                h2 { "Suggested from the predictive score" }
                @match (predictive, &suggestion) {
                    (None, _) => p { "Once a predictive model is trained on won and lost deals (" code { "leadscore train" } "), its learned weights can be turned into a rule model to read, discuss and edit, backtested beside this one." },
                    (Some(version), None) => {
                        p { "Turn predictive model v" (version) "'s learned weights into a rule model — integer points per attribute value and per event — and replay every recorded outcome under it and under " (name) ". It takes a moment on many outcomes." }
                        form method="get" action={"/models/" (url_encode(&name))} {
                            input type="hidden" name="suggest" value="1";
                            button type="submit" { "Suggest a rule model" }
                        }
                    },
                    (Some(_), Some(Err(err))) => p.problem { "No suggestion: " (err.to_string()) },
                    (Some(_), Some(Ok(view))) => (suggestion_view(&name, view)),
                }
            }
        }
    };
    Page(StatusCode::OK, layout(Some(&signed.user), &name, "models", content)).into_response()
}

fn figure(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "—".to_string(), |x| format!("{x:.digits$}"))
}

/// The draft beside the live model: the backtest's figures, the notes, the draft's text and
/// where each learned weight went.
fn suggestion_view(live_name: &str, view: &SuggestedModelView) -> Markup {
    let (live, draft): (&AccuracyReport, &AccuracyReport) = (&view.backtest.live.accuracy, &view.backtest.candidate.accuracy);
    let share = |a: &AccuracyReport| a.won_in_top_band_share.map(|s| s * 100.0);
    html! {
        p { "From predictive model v" (view.version) ", replayed over " (view.backtest.judged_contacts) " contacts with an outcome." }
        table.compare {
            caption { "Backtest: every recorded outcome, scored as it stood then" }
            thead { tr { th scope="col" { "" } th scope="col" { (live_name) " v" (view.backtest.live.version.unwrap_or_default()) " (live)" } th scope="col" { "Suggested draft" } } }
            tbody {
                tr { th scope="row" { "ROC AUC (higher ranks won deals above lost ones)" } td.num { (figure(live.roc_auc, 3)) } td.num { (figure(draft.roc_auc, 3)) } }
                tr { th scope="row" { "Average score, won" } td.num { (figure(live.average_score_won, 1)) } td.num { (figure(draft.average_score_won, 1)) } }
                tr { th scope="row" { "Average score, lost" } td.num { (figure(live.average_score_lost, 1)) } td.num { (figure(draft.average_score_lost, 1)) } }
                tr { th scope="row" { "Won deals in the top band (%)" } td.num { (figure(share(live), 1)) } td.num { (figure(share(draft), 1)) } }
                tr { th scope="row" { "Closed deals judged (won / lost)" } td.num { (live.won) " / " (live.lost) } td.num { (draft.won) " / " (draft.lost) } }
                tr {
                    th scope="row" { "Contacts outside the model's segment (not judged)" }
                    td.num { (view.backtest.live.outside_segment) }
                    td.num { (view.backtest.candidate.outside_segment) }
                }
            }
        }
        ul.notes { @for note in &view.notes { li { (note) } } }
        details open {
            summary { "The draft (TOML)" }
            p { small { "Publish it as it is with " code { "leadscore model apply draft.toml" } " (or " code { "leadscore suggest --out draft.toml" } " to write it), edit it first, or publish it in the shadow of " (live_name) " to compare on live traffic." } }
            pre.source { (view.model) }
        }
        details {
            summary { "Where each of the " (view.points.len()) " learned weights went" }
            table {
            thead { tr { th scope="col" { "Feature" } th scope="col" { "Value or step" } th scope="col" { "Points" } th scope="col" { "Rule" } } }
            tbody {
                @for points in &view.points {
                    tr {
                        td { (points.feature) }
                        td { (points.level.as_deref().or(points.per.as_deref()).unwrap_or("")) }
                        td.num { (points.points) }
                        td { (points.rule) }
                    }
                }
            }
            }
        }
    }
}
