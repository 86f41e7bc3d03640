#!/bin/sh
# kvstack's roles and database in docker compose, made once:
#   docker-compose.yml     by the postgres image on the first start of an
#                          empty data directory (/docker-entrypoint-initdb.d),
#                          as the image's superuser (POSTGRES_USER);
#   docker-compose.ha.yml  by Patroni's post_bootstrap on the first primary
#                          (deploy/compose-ha/patroni.yml), which passes the
#                          superuser's connection string as $1.
# No service connects as the superuser. docs/SECURITY.md, "Least privilege":
#   kvstack          the owner of database kvstack: migrate, alone
#   kvstack_app      the API replicas and the consumers (migrate grants it
#                    DML on kv_store: KV_MIGRATE_APP_ROLES)
#   kvstack_monitor  the exporters, in pg_monitor
# Nobody else may connect to kvstack (migrate revokes it again), and every
# connection over the network must be TLS (hostssl).
set -eu
if [ $# -gt 0 ]; then
	set -- "$1"
else
	set -- --username "$POSTGRES_USER" --dbname postgres
fi
psql -v ON_ERROR_STOP=1 --no-psqlrc "$@" \
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
# Patroni writes pg_hba.conf itself, from its configuration (hostssl only).
if [ $# -eq 1 ]; then
	exit 0
fi
# The image allows every host with a password (host all all all
# scram-sha-256): over TLS only.
sed -i 's/^host all all all scram-sha-256$/hostssl all all all scram-sha-256/' "$PGDATA/pg_hba.conf"
grep -q '^hostssl all all all scram-sha-256$' "$PGDATA/pg_hba.conf"
