-- Predictive model versions (F21): the engine's model and its evaluation as JSON, numbered
-- from 1; at most one is live (it scores contacts).
CREATE TABLE predictive_models (
    version INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    trained_at INTEGER NOT NULL,
    live INTEGER NOT NULL DEFAULT 0,
    model TEXT NOT NULL,
    report TEXT NOT NULL
);
