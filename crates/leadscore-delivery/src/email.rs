//! E-mail over SMTP, and the one-line template language for subjects and bodies.

use std::time::{Duration, Instant};

use lettre::message::header::{ContentType, To};
use lettre::message::{Mailbox, Mailboxes};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

use crate::{AttemptResult, DeliveryError, elapsed_ms, error_chain};

/// Long enough for a relay that greets slowly on purpose (tarpitting), short enough that a
/// hung relay does not hold an outbox worker for lettre's default minute.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends plain-text e-mail through one SMTP relay.
///
/// Cheap to clone (the transport is shared). Each message opens its own connection: the
/// outbox sends few e-mails, and a fresh connection never trips over one the relay closed.
#[derive(Debug, Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// Configures the relay from a URL, lettre's format:
    ///
    /// - `smtp://host:port` — plain SMTP without TLS, for a relay on localhost or a
    ///   trusted network (port 25 when omitted);
    /// - `smtp://user:pass@host:587?tls=required` — STARTTLS, refusing to continue
    ///   without it (`?tls=opportunistic` upgrades only when offered);
    /// - `smtps://user:pass@host:465` — TLS from the first byte.
    ///
    /// User and password are percent-decoded. `from` is the sender, a bare address or
    /// `Name <address>`. Nothing is contacted here: a relay that is down shows up as a
    /// failed attempt, to be retried, not as a configuration error.
    pub fn from_url(url: &str, from: &str) -> Result<Mailer, DeliveryError> {
        let from: Mailbox = from.trim().parse().map_err(|e| DeliveryError::InvalidAddress(format!("sender {from:?}: {e}")))?;
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.trim())
            .map_err(|e| DeliveryError::InvalidUrl(format!("{}: {}", redact(url), error_chain(&e))))?;
        Ok(Mailer { transport: builder.timeout(Some(SMTP_TIMEOUT)).build(), from })
    }

    /// Sends one plain-text (UTF-8) message. `to` may list several addresses separated
    /// by commas.
    ///
    /// Like [`crate::WebhookSender::send`], every failure is a failed [`AttemptResult`];
    /// `status` then holds the relay's SMTP reply code when it gave one, so a permanent
    /// 5xx can be told from a transient 4xx.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> AttemptResult {
        let started = Instant::now();
        let to: Mailboxes = match to.trim().parse() {
            Ok(to) => to,
            Err(e) => {
                return AttemptResult::failed(None, format!("invalid recipient address {to:?}: {e}"), started);
            }
        };
        let message = Message::builder()
            .from(self.from.clone())
            .mailbox(To::from(to))
            .subject(subject)
            // Relays and spam filters penalise mail without a Message-ID.
            .message_id(None)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned());
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                return AttemptResult::failed(None, format!("cannot build the message: {}", error_chain(&e)), started);
            }
        };
        match self.transport.send(message).await {
            Ok(response) => {
                let code = u16::from(response.code());
                AttemptResult {
                    success: response.is_positive(),
                    status: Some(code),
                    error: (!response.is_positive()).then(|| format!("SMTP {code}: {}", response.message().collect::<Vec<_>>().join(" "))),
                    duration_ms: elapsed_ms(started),
                }
            }
            Err(e) => AttemptResult::failed(e.status().map(u16::from), format!("SMTP: {}", error_chain(&e)), started),
        }
    }
}

/// The URL for error messages, without its password.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "the SMTP URL".to_owned(),
    }
}

/// Fills `{{ path.to.value }}` placeholders from `context`.
///
/// Deliberately tiny: automations are written by marketers and stored in the database, so
/// the template language has no logic, no loops and nothing that can fail or run long;
/// a typo renders as an empty string rather than blocking the e-mail.
///
/// - the path is dotted keys; a segment that is a number also indexes an array
///   (`items.0.name`); spaces inside the braces are optional;
/// - strings are inserted as they are, numbers and booleans as JSON text, arrays and
///   objects as compact JSON;
/// - a missing value, and `null`, render as the empty string (an unknown attribute
///   should not show up as the word "null" in a customer's e-mail);
/// - anything else, including an unclosed `{{`, is left as written.
pub fn render_template(template: &str, context: &Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after_open = &rest[open + 2..];
        let Some(close) = after_open.find("}}") else {
            // Unclosed: keep the remainder verbatim.
            out.push_str(&rest[open..]);
            return out;
        };
        let path = after_open[..close].trim();
        if is_path(path) {
            out.push_str(&render_value(lookup(context, path)));
        } else {
            // Not a placeholder (e.g. `{{}}` or `{{ a b }}`): leave it alone.
            out.push_str(&rest[open..open + 2 + close + 2]);
        }
        rest = &after_open[close + 2..];
    }
    out.push_str(rest);
    out
}

fn is_path(path: &str) -> bool {
    !path.is_empty() && path.split('.').all(|segment| !segment.is_empty() && !segment.contains(|c: char| c.is_whitespace() || c == '{' || c == '}'))
}

fn lookup<'a>(context: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(context, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn render_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> Value {
        json!({
            "contact": {
                "email": "ada@example.com",
                "name": "Ada",
                "score": 87,
                "ratio": 0.5,
                "hot": true,
                "nothing": null,
                "tags": ["a", "b"],
                "company": {"name": "Analytical", "size": 12},
            },
            "items": [{"name": "first"}, {"name": "second"}],
            "top": "level",
        })
    }

    #[test]
    fn paths_numbers_and_spaces() {
        let ctx = context();
        assert_eq!(render_template("Hi {{contact.name}}, your score is {{ contact.score }}.", &ctx), "Hi Ada, your score is 87.");
        assert_eq!(render_template("{{   contact.company.name   }}", &ctx), "Analytical");
        assert_eq!(render_template("{{contact.ratio}}/{{contact.hot}}", &ctx), "0.5/true");
        assert_eq!(render_template("{{top}}", &ctx), "level");
        assert_eq!(render_template("{{ items.1.name }}", &ctx), "second");
        assert_eq!(render_template("{{contact.tags}}", &ctx), r#"["a","b"]"#);
        assert_eq!(render_template("{{contact.company}}", &ctx), r#"{"name":"Analytical","size":12}"#);
        assert_eq!(render_template("{{a}}{{top}}{{b}}", &ctx), "level");
    }

    #[test]
    fn missing_values_render_empty() {
        let ctx = context();
        assert_eq!(render_template("[{{ contact.phone }}]", &ctx), "[]");
        assert_eq!(render_template("[{{ nope.deeper.still }}]", &ctx), "[]");
        assert_eq!(render_template("[{{ contact.name.first }}]", &ctx), "[]");
        assert_eq!(render_template("[{{ items.9.name }}]", &ctx), "[]");
        assert_eq!(render_template("[{{ contact.nothing }}]", &ctx), "[]");
        assert_eq!(render_template("[{{ top }}]", &Value::Null), "[]");
    }

    #[test]
    fn everything_else_is_left_as_written() {
        let ctx = context();
        assert_eq!(render_template("no placeholders", &ctx), "no placeholders");
        assert_eq!(render_template("", &ctx), "");
        assert_eq!(render_template("{{}} {{ }}", &ctx), "{{}} {{ }}");
        assert_eq!(render_template("{{ a b }}", &ctx), "{{ a b }}");
        assert_eq!(render_template("{{ .top }}", &ctx), "{{ .top }}");
        assert_eq!(render_template("a {{ top", &ctx), "a {{ top");
        assert_eq!(render_template("{ top } }}", &ctx), "{ top } }}");
        assert_eq!(render_template("é {{top}} ü", &ctx), "é level ü");
        // A value containing braces is not expanded again.
        let tricky = json!({"x": "{{y}}", "y": "no"});
        assert_eq!(render_template("{{x}}", &tricky), "{{y}}");
    }

    #[test]
    fn bad_configuration_is_an_error() {
        assert!(matches!(Mailer::from_url("smtp://127.0.0.1:2525", "not an address"), Err(DeliveryError::InvalidAddress(_))));
        assert!(matches!(Mailer::from_url("http://127.0.0.1:2525", "leadscore@localhost"), Err(DeliveryError::InvalidUrl(_))));
        match Mailer::from_url("bogus://user:hunter2@x", "leadscore@localhost") {
            Err(DeliveryError::InvalidUrl(msg)) => assert!(!msg.contains("hunter2"), "{msg}"),
            other => panic!("{other:?}"),
        }
        assert!(Mailer::from_url("smtp://127.0.0.1:2525", "Lead Score <leadscore@localhost>").is_ok());
        assert!(Mailer::from_url("smtps://user:pass@smtp.example.com:465", "leadscore@localhost").is_ok());
        assert!(Mailer::from_url("smtp://user:pass@smtp.example.com:587?tls=required", "leadscore@localhost").is_ok());
    }
}
