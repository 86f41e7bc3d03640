package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/kvstack/kvstack/internal/auth/mint"
	"github.com/kvstack/kvstack/internal/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testIssuer   = "https://issuer.test"
	testAudience = "kvstack"
)

// clock is a settable time for WithClock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// fixture is an Authenticator's surroundings: a signing key whose public
// set is in a JWKS file, the test policy, a registry and a clock.
type fixture struct {
	key   *mint.Key
	dir   string
	cfg   Config
	reg   *prometheus.Registry
	clock *clock
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{key: mustKey(t, mint.NewEd25519), dir: t.TempDir(), reg: prometheus.NewRegistry(), clock: newClock()}
	f.writeJWKS(t, f.key)
	policy := filepath.Join(f.dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	f.cfg = Config{
		Enabled:     true,
		JWKSFile:    filepath.Join(f.dir, "jwks.json"),
		JWKSRefresh: time.Hour,
		Issuer:      testIssuer,
		Audience:    testAudience,
		Leeway:      30 * time.Second,
		PolicyFile:  policy,
		Algorithms:  DefaultAlgorithms,
		CacheSize:   100,
	}
	return f
}

func mustKey(t testing.TB, make func() (*mint.Key, error)) *mint.Key {
	t.Helper()
	k, err := make()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeJWKS replaces the JWKS file with the public set of keys.
func (f *fixture) writeJWKS(t testing.TB, keys ...*mint.Key) {
	t.Helper()
	raw, err := mint.JWKS(keys...)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.dir, "jwks.json")
	if err := os.WriteFile(path+".tmp", raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// auth builds the Authenticator of f.cfg; it stops with the test.
func (f *fixture) auth(t testing.TB) *Authenticator {
	t.Helper()
	a, err := f.start(t)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func (f *fixture) start(t testing.TB) (*Authenticator, error) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return New(ctx, f.cfg, zerolog.Nop(), metrics.NewAuth(f.reg), WithClock(f.clock.now))
}

// claims are valid claims for f, as subject with roles, living an hour.
func (f *fixture) claims(subject string, roles ...string) mint.Claims {
	return mint.Claims{Issuer: testIssuer, Audience: testAudience, Subject: subject, Roles: roles,
		TTL: time.Hour, NotBefore: f.clock.now()}
}

func (f *fixture) token(t testing.TB, c mint.Claims) string {
	t.Helper()
	return mustSign(t, f.key, c)
}

func mustSign(t testing.TB, k *mint.Key, c mint.Claims) string {
	t.Helper()
	s, err := k.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokens returns how many tokens were judged with result.
func (f *fixture) tokens(result string) float64 {
	return counterValue(f.reg, "kvstack_auth_tokens_total", result)
}

// counterValue is the value of the counter name whose one label is value.
func counterValue(reg *prometheus.Registry, name, value string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if l := m.GetLabel(); len(l) == 1 && l[0].GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// bearerRequest is a GET carrying token (none when empty).
func bearerRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api?key=k", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
