//! Record rules every backend applies the same way: how an upsert changes a contact, how a
//! merged contact is absorbed, and what a rescore writes for a contact. Pure: the backends
//! do the reading and writing around them.

use serde_json::{Map, Value};

use crate::scoring::{ScoringEvent, full_score};
use crate::types::{ContactPatch, ContactRecord, ContactUpsert, Millis, PublishedModel, ScoreRow};
use crate::merge_attributes;
use leadscore_core::ScoreCard;

/// Applies an upsert's attributes, groups, owner and creation time to an existing contact
/// (the email is the backend's: it must check uniqueness). Returns whether anything
/// changed, so a repeated upsert (an import run twice) writes and logs nothing.
pub fn apply_upsert(contact: &mut ContactRecord, upsert: &ContactUpsert) -> bool {
    let before = (contact.attributes.clone(), contact.groups.clone(), contact.owner.clone(), contact.created_at);
    merge_attributes(&mut contact.attributes, &upsert.attributes);
    for group in &upsert.groups {
        if !contact.groups.contains(group) {
            contact.groups.push(group.clone());
        }
    }
    if upsert.owner.is_some() {
        contact.owner = upsert.owner.clone();
    }
    if let Some(created_at) = upsert.created_at {
        contact.created_at = created_at;
    }
    before != (contact.attributes.clone(), contact.groups.clone(), contact.owner.clone(), contact.created_at)
}

/// A new contact from an upsert (its email is set by the backend, which checks uniqueness):
/// null attributes are left out, repeated groups dropped, created now unless the upsert
/// says when.
pub fn new_contact(id: String, upsert: &ContactUpsert, now: Millis) -> ContactRecord {
    let mut attributes = upsert.attributes.clone();
    attributes.retain(|_, v| !v.is_null());
    let mut groups = Vec::with_capacity(upsert.groups.len());
    for group in &upsert.groups {
        if !groups.contains(group) {
            groups.push(group.clone());
        }
    }
    ContactRecord {
        id,
        email: None,
        attributes,
        groups,
        owner: upsert.owner.clone(),
        status: None,
        created_at: upsert.created_at.unwrap_or(now),
        updated_at: now,
        last_event_at: None,
        scores: Default::default(),
    }
}

/// Applies a patch's attributes (merge-patch; the email is the backend's, already taken out),
/// groups, owner and status to a contact.
pub fn apply_patch(contact: &mut ContactRecord, patch: &ContactPatch, attributes_without_email: &Map<String, Value>, now: Millis) {
    merge_attributes(&mut contact.attributes, attributes_without_email);
    for group in &patch.add_groups {
        if !contact.groups.contains(group) {
            contact.groups.push(group.clone());
        }
    }
    contact.groups.retain(|g| !patch.remove_groups.contains(g));
    if let Some(owner) = &patch.owner {
        contact.owner = owner.clone();
    }
    if let Some(status) = &patch.status {
        contact.status = Some(status.clone());
    }
    contact.updated_at = now;
}

/// The contact-log entry of a patch: what it asked for and the attributes it left, so the
/// history can show the fit it caused.
pub fn patch_log(contact: &ContactRecord, patch: &ContactPatch) -> Value {
    serde_json::json!({
        "set": patch.attributes,
        "add_groups": patch.add_groups,
        "remove_groups": patch.remove_groups,
        "owner": patch.owner,
        "attributes": contact.attributes,
    })
}

/// Absorbs `source` into `target` (a merge): the target's attributes win, the source adds
/// those the target lacks; groups are united; the earlier creation time is kept. The
/// email is the backend's to move (uniqueness).
pub fn absorb_contact(target: &mut ContactRecord, source: &ContactRecord, now: Millis) {
    for (key, value) in &source.attributes {
        target.attributes.entry(key.clone()).or_insert_with(|| value.clone());
    }
    for group in &source.groups {
        if !target.groups.contains(group) {
            target.groups.push(group.clone());
        }
    }
    target.created_at = target.created_at.min(source.created_at);
    target.updated_at = now;
}

/// What a rescore writes for one contact, decided against the row its snapshot saw.
#[derive(Debug)]
pub enum RowAction {
    /// The scores are the same: only version, state and as-of change (the lead list's
    /// indexes are left alone).
    State(ScoreRow),
    /// The scores changed.
    Full(ScoreRow),
    /// The snapshot had no row for this contact.
    Insert(ScoreRow),
    /// The model no longer applies to the contact.
    Delete,
}

/// Decides the rescore write for one contact: nothing when its row is already at the
/// model's version (a newer write brought it there), a delete when the model no longer
/// applies, else the freshly scored row. `attributes` and `events` (in scoring order) are
/// decoded only when they are needed.
pub fn rescore_action<E>(
    model: &PublishedModel,
    stored: Option<&(u32, ScoreCard)>,
    attributes: impl FnOnce() -> Result<Map<String, Value>, E>,
    events: impl FnOnce() -> Result<Vec<ScoringEvent>, E>,
    now: Millis,
) -> Result<Option<RowAction>, E> {
    if stored.is_some_and(|(version, _)| *version == model.version) {
        return Ok(None);
    }
    let attributes = attributes()?;
    if !model.model.applies_to(&attributes) {
        return Ok(stored.map(|_| RowAction::Delete));
    }
    let row = full_score(model, &attributes, &events()?, now);
    Ok(Some(match stored {
        None => RowAction::Insert(row),
        Some((_, card)) if *card == row.card => RowAction::State(row),
        Some(_) => RowAction::Full(row),
    }))
}
