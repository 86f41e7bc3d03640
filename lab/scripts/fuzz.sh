#!/usr/bin/env bash
# Run every Fuzz* target found under the given packages, one after another,
# each for FUZZTIME. A failing input is saved under testdata/fuzz/<Target>:
# commit it, it then runs as a regression case in every `go test`.
#
#   FUZZTIME=10s lab/scripts/fuzz.sh [packages...]   (default ./internal/...)
set -euo pipefail

GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-10s}"

# list_targets PKGS...: print "PACKAGE TARGET" for each fuzz target.
# `go test -list` prints a package's names, then its "ok  <pkg>" line.
list_targets() {
	"$GO" test -list '^Fuzz' "$@" | awk '
		/^Fuzz/ { names[n++] = $1; next }
		/^ok[ \t]/ { for (i = 0; i < n; i++) print $2, names[i]; n = 0 }
	'
}

main() {
	local targets pkg name count=0
	(($# > 0)) || set -- ./internal/...
	targets=$(list_targets "$@")
	while read -r pkg name; do
		[[ -n $name ]] || continue
		printf '==> fuzz %s %s for %s\n' "$pkg" "$name" "$FUZZTIME" >&2
		"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"
		count=$((count + 1))
	done <<<"$targets"
	printf '==> fuzz: %d target(s) run\n' "$count" >&2
}

main "$@"
