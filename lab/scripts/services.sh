#!/usr/bin/env bash
# Install and start the local services kvstack needs, on Debian 12 without
# systemd (apt starts nothing there). Idempotent: a service that already
# answers on its port is left alone, so a second run takes about a second.
#
#   lab/scripts/services.sh ensure [deps|all]    install what is missing, start deps
#   lab/scripts/services.sh install [deps|all]   install what is missing, start nothing
#   lab/scripts/services.sh status               one line per service: up/down
#
# install and ensure make the system user the stack's processes run as
# (KV_PROCESS_USER, default kvstack).
# deps: PostgreSQL, Redis, RabbitMQ (+ rabbitmq_prometheus), role/db kvstack,
#       the roles kvstack_app and kvstack_monitor, the RabbitMQ users
#       kvstack_api and kvstack_consumer.
# all:  deps, plus nginx, prometheus, prometheus-alertmanager, supervisor, wrk,
#       mtail, the nginx, PostgreSQL and Redis exporters, pgbackrest, and
#       patroni, etcd-server and python3-etcd (the HA topology's), installed only
#       (they run later under the project's own config; the system's
#       supervisord is never started).
#
# The ports come from stack.env through bin/stack (make setup, make status),
# which runs this script: `bin/stack services status`.
# Everything listens on and is checked on loopback only.
set -euo pipefail

: "${PGPORT:?unset: run through bin/stack services (it reads stack.env)}"
: "${REDIS_PORT:?unset: run through bin/stack services (it reads stack.env)}"
: "${RABBITMQ_PORT:?unset: run through bin/stack services (it reads stack.env)}"
: "${RABBITMQ_METRICS_PORT:?unset: run through bin/stack services (it reads stack.env)}"
START_TIMEOUT="${START_TIMEOUT:-90}" # seconds to wait for a service to answer

KV_DB_USER=kvstack
KV_DB_PASSWORD=kvstack
KV_DB_NAME=kvstack
# Least privilege (docs/SECURITY.md): the replicas and the consumer connect
# as KV_DB_APP_USER, the PostgreSQL exporter as KV_DB_MONITOR_USER (a member
# of pg_monitor); migrate, as the owner, grants them what they need. The
# stack's defaults (lab/native/settings.go) name these.
KV_DB_APP_USER=kvstack_app
KV_DB_APP_PASSWORD=kvstack_app
KV_DB_MONITOR_USER=kvstack_monitor
KV_DB_MONITOR_PASSWORD=kvstack_monitor

HOST=127.0.0.1
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

need_root() {
	[[ $(id -u) -eq 0 ]] || die "$1 needs root (run: sudo $0 ${ARGS[*]})"
}

# tcp_open PORT: true when something accepts a TCP connection on loopback.
tcp_open() {
	timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# wait_for NAME CHECK...: run CHECK until it succeeds or START_TIMEOUT passes.
wait_for() {
	local name=$1 deadline=$((SECONDS + START_TIMEOUT))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "$name did not come up within ${START_TIMEOUT}s"
		sleep 0.2
	done
}

# ---------------------------------------------------------------- checks

pg_up() { pg_isready -q -h "$HOST" -p "$PGPORT"; }
redis_up() { [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
rabbitmq_up() { tcp_open "$RABBITMQ_PORT"; }
rabbitmq_metrics_up() { tcp_open "$RABBITMQ_METRICS_PORT"; }

# ---------------------------------------------------------------- packages

# missing_packages NAME=PATH...: print each package whose command is absent.
missing_packages() {
	local pair pkg cmd
	for pair in "$@"; do
		pkg=${pair%%=*} cmd=${pair#*=}
		if [[ $cmd == /* ]]; then
			compgen -G "$cmd" >/dev/null || echo "$pkg"
		else
			command -v "$cmd" >/dev/null || echo "$pkg"
		fi
	done
}

DEP_PACKAGES=(
	"postgresql=/usr/lib/postgresql/*/bin/postgres"
	"postgresql-client=pg_isready"
	"redis-server=redis-server"
	"redis-tools=redis-cli"
	"rabbitmq-server=rabbitmq-server"
)
TOOL_PACKAGES=(
	"nginx=nginx"
	"prometheus=prometheus"
	"prometheus-alertmanager=prometheus-alertmanager"
	"wrk=wrk"
	"supervisor=supervisord"
	"mtail=mtail"
	"prometheus-nginx-exporter=prometheus-nginx-exporter"
	"prometheus-postgres-exporter=prometheus-postgres-exporter"
	"prometheus-redis-exporter=prometheus-redis-exporter"
	"pgbackrest=pgbackrest"
	# The HA topology's PostgreSQL failover (make up-ha, make chaos-ha):
	# Patroni on a private etcd; both of Patroni's etcd drivers import
	# python3-etcd, which reads etcd's TLS certificate through pyOpenSSL,
	# which imports python3-idna (Patroni only waits on etcd without it).
	"patroni=patroni"
	"etcd-server=etcd"
	"python3-etcd=/usr/lib/python3/dist-packages/etcd/__init__.py"
	"python3-idna=/usr/lib/python3/dist-packages/idna/__init__.py"
)

install_packages() {
	local missing
	mapfile -t missing < <(missing_packages "$@")
	if ((${#missing[@]} == 0)); then
		log "packages: all present"
		return
	fi
	need_root "installing ${missing[*]}"
	log "packages: installing ${missing[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# ---------------------------------------------------------------- PostgreSQL

# pg_cluster: "VERSION NAME" of the cluster configured on PGPORT, falling
# back to VERSION main with the newest version found under /etc/postgresql.
pg_cluster() {
	local clusters found
	clusters=$(pg_lsclusters -h 2>/dev/null || true)
	found=$(awk -v p="$PGPORT" '$3 == p { print $1, $2; exit }' <<<"$clusters")
	if [[ -n $found ]]; then
		echo "$found"
		return
	fi
	[[ -z $clusters ]] || die "PostgreSQL: no cluster is configured for port $PGPORT (see pg_lsclusters)"
	found=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
	[[ -n $found ]] || die "PostgreSQL: no cluster under /etc/postgresql"
	echo "$found main"
}

ensure_postgres() {
	if pg_up; then
		log "postgresql: up on $HOST:$PGPORT"
		return
	fi
	need_root "starting PostgreSQL"
	local cluster version name
	cluster=$(pg_cluster)
	read -r version name <<<"$cluster"
	log "postgresql: starting cluster $version/$name"
	pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start ||
		die "PostgreSQL: pg_ctlcluster $version $name start failed (see /var/log/postgresql/)"
	wait_for "PostgreSQL on $HOST:$PGPORT" pg_up
	log "postgresql: up on $HOST:$PGPORT"
}

# psql_admin: psql as the postgres superuser over the local socket, which
# works whether 127.0.0.1 uses trust or scram.
psql_admin() {
	local args=(psql -X -q -v ON_ERROR_STOP=1 -p "$PGPORT" "$@")
	if [[ $(id -u) -eq 0 ]]; then
		(cd / && runuser -u postgres -- "${args[@]}")
	else
		"${args[@]}" -U postgres
	fi
}

ensure_database() {
	# \gexec runs each statement only when the row is missing: one round trip.
	psql_admin -d postgres >/dev/null <<-SQL || die "PostgreSQL: could not create role/database $KV_DB_NAME"
		SELECT 'CREATE ROLE $KV_DB_USER LOGIN CREATEDB PASSWORD ''$KV_DB_PASSWORD'''
		 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$KV_DB_USER')\gexec
		SELECT 'CREATE DATABASE $KV_DB_NAME OWNER $KV_DB_USER'
		 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$KV_DB_NAME')\gexec
		SELECT 'CREATE ROLE $KV_DB_APP_USER LOGIN PASSWORD ''$KV_DB_APP_PASSWORD'''
		 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$KV_DB_APP_USER')\gexec
		SELECT 'CREATE ROLE $KV_DB_MONITOR_USER LOGIN PASSWORD ''$KV_DB_MONITOR_PASSWORD'' IN ROLE pg_monitor'
		 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$KV_DB_MONITOR_USER')\gexec
	SQL
	# Check the way the app connects: TCP, password.
	PGPASSWORD=$KV_DB_PASSWORD psql -X -q -h "$HOST" -p "$PGPORT" -U "$KV_DB_USER" \
		-d "$KV_DB_NAME" -c 'SELECT 1' >/dev/null ||
		die "PostgreSQL: cannot log in as $KV_DB_USER to $KV_DB_NAME on $HOST:$PGPORT"
	log "postgresql: role and database $KV_DB_NAME ready"
}

# ---------------------------------------------------------------- Redis

ensure_redis() {
	if redis_up; then
		log "redis: up on $HOST:$REDIS_PORT"
		return
	fi
	need_root "starting Redis"
	log "redis: starting on $HOST:$REDIS_PORT"
	mkdir -p /var/lib/redis /var/log/redis
	redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" \
		--save "" --appendonly no --dir /var/lib/redis \
		--pidfile "/run/redis-server-$REDIS_PORT.pid" \
		--logfile "/var/log/redis/redis-server-$REDIS_PORT.log" ||
		die "Redis: redis-server failed (see /var/log/redis/redis-server-$REDIS_PORT.log)"
	wait_for "Redis on $HOST:$REDIS_PORT" redis_up
	log "redis: up on $HOST:$REDIS_PORT"
}

# ---------------------------------------------------------------- RabbitMQ

# rabbitmq_pidfile: where the node writes its pid, honouring NODENAME and
# MNESIA_BASE from rabbitmq-env.conf (this machine uses rabbit@localhost).
rabbitmq_pidfile() {
	(
		set +eu
		conf=${RABBITMQ_CONF_ENV_FILE:-/etc/rabbitmq/rabbitmq-env.conf}
		# shellcheck source=/dev/null
		[[ -r $conf ]] && . "$conf"
		node=${RABBITMQ_NODENAME:-${NODENAME:-rabbit@$(hostname -s)}}
		base=${RABBITMQ_MNESIA_BASE:-${MNESIA_BASE:-/var/lib/rabbitmq/mnesia}}
		echo "$base/$node.pid"
	)
}

# prometheus_listener: the metrics listener as an Erlang term, on loopback
# (the plugin's default is every interface).
prometheus_listener() {
	printf '[{ip,"%s"},{port,%s}]' "$HOST" "$RABBITMQ_METRICS_PORT"
}

# A node killed without cleanup leaves its pid file behind; `rabbitmqctl
# wait` would then watch the dead pid and fail before the new node writes.
remove_stale_pidfile() {
	local pidfile=$1 pid
	[[ -f $pidfile ]] || return 0
	pid=$(<"$pidfile")
	if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
		rm -f "$pidfile"
	fi
}

start_rabbitmq() {
	need_root "starting RabbitMQ"
	local pidfile
	# A node whose application was stopped (`rabbitmqctl stop_app` by hand)
	# only needs its application started again.
	if rabbitmqctl -q eval 'ok.' >/dev/null 2>&1; then
		log "rabbitmq: node up with its application stopped: start_app"
		rabbitmqctl -q start_app >/dev/null || die "RabbitMQ: rabbitmqctl start_app failed"
		wait_for "RabbitMQ on $HOST:$RABBITMQ_PORT" rabbitmq_up
		return
	fi
	pidfile=$(rabbitmq_pidfile)
	log "rabbitmq: enabling rabbitmq_prometheus (offline)"
	rabbitmq-plugins enable --offline rabbitmq_prometheus >/dev/null
	remove_stale_pidfile "$pidfile"
	log "rabbitmq: starting on $HOST:$RABBITMQ_PORT"
	# The environment survives the su inside rabbitmq-server; settings in
	# rabbitmq.conf still take precedence.
	RABBITMQ_NODE_IP_ADDRESS=$HOST RABBITMQ_NODE_PORT=$RABBITMQ_PORT \
		ERL_EPMD_ADDRESS=${ERL_EPMD_ADDRESS:-$HOST} \
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS:-} -rabbitmq_prometheus tcp_config $(prometheus_listener)" \
		rabbitmq-server -detached ||
		die "RabbitMQ: rabbitmq-server -detached failed (see /var/log/rabbitmq/)"
	rabbitmqctl -q wait --timeout "$START_TIMEOUT" "$pidfile" >/dev/null 2>&1 ||
		die "RabbitMQ did not come up within ${START_TIMEOUT}s (see /var/log/rabbitmq/)"
	wait_for "RabbitMQ on $HOST:$RABBITMQ_PORT" rabbitmq_up
}

ensure_rabbitmq() {
	if rabbitmq_up; then
		log "rabbitmq: up on $HOST:$RABBITMQ_PORT"
	else
		start_rabbitmq
		log "rabbitmq: up on $HOST:$RABBITMQ_PORT"
	fi
	if ! rabbitmq_metrics_up; then
		need_root "enabling rabbitmq_prometheus"
		log "rabbitmq: enabling rabbitmq_prometheus (online)"
		rabbitmqctl -q eval "application:load(rabbitmq_prometheus),
			application:set_env(rabbitmq_prometheus, tcp_config, $(prometheus_listener))." >/dev/null ||
			die "RabbitMQ: could not configure the rabbitmq_prometheus listener"
		rabbitmq-plugins -q enable rabbitmq_prometheus >/dev/null ||
			die "RabbitMQ: could not enable rabbitmq_prometheus"
		wait_for "RabbitMQ metrics on $HOST:$RABBITMQ_METRICS_PORT" rabbitmq_metrics_up
	fi
	log "rabbitmq: metrics on $HOST:$RABBITMQ_METRICS_PORT"
}

# The API's and the consumer's users (docs/SECURITY.md, least privilege) on
# the vhost /: the API's may publish to the default exchange and nothing
# else, the consumer's may consume the work queues and nothing else (acks
# and the dead-lettering a nack causes need no permission). migrate
# declares the queues as guest. The stack's defaults
# (lab/native/settings.go) name these users and queues.
MQ_API_USER=kvstack_api
MQ_CONSUMER_USER=kvstack_consumer
MQ_WORK_QUEUES='^(add_key|del_key)$'

# mq_user NAME CONFIGURE WRITE READ: the user NAME (its password its name)
# with these permissions on /, made when missing.
mq_user() {
	local name=$1
	if ! rabbitmqctl -q list_users 2>/dev/null | awk '{ print $1 }' | grep -qx "$name"; then
		rabbitmqctl -q add_user "$name" "$name" >/dev/null || die "RabbitMQ: could not add user $name"
	fi
	rabbitmqctl -q set_permissions -p / "$name" "$2" "$3" "$4" >/dev/null ||
		die "RabbitMQ: could not set the permissions of $name"
}

ensure_rabbitmq_users() {
	need_root "making RabbitMQ's users"
	local want have
	want=$(printf '%s\t%s\t%s\t%s\n' "$MQ_API_USER" '^$' '^amq\.default$' '^$' "$MQ_CONSUMER_USER" '^$' '^$' "$MQ_WORK_QUEUES")
	# One rabbitmqctl call (seconds each) when they are there already.
	have=$(rabbitmqctl -q list_permissions -p / 2>/dev/null || true)
	if [[ $(grep -Fxc -f <(printf '%s\n' "$want") <<<"$have") -eq 2 ]]; then
		log "rabbitmq: users $MQ_API_USER (publish) and $MQ_CONSUMER_USER (consume) ready"
		return
	fi
	mq_user "$MQ_API_USER" '^$' '^amq\.default$' '^$'
	mq_user "$MQ_CONSUMER_USER" '^$' '^$' "$MQ_WORK_QUEUES"
	log "rabbitmq: users $MQ_API_USER (publish) and $MQ_CONSUMER_USER (consume) ready"
}

# ---------------------------------------------------------------- commands

# ensure_process_user: the unprivileged system user the stack's API
# replicas, consumers and exporters run as when the stack runs as root
# (KV_PROCESS_USER, passed by bin/stack); made once, with no home and no
# shell.
ensure_process_user() {
	local user=${KV_PROCESS_USER:-kvstack}
	((EUID == 0)) && [[ $user != root ]] || return 0
	id -u "$user" >/dev/null 2>&1 && return 0
	useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
	log "user: $user made (the stack's API replicas, consumers and exporters run as it)"
}

cmd_install() {
	case ${1:-deps} in
	deps) install_packages "${DEP_PACKAGES[@]}" ;;
	all) install_packages "${DEP_PACKAGES[@]}" "${TOOL_PACKAGES[@]}" ;;
	*) usage ;;
	esac
	ensure_process_user
}

cmd_ensure() {
	local what=${1:-deps} started=$SECONDS
	cmd_install "$what"
	ensure_postgres
	ensure_database
	ensure_redis
	ensure_rabbitmq
	ensure_rabbitmq_users
	log "ensure $what: done in $((SECONDS - started))s"
}

# status_line NAME ADDRESS CHECK...: print "NAME up|down ADDRESS".
status_line() {
	local name=$1 addr=$2 state=up
	shift 2
	"$@" >/dev/null 2>&1 || state=down
	printf '%-18s %-5s %s\n' "$name" "$state" "$addr"
	[[ $state == up ]]
}

cmd_status() {
	local rc=0
	status_line postgresql "$HOST:$PGPORT" pg_up || rc=1
	status_line redis "$HOST:$REDIS_PORT" redis_up || rc=1
	status_line rabbitmq "$HOST:$RABBITMQ_PORT" rabbitmq_up || rc=1
	status_line rabbitmq-metrics "$HOST:$RABBITMQ_METRICS_PORT" rabbitmq_metrics_up || rc=1
	return "$rc"
}

usage() {
	sed -n '2,21s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

ARGS=("$@")
case ${1:-} in
ensure) cmd_ensure "${@:2}" ;;
install) cmd_install "${@:2}" ;;
status) cmd_status ;;
*) usage ;;
esac
