package main

import (
	"context"
	"time"
)

// fault is one scenario: inject under load, hold, heal; then the checks.
type fault struct {
	name, what string
	before     []string // ctl actions before the load starts (extra consumers)
	inject     []string // ctl action and argument
	hold       time.Duration
	heal       [][]string // ctl actions, in order
	after      []string   // ctl actions once checked (stop extra consumers)
	killed     []string   // processes the fault kills (brought back by heal)
	supervisor bool       // heal is `stack.sh start NAME` restarting what died
	// reads may fail while the fault holds (PostgreSQL down: a cache miss
	// has nowhere to go).
	readsMayFail bool
	// writes may fail while the fault holds (broker down, replica killed).
	writesMayFail bool
}

func faults(mode string) []fault {
	all := []fault{
		{name: "baseline", what: "no fault: load, drain, checks"},
		{
			name: "consumer-kill9", what: "kill -9 the consumer under load (batches in flight), restart it",
			inject: []string{"kill", "consumer"}, hold: 3 * time.Second,
			heal: [][]string{{"heal", "consumer"}}, killed: []string{"consumer"}, supervisor: true,
		},
		{
			name: "rabbitmq-restart", what: "stop the RabbitMQ node and start it again at once",
			inject: []string{"rabbit-stop"}, heal: [][]string{{"rabbit-start"}}, writesMayFail: true,
		},
		{
			name: "rabbitmq-stop-10s", what: "RabbitMQ node stopped for 10 s while clients write",
			inject: []string{"rabbit-stop"}, hold: 10 * time.Second, heal: [][]string{{"rabbit-start"}}, writesMayFail: true,
		},
		{
			name: "redis-stop-10s", what: "Redis stopped 10 s (SHUTDOWN SAVE), restarted with its old dump: entries older than PostgreSQL come back",
			inject: []string{"redis-stop"}, hold: 10 * time.Second, heal: [][]string{{"redis-start"}},
		},
		{
			name: "postgres-stop-10s", what: "PostgreSQL stopped 10 s (immediate mode, crash recovery on start)",
			inject: []string{"pg-stop"}, hold: 10 * time.Second, heal: [][]string{{"pg-start"}}, readsMayFail: true,
		},
		{
			name: "api1-kill9", what: "kill -9 api1 under load; nginx routes around it; restarted",
			inject: []string{"kill", "api1"}, hold: 3 * time.Second,
			heal: [][]string{{"heal", "api1"}}, killed: []string{"api1"}, supervisor: true, writesMayFail: true,
		},
		{
			name: "consumers-2-kill1", what: "two consumers; kill -9 the stack's consumer; restarted",
			before: []string{"consumer-start", "2"}, after: []string{"consumer-stop", "2"},
			inject: []string{"kill", "consumer"}, hold: 3 * time.Second,
			heal: [][]string{{"heal", "consumer"}}, killed: []string{"consumer"}, supervisor: true,
		},
		{
			name: "consumers-3-kill1", what: "three consumers; kill -9 consumer3; restarted",
			before: []string{"consumer-start", "2", "consumer-start", "3"}, after: []string{"consumer-stop", "2", "consumer-stop", "3"},
			inject: []string{"kill", "consumer3"}, hold: 3 * time.Second,
			heal: [][]string{{"consumer-start", "3"}}, killed: []string{"consumer3"},
		},
	}
	if mode != "short" {
		return all
	}
	short := map[string]bool{"consumer-kill9": true, "rabbitmq-stop-10s": true, "redis-stop-10s": true, "api1-kill9": true}
	var out []fault
	for _, f := range all {
		if short[f.name] {
			out = append(out, f)
		}
	}
	return out
}

// pairs splits ["a","1","b","2"] into actions of two words.
func pairs(words []string) [][]string {
	var out [][]string
	for i := 0; i+1 < len(words); i += 2 {
		out = append(out, words[i:i+2])
	}
	return out
}

// ctlFunc runs one scripts/chaos.sh ctl action.
type ctlFunc func(ctx context.Context, args ...string) (string, error)
