-- Rescore jobs are claimed through the database: the process holding the lease runs the
-- job; after a crash another takes it once the lease has expired.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until BIGINT;
