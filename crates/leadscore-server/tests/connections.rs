//! Issue 15.1: connections that send nothing, or a byte a second, are closed; a full
//! server still answers its health check. Each test runs a real server with short limits
//! and talks raw TCP to it.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use leadscore_server::ServerConfig;
use leadscore_server::listen::ConnectionLimits;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limits(max_connections: usize, health_headroom: usize, header_timeout: Duration) -> ServerConfig {
    let connections = ConnectionLimits { header_timeout, body_timeout: Duration::from_secs(1), max_connections, health_headroom };
    ServerConfig { connections, ..test_config() }
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap()
}

/// Reads until the server closes the connection (or `within` passes: then None), and
/// returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&received).into_owned()),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_and_slow_clients_are_disconnected() {
    let server = TestServer::start_configured(limits(100, 4, Duration::from_secs(1))).await;

    // A socket that never sends a byte.
    let mut idle = connect(&server).await;
    assert!(read_until_closed(&mut idle, Duration::from_secs(10)).await.is_some(), "an idle socket stays open");

    // Headers a byte at a time, never finished in time.
    let mut slow_head = connect(&server).await;
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut closed = false;
    for byte in head {
        if slow_head.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    if !closed {
        closed = read_until_closed(&mut slow_head, Duration::from_secs(5)).await.is_some_and(|answer| answer.is_empty());
    }
    assert!(closed, "a head sent a byte every 200 ms is never cut off");

    // A body a byte at a time, on an authenticated route: 408 in the JSON error shape.
    let mut slow_body = connect(&server).await;
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow_body.write_all(b" ").await.is_err() {
            break;
        }
    }
    let answer = read_until_closed(&mut slow_body, Duration::from_secs(10)).await.expect("a body sent a byte at a time holds the connection");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"timeout""#), "{answer}");

    // A keep-alive connection that goes quiet after its answer is closed too.
    let mut keep_alive = connect(&server).await;
    keep_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buffer = [0u8; 1024];
    let n = keep_alive.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
    assert!(read_until_closed(&mut keep_alive, Duration::from_secs(10)).await.is_some(), "an idle keep-alive connection stays open");

    // The server is still fine.
    server.get("/healthz").await.expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_server_still_answers_its_health_check_and_recovers() {
    // The idle sockets must outlive the checks below: a longer head timeout.
    let server = TestServer::start_configured(limits(20, 2, Duration::from_secs(4))).await;
    // Twenty idle sockets take every normal slot.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(connect(&server).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A health check gets through on the headroom; anything else is told to come back.
    let raw = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\r\n");
    let mut health = connect(&server).await;
    health.write_all(raw("/healthz").as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut health, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut other = connect(&server).await;
    other.write_all(raw("/api/v1/models").as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut other, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503") && answer.to_ascii_lowercase().contains("retry-after"), "{answer}");
    // Once the idle sockets are timed out, the server serves as before.
    for mut socket in idle {
        assert!(read_until_closed(&mut socket, Duration::from_secs(15)).await.is_some());
    }
    server.get("/api/v1/models").await.expect(StatusCode::OK);
}
