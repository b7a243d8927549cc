//! `leadscore serve` on SIGTERM: stops accepting connections, answers the request in
//! flight, stops its background workers and exits 0; everything it acknowledged is there
//! after a restart. The real binary, a request held open over a raw socket.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KEY: &str = "lsk_shutdown_admin";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["serve", "--data"])
        .arg(dir)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .env("LEADSCORE_ADMIN_KEY", KEY)
        .env("LEADSCORE_LOG", "info")
        .env_remove("LEADSCORE_DATABASE_URL")
        .env_remove("LEADSCORE_DATA")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn wait_for_health(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn batch(from: usize, to: usize) -> String {
    let events: Vec<Value> = (from..to)
        .map(|n| json!({ "type": "track", "event": "Page Viewed", "userId": "shopper", "messageId": format!("m-{n}"), "timestamp": "2024-01-01T00:00:00Z" }))
        .collect();
    json!({ "batch": events }).to_string()
}

/// Waits up to `timeout` for the process to exit.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(dir.path(), port);
    // Read on a thread, so a full pipe never blocks the server.
    let mut stderr = server.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    wait_for_health(&client, &base).await;

    let model = "name = \"web\"\n[[activity]]\nname = \"Views\"\nevent = \"Page Viewed\"\npoints = 1\n";
    let published =
        client.put(format!("{base}/api/v1/models/web")).bearer_auth(KEY).header("content-type", "application/toml").body(model).send().await.unwrap();
    assert!(published.status().is_success(), "{}", published.status());
    let first =
        client.post(format!("{base}/api/v1/events")).bearer_auth(KEY).header("content-type", "application/json").body(batch(0, 300)).send().await.unwrap();
    assert_eq!(first.status(), 200);

    // A request in flight: headers and half the body sent, the rest held back.
    let body = batch(300, 400);
    let (head, tail) = body.split_at(body.len() / 2);
    let mut held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        held,
        "POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    held.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let status = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(status.success());
    // Once the signal is handled the listener is closed: new connections are refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.try_wait().unwrap().is_none(), "exited with a request in flight");

    // The held request completes.
    held.write_all(tail.as_bytes()).unwrap();
    held.flush().unwrap();
    held.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = held.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let exited = wait_exit(&mut server, Duration::from_secs(5)).expect("the server exits within 5 s of SIGTERM");
    assert_eq!(exited.code(), Some(0), "{exited:?}");
    let log = log.join().unwrap();
    assert!(log.contains("background workers stopped"), "{log}");
    assert!(log.contains("leadscore stopped"), "{log}");

    // Everything acknowledged is there after a restart.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut restarted = serve(dir.path(), port);
    wait_for_health(&client, &base).await;
    let export: Value = client.get(format!("{base}/api/v1/contacts/shopper/export")).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
    Command::new("kill").args(["-TERM", &restarted.id().to_string()]).status().unwrap();
    let stopped = wait_exit(&mut restarted, Duration::from_secs(10));
    assert_eq!(export["events"].as_array().map(Vec::len), Some(400), "{export}");
    assert_eq!(stopped.and_then(|s| s.code()), Some(0));
}
