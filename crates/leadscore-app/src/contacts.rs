//! Contacts: their cards under every live model, now or as of a past instant.

use std::sync::Arc;

use leadscore_core::ScoreCard;
use leadscore_store::scoring::{ScoringEvent, card_at, card_from_events};
use leadscore_store::{ContactRecord, Millis, ModelSet, PublishedModel, StoredEvent};

use crate::Engine;
use crate::error::{AppError, AppResult};

const MAX_ID_LEN: usize = 256;

pub fn check_id(id: &str, what: &str) -> AppResult<()> {
    if id.trim().is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(AppError::invalid(format!("{what} must be 1-{MAX_ID_LEN} printable characters")));
    }
    Ok(())
}

pub fn scoring_events(events: &[StoredEvent]) -> Vec<ScoringEvent> {
    events
        .iter()
        .map(|e| ScoringEvent { timestamp: e.timestamp, message_id: e.message_id.clone(), name: e.name.clone(), properties: e.properties.clone() })
        .collect()
}

/// A contact's cards under every live model that scores it, as of `at` (now if None).
/// Stored states answer directly; a past `at` or a rescore still under way replays events.
pub async fn current_cards(engine: &Engine, contact: &ContactRecord, at: Option<Millis>) -> AppResult<Vec<(Arc<PublishedModel>, ScoreCard)>> {
    let mut models = engine.models();
    // A row scored under a model or version this process has not loaded yet was written
    // after a publish through another process: load the live set now rather than showing
    // the contact without it until the next periodic reload.
    let newer = |models: &ModelSet| contact.scores.iter().any(|(name, row)| models.iter().find(|m| &m.name == name).is_none_or(|m| m.version < row.version));
    if newer(&models) {
        engine.reload_models().await?;
        models = engine.models();
    }
    let mut cards = Vec::new();
    let mut events: Option<Vec<ScoringEvent>> = None;
    for published in models.iter() {
        if !published.model.applies_to(&contact.attributes) {
            continue;
        }
        let row = contact.scores.get(&published.name).filter(|r| r.version == published.version);
        let when = at.unwrap_or_else(|| row.map_or(engine.now(), |r| leadscore_store::scoring::effective_now(&r.state, engine.now())));
        let card = match row.and_then(|r| card_at(published, r, &contact.attributes, when)) {
            Some(card) => card,
            None => {
                if events.is_none() {
                    events = Some(scoring_events(&engine.store.contact_events(&contact.id).await?));
                }
                let all = events.as_deref().unwrap_or_default();
                let when = at.unwrap_or_else(|| all.iter().map(|e| e.timestamp).max().map_or(engine.now(), |t| t.max(engine.now())));
                card_from_events(published, &contact.attributes, all, when)
            }
        };
        cards.push((published.clone(), card));
    }
    Ok(cards)
}
