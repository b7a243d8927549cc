//! Issue 15.1: under `ulimit -n 1024`, 1,100 idle sockets made `/healthz` time out for as
//! long as they were held (`accept error: Too many open files`). The real binary, with a
//! low descriptor limit, and more idle sockets than it may open.

#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_checks_get_through_while_idle_sockets_outnumber_the_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let binary = env!("CARGO_BIN_EXE_leadscore");
    let script = format!("ulimit -n 256 && exec \"$0\" serve --data \"$1\" --addr 127.0.0.1:{port}");
    let mut server = Command::new("sh")
        .args(["-c", &script, binary])
        .arg(dir.path())
        .env("LEADSCORE_ADMIN_KEY", "lsk_descriptors_admin")
        .env("LEADSCORE_HEADER_TIMEOUT", "30s")
        .env_remove("LEADSCORE_DATABASE_URL")
        .env_remove("LEADSCORE_DATA")
        .env_remove("LEADSCORE_MAX_CONNECTIONS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(3)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 400 sockets that never send a byte, against a process that may open 256 files, and
    // a head timeout (30 s) longer than this test: only the cap keeps the server going.
    let idle: Vec<TcpStream> = (0..400).filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(idle.len() > 300, "the test could not open its sockets");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let mut answered = false;
    while started.elapsed() < Duration::from_secs(15) {
        if let Ok(reply) = client.get(format!("{base}/healthz")).send().await
            && reply.status().is_success()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answered, "/healthz did not answer while idle sockets were held");

    // Once they are gone, the API serves as before.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = client.get(format!("{base}/api/v1/models")).bearer_auth("lsk_descriptors_admin").send().await;
        if reply.as_ref().is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "the API did not recover: {reply:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
