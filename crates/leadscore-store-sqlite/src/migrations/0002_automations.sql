-- Automation definitions (PRODUCT.md §3), one row per automation, keyed by its name.
-- `definition` is the automation as JSON text; `enabled` mirrors its `enabled` field so
-- the runner (later) can skip disabled ones without parsing every definition.
CREATE TABLE automations (
    name       TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
