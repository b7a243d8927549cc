-- Outcomes sales records (statuses, ratings), each with the contact's cards as of `at`
-- (JSON {model: card}), so reports judge the scoring on what sales saw then. Mirrors
-- SQLite migration 0005, with the same columns in the same order (`leadscore migrate`
-- copies them). A status becomes the contact's `status` when it is the latest by
-- (at, id); it is recorded under the contact's row lock, so concurrent recordings for one
-- contact take turns.
CREATE TABLE outcomes (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id  TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT,
    rating      BIGINT,
    note        TEXT,
    author      TEXT,
    at          BIGINT NOT NULL,
    scores      TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX outcomes_contact ON outcomes (contact_id, at, id);
CREATE INDEX outcomes_at ON outcomes (at, id);
