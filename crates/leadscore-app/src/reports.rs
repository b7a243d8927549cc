//! Reports (F19): does the score predict who buys? `brackets` (conversion by score
//! bracket with Wilson intervals and the "points backwards" check), `accuracy` (ROC AUC at
//! close, won deals in the top band, average score of won vs lost), `distribution`,
//! `sources`, `feedback` and `speed` (hot → qualified, speed to lead), as JSON or CSV.
//! The maths is `leadscore_core::report`'s.
//!
//! Who counts: every contact with a status recorded in `[from, to)`. Its score is the one
//! recorded with its latest status in the range; a contact whose latest won/lost status
//! is in the range is closed, judged on its score as of that close. Won and lost contacts
//! count as qualified, as do contacts whose statuses in the range include `qualified`.
//!
//! Whom a report counts also depends on who asks ([`Reach`]): a sales rep's reports count
//! only the contacts they reach (their own, and the unassigned pool when allowed), so no
//! report tells a rep about another rep's contacts.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use leadscore_core::ScoreCard;
use leadscore_core::report::{BracketRow, Outcome, brackets as bracket_rows, decile_edges, points_backwards, roc_auc};
use leadscore_store::{Millis, OutcomeKind, PublishedModel, ScannedScore, StoreError, scoring};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Engine;
use crate::access::{InReach, OWNER_BATCH, Reach};
use crate::error::AppError;
use crate::time::{format_time, parse_time};

/// A contact that entered the model's top band in the range.
#[derive(Clone, Debug)]
pub struct BecameHot {
    pub contact_id: String,
    pub owner: Option<String>,
    pub hot_at: Millis,
}

/// Contacts read per page of [`ReplayPages`].
const REPLAY_PAGE: usize = 2_000;

/// One page of contacts and their events (in scoring order), from [`ReplayPages`].
pub(crate) type ReplayPage = (Vec<leadscore_store::ContactRecord>, HashMap<String, Vec<leadscore_store::scoring::ScoringEvent>>);

/// Contacts with their attributes and events, a page at a time: every contact scored under
/// a model in contact id order ([`ReplayPages::scored`]), or given contacts
/// ([`ReplayPages::of`]), for the passes that replay contacts ([`became_hot`], the
/// backtest). The next page is read on other tasks while the caller replays this one, and
/// each page's events are decoded by two reads (connections) at once: decoding the events
/// is most of the work.
pub(crate) struct ReplayPages {
    store: Arc<dyn leadscore_store::Store>,
    source: PageSource,
    pending: Option<PageRead>,
}

/// A page being read: how many contacts it passed over, the last of them (where the next
/// page starts; None at the end), and the page.
type PageRead = tokio::task::JoinHandle<Result<(usize, Option<String>, ReplayPage), StoreError>>;

enum PageSource {
    /// The contacts scored under this model, all of them.
    Scored(String),
    /// These contacts, in pages (a contact erased since is left out).
    Given(std::vec::IntoIter<Vec<String>>),
}

impl ReplayPages {
    pub(crate) fn scored(engine: &Engine, model: &str) -> Self {
        Self::start(engine, PageSource::Scored(model.to_string()))
    }

    pub(crate) fn of(engine: &Engine, contact_ids: &[String]) -> Self {
        let pages: Vec<Vec<String>> = contact_ids.chunks(REPLAY_PAGE).map(<[String]>::to_vec).collect();
        Self::start(engine, PageSource::Given(pages.into_iter()))
    }

    fn start(engine: &Engine, source: PageSource) -> Self {
        let mut pages = Self { store: engine.store.clone(), source, pending: None };
        pages.fetch(None);
        pages
    }

    fn fetch(&mut self, after: Option<String>) {
        let store = self.store.clone();
        self.pending = Some(match &mut self.source {
            PageSource::Scored(name) => {
                let name = name.clone();
                tokio::spawn(async move {
                    let mut page = store.list_contacts(after.as_deref(), REPLAY_PAGE).await?;
                    let (listed, last) = (page.len(), page.last().map(|c| c.id.clone()));
                    page.retain(|c| c.scores.contains_key(&name));
                    Ok((listed, last, with_events(store, page).await?))
                })
            }
            PageSource::Given(pages) => {
                let ids = pages.next().unwrap_or_default();
                tokio::spawn(async move {
                    let page = store.get_contacts(&ids).await?;
                    Ok((ids.len(), ids.last().cloned(), with_events(store, page).await?))
                })
            }
        });
    }

    /// The next page: how many contacts it passed over (for progress) and the contacts to
    /// replay with their events; None after the last.
    pub(crate) async fn next(&mut self) -> Result<Option<(usize, ReplayPage)>, StoreError> {
        let Some(pending) = self.pending.take() else { return Ok(None) };
        let (listed, last, page) = pending.await.map_err(|e| StoreError::database("reading contacts failed", e))??;
        let Some(last) = last else { return Ok(None) };
        self.fetch(Some(last));
        Ok(Some((listed, page)))
    }
}

/// `contacts` with their events, read by two connections at once.
async fn with_events(store: Arc<dyn leadscore_store::Store>, contacts: Vec<leadscore_store::ContactRecord>) -> Result<ReplayPage, StoreError> {
    let ids: Vec<String> = contacts.iter().map(|c| c.id.clone()).collect();
    let (first, second) = ids.split_at(ids.len() / 2);
    let (first, second) = (first.to_vec(), second.to_vec());
    let other = store.clone();
    let second = tokio::spawn(async move { other.scoring_events_of(&second).await });
    let mut events = store.scoring_events_of(&first).await?;
    events.extend(second.await.map_err(|e| StoreError::database("reading events failed", e))??);
    Ok((contacts, events))
}

/// How many contacts a candidate model would put in another band than the live model, and
/// from which band to which: the `band_changes` of the backtest and of the shadow
/// comparison.
#[derive(Default)]
pub(crate) struct BandChanges {
    contacts: u64,
    changed: u64,
    transitions: BTreeMap<(String, String), u64>,
}

impl BandChanges {
    /// One contact: its card under the live model and under the candidate (None: that
    /// model does not score it).
    pub(crate) fn add(&mut self, live: Option<&ScoreCard>, candidate: Option<&ScoreCard>) {
        let label = |card: Option<&ScoreCard>| match card {
            None => "(not scored)".to_string(),
            Some(card) => card.band.clone().unwrap_or_else(|| "(no band)".into()),
        };
        let (live, candidate) = (label(live), label(candidate));
        self.contacts += 1;
        if live != candidate {
            self.changed += 1;
            *self.transitions.entry((live, candidate)).or_default() += 1;
        }
    }

    pub(crate) fn into_view(self) -> BandChangesView {
        let transitions = self.transitions.into_iter().map(|((from, to), contacts)| BandTransition { contacts, from, to }).collect();
        BandChangesView { changed: self.changed, contacts: self.contacts, transitions }
    }
}

/// How many contacts a candidate model puts in another band than the live model.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BandChangesView {
    /// Contacts in another band under the candidate.
    pub changed: u64,
    /// Contacts compared.
    pub contacts: u64,
    /// From which band to which, and how many contacts each.
    pub transitions: Vec<BandTransition>,
}

/// Contacts moving from one band (under the live model) to another (under the candidate);
/// `(not scored)` where a model does not score the contact, `(no band)` without a band.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BandTransition {
    pub contacts: u64,
    pub from: String,
    pub to: String,
}

/// Runs `replay` over the contacts of a page in parallel (rayon, off the async runtime).
pub(crate) async fn replay_in_parallel<T: Send + 'static>(
    (contacts, events): ReplayPage,
    replay: impl Fn(&leadscore_store::ContactRecord, &[leadscore_store::scoring::ScoringEvent]) -> Option<T> + Send + Sync + 'static,
) -> Result<Vec<T>, StoreError> {
    tokio::task::spawn_blocking(move || {
        use rayon::prelude::*;
        contacts.par_iter().filter_map(|contact| replay(contact, events.get(&contact.id).map(Vec::as_slice).unwrap_or_default())).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| StoreError::database("replaying contacts failed", e))
}

/// The contacts that entered the top band in `[from, to)`: each contact's events are
/// replayed and its total (current fit + activity) is checked at every event that earned
/// points; a crossing counts when the contact was below the line just before
/// ([`leadscore_core::scorer::first_crossing`]). Pages are replayed in parallel while the
/// next one is read ([`ReplayPages`]).
pub async fn became_hot(engine: &Engine, reach: &Reach, model: &PublishedModel, from: Millis, to: Millis) -> Result<Vec<BecameHot>, StoreError> {
    let Some(line) = model.model.bands.first().and_then(|b| b.min) else { return Ok(Vec::new()) };
    let model = Arc::new(model.clone());
    let reach = Arc::new(reach.clone());
    let mut pages = ReplayPages::scored(engine, &model.name);
    let mut hot = Vec::new();
    while let Some((_, page)) = pages.next().await? {
        let (model, reach) = (model.clone(), reach.clone());
        hot.extend(
            replay_in_parallel(page, move |contact, events| {
                if events.is_empty() || !reach.reaches(contact.owner.as_deref()) {
                    return None;
                }
                let fit = model.model.fit(&contact.attributes);
                let hot_at = leadscore_core::scorer::first_crossing(&model.model, fit, events.iter().map(|e| e.as_ref()), line, from, to)?;
                Some(BecameHot { contact_id: contact.id.clone(), owner: contact.owner.clone(), hot_at })
            })
            .await?,
        );
    }
    Ok(hot)
}

/// The speed report: of the leads that became hot in the range, how many were qualified
/// afterwards (warning below 50 %), and the time from becoming hot to the first sales
/// touch (any status but `new`), median and p90, with breaches of the SLA, per owner.
pub async fn speed_report(engine: &Engine, reach: &Reach, model: &PublishedModel, from: Millis, to: Millis, sla_ms: Millis) -> Result<SpeedReport, StoreError> {
    let hot = became_hot(engine, reach, model, from, to).await?;
    // Every sales touch (any status but `new`), by contact, in one pass over the outcomes.
    let mut touches: HashMap<String, Vec<(Millis, String)>> = HashMap::new();
    for_each_outcome(engine, Millis::MIN, Millis::MAX, |outcome| {
        if let OutcomeKind::Status { status } = &outcome.kind
            && status != "new"
        {
            touches.entry(outcome.contact_id.clone()).or_default().push((outcome.at, status.clone()));
        }
    })
    .await?;
    let mut leads = Vec::with_capacity(hot.len());
    let mut qualified = 0u64;
    for lead in &hot {
        let statuses: Vec<&(Millis, String)> = touches.get(&lead.contact_id).into_iter().flatten().filter(|(at, _)| *at >= lead.hot_at).collect();
        if statuses.iter().any(|(_, s)| matches!(s.as_str(), "qualified" | "won" | "lost")) {
            qualified += 1;
        }
        let contacted_at = statuses.iter().map(|(at, _)| *at).min();
        leads.push(leadscore_core::report::HotLead { owner: lead.owner.clone(), hot_at: lead.hot_at, contacted_at });
    }
    let rate = (!hot.is_empty()).then(|| qualified as f64 / hot.len() as f64);
    let mut warnings = Vec::new();
    if let Some(rate) = rate.filter(|r| *r < 0.5) {
        warnings.push(format!(
            "only {:.0} % of the leads that became {} were qualified afterwards: the top band lets in leads sales does not want",
            rate * 100.0,
            model.model.bands.first().map_or("hot", |b| b.name.as_str())
        ));
    }
    let hours = |ms: Option<f64>| rounded(ms.map(|ms| ms / 3_600_000.0));
    let speed = leadscore_core::report::speed_to_lead(&leads, sla_ms, engine.now())
        .into_iter()
        .map(|row| SpeedRow {
            contacted: row.contacted,
            hot: row.hot,
            median_hours: hours(row.median_ms),
            owner: row.owner.unwrap_or_else(|| "(everyone)".into()),
            p90_hours: hours(row.p90_ms),
            sla_breaches: row.breaches,
        })
        .collect();
    Ok(SpeedReport {
        became_hot: hot.len(),
        hot_to_qualified: rounded(rate),
        model: model.name.clone(),
        qualified_after: qualified,
        sla_hours: sla_ms as f64 / 3_600_000.0,
        speed,
        top_band: model.model.bands.first().map(|b| b.name.clone()),
        version: model.version,
        warnings,
    })
}

/// The speed report (F19): hot → qualified, and speed to lead per owner.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SpeedReport {
    /// Leads that entered the top band in the range.
    pub became_hot: usize,
    /// The share of them qualified afterwards (null when none became hot).
    #[schema(required = true)]
    pub hot_to_qualified: Option<f64>,
    pub model: String,
    pub qualified_after: u64,
    pub sla_hours: f64,
    /// Everyone first (`(everyone)`), then each owner.
    pub speed: Vec<SpeedRow>,
    #[schema(required = true)]
    pub top_band: Option<String>,
    pub version: u32,
    pub warnings: Vec<String>,
}

/// Speed to lead of one owner (or of everyone).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SpeedRow {
    /// Hot leads that got a first sales touch.
    pub contacted: u64,
    pub hot: u64,
    /// Hours from becoming hot to the first touch.
    #[schema(required = true)]
    pub median_hours: Option<f64>,
    pub owner: String,
    #[schema(required = true)]
    pub p90_hours: Option<f64>,
    /// Hot leads touched later than the SLA, or not yet and already past it.
    pub sla_breaches: u64,
}

/// Score rows are read in pages of this many for the reports over every contact.
const SCORE_PAGE: usize = 10_000;

/// Every stored score row of a model in contact id order ([`leadscore_store::ContactStore::scan_scores`]:
/// score rows only, with the value of one attribute when asked), a page at a time, the next
/// page read on another task while this one is consumed. The reports over every contact
/// and the shadow comparison read through it.
pub(crate) struct ScoreRows {
    store: Arc<dyn leadscore_store::Store>,
    model: String,
    with_state: bool,
    attribute: Option<String>,
    page: std::vec::IntoIter<ScannedScore>,
    pending: Option<tokio::task::JoinHandle<Result<Vec<ScannedScore>, StoreError>>>,
}

impl ScoreRows {
    pub(crate) fn new(engine: &Engine, model: &PublishedModel, attribute: Option<&str>) -> Self {
        let mut rows = Self {
            store: engine.store.clone(),
            model: model.name.clone(),
            // The states are read only when the card as of now needs them.
            with_state: scoring::moves_with_time(&model.model),
            attribute: attribute.map(str::to_string),
            page: Vec::new().into_iter(),
            pending: None,
        };
        rows.fetch(None);
        rows
    }

    fn fetch(&mut self, after: Option<String>) {
        let (store, model, with_state, attribute) = (self.store.clone(), self.model.clone(), self.with_state, self.attribute.clone());
        self.pending = Some(tokio::spawn(async move { store.scan_scores(&model, with_state, attribute.as_deref(), after.as_deref(), SCORE_PAGE).await }));
    }

    /// The next row, of any version: [`scoring::scanned_card_at`] gives its card as of now,
    /// or None for a row of another version (still being rescored), which reports skip.
    pub(crate) async fn next(&mut self) -> Result<Option<ScannedScore>, StoreError> {
        loop {
            if let Some(row) = self.page.next() {
                return Ok(Some(row));
            }
            let Some(pending) = self.pending.take() else { return Ok(None) };
            let page = pending.await.map_err(|e| StoreError::database("reading the scores failed", e))??;
            if page.len() == SCORE_PAGE {
                self.fetch(page.last().map(|row| row.contact_id.clone()));
            }
            self.page = page.into_iter();
        }
    }
}

/// Calls `each` with every contact that has a score under `model` (its current card), and
/// the value of `attribute` when one is named, from the score rows only ([`ScoreRows`]).
async fn for_each_scored(
    engine: &Engine,
    reach: &Reach,
    model: &PublishedModel,
    attribute: Option<&str>,
    mut each: impl FnMut(&ScannedScore, &ScoreCard),
) -> Result<(), StoreError> {
    let now = engine.now();
    let mut rows = ScoreRows::new(engine, model, attribute);
    let mut in_reach = InReach::new(engine, reach);
    let mut waiting = Vec::new();
    loop {
        let row = rows.next().await?;
        let end = row.is_none();
        match row {
            Some(row) if in_reach.everyone() => waiting.push(row),
            Some(row) => {
                waiting.push(row);
                if waiting.len() < OWNER_BATCH {
                    continue;
                }
                in_reach.retain(&mut waiting, |row| &row.contact_id).await?;
            }
            None => in_reach.retain(&mut waiting, |row| &row.contact_id).await?,
        }
        for row in waiting.drain(..) {
            if let Some(card) = scoring::scanned_card_at(model, &row, now) {
                each(&row, &card);
            }
        }
        if end {
            return Ok(());
        }
    }
}

/// The distribution report: a histogram of current totals and the count per band, with a
/// warning when the top band holds too many (over 20 %) or too few (under 1 %) contacts.
pub async fn distribution_report(engine: &Engine, reach: &Reach, model: &PublishedModel, bins: usize) -> Result<DistributionReport, StoreError> {
    let mut totals = Vec::new();
    let mut bands: HashMap<String, u64> = HashMap::new();
    for_each_scored(engine, reach, model, None, |_, card| {
        totals.push(card.total);
        *bands.entry(card.band.clone().unwrap_or_default()).or_default() += 1;
    })
    .await?;
    let count = totals.len() as u64;
    let per_band = model
        .model
        .bands
        .iter()
        .map(|b| {
            let n = bands.get(&b.name).copied().unwrap_or(0);
            BandShare { band: b.name.clone(), contacts: n, min: b.min, share: rounded((count > 0).then(|| n as f64 / count as f64)) }
        })
        .collect();
    let mut warnings = Vec::new();
    if let (Some(top), true) = (model.model.bands.first(), count > 0) {
        let share = bands.get(&top.name).copied().unwrap_or(0) as f64 / count as f64;
        if share > 0.2 {
            warnings.push(format!("{:.0} % of contacts are {}: too many for sales to call; raise its min", share * 100.0, top.name));
        } else if share < 0.01 {
            warnings.push(format!("under 1 % of contacts are {}: lower its min or sales will wait for leads", top.name));
        }
    }
    let histogram = leadscore_core::report::histogram(&totals, bins.max(1))
        .into_iter()
        .map(|(lower, upper, contacts)| HistogramBin { contacts, lower: (lower * 100.0).round() / 100.0, upper: (upper * 100.0).round() / 100.0 })
        .collect();
    Ok(DistributionReport {
        bands: per_band,
        contacts: count,
        histogram,
        median: rounded(leadscore_core::report::percentile(&totals, 50.0)),
        model: model.name.clone(),
        version: model.version,
        warnings,
    })
}

/// The distribution report (F19): current totals as a histogram, and contacts per band.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DistributionReport {
    /// Every band of the model, best first.
    pub bands: Vec<BandShare>,
    /// Contacts the model scores.
    pub contacts: u64,
    pub histogram: Vec<HistogramBin>,
    /// The median total (null without contacts).
    #[schema(required = true)]
    pub median: Option<f64>,
    pub model: String,
    pub version: u32,
    pub warnings: Vec<String>,
}

/// How many contacts one band holds.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BandShare {
    pub band: String,
    pub contacts: u64,
    /// The band's `min` (null for the band that takes everything else).
    #[schema(required = true)]
    pub min: Option<f64>,
    /// Its share of the contacts (null without contacts).
    #[schema(required = true)]
    pub share: Option<f64>,
}

/// One bin of the histogram of totals: [lower, upper).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HistogramBin {
    pub contacts: u64,
    pub lower: f64,
    pub upper: f64,
}

/// The sources report: per value of a source attribute, how many contacts, their average
/// current score, and the conversion of those with outcomes in the range.
pub async fn sources_report(engine: &Engine, reach: &Reach, model: &PublishedModel, attribute: &str, judged: &[Judged]) -> Result<SourcesReport, StoreError> {
    #[derive(Default)]
    struct Source {
        contacts: u64,
        score_sum: f64,
        won: u64,
        lost: u64,
    }
    let closed: HashMap<&str, bool> = judged.iter().filter_map(|j| j.close.as_ref().map(|c| (j.contact_id.as_str(), c.2))).collect();
    let mut sources: HashMap<String, Source> = HashMap::new();
    for_each_scored(engine, reach, model, Some(attribute), |row, card| {
        let name = match &row.attribute {
            Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
            Some(Value::Null) | None => Cow::Borrowed("(none)"),
            Some(other) => Cow::Owned(other.to_string()),
        };
        // Looked up by &str: a String is made once per source, not once per contact.
        if !sources.contains_key(name.as_ref()) {
            sources.insert(name.clone().into_owned(), Source::default());
        }
        let Some(source) = sources.get_mut(name.as_ref()) else { return };
        source.contacts += 1;
        source.score_sum += card.total;
        match closed.get(row.contact_id.as_str()) {
            Some(true) => source.won += 1,
            Some(false) => source.lost += 1,
            None => {}
        }
    })
    .await?;
    let mut rows: Vec<(String, Source)> = sources.into_iter().collect();
    rows.sort_by(|a, b| b.1.contacts.cmp(&a.1.contacts).then_with(|| a.0.cmp(&b.0)));
    let rows = rows
        .into_iter()
        .map(|(name, s)| {
            let closed = s.won + s.lost;
            SourceRow {
                average_score: rounded(Some(s.score_sum / s.contacts.max(1) as f64)),
                contacts: s.contacts,
                conversion: rounded((closed > 0).then(|| s.won as f64 / closed as f64)),
                lost: s.lost,
                source: name,
                won: s.won,
            }
        })
        .collect();
    Ok(SourcesReport { attribute: attribute.to_string(), model: model.name.clone(), sources: rows, version: model.version })
}

/// The sources report (F19): contacts, average score and conversion per source.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SourcesReport {
    /// The attribute that names the source.
    pub attribute: String,
    pub model: String,
    /// Most contacts first.
    pub sources: Vec<SourceRow>,
    pub version: u32,
}

/// One value of the source attribute (`(none)` for contacts without it).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SourceRow {
    #[schema(required = true)]
    pub average_score: Option<f64>,
    pub contacts: u64,
    /// won / (won + lost) of its contacts closed in the range (null when none closed).
    #[schema(required = true)]
    pub conversion: Option<f64>,
    pub lost: u64,
    pub source: String,
    pub won: u64,
}

/// The feedback report: sales ratings by band (of the score when rated), and the sales
/// cycle (contact created → won) of the deals won in the range.
pub async fn feedback_report(
    engine: &Engine,
    reach: &Reach,
    model: &PublishedModel,
    from: Millis,
    to: Millis,
    timelines: &[Timeline],
) -> Result<FeedbackReport, StoreError> {
    // (ratings, sum of ratings) by the band when rated. For a rep the ratings in the range
    // are kept until their contacts' owners are read; for everyone they are counted at once.
    let mut ratings: HashMap<String, (u64, u64)> = HashMap::new();
    let count = |ratings: &mut HashMap<String, (u64, u64)>, band: String, rating: u8| {
        let entry = ratings.entry(band).or_default();
        entry.0 += 1;
        entry.1 += u64::from(rating);
    };
    let mut rated: Vec<(String, String, u8)> = Vec::new();
    for_each_outcome(engine, from, to, |outcome| {
        if let OutcomeKind::Feedback { rating, .. } = &outcome.kind {
            let band = outcome.scores.get(&model.name).and_then(|c| c.band.clone()).unwrap_or_else(|| "(not scored)".into());
            if reach.is_everyone() {
                count(&mut ratings, band, *rating);
            } else {
                rated.push((outcome.contact_id.clone(), band, *rating));
            }
        }
    })
    .await?;
    InReach::new(engine, reach).retain(&mut rated, |(contact, _, _)| contact).await?;
    for (_, band, rating) in rated {
        count(&mut ratings, band, rating);
    }
    let mut by_band = Vec::new();
    for name in model.model.bands.iter().map(|b| b.name.clone()).chain(std::iter::once("(not scored)".to_string())) {
        if let Some((count, sum)) = ratings.get(&name) {
            by_band.push(BandRating { average_rating: rounded(Some(*sum as f64 / *count as f64)), band: name, ratings: *count });
        }
    }
    // Sales cycle: from the contact's creation to its winning status (its close).
    let mut cycles_days = Vec::new();
    for timeline in timelines {
        if let Some((won_at, true, _)) = &timeline.close
            && let Some(contact) = engine.store.get_contact(&timeline.contact_id).await?
        {
            cycles_days.push(((won_at - contact.created_at).max(0)) as f64 / 86_400_000.0);
        }
    }
    Ok(FeedbackReport {
        model: model.name.clone(),
        ratings_by_band: by_band,
        sales_cycle_days: SalesCycle {
            median: rounded(leadscore_core::report::percentile(&cycles_days, 50.0)),
            p90: rounded(leadscore_core::report::percentile(&cycles_days, 90.0)),
            won: cycles_days.len(),
        },
        version: model.version,
    })
}

/// The feedback report (F19): sales ratings by band, and the sales cycle.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FeedbackReport {
    pub model: String,
    /// The bands rated, best first, then `(not scored)`.
    pub ratings_by_band: Vec<BandRating>,
    pub sales_cycle_days: SalesCycle,
    pub version: u32,
}

/// The sales ratings of the contacts that were in one band when rated.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BandRating {
    #[schema(required = true)]
    pub average_rating: Option<f64>,
    pub band: String,
    pub ratings: u64,
}

/// Days from a contact's creation to its winning status, over the deals won in the range.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SalesCycle {
    #[schema(required = true)]
    pub median: Option<f64>,
    #[schema(required = true)]
    pub p90: Option<f64>,
    /// Deals won.
    pub won: usize,
}

/// Outcomes are read in chunks of this many rows.
const CHUNK: usize = 10_000;

/// One contact as the reports see it.
#[derive(Clone, Debug)]
pub struct Judged {
    pub contact_id: String,
    /// The score and band recorded with its latest status in the range.
    pub score: f64,
    pub band: Option<String>,
    pub outcome: Outcome,
    /// (score, band, won) as of its latest won/lost status in the range.
    pub close: Option<(f64, Option<String>, bool)>,
}

/// Where one contact stands in a range of outcomes.
#[derive(Clone, Debug)]
pub struct Timeline {
    pub contact_id: String,
    /// Its latest status in the range: (time, the cards recorded with it).
    pub latest: (Millis, BTreeMap<String, ScoreCard>),
    /// Its latest won/lost status in the range: (time, won, the cards recorded with it).
    pub close: Option<(Millis, bool, BTreeMap<String, ScoreCard>)>,
    /// Reached `qualified` (or closed) in the range.
    pub qualified: bool,
}

impl Timeline {
    pub fn outcome(&self) -> Outcome {
        match &self.close {
            Some((_, true, _)) => Outcome::Won,
            Some((_, false, _)) => Outcome::Lost,
            None if self.qualified => Outcome::Qualified,
            None => Outcome::Open,
        }
    }

    /// The instant a contact is judged at: its close, else its latest status.
    pub fn judged_at(&self) -> Millis {
        self.close.as_ref().map_or(self.latest.0, |(at, _, _)| *at)
    }
}

/// Calls `each` with every outcome in `[from, to)`, read in chunks.
async fn for_each_outcome(engine: &Engine, from: Millis, to: Millis, mut each: impl FnMut(&leadscore_store::OutcomeRecord)) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let chunk = engine.store.list_outcomes(from, to, after, CHUNK).await?;
        let Some(last) = chunk.last() else { return Ok(()) };
        after = Some(last.id);
        chunk.iter().for_each(&mut each);
    }
}

/// The statuses in `[from, to)` per contact. With `model`, only statuses whose recorded
/// cards include that model count (a contact the model did not score then is not judged
/// by it).
pub async fn timelines(engine: &Engine, reach: &Reach, model: Option<&str>, from: Millis, to: Millis) -> Result<Vec<Timeline>, StoreError> {
    let mut seen: HashMap<String, (Option<(Millis, i64)>, Timeline)> = HashMap::new();
    let mut close_keys: HashMap<String, (Millis, i64)> = HashMap::new();
    for_each_outcome(engine, from, to, |outcome| {
        let OutcomeKind::Status { status } = &outcome.kind else { return };
        if model.is_some_and(|m| !outcome.scores.contains_key(m)) {
            return;
        }
        let key = (outcome.at, outcome.id);
        let (latest_key, timeline) = seen.entry(outcome.contact_id.clone()).or_insert_with(|| {
            (None, Timeline { contact_id: outcome.contact_id.clone(), latest: (outcome.at, BTreeMap::new()), close: None, qualified: false })
        });
        if latest_key.is_none_or(|k| key > k) {
            *latest_key = Some(key);
            timeline.latest = (outcome.at, outcome.scores.clone());
        }
        match status.as_str() {
            "won" | "lost" => {
                timeline.qualified = true;
                let close_key = close_keys.entry(outcome.contact_id.clone()).or_insert(key);
                if timeline.close.is_none() || key >= *close_key {
                    *close_key = key;
                    timeline.close = Some((outcome.at, status == "won", outcome.scores.clone()));
                }
            }
            "qualified" => timeline.qualified = true,
            _ => {}
        }
    })
    .await?;
    let mut timelines: Vec<Timeline> = seen.into_values().map(|(_, t)| t).collect();
    InReach::new(engine, reach).retain(&mut timelines, |t| &t.contact_id).await?;
    timelines.sort_by(|a, b| a.contact_id.cmp(&b.contact_id));
    Ok(timelines)
}

/// How a contact is judged given its card at the judged instant.
pub fn judge(timeline: &Timeline, card: &ScoreCard) -> Judged {
    Judged {
        contact_id: timeline.contact_id.clone(),
        score: card.total,
        band: card.band.clone(),
        outcome: timeline.outcome(),
        close: timeline.close.as_ref().map(|(_, won, _)| (card.total, card.band.clone(), *won)),
    }
}

/// Gathers the contacts with a status in `[from, to)` and how each is judged under `model`,
/// on the cards recorded with the statuses: its latest one, or for a closed contact its close.
pub async fn gather(engine: &Engine, reach: &Reach, model: &str, from: Millis, to: Millis) -> Result<Vec<Judged>, StoreError> {
    Ok(timelines(engine, reach, Some(model), from, to)
        .await?
        .iter()
        .filter_map(|t| {
            let cards = t.close.as_ref().map_or(&t.latest.1, |(_, _, cards)| cards);
            cards.get(model).map(|card| judge(t, card))
        })
        .collect())
}

/// The model's band thresholds, ascending, with the band each bracket is.
fn band_edges(model: &PublishedModel) -> (Vec<f64>, Vec<Option<String>>) {
    let mut bands: Vec<(f64, String)> = model.model.bands.iter().filter_map(|b| b.min.map(|m| (m, b.name.clone()))).collect();
    bands.sort_by(|a, b| a.0.total_cmp(&b.0));
    let lowest = model.model.bands.iter().find(|b| b.min.is_none()).map(|b| b.name.clone());
    let labels = std::iter::once(lowest).chain(bands.iter().map(|(_, name)| Some(name.clone()))).collect();
    (bands.into_iter().map(|(min, _)| min).collect(), labels)
}

/// A rate or an average as the reports show it: 4 decimals.
fn rounded(x: Option<f64>) -> Option<f64> {
    x.map(|x| (x * 10_000.0).round() / 10_000.0)
}

fn bracket_table(by: &str, edges: Vec<f64>, labels: Option<&[Option<String>]>, rows: &[BracketRow], points_backwards: bool) -> BracketTable {
    let rows = rows
        .iter()
        .enumerate()
        .map(|(i, row)| BracketView {
            contacts: row.contacts,
            conversion: rounded(row.conversion),
            label: labels.and_then(|l| l.get(i).cloned().flatten()),
            lost: row.lost,
            lower: row.lower,
            qualified: row.qualified,
            upper: row.upper,
            wilson_high: rounded(row.wilson_high),
            wilson_low: rounded(row.wilson_low),
            won: row.won,
        })
        .collect();
    BracketTable { by: by.to_string(), edges, points_backwards, rows }
}

/// The brackets report: by the model's bands and by deciles, or by the given edges.
pub fn brackets_report(model: &PublishedModel, judged: &[Judged], edges: Option<Vec<f64>>) -> BracketsReport {
    let splits = match edges {
        Some(edges) => vec![Split::asked(edges)],
        None => {
            let (edges, labels) = band_edges(model);
            vec![Split { by: "band", edges, labels: Some(labels) }, Split::deciles(judged)]
        }
    };
    let (tables, warnings) = bracket_tables(judged, splits);
    let closed = judged.iter().filter(|j| j.close.is_some()).count();
    BracketsReport { closed, contacts: judged.len(), model: model.name.clone(), tables, version: model.version, warnings }
}

/// One way to split the judged contacts into brackets.
struct Split {
    by: &'static str,
    edges: Vec<f64>,
    labels: Option<Vec<Option<String>>>,
}

impl Split {
    /// The edges a caller asked for, in order, each once.
    fn asked(mut edges: Vec<f64>) -> Split {
        edges.sort_by(f64::total_cmp);
        edges.dedup();
        Split { by: "edges", edges, labels: None }
    }

    fn deciles(judged: &[Judged]) -> Split {
        let scores: Vec<f64> = judged.iter().map(|j| j.score).collect();
        Split { by: "decile", edges: decile_edges(&scores), labels: None }
    }
}

/// A table per split, and a warning for each whose higher brackets convert worse.
fn bracket_tables(judged: &[Judged], splits: Vec<Split>) -> (Vec<BracketTable>, Vec<String>) {
    let rows: Vec<(f64, Outcome)> = judged.iter().map(|j| (j.score, j.outcome)).collect();
    let mut tables = Vec::new();
    let mut warnings = Vec::new();
    for Split { by, edges, labels } in splits {
        let table = bracket_rows(&rows, &edges);
        let backwards = points_backwards(&table);
        if backwards {
            warnings.push(format!(
                "your points are backwards ({by}): a higher bracket converts significantly worse than a lower one; look at the rules that give the high scores"
            ));
        }
        tables.push(bracket_table(by, edges, labels.as_deref(), &table, backwards));
    }
    (tables, warnings)
}

/// Conversion by predictive score bracket (issue 14): every contact with a status in the
/// range, scored by the live predictive version as of the instant it is judged at.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PredictiveBracketsReport {
    /// The predictive model version that scored them.
    pub version: i64,
    /// Contacts judged that closed (won or lost) in the range.
    pub closed: usize,
    /// Contacts judged: a status in the range.
    pub contacts: usize,
    /// By ten points of predictive score and by decile, or by the edges asked for.
    pub tables: Vec<BracketTable>,
    pub warnings: Vec<String>,
}

/// The predictive score's fixed brackets: ten points each.
const PREDICTIVE_EDGES: [f64; 9] = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0];

/// The predictive brackets report for `reach` over `[from, to)` (contract §9: the score is
/// usable where a rule score is). Each contact is scored as of its close (else its latest
/// status), never with what happened after.
pub async fn predictive_brackets(
    engine: &Engine,
    reach: &Reach,
    from: Option<&str>,
    to: Option<&str>,
    edges: Option<&str>,
) -> Result<PredictiveBracketsReport, ReportError> {
    let live = engine.predictive().ok_or(ReportError::NoPredictive)?;
    let from = from.map(parse_time).transpose().map_err(ReportError::Range)?.unwrap_or(0);
    let to = to.map(parse_time).transpose().map_err(ReportError::Range)?.unwrap_or(Millis::MAX);
    if from >= to {
        return Err(ReportError::Range(format!("from ({}) must be before to ({})", format_time(from), format_time(to))));
    }
    let edges = edges.filter(|e| !e.trim().is_empty()).map(parse_edges).transpose().map_err(ReportError::Edges)?;
    let timelines = timelines(engine, reach, None, from, to).await?;
    let scores = crate::predictive::scores_as_judged(engine, &live, &timelines).await?;
    let judged: Vec<Judged> = timelines
        .iter()
        .filter_map(|t| {
            let score = f64::from(*scores.get(&t.contact_id)?);
            Some(Judged {
                contact_id: t.contact_id.clone(),
                score,
                band: None,
                outcome: t.outcome(),
                close: t.close.as_ref().map(|(_, won, _)| (score, None, *won)),
            })
        })
        .collect();
    let splits = match edges {
        Some(edges) => vec![Split::asked(edges)],
        None => vec![Split { by: "ten points", edges: PREDICTIVE_EDGES.to_vec(), labels: None }, Split::deciles(&judged)],
    };
    let (tables, mut warnings) = bracket_tables(&judged, splits);
    let trained_at = engine.store.list_predictive().await?.into_iter().find(|v| v.version == live.version).map(|v| v.trained_at);
    if let Some(trained_at) = trained_at {
        let before = timelines.iter().filter(|t| t.close.as_ref().is_some_and(|(at, _, _)| *at <= trained_at)).count();
        if before > 0 {
            warnings.push(format!(
                "{before} of these deals closed before version {} was trained and may be among those it learned from: its figures are optimistic there (the version's holdout figures are not)",
                live.version
            ));
        }
    }
    let closed = judged.iter().filter(|j| j.close.is_some()).count();
    Ok(PredictiveBracketsReport { version: live.version, closed, contacts: judged.len(), tables, warnings })
}

/// The brackets report (F19): conversion by score bracket, with Wilson intervals.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BracketsReport {
    /// Contacts judged that closed (won or lost) in the range.
    pub closed: usize,
    /// Contacts judged: a status in the range, scored by the model then.
    pub contacts: usize,
    pub model: String,
    /// By band and by decile, or by the edges asked for.
    pub tables: Vec<BracketTable>,
    pub version: u32,
    pub warnings: Vec<String>,
}

/// The contacts judged, split at `edges` (n edges, n + 1 brackets).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BracketTable {
    /// `band`, `decile` or `edges`.
    pub by: String,
    pub edges: Vec<f64>,
    /// Whether a higher bracket converts significantly worse than a lower one.
    pub points_backwards: bool,
    pub rows: Vec<BracketView>,
}

/// One bracket of scores: [lower, upper), open where null.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BracketView {
    pub contacts: u64,
    /// won / (won + lost); null when none closed.
    #[schema(required = true)]
    pub conversion: Option<f64>,
    /// The band this bracket is (brackets by band only).
    #[schema(required = true)]
    pub label: Option<String>,
    pub lost: u64,
    #[schema(required = true)]
    pub lower: Option<f64>,
    pub qualified: u64,
    #[schema(required = true)]
    pub upper: Option<f64>,
    #[schema(required = true)]
    pub wilson_high: Option<f64>,
    #[schema(required = true)]
    pub wilson_low: Option<f64>,
    pub won: u64,
}

/// The accuracy report: how well the score at close separates won from lost.
pub fn accuracy_report(model: &PublishedModel, judged: &[Judged]) -> AccuracyReport {
    let closed: Vec<(f64, Option<String>, bool)> = judged.iter().filter_map(|j| j.close.clone()).collect();
    let samples: Vec<(f64, bool)> = closed.iter().map(|(score, _, won)| (*score, *won)).collect();
    let won: Vec<&(f64, Option<String>, bool)> = closed.iter().filter(|c| c.2).collect();
    let lost: Vec<&(f64, Option<String>, bool)> = closed.iter().filter(|c| !c.2).collect();
    let mean = |xs: &[&(f64, Option<String>, bool)]| (!xs.is_empty()).then(|| xs.iter().map(|c| c.0).sum::<f64>() / xs.len() as f64);
    // Bands are listed best first; the top band is the first one.
    let top = model.model.bands.first().map(|b| b.name.clone());
    let won_in_top = top.as_ref().map(|top| won.iter().filter(|c| c.1.as_ref() == Some(top)).count());
    AccuracyReport {
        average_score_lost: rounded(mean(&lost)),
        average_score_won: rounded(mean(&won)),
        closed: closed.len(),
        lost: lost.len(),
        model: model.name.clone(),
        roc_auc: rounded(roc_auc(&samples)),
        top_band: top,
        version: model.version,
        won: won.len(),
        won_in_top_band: won_in_top,
        won_in_top_band_share: rounded(won_in_top.and_then(|n| (!won.is_empty()).then(|| n as f64 / won.len() as f64))),
    }
}

/// The accuracy report (F19): how well the score at close separates won from lost.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AccuracyReport {
    #[schema(required = true)]
    pub average_score_lost: Option<f64>,
    #[schema(required = true)]
    pub average_score_won: Option<f64>,
    /// Contacts closed (won or lost) in the range.
    pub closed: usize,
    pub lost: usize,
    pub model: String,
    /// ROC AUC of the score at close (null without both won and lost).
    #[schema(required = true)]
    pub roc_auc: Option<f64>,
    #[schema(required = true)]
    pub top_band: Option<String>,
    pub version: u32,
    pub won: usize,
    /// Won deals that were in the top band at close.
    #[schema(required = true)]
    pub won_in_top_band: Option<usize>,
    #[schema(required = true)]
    pub won_in_top_band_share: Option<f64>,
}

/// A value as a CSV cell: nothing for null, a text quoted when it must be, any other
/// value as JSON writes it (so a CSV shows numbers as the JSON answer does).
pub fn csv_cell(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::Null) | Err(_) => String::new(),
        Ok(Value::String(s)) => csv_field(&s),
        Ok(other) => other.to_string(),
    }
}

/// The brackets report as CSV: one line per bracket of every table.
pub fn brackets_csv(report: &BracketsReport) -> String {
    tables_csv(&report.tables)
}

/// The predictive brackets report as CSV, as the brackets report.
pub fn predictive_brackets_csv(report: &PredictiveBracketsReport) -> String {
    tables_csv(&report.tables)
}

fn tables_csv(tables: &[BracketTable]) -> String {
    let mut out = String::from("table,label,lower,upper,contacts,qualified,won,lost,conversion,wilson_low,wilson_high\n");
    for table in tables {
        for row in &table.rows {
            let cells = [
                csv_cell(&table.by),
                csv_cell(&row.label),
                csv_cell(&row.lower),
                csv_cell(&row.upper),
                csv_cell(&row.contacts),
                csv_cell(&row.qualified),
                csv_cell(&row.won),
                csv_cell(&row.lost),
                csv_cell(&row.conversion),
                csv_cell(&row.wilson_low),
                csv_cell(&row.wilson_high),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    out
}

/// The accuracy report as CSV: one header line, one value line.
pub fn accuracy_csv(report: &AccuracyReport) -> String {
    let columns: [(&str, String); 11] = [
        ("model", csv_cell(&report.model)),
        ("version", csv_cell(&report.version)),
        ("closed", csv_cell(&report.closed)),
        ("won", csv_cell(&report.won)),
        ("lost", csv_cell(&report.lost)),
        ("roc_auc", csv_cell(&report.roc_auc)),
        ("top_band", csv_cell(&report.top_band)),
        ("won_in_top_band", csv_cell(&report.won_in_top_band)),
        ("won_in_top_band_share", csv_cell(&report.won_in_top_band_share)),
        ("average_score_won", csv_cell(&report.average_score_won)),
        ("average_score_lost", csv_cell(&report.average_score_lost)),
    ];
    let (keys, values): (Vec<&str>, Vec<String>) = columns.into_iter().unzip();
    format!("{}\n{}\n", keys.join(","), values.join(","))
}

pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

/// The model and the range of outcomes a report is asked for: times in RFC 3339, the
/// whole history when left out, the only live model when none is named.
#[derive(Clone, Debug, Default)]
pub struct ReportRange {
    pub model: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl ReportRange {
    fn resolve(&self, engine: &Engine) -> Result<(Arc<PublishedModel>, Millis, Millis), ReportError> {
        resolve(engine, self.model.as_deref(), self.from.as_deref(), self.to.as_deref()).map_err(ReportError::Range)
    }
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No such live model, several and none named, or times that do not parse or are out
    /// of order.
    #[error("{0}")]
    Range(String),
    #[error("{0}")]
    Edges(String),
    #[error("bins must be between 1 and 200")]
    Bins,
    #[error("{0}")]
    Sla(String),
    #[error("no predictive model is live yet: train one first (`leadscore train`, POST /api/v1/predictive/train)")]
    NoPredictive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReportError> for AppError {
    fn from(err: ReportError) -> Self {
        match err {
            ReportError::Store(err) => AppError::Store(err),
            other => AppError::invalid(other.to_string()),
        }
    }
}

/// Histogram bins of the distribution report when none are asked for.
pub const DEFAULT_BINS: usize = 10;

/// The brackets report for `reach`: by the model's bands and deciles, or by `edges`
/// (comma-separated).
pub async fn brackets(engine: &Engine, reach: &Reach, range: &ReportRange, edges: Option<&str>) -> Result<BracketsReport, ReportError> {
    let (model, from, to) = range.resolve(engine)?;
    let edges = edges.filter(|e| !e.trim().is_empty()).map(parse_edges).transpose().map_err(ReportError::Edges)?;
    let judged = gather(engine, reach, &model.name, from, to).await?;
    Ok(brackets_report(&model, &judged, edges))
}

/// The accuracy report for `reach`.
pub async fn accuracy(engine: &Engine, reach: &Reach, range: &ReportRange) -> Result<AccuracyReport, ReportError> {
    let (model, from, to) = range.resolve(engine)?;
    let judged = gather(engine, reach, &model.name, from, to).await?;
    Ok(accuracy_report(&model, &judged))
}

/// The distribution report for `reach`, in `bins` bins (1–200, default 10); it reads
/// current scores, so the range's times are only checked.
pub async fn distribution(engine: &Engine, reach: &Reach, range: &ReportRange, bins: Option<usize>) -> Result<DistributionReport, ReportError> {
    let (model, _, _) = range.resolve(engine)?;
    let bins = bins.unwrap_or(DEFAULT_BINS);
    if !(1..=200).contains(&bins) {
        return Err(ReportError::Bins);
    }
    Ok(distribution_report(engine, reach, &model, bins).await?)
}

/// The sources report for `reach`, by `attribute` (default `source`).
pub async fn sources(engine: &Engine, reach: &Reach, range: &ReportRange, attribute: Option<&str>) -> Result<SourcesReport, ReportError> {
    let (model, from, to) = range.resolve(engine)?;
    let judged = gather(engine, reach, &model.name, from, to).await?;
    Ok(sources_report(engine, reach, &model, attribute.unwrap_or("source"), &judged).await?)
}

/// The feedback report for `reach`.
pub async fn feedback(engine: &Engine, reach: &Reach, range: &ReportRange) -> Result<FeedbackReport, ReportError> {
    let (model, from, to) = range.resolve(engine)?;
    let timelines = timelines(engine, reach, Some(&model.name), from, to).await?;
    Ok(feedback_report(engine, reach, &model, from, to, &timelines).await?)
}

/// The speed report for `reach`, against `sla` (`24h`, `30m`, `2d`…; default 24 hours).
pub async fn speed(engine: &Engine, reach: &Reach, range: &ReportRange, sla: Option<&str>) -> Result<SpeedReport, ReportError> {
    let (model, from, to) = range.resolve(engine)?;
    let sla = parse_sla(sla).map_err(ReportError::Sla)?;
    Ok(speed_report(engine, reach, &model, from, to, sla).await?)
}

/// The model and range of a report request (the only live model when none is named).
pub fn resolve(engine: &Engine, model: Option<&str>, from: Option<&str>, to: Option<&str>) -> Result<(Arc<PublishedModel>, Millis, Millis), String> {
    let model = engine.named_or_only_model(model).map_err(|e| e.to_string())?;
    let from = from.map(parse_time).transpose()?.unwrap_or(0);
    let to = to.map(parse_time).transpose()?.unwrap_or(Millis::MAX);
    if from >= to {
        return Err(format!("from ({}) must be before to ({})", format_time(from), format_time(to)));
    }
    Ok((model, from, to))
}

pub fn parse_edges(text: &str) -> Result<Vec<f64>, String> {
    text.split(',').map(|e| e.trim().parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| format!("edge {e:?} is not a number"))).collect()
}

/// Rows of a report as CSV with the given columns (the rows' field names).
pub fn rows_csv<T: Serialize>(rows: &[T], columns: &[&str]) -> String {
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        let row = serde_json::to_value(row).unwrap_or_default();
        let cells: Vec<String> = columns.iter().map(|c| csv_cell(&row[*c])).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The speed-to-lead SLA: `24h`, `30m`, `2d`…; default 24 hours.
pub fn parse_sla(text: Option<&str>) -> Result<Millis, String> {
    match text {
        None => Ok(24 * 3_600_000),
        Some(text) => leadscore_core::Span::parse(text).map(|s| s.millis()).map_err(|e| format!("sla: {e}")),
    }
}
