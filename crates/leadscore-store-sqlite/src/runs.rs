//! RunStore: the automation queue, evaluation (`leadscore_store::runner::evaluate`, its
//! input loaded and its effects written in one transaction), the run log and CRM sync.

use std::collections::HashMap;

use async_trait::async_trait;
use leadscore_store::runner::{
    self, AutomationSet, AutomationState, Channel, Evaluated, EvaluationInput, NewDelivery, QueueEntry, RunQuery, RunRecord, RunStats, Subscription, Team,
};
use leadscore_store::{ContactRecord, Millis, ModelSet, RunStore, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::contacts::{rescore_contact, save_contact};
use crate::rows::{append_log, load_contact, load_scoring_events};
use crate::settings::{load_subscriptions, load_teams, save_team_cursor};
use crate::{SqliteStore, db_err};

fn load_queue(conn: &Connection, contact_id: &str) -> StoreResult<Vec<QueueEntry>> {
    let mut stmt = conn.prepare_cached("SELECT seq, event, before FROM automation_queue WHERE contact_id = ?1 ORDER BY seq").map_err(db_err)?;
    let rows: Vec<(i64, Option<String>, Option<String>)> =
        stmt.query_map([contact_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    rows.into_iter()
        .map(|(seq, event, before)| {
            let before = before.map(|b| QueueEntry::decode_before(&b)).transpose().map_err(db_err)?;
            Ok(QueueEntry {
                seq,
                event: event.map(|e| serde_json::from_str(&e)).transpose().map_err(db_err)?,
                before_predictive: before.as_ref().and_then(|(_, predictive)| *predictive),
                before: before.map(|(cards, _)| cards),
            })
        })
        .collect()
}

fn load_states(conn: &Connection, contact_id: &str) -> StoreResult<HashMap<String, AutomationState>> {
    let mut stmt = conn.prepare_cached("SELECT automation, state FROM automation_state WHERE contact_id = ?1").map_err(db_err)?;
    let rows: Vec<(String, String)> =
        stmt.query_map([contact_id], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    rows.into_iter().map(|(name, text)| Ok((name, serde_json::from_str(&text).map_err(db_err)?))).collect()
}

pub(crate) fn insert_delivery(conn: &Connection, delivery: &NewDelivery) -> StoreResult<()> {
    let (channel, target, secret_ref, subject, body) = match &delivery.channel {
        Channel::Webhook { url, secret_ref, body } => ("webhook", url.as_str(), secret_ref.as_deref(), None, body.as_str()),
        Channel::Email { to, subject, body } => ("email", to.as_str(), None, Some(subject.as_str()), body.as_str()),
    };
    conn.prepare_cached(
        "INSERT INTO deliveries (id, channel, target, secret_ref, subject, body, event_type, automation, run_id, contact_id,
           state, attempts, next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', 0, ?11, ?11, ?11)",
    )
    .map_err(db_err)?
    .execute(params![
        delivery.id,
        channel,
        target,
        secret_ref,
        subject,
        body,
        delivery.event_type,
        delivery.automation,
        delivery.run_id,
        delivery.contact_id,
        delivery.created_at
    ])
    .map_err(db_err)?;
    Ok(())
}

/// What every contact of one evaluation shares.
struct Evaluation<'a> {
    check_cold: bool,
    automations: &'a AutomationSet,
    models: &'a ModelSet,
    subscriptions: &'a [Subscription],
    now: Millis,
}

/// Evaluates one contact inside the current write transaction: loads what
/// [`runner::evaluate`] reads and writes what it decided.
fn evaluate_one(conn: &Connection, contact_id: &str, evaluation: &Evaluation<'_>, teams: &mut HashMap<String, Team>) -> StoreResult<Vec<RunRecord>> {
    let Evaluation { check_cold, automations, models, subscriptions, now } = *evaluation;
    let queued = load_queue(conn, contact_id)?;
    let Some(stored) = load_contact(conn, contact_id)? else {
        conn.prepare_cached("DELETE FROM automation_queue WHERE contact_id = ?1").map_err(db_err)?.execute([contact_id]).map_err(db_err)?;
        return Ok(Vec::new());
    };
    if queued.is_empty() && !check_cold {
        return Ok(Vec::new());
    }
    let live = crate::live::live_models_in(conn, models)?;
    let states = load_states(conn, contact_id)?;
    let mut events = None;
    let decided = loop {
        let input = EvaluationInput {
            contact: &stored,
            models: &live,
            automations,
            queued: &queued,
            states: &states,
            events: events.as_deref(),
            teams: Some(&mut *teams),
            subscriptions,
            check_cold,
            now,
        };
        match runner::evaluate(input) {
            Evaluated::Done(decided) => break decided,
            Evaluated::NeedsEvents => events = Some(load_scoring_events(conn, contact_id)?),
            // The teams are always given here; answering this would be a bug of the runner.
            Evaluated::NeedsTeams => return Err(StoreError::Backend("the automation runner asked for teams it was given".into())),
        }
    };
    let runner::Evaluation { mut contact, states: changed_states, effects, consumed_through } = *decided;
    for (automation, state) in &changed_states {
        conn.prepare_cached("INSERT OR REPLACE INTO automation_state (contact_id, automation, state) VALUES (?1, ?2, ?3)")
            .map_err(db_err)?
            .execute(params![contact_id, automation, serde_json::to_string(state).map_err(db_err)?])
            .map_err(db_err)?;
    }
    for run in &effects.runs {
        conn.prepare_cached("INSERT INTO automation_runs (id, automation, contact_id, at, reason, actions) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .map_err(db_err)?
            .execute(params![run.id, run.automation, run.contact_id, run.at, run.reason.to_string(), Value::Array(run.actions.clone()).to_string()])
            .map_err(db_err)?;
    }
    for delivery in &effects.deliveries {
        insert_delivery(conn, delivery)?;
    }
    for team in &effects.teams {
        save_team_cursor(conn, team)?;
    }
    for (kind, data) in &effects.log {
        append_log(conn, contact_id, now, kind, data)?;
    }
    if effects.contact_changed {
        save_contact(conn, &contact, &stored.groups)?;
        rescore_contact(conn, &mut contact, models, &mut [], now)?;
        runner::hide_shadow_scores(&mut contact, &live);
    }
    if let Some(last) = consumed_through {
        conn.prepare_cached("DELETE FROM automation_queue WHERE contact_id = ?1 AND seq <= ?2")
            .map_err(db_err)?
            .execute(params![contact_id, last])
            .map_err(db_err)?;
    }
    mark_for_sync(conn, &contact, subscriptions, now)?;
    Ok(effects.runs)
}

/// Marks the contact for `score.changed` subscribers whose fields differ from what they
/// were last sent; the first change starts the debounce, later ones ride along.
fn mark_for_sync(conn: &Connection, contact: &ContactRecord, subscriptions: &[Subscription], now: Millis) -> StoreResult<()> {
    for subscription in subscriptions.iter().filter(|s| s.events.iter().any(|e| e == "score.changed")) {
        let snapshot = Value::Object(runner::sync_snapshot(subscription, contact)).to_string();
        let sent: Option<String> = conn
            .prepare_cached("SELECT fields FROM sync_sent WHERE subscription = ?1 AND contact_id = ?2")
            .map_err(db_err)?
            .query_row(params![subscription.name, contact.id], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        if sent.as_deref() != Some(snapshot.as_str()) {
            conn.prepare_cached("INSERT OR IGNORE INTO sync_pending (subscription, contact_id, due_at) VALUES (?1, ?2, ?3)")
                .map_err(db_err)?
                .execute(params![subscription.name, contact.id, now + subscription.debounce_ms])
                .map_err(db_err)?;
        }
    }
    Ok(())
}

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, Millis, String, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

fn run_record((id, automation, contact_id, at, reason, actions): (String, String, String, Millis, String, String)) -> StoreResult<RunRecord> {
    let actions: Vec<Value> = serde_json::from_str(&actions).map_err(db_err)?;
    Ok(RunRecord { id, automation, contact_id, at, reason: serde_json::from_str(&reason).map_err(db_err)?, actions })
}

fn sync_step_in(conn: &Connection, batch: usize, now: Millis) -> StoreResult<u64> {
    let subscriptions = load_subscriptions(conn)?;
    let live = crate::live::live_models_in(conn, &Vec::new())?;
    let mut sent = 0u64;
    for subscription in subscriptions.iter().filter(|s| s.events.iter().any(|e| e == "score.changed")) {
        let ids: Vec<String> = conn
            .prepare_cached("SELECT contact_id FROM sync_pending WHERE subscription = ?1 AND due_at <= ?2 ORDER BY due_at, contact_id LIMIT ?3")
            .map_err(db_err)?
            .query_map(params![subscription.name, now, batch as i64], |r| r.get(0))
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let mut contacts = Vec::new();
        for id in &ids {
            conn.prepare_cached("DELETE FROM sync_pending WHERE subscription = ?1 AND contact_id = ?2")
                .map_err(db_err)?
                .execute(params![subscription.name, id])
                .map_err(db_err)?;
            let Some(mut contact) = load_contact(conn, id)? else {
                continue;
            };
            runner::hide_shadow_scores(&mut contact, &live);
            let snapshot = runner::sync_snapshot(subscription, &contact);
            let text = Value::Object(snapshot.clone()).to_string();
            let previous: Option<String> = conn
                .prepare_cached("SELECT fields FROM sync_sent WHERE subscription = ?1 AND contact_id = ?2")
                .map_err(db_err)?
                .query_row(params![subscription.name, id], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            if previous.as_deref() == Some(text.as_str()) {
                continue; // changed and changed back within the debounce
            }
            conn.prepare_cached("INSERT OR REPLACE INTO sync_sent (subscription, contact_id, fields) VALUES (?1, ?2, ?3)")
                .map_err(db_err)?
                .execute(params![subscription.name, id, text])
                .map_err(db_err)?;
            contacts.push(runner::sync_contact(&contact, snapshot));
        }
        if contacts.is_empty() {
            continue;
        }
        sent += contacts.len() as u64;
        insert_delivery(conn, &runner::sync_delivery(subscription, contacts, now))?;
    }
    Ok(sent)
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn queued_contacts(&self, limit: usize) -> StoreResult<Vec<String>> {
        self.read(move |conn| {
            // Walk the oldest entries until `limit` distinct contacts are found.
            let mut stmt = conn.prepare_cached("SELECT contact_id FROM automation_queue ORDER BY seq LIMIT ?1").map_err(db_err)?;
            let rows: Vec<String> = stmt.query_map([(limit * 8) as i64], |r| r.get(0)).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
            let mut ids: Vec<String> = Vec::new();
            for id in rows {
                if !ids.contains(&id) {
                    ids.push(id);
                    if ids.len() == limit {
                        break;
                    }
                }
            }
            Ok(ids)
        })
        .await
    }

    async fn queue_depth(&self) -> StoreResult<u64> {
        self.read(|conn| {
            conn.query_row("SELECT COUNT(DISTINCT contact_id) FROM automation_queue", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(db_err)
        })
        .await
    }

    async fn evaluate_contacts(
        &self,
        contact_ids: Vec<String>,
        check_cold: bool,
        automations: &AutomationSet,
        models: &ModelSet,
        now: Millis,
    ) -> StoreResult<Vec<RunRecord>> {
        let automations = automations.clone();
        let models = models.clone();
        self.write(move |conn| {
            let stored: Vec<(String, Millis, bool)> = conn
                .prepare_cached("SELECT name, updated_at, enabled FROM automations")
                .map_err(db_err)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            if !runner::is_current(&automations, &stored) {
                return Err(runner::stale_automations());
            }
            let mut teams: HashMap<String, Team> = load_teams(conn)?.into_iter().map(|t| (t.name.clone(), t)).collect();
            let subscriptions = load_subscriptions(conn)?;
            let evaluation = Evaluation { check_cold, automations: &automations, models: &models, subscriptions: &subscriptions, now };
            let mut runs = Vec::new();
            for id in &contact_ids {
                // One contact failing (a corrupt row) must not hold up the others.
                conn.execute_batch("SAVEPOINT contact").map_err(db_err)?;
                match evaluate_one(conn, id, &evaluation, &mut teams) {
                    Ok(mut done) => {
                        conn.execute_batch("RELEASE contact").map_err(db_err)?;
                        runs.append(&mut done);
                    }
                    Err(err) => {
                        conn.execute_batch("ROLLBACK TO contact; RELEASE contact").map_err(db_err)?;
                        tracing::error!(contact = %id, error = %leadscore_store::ErrorChain(&err), "automation evaluation failed; the contact stays queued");
                        teams = load_teams(conn)?.into_iter().map(|t| (t.name.clone(), t)).collect();
                    }
                }
            }
            Ok(runs)
        })
        .await
    }

    async fn contacts_created_before(&self, after: Option<String>, created_before: Millis, limit: usize) -> StoreResult<Vec<String>> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT id FROM contacts WHERE id > ?1 AND created_at <= ?2 ORDER BY id LIMIT ?3")
                .map_err(db_err)?
                .query_map(params![after.unwrap_or_default(), created_before, limit as i64], |r| r.get(0))
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)
        })
        .await
    }

    async fn list_runs(&self, query: &RunQuery) -> StoreResult<Vec<RunRecord>> {
        let query = query.clone();
        self.read(move |conn| {
            // Without a cursor, start after the largest possible key.
            let (before_at, before_id) = query.before.clone().unwrap_or((Millis::MAX, "\u{10FFFF}".to_string()));
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, automation, contact_id, at, reason, actions FROM automation_runs
                     WHERE (?1 IS NULL OR automation = ?1) AND (?2 IS NULL OR contact_id = ?2) AND (at, id) < (?3, ?4)
                     ORDER BY at DESC, id DESC LIMIT ?5",
                )
                .map_err(db_err)?;
            let rows: Vec<_> = stmt
                .query_map(params![query.automation, query.contact_id, before_at, before_id, query.limit as i64], run_from_row)
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            rows.into_iter().map(run_record).collect()
        })
        .await
    }

    async fn run_stats(&self, now: Millis) -> StoreResult<Vec<RunStats>> {
        self.read(move |conn| {
            let day = now - leadscore_core::duration::DAY_MS;
            let week = now - leadscore_core::duration::WEEK_MS;
            let mut stmt = conn
                .prepare_cached("SELECT automation, MAX(at), SUM(at > ?1), SUM(at > ?2), COUNT(*) FROM automation_runs GROUP BY automation ORDER BY automation")
                .map_err(db_err)?;
            stmt.query_map(params![day, week], |r| {
                Ok(RunStats {
                    automation: r.get(0)?,
                    last_fired_at: r.get(1)?,
                    runs_last_day: r.get::<_, i64>(2)? as u64,
                    runs_last_week: r.get::<_, i64>(3)? as u64,
                    runs_total: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)
        })
        .await
    }

    async fn sync_step(&self, batch: usize, now: Millis) -> StoreResult<u64> {
        self.write(move |conn| sync_step_in(conn, batch.max(1), now)).await
    }
}
