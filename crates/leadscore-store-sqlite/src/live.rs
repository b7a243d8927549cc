//! Which model versions are live in the database, as the writer sees them inside its
//! transaction. Every write scores with these (ARCHITECTURE: "writes score with the
//! versions live in the database"), so the contact, event and evaluation modules read it
//! from here rather than from `models`.

use leadscore_store::{ModelSet, PublishedModel, StoreError, StoreResult};
use rusqlite::{Connection, params};

use crate::db_err;

thread_local! {
    /// The live models as read from the database by this (writer) thread, with the
    /// (name, version) list they were built from.
    static LIVE_MODELS: std::cell::RefCell<Option<LiveModels>> = const { std::cell::RefCell::new(None) };
}

/// The (name, version) list of the live models, and the set built from it.
type LiveModels = (Vec<(String, u32)>, std::sync::Arc<ModelSet>);

/// The models that are live in the database right now. Writes score with these, not with
/// whatever set the caller loaded earlier: a write racing a publish (or another process's
/// publish) then never stores a score under a superseded version. `given` is used as is
/// when it matches, which is the common case.
pub(crate) fn live_models_in(conn: &Connection, given: &ModelSet) -> StoreResult<std::sync::Arc<ModelSet>> {
    let mut stmt = conn.prepare_cached("SELECT name, version FROM model_heads WHERE deleted = 0 ORDER BY name").map_err(db_err)?;
    let heads: Vec<(String, u32)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    let mut given_heads: Vec<(String, u32)> = given.iter().map(|m| (m.name.clone(), m.version)).collect();
    given_heads.sort();
    if given_heads == heads {
        return Ok(std::sync::Arc::new(given.clone()));
    }
    if let Some(cached) = LIVE_MODELS.with(|c| c.borrow().as_ref().filter(|(h, _)| *h == heads).map(|(_, set)| set.clone())) {
        return Ok(cached);
    }
    let mut set: ModelSet = Vec::with_capacity(heads.len());
    for (name, version) in &heads {
        let (source, shadow_of): (String, Option<String>) = conn
            .query_row(
                "SELECT m.source, h.shadow_of FROM models m JOIN model_heads h ON h.name = m.name WHERE m.name = ?1 AND m.version = ?2",
                params![name, version],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db_err)?;
        let model = leadscore_core::Model::parse(&source).map_err(|e| StoreError::database(format!("stored model {name} v{version} does not parse"), e))?;
        set.push(std::sync::Arc::new(PublishedModel { name: name.clone(), version: *version, model, shadow_of }));
    }
    let set = std::sync::Arc::new(set);
    LIVE_MODELS.with(|c| *c.borrow_mut() = Some((heads, set.clone())));
    Ok(set)
}
