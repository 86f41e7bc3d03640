package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/kv"
)

// brokenStore, brokenCache and slowBroker fail every call, the way the real
// adapters do when their server is gone.
type brokenStore struct{}

func (brokenStore) Get(context.Context, string) (kv.Entry, error) {
	return kv.Entry{}, errors.New("pg: connection reset by peer")
}

func (brokenStore) List(context.Context, string, string, int) ([]kv.Entry, error) {
	return nil, fmt.Errorf("pg: %w", kv.ErrUnavailable)
}

type brokenCache struct{}

func (brokenCache) Get(context.Context, string) (kv.Entry, error) {
	return kv.Entry{}, fmt.Errorf("redis get: corrupt entry: %w", kv.ErrUnavailable)
}

func (brokenCache) Fill(context.Context, kv.Entry) (bool, error) {
	return false, fmt.Errorf("redis fill: %w", kv.ErrUnavailable)
}

type slowBroker struct{}

func (slowBroker) Publish(context.Context, kv.Op) error {
	return fmt.Errorf("publish add_key: no confirm in time: %w", kv.ErrUnavailable)
}

// Failing writes and reads are logged (a 503 or 500 must leave a trace for
// the operator) but no log line holds the key or the value, whatever the
// error on the way carried.
func TestLogsHoldNoKeys(t *testing.T) {
	const key, value = "secret-key-4711", "secret-value-0815"
	var logs bytes.Buffer
	log := zerolog.New(&logs)
	svc := kv.NewService(brokenStore{}, brokenCache{}, slowBroker{}, kv.DefaultLimits(), log)
	h := asClient(NewHandler(svc, testTokens, testAuth, nil, DefaultConfig(), log, nil), adminToken)

	for _, tc := range []struct {
		method, target, body string
		want                 int
	}{
		{"PUT", "/api?key=" + key, `{"key":"` + key + `","value":"` + value + `"}`, 503},
		{"DELETE", "/api?key=" + key, "", 503},
		{"GET", "/api?key=" + key, "", 500},
		{"GET", "/api/all?limit=5&cursor=c2VjcmV0LWtleS00NzEx", "", 503},
	} {
		if rec := do(t, h, tc.method, tc.target, tc.body); rec.Code != tc.want {
			t.Fatalf("%s %s = %d, want %d", tc.method, tc.target, rec.Code, tc.want)
		}
	}
	out := logs.String()
	for _, want := range []string{"dependency unavailable", "request failed", "cache read failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q: the failures went unrecorded:\n%s", want, out)
		}
	}
	for _, secret := range []string{key, value} {
		if strings.Contains(out, secret) {
			t.Errorf("a log line holds %q:\n%s", secret, out)
		}
	}
}
