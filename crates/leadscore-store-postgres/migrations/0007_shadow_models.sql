-- Shadow models (F31) and job results; mirrors SQLite migration 0007. A head whose
-- shadow_of names another model scores live traffic but fires no automations and is
-- never sent out. jobs.result: what a finished background job produced (a backtest's
-- report).
ALTER TABLE model_heads ADD COLUMN shadow_of TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN result TEXT;
