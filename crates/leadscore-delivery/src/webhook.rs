//! Sending one signed webhook.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::guard::{TargetGuard, resolve};
use crate::{AttemptResult, elapsed_ms, error_chain, signing};

/// How much of a failed response's body goes into the delivery log: enough to show the
/// receiver's error message, little enough that a receiver cannot flood the outbox.
const ERROR_BODY_LIMIT: usize = 512;

/// POSTs signed webhooks through the [`TargetGuard`].
///
/// One `reqwest::Client` is built and reused, so connections to a receiver are pooled.
/// Address pinning is done by the client's DNS resolver, which applies the guard's rule to
/// the very addresses the connection is made to: a DNS-rebinding answer that turns private
/// after [`TargetGuard::check`] passed is refused at connect time. (An IP literal involves
/// no lookup, so the check before sending is final for it.)
#[derive(Debug, Clone)]
pub struct WebhookSender {
    guard: TargetGuard,
    timeout: Duration,
    /// Building a client only fails when the TLS backend cannot initialise; that is
    /// reported on every attempt instead of panicking in a constructor.
    client: Result<reqwest::Client, String>,
}

impl Default for WebhookSender {
    fn default() -> Self {
        WebhookSender::new(TargetGuard::default(), WebhookSender::DEFAULT_TIMEOUT)
    }
}

impl WebhookSender {
    /// Receivers are expected to answer quickly and do the work later (the spec's advice);
    /// one that takes longer is treated as failed and retried, which keeps a slow receiver
    /// from tying up the outbox workers.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// `timeout` bounds a whole attempt: name resolution, connecting, TLS, sending, and
    /// reading the answer.
    pub fn new(guard: TargetGuard, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("leadscore/", env!("CARGO_PKG_VERSION")))
            // A redirect would be a way around the guard (a public URL answering 307 to
            // http://169.254.169.254/), and the spec has receivers answer 2xx directly.
            .redirect(reqwest::redirect::Policy::none())
            // Through a proxy the proxy resolves and connects, and the guard would check
            // nothing.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { guard }))
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)));
        WebhookSender { guard, timeout, client }
    }

    /// POSTs `body` (JSON) to `url` as one Standard Webhooks message.
    ///
    /// The same `message_id` and `timestamp_secs` must be passed on every retry of a
    /// message: receivers deduplicate by id, and the signature covers both. Without a
    /// `secret` no `webhook-signature` header is sent (rather than an empty or bogus one),
    /// so receivers can tell "unsigned" from "signed wrongly".
    ///
    /// Never panics and never returns an error: everything that can go wrong is a failed
    /// [`AttemptResult`] for the outbox to record.
    pub async fn send(&self, url: &str, message_id: &str, timestamp_secs: i64, body: &[u8], secret: Option<&str>) -> AttemptResult {
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, self.attempt(url, message_id, timestamp_secs, body, secret, started)).await {
            Ok(result) => result,
            Err(_) => AttemptResult::failed(None, format!("timed out after {} ms", self.timeout.as_millis()), started),
        }
    }

    async fn attempt(&self, url: &str, message_id: &str, timestamp_secs: i64, body: &[u8], secret: Option<&str>, started: Instant) -> AttemptResult {
        let client = match &self.client {
            Ok(client) => client,
            Err(e) => return AttemptResult::failed(None, e.clone(), started),
        };
        let target = match self.guard.check(url).await {
            Ok(target) => target,
            Err(e) => return AttemptResult::failed(None, e.to_string(), started),
        };
        let mut request = client
            .post(target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp_secs.to_string())
            .body(body.to_vec());
        if let Some(secret) = secret {
            match signing::sign(secret, message_id, timestamp_secs, body) {
                Ok(signature) => request = request.header("webhook-signature", signature),
                Err(e) => return AttemptResult::failed(None, e.to_string(), started),
            }
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return AttemptResult::failed(None, describe(&e), started),
        };
        let status = response.status();
        if status.is_success() {
            return AttemptResult { success: true, status: Some(status.as_u16()), error: None, duration_ms: elapsed_ms(started) };
        }
        let mut message = format!("HTTP {status}");
        if status.is_redirection() {
            message.push_str(" (redirects are not followed");
            if let Some(location) = response.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()) {
                message.push_str("; location: ");
                message.push_str(location);
            }
            message.push(')');
        }
        let excerpt = body_excerpt(&mut response).await;
        if !excerpt.trim().is_empty() {
            message.push_str(": ");
            message.push_str(&excerpt);
        }
        AttemptResult::failed(Some(status.as_u16()), message, started)
    }
}

/// Reads at most [`ERROR_BODY_LIMIT`] bytes, chunk by chunk, so a huge error page is not
/// downloaded just to be cut.
async fn body_excerpt(response: &mut reqwest::Response) -> String {
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            // A body that breaks off is still worth showing as far as it came.
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(ERROR_BODY_LIMIT);
    // Cutting at 512 bytes may split a character; lossy decoding shows it as U+FFFD.
    String::from_utf8_lossy(&bytes).into_owned()
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "network error"
    };
    format!("{kind}: {}", error_chain(e))
}

/// Resolves names for the client and refuses the answer when the guard would, so the
/// addresses connected to are always addresses the guard accepted.
#[derive(Debug)]
struct GuardedResolver {
    guard: TargetGuard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest substitutes the URL's port.
            let addrs: Vec<SocketAddr> = resolve(&host, 0).await?;
            guard.admit(&host, &addrs)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    async fn resolve_with(allow_private: bool, host: &str) -> Result<Vec<SocketAddr>, String> {
        let resolver = GuardedResolver { guard: TargetGuard { allow_private } };
        let name = Name::from_str(host).map_err(|e| e.to_string())?;
        match resolver.resolve(name).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(e) => Err(e.to_string()),
        }
    }

    // The connect-time half of the guard: what a rebinding DNS answer would hit. A name
    // that resolves to loopback stands in for the rebound answer.
    #[tokio::test]
    async fn the_resolver_refuses_private_answers() {
        match resolve_with(false, "localhost").await {
            Err(e) => assert!(e.contains("private"), "{e}"),
            Ok(addrs) => panic!("localhost resolved to {addrs:?} through the guard"),
        }
        match resolve_with(true, "localhost").await {
            Ok(addrs) => assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}"),
            Err(e) => panic!("{e}"),
        }
    }
}
