-- leadscore on PostgreSQL: the same tables as the SQLite backend.
-- Every identifier column that is compared or ordered uses COLLATE "C" (byte order), so
-- cursors, the lead list's tie-break and the rescore's merge of contacts with their events
-- order ids exactly as Rust and SQLite do, whatever the database's locale.
-- Times are milliseconds since the Unix epoch (BIGINT); JSON is kept as TEXT, handed to
-- serde as is.

CREATE TABLE contacts (
    id          TEXT COLLATE "C" PRIMARY KEY,
    email       TEXT COLLATE "C" UNIQUE,
    attributes  TEXT NOT NULL,
    groups      TEXT NOT NULL DEFAULT '[]',
    owner       TEXT COLLATE "C",
    status      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX contacts_owner ON contacts (owner) WHERE owner IS NOT NULL;

CREATE TABLE contact_groups (
    grp        TEXT COLLATE "C" NOT NULL,
    contact_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (grp, contact_id)
);
CREATE INDEX contact_groups_contact ON contact_groups (contact_id);

-- Keyed by (contact, time, messageId): replaying a contact and streaming a rescore are
-- range scans of this primary key. The newest event of a contact is MAX(ts) over it.
CREATE TABLE events (
    contact_id  TEXT COLLATE "C" NOT NULL,
    ts          BIGINT NOT NULL,
    message_id  TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    properties  TEXT NOT NULL,
    context     TEXT,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (contact_id, ts, message_id)
);

-- Global messageId dedupe (identify calls included, which are not activity events).
-- Not indexed by contact: erasure and merges find a contact's messageIds through its
-- events and its identify log entries.
CREATE TABLE message_ids (
    message_id TEXT COLLATE "C" PRIMARY KEY,
    contact_id TEXT COLLATE "C" NOT NULL
);

CREATE TABLE scores (
    model      TEXT COLLATE "C" NOT NULL,
    contact_id TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    fit        DOUBLE PRECISION NOT NULL,
    activity   DOUBLE PRECISION NOT NULL,
    total      DOUBLE PRECISION NOT NULL,
    band       TEXT COLLATE "C",
    flames     SMALLINT NOT NULL,
    grade      TEXT,
    quadrant   TEXT,
    state      TEXT NOT NULL,
    as_of      BIGINT NOT NULL,
    PRIMARY KEY (model, contact_id)
);
CREATE INDEX scores_by_total ON scores (model, total DESC, contact_id);
CREATE INDEX scores_by_band ON scores (model, band, total DESC, contact_id);
CREATE INDEX scores_contact ON scores (contact_id);

CREATE TABLE contact_log (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id TEXT COLLATE "C" NOT NULL,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX contact_log_contact ON contact_log (contact_id, at);

CREATE TABLE models (
    name       TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    source     TEXT NOT NULL,
    format     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE model_heads (
    name    TEXT COLLATE "C" PRIMARY KEY,
    version BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE jobs (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT NOT NULL,
    model      TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    state      TEXT NOT NULL,
    total      BIGINT NOT NULL,
    done       BIGINT NOT NULL DEFAULT 0,
    cursor     TEXT COLLATE "C",
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    error      TEXT
);
CREATE INDEX jobs_model ON jobs (model, id);

CREATE TABLE api_keys (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
