//! The kinds of failure front ends answer differently. Each use case has its own error
//! type, naming what can go wrong there (`ContactError`, `ReportError`, `UserError`, …;
//! a use case that can only fail in storage answers `StoreError`), and converts into
//! [`AppError`], whose kinds the front ends turn into their own shape (the API's JSON
//! error with an HTTP status, a page, the CLI's message).

use leadscore_store::StoreError;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input breaks a rule of the product (422): a malformed event, an unknown status,
    /// a model with problems. `details` carries the problems one by one when there are
    /// several.
    #[error("{message}")]
    Invalid { message: String, details: Option<Value> },
    /// The request itself cannot be understood (400): a parameter that is not a number.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Credentials that do not hold (a wrong password, an expired session): 401.
    #[error("{0}")]
    Unauthorized(String),
    /// Known credentials that may not do this (a role without the right): 403.
    #[error("{0}")]
    Forbidden(String),
    /// Too much of this work is under way for this caller (or for everyone): 429, try
    /// again after `retry_after_seconds`.
    #[error("{message}")]
    Busy { message: String, retry_after_seconds: u64 },
    /// Storage failed, or refused (its own kinds: not found, conflict, stale, closed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid { message: message.into(), details: None }
    }

    pub fn invalid_with(message: impl Into<String>, details: Value) -> Self {
        Self::Invalid { message: message.into(), details: Some(details) }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// Whether the thing asked for does not exist (the engine's own answer or the store's).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_) | Self::Store(StoreError::NotFound(_)))
    }
}
