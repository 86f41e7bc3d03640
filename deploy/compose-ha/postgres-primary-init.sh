#!/bin/sh
# docker-compose.ha.yml: run once by the postgres image's entrypoint, when
# it initialises the primary's empty data directory (the scripts of
# /docker-entrypoint-initdb.d), on its init-only server. It makes the role
# the standby streams with, lets that role connect for replication, and
# names the standby synchronous: from the real start on, a commit returns
# once the standby has it too (ALTER SYSTEM, so that the init server's own
# commits do not wait for a standby that cannot exist yet).
set -eu
psql -v ON_ERROR_STOP=1 -v password="$POSTGRES_REPLICATION_PASSWORD" \
	--username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
ALTER SYSTEM SET synchronous_standby_names = 'postgres2';
SQL
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
