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
            let chunk = engine.store.refresh_chunk(published, cursor.take(), engine.config.rescore_chunk, engine.now()).await?;
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
            // With several processes on one database, one of them sweeps per interval.
            let lease = (every.as_millis() as leadscore_store::Millis).max(1000);
            match engine.store.try_lease("decay-sweep", &engine.runtime.worker_id, lease, engine.now()).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    tracing::warn!(error = %leadscore_store::ErrorChain(&err), "cannot take the decay sweep lease");
                    continue;
                }
            }
            match decay_sweep(&engine).await {
                Ok(report) => {
                    tracing::debug!(seen = report.seen, changed = report.changed, "decay sweep")
                }
                Err(err) => tracing::error!(error = %leadscore_store::ErrorChain(&err), "decay sweep failed"),
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
