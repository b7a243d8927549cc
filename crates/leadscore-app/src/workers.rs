//! Background work that is not tied to a request. Each worker's step is a plain async
//! function that tests call directly; the loops only add timing.

use std::sync::Arc;
use std::time::Duration;

use leadscore_store::StoreError;

use crate::Engine;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub seen: u64,
    pub changed: u64,
}

/// Refreshes the stored scores of every decaying model as of now (decay and the
/// inactivity penalty change scores without events; the lead list sorts by stored values).
pub async fn decay_sweep(engine: &Engine) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    for published in engine.models().iter().filter(|m| !m.model.decay.is_none()) {
        let mut cursor = None;
        loop {
            let chunk = engine.store.refresh_chunk(published, cursor.take(), engine.config.rescore_chunk.contacts, engine.now()).await?;
            report.seen += chunk.seen;
            report.changed += chunk.changed;
            match chunk.last_contact {
                Some(last) => cursor = Some(last),
                None => break,
            }
        }
    }
    metrics::counter!("leadscore_sweep_changed_total").increment(report.changed);
    Ok(report)
}

pub fn spawn_decay_sweeper(engine: Arc<Engine>, every: Duration) {
    spawn_leased(engine, "decay-sweep", every, |engine| async move {
        match decay_sweep(&engine).await {
            Ok(report) => tracing::debug!(seen = report.seen, changed = report.changed, "decay sweep"),
            Err(err) => tracing::error!(error = %leadscore_store::ErrorChain(&err), "decay sweep failed"),
        }
    });
}

/// Retrains the predictive model every `every` (issue 14): a new version goes live only
/// when it is not worse on its holdout; nothing is trained when no deal closed since.
pub fn spawn_predictive_retrainer(engine: Arc<Engine>, every: Duration) {
    spawn_leased(engine, "predictive-retrain", every, |engine| async move {
        match crate::predictive::retrain(&engine, Arc::new(|_| {})).await {
            Ok(crate::predictive::Retrained::Trained(version)) => {
                tracing::info!(version = version.version, auc = version.report.auc, live = version.live, "scheduled predictive retraining")
            }
            Ok(other) => tracing::debug!(?other, "scheduled predictive retraining: nothing to do"),
            Err(err) => tracing::warn!(error = %err, "scheduled predictive retraining failed"),
        }
    });
}

/// Keeps the stored predictive scores current ([`crate::predictive::sweep`]): every
/// `every`, and at once when another version goes live. With several processes, the one
/// holding the lease sweeps.
pub fn spawn_predictive_sweeper(engine: Arc<Engine>, every: Duration) {
    let worker = engine.clone();
    engine.runtime.spawn(async move {
        let engine = worker;
        loop {
            tokio::select! {
                () = engine.runtime.shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
                () = engine.runtime.wake_predictive_sweep.notified() => {}
            }
            let lease = (every.as_millis() as leadscore_store::Millis).max(1000);
            match engine.store.try_lease("predictive-sweep", &engine.runtime.worker_id, lease, engine.now()).await {
                Ok(true) => {
                    if let Err(err) = crate::predictive::sweep(&engine).await {
                        tracing::error!(error = %leadscore_store::ErrorChain(&err), "predictive sweep failed");
                    }
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %leadscore_store::ErrorChain(&err), lease = "predictive-sweep", "cannot take the lease"),
            }
        }
    });
}

/// Runs `step` every `every` until shutdown; with several processes on one database, the
/// one that takes the lease `name` runs it for that interval.
fn spawn_leased<F, Fut>(engine: Arc<Engine>, name: &'static str, every: Duration, step: F)
where
    F: Fn(Arc<Engine>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let worker = engine.clone();
    engine.runtime.spawn(async move {
        let engine = worker;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = engine.runtime.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let lease = (every.as_millis() as leadscore_store::Millis).max(1000);
            match engine.store.try_lease(name, &engine.runtime.worker_id, lease, engine.now()).await {
                Ok(true) => step(engine.clone()).await,
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %leadscore_store::ErrorChain(&err), lease = name, "cannot take the lease"),
            }
        }
    });
}

/// Re-reads the live models now and then, so a model published through another process
/// (PostgreSQL) is shown on reads here too. Writes do not depend on it: stores score with
/// the versions live in the database.
pub fn spawn_model_reloader(engine: Arc<Engine>, every: Duration) {
    let worker = engine.clone();
    engine.runtime.spawn(async move {
        let engine = worker;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = engine.runtime.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(err) = engine.reload_options().await {
                tracing::warn!(error = %leadscore_store::ErrorChain(&err), "cannot reload the options");
            }
            if let Err(err) = engine.reload_models().await {
                tracing::warn!(error = %leadscore_store::ErrorChain(&err), "cannot reload the live models");
            }
            if let Err(err) = engine.reload_automations().await {
                tracing::warn!(error = %leadscore_store::ErrorChain(&err), "cannot reload the automations");
            }
            if let Err(err) = engine.reload_predictive().await {
                tracing::warn!(error = %leadscore_store::ErrorChain(&err), "cannot reload the live predictive model");
            }
        }
    });
}
