//! Storage for leadscore, split by role so each backend implements small traits and each
//! caller asks for only what it uses. Backends: `leadscore-store-sqlite` (embedded,
//! default) and, later, PostgreSQL. Both run the scoring inside their write transaction
//! through [`scoring`], so a score never disagrees with the events stored.

/// The storage test suite every backend runs; test support, not compiled into the binary.
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod records;
pub mod runner;
pub mod scoring;
pub mod transfer;
pub mod types;

use async_trait::async_trait;
use serde_json::{Map, Value};

pub use transfer::TransferStore;
pub use types::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("the store is shutting down")]
    Closed,
    /// The caller's view (e.g. its compiled automations) is older than the database:
    /// reload it and try again. Nothing was written.
    #[error("stale: {0}")]
    Stale(String),
    /// A failure of the database (or the IO beneath it), with the driver's error as its
    /// source: `what` says what was being done, `source()` walks down to the driver's error
    /// (so `{:#}` in the binary and [`ErrorChain`] in the logs show the whole story).
    #[error("database error: {what}")]
    Database {
        what: String,
        #[source]
        source: BoxError,
    },
    /// A storage failure with no underlying error (a row that must exist did not, a value
    /// the code does not know): the message is all there is.
    #[error("database error: {0}")]
    Backend(String),
    /// The database cannot do it now but may in a moment: locked by another process
    /// (SQLite busy), out of disk space, unreachable or restarting (PostgreSQL). The
    /// request was not acknowledged; the caller should retry shortly (ingest is idempotent
    /// by messageId, so a retry never stores an event twice). `source` is the driver's error.
    #[error("the database is temporarily unavailable: {what}")]
    Unavailable {
        what: String,
        #[source]
        source: BoxError,
    },
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl StoreError {
    /// A [`StoreError::Database`]: `what` was being done when `source` failed.
    pub fn database(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Database { what: what.into(), source: source.into() }
    }

    /// A [`StoreError::Unavailable`]: `what` could not be done now because of `source`.
    pub fn unavailable(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable { what: what.into(), source: source.into() }
    }

    /// Whether retrying the same request shortly may succeed (the database was busy,
    /// full, or unreachable), as opposed to a request that can never succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// The first error of type `E` in this error's source chain (the driver's error beneath
    /// a [`StoreError::Database`]), for callers and tests that act on the cause.
    pub fn find_source<E: std::error::Error + 'static>(&self) -> Option<&E> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(cause) = next {
            if let Some(found) = cause.downcast_ref::<E>() {
                return Some(found);
            }
            next = cause.source();
        }
        None
    }
}

/// Displays an error with its sources, `outer: inner: innermost`, for logs: a plain `%err`
/// shows only the outer message, which for [`StoreError::Database`] leaves out the driver's.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(err) = next {
            write!(f, ": {err}")?;
            next = err.source();
        }
        Ok(())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Contacts: who they are.
#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Creates the contact or merges into it (attributes merged key by key, groups added),
    /// then rescores fit for every model. Found by `id`, else by `email`. The flag says
    /// whether the contact was created.
    async fn upsert_contact(&self, upsert: ContactUpsert, models: &ModelSet, now: Millis) -> StoreResult<(ContactRecord, bool)>;
    /// Applies an attribute merge-patch (null removes a key) and rescores fit.
    async fn patch_contact(&self, id: &str, patch: ContactPatch, models: &ModelSet, now: Millis) -> StoreResult<ContactRecord>;
    async fn get_contact(&self, id: &str) -> StoreResult<Option<ContactRecord>>;
    /// Several contacts in one read, in the order of `ids`; an id without a contact is left
    /// out (bulk work: the backtest reads its judged contacts a page at a time).
    async fn get_contacts(&self, ids: &[String]) -> StoreResult<Vec<ContactRecord>>;
    /// Moves everything of contact `from` (events, history, the attributes and groups `into`
    /// lacks) into `into`, deletes `from`, and replays `into`'s scores as if the events had
    /// always been its own. NotFound when either is missing.
    async fn merge_contacts(&self, from: &str, into: &str, models: &ModelSet, now: Millis) -> StoreResult<ContactRecord>;
    /// Erases the contact with its events, scores and history, and takes it out of the
    /// batched deliveries that carry it; writes `erasure` to the erasure log in the same
    /// transaction. False (and nothing logged) when it did not exist.
    async fn delete_contact(&self, id: &str, erasure: &ErasureRecord) -> StoreResult<bool>;
    /// The erasure log, newest first.
    async fn list_erasures(&self, limit: usize) -> StoreResult<Vec<ErasureRecord>>;
    /// The lead list: contacts with a score under `query.model`, best first, paginated.
    async fn list_leads(&self, query: &LeadQuery) -> StoreResult<Vec<ContactRecord>>;
    /// All contacts in id order after `after` (for export and bulk work).
    async fn list_contacts(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<ContactRecord>>;
    /// The stored score rows of `model` (any version), by contact id after `after`, up to
    /// `limit`: the score-only read behind the reports over every contact. `with_state`
    /// also reads (and parses) each row's activity state, needed only when the model's
    /// activity moves with time ([`scoring::moves_with_time`]); `attribute` also reads the
    /// value of that one top-level attribute of each contact.
    async fn scan_scores(&self, model: &str, with_state: bool, attribute: Option<&str>, after: Option<&str>, limit: usize) -> StoreResult<Vec<ScannedScore>>;
    /// Log of non-derived changes (attributes, identify, bulk updates) in time order.
    async fn contact_log(&self, id: &str) -> StoreResult<Vec<LogEntry>>;
    /// One short write of a bulk change: takes the next contacts in id order after `after`
    /// (at most a few thousand), changes those the filter selects, and answers their ids
    /// and where the next chunk starts (`None` after the last). Chunks keep each write
    /// transaction short so ingest keeps flowing, and let the caller act on each chunk's
    /// contacts (their predictive scores) as it goes.
    async fn bulk_update_chunk(&self, update: &BulkUpdate, after: &str, models: &ModelSet, now: Millis) -> StoreResult<BulkChunk>;
    /// Applies a bulk change to every contact matching the filter; returns how many changed.
    async fn bulk_update(&self, update: BulkUpdate, models: &ModelSet, now: Millis) -> StoreResult<u64> {
        let mut changed = 0u64;
        let mut after = String::new();
        loop {
            let chunk = self.bulk_update_chunk(&update, &after, models, now).await?;
            changed += chunk.changed.len() as u64;
            match chunk.next {
                Some(next) => after = next,
                None => return Ok(changed),
            }
        }
    }
    async fn count_contacts(&self) -> StoreResult<u64>;
}

/// Events: what contacts do. Ingest stores and scores in one transaction.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores new events (a repeated messageId is reported as duplicate and ignored),
    /// creates unknown contacts, applies identify traits, and updates every applicable
    /// model's score before returning. One outcome per input, in order.
    async fn ingest(&self, events: Vec<NewEvent>, models: &ModelSet, now: Millis) -> StoreResult<Vec<IngestOutcome>> {
        self.ingest_with(events, models, now, true).await
    }
    /// [`EventStore::ingest`], saying whether the events may fire automations: historical
    /// imports pass false, so only live traffic (or `--fire-automations`) queues contacts.
    async fn ingest_with(&self, events: Vec<NewEvent>, models: &ModelSet, now: Millis, fire_automations: bool) -> StoreResult<Vec<IngestOutcome>> {
        let ingested = self.ingest_events(events, models, now, IngestOptions { fire_automations, trust: IdentityTrust::Trusted }).await?;
        Ok(ingested.outcomes)
    }
    /// [`EventStore::ingest`] with every option (whether automations fire, whether the
    /// sender may change who a known contact is: `records::identity`), answering also the
    /// contacts as written.
    async fn ingest_events(&self, events: Vec<NewEvent>, models: &ModelSet, now: Millis, options: IngestOptions) -> StoreResult<Ingested>;
    /// A contact's events in scoring order (timestamp, messageId).
    async fn contact_events(&self, contact_id: &str) -> StoreResult<Vec<StoredEvent>>;
    /// The activity events of several contacts, each in scoring order, as the scorer reads
    /// them (backtests replay many contacts at once). Contacts without events are absent.
    async fn scoring_events_of(&self, contact_ids: &[String]) -> StoreResult<std::collections::HashMap<String, Vec<scoring::ScoringEvent>>>;
    async fn count_events(&self) -> StoreResult<u64>;
}

/// Published models, their versions and rescore jobs.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// Stores a new version of the model and makes it the head: a live model, or with
    /// `shadow_of` a shadow of that live model (rules: [`records::check_publish`]).
    async fn publish_model(&self, model: NewModelVersion, now: Millis) -> StoreResult<ModelVersion>;
    /// The live version of every model that is not deleted.
    async fn live_models(&self) -> StoreResult<Vec<ModelVersion>>;
    async fn model_versions(&self, name: &str) -> StoreResult<Vec<ModelVersion>>;
    /// Deletes the model (its versions stay for the record) and its scores. A live model
    /// with shadows is refused (Conflict): promote or delete them first.
    async fn delete_model(&self, name: &str) -> StoreResult<bool>;
    /// Makes the shadow model `shadow` live (F31), in one transaction: `live` (the shadow's
    /// definition under the shadowed model's name) becomes a new version of the model it
    /// shadows, and the shadow is deleted (its versions stay for the record, its scores go).
    /// Conflict when the shadow's head is no longer `shadow_version` (published again
    /// meanwhile) or `live.name` is not the model it shadows.
    async fn promote_model(&self, shadow: &str, shadow_version: u32, live: NewModelVersion, now: Millis) -> StoreResult<ModelVersion>;
}

/// Score reads and background rescoring.
#[async_trait]
pub trait ScoreStore: Send + Sync {
    /// Rescores the contacts with ids after `after` under `model`, as many as `limit`
    /// allows, inside one write transaction. Returns the last contact id handled (None
    /// when done).
    async fn rescore_chunk(&self, model: &PublishedModel, after: Option<String>, limit: ChunkLimit, now: Millis) -> StoreResult<RescoreChunk>;
    /// Recomputes stored scores of `model` as of `now` from their states, for up to
    /// `limit` contacts after `after`: decay and the inactivity penalty move scores without
    /// any event, and the lead list sorts by the stored values. Writes changed rows only.
    async fn refresh_chunk(&self, model: &PublishedModel, after: Option<String>, limit: usize, now: Millis) -> StoreResult<RefreshChunk>;
    async fn create_job(&self, job: NewJob, now: Millis) -> StoreResult<Job>;
    async fn update_job(&self, job: &Job) -> StoreResult<()>;
    /// The newest rescore job of the model.
    async fn latest_job(&self, model: &str) -> StoreResult<Option<Job>>;
    async fn get_job(&self, id: i64) -> StoreResult<Option<Job>>;
    /// Jobs left running or queued (e.g. by a crash) to resume.
    async fn unfinished_jobs(&self) -> StoreResult<Vec<Job>>;
    /// Takes an unfinished (queued or running) job for `owner` until `now + lease`: job
    /// `id` when given (also when `owner` holds it), else the oldest one whose lease is free
    /// or expired (not one `owner` holds: it is running it already).
    /// None when there is none to take. Each job thus runs in one process at a time, and a
    /// crashed process's job is taken over once its lease expires.
    async fn claim_job(&self, id: Option<i64>, owner: &str, lease: Millis, now: Millis) -> StoreResult<Option<Job>>;
    /// Records a claimed job's progress (and final state) and extends the lease to
    /// `lease_until`. False when `owner` no longer holds it (another process took it over).
    async fn update_claimed_job(&self, job: &Job, owner: &str, lease_until: Millis) -> StoreResult<bool>;
}

/// API keys (stored as hashes only).
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_key(&self, key: ApiKeyRecord) -> StoreResult<()>;
    async fn find_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    async fn list_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    async fn revoke_key(&self, id: &str, now: Millis) -> StoreResult<bool>;
    async fn count_keys(&self) -> StoreResult<u64>;
}

/// Users of the web app and their sessions (F26). Sessions live in the database, so an
/// expired or revoked one is gone after a restart and on every process.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Conflict when a user with this e-mail exists.
    async fn insert_user(&self, user: UserRecord) -> StoreResult<()>;
    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;
    /// Every user, by e-mail.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Replaces the stored user with this id (e-mail, name, role, hash, disabled,
    /// updated_at); false when there is none. Conflict when the e-mail is another's.
    async fn update_user(&self, user: UserRecord) -> StoreResult<bool>;
    async fn count_users(&self) -> StoreResult<u64>;
    /// Deletes the user and every session of theirs; false when there was none.
    async fn delete_user(&self, id: &str) -> StoreResult<bool>;
    async fn insert_session(&self, session: SessionRecord) -> StoreResult<()>;
    async fn get_session(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&self, id_hash: &str, at: Millis) -> StoreResult<()>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<bool>;
    /// Every session of the user (logout everywhere, password change, disabling).
    async fn delete_user_sessions(&self, user_id: &str) -> StoreResult<u64>;
    /// Sessions idle since before `idle_before` or created before `created_before`.
    async fn delete_expired_sessions(&self, idle_before: Millis, created_before: Millis) -> StoreResult<u64>;
}

/// The audit log of configuration changes, append-only.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_audit(&self, entry: AuditRecord) -> StoreResult<()>;
    /// Newest first.
    async fn list_audit(&self, limit: usize) -> StoreResult<Vec<AuditRecord>>;
}

/// Predictive model versions (F21, contract §9), numbered from 1; at most one is live.
#[async_trait]
pub trait PredictiveStore: Send + Sync {
    /// Stores a new version (numbered after the newest) and returns its number; `live`
    /// makes it the live one in the same transaction (the previous live one is not).
    async fn insert_predictive(&self, target: &str, trained_at: Millis, model: String, report: String, live: bool) -> StoreResult<i64>;
    /// Every version, newest first, without its model text.
    async fn list_predictive(&self) -> StoreResult<Vec<PredictiveVersion>>;
    /// The live version, with its model.
    async fn live_predictive(&self) -> StoreResult<Option<PredictiveVersion>>;
    /// Makes `version` the live one; false when there is no such version.
    async fn set_live_predictive(&self, version: i64) -> StoreResult<bool>;
    /// Stores contacts' predictive scores, replacing their previous ones; contacts that no
    /// longer exist are skipped. A contact whose score changed is queued for automations
    /// (when anything listens), as after any other contact write. Returns how many were
    /// written.
    async fn put_predictive_scores(&self, scores: Vec<(String, PredictiveScoreRow)>, now: Millis) -> StoreResult<usize>;
    /// Up to `limit` contact ids after `after`, in id order, whose stored predictive score
    /// is missing, of another version than `version`, or taken before `stale_before`: the
    /// contacts the predictive sweep scores next.
    async fn contacts_to_predict(&self, version: i64, stale_before: Millis, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>>;
}

/// Automation definitions (PRODUCT.md §3), keyed by name. Definitions only: nothing in
/// the store fires them.
#[async_trait]
pub trait AutomationStore: Send + Sync {
    /// Creates the automation or replaces its definition; a replacement keeps `created_at`
    /// and sets `updated_at` to `now`. The flag says whether it was created.
    async fn put_automation(&self, automation: NewAutomation, now: Millis) -> StoreResult<(AutomationRecord, bool)>;
    async fn get_automation(&self, name: &str) -> StoreResult<Option<AutomationRecord>>;
    /// Every automation, by name.
    async fn list_automations(&self) -> StoreResult<Vec<AutomationRecord>>;
    /// False when it did not exist.
    async fn delete_automation(&self, name: &str) -> StoreResult<bool>;
}

/// Running automations: the queue of contacts to evaluate (filled by every write that
/// changes a contact while automations exist), the evaluation itself, and the run log.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Contacts with queued work, oldest first.
    async fn queued_contacts(&self, limit: usize) -> StoreResult<Vec<String>>;
    /// How many contacts wait for an evaluation.
    async fn queue_depth(&self) -> StoreResult<u64>;
    /// For each contact, in its own transaction under its write lock: takes its queued
    /// entries, lets [`runner::evaluate`] decide which automations fire and what follows
    /// (contact changes, outbox deliveries, assignments), writes that and the trigger
    /// states, and clears the entries. `check_cold` (the scheduler)
    /// also judges cold triggers. Also marks contacts whose synced fields changed for
    /// `score.changed` subscribers. Returns the runs recorded. `StoreError::Stale` when
    /// `automations` is not the set stored (another process changed it): a stale set must
    /// not consume queued changes.
    async fn evaluate_contacts(
        &self,
        contact_ids: Vec<String>,
        check_cold: bool,
        automations: &runner::AutomationSet,
        models: &ModelSet,
        now: Millis,
    ) -> StoreResult<Vec<runner::RunRecord>>;
    /// Contact ids after `after`, in id order, created at or before `created_before` (the
    /// scheduler walks them for cold triggers).
    async fn contacts_created_before(&self, after: Option<String>, created_before: Millis, limit: usize) -> StoreResult<Vec<String>>;
    /// The run log, newest first.
    async fn list_runs(&self, query: &runner::RunQuery) -> StoreResult<Vec<runner::RunRecord>>;
    async fn run_stats(&self, now: Millis) -> StoreResult<Vec<runner::RunStats>>;
    /// Builds `score.changed` deliveries for contacts whose debounce has passed: at most
    /// `batch` contacts per delivery, per subscription. Returns how many contacts were sent.
    async fn sync_step(&self, batch: usize, now: Millis) -> StoreResult<u64>;
}

/// The outbox: deliveries written with the run that caused them, claimed by delivery
/// workers with a lease, retried until delivered or dead-lettered.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Takes up to `limit` due deliveries for `owner` until `now + lease`; a crashed
    /// owner's leases expire and the rows become due again.
    async fn claim_deliveries(&self, owner: &str, limit: usize, lease: Millis, now: Millis) -> StoreResult<Vec<runner::Delivery>>;
    /// Records an attempt by `owner`. `retry_at`: when to try again after a failure (None:
    /// dead-letter it). False when the lease was lost (another owner took the row).
    async fn record_attempt(&self, id: &str, owner: &str, attempt: runner::DeliveryAttempt, retry_at: Option<Millis>) -> StoreResult<bool>;
    async fn get_delivery(&self, id: &str) -> StoreResult<Option<(runner::Delivery, Vec<runner::DeliveryAttempt>)>>;
    async fn list_deliveries(&self, query: &runner::DeliveryQuery) -> StoreResult<Vec<runner::Delivery>>;
    /// Makes a delivery due now again (any state; a delivered one is sent once more).
    async fn retry_delivery(&self, id: &str, now: Millis) -> StoreResult<Option<runner::Delivery>>;
    async fn count_deliveries(&self) -> StoreResult<Vec<(runner::DeliveryState, u64)>>;
}

/// Settings: sales teams, named secrets, webhook subscriptions, server options an admin
/// changes, and leases that make a background task run in one process at a time.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn put_team(&self, name: &str, members: Vec<String>, now: Millis) -> StoreResult<(runner::Team, bool)>;
    async fn get_team(&self, name: &str) -> StoreResult<Option<runner::Team>>;
    async fn list_teams(&self) -> StoreResult<Vec<runner::Team>>;
    async fn delete_team(&self, name: &str) -> StoreResult<bool>;
    /// Stores a secret's value (write-only through the API). True when created.
    async fn put_secret(&self, name: &str, value: &str, now: Millis) -> StoreResult<bool>;
    async fn get_secret(&self, name: &str) -> StoreResult<Option<String>>;
    /// Names with created/updated times; never the values.
    async fn list_secrets(&self) -> StoreResult<Vec<(String, Millis, Millis)>>;
    async fn delete_secret(&self, name: &str) -> StoreResult<bool>;
    async fn put_subscription(&self, subscription: runner::Subscription) -> StoreResult<(runner::Subscription, bool)>;
    async fn list_subscriptions(&self) -> StoreResult<Vec<runner::Subscription>>;
    async fn delete_subscription(&self, name: &str) -> StoreResult<bool>;
    /// A server option an admin set (its JSON text), None when never set.
    async fn get_option(&self, name: &str) -> StoreResult<Option<String>>;
    /// Sets a server option to `value` (JSON text).
    async fn put_option(&self, name: &str, value: &str, now: Millis) -> StoreResult<()>;
    /// Takes or renews the lease `name` for `owner` until `now + duration`. False when
    /// another owner holds an unexpired lease.
    async fn try_lease(&self, name: &str, owner: &str, duration: Millis, now: Millis) -> StoreResult<bool>;
}

/// Outcomes sales records (statuses and ratings), each with the contact's scores as of its
/// time: the ground truth the reports judge the scoring against (F18–F20).
#[async_trait]
pub trait OutcomeStore: Send + Sync {
    /// Records an outcome; a status also becomes the contact's `status` when it is the
    /// latest by `at` (a past status imported later does not overwrite a newer one).
    /// NotFound when the contact does not exist.
    async fn record_outcome(&self, outcome: NewOutcome, now: Millis) -> StoreResult<OutcomeRecord>;
    /// A contact's outcomes by time (`at`, then id).
    async fn contact_outcomes(&self, contact_id: &str) -> StoreResult<Vec<OutcomeRecord>>;
    /// Outcomes with `from <= at < to`, in id order after `after_id` (reports read them in chunks).
    async fn list_outcomes(&self, from: Millis, to: Millis, after_id: Option<i64>, limit: usize) -> StoreResult<Vec<OutcomeRecord>>;
    /// Replaces `model`'s card in each listed outcome (`None` takes it out: the model does
    /// not apply to the contact); the other models' cards stay. A rescore calls this so the
    /// outcomes are judged by the version that is live. Outcomes gone since are skipped.
    async fn set_outcome_cards(&self, model: &str, cards: Vec<(i64, Option<leadscore_core::ScoreCard>)>) -> StoreResult<()>;
}

/// Accounts (F29): which contacts belong to an account (its `account_id`/`account`
/// attribute, else its company e-mail domain; kept by every contact write).
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// (account, contact id, total) of every contact with an account and a score under
    /// `model`, ordered by account.
    async fn account_members(&self, model: &str) -> StoreResult<Vec<(String, String, f64)>>;
    /// The contacts of an account, by id.
    async fn account_contacts(&self, account: &str) -> StoreResult<Vec<ContactRecord>>;
    /// Each contact's account, in the order asked; None for a contact without one (or gone).
    async fn account_ids(&self, contact_ids: &[String]) -> StoreResult<Vec<Option<String>>>;
    /// For each `(whose, instant)`, the activity of a whole account or of one contact by
    /// then ([`AccountActivity`]), all read at one moment. In the order asked.
    async fn activity_counts(&self, asks: &[(ActivityOf, Millis)]) -> StoreResult<Vec<AccountActivity>>;
    /// For each `(contact id, instant)`, what the rest of the contact's account had done by
    /// then; None for a contact without an account (or gone). In the order asked. Contacts
    /// of one account asked at one instant share one count of the account.
    async fn account_activity(&self, asks: Vec<(String, Millis)>) -> StoreResult<Vec<Option<AccountActivity>>> {
        Ok(self.account_activity_reusing(asks, &|_, _| None).await?.answers)
    }
    /// [`AccountStore::account_activity`], taking an account's count from `counted` when it
    /// has one for the asked instant: `(instant counted as of, count)`. Such a contact's
    /// own events are then counted as of that same instant, so what is subtracted is what
    /// the count held, and the answer is exact as of that instant.
    async fn account_activity_reusing(
        &self,
        asks: Vec<(String, Millis)>,
        counted: &(dyn for<'a> Fn(&'a str, Millis) -> Option<(Millis, AccountActivity)> + Sync),
    ) -> StoreResult<AccountActivityRead> {
        let ids: Vec<String> = asks.iter().map(|(id, _)| id.clone()).collect();
        let accounts = self.account_ids(&ids).await?;
        enum Whole {
            Known(Millis, AccountActivity),
            Asked(Millis, usize),
        }
        let mut reads: Vec<(ActivityOf, Millis)> = Vec::new();
        let mut wholes: std::collections::HashMap<(String, Millis), Whole> = std::collections::HashMap::new();
        let mut plan = Vec::with_capacity(asks.len());
        for ((id, at), account) in asks.iter().zip(&accounts) {
            let Some(account) = account else {
                plan.push(None);
                continue;
            };
            let whole = wholes.entry((account.clone(), *at)).or_insert_with(|| match counted(account, *at) {
                Some((as_of, count)) => Whole::Known(as_of, count),
                None => {
                    reads.push((ActivityOf::Account(account.clone()), *at));
                    Whole::Asked(*at, reads.len() - 1)
                }
            });
            let as_of = match whole {
                Whole::Known(as_of, _) | Whole::Asked(as_of, _) => *as_of,
            };
            reads.push((ActivityOf::Contact(id.clone()), as_of));
            plan.push(Some(((account.clone(), *at), reads.len() - 1)));
        }
        let read = self.activity_counts(&reads).await?;
        if read.len() != reads.len() {
            return Err(StoreError::Backend(format!("{} activity counts asked, {} answered", reads.len(), read.len())));
        }
        let whole_of = |key: &(String, Millis)| match &wholes[key] {
            Whole::Known(_, count) => *count,
            Whole::Asked(_, index) => read[*index],
        };
        let answers = plan.iter().map(|p| p.as_ref().map(|(key, own)| whole_of(key).without(read[*own]))).collect();
        let newly_counted = wholes
            .iter()
            .filter_map(|((account, _), whole)| match whole {
                Whole::Asked(at, index) => Some((account.clone(), *at, read[*index])),
                Whole::Known(..) => None,
            })
            .collect();
        Ok(AccountActivityRead { answers, newly_counted })
    }
}

/// Everything a leadscore server needs from its database.
pub trait Store:
    ContactStore
    + EventStore
    + ModelStore
    + ScoreStore
    + KeyStore
    + UserStore
    + PredictiveStore
    + AuditStore
    + AutomationStore
    + RunStore
    + OutboxStore
    + SettingsStore
    + OutcomeStore
    + AccountStore
{
}
impl<
    T: ContactStore
        + EventStore
        + ModelStore
        + ScoreStore
        + KeyStore
        + UserStore
        + PredictiveStore
        + AuditStore
        + AutomationStore
        + RunStore
        + OutboxStore
        + SettingsStore
        + OutcomeStore
        + AccountStore,
> Store for T
{
}

/// Merges a JSON merge-patch into attributes: null removes a key.
pub fn merge_attributes(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            target.insert(key.clone(), value.clone());
        }
    }
}
