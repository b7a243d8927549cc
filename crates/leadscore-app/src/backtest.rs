//! Backtest (F20): try a changed model against the past before it goes live. The stored
//! events of every contact with a status in the range are replayed through the candidate
//! and through the live model, each contact scored as of the instant it is judged at (its
//! close, else its latest status), and the same brackets and accuracy reports come back
//! for both, side by side; plus how many contacts the candidate would move to another band
//! today. Nothing is written.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use leadscore_core::{Model, ScoreCard};
use leadscore_store::scoring::card_from_events;
use leadscore_store::{Job, Millis, NewJob, PublishedModel, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Engine;
use crate::access::Reach;
use crate::models::JOB_LEASE_MS;
use crate::reports::{
    AccuracyReport, BandChanges, BandChangesView, BracketsReport, ReplayPages, accuracy_report, brackets_report, judge, replay_in_parallel, timelines,
};

/// Replays the judged contacts under `candidate` and `live`, then every scored contact for
/// the band changes. `from`/`to` bound the outcomes.
pub async fn run(
    engine: &Engine,
    candidate: Arc<PublishedModel>,
    live: Arc<PublishedModel>,
    from: Millis,
    to: Millis,
    progress: Progress<'_>,
) -> Result<BacktestReport, StoreError> {
    let started = std::time::Instant::now();
    let timelines = timelines(engine, &Reach::Everyone, None, from, to).await?;
    tracing::debug!(contacts = timelines.len(), elapsed_ms = started.elapsed().as_millis() as u64, "backtest: outcomes read");
    let total = timelines.len() as u64 + engine.store.count_contacts().await?;
    let mut done = 0u64;
    let mut judged_candidate = Vec::with_capacity(timelines.len());
    let mut judged_live = Vec::with_capacity(timelines.len());
    let ids: Vec<String> = timelines.iter().map(|t| t.contact_id.clone()).collect();
    let index_of: Arc<HashMap<String, usize>> = Arc::new(timelines.iter().enumerate().map(|(index, t)| (t.contact_id.clone(), index)).collect());
    let timelines = Arc::new(timelines);
    let mut pages = ReplayPages::of(engine, &ids);
    // Every judged contact is counted somewhere: scored by a side, outside its segment
    // (`applies_to`), or erased since its outcome was recorded (issue 12.4).
    let (mut replayed, mut outside_candidate, mut outside_live) = (0usize, 0usize, 0usize);
    while let Some((listed, page)) = pages.next().await? {
        let (candidate, live, timelines, index_of) = (candidate.clone(), live.clone(), timelines.clone(), index_of.clone());
        // A contact erased since is gone from the past too (not in the page).
        let judged = replay_in_parallel(page, move |contact, events| {
            let timeline = &timelines[*index_of.get(&contact.id)?];
            let judge_under = |model: &PublishedModel| {
                model
                    .model
                    .applies_to(&contact.attributes)
                    .then(|| judge(timeline, &card_from_events(model, &contact.attributes, events, timeline.judged_at())))
            };
            Some((judge_under(&candidate), judge_under(&live)))
        })
        .await?;
        for (candidate, live) in judged {
            replayed += 1;
            outside_candidate += usize::from(candidate.is_none());
            outside_live += usize::from(live.is_none());
            judged_candidate.extend(candidate);
            judged_live.extend(live);
        }
        done += listed as u64;
        progress(done, total);
    }
    tracing::debug!(contacts = timelines.len(), elapsed_ms = started.elapsed().as_millis() as u64, "backtest: judged contacts replayed");
    let band_changes = band_changes(engine, &candidate, &live, done, total, progress).await?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "backtest: band changes counted");
    Ok(BacktestReport {
        band_changes,
        candidate: BacktestSide {
            accuracy: accuracy_report(&candidate, &judged_candidate),
            brackets: brackets_report(&candidate, &judged_candidate, None),
            model: candidate.name.clone(),
            outside_segment: outside_candidate,
            scored_contacts: judged_candidate.len(),
            version: None,
        },
        erased_contacts: timelines.len() - replayed,
        judged_contacts: timelines.len(),
        live: BacktestSide {
            accuracy: accuracy_report(&live, &judged_live),
            brackets: brackets_report(&live, &judged_live, None),
            model: live.name.clone(),
            outside_segment: outside_live,
            scored_contacts: judged_live.len(),
            version: Some(live.version),
        },
    })
}

/// A backtest (F20): the candidate and the live model side by side, each contact judged as
/// of its close (else its latest status) in the range, and the band changes of today.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BacktestReport {
    /// Every contact scored under the live model, scored now under the candidate too.
    pub band_changes: BandChangesView,
    pub candidate: BacktestSide,
    /// Contacts with an outcome in the range that were erased since.
    pub erased_contacts: usize,
    /// Contacts with an outcome in the range.
    pub judged_contacts: usize,
    pub live: BacktestSide,
}

/// One model's reports in a backtest.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BacktestSide {
    pub accuracy: AccuracyReport,
    pub brackets: BracketsReport,
    pub model: String,
    /// Judged contacts outside the model's segment (`applies_to`).
    pub outside_segment: usize,
    pub scored_contacts: usize,
    /// The live model's version (the candidate has none: it is not published).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub version: Option<u32>,
}

/// Every contact scored under the live model, scored now under the candidate: how many
/// would change band, and from which to which. Pages are replayed in parallel while the
/// next one is read ([`ReplayPages`]).
async fn band_changes(
    engine: &Engine,
    candidate: &Arc<PublishedModel>,
    live: &Arc<PublishedModel>,
    mut done: u64,
    total: u64,
    progress: Progress<'_>,
) -> Result<BandChangesView, StoreError> {
    let now = engine.now();
    let mut changes = BandChanges::default();
    let mut pages = ReplayPages::scored(engine, &live.name);
    while let Some((listed, page)) = pages.next().await? {
        let (candidate, live) = (candidate.clone(), live.clone());
        let cards = replay_in_parallel(page, move |contact, events| {
            let card = |model: &PublishedModel| -> Option<ScoreCard> {
                model.model.applies_to(&contact.attributes).then(|| card_from_events(model, &contact.attributes, events, now))
            };
            Some((card(&live), card(&candidate)))
        })
        .await?;
        for (live, candidate) in &cards {
            changes.add(live.as_ref(), candidate.as_ref());
        }
        done += listed as u64;
        progress(done.min(total), total);
    }
    Ok(changes.into_view())
}

/// The candidate as a model to replay: its own name, version 0 (never live).
pub fn candidate_model(text: &str) -> Result<Arc<PublishedModel>, leadscore_core::ModelError> {
    let model = Model::parse(text)?;
    Ok(Arc::new(PublishedModel { name: model.name.clone(), version: 0, model, shadow_of: None }))
}

/// How often a background backtest records its progress (and keeps its lease).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Starts a backtest as a background job of this process and returns it at once. The
/// job is created leased to this process and records its progress as it goes, then the
/// report (`result`) or the error; if the process dies, another one's job worker marks it
/// failed once the lease expires (the partial replay lives in memory only).
pub async fn start_job(
    engine: &Arc<Engine>,
    candidate: Arc<PublishedModel>,
    live: Arc<PublishedModel>,
    from: Millis,
    to: Millis,
    slot: crate::quota::Slot,
) -> Result<Job, StoreError> {
    let lease = Some((engine.runtime.worker_id.clone(), engine.now() + JOB_LEASE_MS));
    let new = NewJob { kind: "backtest".into(), model: live.name.clone(), version: live.version, total: 0, lease };
    let job = engine.store.create_job(new, engine.now()).await?;
    let (worker, mut running) = (engine.clone(), job.clone());
    engine.runtime.spawn(async move {
        // Held until the replay ends, whichever way.
        let _slot = slot;
        let engine = worker;
        let progress = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let seen = progress.clone();
        let mut report_progress = move |done, total| {
            seen.0.store(done, Ordering::Relaxed);
            seen.1.store(total, Ordering::Relaxed);
        };
        let replay = run(&engine, candidate, live, from, to, &mut report_progress);
        tokio::pin!(replay);
        running.state = "running".into();
        let outcome = loop {
            tokio::select! {
                outcome = &mut replay => break outcome,
                // The replay lives in memory: stopping ends it, and the job says why.
                () = engine.runtime.shutdown.cancelled() => break Err(StoreError::Closed),
                () = tokio::time::sleep(PROGRESS_EVERY) => {
                    (running.done, running.total) = (progress.0.load(Ordering::Relaxed), progress.1.load(Ordering::Relaxed));
                    running.updated_at = engine.now();
                    if let Err(err) = engine.store.update_claimed_job(&running, &engine.runtime.worker_id, engine.now() + JOB_LEASE_MS).await {
                        tracing::warn!(job = running.id, error = %leadscore_store::ErrorChain(&err), "cannot record backtest progress");
                    }
                }
            }
        };
        match outcome {
            Ok(report) => {
                running.state = "done".into();
                running.done = progress.1.load(Ordering::Relaxed).max(running.done);
                running.total = running.done;
                running.result = serde_json::to_string(&report).ok();
            }
            Err(err) => {
                tracing::error!(job = running.id, error = %leadscore_store::ErrorChain(&err), "backtest failed");
                running.state = "failed".into();
                running.error = Some(leadscore_store::ErrorChain(&err).to_string());
            }
        }
        running.updated_at = engine.now();
        if let Err(err) = engine.store.update_claimed_job(&running, &engine.runtime.worker_id, engine.now()).await {
            tracing::error!(job = running.id, error = %leadscore_store::ErrorChain(&err), "cannot record the backtest's end");
        }
    });
    Ok(job)
}

/// Where a backtest stands, for progress bars: (contacts done, contacts in all).
pub type Progress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

/// Background backtest `id` (its progress, then its report).
pub async fn job(engine: &Engine, id: &str) -> Result<Job, BacktestError> {
    let found = match id.parse::<i64>() {
        Ok(number) => engine.store.get_job(number).await?,
        Err(_) => None,
    };
    found.filter(|job| job.kind == "backtest").ok_or_else(|| BacktestError::NoJob(id.to_string()))
}

/// Why a background backtest cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("no backtest {0:?}")]
    NoJob(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<BacktestError> for crate::AppError {
    fn from(err: BacktestError) -> Self {
        match err {
            BacktestError::NoJob(_) => crate::AppError::not_found(err.to_string()),
            BacktestError::Store(err) => crate::AppError::Store(err),
        }
    }
}

/// A background backtest as front ends show it: the job's progress, and the report once
/// it is done.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BacktestJobView {
    #[serde(flatten)]
    pub job: crate::models::JobView,
    /// The live model the candidate is compared with.
    pub live: String,
    /// The report, once the job is done (null before, and when it failed).
    #[schema(required = true, value_type = Option<BacktestReport>)]
    pub result: Option<serde_json::Value>,
}

impl From<&Job> for BacktestJobView {
    fn from(job: &Job) -> Self {
        BacktestJobView { job: job.into(), live: job.model.clone(), result: job.result.as_deref().and_then(|text| serde_json::from_str(text).ok()) }
    }
}
