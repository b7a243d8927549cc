-- Automation definitions (PRODUCT.md §3); mirrors SQLite migration 0002.
-- COLLATE "C": names list in byte order, as on SQLite.
CREATE TABLE automations (
    name       TEXT COLLATE "C" PRIMARY KEY,
    definition TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
