-- Each contact's predictive score under the version that last scored it (F21): the lead
-- list sorts and filters on it, automations and CRM fields read it. Derived data: a merge
-- drops the merged contact's row, erasure deletes it, the engine rewrites it.
CREATE TABLE predictive_scores (
    contact_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    score BIGINT NOT NULL,
    probability DOUBLE PRECISION NOT NULL,
    as_of BIGINT NOT NULL
);
CREATE INDEX predictive_scores_by_probability ON predictive_scores(probability DESC, contact_id);
