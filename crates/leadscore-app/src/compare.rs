//! Shadow models compared with the live model they shadow (F31). A shadow scores live
//! traffic, so unlike a backtest nothing is replayed: the outcomes recorded while both
//! models scored a contact carry both cards (what sales saw, and what the shadow would
//! have said), and today's stored cards of both give the band changes a promotion would
//! make. Same report shape as the backtest (`candidate` beside `live`), plus each side's
//! distribution.

use leadscore_core::ScoreCard;
use leadscore_store::scoring::scanned_card_at;
use leadscore_store::{Millis, PublishedModel, StoreError};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

use crate::Engine;
use crate::access::Reach;
use crate::reports::{
    AccuracyReport, BandChanges, BandChangesView, BracketsReport, DistributionReport, ScoreRows, accuracy_report, brackets_report, distribution_report, judge,
    resolve, timelines,
};

/// The shadow `candidate` beside `live`: brackets and accuracy over the contacts whose
/// outcome in `[from, to)` was recorded while both scored them, both distributions, and
/// how many contacts sit in another band under the shadow today.
pub async fn compare(engine: &Engine, candidate: &PublishedModel, live: &PublishedModel, from: Millis, to: Millis) -> Result<CompareReport, StoreError> {
    let (mut judged_candidate, mut judged_live) = (Vec::new(), Vec::new());
    // Contacts the live model judged whose outcome carries no candidate card.
    let mut live_only = 0usize;
    for timeline in timelines(engine, &Reach::Everyone, None, from, to).await? {
        let cards = timeline.close.as_ref().map_or(&timeline.latest.1, |(_, _, cards)| cards);
        match (cards.get(&candidate.name), cards.get(&live.name)) {
            (Some(candidate_card), Some(live_card)) => {
                judged_candidate.push(judge(&timeline, candidate_card));
                judged_live.push(judge(&timeline, live_card));
            }
            (None, Some(_)) => live_only += 1,
            _ => {}
        }
    }
    let mut notes = Vec::new();
    if live_only > 0 {
        notes.push(format!(
            "{live_only} of {} contacts judged under {} have no {} score from then (judged before it scored them, or outside its applies_to) and are left out; a backtest replays them",
            live_only + judged_live.len(),
            live.name,
            candidate.name
        ));
    }
    let band_changes = band_changes(engine, candidate, live).await?;
    let side = |model: &PublishedModel, judged: &[crate::reports::Judged], distribution: DistributionReport| CompareSide {
        accuracy: accuracy_report(model, judged),
        brackets: brackets_report(model, judged, None),
        distribution,
        model: model.name.clone(),
        version: model.version,
    };
    Ok(CompareReport {
        band_changes,
        candidate: side(candidate, &judged_candidate, distribution_report(engine, &Reach::Everyone, candidate, BINS).await?),
        judged_contacts: judged_candidate.len(),
        live: side(live, &judged_live, distribution_report(engine, &Reach::Everyone, live, BINS).await?),
        notes,
        shadow_of: candidate.shadow_of.clone(),
    })
}

/// A shadow (or any candidate) model beside a live model (F31): the backtest's reports on
/// the outcomes recorded while both scored, each side's distribution, today's band changes.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CompareReport {
    /// Today's stored cards of both models, paired by contact.
    pub band_changes: BandChangesView,
    pub candidate: CompareSide,
    /// Contacts whose outcome in the range carries both models' cards.
    pub judged_contacts: usize,
    pub live: CompareSide,
    pub notes: Vec<String>,
    /// The live model the candidate shadows (null for a model that shadows none).
    #[schema(required = true)]
    pub shadow_of: Option<String>,
}

/// One model's reports in a comparison.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CompareSide {
    pub accuracy: AccuracyReport,
    pub brackets: BracketsReport,
    pub distribution: DistributionReport,
    pub model: String,
    pub version: u32,
}

/// The next contact with a current card under `model`, and that card (rows of another
/// version, still being rescored, are skipped, as in the other reports).
async fn next_card(rows: &mut ScoreRows, model: &PublishedModel, now: Millis) -> Result<Option<(String, ScoreCard)>, StoreError> {
    while let Some(row) = rows.next().await? {
        if let Some(card) = scanned_card_at(model, &row, now) {
            return Ok(Some((row.contact_id.clone(), card.into_owned())));
        }
    }
    Ok(None)
}

/// Today's cards of both models paired by contact: how many contacts the shadow puts in
/// another band, and from which to which. A contact scored by one model only counts as
/// "(not scored)" under the other.
async fn band_changes(engine: &Engine, candidate: &PublishedModel, live: &PublishedModel) -> Result<BandChangesView, StoreError> {
    let mut changes = BandChanges::default();
    let now = engine.now();
    let (mut live_rows, mut candidate_rows) = (ScoreRows::new(engine, live, None), ScoreRows::new(engine, candidate, None));
    let (mut next_live, mut next_candidate) = (next_card(&mut live_rows, live, now).await?, next_card(&mut candidate_rows, candidate, now).await?);
    loop {
        use std::cmp::Ordering;
        let order = match (&next_live, &next_candidate) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((live_id, _)), Some((candidate_id, _))) => live_id.cmp(candidate_id),
        };
        let live_card = if order.is_le() { next_live.as_ref().map(|(_, card)| card) } else { None };
        let candidate_card = if order.is_ge() { next_candidate.as_ref().map(|(_, card)| card) } else { None };
        changes.add(live_card, candidate_card);
        if order.is_le() {
            next_live = next_card(&mut live_rows, live, now).await?;
        }
        if order.is_ge() {
            next_candidate = next_card(&mut candidate_rows, candidate, now).await?;
        }
    }
    Ok(changes.into_view())
}

/// Which two models a comparison is between: the named candidate, and `against` or else
/// the model the candidate shadows.
pub fn resolve_pair(
    engine: &Engine,
    model: &str,
    against: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Arc<PublishedModel>, Arc<PublishedModel>, Millis, Millis), String> {
    let (candidate, from, to) = resolve(engine, Some(model), from, to)?;
    let against = match (against, candidate.shadow_of.as_deref()) {
        (Some(against), _) => against.to_string(),
        (None, Some(shadowed)) => shadowed.to_string(),
        (None, None) => return Err(format!("{model} is not a shadow model: name the model to compare it with (against=)")),
    };
    if against == candidate.name {
        return Err(format!("{model} cannot be compared with itself"));
    }
    let (live, _, _) = resolve(engine, Some(&against), None, None)?;
    Ok((candidate, live, from, to))
}

/// Histogram bins of each side's distribution.
const BINS: usize = 10;
