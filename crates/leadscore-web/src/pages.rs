//! The pages: Today, Leads, a contact, sign-in, and the error page. Each handler asks the
//! engine and renders with maud (which escapes every value it prints).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use leadscore_app::access::Reach;
use leadscore_app::contacts::{self, ContactView, LeadListQuery};
use leadscore_app::time::format_time;
use leadscore_app::{AppError, ModelChoiceError, outcomes, reports};
use leadscore_core::ScoreCard;
use leadscore_core::scorer::QUADRANTS;
use leadscore_store::{Millis, OutcomeKind, PublishedModel, Role, STATUSES, UserRecord};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::{SignedIn, Web};

/// A rendered page with its status.
pub struct Page(pub StatusCode, pub Markup);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (self.0, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], self.1.into_string()).into_response()
    }
}

const HOUR_MS: Millis = 3_600_000;
const DAY_MS: Millis = 24 * HOUR_MS;
/// A hot lead untouched for longer than this is flagged on Today.
const FIRST_TOUCH_SLA_MS: Millis = DAY_MS;

pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

pub fn layout(user: Option<&UserRecord>, title: &str, active: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · leadscore" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "leadscore" }
                    @if let Some(user) = user {
                        nav aria-label="Main" {
                            a href="/" aria-current=[(active == "today").then_some("page")] { "Today" }
                            a href="/leads" aria-current=[(active == "leads").then_some("page")] { "Leads" }
                            a href="/accounts" aria-current=[(active == "accounts").then_some("page")] { "Accounts" }
                            a href="/models" aria-current=[(active == "models").then_some("page")] { "Models" }
                            @if user.role == Role::Admin {
                                a href="/settings" aria-current=[(active == "settings").then_some("page")] { "Settings" }
                            }
                        }
                        form.signout method="post" action="/logout" {
                            span.who { (user.name.as_deref().unwrap_or(&user.email)) " · " (user.role.as_str()) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" { (content) }
            }
        }
    }
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "Cannot do that",
        StatusCode::TOO_MANY_REQUESTS => "Slow down",
        _ => "Something went wrong",
    };
    Page(
        status,
        layout(
            None,
            title,
            "",
            html! {
                section.card.error {
                    h1 { (title) }
                    p { (message) }
                    p { a href="/" { "Back to Today" } }
                }
            },
        ),
    )
    .into_response()
}

/// An engine error as a page: what the user can act on, and for storage failures only
/// that one happened (the log has the details).
pub fn app_error(err: impl Into<AppError>) -> Response {
    match err.into() {
        AppError::NotFound(message) => error_page(StatusCode::NOT_FOUND, &message),
        AppError::Invalid { message, .. } | AppError::BadRequest(message) => error_page(StatusCode::UNPROCESSABLE_ENTITY, &message),
        AppError::Conflict(message) => error_page(StatusCode::CONFLICT, &message),
        AppError::Unauthorized(message) => error_page(StatusCode::UNAUTHORIZED, &message),
        AppError::Forbidden(message) => error_page(StatusCode::FORBIDDEN, &message),
        AppError::Busy { message, .. } => error_page(StatusCode::TOO_MANY_REQUESTS, &message),
        AppError::Store(err) if err.is_transient() => {
            tracing::warn!(error = %leadscore_store::ErrorChain(&err), "page failed: the database is unavailable");
            let mut page = error_page(StatusCode::SERVICE_UNAVAILABLE, "The database is busy or unreachable just now. Try again in a moment.");
            page.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("2"));
            page
        }
        AppError::Store(err) => {
            tracing::error!(error = %leadscore_store::ErrorChain(&err), "page failed");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "The database could not answer. Try again in a moment; the server log says more.")
        }
    }
}

fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "There is no such contact, or it is not one of yours.")
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_form(Query(q): Query<LoginQuery>) -> Response {
    login_page(StatusCode::OK, "", &q.next, None)
}

pub fn login_page(status: StatusCode, email: &str, next: &str, error: Option<&str>) -> Response {
    Page(
        status,
        layout(
            None,
            "Sign in",
            "",
            html! {
                section.card.login {
                    h1 { "Sign in" }
                    @if let Some(error) = error {
                        p.alert role="alert" { (error) }
                    }
                    form method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        label for="email" { "E-mail" }
                        input id="email" name="email" type="email" autocomplete="username" required value=(email) autofocus;
                        label for="password" { "Password" }
                        input id="password" name="password" type="password" autocomplete="current-password" required;
                        button type="submit" { "Sign in" }
                    }
                }
            },
        ),
    )
    .into_response()
}

#[derive(Deserialize, Default)]
pub struct ModelQuery {
    model: Option<String>,
}

/// The model a page shows: the one named, else the only live one.
fn page_model(web: &Web, name: Option<&str>) -> Result<Arc<PublishedModel>, Box<Response>> {
    web.engine.named_or_only_model(name).map_err(|err| {
        Box::new(match err {
            ModelChoiceError::NoModel => {
                error_page(StatusCode::NOT_FOUND, "No model is live yet: publish one (leadscore model apply MODEL.toml) and its scores show here.")
            }
            other => app_error(other),
        })
    })
}

fn ago(now: Millis, at: Millis) -> String {
    let minutes = (now - at).max(0) / 60_000;
    match minutes {
        0 => "just now".into(),
        1..=59 => format!("{minutes} min ago"),
        60..=2879 => format!("{} h ago", minutes / 60),
        _ => format!("{} days ago", minutes / 1440),
    }
}

fn waited(ms: Millis) -> String {
    let hours = ms.max(0) / HOUR_MS;
    if hours < 48 { format!("{hours} h") } else { format!("{} days", hours / 24) }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}

fn band_badge(card: &ScoreCard) -> Markup {
    let band = card.band.as_deref().unwrap_or("—");
    html! { span class={"band band-" (band)} { (band) } }
}

/// The 1–5 flames as small drawn flames (no emoji font needed): lit ones in orange.
fn flames(card: &ScoreCard) -> Markup {
    const FLAME: &str = "c1 3 4 4 4 8a4 4 0 0 1-8 0c0-2 1-3 2-4 0 2 1 3 2 3c0-2-1-4 0-7z";
    html! {
        svg.flames viewBox="0 0 55 13" width="55" height="13" role="img" aria-label={(card.flames) " of 5 flames"} {
            title { (card.flames) " of 5 flames" }
            @for n in 0..5u8 {
                path d={"M" (n as u32 * 11 + 5) " 0" (FLAME)} class=(if n < card.flames { "lit" } else { "unlit" }) {}
            }
        }
    }
}

fn display_name(contact: &ContactView) -> String {
    let first = contact.attributes.get("first_name").and_then(Value::as_str);
    let last = contact.attributes.get("last_name").and_then(Value::as_str);
    match (first, last) {
        (Some(first), Some(last)) => format!("{first} {last}"),
        (Some(name), None) | (None, Some(name)) => name.to_string(),
        (None, None) => contact.email.clone().unwrap_or_else(|| contact.id.clone()),
    }
}

fn company(contact: &ContactView) -> String {
    contact.attributes.get("company").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_default()
}

/// The KPI tiles of Today.
#[derive(Clone, Copy)]
pub struct Kpis {
    new_hot_today: u64,
    hot_to_qualified: Option<f64>,
    median_speed_hours: Option<f64>,
}

/// How long Today's tiles are reused: they replay every scored contact's events, which
/// takes seconds on a large database; a few minutes old is fresh enough for a tile.
const KPI_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// How long Today waits for tiles that are not at hand; slower ones are computed in the
/// background and shown on a later visit, so the page itself stays fast.
const KPI_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Today's tiles: from the cache, else computed (in the background when that takes long;
/// None until they are ready).
async fn kpis(web: &Arc<Web>, model: &Arc<PublishedModel>, owner: Option<&str>, now: Millis) -> Option<Kpis> {
    let key = format!("{}\u{0}{}\u{0}{}", model.name, model.version, owner.unwrap_or(""));
    if let Some(kpis) = web.kpis.lock().ok().and_then(|cache| cache.get(&key).filter(|(at, _)| at.elapsed() < KPI_TTL).map(|(_, k)| *k)) {
        return Some(kpis);
    }
    let started = web.kpis_running.lock().is_ok_and(|mut running| running.insert(key.clone()));
    if !started {
        return None; // another request is computing them
    }
    let (web, model, owner) = (web.clone(), model.clone(), owner.map(str::to_string));
    let task = tokio::spawn(async move {
        let result = compute_kpis(&web, &model, owner.as_deref(), now).await;
        if let Ok(mut running) = web.kpis_running.lock() {
            running.remove(&key);
        }
        match result {
            Ok(kpis) => {
                if let Ok(mut cache) = web.kpis.lock() {
                    if cache.len() > 1000 {
                        cache.clear();
                    }
                    cache.insert(key, (std::time::Instant::now(), kpis));
                }
                Some(kpis)
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot compute Today's tiles");
                None
            }
        }
    });
    tokio::time::timeout(KPI_WAIT, task).await.ok().and_then(Result::ok).flatten()
}

async fn compute_kpis(web: &Web, model: &PublishedModel, owner: Option<&str>, now: Millis) -> Result<Kpis, AppError> {
    // A rep's tiles are their own leads' figures: the pool's leads are nobody's work yet.
    let reach = owner.map_or(Reach::Everyone, |owner| Reach::Own { owner: owner.to_string(), pool: false });
    let start_of_day = now - now.rem_euclid(DAY_MS);
    let today = reports::speed_report(&web.engine, &reach, model, start_of_day, now + 1, FIRST_TOUCH_SLA_MS).await?;
    let month = reports::speed_report(&web.engine, &reach, model, now - 30 * DAY_MS, now + 1, FIRST_TOUCH_SLA_MS).await?;
    // The first row counts every lead of the report, which is the reach's.
    let everyone = |report: &reports::SpeedReport| report.speed.first().cloned();
    Ok(Kpis {
        new_hot_today: everyone(&today).map_or(0, |r| r.hot),
        hot_to_qualified: month.hot_to_qualified,
        median_speed_hours: everyone(&month).and_then(|r| r.median_hours),
    })
}

/// Today (`/`): the leads to call now — the top band, best first, closed deals left out,
/// a sales user's own — with the hot leads that waited longest for a first touch flagged.
pub async fn today(State(web): State<Arc<Web>>, signed: SignedIn, Query(q): Query<ModelQuery>) -> Response {
    let model = match page_model(&web, q.model.as_deref()) {
        Ok(model) => model,
        Err(page) => return *page,
    };
    let owner = (signed.user.role == Role::Sales).then(|| signed.user.email.clone());
    let top_band = model.model.bands.first().map(|b| b.name.clone());
    let query = LeadListQuery {
        model: Some(model.name.clone()),
        band: top_band.clone(),
        open: Some(true),
        limit: Some(25),
        reach: signed.reach(&web),
        ..LeadListQuery::default()
    };
    let started = std::time::Instant::now();
    let page = match contacts::lead_list(&web.engine, query).await {
        Ok(page) => page,
        Err(err) => return app_error(err),
    };
    let listed = started.elapsed();
    let now = web.engine.now();
    let mut rows = Vec::with_capacity(page.contacts.len());
    for contact in &page.contacts {
        // The wait for a first touch counts for a lead nobody has worked yet.
        let waiting = if contact.status.as_deref().is_none_or(|s| s == "new") {
            match contacts::became_hot_at(&web.engine, contact, &model).await {
                Ok(at) => at.map(|at| now - at),
                Err(err) => return app_error(err),
            }
        } else {
            None
        };
        match contacts::view(&web.engine, contact, None).await {
            Ok(view) => rows.push((view, waiting)),
            Err(err) => return app_error(err),
        }
    }
    let rows_done = started.elapsed();
    let kpis = kpis(&web, &model, owner.as_deref(), now).await;
    tracing::debug!(
        listed_ms = listed.as_millis() as u64,
        rows_ms = rows_done.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "today page"
    );
    let figure = |value: Option<String>| value.unwrap_or_else(|| "—".into());
    let longest: Vec<Millis> = {
        let mut waits: Vec<Millis> = rows.iter().filter_map(|(_, w)| *w).collect();
        waits.sort_unstable_by(|a, b| b.cmp(a));
        waits.into_iter().take(3).collect()
    };
    let content = html! {
        h1 { "Today" }
        p.lede {
            @if owner.is_some() { "Your " } @else { "The " }
            (top_band.as_deref().unwrap_or("top")) " leads under " strong { (model.name) } ", best first; won, lost and disqualified deals are left out."
        }
        section.kpis aria-label="Key figures" {
            @if let Some(kpis) = kpis {
                div.kpi { span.value { (kpis.new_hot_today) } span.label { "new " (top_band.as_deref().unwrap_or("top")) " leads today" } }
                div.kpi {
                    span.value { (figure(kpis.hot_to_qualified.map(|rate| format!("{:.0} %", rate * 100.0)))) }
                    span.label { "hot → qualified, last 30 days" }
                }
                div.kpi {
                    span.value { (figure(kpis.median_speed_hours.map(|hours| format!("{hours:.1} h")))) }
                    span.label { "median speed to lead, last 30 days" }
                }
            } @else {
                div.kpi { span.value { "…" } span.label { "The key figures are being worked out; they show when you reload in a minute." } }
            }
        }
        @if rows.is_empty() {
            section.card { p { "No " (top_band.as_deref().unwrap_or("top")) " leads to call right now." @if owner.is_some() { " Leads assigned to you show here." } } }
        } @else {
            table.leads.today {
                caption { "Leads to call now" }
                thead { tr { th scope="col" { "Lead" } th scope="col" { "Company" } th scope="col" { "Score" } th scope="col" { "Band" } th scope="col" { "Status" } th scope="col" { "First touch" } } }
                tbody {
                    @for (contact, waiting) in &rows {
                        @let card = contact.scores.get(&model.name).map(|c| &c.card);
                        @let flagged = waiting.is_some_and(|w| w > FIRST_TOUCH_SLA_MS && longest.contains(&w));
                        tr class=[flagged.then_some("flagged")] {
                            td { a href={"/contacts/" (url_encode(&contact.id))} { (display_name(contact)) } br; small { (contact.email.as_deref().unwrap_or("")) } }
                            td { (company(contact)) }
                            td.num { @if let Some(card) = card { (number(card.total)) " " (flames(card)) } }
                            td { @if let Some(card) = card { (band_badge(card)) } }
                            td { (contact.status.as_deref().unwrap_or("new")) }
                            td {
                                @match waiting {
                                    Some(w) if flagged => { strong.flag { "waiting " (waited(*w)) } }
                                    Some(w) => { "waiting " (waited(*w)) }
                                    None => { "touched" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Page(StatusCode::OK, layout(Some(&signed.user), "Today", "today", content)).into_response()
}

#[derive(Deserialize, Default)]
pub struct LeadsQuery {
    model: Option<String>,
    band: Option<String>,
    status: Option<String>,
    group: Option<String>,
    owner: Option<String>,
    quadrant: Option<String>,
    source: Option<String>,
    /// Search: e-mail, name or company.
    q: Option<String>,
    sort: Option<String>,
    /// Only leads whose predictive score is at least this (0-100).
    predictive_min: Option<String>,
    cursor: Option<String>,
    format: Option<String>,
    /// `quadrants`: the fit × activity matrix instead of the list.
    view: Option<String>,
    /// How many leads the last bulk action changed (shown once after it).
    changed: Option<usize>,
}

fn empty_is_none(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// A link to the lead list with the current filters, plus `extra` pairs, without the
/// filters named in the second argument.
type LeadsLink<'a> = dyn Fn(&[(&str, &str)], &[&str]) -> String + Sync + 'a;

/// Leads per quadrant in the quadrant view.
const QUADRANT_VIEW_LEADS: usize = 8;

/// The lead list (`/leads`): filters by band, status, group, owner, quadrant and source,
/// search by name, e-mail or company, sorted by any score, a page at a time, the page as
/// CSV, the fit × activity quadrant view, and bulk actions on chosen leads (marketing,
/// admin). A sales user sees their own (and the unassigned pool when the server allows it).
pub async fn leads(State(web): State<Arc<Web>>, signed: SignedIn, Query(q): Query<LeadsQuery>) -> Response {
    let model = match page_model(&web, q.model.as_deref().filter(|m| !m.is_empty())) {
        Ok(model) => model,
        Err(page) => return *page,
    };
    let reach = signed.reach(&web);
    let sales = signed.user.role == Role::Sales;
    let quadrant_view = q.view.as_deref() == Some("quadrants");
    let predictive_live = web.engine.predictive().is_some();
    let predictive_min = match empty_is_none(q.predictive_min.clone()).map(|text| text.trim().parse::<u8>()) {
        None => None,
        Some(Ok(min)) if min <= 100 => Some(min),
        Some(_) => return error_page(StatusCode::BAD_REQUEST, "The predictive score runs from 0 to 100."),
    };
    let query = LeadListQuery {
        model: Some(model.name.clone()),
        sort: empty_is_none(q.sort.clone()),
        predictive_min,
        band: empty_is_none(q.band.clone()),
        group: empty_is_none(q.group.clone()),
        owner: if sales { None } else { empty_is_none(q.owner.clone()) },
        status: empty_is_none(q.status.clone()),
        quadrant: empty_is_none(q.quadrant.clone()),
        source: empty_is_none(q.source.clone()),
        search: empty_is_none(q.q.clone()),
        limit: Some(50),
        cursor: empty_is_none(q.cursor.clone()),
        reach,
        ..LeadListQuery::default()
    };
    let filters: Vec<(&str, String)> = [
        ("model", Some(model.name.clone())),
        ("q", empty_is_none(q.q.clone())),
        ("band", empty_is_none(q.band.clone())),
        ("status", empty_is_none(q.status.clone())),
        ("group", empty_is_none(q.group.clone())),
        ("owner", if sales { None } else { empty_is_none(q.owner.clone()) }),
        ("quadrant", empty_is_none(q.quadrant.clone())),
        ("source", empty_is_none(q.source.clone())),
        ("sort", empty_is_none(q.sort.clone())),
        ("predictive_min", predictive_min.map(|min| min.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let link = |extra: &[(&str, &str)], without: &[&str]| {
        let pairs: Vec<String> = filters
            .iter()
            .filter(|(k, _)| !without.contains(k))
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .chain(extra.iter().map(|(k, v)| format!("{k}={}", url_encode(v))))
            .collect();
        format!("/leads?{}", pairs.join("&"))
    };
    let body = if quadrant_view {
        match quadrant_matrix(&web, &model, &query, &link).await {
            Ok(matrix) => matrix,
            Err(err) => return app_error(err),
        }
    } else {
        let page = match contacts::lead_list(&web.engine, query).await {
            Ok(page) => page,
            Err(err) => return app_error(err),
        };
        let mut views = Vec::with_capacity(page.contacts.len());
        for contact in &page.contacts {
            match contacts::view(&web.engine, contact, None).await {
                Ok(view) => views.push(view),
                Err(err) => return app_error(err),
            }
        }
        if q.format.as_deref() == Some("csv") {
            return leads_csv(&model.name, &views);
        }
        let reps = if sales { Vec::new() } else { sales_reps(&web).await };
        let next = page.next_cursor.as_deref().map(|next| link(&[("cursor", next)], &[]));
        lead_table(&model, &views, predictive_live, !sales, &reps, &link(&[], &[]), next)
    };
    let sort = q.sort.clone().unwrap_or_default();
    let content = html! {
        h1 { "Leads" }
        @if let Some(changed) = q.changed {
            p.card.notice role="status" { "Changed " (changed) " lead" @if changed != 1 { "s" } "." }
        }
        form.filters method="get" action="/leads" role="search" {
            input type="hidden" name="model" value=(model.name);
            @if quadrant_view { input type="hidden" name="view" value="quadrants"; }
            label { "Search " input type="search" name="q" value=(q.q.clone().unwrap_or_default()) placeholder="name, e-mail, company" size="20"; }
            label { "Band " select name="band" { option value="" { "any" } @for band in &model.model.bands { option value=(band.name) selected[q.band.as_deref() == Some(band.name.as_str())] { (band.name) } } } }
            label { "Status " select name="status" { option value="" { "any" } @for status in STATUSES { option value=(status) selected[q.status.as_deref() == Some(*status)] { (status) } } } }
            @if model.model.quadrant.is_some() && !quadrant_view {
                label { "Quadrant " select name="quadrant" { option value="" { "any" } @for quadrant in QUADRANTS { option value=(quadrant) selected[q.quadrant.as_deref() == Some(quadrant)] { (quadrant) } } } }
            }
            label { "Group " input type="text" name="group" value=(q.group.clone().unwrap_or_default()) size="10"; }
            label { "Source " input type="text" name="source" value=(q.source.clone().unwrap_or_default()) size="10"; }
            @if !sales {
                label { "Owner " input type="text" name="owner" value=(q.owner.clone().unwrap_or_default()) size="16"; }
            }
            @if predictive_live {
                label { "Predictive at least " input type="number" name="predictive_min" min="0" max="100" value=(predictive_min.map(|m| m.to_string()).unwrap_or_default()) size="3"; }
            }
            label { "Sort " select name="sort" {
                @for (value, label) in [("-total", "total, best first"), ("-fit", "fit, best first"), ("-activity", "activity, best first"), ("total", "total, lowest first")] {
                    option value=(value) selected[sort == value] { (label) }
                }
                @if predictive_live {
                    option value="-predictive" selected[sort == "-predictive"] { "predictive, best first" }
                }
            } }
            button type="submit" { "Show" }
            @if !quadrant_view { a.csv href=(link(&[("format", "csv")], &[])) { "Download CSV" } }
        }
        @if model.model.quadrant.is_some() {
            p.views {
                "View: "
                @if quadrant_view {
                    a href=(link(&[], &[])) { "list" } " · " strong { "quadrants" }
                } @else {
                    strong { "list" } " · " a href=(link(&[("view", "quadrants")], &["quadrant"])) { "quadrants" }
                }
            }
        }
        (body)
    };
    Page(StatusCode::OK, layout(Some(&signed.user), "Leads", "leads", content)).into_response()
}

/// The sales reps, for the bulk "assign owner" choice.
async fn sales_reps(web: &Web) -> Vec<String> {
    match leadscore_app::users::list_users(&web.engine).await {
        Ok(users) => users.into_iter().filter(|u| u.role == Role::Sales && !u.disabled).map(|u| u.email).collect(),
        Err(err) => {
            tracing::warn!(error = %err, "the users could not be listed for the bulk owner choice");
            Vec::new()
        }
    }
}

/// The lead list's table; for marketing and admins, a form around it with a checkbox per
/// lead and the bulk actions (assign an owner, add a group).
fn lead_table(model: &PublishedModel, views: &[ContactView], predictive: bool, bulk: bool, reps: &[String], back: &str, next: Option<String>) -> Markup {
    let table = html! {
        table.leads.list {
            caption { "Leads under " (model.name) }
            thead { tr {
                th scope="col" { "Lead" } th.wide scope="col" { "Company" } th scope="col" { "Total" } th.wide scope="col" { "Fit" } th.wide scope="col" { "Activity" }
                th scope="col" { "Band" } th.wide scope="col" { "Grade" } th.wide scope="col" { "Quadrant" }
                @if predictive { th.wide scope="col" title="The predictive score: the chance, learned from won and lost deals, in percent" { "Predictive" } }
                th scope="col" { "Status" } th.wide scope="col" { "Owner" }
            } }
            tbody {
                @for contact in views {
                    @let card = contact.scores.get(&model.name).map(|c| &c.card);
                    tr {
                        td {
                            @if bulk {
                                input type="checkbox" name="id" value=(contact.id) aria-label={"Choose " (display_name(contact))};
                                " "
                            }
                            a href={"/contacts/" (url_encode(&contact.id))} { (display_name(contact)) } br; small { (contact.email.as_deref().unwrap_or("")) }
                        }
                        td.wide { (company(contact)) }
                        @if let Some(card) = card {
                            td.num { (number(card.total)) " " (flames(card)) } td.num.wide { (number(card.fit)) } td.num.wide { (number(card.activity)) }
                            td { (band_badge(card)) } td.wide { (card.grade.as_deref().unwrap_or("—")) } td.wide { (card.quadrant.as_deref().unwrap_or("—")) }
                        } @else {
                            td colspan="6" { "not scored" }
                        }
                        @if predictive {
                            td.num.wide { @if let Some(p) = &contact.predictive { (p.score) } @else { "—" } }
                        }
                        td { (contact.status.as_deref().unwrap_or("new")) }
                        td.wide.owner { (contact.owner.as_deref().unwrap_or("—")) }
                    }
                }
            }
        }
    };
    html! {
        @if views.is_empty() {
            section.card { p { "No leads match." } }
        } @else if bulk {
            form.bulk method="post" action="/leads/bulk" {
                input type="hidden" name="back" value=(back);
                fieldset {
                    legend { "With the chosen leads" }
                    label { "Assign owner " select name="owner" {
                        option value="" { "keep" }
                        @for rep in reps { option value=(rep) { (rep) } }
                        option value="-" { "nobody (unassign)" }
                    } }
                    label { "Add group " input type="text" name="add_group" size="12"; }
                    button type="submit" { "Apply to chosen" }
                }
                (table)
            }
        } @else {
            (table)
        }
        @if let Some(next) = next {
            p.pager { a href=(next) rel="next" { "Next page →" } }
        }
    }
}

/// The fit × activity matrix: the best leads of each quadrant side by side, each with a
/// link to the whole quadrant in the list.
async fn quadrant_matrix(web: &Web, model: &PublishedModel, query: &LeadListQuery, link: &LeadsLink<'_>) -> Result<Markup, AppError> {
    let Some(split) = &model.model.quadrant else {
        return Ok(html! { section.card { p { "Model " (model.name) " has no quadrant thresholds (`quadrant = { fit, activity }`)." } } });
    };
    let mut cells = Vec::with_capacity(QUADRANTS.len());
    for quadrant in QUADRANTS {
        let asked = LeadListQuery { quadrant: Some(quadrant.to_string()), limit: Some(QUADRANT_VIEW_LEADS), cursor: None, ..query.clone() };
        let page = contacts::lead_list(&web.engine, asked).await?;
        let mut views = Vec::with_capacity(page.contacts.len());
        for contact in &page.contacts {
            views.push(contacts::view(&web.engine, contact, None).await?);
        }
        cells.push((quadrant, views, page.next_cursor.is_some()));
    }
    Ok(html! {
        p.lede { "Fit at least " (number(split.fit)) " is high fit; activity at least " (number(split.activity)) " is high activity." }
        div.quadrants {
            @for (quadrant, views, more) in &cells {
                section.card.quadrant aria-labelledby={"q-" (quadrant.replace(' ', "-"))} {
                    h2 id={"q-" (quadrant.replace(' ', "-"))} { (quadrant) }
                    @if views.is_empty() {
                        p.unscored { "No leads." }
                    } @else {
                        ol {
                            @for contact in views {
                                @let card = contact.scores.get(&model.name).map(|c| &c.card);
                                li {
                                    a href={"/contacts/" (url_encode(&contact.id))} { (display_name(contact)) }
                                    @if let Some(card) = card { " " small { (number(card.total)) " (fit " (number(card.fit)) ", activity " (number(card.activity)) ")" } }
                                }
                            }
                        }
                    }
                    @if !views.is_empty() {
                        p { a href=(link(&[("quadrant", quadrant)], &["quadrant"])) { @if *more { "All leads in " (quadrant) " →" } @else { "As a list →" } } }
                    }
                }
            }
        }
    })
}

/// What the bulk form asked for.
struct BulkChoice {
    ids: Vec<String>,
    owner: Option<String>,
    add_group: Option<String>,
    back: String,
}

/// The lead list's bulk action on the chosen leads (marketing, admin): assign an owner
/// and/or add a group, then back to the same list.
pub async fn bulk_leads(State(web): State<Arc<Web>>, signed: SignedIn, Form(fields): Form<Vec<(String, String)>>) -> Response {
    if signed.user.role == Role::Sales {
        return error_page(StatusCode::FORBIDDEN, "Bulk actions are for marketing and admins.");
    }
    let mut choice = BulkChoice { ids: Vec::new(), owner: None, add_group: None, back: "/leads".into() };
    for (name, value) in fields {
        match name.as_str() {
            "id" => choice.ids.push(value),
            "owner" => choice.owner = Some(value).filter(|v| !v.trim().is_empty()),
            "add_group" => choice.add_group = Some(value.trim().to_string()).filter(|v| !v.is_empty()),
            "back" if value.starts_with("/leads") && crate::is_local_path(&value) => choice.back = value,
            _ => {}
        }
    }
    if choice.ids.is_empty() {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, "Choose at least one lead (the boxes beside their names).");
    }
    if choice.owner.is_none() && choice.add_group.is_none() {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, "Choose an owner to assign or a group to add.");
    }
    let changes = contacts::ContactChanges {
        owner: choice.owner.map(|owner| Some(owner).filter(|o| o != "-")),
        add_groups: choice.add_group.into_iter().collect(),
        ..Default::default()
    };
    let reach = signed.reach(&web);
    match contacts::change_chosen(&web.engine, &choice.ids, &changes, &reach).await {
        Ok(changed) => {
            let separator = if choice.back.contains('?') { '&' } else { '?' };
            Redirect::to(&format!("{}{separator}changed={changed}", choice.back)).into_response()
        }
        Err(err) => app_error(err),
    }
}

fn leads_csv(model: &str, views: &[ContactView]) -> Response {
    let field = leadscore_app::reports::csv_field;
    let mut out = String::from("id,email,company,owner,status,fit,activity,total,band,grade,quadrant,predictive\n");
    for contact in views {
        let card = contact.scores.get(model).map(|c| &c.card);
        let cells = [
            field(&contact.id),
            field(contact.email.as_deref().unwrap_or("")),
            field(&company(contact)),
            field(contact.owner.as_deref().unwrap_or("")),
            field(contact.status.as_deref().unwrap_or("")),
            card.map(|c| c.fit.to_string()).unwrap_or_default(),
            card.map(|c| c.activity.to_string()).unwrap_or_default(),
            card.map(|c| c.total.to_string()).unwrap_or_default(),
            field(card.and_then(|c| c.band.as_deref()).unwrap_or("")),
            field(card.and_then(|c| c.grade.as_deref()).unwrap_or("")),
            field(card.and_then(|c| c.quadrant.as_deref()).unwrap_or("")),
            contact.predictive.as_ref().map(|p| p.score.to_string()).unwrap_or_default(),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8"), (header::CONTENT_DISPOSITION, "attachment; filename=\"leads.csv\"")], out).into_response()
}

/// The score over time as an SVG line (server-rendered; no script).
fn score_chart(points: &[(Millis, f64)], now: Millis, current: Option<f64>) -> Markup {
    let mut points = points.to_vec();
    if let Some(current) = current {
        points.push((now, current));
    }
    if points.len() < 2 {
        return html! {};
    }
    let (w, h, pad) = (640.0, 180.0, 24.0);
    let (t0, t1) = (points[0].0 as f64, points.iter().map(|p| p.0).max().unwrap_or(now) as f64);
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).min(0.0);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max).max(lo + 1.0);
    let x = |t: Millis| pad + (t as f64 - t0) / (t1 - t0).max(1.0) * (w - 2.0 * pad);
    let y = |v: f64| h - pad - (v - lo) / (hi - lo) * (h - 2.0 * pad);
    // A step line: a score holds until the next change.
    let mut path = format!("M{:.1},{:.1}", x(points[0].0), y(points[0].1));
    for pair in points.windows(2) {
        path.push_str(&format!(" L{:.1},{:.1} L{:.1},{:.1}", x(pair[1].0), y(pair[0].1), x(pair[1].0), y(pair[1].1)));
    }
    let zero = y(0.0);
    html! {
        figure.chart {
            svg viewBox={"0 0 " (w) " " (h)} role="img" aria-label="Total score over time" {
                line x1=(pad) x2=(w - pad) y1=(format!("{zero:.1}")) y2=(format!("{zero:.1}")) class="axis" {}
                path d=(path) class="line" {}
                text x=(pad) y="14" class="label" { (number(hi)) }
                text x=(pad) y=(format!("{:.1}", h - 6.0)) class="label" { (number(lo)) }
            }
            figcaption { "Total score from " (format_time(points[0].0).get(..10).unwrap_or("")) " to now" }
        }
    }
}

/// A contact (`/contacts/{id}`): each model's scores, the score over time, the timeline of
/// reasons with decay shown as decay, the status and rating forms, the outcomes.
pub async fn contact(State(web): State<Arc<Web>>, signed: SignedIn, Path(id): Path<String>, Query(q): Query<ModelQuery>) -> Response {
    let record = match contacts::find_within(&web.engine, &id, &signed.reach(&web)).await {
        Ok(record) => record,
        Err(err) if err.is_not_found() => return not_found(),
        Err(err) => return app_error(err),
    };
    let view = match contacts::view(&web.engine, &record, None).await {
        Ok(view) => view,
        Err(err) => return app_error(err),
    };
    let model = web.engine.named_or_only_model(q.model.as_deref()).ok();
    let history = match &model {
        Some(model) if view.scores.contains_key(&model.name) => {
            match contacts::history(&web.engine, &id, Some(&model.name), None, leadscore_app::paging::Window::ALL).await {
                Ok(history) => Some(history),
                Err(err) => return app_error(err),
            }
        }
        _ => None,
    };
    let outcomes = match outcomes::contact_outcomes(&web.engine, &id).await {
        Ok(outcomes) => outcomes,
        Err(err) => return app_error(err),
    };
    let now = web.engine.now();
    let name = display_name(&view);
    // The timeline reads the entries by field name.
    let entries: Vec<Value> = history.as_ref().map(|h| h.entries.iter().filter_map(|e| serde_json::to_value(e).ok()).collect()).unwrap_or_default();
    let entries: Vec<&Value> = entries.iter().collect();
    let points: Vec<(Millis, f64)> =
        entries.iter().filter_map(|e| Some((leadscore_app::time::parse_time(e["at"].as_str()?).ok()?, e["total"].as_f64()?))).collect();
    let current_total = history.as_ref().and_then(|h| h.current.as_ref()).map(|c| c.total);
    let attributes: BTreeMap<&String, &Value> = view.attributes.iter().collect();
    let (timeline, decayed_since_last) = timeline_rows(&entries, history.as_ref().and_then(|h| h.current.as_ref()));
    let content = html! {
        p.crumbs { a href="/leads" { "Leads" } " / " (name) }
        h1 { (name) }
        p.lede {
            (view.email.as_deref().unwrap_or("no e-mail")) " · " (company(&view))
            " · status " strong { (view.status.as_deref().unwrap_or("new")) }
            " · owner " (view.owner.as_deref().unwrap_or("nobody yet"))
        }
        section.scores aria-label="Scores" {
            @for (model_name, card) in &view.scores {
                @let shadow_of = web.engine.model(model_name).and_then(|m| m.shadow_of.clone());
                // A shadow is marketing's candidate, not a score to act on: not shown to sales.
                @if shadow_of.is_none() || signed.user.role != Role::Sales {
                div.card.score.shadow[shadow_of.is_some()] {
                    h2 { (model_name) " " small { "v" (card.version) } }
                    @if let Some(live) = &shadow_of { p { small { "shadow of " (live) ": a candidate, not live" } } }
                    p.total { (number(card.card.total)) " " (flames(&card.card)) }
                    p { (band_badge(&card.card)) " grade " (card.card.grade.as_deref().unwrap_or("—")) " · " (card.card.quadrant.as_deref().unwrap_or("—")) }
                    p.split { "fit " (number(card.card.fit)) " + activity " (number(card.card.activity)) }
                }
                }
            }
            @if let Some(predictive) = &view.predictive {
                div.card.score.predictive {
                    h2 { "predictive " small { "v" (predictive.version) } }
                    p.total { (predictive.score) small { " / 100" } }
                    p { (format!("{:.0} %", predictive.probability * 100.0)) " likely to win, learned from past deals" }
                    ul.reasons aria-label="Why the predictive score" {
                        @for reason in predictive.reasons.iter().take(5) {
                            li {
                                span.num.up[reason.contribution > 0.0] .down[reason.contribution < 0.0] { (format!("{:+.2}", reason.contribution)) }
                                " " (reason.feature) ": " strong { (reason.value) }
                            }
                        }
                    }
                }
            }
            @for (model_name, why) in &view.not_scored {
                div.card.score.unscored { h2 { (model_name) } p { "Not scored by this model: " (why) } }
            }
            @if view.scores.is_empty() && view.not_scored.is_empty() {
                div.card { p { "No live model scores this contact." } }
            }
        }
        section.card.actions aria-label="Record an outcome" {
            h2 { "Record" }
            form.statuses method="post" action={"/contacts/" (url_encode(&id)) "/status"} {
                span { "Status: " }
                @for status in ["contacted", "qualified", "disqualified", "won", "lost"] {
                    button type="submit" name="status" value=(status) aria-pressed=[(view.status.as_deref() == Some(status)).then_some("true")] { (status) }
                }
            }
            form.rating method="post" action={"/contacts/" (url_encode(&id)) "/feedback"} {
                label for="rating" { "Rating" }
                select id="rating" name="rating" { @for n in 1..=5 { option value=(n) selected[n == 3] { (n) " of 5" } } }
                label for="note" { "Note" }
                input id="note" name="note" type="text" maxlength="500" placeholder="what the call said";
                button type="submit" { "Rate" }
            }
        }
        @if let Some(history) = &history {
            section.card {
                h2 { "Why this score (" (history.model) ")" }
                (score_chart(&points, now, current_total))
                table.timeline {
                    thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Points" } th scope="col" { "Total after" } } }
                    tbody {
                        @for row in &timeline {
                            @if let Some(decayed) = row.decayed_before {
                                tr.decay { td { } td { "decay since the step before" } td.num { (format!("−{decayed:.2}")) } td { } }
                            }
                            tr {
                                td { (row.at) }
                                td { (row.what) }
                                td.num { @if row.points > 0.0 { "+" } (number(row.points)) }
                                td.num { (row.total.map(number).unwrap_or_default()) }
                            }
                        }
                        @if let Some((decayed, total)) = decayed_since_last {
                            tr.decay { td { "now" } td { "decay since the last activity" } td.num { (format!("−{decayed:.2}")) } td.num { (number(total)) } }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Attributes" }
            dl.attributes { @for (key, value) in &attributes { dt { (key) } dd { (value.as_str().map_or_else(|| value.to_string(), str::to_string)) } } }
            p { small { "Created " (ago(now, record.created_at)) @if let Some(at) = record.last_event_at { " · last active " (ago(now, at)) } } }
        }
        @if !outcomes.is_empty() {
            section.card {
                h2 { "Outcomes" }
                ul.outcomes {
                    @for outcome in outcomes.iter().rev() {
                        li {
                            (format_time(outcome.at).get(..16).unwrap_or("").replace('T', " ")) " — "
                            @match &outcome.kind {
                                OutcomeKind::Status { status } => { "status " strong { (status) } }
                                OutcomeKind::Feedback { rating, note, author } => {
                                    "rated " strong { (rating) " of 5" }
                                    @if let Some(note) = note { ": “" (note) "”" }
                                    @if let Some(author) = author { " (" (author) ")" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if signed.user.role == Role::Admin {
            section.card aria-labelledby="data" {
                h2 id="data" { "The data held on this contact" }
                p { a href={"/contacts/" (url_encode(&id)) "/export"} download { "Export everything (JSON)" } " — attributes, scores, events and history, as the contact may ask for." }
                form.stack method="post" action={"/contacts/" (url_encode(&id)) "/erase"} {
                    h3 { "Erase" }
                    p { small { "Removes the contact with its events, history, outcomes and pending deliveries for good. The erasure log keeps only when and by whom." } }
                    label { input type="checkbox" name="confirm" value="erase" required; " I understand this cannot be undone" }
                    button.danger type="submit" { "Erase " (name) }
                }
            }
        }
    };
    Page(StatusCode::OK, layout(Some(&signed.user), &name, "leads", content)).into_response()
}

/// Everything held on a contact as a JSON download (admin): the same document as
/// `GET /api/v1/contacts/{id}/export`, every event in it.
pub async fn export_contact(State(web): State<Arc<Web>>, signed: SignedIn, Path(id): Path<String>) -> Response {
    if signed.user.role != Role::Admin {
        return error_page(StatusCode::FORBIDDEN, "Exporting a contact's data is for admins.");
    }
    match contacts::export(&web.engine, &id, leadscore_app::paging::Window::ALL).await {
        Ok(export) => {
            let body = match serde_json::to_string_pretty(&export) {
                Ok(body) => body,
                Err(err) => return app_error(AppError::invalid(format!("the export could not be written: {err}"))),
            };
            let file: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"contact-{file}.json\"")),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
                body,
            )
                .into_response()
        }
        Err(err) if err.is_not_found() => not_found(),
        Err(err) => app_error(err),
    }
}

#[derive(Deserialize)]
pub struct EraseForm {
    #[serde(default)]
    confirm: String,
}

/// Erases a contact (admin) once the box saying so is ticked, then back to the lead list.
pub async fn erase_contact(State(web): State<Arc<Web>>, signed: SignedIn, Path(id): Path<String>, Form(form): Form<EraseForm>) -> Response {
    if signed.user.role != Role::Admin {
        return error_page(StatusCode::FORBIDDEN, "Erasing a contact is for admins.");
    }
    if form.confirm != "erase" {
        return error_page(StatusCode::UNPROCESSABLE_ENTITY, "Tick the box to confirm the erasure; nothing was erased.");
    }
    match contacts::erase(&web.engine, &id, &signed.user.id).await {
        Ok(()) => Page(
            StatusCode::OK,
            layout(
                Some(&signed.user),
                "Contact erased",
                "leads",
                html! { section.card.notice role="status" { h1 { "Contact erased" } p { "The contact and everything held on it are gone." } p { a href="/leads" { "Back to the leads" } } } },
            ),
        )
        .into_response(),
        Err(err) if err.is_not_found() => not_found(),
        Err(err) => app_error(err),
    }
}

#[derive(Deserialize)]
pub struct StatusForm {
    status: String,
}

pub async fn record_status(State(web): State<Arc<Web>>, signed: SignedIn, Path(id): Path<String>, Form(form): Form<StatusForm>) -> Response {
    match contacts::find_within(&web.engine, &id, &signed.reach(&web)).await {
        Ok(_) => {}
        Err(err) if err.is_not_found() => return not_found(),
        Err(err) => return app_error(err),
    }
    match outcomes::record_status(&web.engine, &id, &form.status, None).await {
        Ok(_) => Redirect::to(&format!("/contacts/{}", url_encode(&id))).into_response(),
        Err(err) => app_error(err),
    }
}

#[derive(Deserialize)]
pub struct FeedbackForm {
    rating: i64,
    #[serde(default)]
    note: String,
}

pub async fn record_feedback(State(web): State<Arc<Web>>, signed: SignedIn, Path(id): Path<String>, Form(form): Form<FeedbackForm>) -> Response {
    match contacts::find_within(&web.engine, &id, &signed.reach(&web)).await {
        Ok(_) => {}
        Err(err) if err.is_not_found() => return not_found(),
        Err(err) => return app_error(err),
    }
    let author = Some(signed.user.name.clone().unwrap_or_else(|| signed.user.email.clone()));
    match outcomes::record_feedback(&web.engine, &id, form.rating, Some(form.note), author, None).await {
        Ok(_) => Redirect::to(&format!("/contacts/{}", url_encode(&id))).into_response(),
        Err(err) => app_error(err),
    }
}

/// One line of a contact's timeline.
struct TimelineRow {
    at: String,
    what: Markup,
    points: f64,
    total: Option<f64>,
    /// What decay took off the activity between the step before and this one.
    decayed_before: Option<f64>,
}

/// The history's entries as timeline rows, with decay made visible: the activity a step
/// ends with, less what it had before plus the step's points, is what decayed in between.
/// Also what decayed since the last step, and the total now.
fn timeline_rows(entries: &[&Value], current: Option<&ScoreCard>) -> (Vec<TimelineRow>, Option<(f64, f64)>) {
    let mut rows = Vec::with_capacity(entries.len());
    let mut previous_activity: Option<f64> = None;
    for entry in entries {
        let activity = entry["activity"].as_f64();
        let points = entry["points"].as_f64().unwrap_or(0.0);
        let decayed_before = match (entry["kind"].as_str(), previous_activity, activity) {
            (Some("activity"), Some(before), Some(after)) => Some(before + points - after).filter(|d| *d > 0.005),
            _ => None,
        };
        let what = match entry["kind"].as_str() {
            Some("activity") => html! { (entry["rule"].as_str().unwrap_or("")) " " small { "(" (entry["event"].as_str().unwrap_or("")) ")" } },
            Some(kind) => {
                let rules: Vec<String> = entry["fit_rules"]
                    .as_array()
                    .map(|rules| {
                        rules.iter().map(|r| format!("{} {}", r["rule"].as_str().unwrap_or(""), number(r["points"].as_f64().unwrap_or(0.0)))).collect()
                    })
                    .unwrap_or_default();
                html! { (kind) @if !rules.is_empty() { ": " (rules.join(", ")) } }
            }
            None => html! {},
        };
        rows.push(TimelineRow {
            at: entry["at"].as_str().and_then(|t| t.get(..16)).unwrap_or("").replace('T', " "),
            what,
            points,
            total: entry["total"].as_f64(),
            decayed_before,
        });
        if activity.is_some() {
            previous_activity = activity;
        }
    }
    let since_last = match (current, previous_activity) {
        (Some(current), Some(before)) => Some((before - current.activity, current.total)).filter(|(d, _)| *d > 0.005),
        _ => None,
    };
    (rows, since_last)
}

#[derive(Deserialize, Default)]
pub struct AccountsQuery {
    model: Option<String>,
    band: Option<String>,
    cursor: Option<String>,
}

/// The account list (`/accounts`): companies by the model's aggregate of their contacts'
/// totals, best first.
pub async fn accounts(State(web): State<Arc<Web>>, signed: SignedIn, Query(q): Query<AccountsQuery>) -> Response {
    let model = match page_model(&web, q.model.as_deref().filter(|m| !m.is_empty())) {
        Ok(model) => model,
        Err(page) => return *page,
    };
    let band = empty_is_none(q.band.clone());
    let page = match leadscore_app::accounts::list(
        &web.engine,
        &signed.reach(&web),
        Some(&model.name),
        band.as_deref(),
        Some(50),
        q.cursor.as_deref().filter(|c| !c.is_empty()),
    )
    .await
    {
        Ok(page) => page,
        Err(err) => return app_error(err),
    };
    let next = page.next_cursor.as_ref().map(|cursor| {
        let band = band.as_deref().map(|b| format!("&band={}", url_encode(b))).unwrap_or_default();
        format!("/accounts?model={}{band}&cursor={}", url_encode(&model.name), url_encode(cursor))
    });
    let content = html! {
        h1 { "Accounts" }
        p.lede { "Companies under " strong { (model.name) } ", by the " (model.model.accounts.aggregate_name()) " of their contacts' totals." }
        @if !model.model.accounts.bands.is_empty() {
            form.filters method="get" action="/accounts" {
                input type="hidden" name="model" value=(model.name);
                label { "Band " select name="band" { option value="" { "any" } @for b in &model.model.accounts.bands { option value=(b.name) selected[band.as_deref() == Some(b.name.as_str())] { (b.name) } } } }
                button type="submit" { "Show" }
            }
        }
        @if page.accounts.is_empty() {
            section.card { p { "No accounts yet: contacts join one by an account_id attribute or their company e-mail domain." } }
        } @else {
            table {
                thead { tr { th scope="col" { "Account" } th scope="col" { "Score" } th scope="col" { "Band" } th scope="col" { "Contacts" } } }
                tbody {
                    @for account in &page.accounts {
                        tr {
                            td { a href={"/accounts/" (url_encode(&account.account)) "?model=" (url_encode(&model.name))} { (account.account) } }
                            td.num { (number(account.score)) }
                            td { (account.band.as_deref().unwrap_or("—")) }
                            td.num { (account.contacts) }
                        }
                    }
                }
            }
            @if let Some(next) = &next { p.pager { a href=(next) rel="next" { "Next page →" } } }
        }
    };
    Page(StatusCode::OK, layout(Some(&signed.user), "Accounts", "accounts", content)).into_response()
}

/// An account (`/accounts/{id}`): its score and its contacts, best first (a sales user
/// sees their own among them).
pub async fn account(State(web): State<Arc<Web>>, signed: SignedIn, Path(id): Path<String>, Query(q): Query<ModelQuery>) -> Response {
    let detail = match leadscore_app::accounts::get(&web.engine, &signed.reach(&web), &id, q.model.as_deref().filter(|m| !m.is_empty())).await {
        Ok(detail) => detail,
        Err(leadscore_app::accounts::AccountError::NotFound(_)) => return error_page(StatusCode::NOT_FOUND, "There is no such account."),
        Err(err) => return app_error(err),
    };
    let mut rows = Vec::new();
    for (total, contact) in &detail.contacts {
        match contacts::view(&web.engine, contact, None).await {
            Ok(view) => rows.push((*total, view)),
            Err(err) => return app_error(err),
        }
    }
    let hidden = detail.hidden;
    let content = html! {
        p.crumbs { a href="/accounts" { "Accounts" } " / " (id) }
        h1 { (id) }
        section.scores {
            div.card.score {
                h2 { (detail.model.name) }
                p.total { (number(detail.score)) }
                p { (detail.band.as_deref().unwrap_or("no band")) " · " (detail.model.model.accounts.aggregate_name()) " of " (detail.scored_contacts) " scored contacts" }
            }
        }
        table {
            caption { "Contacts" }
            thead { tr { th scope="col" { "Contact" } th scope="col" { "Total" } th scope="col" { "Band" } th scope="col" { "Status" } th scope="col" { "Owner" } } }
            tbody {
                @for (total, contact) in &rows {
                    tr {
                        td { a href={"/contacts/" (url_encode(&contact.id))} { (display_name(contact)) } }
                        td.num { (total.map(number).unwrap_or_else(|| "—".into())) }
                        td { @if let Some(card) = contact.scores.get(&detail.model.name) { (band_badge(&card.card)) } }
                        td { (contact.status.as_deref().unwrap_or("new")) }
                        td { (contact.owner.as_deref().unwrap_or("—")) }
                    }
                }
            }
        }
        @if hidden > 0 { p { small { (hidden) " more contacts of this account belong to other reps." } } }
    };
    Page(StatusCode::OK, layout(Some(&signed.user), &id, "accounts", content)).into_response()
}
