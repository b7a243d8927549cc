-- The account of each contact (F29): its account_id/account attribute, else its company
-- e-mail domain (free mailboxes excepted); kept by every contact write. Mirrors SQLite
-- migration 0006, with the column last in `contacts` as there (`leadscore migrate` copies
-- it). Existing rows are filled in by the code that runs this migration, in the same
-- transaction (the rule lives in leadscore-core). COLLATE "C": accounts are listed in
-- byte order, as in Rust and SQLite.
ALTER TABLE contacts ADD COLUMN account_id TEXT COLLATE "C";
CREATE INDEX contacts_account ON contacts (account_id) WHERE account_id IS NOT NULL;
