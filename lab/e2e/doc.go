// Package e2e holds kvstack's end-to-end tests: they talk to the running
// native stack (bin/stack, lab/native: nginx in front of api1 and api2,
// the consumer, PostgreSQL, Redis, RabbitMQ) through nginx over HTTPS,
// trusting the stack's local CA (KV_TLS_CA), the way a client does, and
// kill and restart its processes.
//
// The tests carry the build tag e2e so that `go test ./...` leaves them out;
// `make e2e` starts what is missing and runs them:
//
//	make e2e            # or: make up && go test -tags e2e -count=1 ./e2e/...
//
// Addresses come from the stack's own settings (lab/native: stack.env
// and the same environment variables, KV_NGINX_PORT, KV_BIND_HOST,
// KV_STACK_DIR, ...).
// A part of the stack that does not answer fails the test, naming it.
package e2e
