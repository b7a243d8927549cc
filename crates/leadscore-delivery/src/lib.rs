//! What leaves the process for leadscore's automation outbox: signed
//! [Standard Webhooks](https://www.standardwebhooks.com/), SMTP e-mail, the retry
//! schedule and the SSRF guard in front of every webhook target.
//!
//! The outbox itself (rows, leases, workers) lives elsewhere and calls this crate. Keeping
//! storage out of here means a delivery attempt is one plain async call returning an
//! [`AttemptResult`] that the caller records, whatever the backend.
//!
//! Neither sender ever returns `Err` or panics for a failed attempt: a refused target, a
//! network error, a timeout or a rejection are all *outcomes* the outbox must record and
//! retry, so they are reported in [`AttemptResult`] rather than as errors.

pub mod email;
pub mod guard;
pub mod retry;
pub mod signing;
/// A small SMTP server for tests; test support, not compiled into the binary.
#[cfg(feature = "test-sink")]
pub mod sink;
pub mod webhook;

pub use email::{Mailer, render_template};
pub use guard::{ResolvedTarget, TargetGuard, is_public_ip};
/// Re-exported because [`ResolvedTarget`] carries one.
pub use reqwest::Url;
pub use retry::RetryPolicy;
pub use signing::{new_message_id, new_secret, sign, verify};
#[cfg(feature = "test-sink")]
pub use sink::{ReceivedMail, SmtpSink};
pub use webhook::WebhookSender;

/// Why a target or a mail configuration cannot be used at all.
///
/// These are configuration problems (a bad URL, an address the guard refuses), as opposed
/// to a failed attempt, which is an [`AttemptResult`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The URL does not parse, or has a scheme or shape this crate does not deliver to.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The SSRF guard refused the target (it is, or resolves to, a non-public address).
    #[error("refused: {0}")]
    Refused(String),
    /// The host name did not resolve to any address.
    #[error("cannot resolve host: {0}")]
    Resolve(String),
    /// An e-mail address (sender or recipient) does not parse.
    #[error("invalid e-mail address: {0}")]
    InvalidAddress(String),
    /// The SMTP transport could not be configured.
    #[error("SMTP: {0}")]
    Smtp(String),
}

/// Problems with a webhook signing secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The secret is not (`whsec_` +) base64, or decodes to an empty key.
    #[error("invalid webhook secret: {0}")]
    InvalidSecret(String),
}

/// The outcome of one delivery attempt, webhook or e-mail, in the shape the outbox stores.
///
/// One type for both channels so the outbox records and retries them the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// The receiver accepted the message (HTTP 2xx, or a positive SMTP reply).
    pub success: bool,
    /// The HTTP status, or the SMTP reply code, when the peer answered at all.
    pub status: Option<u16>,
    /// What went wrong, for people reading the delivery log: a network error, a refusal by
    /// the guard, a timeout, or a non-2xx answer with the start of the response body.
    pub error: Option<String>,
    /// Wall time of the attempt, including name resolution.
    pub duration_ms: u64,
}

impl AttemptResult {
    pub(crate) fn failed(status: Option<u16>, error: String, started: std::time::Instant) -> Self {
        AttemptResult { success: false, status, error: Some(error), duration_ms: elapsed_ms(started) }
    }
}

pub(crate) fn elapsed_ms(started: std::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Renders an error with its sources, because the top-level messages of reqwest and
/// lettre ("error sending request") hide the part a person needs ("connection refused").
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        // Wrappers often repeat their source's text; keep each message once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}
