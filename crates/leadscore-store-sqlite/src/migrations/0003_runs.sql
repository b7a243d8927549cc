-- Running automations (PRODUCT.md §3, F11–F17, F23).

-- Contacts waiting for their automations to be evaluated: one row per change (an event,
-- an attribute change, a decay step). `event` is the new activity event as JSON
-- {t, m, n}; `before` the contact's cards per model before the change, when known.
CREATE TABLE automation_queue (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id  TEXT NOT NULL,
    event       TEXT,
    before      TEXT,
    enqueued_at INTEGER NOT NULL
);
CREATE INDEX automation_queue_contact ON automation_queue (contact_id, seq);

-- What each automation remembers per contact (armed, last band, recent runs, track).
CREATE TABLE automation_state (
    contact_id TEXT NOT NULL,
    automation TEXT NOT NULL,
    state      TEXT NOT NULL,
    PRIMARY KEY (contact_id, automation)
) WITHOUT ROWID;

-- The run log.
CREATE TABLE automation_runs (
    id         TEXT PRIMARY KEY,
    automation TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    at         INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    actions    TEXT NOT NULL
);
CREATE INDEX automation_runs_at ON automation_runs (at, id);
CREATE INDEX automation_runs_automation ON automation_runs (automation, at);
CREATE INDEX automation_runs_contact ON automation_runs (contact_id, at);

-- The outbox. `target` is the URL (webhook) or address (email); `body` the exact JSON
-- sent (webhook) or the text (email). The id is also the webhook-id.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    target          TEXT NOT NULL,
    secret_ref      TEXT,
    subject         TEXT,
    body            TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    automation      TEXT,
    run_id          TEXT,
    contact_id      TEXT,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    lease_owner     TEXT,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_created ON deliveries (created_at, id);
CREATE INDEX deliveries_run ON deliveries (run_id);

CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    success     INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Sales teams for round-robin assignment; members is a JSON array.
CREATE TABLE teams (
    name       TEXT PRIMARY KEY,
    members    TEXT NOT NULL,
    cursor     INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Named secrets for webhook signing (write-only through the API).
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Webhook subscriptions (score.changed for CRM sync, nurture.changed).
CREATE TABLE webhooks (
    name        TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    secret_ref  TEXT,
    events      TEXT NOT NULL,
    fields      TEXT NOT NULL,
    debounce_ms INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- score.changed: contacts whose synced fields changed, sent once `due_at` has passed.
CREATE TABLE sync_pending (
    subscription TEXT NOT NULL,
    contact_id   TEXT NOT NULL,
    due_at       INTEGER NOT NULL,
    PRIMARY KEY (subscription, contact_id)
);
CREATE INDEX sync_pending_due ON sync_pending (due_at);

-- score.changed: what each subscriber was last sent per contact.
CREATE TABLE sync_sent (
    subscription TEXT NOT NULL,
    contact_id   TEXT NOT NULL,
    fields       TEXT NOT NULL,
    PRIMARY KEY (subscription, contact_id)
);

-- Leases that make a background task run in one process at a time.
CREATE TABLE leases (
    name  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until INTEGER NOT NULL
);
