-- Shadow models (F31): a model whose head names the live model it shadows scores live
-- traffic like any other but fires no automations and is never sent out (CRM sync,
-- webhook payloads). NULL: a live model.
ALTER TABLE model_heads ADD COLUMN shadow_of TEXT;
-- What a finished background job produced (a backtest's report, as JSON text).
ALTER TABLE jobs ADD COLUMN result TEXT;
