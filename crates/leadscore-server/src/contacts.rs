//! Contacts: upsert, read (also as of a past instant), the lead list, PATCH, erase,
//! history with reasons, export, and bulk updates.

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_store::{BulkFilter, BulkUpdate, ContactPatch};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use leadscore_app::audit::AuditView;
use leadscore_app::contacts::{self, ContactExport, ContactView, ErasureView, HistoryView};
use leadscore_app::paging::Window;
use leadscore_app::reports::{csv_cell, csv_field};

use crate::AppState;
use crate::auth::{CanAdmin, CanRead};
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Query, parse_time};
use crate::reports::JsonOrCsv;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/contacts", post(upsert_contact).get(list_contacts))
        .route("/contacts/{id}", get(get_contact).patch(patch_contact).delete(delete_contact))
        .route("/contacts/{id}/history", get(contact_history))
        .route("/contacts/{id}/export", get(export_contact))
        .route("/contacts/{id}/merge", post(merge_contact))
        .route("/bulk", post(bulk_update))
        .route("/erasures", get(list_erasures))
        .route("/audit", get(list_audit))
}

/// A page of contacts: the lead list under a model, best first, or every contact by id.
#[derive(Serialize, ToSchema)]
pub struct ContactPage {
    pub contacts: Vec<ContactView>,
    /// The model the lead list is sorted by (absent without `model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub next_cursor: Option<String>,
}

/// How many contacts a bulk update changed.
#[derive(Serialize, ToSchema)]
pub struct BulkAnswer {
    pub updated: u64,
}

/// The erasure log, newest first.
#[derive(Serialize, ToSchema)]
pub struct ErasureLog {
    pub erasures: Vec<ErasureView>,
}

/// The audit log, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditLog {
    pub audit: Vec<AuditView>,
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

async fn upsert_contact(State(state): State<Arc<AppState>>, _: CanAdmin, body: Body) -> ApiResult<(StatusCode, Json<ContactView>)> {
    let body: UpsertBody = body.json()?;
    let new = contacts::NewContact {
        id: body.id,
        email: body.email,
        attributes: body.attributes,
        groups: body.groups,
        owner: body.owner,
        created_at: body.created_at,
    };
    let (contact, created) = contacts::upsert(&state, new).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(contacts::view(&state, &contact, None).await?)))
}

#[derive(Deserialize)]
struct ReadQuery {
    at: Option<String>,
}

async fn get_contact(State(state): State<Arc<AppState>>, _: CanRead, Path(id): Path<String>, Query(q): Query<ReadQuery>) -> ApiResult<Json<ContactView>> {
    let at = q.at.as_deref().map(parse_time).transpose().map_err(ApiError::bad_request)?;
    let contact = contacts::find(&state, &id).await?;
    Ok(Json(contacts::view(&state, &contact, at).await?))
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

async fn patch_contact(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>, body: Body) -> ApiResult<Json<ContactView>> {
    let body: PatchBody = body.json()?;
    let changes = contacts::ContactChanges {
        attributes: body.attributes,
        add_groups: body.add_groups,
        remove_groups: body.remove_groups,
        owner: body.owner,
        email: body.email,
    };
    let contact = contacts::patch(&state, &id, changes).await?;
    Ok(Json(contacts::view(&state, &contact, None).await?))
}

async fn delete_contact(State(state): State<Arc<AppState>>, caller: CanAdmin, Path(id): Path<String>) -> ApiResult<StatusCode> {
    contacts::erase(&state, &id, &caller.key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ErasureQuery {
    limit: Option<usize>,
}

/// `GET /audit`: who changed which model, automation, key, user, secret, team or webhook,
/// and when (admin), newest first.
async fn list_audit(State(state): State<Arc<AppState>>, _: CanAdmin, Query(q): Query<ErasureQuery>) -> ApiResult<Json<AuditLog>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(AuditLog { audit: leadscore_app::audit::list(&state, limit).await? }))
}

/// `GET /erasures`: the erasure log (admin): when and by whom, never what.
async fn list_erasures(State(state): State<Arc<AppState>>, _: CanAdmin, Query(q): Query<ErasureQuery>) -> ApiResult<Json<ErasureLog>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(ErasureLog { erasures: contacts::erasures(&state, limit).await? }))
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

async fn list_contacts(State(state): State<Arc<AppState>>, _: CanRead, Query(q): Query<ListQuery>) -> ApiResult<JsonOrCsv<ContactPage>> {
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::bad_request(format!("format {other:?} is not json or csv"))),
    };
    if csv && q.model.is_none() {
        return Err(ApiError::bad_request("`band`, `sort`, `status`, `open` and `format` need `model` (the lead list)"));
    }
    let query = contacts::LeadListQuery {
        model: q.model,
        sort: q.sort,
        band: q.band,
        group: q.group,
        owner: q.owner,
        status: q.status,
        open: q.open,
        limit: q.limit,
        cursor: q.cursor,
    };
    let page = contacts::lead_list(&state, query).await?;
    let mut items = Vec::with_capacity(page.contacts.len());
    for contact in &page.contacts {
        items.push(contacts::view(&state, contact, None).await?);
    }
    if csv && let Some(model) = &page.model {
        return Ok(JsonOrCsv::Csv(lead_list_csv(model, &items, page.next_cursor.as_deref())));
    }
    Ok(JsonOrCsv::Json(ContactPage { contacts: items, model: page.model, next_cursor: page.next_cursor }))
}

/// The lead list page as CSV: one row per contact with the model's card; the next page's
/// cursor in the `Link`-like `x-next-cursor` header (a CSV has no room for it).
fn lead_list_csv(model: &str, contacts: &[ContactView], next: Option<&str>) -> Response {
    let mut out = String::from("id,email,owner,status,groups,fit,activity,total,band,flames,grade,quadrant\n");
    for contact in contacts {
        let mut cells =
            vec![csv_cell(&contact.id), csv_cell(&contact.email), csv_cell(&contact.owner), csv_cell(&contact.status), csv_field(&contact.groups.join(";"))];
        match contact.scores.get(model) {
            Some(card) => {
                let card = &card.card;
                cells.extend([
                    csv_cell(&card.fit),
                    csv_cell(&card.activity),
                    csv_cell(&card.total),
                    csv_cell(&card.band),
                    csv_cell(&card.flames),
                    csv_cell(&card.grade),
                    csv_cell(&card.quadrant),
                ]);
            }
            // Not scored by the model: empty cells.
            None => cells.extend(std::iter::repeat_n(String::new(), 7)),
        }
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
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn contact_history(
    State(state): State<Arc<AppState>>,
    _: CanRead,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<HistoryView>> {
    let at = q.at.as_deref().map(parse_time).transpose().map_err(ApiError::bad_request)?;
    let (default, max) = contacts::HISTORY_PAGE;
    let window = Window::of(q.cursor.as_deref(), q.limit, default, max)?;
    Ok(Json(contacts::history(&state, &id, q.model.as_deref(), at, window).await?))
}

#[derive(Deserialize)]
struct ExportQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn export_contact(
    State(state): State<Arc<AppState>>,
    _: CanRead,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Json<ContactExport>> {
    let (default, max) = contacts::EXPORT_PAGE;
    let window = Window::of(q.cursor.as_deref(), q.limit, default, max)?;
    Ok(Json(contacts::export(&state, &id, window).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    /// The contact to merge into this one (it is deleted).
    from: String,
}

/// `POST /contacts/{id}/merge {"from": other}`: one person known under two ids becomes one
/// contact, scored as if every event had been this contact's.
async fn merge_contact(State(state): State<Arc<AppState>>, _: CanAdmin, Path(id): Path<String>, body: Body) -> ApiResult<Json<ContactView>> {
    let body: MergeBody = body.json()?;
    let contact = contacts::merge(&state, &body.from, &id).await?;
    Ok(Json(contacts::view(&state, &contact, None).await?))
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

async fn bulk_update(State(state): State<Arc<AppState>>, _: CanAdmin, body: Body) -> ApiResult<Json<BulkAnswer>> {
    let body: BulkBody = body.json()?;
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
    let changed = contacts::bulk(&state, update).await?;
    Ok(Json(BulkAnswer { updated: changed }))
}
