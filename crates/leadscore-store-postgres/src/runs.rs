//! RunStore: the automation queue, evaluation (`leadscore_store::runner::evaluate`, its
//! input loaded and its effects written in one transaction per contact under its row lock),
//! the run log and CRM sync.
//!
//! Several processes may evaluate at once. Every write that queues a contact holds the
//! contact's row lock, and an evaluation takes that lock before it reads the queue, so the
//! entries it reads are all that were committed for the contact, none arrive while it runs,
//! and a second evaluation of the same contact waits and then finds them consumed: a
//! `max = 1` automation cannot fire twice.

use std::collections::HashMap;

use async_trait::async_trait;
use leadscore_store::runner::{
    self, AutomationSet, AutomationState, Channel, Evaluated, EvaluationInput, NewDelivery, QueueEntry, RunQuery, RunRecord, RunStats, Subscription, Team,
};
use leadscore_store::{ContactRecord, Millis, ModelSet, RunStore, StoreError, StoreResult};
use serde_json::Value;
use tokio_postgres::Row;

use crate::contacts::{Rescore, SqlBuilder, lock_contact, rescore_contacts, save_contact};
use crate::rows::{CONTACT_COLUMNS, append_log, corrupt, load_contact, load_contacts_by_query, load_scoring_events};
use crate::settings::{load_subscriptions, lock_teams, save_team_cursor};
use crate::{Db, PgError, PgResult, PostgresStore, RetryOn, write_tx};

async fn load_queue(db: &dyn Db, contact_id: &str) -> PgResult<Vec<QueueEntry>> {
    let rows = db.rows("SELECT seq, event, before FROM automation_queue WHERE contact_id = $1 ORDER BY seq", &[&contact_id]).await?;
    rows.iter()
        .map(|row| {
            let event: Option<String> = row.try_get(1)?;
            let before: Option<String> = row.try_get(2)?;
            let before = before.map(|b| QueueEntry::decode_before(&b)).transpose().map_err(corrupt)?;
            Ok(QueueEntry {
                seq: row.try_get(0)?,
                event: event.map(|e| serde_json::from_str(&e)).transpose().map_err(corrupt)?,
                before_predictive: before.as_ref().and_then(|(_, predictive)| *predictive),
                before: before.map(|(cards, _)| cards),
            })
        })
        .collect()
}

async fn load_states(db: &dyn Db, contact_id: &str) -> PgResult<HashMap<String, AutomationState>> {
    let rows = db.rows("SELECT automation, state FROM automation_state WHERE contact_id = $1", &[&contact_id]).await?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get(1)?;
            Ok((row.try_get(0)?, serde_json::from_str(&state).map_err(corrupt)?))
        })
        .collect()
}

pub(crate) async fn insert_delivery(db: &dyn Db, delivery: &NewDelivery) -> PgResult<()> {
    let (channel, target, secret_ref, subject, body) = match &delivery.channel {
        Channel::Webhook { url, secret_ref, body } => ("webhook", url.as_str(), secret_ref.as_deref(), None, body.as_str()),
        Channel::Email { to, subject, body } => ("email", to.as_str(), None, Some(subject.as_str()), body.as_str()),
    };
    db.exec(
        "INSERT INTO deliveries (id, channel, target, secret_ref, subject, body, event_type, automation, run_id, contact_id,
           state, attempts, next_attempt_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 0, $11, $11, $11)",
        &[
            &delivery.id,
            &channel,
            &target,
            &secret_ref,
            &subject,
            &body,
            &delivery.event_type,
            &delivery.automation,
            &delivery.run_id,
            &delivery.contact_id,
            &delivery.created_at,
        ],
    )
    .await?;
    Ok(())
}

/// Evaluates one contact inside its own write transaction.
#[allow(clippy::too_many_arguments)]
async fn evaluate_one(
    store: &PostgresStore,
    db: &dyn Db,
    contact_id: &str,
    check_cold: bool,
    automations: &AutomationSet,
    given: &ModelSet,
    subscriptions: &[Subscription],
    now: Millis,
) -> PgResult<Vec<RunRecord>> {
    // The heads lock before the contact's, in the order every scoring write takes them.
    store.lock_model_heads_shared(db).await?;
    let live = store.live_models_in(db, given).await?;
    // The contact's lock before its queue: a concurrent write queueing it commits first
    // (its entries are read here), and a concurrent evaluation of it finishes first (its
    // entries are gone).
    if !lock_contact(db, contact_id).await? {
        db.exec("DELETE FROM automation_queue WHERE contact_id = $1", &[&contact_id]).await?;
        return Ok(Vec::new());
    }
    // Under the contact's lock: an automation change committed before this point is seen
    // here, and one committed after it comes after this evaluation.
    let stored_automations: Vec<(String, Millis, bool)> = db
        .rows("SELECT name, updated_at, enabled FROM automations", &[])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    if !leadscore_store::runner::is_current(automations, &stored_automations) {
        return Err(PgError::Store(leadscore_store::runner::stale_automations()));
    }
    let queued = load_queue(db, contact_id).await?;
    if queued.is_empty() && !check_cold {
        return Ok(Vec::new());
    }
    let stored = load_contact(db, contact_id, false).await?.ok_or_else(|| StoreError::NotFound(format!("contact {contact_id}")))?;
    let states = load_states(db, contact_id).await?;
    let mut events = None;
    // Only an evaluation that assigns locks the teams (after the contact, like every
    // evaluation), so the cursor it moves is the latest and evaluations that do not assign
    // never wait for one another.
    let mut teams: Option<HashMap<String, Team>> = None;
    let decided = loop {
        let input = EvaluationInput {
            contact: &stored,
            models: &live,
            automations,
            queued: &queued,
            states: &states,
            events: events.as_deref(),
            teams: teams.as_mut(),
            subscriptions,
            check_cold,
            now,
        };
        match runner::evaluate(input) {
            Evaluated::Done(decided) => break decided,
            Evaluated::NeedsEvents => {
                events = Some(load_scoring_events(db, &[contact_id.to_string()]).await?.remove(contact_id).unwrap_or_default());
            }
            Evaluated::NeedsTeams => teams = Some(lock_teams(db).await?.into_iter().map(|t| (t.name.clone(), t)).collect()),
        }
    };
    let runner::Evaluation { mut contact, states: changed_states, effects, consumed_through } = *decided;
    for (automation, state) in &changed_states {
        db.exec(
            "INSERT INTO automation_state (contact_id, automation, state) VALUES ($1, $2, $3)
             ON CONFLICT (contact_id, automation) DO UPDATE SET state = excluded.state",
            &[&contact_id, automation, &serde_json::to_string(state).map_err(corrupt)?],
        )
        .await?;
    }
    for run in &effects.runs {
        db.exec(
            "INSERT INTO automation_runs (id, automation, contact_id, at, reason, actions) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&run.id, &run.automation, &run.contact_id, &run.at, &run.reason.to_string(), &Value::Array(run.actions.clone()).to_string()],
        )
        .await?;
    }
    for delivery in &effects.deliveries {
        insert_delivery(db, delivery).await?;
    }
    for team in &effects.teams {
        save_team_cursor(db, team).await?;
    }
    for (kind, data) in &effects.log {
        append_log(db, contact_id, now, kind, data).await?;
    }
    if effects.contact_changed {
        save_contact(db, &contact, &stored.groups).await?;
        let mut items = [Rescore { contact, new_events: Vec::new() }];
        rescore_contacts(db, &live, &mut items, now).await?;
        let [Rescore { contact: rescored, .. }] = items;
        contact = rescored;
        runner::hide_shadow_scores(&mut contact, &live);
    }
    if let Some(last) = consumed_through {
        db.exec("DELETE FROM automation_queue WHERE contact_id = $1 AND seq <= $2", &[&contact_id, &last]).await?;
    }
    mark_for_sync(db, &contact, subscriptions, now).await?;
    Ok(effects.runs)
}

/// Marks the contact for `score.changed` subscribers whose fields differ from what they
/// were last sent; the first change starts the debounce, later ones ride along.
async fn mark_for_sync(db: &dyn Db, contact: &ContactRecord, subscriptions: &[Subscription], now: Millis) -> PgResult<()> {
    for subscription in subscriptions.iter().filter(|s| s.events.iter().any(|e| e == "score.changed")) {
        let snapshot = Value::Object(runner::sync_snapshot(subscription, contact)).to_string();
        let sent: Option<String> =
            match db.row_opt("SELECT fields FROM sync_sent WHERE subscription = $1 AND contact_id = $2", &[&subscription.name, &contact.id]).await? {
                Some(row) => Some(row.try_get(0)?),
                None => None,
            };
        if sent.as_deref() != Some(snapshot.as_str()) {
            db.exec(
                "INSERT INTO sync_pending (subscription, contact_id, due_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&subscription.name, &contact.id, &(now + subscription.debounce_ms)],
            )
            .await?;
        }
    }
    Ok(())
}

fn run_record(row: &Row) -> PgResult<RunRecord> {
    let reason: String = row.try_get(4)?;
    let actions: String = row.try_get(5)?;
    Ok(RunRecord {
        id: row.try_get(0)?,
        automation: row.try_get(1)?,
        contact_id: row.try_get(2)?,
        at: row.try_get(3)?,
        reason: serde_json::from_str(&reason).map_err(corrupt)?,
        actions: serde_json::from_str(&actions).map_err(corrupt)?,
    })
}

/// Sends the due contacts of one `score.changed` subscription in one delivery. The due
/// rows are taken with `SKIP LOCKED`, so processes syncing at once split them.
async fn sync_subscription(db: &dyn Db, subscription: &Subscription, live: &ModelSet, batch: i64, now: Millis) -> PgResult<u64> {
    let taken = db
        .rows(
            "DELETE FROM sync_pending WHERE subscription = $1 AND contact_id IN (
                 SELECT contact_id FROM sync_pending WHERE subscription = $1 AND due_at <= $2
                 ORDER BY due_at, contact_id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING due_at, contact_id",
            &[&subscription.name, &now, &batch],
        )
        .await?;
    let mut due: Vec<(Millis, String)> = taken.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect::<PgResult<_>>()?;
    if due.is_empty() {
        return Ok(0);
    }
    // RETURNING has no order: send them in the order they became due, as SQLite does.
    due.sort();
    let ids: Vec<String> = due.into_iter().map(|(_, id)| id).collect();
    let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ANY($1)");
    let mut found: HashMap<String, ContactRecord> = load_contacts_by_query(db, &sql, &[&ids]).await?.into_iter().map(|c| (c.id.clone(), c)).collect();
    let sent: HashMap<String, String> = db
        .rows("SELECT contact_id, fields FROM sync_sent WHERE subscription = $1 AND contact_id = ANY($2)", &[&subscription.name, &ids])
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<PgResult<_>>()?;
    let mut contacts = Vec::new();
    let (mut sent_ids, mut sent_fields) = (Vec::new(), Vec::new());
    for id in ids {
        let Some(mut contact) = found.remove(&id) else { continue };
        runner::hide_shadow_scores(&mut contact, live);
        let snapshot = runner::sync_snapshot(subscription, &contact);
        let text = Value::Object(snapshot.clone()).to_string();
        if sent.get(&id) == Some(&text) {
            continue; // changed and changed back within the debounce
        }
        contacts.push(runner::sync_contact(&contact, snapshot));
        sent_ids.push(id);
        sent_fields.push(text);
    }
    if contacts.is_empty() {
        return Ok(0);
    }
    db.exec(
        "INSERT INTO sync_sent (subscription, contact_id, fields) SELECT $1, u.contact_id, u.fields
         FROM unnest($2::text[], $3::text[]) AS u(contact_id, fields)
         ON CONFLICT (subscription, contact_id) DO UPDATE SET fields = excluded.fields",
        &[&subscription.name, &sent_ids, &sent_fields],
    )
    .await?;
    let count = contacts.len() as u64;
    insert_delivery(db, &runner::sync_delivery(subscription, contacts, now)).await?;
    Ok(count)
}

#[async_trait]
impl RunStore for PostgresStore {
    async fn queued_contacts(&self, limit: usize) -> StoreResult<Vec<String>> {
        // Walk the oldest entries until `limit` distinct contacts are found.
        let window = i64::try_from(limit.saturating_mul(8)).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client.rows("SELECT contact_id FROM automation_queue ORDER BY seq LIMIT $1", &[&window]).await?;
        let mut ids: Vec<String> = Vec::new();
        for row in &rows {
            let id: String = row.try_get(0).map_err(PgError::from)?;
            if !ids.contains(&id) {
                ids.push(id);
                if ids.len() == limit {
                    break;
                }
            }
        }
        Ok(ids)
    }

    async fn queue_depth(&self) -> StoreResult<u64> {
        crate::contacts::count(self, "SELECT COUNT(DISTINCT contact_id) FROM automation_queue").await
    }

    async fn evaluate_contacts(
        &self,
        contact_ids: Vec<String>,
        check_cold: bool,
        automations: &AutomationSet,
        models: &ModelSet,
        now: Millis,
    ) -> StoreResult<Vec<RunRecord>> {
        let subscriptions = {
            let client = self.client().await?;
            load_subscriptions(&*client).await?
        };
        let mut runs = Vec::new();
        for id in &contact_ids {
            let outcome = write_tx!(self, RetryOn::Contention, |tx| evaluate_one(self, &tx, id, check_cold, automations, models, &subscriptions, now).await);
            match outcome {
                Ok(mut done) => runs.append(&mut done),
                Err(StoreError::Closed) => return Err(StoreError::Closed),
                Err(StoreError::Stale(reason)) => return Err(StoreError::Stale(reason)),
                // One contact failing (a corrupt row) must not hold up the others.
                Err(err) => {
                    tracing::error!(contact = %id, error = %leadscore_store::ErrorChain(&err), "automation evaluation failed; the contact stays queued")
                }
            }
        }
        Ok(runs)
    }

    async fn contacts_created_before(&self, after: Option<String>, created_before: Millis, limit: usize) -> StoreResult<Vec<String>> {
        let after = after.unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client.rows("SELECT id FROM contacts WHERE id > $1 AND created_at <= $2 ORDER BY id LIMIT $3", &[&after, &created_before, &limit]).await?;
        Ok(rows.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>().map_err(PgError::from)?)
    }

    async fn list_runs(&self, query: &RunQuery) -> StoreResult<Vec<RunRecord>> {
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        // Only the filters asked for are in the SQL, so each combination gets a plan that
        // uses its index.
        let mut sql = SqlBuilder::start("SELECT id, automation, contact_id, at, reason, actions FROM automation_runs WHERE TRUE".into());
        if let Some(automation) = &query.automation {
            sql.push(" AND automation = ?", automation);
        }
        if let Some(contact_id) = &query.contact_id {
            sql.push(" AND contact_id = ?", contact_id);
        }
        if let Some((at, id)) = &query.before {
            sql.push(" AND (at, id) < (?", at);
            sql.push(", ?)", id);
        }
        sql.push(" ORDER BY at DESC, id DESC LIMIT ?", &limit);
        let client = self.client().await?;
        let rows = client.rows(&sql.sql, &sql.values).await?;
        Ok(rows.iter().map(run_record).collect::<PgResult<Vec<_>>>()?)
    }

    async fn run_stats(&self, now: Millis) -> StoreResult<Vec<RunStats>> {
        let day = now - leadscore_core::duration::DAY_MS;
        let week = now - leadscore_core::duration::WEEK_MS;
        let client = self.client().await?;
        let rows = client
            .rows(
                "SELECT automation, MAX(at), COUNT(*) FILTER (WHERE at > $1), COUNT(*) FILTER (WHERE at > $2), COUNT(*)
                 FROM automation_runs GROUP BY automation ORDER BY automation",
                &[&day, &week],
            )
            .await?;
        let stats = rows
            .iter()
            .map(|row| {
                let count = |index: usize| -> PgResult<u64> { Ok(u64::try_from(row.try_get::<_, i64>(index)?).unwrap_or(0)) };
                Ok(RunStats {
                    automation: row.try_get(0)?,
                    last_fired_at: row.try_get(1)?,
                    runs_last_day: count(2)?,
                    runs_last_week: count(3)?,
                    runs_total: count(4)?,
                })
            })
            .collect::<PgResult<Vec<_>>>()?;
        Ok(stats)
    }

    async fn sync_step(&self, batch: usize, now: Millis) -> StoreResult<u64> {
        let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let (subscriptions, live) = {
            let client = self.client().await?;
            (load_subscriptions(&*client).await?, self.live_models_in(&*client, &Vec::new()).await?)
        };
        let mut sent = 0u64;
        for subscription in subscriptions.iter().filter(|s| s.events.iter().any(|e| e == "score.changed")) {
            sent += write_tx!(self, RetryOn::Contention, |tx| sync_subscription(&tx, subscription, &live, batch, now).await)?;
        }
        Ok(sent)
    }
}
