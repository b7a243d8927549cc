-- Predictive model versions (F21): the engine's model and its evaluation as JSON, numbered
-- from 1; at most one is live (it scores contacts).
CREATE TABLE predictive_models (
    version BIGINT PRIMARY KEY,
    target TEXT NOT NULL,
    trained_at BIGINT NOT NULL,
    live BOOLEAN NOT NULL DEFAULT FALSE,
    model TEXT NOT NULL,
    report TEXT NOT NULL
);
