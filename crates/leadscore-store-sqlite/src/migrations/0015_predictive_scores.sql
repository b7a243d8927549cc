-- Each contact's predictive score under the version that last scored it (F21): the lead
-- list sorts and filters on it, automations and CRM fields read it. Derived data: a merge
-- drops the merged contact's row, erasure deletes it, the engine rewrites it.
CREATE TABLE predictive_scores (
    contact_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    score INTEGER NOT NULL,
    probability REAL NOT NULL,
    as_of INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX predictive_scores_by_probability ON predictive_scores(probability DESC, contact_id);
