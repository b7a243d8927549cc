//! E-mail through lettre to the crate's own SMTP sink.

use std::time::Duration;

use leadscore_delivery::{Mailer, SmtpSink, render_template};
use serde_json::json;

async fn sink() -> SmtpSink {
    match SmtpSink::start().await {
        Ok(sink) => sink,
        Err(e) => panic!("cannot start the SMTP sink: {e}"),
    }
}

fn mailer(sink: &SmtpSink) -> Mailer {
    match Mailer::from_url(&format!("smtp://{}", sink.addr), "leadscore@localhost") {
        Ok(mailer) => mailer,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn sends_a_message_to_the_relay() {
    let sink = sink().await;
    let result = mailer(&sink).send("sales@example.com", "Ada is hot", "Score 87.\nSee the lead list.").await;
    assert!(result.success, "{result:?}");
    assert_eq!(result.status, Some(250));
    assert_eq!(result.error, None);

    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "leadscore@localhost");
    assert_eq!(mail.to, vec!["sales@example.com".to_owned()]);
    assert_eq!(mail.subject().as_deref(), Some("Ada is hot"));
    assert!(mail.data.contains("Score 87."), "{}", mail.data);
    assert_eq!(mail.body(), "Score 87.\r\nSee the lead list.");
    assert!(mail.header("Message-ID").is_some(), "{}", mail.data);
    assert!(mail.header("Date").is_some());
    assert_eq!(mail.header("To").as_deref(), Some("sales@example.com"));
}

#[tokio::test]
async fn non_ascii_subjects_and_bodies_survive() {
    let sink = sink().await;
    let mailer = mailer(&sink);
    let context = json!({"contact": {"name": "Zoë", "score": 91}});
    let subject = render_template("🔥 {{ contact.name }} scored {{contact.score}} — Grüße", &context);
    let body = render_template("{{contact.name}} is hot.\n.a line starting with a dot\n.\nend", &context);
    let result = mailer.send("Sales Team <sales@example.com>, boss@example.com", &subject, &body).await;
    assert!(result.success, "{result:?}");

    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["sales@example.com".to_owned(), "boss@example.com".to_owned()]);
    assert_eq!(mails[0].subject().as_deref(), Some("🔥 Zoë scored 91 — Grüße"));
    assert_eq!(mails[0].body().replace("\r\n", "\n"), "Zoë is hot.\n.a line starting with a dot\n.\nend");
}

#[tokio::test]
async fn several_messages_are_waited_for() {
    let sink = sink().await;
    let mailer = mailer(&sink);
    let sends = (0..3).map(|i| {
        let mailer = mailer.clone();
        tokio::spawn(async move { mailer.send("a@example.com", &format!("n{i}"), "x").await })
    });
    let waiting = sink.wait_for(3, Duration::from_secs(10));
    let (mails, results) = tokio::join!(waiting, futures_join(sends.collect()));
    assert_eq!(mails.len(), 3);
    assert!(results.iter().all(|r| r.success), "{results:?}");
    let mut subjects: Vec<String> = mails.iter().filter_map(|m| m.subject()).collect();
    subjects.sort();
    assert_eq!(subjects, ["n0", "n1", "n2"]);
    assert_eq!(sink.messages().len(), 3);
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<leadscore_delivery::AttemptResult>>) -> Vec<leadscore_delivery::AttemptResult> {
    let mut results = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(result) => results.push(result),
            Err(e) => panic!("{e}"),
        }
    }
    results
}

#[tokio::test]
async fn wait_for_returns_what_arrived_on_timeout() {
    let sink = sink().await;
    let mails = sink.wait_for(1, Duration::from_millis(50)).await;
    assert!(mails.is_empty());
}

#[tokio::test]
async fn a_closed_port_is_a_failed_attempt() {
    // A port that was free a moment ago: binding then dropping leaves nothing listening.
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("{e}"),
    };
    let mailer = match Mailer::from_url(&format!("smtp://127.0.0.1:{port}"), "leadscore@localhost") {
        Ok(mailer) => mailer,
        Err(e) => panic!("{e}"),
    };
    let result = mailer.send("sales@example.com", "hi", "body").await;
    assert!(!result.success);
    assert_eq!(result.status, None);
    let error = result.error.unwrap_or_default();
    assert!(!error.is_empty());
    eprintln!("{error}");
}

#[tokio::test]
async fn a_bad_recipient_is_a_failed_attempt() {
    let sink = sink().await;
    let result = mailer(&sink).send("not an address", "hi", "body").await;
    assert!(!result.success);
    assert!(result.error.unwrap_or_default().contains("recipient"));
    assert!(sink.messages().is_empty());
}
