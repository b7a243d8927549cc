//! The OpenAPI 3.1 description of the routes this server has (written by hand and checked
//! against the router by a test, so it lists exactly what exists).

use serde_json::{Value, json};

/// (method, path, scope, summary) of every API route.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("get", "/healthz", "none", "Health check"),
    ("get", "/metrics", "read", "Prometheus metrics"),
    ("get", "/openapi.json", "read", "This document"),
    ("post", "/api/v1/contacts", "admin", "Create or update a contact (by id or email)"),
    ("get", "/api/v1/contacts", "read", "List contacts; with model= the lead list, best first, filtered and paginated"),
    ("get", "/api/v1/contacts/{id}", "read", "Read a contact with its scores (?at= for a past instant)"),
    ("patch", "/api/v1/contacts/{id}", "admin", "Update attributes (merge patch), groups, owner; fit is rescored"),
    ("delete", "/api/v1/contacts/{id}", "admin", "Erase a contact with its events and history"),
    ("get", "/api/v1/contacts/{id}/history", "read", "Score changes with rule, event, points and resulting scores"),
    ("get", "/api/v1/contacts/{id}/export", "read", "All data held on the contact"),
    ("post", "/api/v1/contacts/{id}/merge", "admin", "Merge another contact ({from}) into this one"),
    ("get", "/api/v1/erasures", "admin", "The erasure log, newest first (?limit=): when and by which key or user, never what"),
    (
        "get",
        "/api/v1/audit",
        "admin",
        "The audit log, newest first (?limit=): who (key or user) changed which model, automation, key, user, secret, team or webhook, and when",
    ),
    (
        "post",
        "/api/v1/contacts/{id}/status",
        "admin",
        "Record a status {status, at?} (new, contacted, qualified, disqualified, won, lost) with the scores as of `at`",
    ),
    ("post", "/api/v1/contacts/{id}/feedback", "admin", "Record a sales rating {rating 1-5, note?, author?, at?} with the scores as of `at`"),
    ("get", "/api/v1/contacts/{id}/outcomes", "read", "The contact's statuses and ratings by time, each with its scores then"),
    ("get", "/api/v1/accounts", "read", "Accounts best first by account score (?model=&band=&limit=&cursor=): score, band, contacts"),
    ("get", "/api/v1/accounts/{id}", "read", "An account: its score and band as of now under ?model=, and its contacts best first"),
    (
        "get",
        "/api/v1/reports/brackets",
        "read",
        "Conversion by score bracket (bands and deciles, or ?edges=), Wilson intervals, points-backwards check; ?model=&from=&to=&format=csv",
    ),
    (
        "get",
        "/api/v1/reports/distribution",
        "read",
        "Histogram of current totals (?bins=), contacts per band, too many/too few in the top band; ?model=&format=csv",
    ),
    (
        "get",
        "/api/v1/reports/sources",
        "read",
        "Per value of a source attribute (?attribute=, default source): contacts, average score, conversion; ?model=&from=&to=&format=csv",
    ),
    (
        "get",
        "/api/v1/reports/feedback",
        "read",
        "Average sales rating by band when rated; sales cycle (created → won) median and p90 in days; ?model=&from=&to=&format=csv",
    ),
    (
        "post",
        "/api/v1/backtest",
        "read",
        "{model: candidate (TOML text or JSON), live?, from?, to?} → brackets and accuracy for candidate and live model side by side, replayed as of each judged instant, and band changes today; background: true answers 202 with a job to poll",
    ),
    ("get", "/api/v1/backtest/{id}", "read", "A background backtest: state, progress (done/total/percent), then the report (result) or the error"),
    (
        "get",
        "/api/v1/reports/speed",
        "read",
        "Leads that became hot in the range: hot → qualified rate (warning below 50 %), time to first sales touch (median, p90, SLA breaches per owner; ?sla=24h); ?model=&from=&to=&format=csv",
    ),
    (
        "get",
        "/api/v1/reports/accuracy",
        "read",
        "ROC AUC of the score at close, won deals in the top band, average score won vs lost; ?model=&from=&to=&format=csv",
    ),
    (
        "post",
        "/api/v1/predictive/train",
        "admin",
        "Train a predictive model on closed contacts {target?: won|qualified, holdout?, seed?, min_closed?, k_folds?, allow_leaky?, exclude?, live?} → the version with holdout AUC, log loss, calibration, features; 422 below the guard rails",
    ),
    ("get", "/api/v1/predictive/models", "read", "Predictive model versions, newest first, with their evaluation; the live one marked"),
    ("post", "/api/v1/predictive/models/{version}/promote", "admin", "Make a predictive model version the live one"),
    ("post", "/api/v1/bulk", "admin", "Change attributes, groups or owner of every contact matching a filter"),
    ("post", "/api/v1/events", "ingest", "Ingest one event or {batch: [...]} (Segment shape)"),
    ("get", "/api/v1/models", "read", "Live and shadow models (shadow_of) with rescore progress"),
    ("post", "/api/v1/models/validate", "read", "Validate a model (TOML or JSON) without publishing"),
    ("get", "/api/v1/models/{name}", "read", "A live model, its definition and rescore progress"),
    (
        "put",
        "/api/v1/models/{name}",
        "admin",
        "Publish a new version (TOML or JSON) and rescore in the background; ?shadow_of=LIVE publishes a shadow model: scores live traffic, fires no automations, never sent out",
    ),
    ("delete", "/api/v1/models/{name}", "admin", "Delete a model and its scores (versions are kept); 409 while it has shadow models"),
    ("get", "/api/v1/models/{name}/versions", "read", "Every version of a model"),
    ("post", "/api/v1/models/{name}/rescore", "admin", "Rescore every contact under the live version"),
    (
        "post",
        "/api/v1/models/{name}/promote",
        "admin",
        "Promote a shadow model: its rules become a new version of the model it shadows (rescored), the shadow is deleted",
    ),
    (
        "get",
        "/api/v1/reports/compare",
        "read",
        "A shadow model beside the live model it shadows (?model=SHADOW&against=&from=&to=): brackets and accuracy on outcomes recorded while both scored, distributions, band changes today",
    ),
    ("get", "/api/v1/automations", "read", "Overview of automations: trigger, filter, limits, actions, enabled, last fired, runs in the last day/week"),
    (
        "get",
        "/api/v1/automations/runs",
        "read",
        "The run log, newest first: automation, contact, time, why, each action's outcome (?automation=&contact=&limit=&cursor=)",
    ),
    ("get", "/api/v1/automations/{name}", "read", "An automation's definition, enabled flag and times"),
    ("put", "/api/v1/automations/{name}", "admin", "Create or replace an automation (TOML or JSON), validated whole"),
    ("delete", "/api/v1/automations/{name}", "admin", "Delete an automation"),
    ("get", "/api/v1/deliveries", "read", "The outbox: deliveries by state (pending, delivered, failed = dead-lettered), newest first"),
    ("get", "/api/v1/deliveries/{id}", "read", "A delivery with its payload and every attempt"),
    ("post", "/api/v1/deliveries/{id}/retry", "admin", "Send a delivery again now (same webhook-id)"),
    ("get", "/api/v1/teams", "read", "Sales teams for round-robin assignment"),
    ("get", "/api/v1/teams/{name}", "read", "A team: members, leads assigned, who is next"),
    ("put", "/api/v1/teams/{name}", "admin", "Create or replace a team: {members: [...]}"),
    ("delete", "/api/v1/teams/{name}", "admin", "Delete a team"),
    ("get", "/api/v1/secrets", "admin", "Names of the stored secrets (never their values)"),
    ("put", "/api/v1/secrets/{name}", "admin", "Store a webhook signing secret {value?}; without a value one is generated and shown once"),
    ("delete", "/api/v1/secrets/{name}", "admin", "Delete a secret"),
    ("get", "/api/v1/webhooks", "read", "Webhook subscriptions (score.changed CRM sync, nurture.changed)"),
    ("put", "/api/v1/webhooks/{name}", "admin", "Create or replace a subscription: {url, events, secret_ref?, fields?, debounce?}"),
    ("delete", "/api/v1/webhooks/{name}", "admin", "Delete a subscription"),
    ("get", "/api/v1/keys", "admin", "List API keys"),
    ("post", "/api/v1/keys", "admin", "Create an API key with scopes (shown once)"),
    ("delete", "/api/v1/keys/{id}", "admin", "Revoke an API key"),
    ("get", "/api/v1/users", "admin", "List the web app's users (never their passwords)"),
    ("post", "/api/v1/users", "admin", "Add a user {email, password, role, name?}"),
    ("get", "/api/v1/users/{id}", "admin", "Read a user"),
    ("patch", "/api/v1/users/{id}", "admin", "Change a user's e-mail, name, role, password or disabled; a new password or disabling signs them out"),
    ("delete", "/api/v1/users/{id}", "admin", "Delete a user and their sessions"),
    ("post", "/v1/track", "ingest", "Segment-compatible track (HTTP Basic: write key as user name)"),
    ("post", "/v1/page", "ingest", "Segment-compatible page"),
    ("post", "/v1/screen", "ingest", "Segment-compatible screen"),
    ("post", "/v1/identify", "ingest", "Segment-compatible identify"),
    ("post", "/v1/batch", "ingest", "Segment-compatible batch (500 KB, 32 KB per message)"),
    ("post", "/v1/import", "ingest", "Segment-compatible import (same as batch)"),
    ("post", "/v1/t", "ingest", "analytics.js track"),
    ("post", "/v1/p", "ingest", "analytics.js page"),
    ("post", "/v1/s", "ingest", "analytics.js screen"),
    ("post", "/v1/i", "ingest", "analytics.js identify"),
    ("post", "/v1/b", "ingest", "analytics.js batch"),
    ("post", "/v1/alias", "ingest", "Segment-compatible alias: previousId's contact merges into userId"),
    ("post", "/v1/a", "ingest", "analytics.js alias"),
    ("post", "/v1/group", "ingest", "Segment-compatible group: account_id and account_* traits"),
    ("post", "/v1/g", "ingest", "analytics.js group"),
    ("get", "/js/leadscore.js", "none", "The website script (page views, identify, track)"),
];

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, scope, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut operation = json!({
            "summary": summary,
            "x-scope": scope,
            "responses": {
                "200": { "description": "OK" },
                "4XX": { "description": "Error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        if *scope != "none" {
            operation["security"] = json!([{ "apiKey": [] }]);
        }
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if !parameters.is_empty() {
            operation["parameters"] = json!(parameters);
        }
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "leadscore", "version": env!("CARGO_PKG_VERSION"), "description": "Self-hosted lead scoring engine" },
        "paths": paths,
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message"], "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" }, "details": {}
                    } } }
                }
            }
        }
    })
}
