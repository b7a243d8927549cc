//! The audit log (issue 15): who changed which model, automation, key, user, secret, team
//! or webhook, and when; readable by admins. Front ends record each change they carried
//! out; a failure to record is logged, never the caller's failure.

use std::sync::{Arc, Mutex};

use leadscore_store::AuditRecord;
use serde::Serialize;

use crate::Engine;
use crate::time::format_time;

/// Who is acting in a request, filled in by its credential check (a key's id, a user's
/// id) and read once the change is done. Travels with the request.
#[derive(Clone, Debug, Default)]
pub struct ActorSlot(Arc<Mutex<Option<String>>>);

impl ActorSlot {
    pub fn set(&self, actor: &str) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(actor.to_string());
        }
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|slot| slot.clone())
    }
}

/// Records that `actor` did `action` to `target`.
pub async fn record(engine: &Engine, actor: &str, action: &str, target: &str) {
    let entry = AuditRecord { at: engine.now(), actor: actor.to_string(), action: action.to_string(), target: target.to_string() };
    if let Err(err) = engine.store.record_audit(entry).await {
        tracing::error!(error = %leadscore_store::ErrorChain(&err), actor, action, target, "cannot write the audit log");
    }
}

/// An audit entry as front ends show it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
}

/// The newest `limit` entries.
pub async fn list(engine: &Engine, limit: usize) -> Result<Vec<AuditView>, leadscore_store::StoreError> {
    Ok(engine
        .store
        .list_audit(limit)
        .await?
        .into_iter()
        .map(|e| AuditView { at: format_time(e.at), actor: e.actor, action: e.action, target: e.target })
        .collect())
}
