//! A webhook accepted into the outbox is delivered after the server is killed with
//! `kill -9` and started again (PRODUCT.md §7, F16): the real binary, a real receiver.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KEY: &str = "lsk_durability_admin";

/// A minimal HTTP receiver on a thread: records (webhook-id, answered status) per request.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let status = Arc::new(AtomicU16::new(status));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (answer, record) = (status.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut id, mut length) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("webhook-id:") {
                        id = line[line.len() - value.len()..].trim().to_string();
                    }
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let code = answer.load(Ordering::SeqCst);
                record.lock().unwrap().push((id, code));
                let _ = write!(stream, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Receiver { url, status, seen }
    }

    fn seen(&self) -> Vec<(String, u16)> {
        self.seen.lock().unwrap().clone()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["serve", "--data"])
        .arg(dir)
        .env("LEADSCORE_ADDR", format!("127.0.0.1:{port}"))
        .env("LEADSCORE_ADMIN_KEY", KEY)
        .env("LEADSCORE_ALLOW_PRIVATE_WEBHOOKS", "1")
        .env("LEADSCORE_DELIVERY_BACKOFF", "5s")
        .env("LEADSCORE_LOG", "warn")
        .env_remove("LEADSCORE_DATABASE_URL")
        .env_remove("LEADSCORE_DATA")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_until<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(client: &reqwest::Client, method: reqwest::Method, url: String, body: Option<(&str, String)>) -> Option<Value> {
    let mut request = client.request(method, url).bearer_auth(KEY);
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body);
    }
    let response = request.send().await.ok()?;
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_in_the_outbox_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(503);
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(dir.path(), port);
    wait_until("the server to start", Duration::from_secs(30), async || client.get(format!("{base}/healthz")).send().await.ok()).await;

    let model = "name = \"web\"\n[[activity]]\nname = \"Order\"\nevent = \"Order Placed\"\npoints = 10\n";
    call(&client, reqwest::Method::PUT, format!("{base}/api/v1/models/web"), Some(("application/toml", model.into()))).await.unwrap();
    let automation =
        format!("name = \"Orders\"\ntrigger = {{ event = {{ name = \"Order Placed\" }} }}\nactions = [ {{ webhook = {{ url = \"{}\" }} }} ]\n", receiver.url);
    call(&client, reqwest::Method::PUT, format!("{base}/api/v1/automations/Orders"), Some(("application/toml", automation))).await.unwrap();
    let event = json!({ "type": "track", "event": "Order Placed", "userId": "buyer", "messageId": "order-1" });
    call(&client, reqwest::Method::POST, format!("{base}/api/v1/events"), Some(("application/json", event.to_string()))).await.unwrap();

    // The first attempt meets a 503 and is recorded; the next is due 5 s later.
    let pending = wait_until("the failed first attempt to be recorded", Duration::from_secs(30), async || {
        let listed = call(&client, reqwest::Method::GET, format!("{base}/api/v1/deliveries?state=pending"), None).await?;
        let first = listed["deliveries"].get(0)?.clone();
        (first["attempts"] == 1).then_some(first)
    })
    .await;
    let id = pending["id"].as_str().unwrap().to_string();

    // kill -9 (SIGKILL): no shutdown code runs.
    server.kill().unwrap();
    server.wait().unwrap();
    receiver.status.store(200, Ordering::SeqCst);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut restarted = serve(dir.path(), port);
    let delivered = wait_until("the delivery after the restart", Duration::from_secs(60), async || {
        let listed = call(&client, reqwest::Method::GET, format!("{base}/api/v1/deliveries?state=delivered"), None).await?;
        listed["deliveries"].get(0).cloned()
    })
    .await;
    restarted.kill().unwrap();
    restarted.wait().unwrap();

    assert_eq!(delivered["id"], id.as_str());
    assert_eq!(delivered["attempts"], 2);
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|(webhook_id, _)| webhook_id == &id), "the same webhook-id before and after the crash: {seen:?}");
    assert_eq!(seen[1].1, 200);
}
