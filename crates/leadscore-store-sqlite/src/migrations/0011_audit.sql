-- The audit log: who changed which model, automation, key, user, secret, team or webhook,
-- and when. Append-only; never a secret's value.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL
);
