-- +goose Up
-- written_by names who wrote each key's state: the subject of the token of
-- the client whose write (or delete) it is (docs/DESIGN.md, Identity and
-- access). NULL for a state written before this column, or with auth off.
-- A nullable column without a default: adding it rewrites no row, however
-- large the table.
ALTER TABLE kv_store ADD COLUMN written_by TEXT;
