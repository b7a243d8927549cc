-- The account of each contact (F29): its account_id/account attribute, else its company
-- e-mail domain (free mailboxes excepted); kept by every contact write. Existing rows are
-- filled in by the code that runs this migration (the rule lives in leadscore-core).
ALTER TABLE contacts ADD COLUMN account_id TEXT;
CREATE INDEX contacts_account ON contacts (account_id) WHERE account_id IS NOT NULL;
