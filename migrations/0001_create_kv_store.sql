-- +goose Up
-- kv_store holds the state of every key: a live value, or a tombstone
-- (deleted, value NULL) that keeps the version of the delete so that an
-- older write delivered late cannot resurrect the key.
--
-- The version is (last_updated, op_id): last writer wins, op_id breaks ties.
-- COLLATE "C" makes key order bytewise, the order Go's string comparison
-- and the keyset pagination of GET /api/all use, independent of the
-- database's locale.
--
-- Table names are unqualified: the migration applies to the first schema in
-- the connection's search_path (each test uses its own schema).
CREATE TABLE kv_store (
    key          TEXT COLLATE "C" PRIMARY KEY,
    value        TEXT,
    last_updated TIMESTAMPTZ NOT NULL,
    op_id        UUID NOT NULL,
    deleted      BOOLEAN NOT NULL DEFAULT false,
    CONSTRAINT kv_store_live_has_value CHECK (deleted OR value IS NOT NULL)
);

-- The tombstone purge finds expired tombstones through this index without
-- scanning live rows.
CREATE INDEX kv_store_tombstones_by_age ON kv_store (last_updated) WHERE deleted;
