// Package composetest proves docker-compose.yml, docker-compose.ha.yml (the
// HA topology, ha_test.go) and the Dockerfile without a Docker engine: it
// loads each compose file with compose-go, the loader Docker Compose
// itself uses, and checks it against the native stack's own definitions
// (lab/native: stack.env, its processes, its templates) and the files
// of the repository. The exporters run in compose with the
// commands lab/native builds for them, on what their neighbours serve,
// at the releases of the Debian packages the native stack runs
// (exporters_test.go).
//
// It also catches what would only show once the containers run
// (runtime_test.go): a healthcheck that passes too early or runs a program
// its image lacks, a builder image older than go.mod, a service that keeps
// what it read at start after compose replaced it, variables no binary
// reads or loopback defaults left in place, and the rendered configs as
// promtool, amtool, nginx -t and jaeger validate judge them. Each check is
// shown failing on a broken copy of the repository.
//
// It is a module of its own so that compose-go's dependencies never enter
// kvstack's go.mod; it takes kvstack's module from the repository itself
// (replace ../..), and imports only lab/native, which uses the standard
// library alone. A change of kvstack's go.mod may need a `go mod tidy`
// here too: `make test-compose` says so. Run it with `make test-compose`
// (part of `make test`).
package composetest
