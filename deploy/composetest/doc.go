// Package composetest proves docker-compose.yml, docker-compose.ha.yml (the
// HA topology, ha_test.go) and the Dockerfile without a Docker engine: it
// loads each compose file with compose-go, the loader Docker Compose
// itself uses, and checks it against the native stack's own definitions
// (lab/native: stack.env, its processes, its templates) and the files
// of the repository. The exporters run in compose with the
// commands lab/native builds for them, on what their neighbours serve,
// at supported releases pinned in deploy/k8s/VERSIONS.md, newer than the
// Debian packages the native stack runs (exporters_test.go).
//
// It also catches what would only show once the containers run
// (runtime_test.go): a healthcheck that passes too early or runs a program
// its image lacks, a builder image older than go.mod, a service that keeps
// what it read at start after compose replaced it, variables no binary
// reads or loopback defaults left in place, and the rendered configs as
// promtool, amtool, nginx -t and jaeger validate judge them. Each check is
// shown failing on a broken copy of the repository.
//
// The engines' users and TLS in docker-compose.yml (privilege_test.go)
// run on real engines, private ones (internal/engine/enginetest): compose's
// PostgreSQL init script, the RabbitMQ definitions and Redis ACL file that
// `make compose-secrets` renders (lab/compose), redis-server with
// compose's redis.conf, and the real cmd/migrate; then each service's
// credentials are tried there for what they may and may not do.
// compose's rabbitmq.conf boots a private RabbitMQ node
// (rabbitmqconf_test.go). docker-compose.ha.yml's PostgreSQL is booted
// too (patroni_test.go): its etcd members and its nodes' Patroni with
// deploy/compose-ha/patroni.yml, the roles script and the rendered TLS
// files, on private ports, then each service's credentials are tried and
// the leader's node is lost.
//
// docker-compose.yml's API asks for a token (auth_test.go): each
// replica's compose environment, loaded by the API's own config and served
// by its own authenticator and routes over a stub store, answers 401 with
// a Bearer challenge to no token and 200 to one from `make token`, whose
// key set is the one compose mounts.
//
// It is a module of its own so that compose-go's dependencies never enter
// kvstack's go.mod; it takes kvstack's module and lab's from the
// repository itself (replace ../.. and ../../lab). A change of kvstack's go.mod may need a `go mod tidy`
// here too: `make test-compose` says so. Run it with `make test-compose`
// (part of `make test`).
package composetest
