package native

import (
	"fmt"
	"net/url"
	"strings"
)

// Link is how the stack's processes reach one engine, read from the URLs
// they are given.
type Link struct {
	Engine string // postgresql, redis, rabbitmq
	Addr   string // the first host:port
	// TLS is true when the processes connect over TLS and check the
	// server's certificate (sslmode=verify-full, rediss://, amqps://).
	TLS bool
	// Own is true when the engine is the stack's (KV_ENGINES=private, the
	// HA topology); else it is the machine's shared one, which the stack
	// never reconfigures.
	Own bool
}

// Links are the stack's links to PostgreSQL, Redis and RabbitMQ, as the
// API replicas and the consumers make them.
func Links(s *Settings) []Link {
	pg := s.Get("KV_APP_DATABASE_URL")
	q := ""
	if i := strings.IndexByte(pg, '?'); i >= 0 {
		q = pg[i+1:]
	}
	params, _ := url.ParseQuery(q)
	redis := s.Get("REDIS_ADDR")
	mq := s.Get("KV_API_RABBITMQ_URL")
	host := func(raw string) string {
		raw, _, _ = strings.Cut(raw, ",")
		if _, rest, ok := strings.Cut(raw, "://"); ok {
			raw = rest
		}
		if _, rest, ok := strings.Cut(raw, "@"); ok {
			raw = rest
		}
		raw, _, _ = strings.Cut(raw, "/")
		return raw
	}
	own := s.PrivateEngines()
	return []Link{
		{Engine: "postgresql", Addr: host(pg), TLS: params.Get("sslmode") == "verify-full", Own: own},
		{Engine: "redis", Addr: host(redis), TLS: strings.HasPrefix(redis, "rediss://"), Own: own},
		{Engine: "rabbitmq", Addr: host(mq), TLS: strings.HasPrefix(mq, "amqps://"), Own: own},
	}
}

// String is the link as up and status print it.
func (l Link) String() string {
	how := "TLS, certificate verified"
	if !l.TLS {
		how = "PLAIN TCP (not encrypted)"
	}
	whose := "the machine's shared engine, not the stack's to reconfigure"
	if l.Own {
		whose = "the stack's own engine"
	}
	return fmt.Sprintf("%-10s %-22s %s: %s", l.Engine, l.Addr, how, whose)
}
