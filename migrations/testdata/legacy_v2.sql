-- A schema at version 2 as kvstack's own migrator left it before goose
-- (commit 837f83d): pg_dump -n of a schema it migrated, with the schema
-- qualification, the SET lines and the CREATE SCHEMA removed and COPY
-- turned into INSERT, so that a test can load it into a schema of its own.
-- Its one key was added by hand, to show that the upgrade keeps the data.

CREATE TABLE kv_settings (
    name text NOT NULL,
    value text NOT NULL
);

CREATE TABLE kv_store (
    key text NOT NULL COLLATE pg_catalog."C",
    value text,
    last_updated timestamp with time zone NOT NULL,
    op_id uuid NOT NULL,
    deleted boolean DEFAULT false NOT NULL,
    CONSTRAINT kv_store_live_has_value CHECK ((deleted OR (value IS NOT NULL)))
);

CREATE TABLE schema_migrations (
    version bigint NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

INSERT INTO kv_settings (name, value) VALUES
    ('token_key', '82846927c8594f9aad665ab121b8e950fc3b476157dd43fcbdb82a0329074b63');

INSERT INTO kv_store (key, value, last_updated, op_id, deleted) VALUES
    ('kept', 'v', '2026-12-06 08:54:05+00', '00000000-0000-0000-0000-000000000001', false);

INSERT INTO schema_migrations (version, name, applied_at) VALUES
    (1, 'create_kv_store', '2026-12-06 08:54:04.201011+00'),
    (2, 'create_kv_settings', '2026-12-06 08:54:04.210126+00');

ALTER TABLE ONLY kv_settings
    ADD CONSTRAINT kv_settings_pkey PRIMARY KEY (name);

ALTER TABLE ONLY kv_store
    ADD CONSTRAINT kv_store_pkey PRIMARY KEY (key);

ALTER TABLE ONLY schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

CREATE INDEX kv_store_tombstones_by_age ON kv_store USING btree (last_updated) WHERE deleted;
