//! Row decoding and the SQL helpers shared by the trait implementations.

use std::collections::{BTreeMap, HashMap};

use leadscore_core::ScoreCard;
use leadscore_store::scoring::ScoringEvent;
use leadscore_store::{ContactRecord, EventKind, Millis, PredictiveScoreRow, ScoreRow, StoredEvent};
use serde_json::{Map, Value};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::{Db, PgError, PgResult};

/// The contact columns, read from table alias `c`. The time of the newest event is not
/// stored on the contact (ingest would rewrite the contact row for every batch): it is the
/// last entry of the contact's events in primary-key order, one index probe away.
pub(crate) const CONTACT_COLUMNS: &str = "c.id, c.email, c.attributes, c.groups, c.owner, c.status, c.created_at, c.updated_at, \
     (SELECT MAX(e.ts) FROM events e WHERE e.contact_id = c.id), \
     (SELECT p.version FROM predictive_scores p WHERE p.contact_id = c.id), \
     (SELECT p.score FROM predictive_scores p WHERE p.contact_id = c.id), \
     (SELECT p.probability FROM predictive_scores p WHERE p.contact_id = c.id), \
     (SELECT p.as_of FROM predictive_scores p WHERE p.contact_id = c.id)";

/// A stored JSON column that does not decode.
pub(crate) fn corrupt(err: serde_json::Error) -> PgError {
    PgError::Corrupt { what: "a JSON column does not decode".into(), source: Some(err) }
}

/// A stored JSON value that does not decode, saying which.
pub(crate) fn corrupt_in(what: String, err: serde_json::Error) -> PgError {
    PgError::Corrupt { what, source: Some(err) }
}

/// Corrupt data with no decoder error beneath it.
pub(crate) fn corrupt_msg(what: impl Into<String>) -> PgError {
    PgError::Corrupt { what: what.into(), source: None }
}

pub(crate) fn json_map(text: &str) -> PgResult<Map<String, Value>> {
    serde_json::from_str(text).map_err(corrupt)
}

/// Decodes only the listed top-level keys of a JSON object (the others are skipped
/// unparsed): the rescore needs just the properties the model's rules read.
pub(crate) fn json_map_keys(text: &str, keys: &[String]) -> PgResult<Map<String, Value>> {
    if keys.is_empty() {
        return Ok(Map::new());
    }
    let raw: BTreeMap<String, &serde_json::value::RawValue> = serde_json::from_str(text).map_err(corrupt)?;
    let mut map = Map::new();
    for key in keys {
        if let Some(value) = raw.get(key) {
            map.insert(key.clone(), serde_json::from_str(value.get()).map_err(corrupt)?);
        }
    }
    Ok(map)
}

/// Model versions are u32 in Rust and BIGINT in the database.
pub(crate) fn version_from_db(version: i64) -> PgResult<u32> {
    u32::try_from(version).map_err(|_| corrupt_msg(format!("model version {version} out of range")))
}

pub(crate) fn contact_from_row(row: &Row) -> PgResult<ContactRecord> {
    let attributes: String = row.try_get(2)?;
    let groups: String = row.try_get(3)?;
    Ok(ContactRecord {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        attributes: json_map(&attributes)?,
        groups: serde_json::from_str(&groups).map_err(corrupt)?,
        owner: row.try_get(4)?,
        status: row.try_get(5)?,
        created_at: row.try_get(6)?,
        updated_at: row.try_get(7)?,
        last_event_at: row.try_get(8)?,
        scores: BTreeMap::new(),
        predictive: predictive_from_row(row)?,
    })
}

/// The stored predictive score in the contact columns after the first nine.
fn predictive_from_row(row: &Row) -> PgResult<Option<PredictiveScoreRow>> {
    let Some(version) = row.try_get::<_, Option<i64>>(9)? else { return Ok(None) };
    let score: i64 = row.try_get(10)?;
    let score = u8::try_from(score).ok().filter(|s| *s <= 100).ok_or_else(|| corrupt_msg(format!("predictive score {score} out of range")))?;
    Ok(Some(PredictiveScoreRow { version, score, probability: row.try_get(11)?, as_of: row.try_get(12)? }))
}

/// Loads a contact with its scores; `lock` takes its row lock (for writes that score it).
pub(crate) async fn load_contact(db: &dyn Db, id: &str, lock: bool) -> PgResult<Option<ContactRecord>> {
    let sql = if lock {
        format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = $1 FOR UPDATE OF c")
    } else {
        format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = $1")
    };
    let Some(row) = db.row_opt(&sql, &[&id]).await? else { return Ok(None) };
    let mut contact = contact_from_row(&row)?;
    contact.scores = load_scores(db, &[contact.id.clone()]).await?.remove(&contact.id).unwrap_or_default();
    Ok(Some(contact))
}

/// Loads contacts by a query over `contacts c` selecting [`CONTACT_COLUMNS`], with scores.
pub(crate) async fn load_contacts_by_query(db: &dyn Db, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Vec<ContactRecord>> {
    let rows = db.rows(sql, params).await?;
    let mut contacts = rows.iter().map(contact_from_row).collect::<PgResult<Vec<_>>>()?;
    attach_scores(db, &mut contacts).await?;
    Ok(contacts)
}

pub(crate) async fn attach_scores(db: &dyn Db, contacts: &mut [ContactRecord]) -> PgResult<()> {
    if contacts.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = contacts.iter().map(|c| c.id.clone()).collect();
    let mut scores = load_scores(db, &ids).await?;
    for contact in contacts {
        contact.scores = scores.remove(&contact.id).unwrap_or_default();
    }
    Ok(())
}

/// The score card in columns `first..first + 7` (fit, activity, total, band, flames,
/// grade, quadrant).
pub(crate) fn card_from_row(row: &Row, first: usize) -> PgResult<ScoreCard> {
    let flames: i16 = row.try_get(first + 4)?;
    Ok(ScoreCard {
        fit: row.try_get(first)?,
        activity: row.try_get(first + 1)?,
        total: row.try_get(first + 2)?,
        band: row.try_get(first + 3)?,
        flames: u8::try_from(flames).map_err(|_| corrupt_msg(format!("flames {flames} out of range")))?,
        grade: row.try_get(first + 5)?,
        quadrant: row.try_get(first + 6)?,
    })
}

/// Score rows of the given contacts: contact id → model → row.
pub(crate) async fn load_scores(db: &dyn Db, contact_ids: &[String]) -> PgResult<HashMap<String, BTreeMap<String, ScoreRow>>> {
    let rows = db
        .rows(
            "SELECT contact_id, model, version, fit, activity, total, band, flames, grade, quadrant, state, as_of
             FROM scores WHERE contact_id = ANY($1)",
            &[&contact_ids],
        )
        .await?;
    let mut scores: HashMap<String, BTreeMap<String, ScoreRow>> = HashMap::new();
    for row in &rows {
        let contact_id: String = row.try_get(0)?;
        let model: String = row.try_get(1)?;
        let card = card_from_row(row, 3)?;
        let state: String = row.try_get(10)?;
        // A state that does not parse (e.g. written by an older leadscore) is not trusted:
        // version 0 is never live, so the row is replayed from the events when next used.
        let (version, state) = match serde_json::from_str(&state) {
            Ok(state) => (version_from_db(row.try_get(2)?)?, state),
            Err(err) => {
                tracing::warn!(%model, contact = %contact_id, error = %err, "unreadable score state; the contact will be replayed");
                (0, Default::default())
            }
        };
        scores.entry(contact_id).or_default().insert(model, ScoreRow { version, card, state, as_of: row.try_get(11)? });
    }
    Ok(scores)
}

/// Column arrays of score rows, for the multi-row statements below.
#[derive(Default)]
pub(crate) struct ScoreColumns {
    pub models: Vec<String>,
    pub contact_ids: Vec<String>,
    pub versions: Vec<i64>,
    pub fits: Vec<f64>,
    pub activities: Vec<f64>,
    pub totals: Vec<f64>,
    pub bands: Vec<Option<String>>,
    pub flames: Vec<i16>,
    pub grades: Vec<Option<String>>,
    pub quadrants: Vec<Option<String>>,
    pub states: Vec<String>,
    pub as_ofs: Vec<Millis>,
}

impl ScoreColumns {
    pub(crate) fn push(&mut self, model: &str, contact_id: &str, row: &ScoreRow) -> PgResult<()> {
        let card = &row.card;
        self.models.push(model.to_string());
        self.contact_ids.push(contact_id.to_string());
        self.versions.push(i64::from(row.version));
        self.fits.push(card.fit);
        self.activities.push(card.activity);
        self.totals.push(card.total);
        self.bands.push(card.band.clone());
        self.flames.push(i16::from(card.flames));
        self.grades.push(card.grade.clone());
        self.quadrants.push(card.quadrant.clone());
        self.states.push(serde_json::to_string(&row.state).map_err(corrupt)?);
        self.as_ofs.push(row.as_of);
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 12] {
        [
            &self.models,
            &self.contact_ids,
            &self.versions,
            &self.fits,
            &self.activities,
            &self.totals,
            &self.bands,
            &self.flames,
            &self.grades,
            &self.quadrants,
            &self.states,
            &self.as_ofs,
        ]
    }
}

/// `unnest` of the twelve score columns, in table order, as relation `u`.
const UNNEST_SCORES: &str = "unnest($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::float8[], $6::float8[], \
     $7::text[], $8::int2[], $9::text[], $10::text[], $11::text[], $12::bigint[]) \
     AS u(model, contact_id, version, fit, activity, total, band, flames, grade, quadrant, state, as_of)";

/// Inserts or replaces score rows (one statement). Each (model, contact) at most once.
pub(crate) async fn save_scores(db: &dyn Db, rows: &ScoreColumns) -> PgResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO scores (model, contact_id, version, fit, activity, total, band, flames, grade, quadrant, state, as_of)
         SELECT * FROM {UNNEST_SCORES}
         ON CONFLICT (model, contact_id) DO UPDATE SET version = excluded.version, fit = excluded.fit,
           activity = excluded.activity, total = excluded.total, band = excluded.band, flames = excluded.flames,
           grade = excluded.grade, quadrant = excluded.quadrant, state = excluded.state, as_of = excluded.as_of"
    );
    db.exec(&sql, &rows.params()).await?;
    Ok(())
}

/// Updates existing score rows whose version is `version_condition` (`=` or `<>` the new
/// row's version), leaving others alone. Returns how many rows changed.
pub(crate) async fn update_scores_where_version(db: &dyn Db, rows: &ScoreColumns, version_condition: &str) -> PgResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "UPDATE scores s SET version = u.version, fit = u.fit, activity = u.activity, total = u.total, band = u.band,
           flames = u.flames, grade = u.grade, quadrant = u.quadrant, state = u.state, as_of = u.as_of
         FROM {UNNEST_SCORES}
         WHERE s.model = u.model AND s.contact_id = u.contact_id AND s.version {version_condition} u.version"
    );
    db.exec(&sql, &rows.params()).await
}

/// Deletes the score rows of the given (model, contact) pairs.
pub(crate) async fn delete_scores(db: &dyn Db, models: &[String], contact_ids: &[String]) -> PgResult<()> {
    if models.is_empty() {
        return Ok(());
    }
    db.exec(
        "DELETE FROM scores s USING unnest($1::text[], $2::text[]) AS u(model, contact_id)
         WHERE s.model = u.model AND s.contact_id = u.contact_id",
        &[&models, &contact_ids],
    )
    .await?;
    Ok(())
}

/// The activity events of the given contacts, each contact's in scoring order.
pub(crate) async fn load_scoring_events(db: &dyn Db, contact_ids: &[String]) -> PgResult<HashMap<String, Vec<ScoringEvent>>> {
    let rows = db
        .rows(
            "SELECT contact_id, ts, message_id, name, properties FROM events
             WHERE contact_id = ANY($1) ORDER BY contact_id, ts, message_id",
            &[&contact_ids],
        )
        .await?;
    let mut events: HashMap<String, Vec<ScoringEvent>> = HashMap::new();
    for row in &rows {
        let properties: String = row.try_get(4)?;
        events.entry(row.try_get(0)?).or_default().push(ScoringEvent {
            timestamp: row.try_get(1)?,
            message_id: row.try_get(2)?,
            name: row.try_get(3)?,
            properties: json_map(&properties)?,
        });
    }
    Ok(events)
}

pub(crate) async fn load_stored_events(db: &dyn Db, contact_id: &str) -> PgResult<Vec<StoredEvent>> {
    let rows = db
        .rows(
            "SELECT message_id, kind, name, ts, properties, context, received_at FROM events
             WHERE contact_id = $1 ORDER BY ts, message_id",
            &[&contact_id],
        )
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let kind: String = row.try_get(1)?;
        let properties: String = row.try_get(4)?;
        let context: Option<String> = row.try_get(5)?;
        events.push(StoredEvent {
            message_id: row.try_get(0)?,
            contact_id: contact_id.to_string(),
            kind: EventKind::parse(&kind).unwrap_or(EventKind::Track),
            name: row.try_get(2)?,
            timestamp: row.try_get(3)?,
            properties: json_map(&properties)?,
            context: context.map(|c| serde_json::from_str(&c)).transpose().map_err(corrupt)?,
            received_at: row.try_get(6)?,
        });
    }
    Ok(events)
}

pub(crate) async fn append_log(db: &dyn Db, contact_id: &str, at: Millis, kind: &str, data: &Value) -> PgResult<()> {
    db.exec("INSERT INTO contact_log (contact_id, at, kind, data) VALUES ($1, $2, $3, $4)", &[&contact_id, &at, &kind, &data.to_string()]).await?;
    Ok(())
}
