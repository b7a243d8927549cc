-- The erasure log (F27): that a contact was erased, when and by whom; never what.
CREATE TABLE erasures (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    erased_by TEXT NOT NULL
);
