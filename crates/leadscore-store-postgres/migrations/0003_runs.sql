-- Running automations (PRODUCT.md §3, F11–F17, F23); mirrors SQLite migration 0003, with
-- the same tables and columns in the same order (`leadscore migrate` copies them).
-- Ids and names use COLLATE "C" (byte order, as on SQLite): the run and delivery lists
-- page by (time, id), and names list in byte order.

-- Contacts waiting for their automations to be evaluated: one row per change (an event,
-- an attribute change, a decay step). `event` is the new activity event as JSON
-- {t, m, n}; `before` the contact's cards per model before the change, when known.
-- Rows are only ever added and consumed under the contact's row lock, so the entries an
-- evaluation reads are exactly those with seq <= the last it saw.
CREATE TABLE automation_queue (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id  TEXT COLLATE "C" NOT NULL,
    event       TEXT,
    before      TEXT,
    enqueued_at BIGINT NOT NULL
);
CREATE INDEX automation_queue_contact ON automation_queue (contact_id, seq);

-- What each automation remembers per contact (armed, last band, recent runs, track).
CREATE TABLE automation_state (
    contact_id TEXT COLLATE "C" NOT NULL,
    automation TEXT COLLATE "C" NOT NULL,
    state      TEXT NOT NULL,
    PRIMARY KEY (contact_id, automation)
);

-- The run log.
CREATE TABLE automation_runs (
    id         TEXT COLLATE "C" PRIMARY KEY,
    automation TEXT COLLATE "C" NOT NULL,
    contact_id TEXT COLLATE "C" NOT NULL,
    at         BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    actions    TEXT NOT NULL
);
CREATE INDEX automation_runs_at ON automation_runs (at, id);
CREATE INDEX automation_runs_automation ON automation_runs (automation, at);
CREATE INDEX automation_runs_contact ON automation_runs (contact_id, at);

-- The outbox. `target` is the URL (webhook) or address (email); `body` the exact JSON
-- sent (webhook) or the text (email). The id is also the webhook-id.
CREATE TABLE deliveries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    channel         TEXT NOT NULL,
    target          TEXT NOT NULL,
    secret_ref      TEXT,
    subject         TEXT,
    body            TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    automation      TEXT COLLATE "C",
    run_id          TEXT COLLATE "C",
    contact_id      TEXT COLLATE "C",
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    lease_owner     TEXT,
    lease_until     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_created ON deliveries (created_at, id);
CREATE INDEX deliveries_run ON deliveries (run_id);
-- Not in SQLite: erasure and merges (an anonymous visitor merged during ingest) find a
-- contact's deliveries by it, which would otherwise scan the whole outbox.
CREATE INDEX deliveries_contact ON deliveries (contact_id) WHERE contact_id IS NOT NULL;

CREATE TABLE delivery_attempts (
    delivery_id TEXT COLLATE "C" NOT NULL,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    success     BOOLEAN NOT NULL,
    status      BIGINT,
    error       TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Sales teams for round-robin assignment; members is a JSON array.
CREATE TABLE teams (
    name       TEXT COLLATE "C" PRIMARY KEY,
    members    TEXT NOT NULL,
    cursor     BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Named secrets for webhook signing (write-only through the API).
CREATE TABLE secrets (
    name       TEXT COLLATE "C" PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Webhook subscriptions (score.changed for CRM sync, nurture.changed).
CREATE TABLE webhooks (
    name        TEXT COLLATE "C" PRIMARY KEY,
    url         TEXT NOT NULL,
    secret_ref  TEXT,
    events      TEXT NOT NULL,
    fields      TEXT NOT NULL,
    debounce_ms BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- score.changed: contacts whose synced fields changed, sent once `due_at` has passed.
CREATE TABLE sync_pending (
    subscription TEXT COLLATE "C" NOT NULL,
    contact_id   TEXT COLLATE "C" NOT NULL,
    due_at       BIGINT NOT NULL,
    PRIMARY KEY (subscription, contact_id)
);
CREATE INDEX sync_pending_due ON sync_pending (due_at);
-- Not in SQLite: erasure and merges find a contact's rows by it.
CREATE INDEX sync_pending_contact ON sync_pending (contact_id);

-- score.changed: what each subscriber was last sent per contact.
CREATE TABLE sync_sent (
    subscription TEXT COLLATE "C" NOT NULL,
    contact_id   TEXT COLLATE "C" NOT NULL,
    fields       TEXT NOT NULL,
    PRIMARY KEY (subscription, contact_id)
);
CREATE INDEX sync_sent_contact ON sync_sent (contact_id);

-- Leases that make a background task run in one process at a time.
CREATE TABLE leases (
    name  TEXT COLLATE "C" PRIMARY KEY,
    owner TEXT NOT NULL,
    until BIGINT NOT NULL
);
