package app

import (
	"context"

	"github.com/kvstack/kvstack/internal/health"
)

// The dependencies the processes check, by the names /readyz shows.
const (
	checkPostgres = "postgres"
	checkRedis    = "redis"
	checkRabbitMQ = "rabbitmq"
	// checkClock fails while the API's clock is off from PostgreSQL's
	// (package clock): writes are refused.
	checkClock = "clock"
)

// What each process can do, and what each capability needs: the rule that
// /readyz and the kvstack_capability gauge follow (DESIGN.md, "Readiness").

// apiCapabilities: reads need PostgreSQL or Redis (without Redis they are
// served from PostgreSQL; without PostgreSQL, cache hits are served and a
// miss gets a prompt 503); writes need RabbitMQ (the consumer applies
// them later) and a clock in step with PostgreSQL's; the listing needs
// PostgreSQL.
var apiCapabilities = []health.Capability{
	{Name: "read", Assess: func(f health.Failed) health.Assessment {
		switch {
		case f.Has(checkPostgres) && f.Has(checkRedis):
			return health.Assessment{State: health.Down, Reason: "postgres and redis unavailable"}
		case f.Has(checkRedis):
			return health.Assessment{State: health.Degraded, Reason: "redis unavailable: reads served from postgres"}
		case f.Has(checkPostgres):
			return health.Assessment{State: health.Degraded, Reason: "postgres unavailable: cache hits served, a miss gets 503"}
		}
		return health.Assessment{State: health.OK}
	}},
	needs("write", checkRabbitMQ, checkClock),
	needs("list", checkPostgres),
}

// consumerCapabilities: applying needs RabbitMQ and PostgreSQL; without
// Redis the consumer applies all the same and owes the cache its updates
// (repaired once Redis is back).
var consumerCapabilities = []health.Capability{
	{Name: "apply", Assess: func(f health.Failed) health.Assessment {
		if a := needs("apply", checkRabbitMQ, checkPostgres).Assess(f); a.State == health.Down {
			return a
		}
		if f.Has(checkRedis) {
			return health.Assessment{State: health.Degraded, Reason: "redis unavailable: cache updates owed until it is back"}
		}
		return health.Assessment{State: health.OK}
	}},
}

// needs is a capability that is down when any of deps is.
func needs(name string, deps ...string) health.Capability {
	return health.Capability{Name: name, Assess: func(f health.Failed) health.Assessment {
		for _, d := range deps {
			if f.Has(d) {
				return health.Assessment{State: health.Down, Reason: d + " unavailable"}
			}
		}
		return health.Assessment{State: health.OK}
	}}
}

// dependencyChecks are the checks of a process's dependencies, each a ping.
func dependencyChecks(postgres, redis, rabbitmq func(context.Context) error) []health.Check {
	return []health.Check{
		{Name: checkPostgres, Ping: postgres},
		{Name: checkRedis, Ping: redis},
		{Name: checkRabbitMQ, Ping: rabbitmq},
	}
}
