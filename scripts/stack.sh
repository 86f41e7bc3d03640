#!/usr/bin/env bash
# Run kvstack's whole topology from local binaries, without Docker.
#
#   scripts/stack.sh up          start what is missing, in the background (idempotent)
#   scripts/stack.sh run         up, then follow the logs; Ctrl-C stops what it started
#   scripts/stack.sh down        stop what the stack runs (never PostgreSQL/Redis/RabbitMQ)
#   scripts/stack.sh status      one line per process: up/down, pid, address
#   scripts/stack.sh logs        follow every log
#   scripts/stack.sh start NAME  start one process (and what it needs) when down
#   scripts/stack.sh stop NAME   stop one process
#   scripts/stack.sh render      render the nginx/Prometheus/Alertmanager configs
#   scripts/stack.sh jaeger      build bin/jaeger when missing or older than its go.sum
#
# Processes: jaeger, api1, api2, consumer, nginx, alertmanager, prometheus.
# PostgreSQL, Redis and RabbitMQ come from scripts/services.sh, which reuses
# them when they already run; `down` leaves them alone (they may be shared).
#
# Ports: stack.env at the repository root (KV_NGINX_PORT, KV_API1_PORT, ...);
# an environment variable of the same name wins. Also read from the
# environment: KV_STACK_DIR (state: .stack), KV_BIND_HOST (127.0.0.1),
# KV_STACK_TIMEOUT (seconds a process gets to become healthy: 60),
# KV_STOP_TIMEOUT (seconds between SIGTERM and SIGKILL: 20), NGINX_RATE_LIMIT
# (10000r/s), NGINX_RATE_BURST (20000), KV_MAX_BODY_BYTES (1048576),
# ALERT_WEBHOOK_URL, GO, KV_API_GOMAXPROCS (each API replica's GOMAXPROCS:
# 1; 0 leaves Go's default; see env_of), and whatever the binaries read
# (DATABASE_URL, ...).
# A second, private stack (scripts/chaos.sh): KV_BIN_DIR (bin: where the
# binaries are built, so that a private build never replaces the running
# stack's) and KV_STACK_PROCS (the processes to run, e.g. "api1 api2
# consumer nginx" without the observability ones).
# Test only: KV_ALERT_FOR (e.g. 5s) shortens every alert's `for:` and
# Alertmanager's group_wait/group_interval when the configs are rendered.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# stack.env: defaults only; the environment wins.
while IFS='=' read -r name value; do
	[[ $name =~ ^[A-Z][A-Z0-9_]*$ ]] || continue
	[[ -n ${!name:-} ]] || export "$name=$value"
done <"$ROOT/stack.env"

STACK=${KV_STACK_DIR:-$ROOT/.stack}
HOST=${KV_BIND_HOST:-127.0.0.1}
TIMEOUT=${KV_STACK_TIMEOUT:-60}
STOP_TIMEOUT=${KV_STOP_TIMEOUT:-20}
GO=${GO:-go}
BIN=${KV_BIN_DIR:-$ROOT/bin}
LOGS=$STACK/logs
RUN=$STACK/run
CONF=$STACK/config

# Template variables (nginx, Prometheus, Alertmanager). Each may be set.
export NGINX_LISTEN=${NGINX_LISTEN:-$HOST:$KV_NGINX_PORT}
export API1_ADDR=${API1_ADDR:-$HOST:$KV_API1_PORT}
export API2_ADDR=${API2_ADDR:-$HOST:$KV_API2_PORT}
export CONSUMER_ADDR=${CONSUMER_ADDR:-$HOST:$KV_CONSUMER_PORT}
export PROMETHEUS_ADDR=${PROMETHEUS_ADDR:-$HOST:$KV_PROMETHEUS_PORT}
export ALERTMANAGER_ADDR=${ALERTMANAGER_ADDR:-$HOST:$KV_ALERTMANAGER_PORT}
export RABBITMQ_METRICS_ADDR=${RABBITMQ_METRICS_ADDR:-$HOST:$RABBITMQ_METRICS_PORT}
export PROMETHEUS_RULES_DIR=${PROMETHEUS_RULES_DIR:-$ROOT/observability/rules}
export KV_MAX_BODY_BYTES=${KV_MAX_BODY_BYTES:-1048576}
export NGINX_RATE_LIMIT=${NGINX_RATE_LIMIT:-10000r/s}
export NGINX_RATE_BURST=${NGINX_RATE_BURST:-20000}
export NGINX_ACCESS_LOG=${NGINX_ACCESS_LOG:-$LOGS/nginx-access.log}
export NGINX_ERROR_LOG=${NGINX_ERROR_LOG:-$LOGS/nginx.log}
# Port 9 (discard) on loopback: alerts go nowhere until you say where.
export ALERT_WEBHOOK_URL=${ALERT_WEBHOOK_URL:-http://127.0.0.1:9/alerts}

# What the binaries read: the services' addresses follow their ports.
export DATABASE_URL=${DATABASE_URL:-postgres://kvstack:kvstack@$HOST:$PGPORT/kvstack?sslmode=disable}
export REDIS_ADDR=${REDIS_ADDR:-$HOST:$REDIS_PORT}
export RABBITMQ_URL=${RABBITMQ_URL:-amqp://guest:guest@$HOST:$RABBITMQ_PORT/}
# Traces of api1, api2 and the consumer go to the stack's Jaeger.
OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://$HOST:$KV_JAEGER_OTLP_HTTP_PORT}
OTLP_PROTOCOL=${OTEL_EXPORTER_OTLP_PROTOCOL:-http/protobuf}

# Jaeger reads its ports from observability/jaeger.yaml's ${env:...}.
export JAEGER_LISTEN_HOST=$HOST
export JAEGER_UI_PORT=$KV_JAEGER_UI_PORT
export JAEGER_OTLP_GRPC_PORT=$KV_JAEGER_OTLP_GRPC_PORT
export JAEGER_OTLP_HTTP_PORT=$KV_JAEGER_OTLP_HTTP_PORT

# ALL_PROCS is the whole topology (deploy/composetest checks compose has each).
ALL_PROCS=(jaeger api1 api2 consumer nginx alertmanager prometheus)
read -ra PROCS <<<"${KV_STACK_PROCS:-${ALL_PROCS[*]}}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- processes

# addr NAME: where NAME listens (the address its health is checked on).
addr() {
	case $1 in
	api1) echo "$API1_ADDR" ;;
	api2) echo "$API2_ADDR" ;;
	consumer) echo "$CONSUMER_ADDR" ;;
	nginx) echo "$NGINX_LISTEN" ;;
	prometheus) echo "$PROMETHEUS_ADDR" ;;
	alertmanager) echo "$ALERTMANAGER_ADDR" ;;
	jaeger) echo "$HOST:$KV_JAEGER_UI_PORT" ;;
	*) die "no process named '$1' (one of: ${PROCS[*]})" ;;
	esac
}

# health_path NAME: the HTTP path that answers 2xx when NAME is healthy.
health_path() {
	case $1 in
	api1 | api2 | consumer | nginx) echo /healthz ;;
	prometheus | alertmanager) echo /-/ready ;;
	jaeger) echo /api/services ;;
	esac
}

# command_of NAME: print NAME's command line, one word a line.
command_of() {
	case $1 in
	api1 | api2) printf '%s\n' "$BIN/api" ;;
	consumer) printf '%s\n' "$BIN/consumer" ;;
	nginx)
		printf '%s\n' nginx -p "$STACK/nginx/" -c "$CONF/nginx.conf" -e "$NGINX_ERROR_LOG" \
			-g "daemon off; pid $STACK/nginx/nginx.pid;"
		;;
	prometheus)
		printf '%s\n' prometheus --config.file="$CONF/prometheus.yml" \
			--storage.tsdb.path="$STACK/prometheus" --storage.tsdb.retention.time=2d \
			--web.listen-address="$PROMETHEUS_ADDR" --web.enable-lifecycle \
			--enable-feature=exemplar-storage
		;;
	alertmanager)
		printf '%s\n' prometheus-alertmanager --config.file="$CONF/alertmanager.yml" \
			--storage.path="$STACK/alertmanager" --web.listen-address="$ALERTMANAGER_ADDR" \
			--cluster.listen-address= --web.external-url="http://$ALERTMANAGER_ADDR"
		;;
	jaeger) printf '%s\n' "$BIN/jaeger" --config "$ROOT/observability/jaeger.yaml" ;;
	esac
}

# env_of NAME: the variables NAME gets on top of the stack's environment.
env_of() {
	local otel=("OTEL_EXPORTER_OTLP_ENDPOINT=$OTLP_ENDPOINT" "OTEL_EXPORTER_OTLP_PROTOCOL=$OTLP_PROTOCOL")
	# Two replicas share this machine's cores with everything else: one P
	# each spares the Go schedulers' spinning and wake-ups (bench/NOTES.md:
	# +25 % GET hits on 2 cores). docker-compose.yml says the same with cpus.
	local procs="GOMAXPROCS=${KV_API_GOMAXPROCS:-1}"
	case $1 in
	api1) printf '%s\n' "KV_HTTP_ADDR=$API1_ADDR" KV_INSTANCE_ID=api1 "$procs" "${otel[@]}" ;;
	api2) printf '%s\n' "KV_HTTP_ADDR=$API2_ADDR" KV_INSTANCE_ID=api2 "$procs" "${otel[@]}" ;;
	consumer) printf '%s\n' "KV_CONSUMER_ADDR=$CONSUMER_ADDR" KV_INSTANCE_ID=consumer1 "${otel[@]}" ;;
	# Jaeger does not trace itself into itself.
	jaeger) printf '%s\n' OTEL_TRACES_EXPORTER=none ;;
	esac
}

pidfile() { echo "$RUN/$1.pid"; }
logfile() { echo "$LOGS/$1.log"; }

# pid_of NAME: NAME's pid when it is alive and still the program we started
# (a recycled pid belongs to someone else).
pid_of() {
	local f pid exe
	f=$(pidfile "$1")
	[[ -r $f ]] || return 1
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	exe=$(command_of "$1" | head -n1)
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "${exe##*/}" || return 1
	echo "$pid"
}

# http_ok HOST:PORT PATH: true when a GET answers 2xx (bash only: no curl
# needed on a fresh machine).
http_ok() {
	local hostport=$1 path=$2
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 2 bash -c '
		exec 3<>"/dev/tcp/${0%:*}/${0##*:}" || exit 1
		printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" "$0" >&3
		IFS= read -r line <&3
		[[ $line =~ ^HTTP/1\.[01]\ 2 ]]' "$hostport" "$path" 2>/dev/null
}

tcp_open() {
	local hostport=$1
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 1 bash -c 'exec 3<>"/dev/tcp/${0%:*}/${0##*:}"' "$hostport" 2>/dev/null
}

healthy() { http_ok "$(addr "$1")" "$(health_path "$1")"; }

# is_up NAME: alive AND answering its health check.
is_up() { pid_of "$1" >/dev/null && healthy "$1"; }

# wait_healthy NAME: until NAME answers, or fail naming it and its log.
wait_healthy() {
	local name=$1 deadline=$((SECONDS + TIMEOUT)) pid
	until healthy "$name"; do
		# Alive is enough here: just after launch the pid may still be the
		# forked shell, not yet the program (pid_of checks the command).
		pid=$(<"$(pidfile "$name")")
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 15 "$(logfile "$name")" >&2 || true
			die "$name exited during start-up; see $(logfile "$name")"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 15 "$(logfile "$name")" >&2 || true
			die "$name (pid $pid) did not answer http://$(addr "$name")$(health_path "$name") within ${TIMEOUT}s; see $(logfile "$name")"
		fi
		sleep 0.2
	done
}

# launch NAME: start NAME detached (own session: a Ctrl-C meant for
# `make run` reaches the stack through its trap, in order) and record its pid.
launch() {
	local name=$1 cmd envs log
	mapfile -t cmd < <(command_of "$name")
	mapfile -t envs < <(env_of "$name")
	log=$(logfile "$name")
	printf '\n==> %s starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$log"
	(cd "$ROOT" && exec setsid env "${envs[@]}" "${cmd[@]}" >>"$log" 2>&1 </dev/null) &
	echo $! >"$(pidfile "$name")"
	binary_sum "$name" >"$RUN/$name.sum"
}

# binary_sum NAME: the checksum of the Go binary NAME runs (empty for the
# packaged programs), so that `up` can tell a rebuilt one.
binary_sum() {
	case $1 in
	api1 | api2) sha256sum <"$BIN/api" ;;
	consumer) sha256sum <"$BIN/consumer" ;;
	esac
}

# stale NAME: NAME runs a binary that was rebuilt since it started.
stale() {
	[[ -f $RUN/$1.sum ]] && [[ $(binary_sum "$1") != "$(<"$RUN/$1.sum")" ]]
}

# start NAME: make NAME up. Prints NAME when it had to start it.
start() {
	local name=$1 pid
	if pid=$(pid_of "$name") && ! healthy "$name"; then
		# Alive but not answering: give it its start-up time, then restart.
		log "$name: pid $pid not answering yet; waiting"
		(wait_healthy "$name") 2>/dev/null || {
			log "$name: pid $pid never answered; restarting it"
			stop "$name"
		}
	fi
	if pid=$(pid_of "$name"); then
		if ! stale "$name"; then
			log "$name: up (pid $pid) on $(addr "$name")"
			return
		fi
		# Rebuilt binary: restart, healthy before the next one is looked at,
		# so that nginx routes around the replica that restarts.
		log "$name: bin/ changed since it started (pid $pid); restarting it"
		stop "$name"
	fi
	if tcp_open "$(addr "$name")"; then
		die "$name: $(addr "$name") is taken by a program the stack did not start (stop it, or override the port: see stack.env)"
	fi
	launch "$name"
	wait_healthy "$name"
	log "$name: started (pid $(pid_of "$name")) on $(addr "$name"), log $(logfile "$name")"
	echo "$name"
}

# stop NAME...: SIGTERM, then SIGKILL after STOP_TIMEOUT; all at once.
stop() {
	local name pid pids=() names=() deadline i
	for name in "$@"; do
		if pid=$(pid_of "$name"); then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid") names+=("$name")
		fi
		rm -f "$(pidfile "$name")"
	done
	deadline=$((SECONDS + STOP_TIMEOUT))
	for i in "${!pids[@]}"; do
		while kill -0 "${pids[i]}" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				log "${names[i]}: still running after ${STOP_TIMEOUT}s; SIGKILL"
				kill -KILL "${pids[i]}" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
		log "${names[i]}: stopped (pid ${pids[i]})"
	done
}

# ---------------------------------------------------------------- preparing

ensure_envsubst() {
	command -v envsubst >/dev/null && return
	[[ $(id -u) -eq 0 ]] || die "envsubst is missing (apt-get install gettext-base)"
	log "packages: installing gettext-base (envsubst)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gettext-base >&2
}

# render TEMPLATE OUT VAR...: envsubst restricted to VARs; true when OUT changed.
render_one() {
	local template=$1 out=$2 vars="" v
	shift 2
	for v in "$@"; do vars+="\${$v} "; done
	envsubst "$vars" <"$template" >"$out.new"
	if cmp -s "$out.new" "$out"; then
		rm -f "$out.new"
		return 1
	fi
	mv "$out.new" "$out"
}

NGINX_VARS=(NGINX_LISTEN API1_ADDR API2_ADDR KV_MAX_BODY_BYTES NGINX_RATE_LIMIT NGINX_RATE_BURST NGINX_ACCESS_LOG NGINX_ERROR_LOG)
PROMETHEUS_VARS=(API1_ADDR API2_ADDR CONSUMER_ADDR RABBITMQ_METRICS_ADDR PROMETHEUS_ADDR ALERTMANAGER_ADDR PROMETHEUS_RULES_DIR)
ALERTMANAGER_VARS=(ALERT_WEBHOOK_URL)

# render: write the configs into $CONF, check them, and reload a running
# process whose config changed.
cmd_render() {
	ensure_envsubst
	mkdir -p "$CONF" "$LOGS" "$RUN" "$STACK/nginx" "$STACK/prometheus" "$STACK/alertmanager"
	if render_one "$ROOT/nginx/nginx.conf.template" "$CONF/nginx.conf" "${NGINX_VARS[@]}"; then
		nginx -q -t -p "$STACK/nginx/" -c "$CONF/nginx.conf" -e "$NGINX_ERROR_LOG" \
			-g "pid $STACK/nginx/nginx.pid;" || die "nginx rejects $CONF/nginx.conf (from nginx/nginx.conf.template)"
		reload nginx
	fi
	# Test only: KV_ALERT_FOR replaces every alert's `for:` (in a copy of the
	# rules) and Alertmanager's group_wait/group_interval, so that an
	# end-to-end test sees an alert fire, arrive and resolve in seconds.
	# Thresholds and windows stay as they are.
	local am_template=$ROOT/observability/alertmanager.yml f
	if [[ -n ${KV_ALERT_FOR:-} ]]; then
		[[ $KV_ALERT_FOR =~ ^[0-9]+(ms|s|m)$ ]] || die "KV_ALERT_FOR=$KV_ALERT_FOR: want a duration such as 5s"
		rm -rf "$CONF/rules-short" && mkdir -p "$CONF/rules-short"
		for f in "$PROMETHEUS_RULES_DIR"/*.yml; do
			sed -E "s/^([[:space:]]+for:).*/\1 $KV_ALERT_FOR/" "$f" >"$CONF/rules-short/${f##*/}"
		done
		sed -E "s/^([[:space:]]+group_(wait|interval):).*/\1 $KV_ALERT_FOR/" "$am_template" >"$CONF/alertmanager-short.yml"
		PROMETHEUS_RULES_DIR=$CONF/rules-short am_template=$CONF/alertmanager-short.yml
	fi
	# Prometheus also reloads when a rule file changed (promtool checks them).
	local rules_sum=""
	rules_sum=$(cat "$PROMETHEUS_RULES_DIR"/*.yml 2>/dev/null | sha256sum)
	if render_one "$ROOT/observability/prometheus.yml" "$CONF/prometheus.yml" "${PROMETHEUS_VARS[@]}" ||
		[[ $rules_sum != "$(cat "$CONF/rules.sum" 2>/dev/null)" ]]; then
		if command -v promtool >/dev/null; then
			promtool check config "$CONF/prometheus.yml" >/dev/null ||
				die "promtool rejects $CONF/prometheus.yml or a rule file (observability/prometheus.yml, $PROMETHEUS_RULES_DIR)"
		fi
		echo "$rules_sum" >"$CONF/rules.sum"
		reload prometheus
	fi
	if render_one "$am_template" "$CONF/alertmanager.yml" "${ALERTMANAGER_VARS[@]}"; then
		if command -v amtool >/dev/null; then
			amtool check-config "$CONF/alertmanager.yml" >/dev/null ||
				die "amtool rejects $CONF/alertmanager.yml (from observability/alertmanager.yml)"
		fi
		reload alertmanager
	fi
	return 0
}

reload() {
	local name=$1 pid
	pid=$(pid_of "$name") || return 0
	log "$name: config changed, reloading"
	kill -HUP "$pid"
}

# cmd_jaeger: bin/jaeger, built from the Go module proxy in its own module.
cmd_jaeger() {
	local dir=$ROOT/tools/jaeger started=$SECONDS pid
	if [[ -x $BIN/jaeger && $BIN/jaeger -nt $dir/go.sum ]]; then
		return
	fi
	log "jaeger: building Jaeger from the Go module proxy (first time: ~4 min)…"
	mkdir -p "$BIN"
	(cd "$dir" && "$GO" build -o "$BIN/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger) &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		if (((SECONDS - started) % 30 == 0)); then
			log "jaeger: still building ($((SECONDS - started))s)"
		fi
	done
	wait "$pid" || die "jaeger: build failed (cd tools/jaeger && $GO build github.com/jaegertracing/jaeger/cmd/jaeger)"
	mv "$BIN/jaeger.tmp" "$BIN/jaeger"
	log "jaeger: built bin/jaeger in $((SECONDS - started))s"
}

# prepare: everything the processes need before any starts.
prepare() {
	"$ROOT/scripts/services.sh" ensure all
	if [[ " ${PROCS[*]} " == *" jaeger "* ]]; then cmd_jaeger; fi
	log "build: bin/api bin/consumer bin/migrate"
	(cd "$ROOT" && "$GO" build -o "$BIN/" ./cmd/...) || die "go build ./cmd/... failed"
	mkdir -p "$LOGS" "$RUN"
	log "migrate: $BIN/migrate (log $(logfile migrate))"
	"$BIN/migrate" >>"$(logfile migrate)" 2>&1 || {
		tail -n 15 "$(logfile migrate)" >&2
		die "migrations failed; see $(logfile migrate)"
	}
	cmd_render
}

# ---------------------------------------------------------------- commands

# STARTED: the processes this invocation started (`run` stops those).
STARTED=()

cmd_up() {
	local started=$SECONDS name out
	prepare
	for name in "${PROCS[@]}"; do
		out=$(start "$name")
		[[ -z $out ]] || STARTED+=("$out")
	done
	log "stack up in $((SECONDS - started))s (started: ${STARTED[*]:-nothing, all were up})"
	log "API http://$NGINX_LISTEN/api   Prometheus http://$PROMETHEUS_ADDR   Alertmanager http://$ALERTMANAGER_ADDR   Jaeger http://$HOST:$KV_JAEGER_UI_PORT"
	log "logs: $(follow_command)"
}

follow_command() { echo "tail -F $LOGS/*.log"; }

cmd_start() {
	local name=${1:?usage: stack.sh start NAME}
	addr "$name" >/dev/null
	mkdir -p "$LOGS" "$RUN"
	case $name in
	nginx | prometheus | alertmanager) cmd_render ;;
	jaeger) cmd_jaeger ;;
	esac
	start "$name" >/dev/null
}

cmd_down() {
	local reversed=() i
	for ((i = ${#PROCS[@]} - 1; i >= 0; i--)); do reversed+=("${PROCS[i]}"); done
	stop "${reversed[@]}"
	log "stack down (PostgreSQL, Redis and RabbitMQ left running: scripts/services.sh status)"
}

cmd_status() {
	local name pid state rc=0
	for name in "${PROCS[@]}"; do
		pid=$(pid_of "$name") || pid=-
		state=down
		[[ $pid != - ]] && healthy "$name" && state=up
		[[ $state == up ]] || rc=3
		printf '%-18s %-5s %-8s %-22s %s\n' "$name" "$state" "$pid" "$(addr "$name")" "$(logfile "$name")"
	done
	"$ROOT/scripts/services.sh" status || rc=3
	return "$rc"
}

cmd_logs() {
	mkdir -p "$LOGS"
	exec tail -n 20 -F "$LOGS"/*.log
}

# cmd_run: up, then follow the logs until SIGINT/SIGTERM; then stop what
# this run started, in reverse order.
cmd_run() {
	local tail_pid
	cmd_up
	trap 'on_stop' INT TERM
	tail -n 0 -F "$LOGS"/*.log &
	tail_pid=$!
	log "following the logs; Ctrl-C stops ${STARTED[*]:-nothing (all were already up: make down stops them)}"
	# Watch for a process that dies, and say so: `make up` brings it back.
	local name down=()
	while true; do
		sleep 2 &
		wait $! || true
		for name in "${STARTED[@]}"; do
			if ! pid_of "$name" >/dev/null && [[ " ${down[*]} " != *" $name "* ]]; then
				log "$name exited; see $(logfile "$name") (make up restarts it)"
				down+=("$name")
			fi
		done
	done
}

on_stop() {
	trap '' INT TERM
	kill "$tail_pid" 2>/dev/null || true
	echo >&2
	log "stopping ${STARTED[*]:-nothing}"
	local reversed=() i
	for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do reversed+=("${STARTED[i]}"); done
	((${#reversed[@]} == 0)) || stop "${reversed[@]}"
	exit 0
}

usage() {
	sed -n '2,15s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

case ${1:-} in
up) cmd_up ;;
run) cmd_run ;;
down) cmd_down ;;
status) cmd_status ;;
logs) cmd_logs ;;
start) cmd_start "${@:2}" ;;
stop) stop "${2:?usage: stack.sh stop NAME}" ;;
render) cmd_render ;;
jaeger) cmd_jaeger ;;
*) usage ;;
esac
