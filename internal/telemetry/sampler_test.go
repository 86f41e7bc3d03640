package telemetry

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestSamplerFromEnv(t *testing.T) {
	for _, tc := range []struct {
		sampler, arg, want string
	}{
		{"", "", "LinkedRoots{ParentBased{root:AlwaysOnSampler,remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}}"},
		{"parentbased_traceidratio", "0.1", "LinkedRoots{ParentBased{root:TraceIDRatioBased{0.1},remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}}"},
		{"traceidratio", "", "LinkedRoots{TraceIDRatioBased{1}}"},
		{"always_off", "", "AlwaysOffSampler"},
		{"ALWAYS_ON", "", "LinkedRoots{AlwaysOnSampler}"},
	} {
		t.Setenv("OTEL_TRACES_SAMPLER", tc.sampler)
		t.Setenv("OTEL_TRACES_SAMPLER_ARG", tc.arg)
		s, err := SamplerFromEnv()
		if err != nil {
			t.Fatalf("%s %s: %v", tc.sampler, tc.arg, err)
		}
		if got := s.Description(); got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.sampler, tc.arg, got, tc.want)
		}
	}
	for _, bad := range [][2]string{{"jaeger_remote", ""}, {"traceidratio", "2"}, {"parentbased_traceidratio", "x"}} {
		t.Setenv("OTEL_TRACES_SAMPLER", bad[0])
		t.Setenv("OTEL_TRACES_SAMPLER_ARG", bad[1])
		if _, err := SamplerFromEnv(); err == nil {
			t.Errorf("%s %s: no error", bad[0], bad[1])
		}
	}
}

// A root linked to a sampled span is sampled whatever the ratio; one
// linked to unsampled spans only, or a child, is the wrapped sampler's.
func TestLinkedRoots(t *testing.T) {
	s := LinkedRoots(sdktrace.ParentBased(sdktrace.NeverSample()))
	sc := func(sampled bool) trace.SpanContext {
		cfg := trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}}
		if sampled {
			cfg.TraceFlags = trace.FlagsSampled
		}
		return trace.NewSpanContext(cfg)
	}
	for _, tc := range []struct {
		name   string
		parent context.Context
		links  []trace.Link
		want   sdktrace.SamplingDecision
	}{
		{"root linked to a sampled span", context.Background(), []trace.Link{{SpanContext: sc(false)}, {SpanContext: sc(true)}}, sdktrace.RecordAndSample},
		{"root linked to unsampled spans", context.Background(), []trace.Link{{SpanContext: sc(false)}}, sdktrace.Drop},
		{"root without links", context.Background(), nil, sdktrace.Drop},
		{"child of an unsampled span, linked to a sampled one", trace.ContextWithSpanContext(context.Background(), sc(false)), []trace.Link{{SpanContext: sc(true)}}, sdktrace.Drop},
	} {
		got := s.ShouldSample(sdktrace.SamplingParameters{ParentContext: tc.parent, TraceID: trace.TraceID{2}, Name: "apply batch", Links: tc.links})
		if got.Decision != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got.Decision, tc.want)
		}
	}
}
