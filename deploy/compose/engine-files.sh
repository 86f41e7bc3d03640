#!/bin/sh
# engine-files.sh USER COMMAND...: an engine container's entrypoint in
# docker compose. Copies the files compose mounts read-only in
# /kvstack/engine-in (the engine's TLS certificate and key, the CA, its
# users' file: `make compose-secrets` makes them, mode 0600 on the host)
# to /run/kvstack, owned by USER with mode 0600, then runs COMMAND: the
# image's own entrypoint. The engines start as root and drop to USER;
# PostgreSQL refuses a key that others may read, and no engine user could
# read a host file of another owner.
set -eu
user=$1
shift
install -d -o "$user" -m 0700 /run/kvstack
for f in /kvstack/engine-in/*; do
	install -o "$user" -m 0600 "$f" "/run/kvstack/${f##*/}"
done
exec "$@"
