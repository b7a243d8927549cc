//! Accounts over HTTP (F29): the account list sorted by account score, and an account's
//! page with its contacts. A contact's account is its `account_id` (or `account`)
//! attribute — a Segment `group` call sets it — else its company e-mail domain; free
//! mailboxes never form accounts. The account score aggregates the contacts' totals as
//! the model's `[accounts]` table says (sum by default, max, or mean of the top N).

use std::sync::Arc;

use crate::input::Path;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use leadscore_app::accounts::{self, AccountRow};
use leadscore_app::contacts::ContactView;

use crate::AppState;
use crate::auth::CanRead;
use crate::error::ApiResult;
use crate::input::Query;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_accounts)).routes(routes!(get_account))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// The model (default: the only live model).
    model: Option<String>,
    /// Only accounts in this account band.
    band: Option<String>,
    /// Accounts per page (1-1000, default 50).
    limit: Option<usize>,
    /// `score,account` of the last account of the previous page.
    cursor: Option<String>,
}

/// The account list, best first. Sorted by the stored contact totals (as the lead list is;
/// the decay sweep keeps them current).
#[utoipa::path(
    get,
    path = "/accounts",
    tag = "accounts",
    summary = "Accounts best first by account score (?model=&band=&limit=&cursor=): score, band, contacts",
    params(ListQuery),
    responses((status = OK, description = "A page of accounts", body = AccountList)),
    extensions(("x-scope" = json!("read"))),
)]
async fn list_accounts(State(state): State<Arc<AppState>>, caller: CanRead, Query(q): Query<ListQuery>) -> ApiResult<Json<AccountList>> {
    let page = accounts::list(&state, &caller.reach, q.model.as_deref(), q.band.as_deref(), q.limit, q.cursor.as_deref()).await?;
    Ok(Json(AccountList {
        accounts: page.accounts.iter().map(AccountRow::from).collect(),
        aggregate: page.model.model.accounts.aggregate_name(),
        model: page.model.name.clone(),
        next_cursor: page.next_cursor,
    }))
}

/// A page of the account list, best first.
#[derive(Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<AccountRow>,
    /// How the model's `[accounts]` table aggregates contacts' totals: sum, max, or mean of the top N.
    pub aggregate: String,
    pub model: String,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AccountQuery {
    /// The model (default: the only live model).
    model: Option<String>,
}

/// An account's page: its score (as of now) under the model and its contacts, best first.
#[utoipa::path(
    get,
    path = "/accounts/{id}",
    tag = "accounts",
    summary = "An account: its score and band as of now under ?model=, and its contacts best first",
    params(("id" = String, Path, description = "The account: its account_id, or its company domain"), AccountQuery),
    responses((status = OK, description = "The account", body = AccountView)),
    extensions(("x-scope" = json!("read"))),
)]
async fn get_account(
    State(state): State<Arc<AppState>>,
    caller: CanRead,
    Path(id): Path<String>,
    Query(q): Query<AccountQuery>,
) -> ApiResult<Json<AccountView>> {
    let detail = accounts::get(&state, &caller.reach, &id, q.model.as_deref()).await?;
    let mut contacts = Vec::with_capacity(detail.contacts.len());
    for (_, contact) in &detail.contacts {
        contacts.push(leadscore_app::contacts::view(&state, contact, None).await?);
    }
    Ok(Json(AccountView {
        aggregate: detail.model.model.accounts.aggregate_name(),
        band: detail.band,
        contacts,
        id,
        model: detail.model.name.clone(),
        score: detail.score,
        scored_contacts: detail.scored_contacts,
    }))
}

/// An account under one model: its score and band as of now, and its contacts best first.
#[derive(Serialize, ToSchema)]
pub struct AccountView {
    pub aggregate: String,
    #[schema(required = true)]
    pub band: Option<String>,
    pub contacts: Vec<ContactView>,
    pub id: String,
    pub model: String,
    pub score: f64,
    /// Its contacts the model scores (the score aggregates theirs).
    pub scored_contacts: usize,
}
