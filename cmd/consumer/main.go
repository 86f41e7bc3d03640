// Command consumer applies the operations queued in RabbitMQ to PostgreSQL
// and Redis, last writer wins. It is configured by environment variables
// (docs/CONFIGURATION.md lists them).
package main

import (
	"github.com/kvstack/kvstack/internal/app"
)

func main() {
	app.Main("kv-consumer", app.RunConsumer)
}
