//! Contacts: upsert, read (also as of a past instant), the lead list, PATCH, erase,
//! history with reasons, export, and bulk updates.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_core::EventRef;
use leadscore_core::scorer::{activity_history, normalize_events, round2};
use leadscore_store::scoring::ScoringEvent;
use leadscore_store::{BulkFilter, BulkUpdate, ContactPatch, ContactRecord, ContactUpsert, LeadQuery, Millis, Scope, SortKey};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use leadscore_app::contacts::{check_id, current_cards, scoring_events};

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Query, bad_cursor, format_time, page_cursor, parse_time};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/contacts", post(upsert_contact).get(list_contacts))
        .route("/contacts/{id}", get(get_contact).patch(patch_contact).delete(delete_contact))
        .route("/contacts/{id}/history", get(contact_history))
        .route("/contacts/{id}/export", get(export_contact))
        .route("/contacts/{id}/merge", post(merge_contact))
        .route("/bulk", post(bulk_update))
}

pub async fn render_contact(state: &AppState, contact: &ContactRecord, at: Option<Millis>) -> ApiResult<Value> {
    let mut scores = Map::new();
    for (published, card) in current_cards(state, contact, at).await? {
        let mut value = serde_json::to_value(&card).map_err(|e| ApiError::internal(e.to_string()))?;
        value["version"] = json!(published.version);
        scores.insert(published.name.clone(), value);
    }
    // A contact a model does not score says so and why (its segment), instead of a bare
    // `"scores": {}` (issue 12.12).
    let not_scored: Map<String, Value> = state
        .models()
        .iter()
        .filter(|m| !m.is_shadow() && !scores.contains_key(&m.name))
        .filter_map(|m| m.model.why_not_applies(&contact.attributes).map(|why| (m.name.clone(), json!(why))))
        .collect();
    let mut rendered = json!({
        "id": contact.id,
        "email": contact.email,
        "attributes": contact.attributes,
        "groups": contact.groups,
        "owner": contact.owner,
        "status": contact.status,
        "created_at": format_time(contact.created_at),
        "updated_at": format_time(contact.updated_at),
        "last_event_at": contact.last_event_at.map(format_time),
        "scores": scores,
        "predictive": Value::Null,
        "as_of": at.map(format_time),
    });
    if !not_scored.is_empty() {
        rendered["not_scored"] = Value::Object(not_scored);
    }
    Ok(rendered)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertBody {
    id: Option<String>,
    email: Option<String>,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    groups: Vec<String>,
    owner: Option<String>,
    created_at: Option<String>,
}

async fn upsert_contact(State(state): State<Arc<AppState>>, principal: Principal, body: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    principal.require(Scope::Admin)?;
    let body: UpsertBody = body.json()?;
    if let Some(id) = &body.id {
        check_id(id, "id")?;
    }
    let created_at = body.created_at.as_deref().map(parse_time).transpose().map_err(ApiError::invalid)?;
    // The email may come as a field or as an attribute; the field wins.
    let mut attributes = body.attributes;
    let email = match attributes.remove("email") {
        Some(Value::String(email)) => body.email.or(Some(email)),
        Some(Value::Null) | None => body.email,
        Some(other) => {
            return Err(ApiError::invalid(format!("attributes.email must be a string, got {other}")));
        }
    };
    if body.id.is_none() && email.is_none() {
        return Err(ApiError::invalid("a contact needs an `id` or an `email`"));
    }
    if let Some(email) = &email {
        leadscore_core::email::check_email(email).map_err(ApiError::invalid)?;
    }
    let upsert = ContactUpsert { id: body.id, email, attributes, groups: body.groups, owner: body.owner, created_at, historical: false };
    let (mut contact, created) = state.store.upsert_contact(upsert, &state.models(), state.now()).await?;
    if !state.runtime.automations().is_empty() {
        leadscore_app::runtime::after_contact_write(&state, &contact.id).await;
        contact = state.store.get_contact(&contact.id).await?.unwrap_or(contact);
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(render_contact(&state, &contact, None).await?)))
}

#[derive(Deserialize)]
struct ReadQuery {
    at: Option<String>,
}

async fn load(state: &AppState, id: &str) -> ApiResult<ContactRecord> {
    state.store.get_contact(id).await?.ok_or_else(|| ApiError::not_found(format!("no contact {id:?}")))
}

async fn get_contact(State(state): State<Arc<AppState>>, principal: Principal, Path(id): Path<String>, Query(q): Query<ReadQuery>) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let at = q.at.as_deref().map(parse_time).transpose().map_err(ApiError::bad_request)?;
    let contact = load(&state, &id).await?;
    Ok(Json(render_contact(&state, &contact, at).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    add_groups: Vec<String>,
    #[serde(default)]
    remove_groups: Vec<String>,
    #[serde(default, deserialize_with = "double_option")]
    owner: Option<Option<String>>,
    email: Option<String>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn patch_contact(State(state): State<Arc<AppState>>, principal: Principal, Path(id): Path<String>, body: Body) -> ApiResult<Json<Value>> {
    principal.require(Scope::Admin)?;
    let body: PatchBody = body.json()?;
    let mut attributes = body.attributes;
    if let Some(email) = body.email {
        attributes.insert("email".into(), Value::String(email));
    }
    if let Some(Value::String(email)) = attributes.get("email") {
        leadscore_core::email::check_email(email).map_err(ApiError::invalid)?;
    }
    let patch = ContactPatch { attributes, add_groups: body.add_groups, remove_groups: body.remove_groups, owner: body.owner, status: None };
    let mut contact = state.store.patch_contact(&id, patch, &state.models(), state.now()).await?;
    if !state.runtime.automations().is_empty() {
        leadscore_app::runtime::after_contact_write(&state, &contact.id).await;
        contact = state.store.get_contact(&contact.id).await?.unwrap_or(contact);
    }
    Ok(Json(render_contact(&state, &contact, None).await?))
}

async fn delete_contact(State(state): State<Arc<AppState>>, principal: Principal, Path(id): Path<String>) -> ApiResult<StatusCode> {
    principal.require(Scope::Admin)?;
    if state.store.delete_contact(&id).await? {
        tracing::info!(contact = %id, "contact erased");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no contact {id:?}")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    model: Option<String>,
    sort: Option<String>,
    band: Option<String>,
    group: Option<String>,
    owner: Option<String>,
    /// One of the statuses (`new` also matches a contact without any).
    status: Option<String>,
    /// `true`: leave closed deals (won, lost, disqualified) out.
    open: Option<bool>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn parse_sort(sort: Option<&str>) -> ApiResult<(SortKey, bool)> {
    let sort = sort.unwrap_or("-total");
    let (descending, key) = match sort.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, sort.strip_prefix('+').unwrap_or(sort)),
    };
    let key = match key {
        "total" => SortKey::Total,
        "fit" => SortKey::Fit,
        "activity" => SortKey::Activity,
        other => {
            return Err(ApiError::bad_request(format!("cannot sort by {other:?}; use total, fit or activity, `-` for descending")));
        }
    };
    Ok((key, descending))
}

/// Cursor for the lead list: `<sort value>~<contact id>`, opaque to clients.
fn parse_cursor(cursor: &str) -> ApiResult<(f64, String)> {
    let (value, id) = cursor.split_once('~').ok_or_else(bad_cursor)?;
    let value: f64 = value.parse().ok().filter(|v: &f64| v.is_finite()).ok_or_else(bad_cursor)?;
    Ok((value, id.to_string()))
}

async fn list_contacts(State(state): State<Arc<AppState>>, principal: Principal, Query(q): Query<ListQuery>) -> ApiResult<Response> {
    principal.require(Scope::Read)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be from 1 to 1000"));
    }
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::bad_request(format!("format {other:?} is not json or csv"))),
    };
    if let Some(status) = &q.status
        && !leadscore_store::STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::bad_request(format!("status {status:?} is not one of {}", leadscore_store::STATUSES.join(", "))));
    }
    let Some(model_name) = q.model.clone() else {
        if q.band.is_some() || q.sort.is_some() || q.status.is_some() || q.open.is_some() || csv {
            return Err(ApiError::bad_request("`band`, `sort`, `status`, `open` and `format` need `model` (the lead list)"));
        }
        // Without a model: every contact in id order (group/owner filters need a model).
        if q.group.is_some() || q.owner.is_some() {
            return Err(ApiError::bad_request("`group` and `owner` filters need `model` (the lead list)"));
        }
        let contacts = state.store.list_contacts(page_cursor(q.cursor.as_deref())?, limit).await?;
        let next = (contacts.len() == limit).then(|| contacts.last().map(|c| c.id.clone())).flatten();
        let mut items = Vec::with_capacity(contacts.len());
        for contact in &contacts {
            items.push(render_contact(&state, contact, None).await?);
        }
        return Ok(Json(json!({ "contacts": items, "next_cursor": next })).into_response());
    };
    let published = state.model(&model_name).ok_or_else(|| ApiError::not_found(format!("no model {model_name:?}")))?;
    if let Some(band) = &q.band
        && !published.model.bands.iter().any(|b| &b.name == band)
    {
        let names: Vec<&str> = published.model.bands.iter().map(|b| b.name.as_str()).collect();
        return Err(ApiError::bad_request(format!("model {model_name:?} has no band {band:?}; bands: {}", names.join(", "))));
    }
    let (sort, descending) = parse_sort(q.sort.as_deref())?;
    let after = page_cursor(q.cursor.as_deref())?.map(parse_cursor).transpose()?;
    let lead_query = LeadQuery {
        model: model_name.clone(),
        sort: sort.clone(),
        descending,
        band: q.band,
        group: q.group,
        owner: q.owner,
        status: q.status,
        open: q.open.unwrap_or(false),
        limit,
        after,
    };
    let contacts = state.store.list_leads(&lead_query).await?;
    let next = if contacts.len() == limit {
        contacts.last().and_then(|c| {
            let card = &c.scores.get(&model_name)?.card;
            let value = match sort {
                SortKey::Total => card.total,
                SortKey::Fit => card.fit,
                SortKey::Activity => card.activity,
            };
            Some(format!("{value}~{}", c.id))
        })
    } else {
        None
    };
    let mut items = Vec::with_capacity(contacts.len());
    for contact in &contacts {
        items.push(render_contact(&state, contact, None).await?);
    }
    if csv {
        return Ok(lead_list_csv(&model_name, &items, next.as_deref()));
    }
    Ok(Json(json!({ "model": model_name, "contacts": items, "next_cursor": next })).into_response())
}

/// The lead list page as CSV: one row per contact with the model's card; the next page's
/// cursor in the `Link`-like `x-next-cursor` header (a CSV has no room for it).
fn lead_list_csv(model: &str, contacts: &[Value], next: Option<&str>) -> Response {
    let cell = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => leadscore_app::reports::csv_field(s),
        other => other.to_string(),
    };
    let mut out = String::from("id,email,owner,status,groups,fit,activity,total,band,flames,grade,quadrant\n");
    for contact in contacts {
        let card = &contact["scores"][model];
        let groups: Vec<&str> = contact["groups"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let mut cells = vec![
            cell(&contact["id"]),
            cell(&contact["email"]),
            cell(&contact["owner"]),
            cell(&contact["status"]),
            leadscore_app::reports::csv_field(&groups.join(";")),
        ];
        cells.extend(["fit", "activity", "total", "band", "flames", "grade", "quadrant"].iter().map(|field| cell(&card[*field])));
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response();
    if let Some(next) = next.and_then(|n| header::HeaderValue::from_str(n).ok()) {
        response.headers_mut().insert("x-next-cursor", next);
    }
    response
}

#[derive(Deserialize)]
struct HistoryQuery {
    model: Option<String>,
    at: Option<String>,
}

async fn contact_history(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let contact = load(&state, &id).await?;
    let published = state.named_or_only_model(q.model.as_deref())?;
    let at = q.at.as_deref().map(parse_time).transpose().map_err(ApiError::bad_request)?.unwrap_or(Millis::MAX);
    let events = scoring_events(&state.store.contact_events(&id).await?);
    let mut refs: Vec<EventRef<'_>> = events.iter().map(ScoringEvent::as_ref).collect();
    normalize_events(&mut refs);
    let steps = activity_history(&published.model, refs, at);
    let log = state.store.contact_log(&id).await?;

    // Merge awards and attribute changes on one timeline with the resulting scores.
    let model = &published.model;
    let mut entries = Vec::new();
    // Events older than the first known attributes (a contact created after its history
    // was imported) are shown with the fit of those first attributes, not with 0.
    let first_fit = log.iter().find_map(|entry| entry.data.get("attributes").and_then(Value::as_object)).map_or(0.0, |attributes| model.fit(attributes));
    let mut fit: Option<f64> = None;
    let mut activity = 0.0;
    let mut log_iter = log.into_iter().filter(|e| e.at <= at).peekable();
    let mut steps_iter = steps.into_iter().peekable();
    loop {
        let take_log = match (log_iter.peek(), steps_iter.peek()) {
            (Some(l), Some(s)) => l.at <= s.timestamp,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_log {
            let Some(entry) = log_iter.next() else { break };
            let Some(attributes) = entry.data.get("attributes").and_then(Value::as_object) else {
                entries.push(json!({ "at": format_time(entry.at), "kind": entry.kind, "data": entry.data }));
                continue;
            };
            let new_fit = model.fit(attributes);
            let reasons: Vec<Value> = model.fit_breakdown(attributes).map(|(rule, points)| json!({ "rule": rule, "points": points })).collect();
            entries.push(json!({
                "at": format_time(entry.at),
                "kind": entry.kind,
                "points": round2(new_fit - fit.unwrap_or(0.0)),
                "fit_rules": reasons,
                "fit": round2(new_fit),
                "activity": activity,
                "total": round2(new_fit + activity),
            }));
            fit = Some(new_fit);
        } else {
            let Some(step) = steps_iter.next() else { break };
            activity = step.activity;
            let fit = fit.unwrap_or(first_fit);
            entries.push(json!({
                "at": format_time(step.timestamp),
                "kind": "activity",
                "rule": step.rule,
                "event": step.event,
                "message_id": step.message_id,
                "points": step.points,
                "fit": round2(fit),
                "activity": activity,
                "total": round2(fit + activity),
            }));
        }
    }
    let current: Vec<Value> =
        current_cards(&state, &contact, None).await?.into_iter().filter(|(m, _)| m.name == published.name).map(|(_, card)| json!(card)).collect();
    Ok(Json(json!({
        "contact": id,
        "model": published.name,
        "version": published.version,
        "entries": entries,
        "current": current.into_iter().next(),
    })))
}

async fn export_contact(State(state): State<Arc<AppState>>, principal: Principal, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let contact = load(&state, &id).await?;
    let events = state.store.contact_events(&id).await?;
    let log = state.store.contact_log(&id).await?;
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "messageId": e.message_id,
                "type": e.kind,
                "event": e.name,
                "timestamp": format_time(e.timestamp),
                "properties": e.properties,
                "context": e.context,
                "received_at": format_time(e.received_at),
            })
        })
        .collect();
    let log: Vec<Value> = log.iter().map(|l| json!({ "at": format_time(l.at), "kind": l.kind, "data": l.data })).collect();
    Ok(Json(json!({
        "contact": render_contact(&state, &contact, None).await?,
        "events": events,
        "log": log,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    /// The contact to merge into this one (it is deleted).
    from: String,
}

/// `POST /contacts/{id}/merge {"from": other}`: one person known under two ids becomes one
/// contact, scored as if every event had been this contact's.
async fn merge_contact(State(state): State<Arc<AppState>>, principal: Principal, Path(id): Path<String>, body: Body) -> ApiResult<Json<Value>> {
    principal.require(Scope::Admin)?;
    let body: MergeBody = body.json()?;
    let contact = state.store.merge_contacts(&body.from, &id, &state.models(), state.now()).await?;
    leadscore_app::runtime::contacts_changed(&state);
    tracing::info!(into = %id, from = %body.from, "contacts merged");
    Ok(Json(render_contact(&state, &contact, None).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    #[serde(default)]
    filter: BulkFilterBody,
    #[serde(default)]
    set_attributes: Map<String, Value>,
    #[serde(default)]
    add_groups: Vec<String>,
    #[serde(default)]
    remove_groups: Vec<String>,
    #[serde(default, deserialize_with = "double_option")]
    owner: Option<Option<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BulkFilterBody {
    model: Option<String>,
    band: Option<String>,
    group: Option<String>,
    owner: Option<String>,
    condition: Option<Value>,
}

async fn bulk_update(State(state): State<Arc<AppState>>, principal: Principal, body: Body) -> ApiResult<Json<Value>> {
    principal.require(Scope::Admin)?;
    let body: BulkBody = body.json()?;
    if body.set_attributes.is_empty() && body.add_groups.is_empty() && body.remove_groups.is_empty() && body.owner.is_none() {
        return Err(ApiError::invalid("nothing to change: give set_attributes, add_groups, remove_groups or owner"));
    }
    if let Some(model) = &body.filter.model
        && state.model(model).is_none()
    {
        return Err(ApiError::not_found(format!("no model {model:?}")));
    }
    let update = BulkUpdate {
        filter: BulkFilter {
            model: body.filter.model,
            band: body.filter.band,
            group: body.filter.group,
            owner: body.filter.owner,
            condition: body.filter.condition,
        },
        patch: ContactPatch {
            attributes: body.set_attributes,
            add_groups: body.add_groups,
            remove_groups: body.remove_groups,
            owner: body.owner,
            status: None,
        },
    };
    let changed = state.store.bulk_update(update, &state.models(), state.now()).await?;
    leadscore_app::runtime::contacts_changed(&state);
    Ok(Json(json!({ "updated": changed })))
}
