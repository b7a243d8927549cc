//! Issue 15.6: the model reloader recompiled every live model every 5 s (18 % of a core
//! while idle with a model of 10,000 regex rules). A version already loaded is kept.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use leadscore_app::{Engine, EngineConfig};
use leadscore_core::{Format, Model};
use leadscore_store_sqlite::SqliteStore;

#[tokio::test]
async fn reloading_parses_only_versions_not_loaded_yet() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let engine =
        Engine::new(store, Arc::new(|| 1_772_442_000_000), EngineConfig { workers: false, sweep_interval: None, ..EngineConfig::default() }).await.unwrap();
    let source = leadscore_core::model::EXAMPLE_MODEL_TOML;
    leadscore_app::models::publish(&engine, Model::parse(source).unwrap(), source, Format::Toml, None).await.unwrap();
    engine.reload_models().await.unwrap();
    let first = engine.model("b2b").unwrap();
    engine.reload_models().await.unwrap();
    assert!(Arc::ptr_eq(&first, &engine.model("b2b").unwrap()), "an unchanged version was parsed again");

    let changed = source.replacen("points = 50", "points = 45", 1);
    leadscore_app::models::publish(&engine, Model::parse(&changed).unwrap(), &changed, Format::Toml, None).await.unwrap();
    engine.reload_models().await.unwrap();
    let second = engine.model("b2b").unwrap();
    assert_eq!((first.version, second.version), (1, 2));
    assert!(!Arc::ptr_eq(&first, &second));
}
