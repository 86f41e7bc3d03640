-- +goose Up
-- kv_settings holds values every process of a deployment must share
-- without anyone configuring them.
--
-- token_key signs the version tokens the API hands to clients (a 202's
-- "version", a read's KV-Version), so that every replica recognises the
-- tokens every other replica issued, and a token the API never issued is
-- refused. It is random, made here once per database (schema):
-- gen_random_uuid() is built into PostgreSQL 13 and later, and two of them,
-- without their dashes, are 64 hex digits holding 244 random bits. Each API
-- process reads it once at start; KV_TOKEN_KEY overrides it (README:
-- Configuration).
CREATE TABLE kv_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO kv_settings (name, value)
VALUES ('token_key', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
