//! Record rules every backend applies the same way: how an upsert changes a contact, how a
//! merged contact is absorbed, and what a rescore writes for a contact. Pure: the backends
//! do the reading and writing around them.

use serde_json::{Map, Value};

use crate::merge_attributes;
use crate::scoring::{ScoringEvent, full_score};
use crate::types::{ContactPatch, ContactRecord, ContactUpsert, Millis, PublishedModel, ScoreRow};
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
        predictive: None,
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

/// A model head as the shadow rules see it: None when the name was never published or
/// is deleted; else what it shadows (None: a live model).
pub type Head = Option<Option<String>>;

/// Whether `name` may be published as a shadow of `shadow_of` (or, with None, as a live
/// model), given its head and the head of the model it would shadow. Nothing goes live by
/// accident: a shadow stays a shadow until it is promoted, a live model never turns into a
/// shadow (its automations would stop), and a shadow shadows a live model.
pub fn check_publish(name: &str, shadow_of: Option<&str>, head: &Head, target: &Head) -> Result<(), crate::StoreError> {
    use crate::StoreError::{Conflict, NotFound};
    match (shadow_of, head) {
        (None, Some(Some(live))) => {
            Err(Conflict(format!("{name} is a shadow of {live}: publish it again as a shadow of {live}, promote it, or delete it first")))
        }
        (None, _) => Ok(()),
        (Some(target_name), _) if target_name == name => Err(Conflict(format!("{name} cannot shadow itself"))),
        (Some(_), Some(None)) => Err(Conflict(format!("{name} is a live model: a shadow needs a name of its own"))),
        (Some(target_name), Some(Some(current))) if current != target_name => {
            Err(Conflict(format!("{name} is a shadow of {current}; delete it before it shadows {target_name}")))
        }
        (Some(target_name), _) => match target {
            None => Err(NotFound(format!("model {target_name} (the live model to shadow)"))),
            Some(Some(other)) => Err(Conflict(format!("{target_name} is itself a shadow (of {other}); shadow the live model"))),
            Some(None) => Ok(()),
        },
    }
}

/// Whether a model may be deleted, given the shadows of it that are not deleted.
pub fn check_delete(name: &str, shadows: &[String]) -> Result<(), crate::StoreError> {
    if shadows.is_empty() {
        return Ok(());
    }
    Err(crate::StoreError::Conflict(format!("{name} has shadow models ({}): promote or delete them first", shadows.join(", "))))
}

/// Whether shadow model `shadow`, whose head is `head` (version, what it shadows; None when
/// not live), may be promoted as `live` after the caller read it at `shadow_version`.
pub fn check_promote(shadow: &str, shadow_version: u32, head: Option<(u32, Option<String>)>, live: &crate::NewModelVersion) -> Result<(), crate::StoreError> {
    use crate::StoreError::{Conflict, NotFound};
    let Some((version, shadow_of)) = head else { return Err(NotFound(format!("model {shadow}"))) };
    let Some(shadow_of) = shadow_of else { return Err(Conflict(format!("{shadow} is a live model, not a shadow: there is nothing to promote"))) };
    if version != shadow_version {
        return Err(Conflict(format!("{shadow} was published again meanwhile (now v{version}); promote it again")));
    }
    if shadow_of != live.name {
        return Err(Conflict(format!("{shadow} shadows {shadow_of}, not {}", live.name)));
    }
    Ok(())
}

/// Identity rules every backend applies: how an e-mail is compared (trimmed, lower-cased:
/// `Ann@Acme.com ` and `ann@acme.com` are one person) and the contact id an anonymous
/// visitor gets (`anon:<anonymousId>`, until identify merges it into a person).
/// The tables whose rows belong to one contact (a `contact_id` column), and what a merge
/// does with the merged-away contact's rows. Both backends' merge and erasure are driven by
/// this one list, so a table added here is merged and erased everywhere; a test compares it
/// with [`crate::transfer::TABLES`] so a table with a `contact_id` cannot be left out.
pub mod owned {
    /// What a merge does with the rows of the contact merged away.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum OnMerge {
        /// They become the surviving contact's (its history: events, log, runs, outcomes).
        Move,
        /// They are dropped: derived from the contact and rebuilt for the survivor (scores,
        /// trigger states, sync markers, group memberships, which the merge unites itself).
        Drop,
    }

    /// In the order the statements run. `message_ids` is not listed: its rows are found
    /// through `events` and the identify log entries, which the backends' dialects write
    /// differently, and are handled before these; `delivery_attempts` hang off
    /// `deliveries` and go with them on erasure.
    pub const CONTACT_TABLES: &[(&str, OnMerge)] = &[
        ("events", OnMerge::Move),
        ("contact_log", OnMerge::Move),
        ("automation_queue", OnMerge::Move),
        ("automation_runs", OnMerge::Move),
        ("deliveries", OnMerge::Move),
        ("outcomes", OnMerge::Move),
        ("automation_state", OnMerge::Drop),
        ("sync_pending", OnMerge::Drop),
        ("sync_sent", OnMerge::Drop),
        ("scores", OnMerge::Drop),
        ("predictive_scores", OnMerge::Drop),
        ("contact_groups", OnMerge::Drop),
    ];

    /// Tables with a `contact_id` that the list above leaves to the backends on purpose.
    pub const HANDLED_APART: &[&str] = &["message_ids"];

    /// The statements that merge contact `$1` into `$2`, with `param(n)` writing the
    /// backend's placeholder (`?1`, `$1`): moves first, then drops.
    pub fn merge_statements(param: impl Fn(usize) -> String) -> Vec<String> {
        let (from, into) = (param(1), param(2));
        let moves = CONTACT_TABLES
            .iter()
            .filter(|(_, on)| *on == OnMerge::Move)
            .map(|(table, _)| format!("UPDATE {table} SET contact_id = {into} WHERE contact_id = {from}"));
        let drops = CONTACT_TABLES.iter().filter(|(_, on)| *on == OnMerge::Drop).map(|(table, _)| format!("DELETE FROM {table} WHERE contact_id = {from}"));
        moves.chain(drops).collect()
    }

    /// The statements that erase every row of contact `$1` (its delivery attempts first).
    pub fn erase_statements(param: impl Fn(usize) -> String) -> Vec<String> {
        let id = param(1);
        std::iter::once(format!("DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE contact_id = {id})"))
            .chain(CONTACT_TABLES.iter().map(|(table, _)| format!("DELETE FROM {table} WHERE contact_id = {id}")))
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_table_with_a_contact_id_is_merged_and_erased() {
            for table in crate::transfer::TABLES {
                if table.columns.iter().any(|(column, _)| *column == "contact_id") {
                    assert!(
                        CONTACT_TABLES.iter().any(|(name, _)| *name == table.name) || HANDLED_APART.contains(&table.name),
                        "table {} has a contact_id but is not in records::owned::CONTACT_TABLES: merges and erasure would leave its rows behind",
                        table.name
                    );
                }
            }
            for (name, _) in CONTACT_TABLES {
                assert!(crate::transfer::TABLES.iter().any(|t| t.name == *name), "{name} is not a table");
            }
        }

        #[test]
        fn statements_name_the_placeholders() {
            let merge = merge_statements(|n| format!("?{n}"));
            assert_eq!(merge[0], "UPDATE events SET contact_id = ?2 WHERE contact_id = ?1");
            assert!(merge.last().is_some_and(|s| s == "DELETE FROM contact_groups WHERE contact_id = ?1"));
            let erase = erase_statements(|n| format!("${n}"));
            assert!(erase[0].starts_with("DELETE FROM delivery_attempts") && erase.iter().any(|s| s == "DELETE FROM outcomes WHERE contact_id = $1"));
        }
    }
}

/// Who a contact is, and who may change that.
///
/// A key that is safe to put in a web page (`ingest` only) speaks for a visitor, not for
/// the company: it may attach an anonymous visitor's history to a person (an event or an
/// alias naming the visitor and the person), and give a contact its first e-mail address,
/// but it never merges two known people and never replaces a known person's address
/// (either would let anyone who reads the page's source take over a customer's record).
/// Those need a server-side key: `identify` or `admin` ([`IdentityTrust::Trusted`]).
pub mod identity {
    use crate::IdentityTrust;

    pub fn normalize_email(email: &str) -> String {
        email.trim().to_lowercase()
    }

    const ANONYMOUS_PREFIX: &str = "anon:";

    pub fn anonymous_contact_id(anonymous_id: &str) -> String {
        format!("{ANONYMOUS_PREFIX}{anonymous_id}")
    }

    /// An anonymous visitor's contact: created from an anonymousId and never given an
    /// address. Anything else is a known person.
    pub fn is_anonymous_visitor(contact_id: &str, email: Option<&str>) -> bool {
        contact_id.starts_with(ANONYMOUS_PREFIX) && email.is_none_or(str::is_empty)
    }

    /// Whether `from` may be merged into another contact by a sender of this trust.
    pub fn may_merge(from_id: &str, from_email: Option<&str>, trust: IdentityTrust) -> bool {
        trust == IdentityTrust::Trusted || is_anonymous_visitor(from_id, from_email)
    }

    /// What an identify call's e-mail does to a contact whose address is `current`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum EmailChange {
        /// Set it (the store still refuses an address another contact holds).
        Set,
        /// Nothing to do: the same address, or none given.
        Same,
        /// Kept as it is: the sender may not replace it, or another contact holds the
        /// new one. Said to nobody, so an ingest key cannot learn who is a customer.
        Kept,
    }

    /// The rule for an identify call's e-mail. `held_by_another`: another contact already
    /// has the new address.
    pub fn email_change(current: Option<&str>, new: &str, held_by_another: bool, trust: IdentityTrust) -> EmailChange {
        let new = normalize_email(new);
        if new.is_empty() || current == Some(new.as_str()) {
            return EmailChange::Same;
        }
        match trust {
            IdentityTrust::Trusted => EmailChange::Set,
            IdentityTrust::Visitor if current.is_none() && !held_by_another => EmailChange::Set,
            IdentityTrust::Visitor => EmailChange::Kept,
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn one_person_one_address() {
            assert_eq!(super::normalize_email(" Ann@Acme.COM "), "ann@acme.com");
            assert_eq!(super::anonymous_contact_id("v-1"), "anon:v-1");
        }

        #[test]
        fn a_visitor_key_never_changes_who_a_known_person_is() {
            use super::{EmailChange, email_change, may_merge};
            use crate::IdentityTrust::{Trusted, Visitor};
            // A first address, yes; replacing one, or taking another contact's, no.
            assert_eq!(email_change(None, "Ann@acme.com", false, Visitor), EmailChange::Set);
            assert_eq!(email_change(Some("ann@acme.com"), " ANN@acme.com", false, Visitor), EmailChange::Same);
            assert_eq!(email_change(Some("ann@acme.com"), "eve@evil.com", false, Visitor), EmailChange::Kept);
            assert_eq!(email_change(None, "vip@bigco.com", true, Visitor), EmailChange::Kept);
            assert_eq!(email_change(Some("ann@acme.com"), "ann@new.com", false, Trusted), EmailChange::Set);
            // Merging: an anonymous visitor into anyone; a known person only when trusted.
            assert!(may_merge("anon:v-1", None, Visitor));
            assert!(!may_merge("vip-customer", Some("vip@bigco.com"), Visitor));
            assert!(!may_merge("vip-customer", None, Visitor));
            assert!(!may_merge("anon:v-2", Some("x@y.com"), Visitor));
            assert!(may_merge("vip-customer", Some("vip@bigco.com"), Trusted));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod shadow_rule_tests {
    use super::*;
    use crate::StoreError;

    fn live() -> Head {
        Some(None)
    }
    fn shadow_of(name: &str) -> Head {
        Some(Some(name.to_string()))
    }

    #[test]
    fn a_shadow_shadows_a_live_model_under_a_name_of_its_own() {
        assert!(check_publish("next", Some("b2b"), &None, &live()).is_ok());
        assert!(check_publish("next", Some("b2b"), &shadow_of("b2b"), &live()).is_ok());
        assert!(matches!(check_publish("next", Some("b2b"), &None, &None), Err(StoreError::NotFound(_))));
        assert!(matches!(check_publish("b2b", Some("b2b"), &live(), &live()), Err(StoreError::Conflict(_))));
        assert!(matches!(check_publish("b2b", Some("other"), &live(), &live()), Err(StoreError::Conflict(_))));
        assert!(matches!(check_publish("next2", Some("next"), &None, &shadow_of("b2b")), Err(StoreError::Conflict(_))));
        assert!(matches!(check_publish("next", Some("other"), &shadow_of("b2b"), &live()), Err(StoreError::Conflict(_))));
    }

    #[test]
    fn nothing_goes_live_by_accident() {
        assert!(check_publish("b2b", None, &None, &None).is_ok());
        assert!(check_publish("b2b", None, &live(), &None).is_ok());
        let err = check_publish("next", None, &shadow_of("b2b"), &None).unwrap_err();
        assert!(err.to_string().contains("promote"), "{err}");
    }

    #[test]
    fn only_the_shadow_as_read_is_promoted_into_its_live_model() {
        let live = crate::NewModelVersion { name: "b2b".into(), source: String::new(), format: "toml".into(), shadow_of: None };
        assert!(check_promote("next", 2, Some((2, Some("b2b".into()))), &live).is_ok());
        assert!(matches!(check_promote("next", 2, None, &live), Err(StoreError::NotFound(_))));
        assert!(matches!(check_promote("next", 2, Some((3, Some("b2b".into()))), &live), Err(StoreError::Conflict(_))));
        assert!(matches!(check_promote("next", 2, Some((2, None)), &live), Err(StoreError::Conflict(_))));
        assert!(matches!(check_promote("next", 2, Some((2, Some("other".into()))), &live), Err(StoreError::Conflict(_))));
    }

    #[test]
    fn a_model_with_shadows_is_not_deleted() {
        assert!(check_delete("b2b", &[]).is_ok());
        assert!(matches!(check_delete("b2b", &["next".into()]), Err(StoreError::Conflict(_))));
    }
}
