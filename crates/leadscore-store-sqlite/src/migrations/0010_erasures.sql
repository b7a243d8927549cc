-- The erasure log (F27): that a contact was erased, when and by whom; never what.
CREATE TABLE erasures (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    erased_by TEXT NOT NULL
);
