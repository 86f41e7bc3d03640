// Package telemetry sets up what makes kvstack observable: the zerolog
// logger, stamped with trace and span ids inside a span, and (elsewhere in
// this package) tracing and metrics.
package telemetry

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a JSON logger for service at level ("debug", "info",
// …); an unknown level is reported and info is used.
func NewLogger(w io.Writer, service, level string) zerolog.Logger {
	if w == nil {
		w = os.Stderr
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	lvl, err := zerolog.ParseLevel(level)
	log := zerolog.New(w).With().Timestamp().Str("service", service).Logger()
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	log = log.Level(lvl)
	if err != nil {
		log.Warn().Str("level", level).Msg("unknown log level; using info")
	}
	return log
}

// WithTrace returns log with the trace_id and span_id of the span in ctx, if
// there is one.
func WithTrace(ctx context.Context, log zerolog.Logger) zerolog.Logger {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return log
	}
	return log.With().Str("trace_id", sc.TraceID().String()).Str("span_id", sc.SpanID().String()).Logger()
}
