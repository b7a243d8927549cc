//! Running automations: the compiled automation set, and the workers that evaluate queued
//! contacts, find cold ones (the scheduler), build CRM sync batches and deliver the
//! outbox. Each worker's step is a plain async function that tests call; the loops in
//! [`spawn_workers`] only add timing and wake-ups.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use leadscore_core::automation::{Automation, Trigger};
use leadscore_delivery::{AttemptResult, Mailer, RetryPolicy, TargetGuard, WebhookSender};
use leadscore_store::runner::{AutomationSet, Channel, Delivery, DeliveryAttempt, LiveAutomation, RunRecord};
use leadscore_store::{Millis, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Engine, EngineConfig};

/// Refuses, when it is stored, a webhook URL that every delivery would refuse until it is
/// dead-lettered a day later: the delivery guard's rule under this configuration, except
/// that a name which does not resolve now is accepted (see
/// [`TargetGuard::check_before_storing`]).
pub async fn check_webhook_url(config: &EngineConfig, url: &str) -> Result<(), String> {
    let guard = TargetGuard { allow_private: config.allow_private_webhooks };
    guard.check_before_storing(url).await.map_err(|error| match error {
        leadscore_delivery::DeliveryError::Refused(reason) => {
            format!("{reason}; set LEADSCORE_ALLOW_PRIVATE_WEBHOOKS=1 if the receiver is meant to be on a private network")
        }
        other => other.to_string(),
    })
}

/// How many contacts one evaluation transaction takes.
const EVALUATION_CHUNK: usize = 200;
/// How many deliveries one worker step claims.
const DELIVERY_CHUNK: usize = 16;

pub struct Runtime {
    automations: RwLock<Arc<AutomationSet>>,
    /// Rung after every write that may have queued contacts.
    pub wake_evaluator: Notify,
    /// Rung after runs or sync batches wrote deliveries.
    pub wake_delivery: Notify,
    /// Rung when another predictive version goes live: every stored score is rewritten.
    pub wake_predictive_sweep: Notify,
    /// This process's name in leases and delivery claims.
    pub worker_id: String,
    webhooks: WebhookSender,
    /// The mailer, or why there is none (e-mail deliveries fail with that reason).
    mailer: Result<Mailer, String>,
    retry: RetryPolicy,
    /// Cancelled when the process stops: every background loop returns at its next wait
    /// (a step under way is finished, so nothing is left half done).
    pub shutdown: CancellationToken,
    /// The background loops and jobs, so that stopping can wait for them.
    pub tasks: TaskTracker,
}

impl Runtime {
    pub fn new(config: &EngineConfig) -> Self {
        let mailer = match &config.smtp_url {
            Some(url) => Mailer::from_url(url, &config.smtp_from).map_err(|e| format!("LEADSCORE_SMTP_URL cannot be used: {e}")),
            None => Err("no SMTP server is configured (set LEADSCORE_SMTP_URL)".to_string()),
        };
        let worker_id = format!("{}-{}", hostname(), leadscore_store::runner::new_id("w"));
        Self {
            automations: RwLock::new(Arc::new(Vec::new())),
            wake_evaluator: Notify::new(),
            wake_predictive_sweep: Notify::new(),
            wake_delivery: Notify::new(),
            worker_id,
            webhooks: WebhookSender::new(TargetGuard { allow_private: config.allow_private_webhooks }, WebhookSender::DEFAULT_TIMEOUT),
            mailer,
            retry: RetryPolicy { base: config.delivery_backoff, max_attempts: config.delivery_attempts.max(1) },
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Runs background work that stopping waits for.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Waits until `duration` has passed or the process is stopping; true when stopping.
    pub async fn pause(&self, duration: Duration) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => true,
            () = tokio::time::sleep(duration) => false,
        }
    }

    pub fn automations(&self) -> Arc<AutomationSet> {
        self.automations.read().map(|a| a.clone()).unwrap_or_default()
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| format!("pid{}", std::process::id()))
}

impl Engine {
    /// Re-reads and compiles the automations (after a change, and now and then for changes
    /// made through another process).
    pub async fn reload_automations(&self) -> Result<(), StoreError> {
        let mut set: AutomationSet = Vec::new();
        for record in self.store.list_automations().await? {
            match Automation::from_value(record.definition.clone()) {
                Ok(mut automation) => {
                    automation.enabled = record.enabled;
                    set.push(Arc::new(LiveAutomation { automation, updated_at: record.updated_at }));
                }
                Err(err) => {
                    tracing::error!(automation = %record.name, error = %leadscore_store::ErrorChain(&err), "stored automation no longer parses; skipped")
                }
            }
        }
        if let Ok(mut automations) = self.runtime.automations.write() {
            *automations = Arc::new(set);
        }
        Ok(())
    }
}

/// Evaluates the given contacts now (ingest calls this for the contacts it touched, so a
/// hot lead's automation has fired when the API call returns).
pub async fn evaluate_contacts(engine: &Engine, contact_ids: Vec<String>) -> Result<Vec<RunRecord>, StoreError> {
    if contact_ids.is_empty() {
        return Ok(Vec::new());
    }
    let runs = evaluate_current(engine, contact_ids, false, engine.now()).await?;
    after_runs(engine, &runs).await;
    Ok(runs)
}

/// Evaluates with this process's automations; when the store says they are stale (changed
/// through another process), reloads them and evaluates again.
async fn evaluate_current(engine: &Engine, contact_ids: Vec<String>, check_cold: bool, now: Millis) -> Result<Vec<RunRecord>, StoreError> {
    let automations = engine.runtime.automations();
    match engine.store.evaluate_contacts(contact_ids.clone(), check_cold, &automations, &engine.models(), now).await {
        Err(StoreError::Stale(_)) => {
            engine.reload_automations().await?;
            let automations = engine.runtime.automations();
            engine.store.evaluate_contacts(contact_ids, check_cold, &automations, &engine.models(), now).await
        }
        other => other,
    }
}

async fn after_runs(engine: &Engine, runs: &[RunRecord]) {
    for run in runs {
        metrics::counter!("leadscore_automation_runs_total", "automation" => run.automation.clone()).increment(1);
        tracing::debug!(automation = %run.automation, contact = %run.contact_id, run = %run.id, "automation fired");
    }
    if runs.iter().any(|r| r.actions.iter().any(|a| a.get("delivery").is_some())) {
        engine.runtime.wake_delivery.notify_one();
    }
    // An action that wrote an attribute is a write like any other: the contact's predictive
    // score is stored again (and, when it moved, the contact queued for its automations).
    let changed = attributes_written_by(runs);
    if !changed.is_empty() && engine.predictive().is_some() {
        refresh_predictive(engine, &changed).await;
        contacts_changed(engine);
    }
}

/// The contacts whose attributes these runs changed: a `set` done, or a `nurture` that
/// moved the contact's track (mirrored in its `nurture_track` attribute).
fn attributes_written_by(runs: &[RunRecord]) -> Vec<String> {
    let mut ids: Vec<String> = runs
        .iter()
        .filter(|run| {
            run.actions.iter().any(|action| {
                matches!(action.get("action").and_then(|a| a.as_str()), Some("set" | "nurture"))
                    && action.get("outcome").and_then(|o| o.as_str()) == Some("done")
            })
        })
        .map(|run| run.contact_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// One evaluator step: evaluates up to one chunk of queued contacts. Returns how many.
pub async fn evaluate_step(engine: &Engine) -> Result<usize, StoreError> {
    let ids = engine.store.queued_contacts(EVALUATION_CHUNK).await?;
    let count = ids.len();
    if count > 0 {
        let runs = evaluate_current(engine, ids, false, engine.now()).await?;
        after_runs(engine, &runs).await;
    }
    Ok(count)
}

/// Evaluates queued contacts until the queue is empty, or until a step leaves it as it was
/// (a contact whose evaluation keeps failing stays queued). Returns the contacts taken.
pub async fn drain_queue(engine: &Engine) -> Result<usize, StoreError> {
    let mut total = 0;
    let mut depth = engine.store.queue_depth().await?;
    while depth > 0 {
        total += evaluate_step(engine).await?;
        let left = engine.store.queue_depth().await?;
        if left >= depth {
            break;
        }
        depth = left;
    }
    Ok(total)
}

/// What one scheduler tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerReport {
    /// False when another process holds the scheduler lease.
    pub ran: bool,
    pub contacts: u64,
    pub runs: u64,
}

/// One scheduler tick: under the `scheduler` lease (one process at a time), walks the
/// contacts old enough for some cold trigger and judges the cold triggers for them.
pub async fn scheduler_step(engine: &Engine) -> Result<SchedulerReport, StoreError> {
    let now = engine.now();
    let lease = (engine.config.scheduler_interval.as_millis() as Millis * 2).max(30_000);
    if !engine.store.try_lease("scheduler", &engine.runtime.worker_id, lease, now).await? {
        return Ok(SchedulerReport::default());
    }
    let automations = engine.runtime.automations();
    let shortest = automations
        .iter()
        .filter(|a| a.automation.enabled)
        .filter_map(|a| match a.automation.trigger {
            Trigger::Cold { within, .. } => Some(within.millis()),
            _ => None,
        })
        .min();
    let mut report = SchedulerReport { ran: true, ..SchedulerReport::default() };
    let Some(shortest) = shortest else {
        return Ok(report);
    };
    let mut cursor = None;
    loop {
        let ids = engine.store.contacts_created_before(cursor.take(), now - shortest, EVALUATION_CHUNK).await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        report.contacts += ids.len() as u64;
        let runs = evaluate_current(engine, ids, true, now).await?;
        report.runs += runs.len() as u64;
        after_runs(engine, &runs).await;
        cursor = Some(last);
    }
    Ok(report)
}

/// One CRM sync step: `score.changed` batches for contacts whose debounce has passed.
pub async fn sync_step(engine: &Engine) -> Result<u64, StoreError> {
    let sent = engine.store.sync_step(100, engine.now()).await?;
    if sent > 0 {
        metrics::counter!("leadscore_sync_contacts_total").increment(sent);
        engine.runtime.wake_delivery.notify_one();
    }
    Ok(sent)
}

/// What one delivery step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub attempted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dead: u64,
}

/// The signing secret of a webhook: the named secret stored through the API, else
/// `LEADSCORE_SECRET_<NAME>` from the environment. Without a `secret_ref`, the secret
/// named `default` signs when there is one.
async fn resolve_secret(engine: &Engine, secret_ref: Option<&str>) -> Result<Option<String>, String> {
    let name = secret_ref.unwrap_or("default");
    if let Some(value) = engine.store.get_secret(name).await.map_err(|e| leadscore_store::ErrorChain(&e).to_string())? {
        return Ok(Some(value));
    }
    let variable = format!("LEADSCORE_SECRET_{}", name.to_uppercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    match std::env::var(&variable) {
        Ok(value) if !value.is_empty() => Ok(Some(value)),
        _ if secret_ref.is_none() => Ok(None),
        _ => Err(format!("no secret named {name:?}: store it with PUT /api/v1/secrets/{name} or set {variable}")),
    }
}

/// Sends one delivery (one attempt).
pub async fn attempt(engine: &Engine, delivery: &Delivery) -> AttemptResult {
    match &delivery.channel {
        Channel::Webhook { url, secret_ref, body } => {
            let secret = match resolve_secret(engine, secret_ref.as_deref()).await {
                Ok(secret) => secret,
                Err(error) => {
                    return AttemptResult { success: false, status: None, error: Some(error), duration_ms: 0 };
                }
            };
            // The header carries the real time of sending (receivers reject stale
            // timestamps); the body keeps the time the message was created.
            let timestamp = chrono::Utc::now().timestamp();
            engine.runtime.webhooks.send(url, &delivery.id, timestamp, body.as_bytes(), secret.as_deref()).await
        }
        Channel::Email { to, subject, body } => match &engine.runtime.mailer {
            Ok(mailer) => mailer.send(to, subject, body).await,
            Err(reason) => AttemptResult { success: false, status: None, error: Some(reason.clone()), duration_ms: 0 },
        },
    }
}

/// One delivery step: claims due deliveries, attempts each once, records the outcome and
/// the next attempt (exponential backoff with jitter) or the dead letter.
pub async fn delivery_step(engine: &Arc<Engine>) -> Result<DeliveryReport, StoreError> {
    let worker = &engine.runtime.worker_id;
    let lease = engine.config.delivery_lease.as_millis() as Millis;
    let claimed = engine.store.claim_deliveries(worker, DELIVERY_CHUNK, lease, engine.now()).await?;
    let mut report = DeliveryReport::default();
    let mut tasks = tokio::task::JoinSet::new();
    for delivery in claimed {
        // Attempts run concurrently: one slow receiver must not hold up the others.
        let engine = engine.clone();
        tasks.spawn(async move {
            let result = attempt(&engine, &delivery).await;
            (delivery, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let Ok((delivery, result)) = joined else {
            continue;
        };
        report.attempted += 1;
        let now = engine.now();
        let failed_attempts = delivery.attempts + 1;
        let retry_at = if result.success || engine.runtime.retry.gives_up_after(failed_attempts) {
            None
        } else {
            let delay = engine.runtime.retry.delay_after(failed_attempts, rand::random::<f64>());
            Some(now + delay.as_millis() as Millis)
        };
        if result.success {
            report.delivered += 1;
        } else if retry_at.is_some() {
            report.failed += 1;
        } else {
            report.dead += 1;
        }
        let outcome = if result.success {
            "delivered"
        } else if retry_at.is_some() {
            "retrying"
        } else {
            "dead_lettered"
        };
        metrics::counter!("leadscore_deliveries_total", "outcome" => outcome).increment(1);
        // Every attempt is in the delivery's log and the metrics; the server log keeps the
        // dead letters, which need a person.
        if retry_at.is_none() && !result.success {
            tracing::warn!(delivery = %delivery.id, attempts = failed_attempts, status = ?result.status, error = ?result.error, "delivery dead-lettered");
        } else {
            tracing::debug!(delivery = %delivery.id, outcome, status = ?result.status, error = ?result.error, "delivery attempt");
        }
        let attempt = DeliveryAttempt { at: now, success: result.success, status: result.status, error: result.error, duration_ms: result.duration_ms };
        engine.store.record_attempt(&delivery.id, worker, attempt, retry_at).await?;
    }
    Ok(report)
}

/// Starts the evaluator, scheduler, CRM sync and delivery loops.
pub fn spawn_workers(engine: Arc<Engine>) {
    let evaluator = engine.clone();
    engine.runtime.spawn(async move {
        let stopping = evaluator.runtime.shutdown.clone();
        while !stopping.is_cancelled() {
            match evaluate_step(&evaluator).await {
                // A full chunk: more is waiting. (A contact whose evaluation keeps failing stays
                // queued; it is retried on the next wake-up, not in a busy loop.)
                Ok(n) if n == EVALUATION_CHUNK => continue,
                Ok(_) => {}
                Err(err) => tracing::error!(error = %leadscore_store::ErrorChain(&err), "automation evaluation failed"),
            }
            tokio::select! {
                () = stopping.cancelled() => {}
                _ = tokio::time::timeout(Duration::from_secs(1), evaluator.runtime.wake_evaluator.notified()) => {}
            }
        }
    });
    let deliverer = engine.clone();
    engine.runtime.spawn(async move {
        let stopping = deliverer.runtime.shutdown.clone();
        while !stopping.is_cancelled() {
            match delivery_step(&deliverer).await {
                Ok(report) if report.attempted > 0 => continue,
                Ok(_) => {}
                Err(err) => tracing::error!(error = %leadscore_store::ErrorChain(&err), "delivery step failed"),
            }
            tokio::select! {
                () = stopping.cancelled() => {}
                _ = tokio::time::timeout(Duration::from_secs(1), deliverer.runtime.wake_delivery.notified()) => {}
            }
        }
    });
    let syncer = engine.clone();
    engine.runtime.spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = syncer.runtime.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(err) = sync_step(&syncer).await {
                tracing::error!(error = %leadscore_store::ErrorChain(&err), "CRM sync step failed");
            }
        }
    });
    let scheduler = engine.clone();
    engine.runtime.spawn(async move {
        let mut ticker = tokio::time::interval(scheduler.config.scheduler_interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = scheduler.runtime.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match scheduler_step(&scheduler).await {
                Ok(report) if report.ran => tracing::debug!(contacts = report.contacts, runs = report.runs, "scheduler tick"),
                Ok(_) => {}
                Err(err) => tracing::error!(error = %leadscore_store::ErrorChain(&err), "scheduler tick failed"),
            }
        }
    });
}

/// After a write that stored events: evaluates the touched contacts right away, so a hot
/// lead's automation has fired when the call returns. The events are stored whatever
/// happens here: a failed evaluation is logged and left to the evaluator loop (the
/// contacts stay queued). Without automations loaded here nothing is evaluated inline;
/// contacts the store queued anyway (automations stored through another process) go to
/// the evaluator, which loads them first.
pub async fn after_ingest(engine: &Engine, written: &[leadscore_store::ContactRecord]) {
    let mut ids: Vec<String> = written.iter().map(|contact| contact.id.clone()).collect();
    ids.sort();
    ids.dedup();
    refresh_predictive_of(engine, written).await;
    if engine.runtime.automations().iter().all(|a| !a.automation.enabled) {
        engine.runtime.wake_evaluator.notify_one();
        return;
    }
    for chunk in ids.chunks(EVALUATION_CHUNK) {
        if let Err(err) = evaluate_contacts(engine, chunk.to_vec()).await {
            tracing::error!(error = %leadscore_store::ErrorChain(&err), "automation evaluation after ingest failed; the evaluator retries");
            engine.runtime.wake_evaluator.notify_one();
            return;
        }
    }
}

/// After a write that may have queued contacts (upserts, patches, merges, bulk updates).
pub fn contacts_changed(engine: &Engine) {
    engine.runtime.wake_evaluator.notify_one();
}

/// Stores the written contacts' predictive scores before their automations are judged (a
/// predictive threshold sees the new score). A failure leaves the old scores for the
/// predictive sweep to replace; the write itself stands.
pub async fn refresh_predictive(engine: &Engine, ids: &[String]) {
    log_refresh_failure(crate::predictive::refresh_scores(engine, ids).await);
}

/// [`refresh_predictive`] from the contacts as the write left them (an ingest answers them).
pub async fn refresh_predictive_of(engine: &Engine, written: &[leadscore_store::ContactRecord]) {
    log_refresh_failure(crate::predictive::refresh_scores_of(engine, written).await);
}

fn log_refresh_failure(result: Result<usize, leadscore_store::StoreError>) {
    if let Err(err) = result {
        tracing::error!(error = %leadscore_store::ErrorChain(&err), "storing predictive scores after a write failed; the predictive sweep retries");
    }
}

/// After an API write to one contact: stores its predictive score and evaluates it right
/// away (a PATCH that lifts the fit over a threshold hands the lead off before the call
/// returns).
pub async fn after_contact_write(engine: &Engine, contact_id: &str) {
    refresh_predictive(engine, std::slice::from_ref(&contact_id.to_string())).await;
    if engine.runtime.automations().iter().all(|a| !a.automation.enabled) {
        return;
    }
    if let Err(err) = evaluate_contacts(engine, vec![contact_id.to_string()]).await {
        tracing::error!(error = %leadscore_store::ErrorChain(&err), contact = %contact_id, "automation evaluation failed; the evaluator retries");
        engine.runtime.wake_evaluator.notify_one();
    }
}
