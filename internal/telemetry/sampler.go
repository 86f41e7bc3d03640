package telemetry

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// SamplerFromEnv is the sampler that OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, as the SDK reads them itself (always_on,
// always_off, traceidratio, parentbased_always_on — the default —,
// parentbased_always_off, parentbased_traceidratio; the ratio's argument
// defaults to 1), with one rule on top, except for always_off: a new root
// linked to a sampled span is sampled (LinkedRoots).
//
// Production sampling is parentbased_traceidratio (docs/OBSERVABILITY.md: Sampling in production): the
// API decides where a trace starts, and the decision travels with the
// message (the traceparent's flags in the AMQP headers), so that a sampled
// write is whole from the request to the cache, and an unsampled one costs
// almost nothing downstream.
func SamplerFromEnv() (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := 1.0
	if strings.HasSuffix(name, "traceidratio") && arg != "" {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1", arg)
		}
		ratio = r
	}
	var s sdktrace.Sampler
	switch name {
	case "", "parentbased_always_on":
		s = sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "parentbased_always_off":
		s = sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		s = sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	case "always_on":
		s = sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample(), nil // off means off, links or not
	case "traceidratio":
		s = sdktrace.TraceIDRatioBased(ratio)
	default:
		return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or parentbased_ one of them", name)
	}
	return LinkedRoots(s), nil
}

// LinkedRoots samples a new root span (no parent) that links to a sampled
// span, and leaves every other decision to s. The consumer's "apply batch"
// span is such a root: the parent of a batch's real PostgreSQL and Redis
// spans, linked to each message's span. Sampled by ratio on its own, it
// would be missing from most sampled messages' links at a low ratio, and
// recorded for batches of unsampled messages; with this rule it is recorded
// exactly when some message of its batch is.
func LinkedRoots(s sdktrace.Sampler) sdktrace.Sampler { return linkedRoots{s} }

type linkedRoots struct{ next sdktrace.Sampler }

func (l linkedRoots) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if !trace.SpanContextFromContext(p.ParentContext).IsValid() {
		for _, link := range p.Links {
			if link.SpanContext.IsSampled() {
				return sdktrace.SamplingResult{
					Decision:   sdktrace.RecordAndSample,
					Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState(),
				}
			}
		}
	}
	return l.next.ShouldSample(p)
}

func (l linkedRoots) Description() string {
	return "LinkedRoots{" + l.next.Description() + "}"
}
