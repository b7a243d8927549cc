//! Webhooks sent to a real HTTP server on 127.0.0.1.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use leadscore_delivery::{TargetGuard, WebhookSender, new_message_id, new_secret, verify};
use tokio::sync::mpsc;

/// What the test receiver saw of one request.
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A receiver answering every request with `status` (and `answer` as its body), reporting
/// each request on the returned channel.
async fn receiver(status: StatusCode, answer: String) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
        let tx = tx.clone();
        let answer = answer.clone();
        async move {
            let _ = tx.send(Received { path: uri.path().to_owned(), headers, body });
            (status, [(header::LOCATION, "http://169.254.169.254/")], answer)
        }
    });
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => panic!("local_addr: {e}"),
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(received)) => received,
        other => panic!("the receiver saw no request: {:?}", other.is_ok()),
    }
}

fn now() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    i64::try_from(secs).unwrap_or_default()
}

fn local_sender() -> WebhookSender {
    WebhookSender::new(TargetGuard { allow_private: true }, WebhookSender::DEFAULT_TIMEOUT)
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("missing header {name}"))
}

const BODY: &[u8] = br#"{"type":"lead.hot","contact":{"email":"ada@example.com"}}"#;

#[tokio::test]
async fn delivers_a_signed_webhook() {
    let (addr, mut rx) = receiver(StatusCode::NO_CONTENT, String::new()).await;
    let secret = new_secret();
    let id = new_message_id();
    let ts = now();

    let result = local_sender().send(&format!("http://{addr}/hooks/leadscore"), &id, ts, BODY, Some(&secret)).await;
    assert!(result.success, "{result:?}");
    assert_eq!(result.status, Some(204));
    assert_eq!(result.error, None);

    let got = next(&mut rx).await;
    assert_eq!(got.path, "/hooks/leadscore");
    assert_eq!(&got.body[..], BODY);
    assert_eq!(header(&got, "content-type"), "application/json");
    assert_eq!(header(&got, "webhook-id"), id);
    assert_eq!(header(&got, "webhook-timestamp"), ts.to_string());
    assert_eq!(header(&got, "user-agent"), concat!("leadscore/", env!("CARGO_PKG_VERSION")));
    let signature = header(&got, "webhook-signature");
    assert!(signature.starts_with("v1,"), "{signature}");
    // Verify what arrived, from the received headers, as a receiver would.
    let received_ts: i64 = header(&got, "webhook-timestamp").parse().unwrap_or_default();
    assert!(verify(&secret, header(&got, "webhook-id"), received_ts, &got.body, signature));
    assert!(!verify(&new_secret(), &id, ts, &got.body, signature));
}

#[tokio::test]
async fn unsigned_without_a_secret() {
    let (addr, mut rx) = receiver(StatusCode::OK, String::new()).await;
    let result = local_sender().send(&format!("http://{addr}/"), &new_message_id(), now(), BODY, None).await;
    assert!(result.success, "{result:?}");
    assert_eq!(result.status, Some(200));
    let got = next(&mut rx).await;
    assert!(got.headers.get("webhook-signature").is_none());
    assert!(got.headers.get("webhook-id").is_some());
}

#[tokio::test]
async fn a_server_error_is_a_failure_with_the_start_of_the_body() {
    let answer = format!("database exploded {}", "x".repeat(2000));
    let (addr, mut rx) = receiver(StatusCode::INTERNAL_SERVER_ERROR, answer.clone()).await;
    let result = local_sender().send(&format!("http://{addr}/"), &new_message_id(), now(), BODY, Some(&new_secret())).await;
    assert!(!result.success);
    assert_eq!(result.status, Some(500));
    let error = result.error.unwrap_or_default();
    assert!(error.contains("500"), "{error}");
    assert!(error.contains("database exploded"), "{error}");
    // 512 bytes of body, plus the status prefix.
    assert!(error.len() < 600, "{} bytes", error.len());
    assert!(error.ends_with(&format!(": {}", &answer[..512])), "{error}");
    next(&mut rx).await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (addr, mut rx) = receiver(StatusCode::TEMPORARY_REDIRECT, String::new()).await;
    let result = local_sender().send(&format!("http://{addr}/"), &new_message_id(), now(), BODY, None).await;
    assert!(!result.success);
    assert_eq!(result.status, Some(307));
    let error = result.error.unwrap_or_default();
    assert!(error.contains("redirect"), "{error}");
    next(&mut rx).await;
    // Exactly one request: the redirect to the metadata address was not attempted.
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn a_private_target_is_refused_without_contacting_it() {
    let (addr, mut rx) = receiver(StatusCode::NO_CONTENT, String::new()).await;
    let strict = WebhookSender::new(TargetGuard::default(), WebhookSender::DEFAULT_TIMEOUT);
    for url in [format!("http://{addr}/"), format!("http://localhost:{}/", addr.port())] {
        let result = strict.send(&url, &new_message_id(), now(), BODY, None).await;
        assert!(!result.success);
        assert_eq!(result.status, None);
        let error = result.error.unwrap_or_default();
        assert!(error.contains("private"), "{error}");
    }
    assert!(rx.try_recv().is_err(), "the guard let a request through");
}

#[tokio::test]
async fn an_unreachable_port_is_a_network_error() {
    // A port that was free a moment ago: binding then dropping leaves nothing listening.
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("{e}"),
    };
    let result = local_sender().send(&format!("http://127.0.0.1:{port}/"), &new_message_id(), now(), BODY, None).await;
    assert!(!result.success);
    assert_eq!(result.status, None);
    let error = result.error.unwrap_or_default();
    assert!(error.contains("connect"), "{error}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts connections (the kernel's backlog does) but never answers.
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let addr = listener.local_addr().ok();
    let sender = WebhookSender::new(TargetGuard { allow_private: true }, Duration::from_millis(300));
    let url = format!("http://{}/", addr.map(|a| a.to_string()).unwrap_or_default());
    let result = sender.send(&url, &new_message_id(), now(), BODY, None).await;
    assert!(!result.success);
    let error = result.error.unwrap_or_default();
    assert!(error.contains("time"), "{error}");
    assert!(result.duration_ms >= 250, "{} ms", result.duration_ms);
    drop(listener);
}

#[tokio::test]
async fn bad_input_is_a_failed_attempt_not_a_panic() {
    let sender = local_sender();
    let cases = [
        ("ftp://example.com/", "msg_1", Some("whsec_AAAA")),
        ("http://127.0.0.1:9/", "msg_1", Some("whsec_***")),
        ("http://127.0.0.1:9/", "bad\nid", None),
        ("", "msg_1", None),
    ];
    for (url, id, secret) in cases {
        let result = sender.send(url, id, now(), BODY, secret).await;
        assert!(!result.success, "{url} {id:?}");
        assert!(result.error.is_some(), "{url} {id:?}");
    }
}

/// Checks our signatures with the official Python SDK (`standardwebhooks` on PyPI), and
/// the SDK's signatures with our `verify`, so a shared misreading of the spec between
/// `sign` and `verify` cannot pass unnoticed. Runs when `LEADSCORE_TEST_SDKS` is set;
/// `LEADSCORE_TEST_PYTHONPATH` points at the installed package
/// (`pip install --target DIR standardwebhooks`).
#[tokio::test]
async fn the_official_python_sdk_agrees() {
    if std::env::var_os("LEADSCORE_TEST_SDKS").is_none() {
        eprintln!("skipped: set LEADSCORE_TEST_SDKS=1 (and LEADSCORE_TEST_PYTHONPATH) to check against the Python SDK");
        return;
    }
    let (addr, mut rx) = receiver(StatusCode::NO_CONTENT, String::new()).await;
    let secret = new_secret();
    let id = new_message_id();
    let ts = now();
    let result = local_sender().send(&format!("http://{addr}/"), &id, ts, BODY, Some(&secret)).await;
    assert!(result.success, "{result:?}");
    let got = next(&mut rx).await;

    const SCRIPT: &str = r#"
import os, sys
from datetime import datetime, timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
body = sys.stdin.buffer.read()
headers = {
    "webhook-id": os.environ["WH_ID"],
    "webhook-timestamp": os.environ["WH_TS"],
    "webhook-signature": os.environ["WH_SIG"],
}
wh = Webhook(os.environ["WH_SECRET"])
wh.verify(body, headers)
try:
    wh.verify(body + b" ", headers)
    sys.exit("the SDK accepted a tampered body")
except WebhookVerificationError:
    pass
ts = datetime.fromtimestamp(int(os.environ["WH_TS"]), tz=timezone.utc)
print(wh.sign(os.environ["WH_ID"], ts, body.decode()))
"#;
    let mut command = std::process::Command::new("python3");
    command
        .arg("-c")
        .arg(SCRIPT)
        .env("WH_ID", header(&got, "webhook-id"))
        .env("WH_TS", header(&got, "webhook-timestamp"))
        .env("WH_SIG", header(&got, "webhook-signature"))
        .env("WH_SECRET", &secret)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(path) = std::env::var_os("LEADSCORE_TEST_PYTHONPATH") {
        command.env("PYTHONPATH", path);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot run python3: {e}"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        if let Err(e) = stdin.write_all(&got.body) {
            panic!("writing to python3: {e}");
        }
    }
    let output = match child.wait_with_output() {
        Ok(output) => output,
        Err(e) => panic!("python3: {e}"),
    };
    assert!(output.status.success(), "the Python SDK rejected our webhook: {}", String::from_utf8_lossy(&output.stderr));
    let sdk_signature = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(verify(&secret, &id, ts, BODY, &sdk_signature), "our verify rejected the SDK's signature {sdk_signature}");
}
