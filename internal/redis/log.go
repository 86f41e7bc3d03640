package redis

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
)

// DriverLogger routes go-redis's own messages (failed dials, pool trouble)
// into the service's JSON log instead of plain lines on stderr. Install it
// once at start-up: goredis.SetLogger(redis.DriverLogger{Log: log}). go-redis
// logs connection events, never command arguments, so no value reaches it.
type DriverLogger struct {
	Log zerolog.Logger
}

// Printf implements go-redis's logging interface. Messages are warnings: the
// driver logs only when something went wrong.
func (l DriverLogger) Printf(ctx context.Context, format string, v ...any) {
	l.Log.Warn().Ctx(ctx).Str("component", "go-redis").Msg(fmt.Sprintf(format, v...))
}
