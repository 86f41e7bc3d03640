package health

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/syncbuf"
)

// dependency is a check whose answer the test sets.
type dependency struct {
	err  atomic.Pointer[error]
	hang atomic.Bool // answers only when its context ends
}

func (d *dependency) set(err error) { d.err.Store(&err) }

func (d *dependency) ping(ctx context.Context) error {
	if d.hang.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if p := d.err.Load(); p != nil {
		return *p
	}
	return nil
}

// needs is a capability down when dep's check fails.
func needs(name, dep string) Capability {
	return Capability{Name: name, Assess: func(f Failed) Assessment {
		if f.Has(dep) {
			return Assessment{Down, dep + " unavailable"}
		}
		return Assessment{State: OK}
	}}
}

func waitStatus(t *testing.T, m *Monitor, want Status, what string) Report {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := m.Report()
		if r.Status == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %s, want %s (%+v)", what, r.Status, want, r)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMonitor(t *testing.T) {
	var a, b dependency
	var log syncbuf.Buffer
	cfg := Config{Timeout: 50 * time.Millisecond, Interval: 5 * time.Millisecond}
	m := NewMonitor(cfg, []Check{{"a", a.ping}, {"b", b.ping}}, []Capability{needs("x", "a"), needs("y", "b")}, zerolog.New(&log))

	r := m.Report()
	if r.Status != Starting || r.Ready() || len(r.Capabilities) != 2 || r.Capabilities[0].State != Down {
		t.Fatalf("before any check: %+v, want starting, every capability down", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	r = waitStatus(t, m, Ready, "all up")
	if r.Capabilities[0] != (CapabilityState{"x", Assessment{State: OK}}) || r.Checks[1].Text() != "ok" {
		t.Errorf("all up: %+v", r)
	}

	// One dependency down, or hung past the timeout: what needs it is
	// down, the process stays ready.
	b.hang.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for r = m.Report(); r.Capabilities[1].State != Down; r = m.Report() {
		if time.Now().After(deadline) {
			t.Fatalf("b hung: %+v, want y down", r)
		}
		time.Sleep(time.Millisecond)
	}
	if !r.Ready() || r.Capabilities[0].State != OK || r.Checks[1].Text() != "unavailable" || !errors.Is(r.Checks[1].Err, context.DeadlineExceeded) {
		t.Errorf("b hung: %+v, want ready, x ok, b unavailable", r)
	}

	// Every capability down: not ready.
	a.set(errors.New("refused"))
	waitStatus(t, m, NotReady, "all down")

	// Back: ready as soon as one capability is, so wait for both.
	a.set(nil)
	b.hang.Store(false)
	deadline = time.Now().Add(5 * time.Second)
	for r = waitStatus(t, m, Ready, "back"); r.Capabilities[0].State != OK || r.Capabilities[1].State != OK; r = m.Report() {
		if time.Now().After(deadline) {
			t.Fatalf("back: %+v, want x and y ok", r)
		}
		time.Sleep(time.Millisecond)
	}

	// Draining wins over everything.
	m.Drain()
	m.Drain()
	if r := m.Report(); r.Status != Draining || r.Ready() || r.Capabilities[0].State != OK {
		t.Errorf("draining: %+v, want draining, the capabilities still reported", r)
	}

	// Each change is logged once, however many rounds saw it.
	cancel()
	<-done
	text := log.String()
	for _, want := range []struct {
		line  string
		count int
	}{
		{`"dependency":"b","message":"dependency check failed"`, 1},
		{`"dependency":"a","message":"dependency check failed"`, 1},
		{`"dependency":"b","message":"dependency answers again"`, 1},
		{`"capability":"y","state":"down"`, 1},
		{`"message":"draining: not ready from now on"`, 1},
	} {
		if got := strings.Count(text, want.line); got != want.count {
			t.Errorf("log holds %q %d times, want %d:\n%s", want.line, got, want.count, text)
		}
	}
}

func TestCheckResultText(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{errors.New("dial tcp 10.0.0.1:5432: connection refused"), "unavailable"},
		{errors.Join(errors.New("not connected"), advice{}), advice{}.Error()},
	} {
		if got := (CheckResult{Name: "d", Err: tt.err}).Text(); got != tt.want {
			t.Errorf("Text of %v = %q, want %q", tt.err, got, tt.want)
		}
	}
}

type advice struct{}

func (advice) Error() string  { return "queue q is classic: run the migrations" }
func (advice) Advice() string { return "run the migrations" }

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if err := (Config{Timeout: time.Second}).Validate(); err == nil {
		t.Errorf("a zero interval passed")
	}
}
