//! Accounts over HTTP (F29): the account list sorted by account score, and an account's
//! page with its contacts. A contact's account is its `account_id` (or `account`)
//! attribute — a Segment `group` call sets it — else its company e-mail domain; free
//! mailboxes never form accounts. The account score aggregates the contacts' totals as
//! the model's `[accounts]` table says (sum by default, max, or mean of the top N).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use leadscore_store::{PublishedModel, Scope};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::contacts::render_contact;
use leadscore_app::accounts::{AccountScore, score_accounts};
use leadscore_app::contacts::current_cards;

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::input::{Query, bad_cursor, page_cursor};

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/accounts", get(list_accounts)).route("/accounts/{id}", get(get_account))
}

fn model_for(state: &AppState, name: Option<&str>) -> ApiResult<Arc<PublishedModel>> {
    Ok(state.named_or_only_model(name)?)
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
async fn list_accounts(State(state): State<Arc<AppState>>, principal: Principal, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let model = model_for(&state, q.model.as_deref())?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    if let Some(band) = &q.band
        && !model.model.accounts.bands.iter().any(|b| &b.name == band)
    {
        let names: Vec<&str> = model.model.accounts.bands.iter().map(|b| b.name.as_str()).collect();
        return Err(ApiError::bad_request(format!("model {:?} has no account band {band:?}; account bands: {}", model.name, names.join(", "))));
    }
    let after = match page_cursor(q.cursor.as_deref())? {
        None => None,
        Some(cursor) => {
            let (score, account) = cursor.split_once(',').ok_or_else(bad_cursor)?;
            Some((score.parse::<f64>().ok().filter(|s| s.is_finite()).ok_or_else(bad_cursor)?, account.to_string()))
        }
    };
    let members = state.store.account_members(&model.name).await?;
    let page: Vec<AccountScore> = score_accounts(&model, &members)
        .into_iter()
        .filter(|a| q.band.as_ref().is_none_or(|band| a.band.as_ref() == Some(band)))
        .filter(|a| after.as_ref().is_none_or(|(score, account)| a.score < *score || (a.score == *score && &a.account > account)))
        .take(limit)
        .collect();
    let next_cursor = (page.len() == limit).then(|| page.last().map(|a| format!("{},{}", a.score, a.account))).flatten();
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
async fn get_account(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<AccountQuery>,
) -> ApiResult<Json<Value>> {
    principal.require(Scope::Read)?;
    let model = model_for(&state, q.model.as_deref())?;
    let contacts = state.store.account_contacts(&id).await?;
    if contacts.is_empty() {
        return Err(ApiError::not_found(format!("no account {id:?}")));
    }
    let mut rows = Vec::with_capacity(contacts.len());
    let mut totals = Vec::new();
    for contact in &contacts {
        let total = current_cards(&state, contact, None).await?.into_iter().find(|(m, _)| m.name == model.name).map(|(_, card)| card.total);
        if let Some(total) = total {
            totals.push(total);
        }
        rows.push((total, render_contact(&state, contact, None).await?));
    }
    rows.sort_by(|a, b| b.0.unwrap_or(f64::NEG_INFINITY).total_cmp(&a.0.unwrap_or(f64::NEG_INFINITY)));
    let rule = &model.model.accounts;
    let score = rule.score(&totals);
    Ok(Json(json!({
        "id": id,
        "model": model.name,
        "aggregate": rule.aggregate_name(),
        "score": score,
        "band": rule.band(score),
        "scored_contacts": totals.len(),
        "contacts": rows.into_iter().map(|(_, contact)| contact).collect::<Vec<_>>(),
    })))
}
