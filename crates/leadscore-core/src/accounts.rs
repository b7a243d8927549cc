//! Accounts (F29): contacts roll up into accounts — named by an `account_id` (or
//! `account`) attribute, e.g. from a Segment `group` call, else by the company domain of
//! the e-mail — and the account's score aggregates its contacts' totals under a model.

use serde_json::{Map, Value};

use crate::band::Band;

/// Mailbox providers whose domain says nothing about the employer: never an account.
pub const FREE_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "hotmail.co.uk",
    "live.com",
    "msn.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "yahoo.de",
    "ymail.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "pm.me",
    "gmx.de",
    "gmx.net",
    "gmx.com",
    "web.de",
    "t-online.de",
    "mail.com",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "naver.com",
    "zoho.com",
    "fastmail.com",
    "hey.com",
    "tutanota.com",
    "orange.fr",
    "free.fr",
    "laposte.net",
    "libero.it",
    "virgilio.it",
    "rediffmail.com",
    "example.com",
];

/// The account a contact belongs to: its `account_id` attribute, else its `account`
/// attribute, else the domain of its e-mail unless that is a free mailbox provider.
pub fn account_key(attributes: &Map<String, Value>, email: Option<&str>) -> Option<String> {
    for key in ["account_id", "account"] {
        match attributes.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => return Some(s.trim().to_string()),
            Some(Value::Number(n)) => return Some(n.to_string()),
            _ => {}
        }
    }
    let domain = email?.rsplit_once('@')?.1.trim().trim_end_matches('.').to_lowercase();
    if domain.is_empty() || !domain.contains('.') || FREE_MAIL_DOMAINS.contains(&domain.as_str()) {
        return None;
    }
    Some(domain)
}

#[derive(Clone, Debug, PartialEq)]
pub enum AccountAggregate {
    Sum,
    Max,
    /// The mean of the best N contacts' totals (fewer when the account has fewer).
    MeanTopN(usize),
}

/// How a model scores accounts: the aggregate and the account bands (highest first).
#[derive(Clone, Debug, PartialEq)]
pub struct AccountRule {
    pub aggregate: AccountAggregate,
    pub bands: Vec<Band>,
}

impl Default for AccountRule {
    fn default() -> Self {
        Self { aggregate: AccountAggregate::Sum, bands: Vec::new() }
    }
}

impl AccountRule {
    /// The account's score from its contacts' totals (any order), rounded to 2 decimals.
    pub fn score(&self, totals: &[f64]) -> f64 {
        if totals.is_empty() {
            return 0.0;
        }
        let value = match self.aggregate {
            AccountAggregate::Sum => totals.iter().sum(),
            AccountAggregate::Max => totals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            AccountAggregate::MeanTopN(n) => {
                let mut sorted = totals.to_vec();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let top = &sorted[..n.min(sorted.len())];
                top.iter().sum::<f64>() / top.len() as f64
            }
        };
        crate::numbers::round2(value)
    }

    /// The band of an account score: the first (highest) whose `min` it reaches.
    pub fn band(&self, score: f64) -> Option<String> {
        self.bands.iter().find(|b| b.min.is_none_or(|m| m <= score)).map(|b| b.name.clone())
    }

    pub fn aggregate_name(&self) -> String {
        match self.aggregate {
            AccountAggregate::Sum => "sum".into(),
            AccountAggregate::Max => "max".into(),
            AccountAggregate::MeanTopN(n) => format!("mean_top_{n}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn accounts_come_from_attributes_then_the_company_domain() {
        assert_eq!(account_key(&attrs(json!({"account_id": "acme-1"})), Some("a@acme.com")).as_deref(), Some("acme-1"));
        assert_eq!(account_key(&attrs(json!({"account": "ACME"})), None).as_deref(), Some("ACME"));
        assert_eq!(account_key(&attrs(json!({"account_id": 42})), None).as_deref(), Some("42"));
        assert_eq!(account_key(&Map::new(), Some("Ann@Acme.COM")).as_deref(), Some("acme.com"));
        assert_eq!(account_key(&Map::new(), Some("ann@gmail.com")), None, "free mailboxes never form accounts");
        assert_eq!(account_key(&Map::new(), Some("ann@Outlook.com")), None);
        assert_eq!(account_key(&attrs(json!({"account_id": ""})), Some("x@localhost")), None);
        assert_eq!(account_key(&Map::new(), None), None);
    }

    #[test]
    fn aggregates_and_bands() {
        let totals = [10.0, 50.0, 30.0, 20.0];
        let rule = |aggregate| AccountRule { aggregate, bands: vec![Band { name: "key".into(), min: Some(40.0) }, Band { name: "other".into(), min: None }] };
        assert_eq!(rule(AccountAggregate::Sum).score(&totals), 110.0);
        assert_eq!(rule(AccountAggregate::Max).score(&totals), 50.0);
        assert_eq!(rule(AccountAggregate::MeanTopN(2)).score(&totals), 40.0);
        assert_eq!(rule(AccountAggregate::MeanTopN(10)).score(&totals), 27.5, "fewer contacts than N: the mean of all");
        assert_eq!(rule(AccountAggregate::Sum).score(&[]), 0.0);
        assert_eq!(rule(AccountAggregate::Max).band(40.0).as_deref(), Some("key"));
        assert_eq!(rule(AccountAggregate::Max).band(39.9).as_deref(), Some("other"));
    }
}
