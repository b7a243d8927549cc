-- Outcomes sales records (statuses, ratings), each with the contact's cards as of `at`
-- (JSON {model: card}), so reports judge the scoring on what sales saw then.
CREATE TABLE outcomes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT,
    rating      INTEGER,
    note        TEXT,
    author      TEXT,
    at          INTEGER NOT NULL,
    scores      TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX outcomes_contact ON outcomes (contact_id, at, id);
CREATE INDEX outcomes_at ON outcomes (at, id);
