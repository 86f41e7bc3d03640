#!/bin/sh
# kvstack's roles and database in docker compose: run once, by the
# postgres image on the first start of an empty data directory
# (/docker-entrypoint-initdb.d), as the image's superuser (POSTGRES_USER),
# which no service uses. docs/SECURITY.md, "Least privilege":
#   kvstack          the owner of database kvstack: migrate, alone
#   kvstack_app      the API replicas and the consumers (migrate grants it
#                    DML on kv_store: KV_MIGRATE_APP_ROLES)
#   kvstack_monitor  the exporter, in pg_monitor
# Nobody else may connect to kvstack (migrate revokes it again), and every
# connection over the network must be TLS (hostssl).
set -eu
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
	-v owner_password="$POSTGRES_OWNER_PASSWORD" \
	-v app_password="$POSTGRES_APP_PASSWORD" \
	-v monitor_password="$POSTGRES_MONITOR_PASSWORD" <<'SQL'
CREATE ROLE kvstack LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'owner_password';
CREATE ROLE kvstack_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'app_password';
CREATE ROLE kvstack_monitor LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'monitor_password' IN ROLE pg_monitor;
CREATE DATABASE kvstack OWNER kvstack;
REVOKE ALL ON DATABASE kvstack FROM PUBLIC;
GRANT CONNECT ON DATABASE kvstack TO kvstack_app, kvstack_monitor;
SQL
# The image allows every host with a password (host all all all
# scram-sha-256): over TLS only.
sed -i 's/^host all all all scram-sha-256$/hostssl all all all scram-sha-256/' "$PGDATA/pg_hba.conf"
grep -q '^hostssl all all all scram-sha-256$' "$PGDATA/pg_hba.conf"
