//! Accounts over HTTP (F29): the account list sorted by account score, and an account's
//! page with its contacts. A contact's account is its `account_id` (or `account`)
//! attribute — a Segment `group` call sets it — else its company e-mail domain; free
//! mailboxes never form accounts. The account score aggregates the contacts' totals as
//! the model's `[accounts]` table says (sum by default, max, or mean of the top N).

use std::sync::Arc;

use crate::input::Path;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::contacts::render_contact;
use leadscore_app::accounts;

use crate::AppState;
use crate::auth::CanRead;
use crate::error::ApiResult;
use crate::input::Query;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/accounts", get(list_accounts)).route("/accounts/{id}", get(get_account))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    model: Option<String>,
    band: Option<String>,
    limit: Option<usize>,
    /// `score,account` of the last account of the previous page.
    cursor: Option<String>,
}

/// The account list, best first. Sorted by the stored contact totals (as the lead list is;
/// the decay sweep keeps them current).
async fn list_accounts(State(state): State<Arc<AppState>>, _: CanRead, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let page = accounts::list(&state, q.model.as_deref(), q.band.as_deref(), q.limit, q.cursor.as_deref()).await?;
    let (model, next_cursor, page) = (page.model, page.next_cursor, page.accounts);
    let accounts: Vec<Value> = page.iter().map(|a| json!({ "id": a.account, "score": a.score, "band": a.band, "contacts": a.contacts })).collect();
    Ok(Json(json!({
        "model": model.name,
        "aggregate": model.model.accounts.aggregate_name(),
        "accounts": accounts,
        "next_cursor": next_cursor,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountQuery {
    model: Option<String>,
}

/// An account's page: its score (as of now) under the model and its contacts, best first.
async fn get_account(State(state): State<Arc<AppState>>, caller: CanRead, Path(id): Path<String>, Query(q): Query<AccountQuery>) -> ApiResult<Json<Value>> {
    let detail = accounts::get(&state, &id, q.model.as_deref()).await?;
    let mut contacts = Vec::with_capacity(detail.contacts.len());
    // The account's score counts every contact; a sales rep sees only theirs of it.
    for (_, contact) in detail.contacts.iter().filter(|(_, contact)| caller.reach.reaches(contact.owner.as_deref())) {
        contacts.push(render_contact(&state, contact, None).await?);
    }
    let rule = &detail.model.model.accounts;
    Ok(Json(json!({
        "id": id,
        "model": detail.model.name,
        "aggregate": rule.aggregate_name(),
        "score": detail.score,
        "band": detail.band,
        "scored_contacts": detail.scored_contacts,
        "contacts": contacts,
    })))
}
