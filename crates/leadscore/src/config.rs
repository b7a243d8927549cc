//! The configuration, read in one layered place: defaults, then `leadscore.toml` (or the
//! file `--config` names), then `LEADSCORE_*` variables, then flags. [`Config::load`] is
//! the only reader; `leadscore config` prints what it found and where each value came from,
//! secrets redacted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use leadscore_server::ServerConfig;
use serde::Deserialize;
use serde_json::{Value, json};

/// `leadscore.toml`. Every key is optional; the names are the variables' without
/// `LEADSCORE_`, in lower case (`sweep_interval = "5m"` is `LEADSCORE_SWEEP_INTERVAL=5m`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data: Option<PathBuf>,
    pub database_url: Option<String>,
    pub addr: Option<String>,
    pub admin_key: Option<String>,
    sweep_interval: Option<toml::Value>,
    rate_limit: Option<toml::Value>,
    header_timeout: Option<toml::Value>,
    body_timeout: Option<toml::Value>,
    max_connections: Option<toml::Value>,
    scheduler_interval: Option<toml::Value>,
    max_future_skew: Option<toml::Value>,
    delivery_backoff: Option<toml::Value>,
    delivery_lease: Option<toml::Value>,
    delivery_attempts: Option<toml::Value>,
    allow_private_webhooks: Option<toml::Value>,
    smtp_url: Option<toml::Value>,
    smtp_from: Option<toml::Value>,
    public_url: Option<toml::Value>,
    session_idle: Option<toml::Value>,
    session_lifetime: Option<toml::Value>,
    sales_pool: Option<toml::Value>,
    retrain_interval: Option<toml::Value>,
    rescore_chunk: Option<toml::Value>,
    rescore_chunk_events: Option<toml::Value>,
}

impl Settings {
    /// Reads `path`, or `./leadscore.toml` when it exists; no file means defaults.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let default = PathBuf::from("leadscore.toml");
                if !default.exists() {
                    return Ok(Self::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is not a valid leadscore.toml", path.display()))
    }
}

/// Where a value came from, for `leadscore config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Environment,
    Flag,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => "leadscore.toml",
            Source::Environment => "environment",
            Source::Flag => "flag",
        }
    }
}

/// The server's tunables, layered, and where each came from.
pub struct Config {
    pub server: ServerConfig,
    /// The pages' settings: the public URL (secure cookies behind TLS) and session timeouts.
    pub web: leadscore_web::WebConfig,
    /// (key, source) of every tunable that is not its default.
    sources: Vec<(&'static str, Source)>,
}

/// A tunable's text from the environment, else from the file.
fn layered(key: &'static str, file: Option<&toml::Value>) -> Option<(String, Source, String)> {
    let variable = format!("LEADSCORE_{}", key.to_ascii_uppercase());
    if let Ok(text) = std::env::var(&variable) {
        return Some((text, Source::Environment, variable));
    }
    file.map(|value| {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        (text, Source::File, format!("{key} in leadscore.toml"))
    })
}

fn span(text: &str, origin: &str) -> Result<Duration> {
    let span = leadscore_core::Span::parse(text.trim()).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    Ok(Duration::from_millis(span.millis() as u64))
}

fn off(text: &str) -> bool {
    matches!(text.trim(), "0" | "off")
}

fn truthy(text: &str) -> bool {
    !matches!(text.trim(), "" | "0" | "false" | "no" | "off")
}

impl Config {
    /// Defaults, then the file, then the environment.
    pub fn load(settings: &Settings) -> Result<Self> {
        let mut server = ServerConfig::default();
        let mut web = leadscore_web::WebConfig::default();
        let mut sources = Vec::new();
        let mut take = |key: &'static str, file: Option<&toml::Value>| {
            layered(key, file).map(|(text, source, origin)| {
                sources.push((key, source));
                (text, origin)
            })
        };
        if let Some((text, origin)) = take("sweep_interval", settings.sweep_interval.as_ref()) {
            server.engine.sweep_interval = if off(&text) { None } else { Some(span(&text, &origin)?) };
        }
        if let Some((text, origin)) = take("rate_limit", settings.rate_limit.as_ref()) {
            server.rate_limit = if off(&text) {
                None
            } else {
                Some(text.trim().parse().with_context(|| format!("{origin}: {text:?} is not a number of requests per second (or off)"))?)
            };
        }
        if let Some((text, origin)) = take("header_timeout", settings.header_timeout.as_ref()) {
            server.connections.header_timeout = span(&text, &origin)?.max(Duration::from_secs(1));
        }
        if let Some((text, origin)) = take("body_timeout", settings.body_timeout.as_ref()) {
            server.connections.body_timeout = span(&text, &origin)?.max(Duration::from_secs(1));
        }
        if let Some((text, origin)) = take("max_connections", settings.max_connections.as_ref()) {
            server.connections.max_connections =
                text.trim().parse().ok().filter(|n| *n >= 1).with_context(|| format!("{origin}: {text:?} is not a positive number of connections"))?;
        }
        if let Some((text, origin)) = take("scheduler_interval", settings.scheduler_interval.as_ref()) {
            server.engine.scheduler_interval = span(&text, &origin)?;
        }
        if let Some((text, origin)) = take("max_future_skew", settings.max_future_skew.as_ref()) {
            server.engine.max_future_skew = span(&text, &origin)?;
        }
        if let Some((text, origin)) = take("delivery_backoff", settings.delivery_backoff.as_ref()) {
            server.engine.delivery_backoff = span(&text, &origin)?;
        }
        if let Some((text, origin)) = take("delivery_lease", settings.delivery_lease.as_ref()) {
            server.engine.delivery_lease = span(&text, &origin)?.max(Duration::from_secs(1));
        }
        if let Some((text, origin)) = take("delivery_attempts", settings.delivery_attempts.as_ref()) {
            server.engine.delivery_attempts =
                text.trim().parse().ok().filter(|n| *n >= 1).with_context(|| format!("{origin}: {text:?} is not a positive number"))?;
        }
        if let Some((text, _)) = take("allow_private_webhooks", settings.allow_private_webhooks.as_ref()) {
            server.engine.allow_private_webhooks = truthy(&text);
        }
        if let Some((text, _)) = take("smtp_url", settings.smtp_url.as_ref()) {
            server.engine.smtp_url = Some(text).filter(|u| !u.trim().is_empty());
        }
        if let Some((text, _)) = take("smtp_from", settings.smtp_from.as_ref()) {
            server.engine.smtp_from = text;
        }
        if let Some((text, _)) = take("public_url", settings.public_url.as_ref()) {
            web.public_url = Some(text.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty());
        }
        if let Some((text, origin)) = take("retrain_interval", settings.retrain_interval.as_ref()) {
            server.engine.retrain_interval = if off(&text) { None } else { Some(span(&text, &origin)?.max(Duration::from_secs(60))) };
        }
        if let Some((text, origin)) = take("rescore_chunk", settings.rescore_chunk.as_ref()) {
            server.engine.rescore_chunk.contacts =
                text.trim().parse().ok().filter(|n| *n >= 1).with_context(|| format!("{origin}: {text:?} is not a positive number of contacts"))?;
        }
        if let Some((text, origin)) = take("rescore_chunk_events", settings.rescore_chunk_events.as_ref()) {
            server.engine.rescore_chunk.events =
                text.trim().parse().ok().filter(|n| *n >= 1).with_context(|| format!("{origin}: {text:?} is not a positive number of events"))?;
        }
        if let Some((text, _)) = take("sales_pool", settings.sales_pool.as_ref()) {
            server.engine.sales_pool = truthy(&text);
        }
        if let Some((text, origin)) = take("session_idle", settings.session_idle.as_ref()) {
            server.engine.sessions.idle = span(&text, &origin)?;
        }
        if let Some((text, origin)) = take("session_lifetime", settings.session_lifetime.as_ref()) {
            server.engine.sessions.lifetime = span(&text, &origin)?;
        }
        Ok(Config { server, web, sources })
    }

    fn source(&self, key: &str) -> Source {
        self.sources.iter().find(|(k, _)| *k == key).map_or(Source::Default, |(_, s)| *s)
    }

    /// Every setting with its value and where it came from; secrets redacted (the admin
    /// key is never shown, URLs lose their passwords).
    pub fn describe(&self, store: (&str, Source), addr: (&str, Source), admin_key: Option<Source>) -> Value {
        let seconds = |d: Duration| json!(leadscore_core::Span::from_millis(d.as_millis() as i64).to_string());
        let server = &self.server;
        let entry = |value: Value, source: Source| json!({ "value": value, "from": source.as_str() });
        json!({
            "store": entry(json!(crate::redact(store.0)), store.1),
            "addr": entry(json!(addr.0), addr.1),
            "admin_key": entry(json!(admin_key.map(|_| "(set, not shown)")), admin_key.unwrap_or(Source::Default)),
            "sweep_interval": entry(server.engine.sweep_interval.map_or(json!("off"), seconds), self.source("sweep_interval")),
            "rate_limit": entry(server.rate_limit.map_or(json!("off"), |n| json!(n)), self.source("rate_limit")),
            "header_timeout": entry(seconds(server.connections.header_timeout), self.source("header_timeout")),
            "body_timeout": entry(seconds(server.connections.body_timeout), self.source("body_timeout")),
            "max_connections": entry(json!(server.connections.max_connections), self.source("max_connections")),
            "scheduler_interval": entry(seconds(server.engine.scheduler_interval), self.source("scheduler_interval")),
            "max_future_skew": entry(seconds(server.engine.max_future_skew), self.source("max_future_skew")),
            "delivery_backoff": entry(seconds(server.engine.delivery_backoff), self.source("delivery_backoff")),
            "delivery_lease": entry(seconds(server.engine.delivery_lease), self.source("delivery_lease")),
            "delivery_attempts": entry(json!(server.engine.delivery_attempts), self.source("delivery_attempts")),
            "allow_private_webhooks": entry(json!(server.engine.allow_private_webhooks), self.source("allow_private_webhooks")),
            "smtp_url": entry(json!(server.engine.smtp_url.as_deref().map(crate::redact)), self.source("smtp_url")),
            "smtp_from": entry(json!(server.engine.smtp_from), self.source("smtp_from")),
            "public_url": entry(json!(self.web.public_url), self.source("public_url")),
            "session_idle": entry(seconds(self.server.engine.sessions.idle), self.source("session_idle")),
            "session_lifetime": entry(seconds(self.server.engine.sessions.lifetime), self.source("session_lifetime")),
            "sales_pool": entry(json!(server.engine.sales_pool), self.source("sales_pool")),
            "retrain_interval": entry(server.engine.retrain_interval.map_or(json!("off"), seconds), self.source("retrain_interval")),
            "rescore_chunk": entry(json!(server.engine.rescore_chunk.contacts), self.source("rescore_chunk")),
            "rescore_chunk_events": entry(json!(server.engine.rescore_chunk.events), self.source("rescore_chunk_events")),
        })
    }
}
