//! Accounts (F29): the account score aggregates the contacts' totals as the model's
//! `[accounts]` table says (sum by default, max, or mean of the top N).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use leadscore_store::{ContactRecord, PublishedModel, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Engine;
use crate::ModelChoiceError;
use crate::access::{InReach, Reach};
use crate::contacts::current_cards;
use crate::error::AppError;
use crate::paging::{PageError, bad_cursor, page_cursor};

/// Why an account or the account list cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Model(#[from] ModelChoiceError),
    #[error("limit must be between 1 and 1000")]
    Limit,
    #[error("model {model:?} has no account band {band:?}; account bands: {bands}")]
    UnknownBand { model: String, band: String, bands: String },
    #[error(transparent)]
    Page(#[from] PageError),
    /// No such account, or none of its contacts within the reader's reach.
    #[error("no account {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AccountError> for AppError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Model(err) => err.into(),
            AccountError::Page(err) => err.into(),
            AccountError::Store(err) => AppError::Store(err),
            AccountError::NotFound(_) => AppError::not_found(err.to_string()),
            AccountError::Limit | AccountError::UnknownBand { .. } => AppError::bad_request(err.to_string()),
        }
    }
}

/// One account under one model.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountScore {
    pub account: String,
    pub score: f64,
    pub band: Option<String>,
    pub contacts: usize,
}

/// Scores every account from its members' totals, best first (ties by account).
pub fn score_accounts(model: &PublishedModel, members: &[(String, String, f64)]) -> Vec<AccountScore> {
    let mut totals: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (account, _, total) in members {
        totals.entry(account.as_str()).or_default().push(*total);
    }
    let rule = &model.model.accounts;
    let mut accounts: Vec<AccountScore> = totals
        .into_iter()
        .map(|(account, totals)| {
            let score = rule.score(&totals);
            AccountScore { account: account.to_string(), score, band: rule.band(score), contacts: totals.len() }
        })
        .collect();
    accounts.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.account.cmp(&b.account)));
    accounts
}

/// One page of the account list.
pub struct AccountPage {
    pub model: Arc<PublishedModel>,
    pub accounts: Vec<AccountScore>,
    pub next_cursor: Option<String>,
}

/// The account list under `model`, best first, sorted by the stored contact totals (as the
/// lead list is; the decay sweep keeps them current).
/// The account list, best first. A sales rep (`reach`) sees the accounts where they reach
/// a contact; each account's score is still the account's, over all its contacts.
pub async fn list(
    engine: &Engine,
    reach: &Reach,
    model: Option<&str>,
    band: Option<&str>,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<AccountPage, AccountError> {
    let model = engine.named_or_only_model(model)?;
    let limit = limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(AccountError::Limit);
    }
    if let Some(band) = band
        && !model.model.accounts.bands.iter().any(|b| b.name == band)
    {
        let names: Vec<&str> = model.model.accounts.bands.iter().map(|b| b.name.as_str()).collect();
        return Err(AccountError::UnknownBand { model: model.name.clone(), band: band.to_string(), bands: names.join(", ") });
    }
    let after = match page_cursor(cursor)? {
        None => None,
        Some(cursor) => {
            let (score, account) = cursor.split_once(',').ok_or_else(bad_cursor)?;
            Some((score.parse::<f64>().ok().filter(|s| s.is_finite()).ok_or_else(bad_cursor)?, account.to_string()))
        }
    };
    let members = engine.store.account_members(&model.name).await?;
    let reached: Option<HashSet<String>> = if reach.is_everyone() {
        None
    } else {
        let mut theirs = members.clone();
        InReach::new(engine, reach).retain(&mut theirs, |(_, contact, _)| contact).await?;
        Some(theirs.into_iter().map(|(account, _, _)| account).collect())
    };
    let accounts: Vec<AccountScore> = score_accounts(&model, &members)
        .into_iter()
        .filter(|a| reached.as_ref().is_none_or(|reached| reached.contains(&a.account)))
        .filter(|a| band.is_none_or(|band| a.band.as_deref() == Some(band)))
        .filter(|a| after.as_ref().is_none_or(|(score, account)| a.score < *score || (a.score == *score && &a.account > account)))
        .take(limit)
        .collect();
    let next_cursor = (accounts.len() == limit).then(|| accounts.last().map(|a| format!("{},{}", a.score, a.account))).flatten();
    Ok(AccountPage { model, accounts, next_cursor })
}

/// An account under one model: its score as of now and the contacts the reader reaches,
/// best first (with each one's total under the model, None where the model does not score
/// it).
pub struct AccountDetail {
    pub model: Arc<PublishedModel>,
    pub score: f64,
    pub band: Option<String>,
    pub scored_contacts: usize,
    pub contacts: Vec<(Option<f64>, ContactRecord)>,
    /// Its contacts out of the reader's reach (another rep's): counted in the score, not shown.
    pub hidden: usize,
}

/// An account: its score counts every contact; a sales rep sees theirs among them, and an
/// account where they reach none is not found for them.
pub async fn get(engine: &Engine, reach: &Reach, id: &str, model: Option<&str>) -> Result<AccountDetail, AccountError> {
    let model = engine.named_or_only_model(model)?;
    let contacts = engine.store.account_contacts(id).await?;
    if !contacts.iter().any(|contact| reach.reaches(contact.owner.as_deref())) {
        return Err(AccountError::NotFound(id.to_string()));
    }
    let mut rows = Vec::with_capacity(contacts.len());
    let mut totals = Vec::new();
    for contact in contacts {
        let total = current_cards(engine, &contact, None).await?.into_iter().find(|(m, _)| m.name == model.name).map(|(_, card)| card.total);
        if let Some(total) = total {
            totals.push(total);
        }
        rows.push((total, contact));
    }
    rows.sort_by(|a, b| b.0.unwrap_or(f64::NEG_INFINITY).total_cmp(&a.0.unwrap_or(f64::NEG_INFINITY)));
    let all = rows.len();
    rows.retain(|(_, contact)| reach.reaches(contact.owner.as_deref()));
    let rule = &model.model.accounts;
    let score = rule.score(&totals);
    Ok(AccountDetail { band: rule.band(score), score, scored_contacts: totals.len(), hidden: all - rows.len(), contacts: rows, model })
}

/// An account in the account list: its score and band under the model, and its size.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AccountRow {
    #[schema(required = true)]
    pub band: Option<String>,
    /// Its contacts the model scores.
    pub contacts: usize,
    /// The account: its `account_id` (or `account`) attribute, else its company domain.
    pub id: String,
    pub score: f64,
}

impl From<&AccountScore> for AccountRow {
    fn from(account: &AccountScore) -> Self {
        AccountRow { band: account.band.clone(), contacts: account.contacts, id: account.account.clone(), score: account.score }
    }
}
