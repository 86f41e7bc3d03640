#!/bin/sh
# docker-compose.ha.yml: the standby's entrypoint. On first start (an empty
# data directory) it copies the primary with pg_basebackup, then streams
# from it as application_name postgres2, the name the primary's
# synchronous_standby_names waits for; then, as on every start, it hands
# over to the image's own entrypoint, which runs postgres on that data
# directory (standby.signal: read-only, replaying). Promoting it (pg_ctl
# promote, or what runs PostgreSQL in production: Patroni, an operator) is
# not this file's business.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	export PGPASSWORD="$POSTGRES_REPLICATION_PASSWORD"
	until pg_basebackup -h postgres1 -p 5432 -U replicator -D "$PGDATA" -X stream -c fast -w; do
		echo "postgres2: waiting for the primary (postgres1) to take a base backup"
		rm -rf "${PGDATA:?}"/*
		sleep 2
	done
	# The copy holds the primary's synchronous_standby_names: once promoted,
	# this node would wait for a standby named after itself, and no commit
	# would return. It runs alone until a new standby is made.
	cat >>"$PGDATA/postgresql.auto.conf" <<CONF
primary_conninfo = 'host=postgres1 port=5432 user=replicator password=$POSTGRES_REPLICATION_PASSWORD application_name=postgres2'
synchronous_standby_names = ''
CONF
	touch "$PGDATA/standby.signal"
fi
exec docker-entrypoint.sh "$@"
