package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvstack/kvstack/internal/kv"
)

// fakeSession is a Session fed by the test.
type fakeSession struct {
	in   chan Delivery
	done chan struct{}
	err  error

	mu      sync.Mutex
	settled map[string][]kv.Outcome // body → outcomes it was settled with
	order   []string                // bodies in the order settled
	stopped bool
	closed  bool
}

func newFakeSession(bodies ...string) *fakeSession {
	s := &fakeSession{in: make(chan Delivery, 1000), done: make(chan struct{}), settled: map[string][]kv.Outcome{}}
	s.deliver(bodies...)
	return s
}

// deliver queues one delivery per body, kinds by prefix ("del…" deletes).
func (s *fakeSession) deliver(bodies ...string) {
	for i, b := range bodies {
		kind, queue := kv.KindPut, "add_key"
		if strings.HasPrefix(b, "del") {
			kind, queue = kv.KindDelete, "del_key"
		}
		s.in <- Delivery{Queue: queue, Kind: kind, Body: []byte(b), Tag: uint64(i + 1), Header: propagation.MapCarrier{}}
	}
}

func (s *fakeSession) Deliveries() <-chan Delivery { return s.in }
func (s *fakeSession) Done() <-chan struct{}       { return s.done }
func (s *fakeSession) Err() error                  { return s.err }
func (s *fakeSession) lose(err error)              { s.err = err; close(s.done) }

func (s *fakeSession) Settle(batch []Delivery, outcomes []kv.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, d := range batch {
		s.settled[string(d.Body)] = append(s.settled[string(d.Body)], outcomes[i])
		s.order = append(s.order, string(d.Body))
	}
	return nil
}

func (s *fakeSession) Stop() { s.mu.Lock(); s.stopped = true; s.mu.Unlock() }
func (s *fakeSession) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func (s *fakeSession) settledCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.order)
}

// fakeSource hands out its sessions in turn.
type fakeSource struct {
	mu       sync.Mutex
	sessions []*fakeSession
	opened   int
}

func (f *fakeSource) Open(context.Context) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.opened == len(f.sessions) {
		return nil, errors.New("broker down")
	}
	f.opened++
	return f.sessions[f.opened-1], nil
}

// handlerFunc is a Handler.
type handlerFunc func(ctx context.Context, batch []Message) ([]Result, error)

func (f handlerFunc) Handle(ctx context.Context, batch []Message) ([]Result, error) {
	return f(ctx, batch)
}

// recorder is a Handler that records the bodies of every call and answers
// with decide (every message applied when nil).
type recorder struct {
	mu     sync.Mutex
	calls  [][]string
	decide func(call int, batch []Message) ([]Result, error)
}

func (r *recorder) Handle(ctx context.Context, batch []Message) ([]Result, error) {
	r.mu.Lock()
	call := len(r.calls)
	var bodies []string
	for _, m := range batch {
		bodies = append(bodies, string(m.Body))
	}
	r.calls = append(r.calls, bodies)
	r.mu.Unlock()
	if r.decide != nil {
		return r.decide(call, batch)
	}
	return make([]Result, len(batch)), nil // kv.Applied is the zero Outcome
}

func (r *recorder) snapshot() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func testConfig() Config {
	c := DefaultConfig()
	c.BatchWait = 5 * time.Millisecond
	c.ShutdownGrace = time.Second
	return c
}

// run starts a runner and returns a func that stops it and checks that Run
// returned nil in time.
func run(t *testing.T, src Source, h Handler, cfg Config) (stop func()) {
	t.Helper()
	r := NewRunner(src, h, cfg, zerolog.New(zerolog.NewTestWriter(t)))
	r.retryMin, r.retryMax = time.Millisecond, 5*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v after cancel, want nil", err)
				}
			case <-time.After(cfg.ShutdownGrace + 5*time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

func TestRunnerBatches(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		wait      time.Duration
		delivered int
		want      []int // batch sizes
	}{
		{"by size", 10, 10 * time.Second, 30, []int{10, 10, 10}},
		{"by wait", 100, 50 * time.Millisecond, 7, []int{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess := newFakeSession(bodies("m", tt.delivered)...)
			cfg := testConfig()
			cfg.BatchSize, cfg.BatchWait = tt.size, tt.wait
			rec := &recorder{}
			start := time.Now()
			stop := run(t, &fakeSource{sessions: []*fakeSession{sess}}, rec, cfg)
			waitFor(t, "every message settled", func() bool { return sess.settledCount() == tt.delivered })
			if took := time.Since(start); tt.wait < time.Second && took < tt.wait {
				t.Errorf("a partial batch was handled after %s, before the %s wait", took, tt.wait)
			}
			stop()
			var sizes []int
			for _, c := range rec.snapshot() {
				sizes = append(sizes, len(c))
			}
			if !slices.Equal(sizes, tt.want) {
				t.Errorf("batch sizes = %v, want %v", sizes, tt.want)
			}
			if !sess.stopped || !sess.closed {
				t.Errorf("session stopped %v, closed %v; want both on stop", sess.stopped, sess.closed)
			}
		})
	}
}

func TestRunnerIsolatesWhatCannotBeApplied(t *testing.T) {
	tests := []struct {
		name string
		fail func(batch []Message) ([]Result, error) // for a batch holding "bad"
	}{
		{"invalid", func([]Message) ([]Result, error) { return nil, fmt.Errorf("store says no: %w", kv.ErrInvalid) }},
		{"panic", func([]Message) ([]Result, error) { panic("cannot cope") }},
		{"broken contract", func([]Message) ([]Result, error) { return []Result{}, nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess := newFakeSession("good1", "bad", "good2", "del1")
			rec := &recorder{decide: func(_ int, batch []Message) ([]Result, error) {
				for _, m := range batch {
					if string(m.Body) == "bad" {
						return tt.fail(batch)
					}
				}
				return make([]Result, len(batch)), nil
			}}
			stop := run(t, &fakeSource{sessions: []*fakeSession{sess}}, rec, testConfig())
			waitFor(t, "every message settled", func() bool { return sess.settledCount() == 4 })
			sess.deliver("later") // the queue keeps flowing
			waitFor(t, "the later message settled", func() bool { return sess.settledCount() == 5 })
			stop()

			want := map[string][]kv.Outcome{
				"good1": {kv.Applied}, "bad": {kv.DeadLettered}, "good2": {kv.Applied}, "del1": {kv.Applied}, "later": {kv.Applied},
			}
			for body, w := range want {
				if got := sess.settled[body]; !slices.Equal(got, w) {
					t.Errorf("%s settled %v, want %v", body, got, w)
				}
			}
			calls := rec.snapshot()
			if len(calls) < 5 || len(calls[0]) != 4 {
				t.Fatalf("calls = %v, want the batch of 4, then each message alone", calls)
			}
			for i, body := range []string{"good1", "bad", "good2", "del1"} {
				if !slices.Equal(calls[1+i], []string{body}) {
					t.Errorf("call %d = %v, want %s alone", 1+i, calls[1+i], body)
				}
			}
		})
	}
}

func TestRunnerKeepsTheBatchWhileAHandlerFails(t *testing.T) {
	errDown := fmt.Errorf("postgres is down: %w", kv.ErrUnavailable)
	tests := []struct {
		name     string
		failures int // calls that fail before success; -1: never succeeds
	}{
		{"recovers", 3},
		{"never recovers", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := bodies("m", 5)
			sess := newFakeSession(sent...)
			rec := &recorder{decide: func(call int, batch []Message) ([]Result, error) {
				if tt.failures < 0 || call < tt.failures {
					return nil, errDown
				}
				return make([]Result, len(batch)), nil
			}}
			stop := run(t, &fakeSource{sessions: []*fakeSession{sess}}, rec, testConfig())
			wantCalls := tt.failures + 1
			if tt.failures < 0 {
				wantCalls = 4
			}
			waitFor(t, fmt.Sprintf("%d handler calls", wantCalls), func() bool { return len(rec.snapshot()) >= wantCalls })
			stop()
			for i, got := range rec.snapshot() {
				if !slices.Equal(got, sent) {
					t.Errorf("call %d got %v, want the same batch %v", i, got, sent)
				}
			}
			wantSettled := len(sent)
			if tt.failures < 0 {
				wantSettled = 0 // never settled: the broker takes it back at close
			}
			if got := sess.settledCount(); got != wantSettled {
				t.Errorf("%d messages settled, want %d", got, wantSettled)
			}
			for body, outs := range sess.settled {
				if len(outs) != 1 || outs[0] != kv.Applied {
					t.Errorf("%s settled %v, want applied once: an outage must not dead-letter", body, outs)
				}
			}
		})
	}
}

func TestRunnerGracefulStopSettlesTheBatchInHand(t *testing.T) {
	sess := newFakeSession(bodies("m", 20)...)
	cfg := testConfig()
	cfg.BatchSize = 5
	release, entered := make(chan struct{}), make(chan struct{})
	handlerCtxErr := make(chan error, 1)
	rec := &recorder{}
	h := handlerFunc(func(ctx context.Context, b []Message) ([]Result, error) {
		res, err := rec.Handle(ctx, b)
		if len(rec.snapshot()) == 1 {
			close(entered)
			<-release
			handlerCtxErr <- ctx.Err()
		}
		return res, err
	})
	stop := run(t, &fakeSource{sessions: []*fakeSession{sess}}, h, cfg)
	<-entered
	go func() { time.Sleep(10 * time.Millisecond); close(release) }()
	stop() // while the batch is in hand
	if err := <-handlerCtxErr; err != nil {
		t.Errorf("the handler's context ended within the grace period: %v", err)
	}
	if got := len(rec.snapshot()); got != 1 {
		t.Errorf("handler called %d times, want only the batch in hand", got)
	}
	if got := sess.settledCount(); got != 5 {
		t.Errorf("%d settled, want the batch in hand (5); the rest goes back to the queue", got)
	}
}

func TestRunnerOpensANewSessionWhenOneIsLost(t *testing.T) {
	rec := recordSpans(t)
	first, second := newFakeSession("a1", "a2"), newFakeSession("a1", "a2", "a3")
	cfg := testConfig()
	cfg.BatchSize, cfg.BatchWait = 10, time.Hour // the batch stays open until the loss
	src := &fakeSource{sessions: []*fakeSession{first, second}}
	stop := run(t, src, &recorder{}, cfg)
	waitFor(t, "the first session's deliveries taken", func() bool { return len(first.in) == 0 })
	first.lose(errors.New("connection reset"))
	// The second session's batch closes by size once it has 10.
	second.deliver(bodies("b", 7)...)
	waitFor(t, "the second session settles", func() bool { return second.settledCount() == 10 })
	stop()
	if first.settledCount() != 0 || !first.closed {
		t.Errorf("the lost session settled %d and closed %v; want nothing settled, and closed", first.settledCount(), first.closed)
	}
	abandoned := 0
	for _, s := range rec.Ended() {
		if s.Status().Code == codes.Error && len(s.Events()) > 0 {
			abandoned++
		}
	}
	if abandoned != 2 {
		t.Errorf("%d spans ended as abandoned, want the lost session's 2", abandoned)
	}
}

func TestRunnerTracesEachMessageFromDeliveryToSettling(t *testing.T) {
	rec := recordSpans(t)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	ctx, producer := otel.Tracer("test").Start(context.Background(), "publish add_key", trace.WithSpanKind(trace.SpanKindProducer))
	header := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, header)
	producer.End()

	sess := newFakeSession()
	sess.in <- Delivery{Queue: "add_key", Kind: kv.KindPut, Body: []byte("good"), Tag: 1, Header: header,
		Attrs: []attribute.KeyValue{attribute.String("messaging.system", "rabbitmq")}}
	sess.in <- Delivery{Queue: "add_key", Kind: kv.KindPut, Body: []byte("bad"), Tag: 2, Header: propagation.MapCarrier{}}
	h := &recorder{decide: func(_ int, batch []Message) ([]Result, error) {
		res := make([]Result, len(batch))
		for i, m := range batch {
			if string(m.Body) == "bad" {
				res[i].Outcome = kv.DeadLettered
			}
		}
		return res, nil
	}}
	stop := run(t, &fakeSource{sessions: []*fakeSession{sess}}, h, testConfig())
	waitFor(t, "both settled", func() bool { return sess.settledCount() == 2 })
	stop()

	spans := spansNamed(rec, "process add_key")
	if len(spans) != 2 {
		t.Fatalf("%d process spans, want 2", len(spans))
	}
	for _, s := range spans {
		attrs := map[attribute.Key]string{}
		for _, a := range s.Attributes() {
			attrs[a.Key] = a.Value.String()
		}
		if s.SpanKind() != trace.SpanKindConsumer || attrs["messaging.operation.type"] != "process" || attrs["messaging.destination.name"] != "add_key" {
			t.Errorf("span %v: kind %v, attrs %v", s.Name(), s.SpanKind(), attrs)
		}
		switch outcome := attrs["kvstack.outcome"]; {
		case s.Parent().IsValid(): // the good one: the producer's child, and linked to it
			if s.Parent().SpanID() != producer.SpanContext().SpanID() || len(s.Links()) != 1 || attrs["messaging.system"] != "rabbitmq" {
				t.Errorf("good span: parent %v links %v attrs %v; want the producer's child, linked, with the source's attributes", s.Parent(), s.Links(), attrs)
			}
			if outcome != "applied" || s.Status().Code == codes.Error {
				t.Errorf("good span: outcome %q status %v", outcome, s.Status())
			}
		default:
			if outcome != "dead_lettered" || s.Status().Code != codes.Error {
				t.Errorf("bad span: outcome %q status %v; want dead_lettered and an error status", outcome, s.Status())
			}
		}
	}
}
