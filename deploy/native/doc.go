// Package native is kvstack's native topology, defined once: the processes
// of the stack (their commands, environment, health checks and ports), the
// stack.env parser, the configuration templates it renders, and the
// supervisord that runs and restarts the processes.
//
// cmd/stack (make up/run/down/status/logs) drives it; the chaos campaign,
// the end-to-end tests and deploy/composetest read the same definitions.
// Its sub-package engine runs private PostgreSQL, Redis and RabbitMQ
// instances under the same supervisor.
//
// The package uses the standard library only, so that deploy/composetest,
// a module of its own, can import it without taking kvstack's
// dependencies.
package native
