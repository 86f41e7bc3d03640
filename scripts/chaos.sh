#!/usr/bin/env bash
# The reliability campaign (issue 6) on PRIVATE instances, so that the shared
# PostgreSQL/Redis/RabbitMQ and the main stack (.stack/) are never touched:
#
#   scripts/chaos.sh run [full|short]  start everything private, run the
#                                      campaign (go run ./chaos), tear down
#                                      whatever happens; full writes
#                                      docs/RELIABILITY.md
#   scripts/chaos.sh up | down         start / tear down the private instances
#   scripts/chaos.sh ctl ACTION [N]    one step, for the driver (faults, heal,
#                                      queue depths, pids): see ctl() below
#
# Private instances (ports overridable by the same names):
#   PostgreSQL  initdb in $CHAOS_TMP/pg (trust, 127.0.0.1:55432, socket in
#               /var/run/postgresql as .s.PGSQL.55432), run by user postgres
#   Redis       redis-server 127.0.0.1:56379, dir $CHAOS_TMP/redis
#   RabbitMQ    node kvchaos@localhost, AMQP 127.0.0.1:55672, distribution
#               55673, rabbitmq_prometheus 127.0.0.1:55692, its own mnesia,
#               logs, pid file, config, env file and plugins file
#   kvstack     scripts/stack.sh with KV_STACK_DIR=tmp/chaos/stack,
#               KV_BIN_DIR=tmp/chaos/bin, api1/api2/consumer/nginx on
#               58081/58082/58090/58080 (no Jaeger/Prometheus/Alertmanager);
#               extra consumers consumer2/3 on 58091/58092
# Every kill and stop here targets a pid this script recorded for its own
# processes, or the private node/cluster by its own name and directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
GO=${GO:-go}

CHAOS_DIR=${CHAOS_DIR:-$ROOT/tmp/chaos}
CHAOS_TMP=${CHAOS_TMP:-/tmp/kvchaos}
PG_VERSION=${PG_VERSION:-$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)}
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin

# The private stack: every port shifted, and the services' ports too, so
# that scripts/stack.sh and scripts/services.sh see the private instances.
export PGPORT=${CHAOS_PGPORT:-55432}
export REDIS_PORT=${CHAOS_REDIS_PORT:-56379}
export RABBITMQ_PORT=${CHAOS_RABBITMQ_PORT:-55672}
export RABBITMQ_METRICS_PORT=${CHAOS_RABBITMQ_METRICS_PORT:-55692}
RABBITMQ_DIST=${CHAOS_RABBITMQ_DIST_PORT:-55673}
export KV_NGINX_PORT=${CHAOS_NGINX_PORT:-58080}
export KV_API1_PORT=${CHAOS_API1_PORT:-58081}
export KV_API2_PORT=${CHAOS_API2_PORT:-58082}
export KV_CONSUMER_PORT=${CHAOS_CONSUMER_PORT:-58090}
export KV_PROMETHEUS_PORT=59090 KV_ALERTMANAGER_PORT=59093 KV_JAEGER_UI_PORT=56686
export KV_JAEGER_OTLP_GRPC_PORT=54317 KV_JAEGER_OTLP_HTTP_PORT=54318
export KV_STACK_DIR=$CHAOS_DIR/stack KV_BIN_DIR=$CHAOS_DIR/bin
export KV_STACK_PROCS="api1 api2 consumer nginx"
export KV_STOP_TIMEOUT=10 KV_STACK_TIMEOUT=60
export DATABASE_URL="postgres://kvstack:kvstack@127.0.0.1:$PGPORT/kvstack?sslmode=disable"
export REDIS_ADDR=127.0.0.1:$REDIS_PORT
export RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/
export OTEL_TRACES_EXPORTER=none
# Any rabbitmqctl/rabbitmq-server run from here (scripts/services.sh's too)
# addresses the private node, never the shared rabbit@localhost.
RMQ=$CHAOS_TMP/rabbitmq
export RABBITMQ_NODENAME=kvchaos@localhost
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$RABBITMQ_PORT RABBITMQ_DIST_PORT=$RABBITMQ_DIST
export RABBITMQ_MNESIA_BASE=$RMQ/mnesia RABBITMQ_LOG_BASE=$RMQ/log RABBITMQ_PID_FILE=$RMQ/kvchaos.pid
export RABBITMQ_CONFIG_FILE=$RMQ/rabbitmq.conf RABBITMQ_CONF_ENV_FILE=$RMQ/rabbitmq-env.conf
export RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ/enabled_plugins
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-rabbitmq_prometheus tcp_config [{ip,\"127.0.0.1\"},{port,$RABBITMQ_METRICS_PORT}]"
export ERL_EPMD_ADDRESS=127.0.0.1

STACK_SH=$ROOT/scripts/stack.sh
TIMEOUT=${CHAOS_START_TIMEOUT:-90}

log() { printf '==> chaos: %s\n' "$*" >&2; }
die() { printf '==> chaos: ERROR: %s\n' "$*" >&2; exit 1; }

tcp_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# wait_until SECONDS WHAT CMD...: poll CMD (bounded).
wait_until() {
	local limit=$1 what=$2 deadline
	shift 2
	deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "$what: not within ${limit}s"
		sleep 0.1
	done
}

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

# ---------------------------------------------------------------- PostgreSQL

pg_up() { pg_isready -q -h 127.0.0.1 -p "$PGPORT"; }

pg_start() {
	pg_up && return 0
	as_postgres "$PG_BIN/pg_ctl" -D "$CHAOS_TMP/pg/data" -l "$CHAOS_TMP/pg/postgres.log" -w -t "$TIMEOUT" \
		-o "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=/var/run/postgresql" \
		start >/dev/null || die "private PostgreSQL did not start (see $CHAOS_TMP/pg/postgres.log)"
	wait_until "$TIMEOUT" "private PostgreSQL on :$PGPORT" pg_up
}

# pg_stop: immediate mode, as a crash would (recovery on the next start).
pg_stop() {
	[[ -f $CHAOS_TMP/pg/data/postmaster.pid ]] || return 0
	as_postgres "$PG_BIN/pg_ctl" -D "$CHAOS_TMP/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
}

pg_create() {
	[[ -d $CHAOS_TMP/pg/data ]] && return 0
	mkdir -p "$CHAOS_TMP/pg" && chown postgres: "$CHAOS_TMP/pg"
	as_postgres "$PG_BIN/initdb" -D "$CHAOS_TMP/pg/data" --auth=trust -U postgres >"$CHAOS_TMP/pg/initdb.log" 2>&1 ||
		die "initdb failed (see $CHAOS_TMP/pg/initdb.log)"
	pg_start
	as_postgres psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$PGPORT" -U postgres -d postgres \
		-c "CREATE ROLE kvstack LOGIN PASSWORD 'kvstack'" -c "CREATE DATABASE kvstack OWNER kvstack" >/dev/null ||
		die "private PostgreSQL: cannot create role/database kvstack"
}

# ---------------------------------------------------------------- Redis

redis_up() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

# redis_start: with the dump the last stop saved, so the cache comes back
# holding entries that may be older than PostgreSQL (the interesting case).
redis_start() {
	redis_up && return 0
	mkdir -p "$CHAOS_TMP/redis"
	redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$CHAOS_TMP/redis" \
		--dbfilename dump.rdb --save "" --appendonly no --pidfile "$CHAOS_TMP/redis/redis.pid" \
		--logfile "$CHAOS_TMP/redis/redis.log" >/dev/null || die "private redis-server failed"
	wait_until "$TIMEOUT" "private Redis on :$REDIS_PORT" redis_up
}

redis_stop() {
	redis_up || return 0
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown save >/dev/null 2>&1 || true
	wait_until 30 "private Redis to stop" bash -c "! redis-cli -h 127.0.0.1 -p $REDIS_PORT ping"
}

# ---------------------------------------------------------------- RabbitMQ

rabbit_up() { tcp_open "$RABBITMQ_PORT"; }

rabbit_files() {
	mkdir -p "$RMQ/mnesia" "$RMQ/log"
	echo '[rabbitmq_prometheus].' >"$RMQ/enabled_plugins"
	# Its own config: the shared /etc/rabbitmq/rabbitmq.conf pins :5672.
	printf '%s\n' "listeners.tcp.default = 127.0.0.1:$RABBITMQ_PORT" \
		"collect_statistics_interval = 1000" >"$RMQ/rabbitmq.conf"
	printf '%s\n' "ERL_EPMD_ADDRESS=127.0.0.1" \
		'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' >"$RMQ/rabbitmq-env.conf"
	chown -R rabbitmq: "$RMQ"
}

rabbit_start() {
	rabbit_up && return 0
	[[ -d $RMQ ]] || rabbit_files
	rm -f "$RABBITMQ_PID_FILE"
	rabbitmq-server -detached >/dev/null 2>&1 || die "private rabbitmq-server -detached failed (see $RMQ/log)"
	rabbitmqctl -q wait --timeout "$TIMEOUT" "$RABBITMQ_PID_FILE" >/dev/null 2>&1 ||
		die "private RabbitMQ node $RABBITMQ_NODENAME did not start (see $RMQ/log)"
	wait_until "$TIMEOUT" "private RabbitMQ on :$RABBITMQ_PORT" rabbit_up
	wait_until "$TIMEOUT" "private RabbitMQ metrics on :$RABBITMQ_METRICS_PORT" tcp_open "$RABBITMQ_METRICS_PORT"
}

rabbit_stop() {
	[[ -f $RABBITMQ_PID_FILE ]] || return 0
	rabbitmqctl -q stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || true
	wait_until 60 "private RabbitMQ to stop" bash -c "! timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$RABBITMQ_PORT'"
}

# queues: "name messages unacked" of every queue on the private node.
queues() { rabbitmqctl -q list_queues name messages messages_unacknowledged 2>/dev/null | awk 'NF == 3 && $2 ~ /^[0-9]+$/'; }

# ---------------------------------------------------------------- processes

RUN_DIR() { echo "$KV_STACK_DIR/run"; }

pid_of() {
	local f pid
	f="$(RUN_DIR)/$1.pid"
	[[ -r $f ]] || return 1
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

# kill9 NAME: SIGKILL the pid recorded for one of OUR processes.
kill9() {
	local pid
	pid=$(pid_of "$1") || die "$1 is not running"
	kill -KILL "$pid"
	wait_until 10 "$1 (pid $pid) to die" bash -c "! kill -0 $pid"
	log "$1: killed (pid $pid, SIGKILL)"
}

# consumer_start N: an extra consumer (consumer2, consumer3...).
consumer_start() {
	local n=$1 name=consumer$1 addr log
	pid_of "$name" >/dev/null && return 0
	addr=127.0.0.1:$((KV_CONSUMER_PORT + n - 1))
	log=$KV_STACK_DIR/logs/$name.log
	printf '\n==> %s starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$log"
	(cd "$ROOT" && exec setsid env KV_CONSUMER_ADDR="$addr" KV_INSTANCE_ID="$name" \
		"$KV_BIN_DIR/consumer" >>"$log" 2>&1 </dev/null) &
	echo $! >"$(RUN_DIR)/$name.pid"
	wait_until "$TIMEOUT" "$name on $addr" curl -fsS -m 1 "http://$addr/healthz"
}

consumer_stop() {
	local pid
	pid=$(pid_of "consumer$1") || return 0
	kill -TERM "$pid"
	wait_until 30 "consumer$1 to stop" bash -c "! kill -0 $pid"
	rm -f "$(RUN_DIR)/consumer$1.pid"
}

stack_up() { "$STACK_SH" up >>"$CHAOS_DIR/stack-up.log" 2>&1 || { tail -n 20 "$CHAOS_DIR/stack-up.log" >&2; die "private stack: stack.sh up failed"; }; }

# ---------------------------------------------------------------- up/down

cmd_up() {
	[[ $(id -u) -eq 0 ]] || die "needs root (runs PostgreSQL as postgres, RabbitMQ as rabbitmq)"
	mkdir -p "$CHAOS_DIR" "$CHAOS_TMP" && chmod 755 "$CHAOS_TMP"
	local started=$SECONDS
	pg_create
	pg_start
	redis_start
	rabbit_start
	log "private PostgreSQL :$PGPORT, Redis :$REDIS_PORT, RabbitMQ $RABBITMQ_NODENAME :$RABBITMQ_PORT up"
	stack_up
	log "private stack up in $((SECONDS - started))s: nginx 127.0.0.1:$KV_NGINX_PORT (state $KV_STACK_DIR)"
}

cmd_down() {
	local n
	for n in 2 3; do consumer_stop "$n" 2>/dev/null || true; done
	"$STACK_SH" down >>"$CHAOS_DIR/stack-up.log" 2>&1 || true
	rabbit_stop || true
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
	pg_stop || true
	# Only after every private process is gone.
	if ! tcp_open "$RABBITMQ_PORT" && ! tcp_open "$PGPORT" && ! tcp_open "$REDIS_PORT"; then
		rm -rf "$CHAOS_TMP"
	else
		log "a private instance still answers; $CHAOS_TMP kept"
	fi
	log "private instances and stack torn down"
}

# ctl ACTION [N]: one step of the campaign, for the driver.
ctl() {
	case $1 in
	kill) kill9 "${2:?process}" ;;
	# heal NAME: start what died, as a supervisor would. `stack.sh start`, not
	# `up`: up rebuilds from the working tree, and a tree that changed during
	# the campaign would roll new binaries onto the processes that did not die.
	heal) "$STACK_SH" start "${2:?process}" >>"$CHAOS_DIR/stack-up.log" 2>&1 || die "stack.sh start $2 failed" ;;
	rabbit-stop) rabbit_stop ;;
	rabbit-start) rabbit_start ;;
	redis-stop) redis_stop ;;
	redis-start) redis_start ;;
	pg-stop) pg_stop ;;
	pg-start) pg_start ;;
	consumer-start) consumer_start "${2:?N}" ;;
	consumer-stop) consumer_stop "${2:?N}" ;;
	queues) queues ;;
	pids)
		local f
		for f in "$(RUN_DIR)"/*.pid; do
			[[ -e $f ]] || continue
			f=${f##*/}
			printf '%s %s\n' "${f%.pid}" "$(pid_of "${f%.pid}" || echo -)"
		done
		;;
	status) "$STACK_SH" status ;;
	*) die "ctl: unknown action $1" ;;
	esac
}

# wait_no_bench: a benchmark and the campaign would disturb each other.
wait_no_bench() {
	local deadline=$((SECONDS + ${CHAOS_BENCH_WAIT:-1800}))
	while pgrep -f 'bin/kvbench' >/dev/null; do
		((SECONDS < deadline)) || die "a benchmark (kvbench) is still running after ${CHAOS_BENCH_WAIT:-1800}s"
		log "a benchmark is running ($(pgrep -f 'bin/kvbench' | head -n1)); waiting"
		sleep 10
	done
}

cmd_run() {
	local mode=${1:-full} rc=0 started=$SECONDS
	# One campaign at a time on this machine: the private ports are fixed.
	mkdir -p "$(dirname "$CHAOS_DIR")"
	exec 9>"$CHAOS_DIR.lock"
	if ! flock -n 9; then
		log "another campaign runs (lock $CHAOS_DIR.lock); waiting"
		flock -w "${CHAOS_LOCK_WAIT:-1800}" 9 || die "another campaign still runs after ${CHAOS_LOCK_WAIT:-1800}s"
	fi
	wait_no_bench
	trap 'cmd_down' EXIT
	trap 'exit 130' INT TERM
	cmd_up
	local args=(-mode "$mode" -nginx "http://127.0.0.1:$KV_NGINX_PORT" -ctl "$0" -dir "$CHAOS_DIR")
	if [[ $mode == full ]]; then
		args+=(-out "$ROOT/docs/RELIABILITY.md")
		log "fuzz: every target for ${CHAOS_FUZZTIME:-15s} (make fuzz)"
		if ! make -C "$ROOT" --no-print-directory fuzz FUZZTIME="${CHAOS_FUZZTIME:-15s}" >"$CHAOS_DIR/fuzz.log" 2>&1; then
			tail -n 30 "$CHAOS_DIR/fuzz.log" >&2
			log "fuzz: FAILED; the crasher is under the package's testdata/fuzz (git status)"
			args+=(-fuzz failed)
		else
			args+=(-fuzz "passed ($(grep -c '^==> fuzz .* for ' "$CHAOS_DIR/fuzz.log") targets, ${CHAOS_FUZZTIME:-15s} each)")
		fi
	fi
	(cd "$ROOT" && "$GO" build -o "$KV_BIN_DIR/kvchaos" ./chaos) || die "go build ./chaos failed"
	"$KV_BIN_DIR/kvchaos" "${args[@]}" ${CHAOS_ARGS:-} || rc=$?
	log "campaign ($mode) finished in $((SECONDS - started))s, rc=$rc"
	return "$rc"
}

case ${1:-} in
run) cmd_run "${2:-full}" ;;
up) cmd_up ;;
down) cmd_down ;;
ctl) shift && ctl "$@" ;;
*) sed -n '2,12s/^# \{0,1\}//p' "$0" >&2 && exit 2 ;;
esac
