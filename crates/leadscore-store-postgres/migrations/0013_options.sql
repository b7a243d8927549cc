-- Server options an admin changes at run time (whether sales reps reach the unassigned
-- pool), by name, the value as JSON. Read by every process of the server.
CREATE TABLE options (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
