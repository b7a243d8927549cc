//! Accounts (F29): the account score aggregates the contacts' totals as the model's
//! `[accounts]` table says (sum by default, max, or mean of the top N).

use std::collections::BTreeMap;

use leadscore_store::PublishedModel;

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
