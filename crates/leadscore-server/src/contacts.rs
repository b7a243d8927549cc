//! Contacts: upsert, read (also as of a past instant), the lead list, PATCH, erase,
//! history with reasons, export, and bulk updates.

use std::sync::Arc;

use crate::input::Path;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use leadscore_store::{BulkFilter, BulkUpdate, ContactPatch};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use leadscore_app::audit::AuditView;
use leadscore_app::contacts::{self, ContactExport, ContactView, ErasureView, HistoryView};
use leadscore_app::paging::Window;
use leadscore_app::reports::{csv_cell, csv_field};

use crate::AppState;
use crate::auth::{CanAdmin, CanManage, CanRead};
use crate::error::{ApiError, ApiResult};
use crate::input::{Body, Query, parse_time};
use crate::reports::JsonOrCsv;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(upsert_contact, list_contacts))
        .routes(routes!(get_contact, patch_contact, delete_contact))
        .routes(routes!(contact_history))
        .routes(routes!(export_contact))
        .routes(routes!(merge_contact))
        .routes(routes!(bulk_update))
        .routes(routes!(list_erasures))
        .routes(routes!(list_audit))
}

/// A page of contacts: the lead list under a model, best first, or every contact by id.
#[derive(Serialize, ToSchema)]
pub struct ContactPage {
    pub contacts: Vec<ContactView>,
    /// The model the lead list is sorted by (absent without `model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub model: Option<String>,
    #[schema(required = true)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpsertBody {
    /// The contact's id; without one, the contact is found (or created) by e-mail.
    id: Option<String>,
    email: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    attributes: Map<String, Value>,
    #[serde(default)]
    groups: Vec<String>,
    owner: Option<String>,
    /// When the contact was created (RFC 3339), for importing history; default now.
    created_at: Option<String>,
}

#[utoipa::path(
    post,
    path = "/contacts",
    tag = "contacts",
    summary = "Create or update a contact (by id or email)",
    request_body = UpsertBody,
    responses(
        (status = CREATED, description = "Created", body = ContactView),
        (status = OK, description = "Updated: a contact with that id or e-mail existed", body = ContactView),
    ),
    extensions(("x-scope" = json!("admin"))),
)]
async fn upsert_contact(State(state): State<Arc<AppState>>, _: CanManage, body: Body) -> ApiResult<(StatusCode, Json<ContactView>)> {
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReadQuery {
    /// Scores as of this instant (RFC 3339), from the events up to then; default now.
    at: Option<String>,
}

#[utoipa::path(
    get,
    path = "/contacts/{id}",
    tag = "contacts",
    summary = "Read a contact with its scores (?at= for a past instant)",
    params(("id" = String, Path, description = "The contact's id"), ReadQuery),
    responses((status = OK, description = "The contact", body = ContactView)),
    extensions(("x-scope" = json!("read"))),
)]
async fn get_contact(State(state): State<Arc<AppState>>, caller: CanRead, Path(id): Path<String>, Query(q): Query<ReadQuery>) -> ApiResult<Json<ContactView>> {
    let at = q.at.as_deref().map(parse_time).transpose().map_err(ApiError::bad_request)?;
    let contact = contacts::find_within(&state, &id, &caller.reach).await?;
    Ok(Json(contacts::view(&state, &contact, at).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    /// Merged into the attributes (JSON merge patch: null removes one).
    #[serde(default)]
    #[schema(value_type = Object)]
    attributes: Map<String, Value>,
    #[serde(default)]
    add_groups: Vec<String>,
    #[serde(default)]
    remove_groups: Vec<String>,
    /// The new owner; null clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    owner: Option<Option<String>>,
    email: Option<String>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[utoipa::path(
    patch,
    path = "/contacts/{id}",
    tag = "contacts",
    summary = "Update attributes (merge patch), groups, owner; fit is rescored",
    params(("id" = String, Path, description = "The contact's id")),
    request_body = PatchBody,
    responses((status = OK, description = "The contact as changed", body = ContactView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn patch_contact(State(state): State<Arc<AppState>>, _: CanManage, Path(id): Path<String>, body: Body) -> ApiResult<Json<ContactView>> {
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

#[utoipa::path(
    delete,
    path = "/contacts/{id}",
    tag = "contacts",
    summary = "Erase a contact with its events and history",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = NO_CONTENT, description = "Erased")),
    extensions(("x-scope" = json!("admin"))),
)]
async fn delete_contact(State(state): State<Arc<AppState>>, caller: CanAdmin, Path(id): Path<String>) -> ApiResult<StatusCode> {
    contacts::erase(&state, &id, &caller.key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// How many entries, newest first (1-1000, default 100).
    limit: Option<usize>,
}

/// `GET /audit`: who changed which model, automation, key, user, secret, team or webhook,
/// and when (admin), newest first.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "contacts",
    summary = "The audit log, newest first (?limit=): who (key or user) changed which model, automation, key, user, secret, team or webhook, and when",
    params(LogQuery),
    responses((status = OK, description = "The audit log", body = AuditLog)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn list_audit(State(state): State<Arc<AppState>>, _: CanAdmin, Query(q): Query<LogQuery>) -> ApiResult<Json<AuditLog>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(AuditLog { audit: leadscore_app::audit::list(&state, limit).await? }))
}

/// `GET /erasures`: the erasure log (admin): when and by whom, never what.
#[utoipa::path(
    get,
    path = "/erasures",
    tag = "contacts",
    summary = "The erasure log, newest first (?limit=): when and by which key or user, never what",
    params(LogQuery),
    responses((status = OK, description = "The erasure log", body = ErasureLog)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn list_erasures(State(state): State<Arc<AppState>>, _: CanAdmin, Query(q): Query<LogQuery>) -> ApiResult<Json<ErasureLog>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(ErasureLog { erasures: contacts::erasures(&state, limit).await? }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// The model whose lead list this is; without it, every contact in id order.
    model: Option<String>,
    /// `total`, `fit`, `activity` or `predictive`, `-` first for descending (default `-total`;
    /// needs `model`). `predictive` lists the contacts with a predictive score.
    sort: Option<String>,
    /// Only contacts whose predictive score (0-100) is at least this (needs `model`).
    predictive_min: Option<u8>,
    /// Only contacts in this band (needs `model`).
    band: Option<String>,
    /// Only contacts in this group (needs `model`).
    group: Option<String>,
    /// Only contacts of this owner (needs `model`).
    owner: Option<String>,
    /// One of the statuses (`new` also matches a contact without any).
    status: Option<String>,
    /// `true`: leave closed deals (won, lost, disqualified) out.
    open: Option<bool>,
    /// One fit × activity quadrant: `sales-ready`, `long-term target`, `researcher`, `unqualified`.
    quadrant: Option<String>,
    /// The `source` attribute.
    source: Option<String>,
    /// Search: e-mail, name or company contains this.
    q: Option<String>,
    /// `json` (default) or `csv` (needs `model`; the next page's cursor in `x-next-cursor`).
    format: Option<String>,
    /// Contacts per page (1-1000, default 50).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/contacts",
    tag = "contacts",
    summary = "List contacts; with model= the lead list, best first, filtered and paginated",
    params(ListQuery),
    responses((
        status = OK,
        description = "A page of contacts (format=csv: the lead list as CSV)",
        content((ContactPage = "application/json"), (String = "text/csv")),
    )),
    extensions(("x-scope" = json!("read"))),
)]
async fn list_contacts(State(state): State<Arc<AppState>>, caller: CanRead, Query(q): Query<ListQuery>) -> ApiResult<JsonOrCsv<ContactPage>> {
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
        predictive_min: q.predictive_min,
        band: q.band,
        group: q.group,
        owner: q.owner,
        status: q.status,
        open: q.open,
        quadrant: q.quadrant,
        source: q.source,
        search: q.q,
        limit: q.limit,
        cursor: q.cursor,
        reach: caller.reach.clone(),
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
    let mut out = String::from("id,email,owner,status,groups,fit,activity,total,band,flames,grade,quadrant,predictive\n");
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
        cells.push(contact.predictive.as_ref().map_or(String::new(), |p| p.score.to_string()));
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response();
    if let Some(next) = next.and_then(|n| header::HeaderValue::from_str(n).ok()) {
        response.headers_mut().insert("x-next-cursor", next);
    }
    response
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// The model (default: the only live model).
    model: Option<String>,
    /// The history up to this instant (RFC 3339); default all of it.
    at: Option<String>,
    /// Entries per page (default 1000, at most 10000).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/contacts/{id}/history",
    tag = "contacts",
    summary = "Score changes with rule, event, points and resulting scores",
    params(("id" = String, Path, description = "The contact's id"), HistoryQuery),
    responses((status = OK, description = "The history, oldest first", body = HistoryView)),
    extensions(("x-scope" = json!("read"))),
)]
async fn contact_history(
    State(state): State<Arc<AppState>>,
    caller: CanRead,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<HistoryView>> {
    contacts::find_within(&state, &id, &caller.reach).await?;
    let at = q.at.as_deref().map(parse_time).transpose().map_err(ApiError::bad_request)?;
    let (default, max) = contacts::HISTORY_PAGE;
    let window = Window::of(q.cursor.as_deref(), q.limit, default, max)?;
    Ok(Json(contacts::history(&state, &id, q.model.as_deref(), at, window).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// Events per page (default 10000, at most 50000).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/contacts/{id}/export",
    tag = "contacts",
    summary = "All data held on the contact",
    params(("id" = String, Path, description = "The contact's id"), ExportQuery),
    responses((status = OK, description = "The contact, its events and its log", body = ContactExport)),
    extensions(("x-scope" = json!("read"))),
)]
async fn export_contact(
    State(state): State<Arc<AppState>>,
    caller: CanRead,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Json<ContactExport>> {
    contacts::find_within(&state, &id, &caller.reach).await?;
    let (default, max) = contacts::EXPORT_PAGE;
    let window = Window::of(q.cursor.as_deref(), q.limit, default, max)?;
    Ok(Json(contacts::export(&state, &id, window).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    /// The contact to merge into this one (it is deleted).
    from: String,
}

/// `POST /contacts/{id}/merge {"from": other}`: one person known under two ids becomes one
/// contact, scored as if every event had been this contact's.
#[utoipa::path(
    post,
    path = "/contacts/{id}/merge",
    tag = "contacts",
    summary = "Merge another contact ({from}) into this one",
    params(("id" = String, Path, description = "The contact that stays")),
    request_body = MergeBody,
    responses((status = OK, description = "The merged contact", body = ContactView)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn merge_contact(State(state): State<Arc<AppState>>, _: CanManage, Path(id): Path<String>, body: Body) -> ApiResult<Json<ContactView>> {
    let body: MergeBody = body.json()?;
    let contact = contacts::merge(&state, &body.from, &id).await?;
    Ok(Json(contacts::view(&state, &contact, None).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    /// Which contacts (default: all).
    #[serde(default)]
    filter: BulkFilterBody,
    #[serde(default)]
    #[schema(value_type = Object)]
    set_attributes: Map<String, Value>,
    #[serde(default)]
    add_groups: Vec<String>,
    #[serde(default)]
    remove_groups: Vec<String>,
    /// The new owner; null clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    owner: Option<Option<String>>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkFilterBody {
    /// The model `band` is of.
    model: Option<String>,
    band: Option<String>,
    group: Option<String>,
    owner: Option<String>,
    /// A condition on attributes, as in a model (contract §2).
    #[schema(value_type = Option<Object>)]
    condition: Option<Value>,
}

#[utoipa::path(
    post,
    path = "/bulk",
    tag = "contacts",
    summary = "Change attributes, groups or owner of every contact matching a filter",
    request_body = BulkBody,
    responses((status = OK, description = "How many contacts changed", body = BulkAnswer)),
    extensions(("x-scope" = json!("admin"))),
)]
async fn bulk_update(State(state): State<Arc<AppState>>, _: CanManage, body: Body) -> ApiResult<Json<BulkAnswer>> {
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
