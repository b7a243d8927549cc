//! What the web app's tests share: an engine on a fresh SQLite database with the example
//! model live and the clock fixed, and the API with the pages served on a free port.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use leadscore_app::users::NewUser;
use leadscore_app::{Clock, Engine, models, users};
use leadscore_server::{AppState, EngineConfig, ServerConfig};
use leadscore_store::{Millis, Role};
use leadscore_store_sqlite::SqliteStore;

pub const PASSWORD: &str = "correct horse battery";

/// The app's state at `now`, nothing served yet (the test seeds it first). Webhooks may
/// point at this machine (nothing is sent: the workers do not run).
pub async fn state(now: Millis) -> (tempfile::TempDir, Arc<AppState>) {
    state_with(now, EngineConfig { workers: false, sweep_interval: None, allow_private_webhooks: true, ..EngineConfig::default() }).await
}

/// [`state`] under these engine settings.
pub async fn state_with(now: Millis, engine: EngineConfig) -> (tempfile::TempDir, Arc<AppState>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let clock: Clock = Arc::new(move || now);
    let config = ServerConfig { rate_limit: None, engine, ..ServerConfig::default() };
    let state = AppState::new(store, clock, config).await.unwrap();
    let model = leadscore_core::Model::parse(leadscore_core::model::EXAMPLE_MODEL_TOML).unwrap();
    models::publish(&state.engine, model, leadscore_core::model::EXAMPLE_MODEL_TOML, leadscore_core::Format::Toml, None).await.unwrap();
    while models::job_step(&state.engine).await.unwrap() {}
    (dir, state)
}

/// Users with [`PASSWORD`].
pub async fn add_users(engine: &Engine, people: &[(&str, Role)]) {
    for (email, role) in people {
        users::add_user(engine, NewUser { email: email.to_string(), password: PASSWORD.into(), role: *role, name: None }).await.unwrap();
    }
}

/// Serves the API and the pages on 127.0.0.1; answers the base URL.
pub async fn serve(state: Arc<AppState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let pages = leadscore_web::router(state.engine.clone(), leadscore_web::WebConfig::default());
    tokio::spawn(leadscore_server::serve_with(state, listener, std::future::pending(), pages));
    base
}
