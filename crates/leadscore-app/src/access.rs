//! Which contacts a person may see and change (F26, contract §8): admins and marketing
//! every contact; a sales rep the contacts they own, plus the unassigned pool when an
//! admin allows it (on the settings page; `LEADSCORE_SALES_POOL` until then). A contact
//! out of reach is answered as if it did not exist (404), so a rep cannot learn which ids
//! are taken. The pages and the JSON API (for a session) both ask this one rule.

use std::collections::{HashMap, HashSet};

use leadscore_store::{ContactRecord, Role, StoreError, UserRecord};

use crate::Engine;
use crate::error::{AppError, AppResult};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Reach {
    /// Every contact: API keys (their scopes decide the rest), admins, marketing.
    #[default]
    Everyone,
    /// A sales rep: contacts owned by `owner` (their e-mail), and with `pool` those
    /// without an owner.
    Own { owner: String, pool: bool },
}

impl Reach {
    /// The reach of a signed-in user under this server's settings.
    pub fn of(engine: &Engine, user: &UserRecord) -> Reach {
        match user.role {
            Role::Sales => Reach::Own { owner: user.email.clone(), pool: engine.sales_pool() },
            Role::Admin | Role::Marketing => Reach::Everyone,
        }
    }

    /// Whether a contact with this owner is within reach.
    pub fn reaches(&self, owner: Option<&str>) -> bool {
        match self {
            Reach::Everyone => true,
            Reach::Own { owner: me, pool } => match owner {
                Some(owner) => owner.eq_ignore_ascii_case(me),
                None => *pool,
            },
        }
    }

    /// The contact, or not found when it is out of reach.
    pub fn check(&self, contact: ContactRecord) -> AppResult<ContactRecord> {
        if self.reaches(contact.owner.as_deref()) { Ok(contact) } else { Err(AppError::not_found(format!("no contact {:?}", contact.id))) }
    }

    /// Whether every contact is within reach.
    pub fn is_everyone(&self) -> bool {
        *self == Reach::Everyone
    }
}

/// Contacts whose owners are read at once when a list narrows its rows to a reach.
pub(crate) const OWNER_BATCH: usize = 500;

/// Narrows rows read for many contacts (a report's, the run log's) to the contacts a
/// reader reaches. Every contact is in reach for everyone, with no read; for a sales rep
/// the owners of the contacts met are read in batches and remembered, and a contact that
/// no longer exists is out of reach.
pub(crate) struct InReach<'a> {
    engine: &'a Engine,
    reach: &'a Reach,
    known: HashMap<String, bool>,
}

impl<'a> InReach<'a> {
    pub(crate) fn new(engine: &'a Engine, reach: &'a Reach) -> Self {
        Self { engine, reach, known: HashMap::new() }
    }

    pub(crate) fn everyone(&self) -> bool {
        self.reach.is_everyone()
    }

    /// Keeps the items whose contact (by `contact_of`) is within reach.
    pub(crate) async fn retain<T>(&mut self, items: &mut Vec<T>, contact_of: impl Fn(&T) -> &str) -> Result<(), StoreError> {
        if self.everyone() {
            return Ok(());
        }
        let unknown: Vec<String> =
            items.iter().map(&contact_of).filter(|id| !self.known.contains_key(*id)).collect::<HashSet<&str>>().into_iter().map(str::to_string).collect();
        for ids in unknown.chunks(OWNER_BATCH) {
            for contact in self.engine.store.get_contacts(ids).await? {
                self.known.insert(contact.id.clone(), self.reach.reaches(contact.owner.as_deref()));
            }
            for id in ids {
                self.known.entry(id.clone()).or_insert(false);
            }
        }
        items.retain(|item| self.known.get(contact_of(item)).copied().unwrap_or(false));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rep_reaches_their_own_and_the_pool_only_when_allowed() {
        let strict = Reach::Own { owner: "ann@acme.io".into(), pool: false };
        assert!(strict.reaches(Some("Ann@Acme.io")), "e-mail addresses ignore case");
        assert!(!strict.reaches(Some("bob@acme.io")));
        assert!(!strict.reaches(None));
        let pooled = Reach::Own { owner: "ann@acme.io".into(), pool: true };
        assert!(pooled.reaches(None) && !pooled.reaches(Some("bob@acme.io")));
        assert!(Reach::Everyone.reaches(Some("bob@acme.io")) && Reach::Everyone.reaches(None));
    }
}
