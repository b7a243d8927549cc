//! Row decoding and the small SQL helpers shared by the trait implementations.

use std::collections::BTreeMap;

use leadscore_store::scoring::ScoringEvent;
use leadscore_store::{ContactRecord, EventKind, Millis, PredictiveScoreRow, ScoreRow, StoreError, StoreResult, StoredEvent};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use crate::db_err;

/// The contact columns, read from table alias `c`. The time of the newest event is not
/// stored on the contact (ingest would rewrite the contact row for every batch): it is the
/// last row of the contact's events in their clustered order, one index seek away.
pub(crate) const CONTACT_COLUMNS: &str = "c.id, c.email, c.attributes, c.groups, c.owner, c.status, c.created_at, c.updated_at, \
     (SELECT MAX(e.ts) FROM events e WHERE e.contact_id = c.id), \
     (SELECT p.version FROM predictive_scores p WHERE p.contact_id = c.id), \
     (SELECT p.score FROM predictive_scores p WHERE p.contact_id = c.id), \
     (SELECT p.probability FROM predictive_scores p WHERE p.contact_id = c.id), \
     (SELECT p.as_of FROM predictive_scores p WHERE p.contact_id = c.id)";

pub(crate) fn json_map(text: &str) -> StoreResult<Map<String, Value>> {
    serde_json::from_str(text).map_err(|e| StoreError::database("corrupt JSON in the database", e))
}

/// Decodes only the listed top-level keys of a JSON object (values of other keys are
/// skipped unparsed): the rescore path needs just the properties the model's rules read.
pub(crate) fn json_map_keys(text: &str, keys: &[String]) -> StoreResult<Map<String, Value>> {
    if keys.is_empty() {
        return Ok(Map::new());
    }
    let raw: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(text).map_err(|e| StoreError::database("corrupt JSON in the database", e))?;
    let mut map = Map::new();
    for key in keys {
        if let Some(value) = raw.get(key) {
            map.insert(key.clone(), serde_json::from_str(value.get()).map_err(db_err)?);
        }
    }
    Ok(map)
}

pub(crate) fn contact_from_row(row: &Row<'_>) -> rusqlite::Result<(ContactRecord, String, String)> {
    let attributes: String = row.get(2)?;
    let groups: String = row.get(3)?;
    Ok((
        ContactRecord {
            id: row.get(0)?,
            email: row.get(1)?,
            attributes: Map::new(),
            groups: Vec::new(),
            owner: row.get(4)?,
            status: row.get(5)?,
            created_at: row.get(6)?,
            updated_at: row.get(7)?,
            last_event_at: row.get(8)?,
            scores: BTreeMap::new(),
            predictive: predictive_from_row(row)?,
        },
        attributes,
        groups,
    ))
}

/// The stored predictive score in the contact columns after the first nine.
fn predictive_from_row(row: &Row<'_>) -> rusqlite::Result<Option<PredictiveScoreRow>> {
    let Some(version) = row.get::<_, Option<i64>>(9)? else { return Ok(None) };
    Ok(Some(PredictiveScoreRow { version, score: row.get(10)?, probability: row.get(11)?, as_of: row.get(12)? }))
}

fn finish_contact((mut contact, attributes, groups): (ContactRecord, String, String)) -> StoreResult<ContactRecord> {
    contact.attributes = json_map(&attributes)?;
    contact.groups = serde_json::from_str(&groups).map_err(db_err)?;
    Ok(contact)
}

/// Loads a contact without scores.
pub(crate) fn load_contact_bare(conn: &Connection, id: &str) -> StoreResult<Option<ContactRecord>> {
    let row = conn
        .prepare_cached(&format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ?1"))
        .map_err(db_err)?
        .query_row([id], contact_from_row)
        .optional()
        .map_err(db_err)?;
    row.map(finish_contact).transpose()
}

/// Loads a contact with its score rows.
pub(crate) fn load_contact(conn: &Connection, id: &str) -> StoreResult<Option<ContactRecord>> {
    let Some(mut contact) = load_contact_bare(conn, id)? else { return Ok(None) };
    contact.scores = load_scores(conn, id)?;
    Ok(Some(contact))
}

pub(crate) fn load_contacts_by_query(conn: &Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> StoreResult<Vec<ContactRecord>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt.query_map(params, contact_from_row).map_err(db_err)?;
    let mut contacts = Vec::new();
    for row in rows {
        let mut contact = finish_contact(row.map_err(db_err)?)?;
        contact.scores = load_scores(conn, &contact.id)?;
        contacts.push(contact);
    }
    Ok(contacts)
}

/// The score card in columns `first..first + 7` (fit, activity, total, band, flames,
/// grade, quadrant).
pub(crate) fn card_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<leadscore_core::ScoreCard> {
    Ok(leadscore_core::ScoreCard {
        fit: row.get(first)?,
        activity: row.get(first + 1)?,
        total: row.get(first + 2)?,
        band: row.get(first + 3)?,
        flames: row.get(first + 4)?,
        grade: row.get(first + 5)?,
        quadrant: row.get(first + 6)?,
    })
}

pub(crate) fn load_scores(conn: &Connection, contact_id: &str) -> StoreResult<BTreeMap<String, ScoreRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT model, version, fit, activity, total, band, flames, grade, quadrant, state, as_of
             FROM scores WHERE contact_id = ?1",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([contact_id], |row| {
            let state: String = row.get(9)?;
            Ok((row.get::<_, String>(0)?, row.get::<_, u32>(1)?, card_from_row(row, 2)?, state, row.get::<_, Millis>(10)?))
        })
        .map_err(db_err)?;
    let mut scores = BTreeMap::new();
    for row in rows {
        let (model, version, card, state, as_of) = row.map_err(db_err)?;
        // A state that does not parse (e.g. written by an older leadscore) is not trusted:
        // version 0 is never live, so the row is replayed from the events when next used.
        let (version, state) = match serde_json::from_str(&state) {
            Ok(state) => (version, state),
            Err(err) => {
                tracing::warn!(%model, contact = contact_id, error = %err, "unreadable score state; the contact will be replayed");
                (0, Default::default())
            }
        };
        scores.insert(model, ScoreRow { version, card, state, as_of });
    }
    Ok(scores)
}

pub(crate) fn save_score(conn: &Connection, model: &str, contact_id: &str, row: &ScoreRow) -> StoreResult<()> {
    let state = serde_json::to_string(&row.state).map_err(db_err)?;
    let c = &row.card;
    conn.prepare_cached(
        "INSERT INTO scores (model, contact_id, version, fit, activity, total, band, flames, grade, quadrant, state, as_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (model, contact_id) DO UPDATE SET version = excluded.version, fit = excluded.fit,
           activity = excluded.activity, total = excluded.total, band = excluded.band, flames = excluded.flames,
           grade = excluded.grade, quadrant = excluded.quadrant, state = excluded.state, as_of = excluded.as_of",
    )
    .map_err(db_err)?
    .execute(params![model, contact_id, row.version, c.fit, c.activity, c.total, c.band, c.flames, c.grade, c.quadrant, state, row.as_of])
    .map_err(db_err)?;
    Ok(())
}

pub(crate) fn delete_score(conn: &Connection, model: &str, contact_id: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM scores WHERE model = ?1 AND contact_id = ?2").map_err(db_err)?.execute(params![model, contact_id]).map_err(db_err)?;
    Ok(())
}

/// The contact's activity events in scoring order.
pub(crate) fn load_scoring_events(conn: &Connection, contact_id: &str) -> StoreResult<Vec<ScoringEvent>> {
    let mut stmt = conn.prepare_cached("SELECT ts, message_id, name, properties FROM events WHERE contact_id = ?1 ORDER BY ts, message_id").map_err(db_err)?;
    let rows = stmt
        .query_map([contact_id], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?)))
        .map_err(db_err)?;
    let mut events = Vec::new();
    for row in rows {
        let (timestamp, message_id, name, properties) = row.map_err(db_err)?;
        events.push(ScoringEvent { timestamp, message_id, name, properties: json_map(&properties)? });
    }
    Ok(events)
}

pub(crate) fn load_stored_events(conn: &Connection, contact_id: &str) -> StoreResult<Vec<StoredEvent>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT message_id, kind, name, ts, properties, context, received_at FROM events
             WHERE contact_id = ?1 ORDER BY ts, message_id",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([contact_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, i64>(6)?,
            ))
        })
        .map_err(db_err)?;
    let mut events = Vec::new();
    for row in rows {
        let (message_id, kind, name, timestamp, properties, context, received_at) = row.map_err(db_err)?;
        events.push(StoredEvent {
            message_id,
            contact_id: contact_id.to_string(),
            kind: EventKind::parse(&kind).unwrap_or(EventKind::Track),
            name,
            timestamp,
            properties: json_map(&properties)?,
            context: context.map(|c| serde_json::from_str(&c)).transpose().map_err(db_err)?,
            received_at,
        });
    }
    Ok(events)
}

pub(crate) fn append_log(conn: &Connection, contact_id: &str, at: Millis, kind: &str, data: &Value) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO contact_log (contact_id, at, kind, data) VALUES (?1, ?2, ?3, ?4)")
        .map_err(db_err)?
        .execute(params![contact_id, at, kind, data.to_string()])
        .map_err(db_err)?;
    Ok(())
}
