// Command stack runs kvstack's whole topology natively, under a private
// supervisord (lab/native): make up/run/down/status/logs call it.
//
//	stack up            start what is down, in the background (idempotent)
//	stack up-ha         up, of the HA topology (KV_TOPOLOGY=ha)
//	stack run           up, then follow the logs; Ctrl-C stops the stack
//	                    (unless it already ran before: then it is left up)
//	stack down          stop every process and supervisord (never the
//	                    shared PostgreSQL, Redis, RabbitMQ)
//	stack status        each process: supervisord's state, health, pid
//	stack logs          follow every log
//	stack start|stop|restart NAME   one process
//	stack render        render, check and reload the configs
//	stack jaeger        link bin/jaeger to the machine's shared Jaeger build (built when missing)
//	stack jaeger-up     jaeger, then start the stack's Jaeger and wait until it
//	                    answers (up runs it in the background when Jaeger was
//	                    not built yet; e2e and bench run it after up)
//	stack env           stack.env and the settings, with their defaults
//	stack running       exit 0 when the stack's supervisord runs
//	stack services ARGS lab/scripts/services.sh with stack.env's ports
//	stack backups       the backup scheduler of a stack with engines of its
//	                    own (KV_ENGINES=private; its supervisord runs it)
//	stack backup [-type full|diff|incr] [-wait 30m]
//	                    a pgBackRest backup now (make backup), after the
//	                    one in progress, if any, has ended
//	stack restore -to T [-yes]
//	                    point-in-time restore of that stack (make restore)
//	stack token [-role R,…] [-sub S] [-ttl D]
//	                    print a token signed by the stack's key (made on the
//	                    first start in KV_STACK_DIR/auth); default an admin's
//	                    for 24h (make token)
//	stack tls           make the stack's local CA and the edge's certificate
//	                    when missing or due (as up does) and print where they
//	                    are (make tls)
//	stack compose-secrets
//	                    tls and the token key's JWKS, then compose's secrets
//	                    in .env (random where empty) and the engines'
//	                    certificates and users in KV_STACK_DIR/compose
//	                    (make compose-secrets; lab/compose)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvstack/kvstack/lab/native"
)

const usage = `usage: stack up | up-ha | run | down | status | logs | start NAME | stop NAME | restart NAME |
             render | jaeger | jaeger-up | env | running | services ARGS... |
             backups | backup [-type full|diff|incr] [-wait D] | restore -to T [-yes] |
             token [-role R,...] [-sub S] [-ttl D] | tls | compose-secrets`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	root, err := native.FindRoot()
	if err != nil {
		fail(err)
	}
	cmd, environ := os.Args[1], os.Environ()
	if cmd == "up-ha" {
		cmd, environ = "up", append(environ, "KV_TOPOLOGY=ha")
	}
	c, err := newCLI(root, environ, cmd)
	if err != nil {
		fail(err)
	}
	code, err := c.run(ctx, cmd, os.Args[2:])
	if err != nil {
		fail(err)
	}
	os.Exit(code)
}

func fail(err error) {
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "==> ERROR:", err)
	os.Exit(1)
}

type usageError struct{}

func (usageError) Error() string { return usage }
