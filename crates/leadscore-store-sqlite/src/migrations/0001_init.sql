CREATE TABLE contacts (
    id            TEXT PRIMARY KEY,
    email         TEXT UNIQUE,
    attributes    TEXT NOT NULL,
    groups        TEXT NOT NULL DEFAULT '[]',
    owner         TEXT,
    status        TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX contacts_owner ON contacts(owner) WHERE owner IS NOT NULL;

CREATE TABLE contact_groups (
    grp        TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (grp, contact_id)
) WITHOUT ROWID;
CREATE INDEX contact_groups_contact ON contact_groups(contact_id);

-- Clustered by (contact, time, messageId) so a rescore is one sequential read.
CREATE TABLE events (
    contact_id  TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    properties  TEXT NOT NULL,
    context     TEXT,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (contact_id, ts, message_id)
) WITHOUT ROWID;

-- Global messageId dedupe (identify calls included, which are not activity events).
-- Not indexed by contact: ingest is the hot path; erasure and merges find a contact's
-- messageIds through its events and its identify log entries instead.
CREATE TABLE message_ids (
    message_id TEXT PRIMARY KEY,
    contact_id TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE scores (
    model      TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    version    INTEGER NOT NULL,
    fit        REAL NOT NULL,
    activity   REAL NOT NULL,
    total      REAL NOT NULL,
    band       TEXT,
    flames     INTEGER NOT NULL,
    grade      TEXT,
    quadrant   TEXT,
    state      TEXT NOT NULL,
    as_of      INTEGER NOT NULL,
    PRIMARY KEY (model, contact_id)
) WITHOUT ROWID;
CREATE INDEX scores_by_total ON scores(model, total DESC, contact_id);
CREATE INDEX scores_by_band ON scores(model, band, total DESC, contact_id);
CREATE INDEX scores_contact ON scores(contact_id);

CREATE TABLE contact_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id TEXT NOT NULL,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX contact_log_contact ON contact_log(contact_id, at);

CREATE TABLE models (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    source     TEXT NOT NULL,
    format     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE model_heads (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE jobs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    model      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL,
    total      INTEGER NOT NULL,
    done       INTEGER NOT NULL DEFAULT 0,
    cursor     TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    error      TEXT
);
CREATE INDEX jobs_model ON jobs(model, id);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
