//! What automations use besides their definitions: sales teams (round-robin assignment),
//! named secrets (webhook signing; write-only), and webhook subscriptions (`score.changed`
//! for CRM sync with a field mapping, `nurture.changed`); and the options an admin
//! changes at run time (the sales pool).

use std::collections::BTreeMap;

use leadscore_core::Span;
use leadscore_core::model::is_valid_name;
use leadscore_store::runner::{PREDICTIVE_FIELD, SYNC_FIELDS, Subscription, Team};
use leadscore_store::{Millis, StoreError};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::Engine;
use crate::error::AppError;
use crate::time::format_time;

/// Why a team, secret, webhook subscription or option cannot be stored or found.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{kind} name {name:?} may use letters, digits, '-', '_' and '.' only")]
    Name { kind: &'static str, name: String },
    #[error("a team member cannot be empty")]
    EmptyMember,
    #[error("{0}; a secret is \"whsec_\" followed by base64 (omit `value` to have one generated)")]
    Secret(String),
    /// Every problem of a webhook subscription at once.
    #[error("{}", .0.join("; "))]
    Subscription(Vec<String>),
    #[error("no {kind} {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SettingsError> for AppError {
    fn from(err: SettingsError) -> Self {
        match err {
            SettingsError::Subscription(problems) => AppError::invalid_with(problems.join("; "), json!({ "problems": problems })),
            SettingsError::NotFound { .. } => AppError::not_found(err.to_string()),
            SettingsError::Store(err) => AppError::Store(err),
            other => AppError::invalid(other.to_string()),
        }
    }
}

fn not_found(kind: &'static str, name: &str) -> SettingsError {
    SettingsError::NotFound { kind, name: name.to_string() }
}

/// The stored option that says whether sales reps reach the unassigned pool.
pub const SALES_POOL_OPTION: &str = "sales_pool";

/// Lets sales reps reach the contacts without an owner, or stops it: stored, so it holds
/// after a restart and in every process (they re-read it with the models), and in force
/// in this one at once.
pub async fn set_sales_pool(engine: &Engine, allowed: bool) -> Result<(), StoreError> {
    engine.store.put_option(SALES_POOL_OPTION, &allowed.to_string(), engine.now()).await?;
    engine.set_sales_pool(allowed);
    Ok(())
}

fn check_name(kind: &'static str, name: &str) -> Result<(), SettingsError> {
    if is_valid_name(name) { Ok(()) } else { Err(SettingsError::Name { kind, name: name.to_string() }) }
}

/// Creates or replaces team `name` (members trimmed, duplicates dropped); true when created.
pub async fn put_team(engine: &Engine, name: &str, members: Vec<String>) -> Result<(Team, bool), SettingsError> {
    check_name("team", name)?;
    let mut unique = Vec::new();
    for member in members {
        let member = member.trim().to_string();
        if member.is_empty() {
            return Err(SettingsError::EmptyMember);
        }
        if !unique.contains(&member) {
            unique.push(member);
        }
    }
    Ok(engine.store.put_team(name, unique, engine.now()).await?)
}

pub async fn get_team(engine: &Engine, name: &str) -> Result<Team, SettingsError> {
    engine.store.get_team(name).await?.ok_or_else(|| not_found("team", name))
}

pub async fn list_teams(engine: &Engine) -> Result<Vec<Team>, StoreError> {
    engine.store.list_teams().await
}

pub async fn delete_team(engine: &Engine, name: &str) -> Result<(), SettingsError> {
    if !engine.store.delete_team(name).await? {
        return Err(not_found("team", name));
    }
    Ok(())
}

/// A stored secret: whether it was created, and its value when it was generated here
/// (the only time anyone sees it).
pub struct StoredSecret {
    pub created: bool,
    pub generated: Option<String>,
}

/// Stores a signing secret; without a value one is generated. A stored secret is never
/// readable back.
pub async fn put_secret(engine: &Engine, name: &str, value: Option<String>) -> Result<StoredSecret, SettingsError> {
    check_name("secret", name)?;
    let generated = value.is_none();
    let value = value.unwrap_or_else(leadscore_delivery::new_secret);
    // A secret that cannot sign would only fail at delivery time: refuse it now.
    leadscore_delivery::sign(&value, "msg_check", 0, b"{}").map_err(|e| SettingsError::Secret(e.to_string()))?;
    let created = engine.store.put_secret(name, &value, engine.now()).await?;
    tracing::info!(secret = %name, created, "secret stored");
    Ok(StoredSecret { created, generated: generated.then_some(value) })
}

/// The secrets' names with when they were created and last changed (never their values).
pub async fn list_secrets(engine: &Engine) -> Result<Vec<(String, Millis, Millis)>, StoreError> {
    engine.store.list_secrets().await
}

pub async fn delete_secret(engine: &Engine, name: &str) -> Result<(), SettingsError> {
    if !engine.store.delete_secret(name).await? {
        return Err(not_found("secret", name));
    }
    Ok(())
}

/// The events a webhook subscription may ask for.
pub const SUBSCRIBABLE: &[&str] = &["score.changed", "nurture.changed"];

/// A webhook subscription as a caller sends it.
pub struct SubscriptionInput {
    pub url: String,
    pub secret_ref: Option<String>,
    pub events: Vec<String>,
    pub fields: BTreeMap<String, String>,
    /// `30s`, `1m`, …; default 1 minute.
    pub debounce: Option<String>,
}

/// Creates or replaces webhook subscription `name`, every problem reported at once.
pub async fn put_subscription(engine: &Engine, name: &str, input: SubscriptionInput) -> Result<(Subscription, bool), SettingsError> {
    check_name("webhook", name)?;
    let mut problems = Vec::new();
    if !(input.url.starts_with("https://") || input.url.starts_with("http://")) {
        problems.push(format!("url {:?} must be an http(s) URL", input.url));
    } else if let Err(reason) = crate::runtime::check_webhook_url(&engine.config, &input.url).await {
        problems.push(format!("url: {reason}"));
    }
    if input.events.is_empty() {
        problems.push(format!("events must list at least one of {}", SUBSCRIBABLE.join(", ")));
    }
    for event in &input.events {
        if !SUBSCRIBABLE.contains(&event.as_str()) {
            problems.push(format!("events: {event:?} is not one of {}", SUBSCRIBABLE.join(", ")));
        }
    }
    for (source, target) in &input.fields {
        let field = source.rsplit('.').next().unwrap_or(source);
        if field == PREDICTIVE_FIELD && source != PREDICTIVE_FIELD {
            problems.push(format!("fields: {source:?}: the predictive score is of no rule model; map `predictive` alone"));
        } else if !SYNC_FIELDS.contains(&field) {
            problems.push(format!("fields: {source:?} is not one of {} (optionally MODEL.field)", SYNC_FIELDS.join(", ")));
        }
        if target.trim().is_empty() {
            problems.push(format!("fields: {source:?} maps to an empty name"));
        }
    }
    let debounce = match input.debounce.as_deref() {
        None => 60_000,
        Some(text) => match Span::parse(text) {
            Ok(span) => span.millis(),
            Err(err) => {
                problems.push(format!("debounce: {err}"));
                0
            }
        },
    };
    if !problems.is_empty() {
        return Err(SettingsError::Subscription(problems));
    }
    let now = engine.now();
    let subscription = Subscription {
        name: name.to_string(),
        url: input.url,
        secret_ref: input.secret_ref,
        events: input.events,
        fields: input.fields,
        debounce_ms: debounce,
        created_at: now,
        updated_at: now,
    };
    Ok(engine.store.put_subscription(subscription).await?)
}

pub async fn list_subscriptions(engine: &Engine) -> Result<Vec<Subscription>, StoreError> {
    engine.store.list_subscriptions().await
}

pub async fn delete_subscription(engine: &Engine, name: &str) -> Result<(), SettingsError> {
    if !engine.store.delete_subscription(name).await? {
        return Err(not_found("webhook subscription", name));
    }
    Ok(())
}

/// A sales team as front ends show it: members, leads assigned, who is next.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TeamView {
    /// Leads the team was given so far.
    pub assigned: u64,
    pub created_at: String,
    pub members: Vec<String>,
    pub name: String,
    /// Who gets the next lead (null for a team without members).
    #[schema(required = true)]
    pub next: Option<String>,
    pub updated_at: String,
}

impl From<&Team> for TeamView {
    fn from(team: &Team) -> Self {
        let next = (!team.members.is_empty()).then(|| team.members[(team.cursor % team.members.len() as u64) as usize].clone());
        TeamView {
            assigned: team.cursor,
            created_at: format_time(team.created_at),
            members: team.members.clone(),
            name: team.name.clone(),
            next,
            updated_at: format_time(team.updated_at),
        }
    }
}

/// A stored secret, by name only: its value is never readable back.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SecretView {
    pub created_at: String,
    pub name: String,
    pub updated_at: String,
}

impl SecretView {
    /// A secret as [`list_secrets`] lists it: (name, created at, updated at).
    pub fn new((name, created_at, updated_at): &(String, Millis, Millis)) -> Self {
        SecretView { created_at: format_time(*created_at), name: name.clone(), updated_at: format_time(*updated_at) }
    }
}

/// A webhook subscription as front ends show it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub created_at: String,
    /// score.changed: how long a contact's changes are gathered before they are sent.
    pub debounce_ms: i64,
    /// `score.changed`, `nurture.changed`.
    pub events: Vec<String>,
    /// score.changed: leadscore field → the receiver's field name.
    pub fields: BTreeMap<String, String>,
    pub name: String,
    /// The secret that signs the deliveries.
    #[schema(required = true)]
    pub secret_ref: Option<String>,
    pub updated_at: String,
    pub url: String,
}

impl From<&Subscription> for SubscriptionView {
    fn from(subscription: &Subscription) -> Self {
        SubscriptionView {
            created_at: format_time(subscription.created_at),
            debounce_ms: subscription.debounce_ms,
            events: subscription.events.clone(),
            fields: subscription.fields.clone(),
            name: subscription.name.clone(),
            secret_ref: subscription.secret_ref.clone(),
            updated_at: format_time(subscription.updated_at),
            url: subscription.url.clone(),
        }
    }
}
