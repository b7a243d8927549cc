//! leadscore's engine: the live models and automations, the clock, the outbox senders and
//! every use case as a function of [`Engine`] with typed input and output. The HTTP API,
//! the CLI and the background workers call these and nothing below them; none of this
//! knows HTTP.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod automations;
pub mod backtest;
pub mod compare;
pub mod contacts;
pub mod deliveries;
pub mod error;
pub mod events;
pub mod features;
pub mod identity;
pub mod keys;
pub mod models;
pub mod outcomes;
pub mod paging;
pub mod predictive;
pub mod quota;
pub mod reports;
pub mod runtime;
pub mod schema;
pub mod settings;
pub mod suggested;
pub mod time;
pub mod users;
pub mod workers;

use std::sync::{Arc, RwLock};

use leadscore_core::Model;
use leadscore_store::{Millis, ModelSet, PublishedModel, Scope, Store, StoreError};

pub use error::AppError;

/// The wall clock in milliseconds, or a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// The engine's settings (the HTTP server's own are in its crate).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How far ahead of the server's clock an event's timestamp may be (LEADSCORE_MAX_FUTURE_SKEW):
    /// a little is a sender's clock running fast, far more (`2099-01-01`) is a mistake that
    /// would keep the contact's activity from ever decaying.
    pub max_future_skew: std::time::Duration,
    /// Contacts and events per rescore transaction (LEADSCORE_RESCORE_CHUNK,
    /// LEADSCORE_RESCORE_CHUNK_EVENTS); the decay refresh takes as many contacts.
    pub rescore_chunk: leadscore_store::ChunkLimit,
    /// How often stored scores of decaying models are refreshed (None: never).
    pub sweep_interval: Option<std::time::Duration>,
    /// How often the scheduler looks for cold contacts (LEADSCORE_SCHEDULER_INTERVAL).
    pub scheduler_interval: std::time::Duration,
    /// The first retry delay of the outbox; later ones grow from it (LEADSCORE_DELIVERY_BACKOFF).
    pub delivery_backoff: std::time::Duration,
    /// Attempts before a delivery is dead-lettered.
    pub delivery_attempts: u32,
    /// How long a claimed delivery stays with its process; after a crash, another process
    /// takes it once this has passed (LEADSCORE_DELIVERY_LEASE). Longer than a send can take.
    pub delivery_lease: std::time::Duration,
    /// Allows webhook targets in loopback/private ranges (LEADSCORE_ALLOW_PRIVATE_WEBHOOKS).
    pub allow_private_webhooks: bool,
    /// SMTP server for e-mail actions (LEADSCORE_SMTP_URL), and the sender address.
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// Whether this process runs the background workers (tests may drive the steps alone).
    pub workers: bool,
    /// Whether sales reps also reach contacts without an owner (LEADSCORE_SALES_POOL), until
    /// an admin decides otherwise on the settings page (then the stored option holds).
    pub sales_pool: bool,
    /// How often the live predictive model is retrained (LEADSCORE_RETRAIN_INTERVAL; None: never).
    pub retrain_interval: Option<std::time::Duration>,
    /// How long a signed-in session lasts (LEADSCORE_SESSION_IDLE, LEADSCORE_SESSION_LIFETIME).
    pub sessions: users::SessionPolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_future_skew: std::time::Duration::from_secs(24 * 3600),
            rescore_chunk: leadscore_store::ChunkLimit { contacts: 10_000, events: 100_000 },
            sweep_interval: Some(std::time::Duration::from_secs(300)),
            scheduler_interval: std::time::Duration::from_secs(60),
            delivery_backoff: std::time::Duration::from_secs(30),
            delivery_attempts: 10,
            delivery_lease: std::time::Duration::from_secs(60),
            allow_private_webhooks: false,
            smtp_url: None,
            smtp_from: "leadscore@localhost".into(),
            workers: true,
            sales_pool: false,
            retrain_interval: Some(std::time::Duration::from_secs(7 * 24 * 3600)),
            sessions: users::SessionPolicy::default(),
        }
    }
}

pub struct Engine {
    pub store: Arc<dyn Store>,
    /// The live models; replaced whole when one is published or deleted.
    models: RwLock<Arc<ModelSet>>,
    pub clock: Clock,
    pub config: EngineConfig,
    /// Compiled automations, the outbox senders and the worker wake-ups.
    pub runtime: runtime::Runtime,
    /// The live predictive model version, if any (F21).
    predictive: RwLock<Option<Arc<predictive::LivePredictive>>>,
    /// Accounts' activity counted for recent predictive scores.
    account_counts: predictive::RecentAccountCounts,
    /// Heavy work under way per caller.
    pub quotas: Arc<quota::Quotas>,
    /// Whether sales reps reach the unassigned pool: the admin's stored choice, else the
    /// configuration's ([`EngineConfig::sales_pool`]); re-read with the models.
    sales_pool: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// Loads the live models and automations from the store.
    pub async fn new(store: Arc<dyn Store>, clock: Clock, config: EngineConfig) -> Result<Arc<Self>, StoreError> {
        let configured_pool = config.sales_pool;
        let engine = Arc::new(Self {
            store,
            models: RwLock::new(Arc::new(Vec::new())),
            clock,
            runtime: runtime::Runtime::new(&config),
            config,
            predictive: RwLock::new(None),
            account_counts: predictive::RecentAccountCounts::default(),
            quotas: Arc::default(),
            sales_pool: std::sync::atomic::AtomicBool::new(configured_pool),
        });
        engine.reload_options().await?;
        engine.reload_models().await?;
        engine.reload_automations().await?;
        engine.reload_predictive().await?;
        Ok(engine)
    }

    /// Whether the database answers; the live models' count when it does.
    pub async fn health(&self) -> Result<usize, StoreError> {
        self.store.count_keys().await?;
        Ok(self.models().len())
    }

    pub fn now(&self) -> Millis {
        (self.clock)()
    }

    pub fn models(&self) -> Arc<ModelSet> {
        self.models.read().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn model(&self, name: &str) -> Option<Arc<PublishedModel>> {
        self.models().iter().find(|m| m.name == name).cloned()
    }

    /// The model a request names, or when it names none the only live model that is not a
    /// shadow (a shadow is only ever read when named).
    pub fn named_or_only_model(&self, name: Option<&str>) -> Result<Arc<PublishedModel>, ModelChoiceError> {
        let models = self.models();
        match name {
            Some(name) => models.iter().find(|m| m.name == name).cloned().ok_or_else(|| ModelChoiceError::Unknown(name.to_string())),
            None => match models.iter().filter(|m| !m.is_shadow()).collect::<Vec<_>>().as_slice() {
                [only] => Ok((*only).clone()),
                [] => Err(ModelChoiceError::NoModel),
                _ => Err(ModelChoiceError::Several),
            },
        }
    }

    /// Re-reads the live models from the store (after a publish or delete). A version
    /// already loaded is kept as it is: only new versions are parsed (a model of hundreds
    /// of regex rules takes a while to compile, and this runs every few seconds; issue 15.6).
    pub async fn reload_models(&self) -> Result<(), StoreError> {
        let loaded = self.models();
        let mut set: ModelSet = Vec::new();
        for version in self.store.live_models().await? {
            let same = |m: &&Arc<PublishedModel>| m.name == version.name && m.version == version.version && m.shadow_of == version.shadow_of;
            if let Some(kept) = loaded.iter().find(same) {
                set.push(kept.clone());
                continue;
            }
            match Model::parse(&version.source) {
                Ok(model) => set.push(Arc::new(PublishedModel { name: version.name, version: version.version, model, shadow_of: version.shadow_of })),
                Err(err) => {
                    tracing::error!(model = %version.name, version = version.version, error = %leadscore_store::ErrorChain(&err), "stored model no longer parses; skipped")
                }
            }
        }
        if let Ok(mut models) = self.models.write() {
            *models = Arc::new(set);
        }
        Ok(())
    }

    /// Whether sales reps also reach contacts without an owner.
    pub fn sales_pool(&self) -> bool {
        self.sales_pool.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_sales_pool(&self, allowed: bool) {
        self.sales_pool.store(allowed, std::sync::atomic::Ordering::Relaxed);
    }

    /// Re-reads the options an admin changes at run time (another process may have changed
    /// them); an option never set keeps the configuration's value.
    pub async fn reload_options(&self) -> Result<(), StoreError> {
        if let Some(text) = self.store.get_option(settings::SALES_POOL_OPTION).await? {
            match serde_json::from_str::<bool>(&text) {
                Ok(allowed) => self.set_sales_pool(allowed),
                Err(err) => tracing::error!(option = settings::SALES_POOL_OPTION, error = %err, "stored option does not parse; kept the configured value"),
            }
        }
        Ok(())
    }

    /// The live predictive model version, if any.
    pub fn predictive(&self) -> Option<Arc<predictive::LivePredictive>> {
        self.predictive.read().ok().and_then(|live| live.clone())
    }

    /// Loads the live predictive version when it is not the one loaded (another process,
    /// or this one, trained or promoted a version); cheap when nothing changed.
    pub async fn reload_predictive(&self) -> Result<(), StoreError> {
        let live_version = self.store.list_predictive().await?.into_iter().find(|v| v.live).map(|v| v.version);
        if live_version == self.predictive().map(|live| live.version) {
            return Ok(());
        }
        let loaded = match live_version {
            Some(_) => self.store.live_predictive().await?.and_then(predictive::parse_live).map(Arc::new),
            None => None,
        };
        if let Ok(mut live) = self.predictive.write() {
            *live = loaded;
        }
        // Every contact's stored score is of another version now.
        self.runtime.wake_predictive_sweep.notify_one();
        Ok(())
    }

    /// Makes sure an admin key exists. With `admin_key` given (LEADSCORE_ADMIN_KEY) that key
    /// is registered; otherwise, on a store without keys, a new one is generated and
    /// returned so the caller can show it once.
    pub async fn bootstrap_admin_key(&self, admin_key: Option<&str>) -> Result<Option<String>, StoreError> {
        let now = self.now();
        if let Some(key) = admin_key {
            let hash = keys::hash_key(key);
            if self.store.find_key_by_hash(&hash).await?.is_none() {
                match self.store.insert_key(keys::key_record("admin (LEADSCORE_ADMIN_KEY)", key, vec![Scope::Admin], now)).await {
                    // Several processes starting together with the same key: one stores it.
                    Err(StoreError::Conflict(_)) if self.store.find_key_by_hash(&hash).await?.is_some() => {}
                    other => other?,
                }
            }
            return Ok(None);
        }
        if self.store.count_keys().await? > 0 {
            return Ok(None);
        }
        self.create_admin_key("admin (first start)").await.map(Some)
    }

    /// Creates a new admin key and answers it: the only time it is seen (only its hash is
    /// stored). The way back in when the first start's key is lost.
    pub async fn create_admin_key(&self, name: &str) -> Result<String, StoreError> {
        let key = keys::generate_key();
        self.store.insert_key(keys::key_record(name, &key, vec![Scope::Admin], self.now())).await?;
        Ok(key)
    }
}

/// Why a request's model could not be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ModelChoiceError {
    #[error("no live model {0:?}")]
    Unknown(String),
    #[error("no live model yet: publish one first (`leadscore model apply MODEL.toml`, or PUT /api/v1/models/NAME)")]
    NoModel,
    #[error("several models are live; choose one with model=")]
    Several,
}

impl From<ModelChoiceError> for AppError {
    fn from(err: ModelChoiceError) -> Self {
        match err {
            ModelChoiceError::Unknown(_) | ModelChoiceError::NoModel => AppError::NotFound(err.to_string()),
            ModelChoiceError::Several => AppError::BadRequest(err.to_string()),
        }
    }
}
