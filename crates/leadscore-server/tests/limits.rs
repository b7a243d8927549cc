//! The rate limit per API key, over HTTP.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use leadscore_server::ServerConfig;
use reqwest::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread")]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    // 1 request a second: a burst of 2, then refused.
    let server = TestServer::start_configured(ServerConfig { rate_limit: Some(1), ..ServerConfig::default() }).await;
    server.get("/api/v1/models").await.expect(StatusCode::OK);
    server.get("/api/v1/models").await.expect(StatusCode::OK);
    let request = server.request(Method::GET, "/api/v1/models", Some(ADMIN_KEY));
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Health is not behind a key, so not limited.
    let health = server.send(server.request(Method::GET, "/healthz", None)).await;
    assert_eq!(health.status, StatusCode::OK);
}
