// Package composetest proves docker-compose.yml and the Dockerfile without a
// Docker engine: it loads the compose file with compose-go, the loader
// Docker Compose itself uses, and checks it against the native stack
// (stack.env, scripts/stack.sh) and the files of the repository.
//
// It is a module of its own so that compose-go's dependencies never enter
// kvstack's go.mod. Run it with `make test-compose` (part of `make test`).
package composetest
