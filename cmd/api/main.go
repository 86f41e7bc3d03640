// Command api serves kvstack's HTTP API: reads cache-aside from Redis and
// PostgreSQL, writes and deletes published durably to RabbitMQ. It is
// configured by environment variables (docs/CONFIGURATION.md lists them).
package main

import (
	"github.com/kvstack/kvstack/internal/app"
)

func main() {
	app.Main("kv-api", app.RunAPI)
}
