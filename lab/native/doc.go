// Package native is kvstack's native topology, defined once: the processes
// of the stack (their commands, environment, health checks and ports), the
// stack.env parser and the configuration templates it renders. The
// processes run under a supervisord of the stack's own (internal/supervisor).
//
// lab/cmd/stack (make up/run/down/status/logs) drives it; the chaos campaign,
// the end-to-end tests and deploy/composetest read the same definitions.
// Its sub-package engines places internal/engine's private PostgreSQL, Redis
// and RabbitMQ instances on the stack's ports.
//
// The package uses the standard library and internal/supervisor only, so
// that deploy/composetest, a module of its own, can import it without
// taking kvstack's dependencies.
package native
