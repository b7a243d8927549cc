//! Records that cross the storage boundary.

use std::collections::BTreeMap;
use std::sync::Arc;

use leadscore_core::{ActivityState, DecayView, Model, ScoreCard};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// One published version of a model, compiled.
#[derive(Clone, Debug)]
pub struct PublishedModel {
    pub name: String,
    pub version: u32,
    pub model: Model,
    /// A shadow model (F31) names the live model it shadows: it scores live traffic like
    /// any model, but automations never read it and it is never sent out.
    pub shadow_of: Option<String>,
}

impl PublishedModel {
    /// A live (not shadow) model version.
    pub fn live(name: impl Into<String>, version: u32, model: Model) -> Self {
        Self { name: name.into(), version, model, shadow_of: None }
    }

    pub fn is_shadow(&self) -> bool {
        self.shadow_of.is_some()
    }
}

/// The models that score contacts right now.
pub type ModelSet = Vec<Arc<PublishedModel>>;

#[derive(Clone, Debug, Serialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: u32,
    /// The text as published (TOML or JSON).
    pub source: String,
    pub format: String,
    pub created_at: Millis,
    /// For the head of a shadow model: the live model it shadows.
    pub shadow_of: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewModelVersion {
    pub name: String,
    pub source: String,
    pub format: String,
    /// Publish as a shadow of this live model (F31); None publishes a live model.
    pub shadow_of: Option<String>,
}

/// A contact with its scores under every model that applies to it.
#[derive(Clone, Debug)]
pub struct ContactRecord {
    pub id: String,
    pub email: Option<String>,
    pub attributes: Map<String, Value>,
    pub groups: Vec<String>,
    pub owner: Option<String>,
    pub status: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_event_at: Option<Millis>,
    pub scores: BTreeMap<String, ScoreRow>,
    /// The contact's stored predictive score (F21), None before any predictive model
    /// scored it.
    pub predictive: Option<PredictiveScoreRow>,
}

/// A contact's stored predictive score (F21): what the lead list sorts and filters on and
/// automations and CRM fields read. Written by the engine after every contact write and
/// by the sweep that scores everyone under a new live version; reasons are not stored (a
/// contact's page computes them when read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictiveScoreRow {
    /// The predictive model version that scored it.
    pub version: i64,
    /// 0–100.
    pub score: u8,
    pub probability: f64,
    /// The instant its features were taken at.
    pub as_of: Millis,
}

/// A contact's stored score under one model version.
#[derive(Clone, Debug)]
pub struct ScoreRow {
    pub version: u32,
    /// As of `as_of`; decaying models are recomputed from `state` on read.
    pub card: ScoreCard,
    pub state: ActivityState,
    pub as_of: Millis,
}

/// One contact's stored score under one model, as [`crate::ContactStore::scan_scores`]
/// reads it for the reports over every contact: the score columns (and at most one
/// attribute), without the contact's other attributes, groups or other models' rows.
#[derive(Clone, Debug)]
pub struct ScannedScore {
    pub contact_id: String,
    pub version: u32,
    /// As of `as_of`; [`crate::scoring::scanned_card_at`] gives it as of another instant.
    pub card: ScoreCard,
    pub as_of: Millis,
    /// What activity as of another instant needs from the row's state, read only when
    /// asked for (models whose activity moves with time). A state that does not parse
    /// makes the row version 0, never live, as in the full reads of a contact.
    pub state: Option<DecayView>,
    /// The value of the attribute asked for; None when the contact lacks it (a JSON null
    /// is `Some(Value::Null)`) or no attribute was asked for.
    pub attribute: Option<Value>,
}

#[derive(Clone, Debug, Default)]
pub struct ContactUpsert {
    pub id: Option<String>,
    pub email: Option<String>,
    pub attributes: Map<String, Value>,
    pub groups: Vec<String>,
    pub owner: Option<String>,
    pub created_at: Option<Millis>,
    /// An import of history: the change does not fire automations.
    pub historical: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ContactPatch {
    pub attributes: Map<String, Value>,
    pub add_groups: Vec<String>,
    pub remove_groups: Vec<String>,
    /// `Some(None)` clears the owner.
    pub owner: Option<Option<String>>,
    pub status: Option<String>,
}

/// Which contacts a bulk update touches.
#[derive(Clone, Debug, Default)]
pub struct BulkFilter {
    /// Contacts scored by this model (needed for `band`).
    pub model: Option<String>,
    pub band: Option<String>,
    pub group: Option<String>,
    pub owner: Option<String>,
    /// A condition of the model language on attributes, already validated (JSON form).
    pub condition: Option<Value>,
}

impl BulkFilter {
    /// The condition compiled; Invalid with every problem when it does not parse.
    pub fn parsed_condition(&self) -> Result<Option<leadscore_core::condition::Condition>, crate::StoreError> {
        let Some(value) = &self.condition else { return Ok(None) };
        let mut problems = leadscore_core::problems::Problems::default();
        let parsed = leadscore_core::condition::parse_condition(value, "filter.condition", &mut problems);
        if !problems.is_empty() {
            let text: Vec<String> = problems.into_vec().into_iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
            return Err(crate::StoreError::Invalid(text.join("; ")));
        }
        Ok(parsed)
    }
}

#[derive(Clone, Debug, Default)]
pub struct BulkUpdate {
    pub filter: BulkFilter,
    pub patch: ContactPatch,
}

/// What one chunk of a bulk update did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BulkChunk {
    /// The contacts changed, in id order.
    pub changed: Vec<String>,
    /// The last contact id looked at: the next chunk starts after it. `None` when there
    /// was none left.
    pub next: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    Total,
    Fit,
    Activity,
    /// The stored predictive score: only contacts that have one are listed.
    Predictive,
}

#[derive(Clone, Debug)]
pub struct LeadQuery {
    pub model: String,
    pub sort: SortKey,
    pub descending: bool,
    pub band: Option<String>,
    pub group: Option<String>,
    pub owner: Option<String>,
    /// With `owner`: contacts without an owner too (a sales rep's unassigned pool).
    pub unassigned_too: bool,
    /// Only contacts in this fit × activity quadrant of the model.
    pub quadrant: Option<String>,
    /// Only contacts whose `source` attribute is this.
    pub source: Option<String>,
    /// Only contacts whose e-mail, name (`first_name`, `last_name`, `name`) or `company`
    /// contains this, ignoring ASCII case.
    pub search: Option<String>,
    /// Only contacts whose status is this one of [`STATUSES`] (`new` also matches a contact
    /// without any recorded status).
    pub status: Option<String>,
    /// Only contacts whose deal is not closed (not [`CLOSED_STATUSES`]).
    pub open: bool,
    /// Only contacts whose stored predictive score is at least this (0–100).
    pub predictive_min: Option<u8>,
    pub limit: usize,
    /// Continue after this (sort value, contact id).
    pub after: Option<(f64, String)>,
}

/// The attributes the lead list's search looks at besides the e-mail address.
pub const SEARCHED_ATTRIBUTES: [&str; 4] = ["first_name", "last_name", "name", "company"];

/// `text` as a `LIKE` pattern that matches it anywhere, with `\` as the escape character.
pub fn like_anywhere(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Who an event is about. At least one is set.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub anonymous_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Track,
    Page,
    Screen,
    Identify,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Track => "track",
            EventKind::Page => "page",
            EventKind::Screen => "screen",
            EventKind::Identify => "identify",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "track" => EventKind::Track,
            "page" => EventKind::Page,
            "screen" => EventKind::Screen,
            "identify" => EventKind::Identify,
            _ => return None,
        })
    }
    /// Whether events of this kind are activity (scored, count against inactivity).
    pub fn is_activity(self) -> bool {
        !matches!(self, EventKind::Identify)
    }
}

#[derive(Clone, Debug)]
pub struct NewEvent {
    pub message_id: String,
    pub identity: Identity,
    pub kind: EventKind,
    /// The scored name: the track event name, `page` or `screen`.
    pub name: String,
    pub properties: Map<String, Value>,
    /// identify traits (attributes to merge).
    pub traits: Map<String, Value>,
    pub context: Option<Value>,
    pub timestamp: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestStatus {
    Stored,
    Duplicate,
}

/// Whether a sender may change who a known contact is (see `records::identity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IdentityTrust {
    /// A key that may sit in a web page (`ingest` only): speaks for a visitor.
    Visitor,
    /// A server-side key (`identify` or `admin`), an import, the CLI.
    #[default]
    Trusted,
}

/// How a batch of events is taken in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestOptions {
    /// Live traffic fires automations; historical imports do not (unless asked).
    pub fire_automations: bool,
    pub trust: IdentityTrust,
}

#[derive(Clone, Debug, Serialize)]
pub struct IngestOutcome {
    pub status: IngestStatus,
    pub contact_id: String,
}

/// What an ingest wrote: one outcome per event, in order, and every contact that received
/// an event as the transaction left it (attributes, e-mail, scores), in the order they were
/// first touched. What follows an ingest (the predictive score, automations) starts from
/// these instead of reading the same contacts again.
#[derive(Clone, Debug, Default)]
pub struct Ingested {
    pub outcomes: Vec<IngestOutcome>,
    pub contacts: Vec<ContactRecord>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoredEvent {
    pub message_id: String,
    pub contact_id: String,
    pub kind: EventKind,
    pub name: String,
    pub timestamp: Millis,
    pub properties: Map<String, Value>,
    pub context: Option<Value>,
    pub received_at: Millis,
}

#[derive(Clone, Debug, Serialize)]
pub struct LogEntry {
    pub at: Millis,
    pub kind: String,
    pub data: Value,
}

/// What the rest of a contact's account had done by an instant (the predictive model's
/// account features, F21): how many of its other contacts were active in the trailing 90
/// days up to then, and their events in the trailing 30 and 90 days. Only events count
/// (they carry their time), so nothing after the instant is counted; the account is the
/// contact's account now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountActivity {
    pub active_colleagues: u64,
    pub events_30d: u64,
    pub events_90d: u64,
}

impl AccountActivity {
    /// The trailing windows, in days.
    pub const WINDOWS_DAYS: [i64; 2] = [30, 90];

    /// An account's activity without one of its contacts'.
    pub fn without(self, contact: AccountActivity) -> AccountActivity {
        AccountActivity {
            active_colleagues: self.active_colleagues.saturating_sub(contact.active_colleagues),
            events_30d: self.events_30d.saturating_sub(contact.events_30d),
            events_90d: self.events_90d.saturating_sub(contact.events_90d),
        }
    }
}

/// Whose activity [`AccountStore::activity_counts`](crate::AccountStore::activity_counts)
/// counts: every contact of an account, or one contact.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ActivityOf {
    Account(String),
    Contact(String),
}

/// What [`AccountStore::account_activity_reusing`](crate::AccountStore::account_activity_reusing) read.
#[derive(Clone, Debug, Default)]
pub struct AccountActivityRead {
    /// One per ask, in order.
    pub answers: Vec<Option<AccountActivity>>,
    /// The accounts counted by this read: (account, instant, count of the whole account).
    pub newly_counted: Vec<(String, Millis, AccountActivity)>,
}

/// How much one rescore chunk takes: at most `contacts` contacts, and no more events in
/// all than `events` — except a chunk of one contact, which takes all of that contact's
/// events however many. A chunk holds every event it scores in memory at once (and the
/// next chunk is read while it is written), so the event bound is what keeps a rescore's
/// memory flat as contacts gather events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLimit {
    pub contacts: usize,
    pub events: usize,
}

#[derive(Clone, Debug)]
pub struct RescoreChunk {
    pub last_contact: Option<String>,
    pub contacts: u64,
    pub events: u64,
}

#[derive(Clone, Debug)]
pub struct RefreshChunk {
    pub last_contact: Option<String>,
    pub seen: u64,
    pub changed: u64,
}

#[derive(Clone, Debug)]
pub struct NewJob {
    pub kind: String,
    pub model: String,
    pub version: u32,
    pub total: u64,
    /// Created already claimed by this owner until this time (the process that starts a
    /// job runs it; no other worker may take it in between).
    pub lease: Option<(String, Millis)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub model: String,
    pub version: u32,
    /// queued, running, done, failed, superseded
    pub state: String,
    pub total: u64,
    pub done: u64,
    pub cursor: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub error: Option<String>,
    /// What a finished job produced, as JSON text (a backtest's report; None for rescores).
    pub result: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    /// Ingest, and change who contacts are: merge known contacts (alias), replace a known
    /// contact's e-mail. For server-side senders; never put such a key in a web page.
    Identify,
    Read,
    Admin,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ingest" => Scope::Ingest,
            "identify" => Scope::Identify,
            "read" => Scope::Read,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Identify => "identify",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
    /// Whether holding `self` grants `wanted`: admin grants everything, identify grants
    /// ingest too.
    pub fn grants(self, wanted: Scope) -> bool {
        self == wanted || self == Scope::Admin || (self == Scope::Identify && wanted == Scope::Ingest)
    }
}

/// What a user may do (F26): `admin` everything; `marketing` models, automations,
/// deliveries, reports and every contact; `sales` the contacts they own (and the unassigned
/// pool when the admin allows it), their statuses and ratings, reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Marketing,
    Sales,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Marketing, Role::Sales];

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "admin" => Role::Admin,
            "marketing" => Role::Marketing,
            "sales" => Role::Sales,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketing => "marketing",
            Role::Sales => "sales",
        }
    }
}

/// A person who signs in to the web app. Users are "users"; "accounts" are companies.
#[derive(Clone, Debug, Serialize)]
pub struct UserRecord {
    pub id: String,
    /// Lower case; unique.
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    /// The argon2id PHC string; never shown.
    #[serde(skip)]
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A signed-in browser: the SHA-256 of its cookie's token (the token itself is never
/// stored), whose it is, and the instants the idle and absolute timeouts count from.
#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user_id: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
}

#[derive(Clone, Debug, Serialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 of the key, hex. The key itself is shown once and never stored.
    #[serde(skip)]
    pub hash: String,
    /// The first characters of the key, so people can tell keys apart.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

/// An automation definition to store (PRODUCT.md §3), already validated by the caller.
#[derive(Clone, Debug)]
pub struct NewAutomation {
    pub name: String,
    /// The automation as JSON, as given (TOML is converted to JSON before it gets here).
    pub definition: Value,
    pub enabled: bool,
}

/// A stored automation definition. Only the definition is kept here: runs, trigger state
/// and deliveries are separate records (not built yet).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AutomationRecord {
    pub name: String,
    pub definition: Value,
    pub enabled: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The statuses sales records (PRODUCT.md F18), in the order a lead moves through them.
pub const STATUSES: &[&str] = &["new", "contacted", "qualified", "disqualified", "won", "lost"];

/// The statuses that close a deal: the lead list's `open` filter leaves them out.
pub const CLOSED_STATUSES: &[&str] = &["won", "lost", "disqualified"];

/// The status a contact without any recorded status has.
pub const DEFAULT_STATUS: &str = "new";

/// What sales recorded about a contact.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutcomeKind {
    /// One of [`STATUSES`].
    Status { status: String },
    /// A rating of the lead, 1 (poor) to 5 (excellent).
    Feedback { rating: u8, note: Option<String>, author: Option<String> },
}

/// An outcome to record, with the contact's cards as of `at` (what sales saw then).
#[derive(Clone, Debug)]
pub struct NewOutcome {
    pub contact_id: String,
    pub kind: OutcomeKind,
    pub at: Millis,
    pub scores: BTreeMap<String, ScoreCard>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutcomeRecord {
    pub id: i64,
    pub contact_id: String,
    #[serde(flatten)]
    pub kind: OutcomeKind,
    pub at: Millis,
    pub scores: BTreeMap<String, ScoreCard>,
    pub recorded_at: Millis,
}

/// A trained predictive model version (F21): the engine's model and its evaluation, as
/// JSON texts the store keeps without reading them.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictiveVersion {
    pub version: i64,
    /// What it predicts: `won` or `qualified`.
    pub target: String,
    pub trained_at: Millis,
    /// The one version that scores contacts.
    pub live: bool,
    /// The model (empty when listed without models).
    pub model: String,
    /// The evaluation report (holdout AUC, log loss, calibration, features, warnings).
    pub report: String,
}

/// That a contact was erased, when and by whom — never what (F27).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErasureRecord {
    pub at: Millis,
    /// The API key's id or the user's id that asked.
    pub by: String,
}

/// Who changed the configuration, when: a model, an automation, a key, a user, a secret, a
/// team, a webhook (issue 15). `action` is what was done (`PUT`, `DELETE`, a form's name),
/// `target` what it was done to (a path); never a secret's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub target: String,
}
