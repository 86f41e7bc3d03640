package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/auth/authtest"
	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/msgsig"
	"github.com/kvstack/kvstack/internal/postgres"
	"github.com/kvstack/kvstack/internal/postgres/pgtest"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
	"github.com/kvstack/kvstack/internal/redis"
	"github.com/kvstack/kvstack/internal/redis/redistest"
)

// stack is one isolated kvstack on the real services: its own PostgreSQL
// schema, Redis key prefix and RabbitMQ queues, with the API and consumer
// processes booted in-process on free ports.
type stack struct {
	t      *testing.T
	api    string // base URL of the API
	store  *postgres.Store
	pool   *pgxpool.Pool
	cache  *redis.Cache
	rdb    goredis.UniversalClient
	mq     rabbitmq.Config
	apiCfg config.API
	conCfg config.Consumer
	client *http.Client     // carries token
	issuer *authtest.Issuer // signs the tokens the API trusts
	token  string           // an admin token of issuer's
	log    zerolog.Logger   // the processes' logger: the test's output unless replaced
}

func newStack(t *testing.T) *stack {
	t.Helper()
	url := pgtest.MustURL(t)
	rdb, rcfg := redistest.MustClient(t)
	mq := rabbittest.MustConfig(t)

	common := config.Common{LogLevel: "warn", ShutdownTimeout: 5 * time.Second}
	pcfg := postgres.DefaultConfig()
	pcfg.URL, pcfg.MaxConns, pcfg.MinConns = url, 4, 0
	apiCfg := mustLoad[config.API](t)
	apiCfg.AdminAddr = "127.0.0.1:0"
	apiCfg.Common, apiCfg.Addr, apiCfg.Postgres, apiCfg.Redis, apiCfg.RabbitMQ = common, "127.0.0.1:0", pcfg, rcfg, mq
	apiCfg.DrainDelay = 0 // no edge to tell: each stop would wait for nothing
	apiCfg.Health.Interval = 50 * time.Millisecond
	// The tests' loads are one subject in tight loops, faster than the
	// shipped per-subject rate; limits_test.go sets its own.
	apiCfg.HTTP.RateLimit = 0
	apiCfg.Messages.Keys = testMessageKey
	issuer := authtest.New(t, "")
	apiCfg.Auth = issuer.Config
	token := issuer.Token(t, "app-test", "admin")
	conCfg := mustLoad[config.Consumer](t)
	conCfg.AdminAddr = "127.0.0.1:0"
	conCfg.Messages.Keys = testMessageKey
	conCfg.Common, conCfg.Addr, conCfg.Postgres, conCfg.Redis, conCfg.RabbitMQ = common, "127.0.0.1:0", pcfg, rcfg, mq
	conCfg.Consumer.BatchWait = 5 * time.Millisecond
	conCfg.Health.Interval = 50 * time.Millisecond
	conCfg.Consumer.CacheRepairInterval = 50 * time.Millisecond

	pool := pgtest.MustPoolAt(t, url)
	return &stack{
		t: t, store: postgres.NewStore(pool), pool: pool,
		cache: redis.NewCache(rdb, rcfg, nil), rdb: rdb, mq: mq,
		apiCfg: apiCfg, conCfg: conCfg,
		client: authtest.Client(token, 15*time.Second),
		issuer: issuer, token: token,
		log: testLogger(t),
	}
}

// testMessageKey signs the messages of every test stack (KV_MESSAGE_KEYS),
// and testKeys is it parsed, for the tests that publish straight to the
// queues.
const testMessageKey = "the-app-tests-message-key-of-32-bytes-or-more"

var testKeys = func() *msgsig.Keys {
	keys, err := msgsig.ParseKeys(testMessageKey)
	if err != nil {
		panic(err)
	}
	return keys
}()

func mustLoad[T any](t *testing.T) T {
	t.Helper()
	cfg, err := config.LoadFrom[T](map[string]string{})
	if err != nil {
		t.Fatalf("default config: %v", err)
	}
	return cfg
}

// startAPI boots the API and sets s.api; it stops when the test ends.
func (s *stack) startAPI() {
	s.t.Helper()
	addr := boot(s.t, "api", func(ctx context.Context, ready Ready) error {
		return RunAPI(ctx, s.apiCfg, s.log, ready)
	})
	s.api = "http://" + addr
}

// startConsumer boots a consumer and returns the address of its /healthz,
// /readyz and /metrics, and a func that stops it early.
func (s *stack) startConsumer() (addr string, stop func()) {
	s.t.Helper()
	addr = bootStoppable(s.t, "consumer", func(ctx context.Context, ready Ready) error {
		return RunConsumer(ctx, s.conCfg, s.log, ready)
	}, &stop)
	return addr, stop
}

// admins maps the data address of every process running to its admin
// listener's (scrape finds it there). A stopped process's entry goes: its
// port may be given to another listener (an httptest server's) later.
var admins sync.Map

func boot(t *testing.T, name string, run func(context.Context, Ready) error) string {
	t.Helper()
	var stop func()
	return bootStoppable(t, name, run, &stop)
}

// bootStoppable runs a process until the test ends (or stop is called) and
// requires it to stop cleanly.
func bootStoppable(t *testing.T, name string, run func(context.Context, Ready) error, stop *func()) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, func(data, admin net.Addr) {
			admins.Store(data.String(), admin.String())
			addrc <- data.String()
		})
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		cancel()
		t.Fatalf("%s did not start: %v", name, err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("%s did not start within 30s", name)
	}
	stopped := false
	*stop = func() {
		if stopped {
			return
		}
		stopped = true
		admins.Delete(addr)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s stopped with error: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop within 30s", name)
		}
	}
	t.Cleanup(*stop)
	return addr
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// response is a decoded API answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
}

func (s *stack) do(method, path, body string) response {
	s.t.Helper()
	return s.doWith(s.client, method, path, body)
}

// doWith is do from client (another token's).
func (s *stack) doWith(client *http.Client, method, path, body string) response {
	s.t.Helper()
	r, err := s.tryWith(client, method, path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// try is do for a goroutine: it returns what went wrong (no answer, or
// not a whole JSON object) instead of failing the test.
func (s *stack) try(method, path, body string) (response, error) {
	return s.tryWith(s.client, method, path, body)
}

func (s *stack) tryWith(client *http.Client, method, path, body string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.api+path, rd)
	if err != nil {
		return response{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		return r, fmt.Errorf("%s %s: %d, body %q is not a JSON object: %w", method, path, resp.StatusCode, raw, err)
	}
	return r, nil
}

func (s *stack) put(key, value string) kv.Op {
	s.t.Helper()
	body, _ := json.Marshal(map[string]string{"key": key, "value": value})
	r := s.do("PUT", "/api", string(body))
	if r.status != http.StatusAccepted {
		s.t.Fatalf("PUT %q = %d %v", key, r.status, r.body)
	}
	return acceptedOp(s.t, kv.KindPut, key, value, r)
}

func (s *stack) del(key string) kv.Op {
	s.t.Helper()
	body, _ := json.Marshal(map[string]string{"key": key})
	r := s.do("DELETE", "/api", string(body))
	if r.status != http.StatusAccepted {
		s.t.Fatalf("DELETE %q = %d %v", key, r.status, r.body)
	}
	return acceptedOp(s.t, kv.KindDelete, key, "", r)
}

// acceptedOp rebuilds the operation a 202 promised.
func acceptedOp(t *testing.T, kind kv.Kind, key, value string, r response) kv.Op {
	t.Helper()
	ts, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(r.body["timestamp"]))
	body, _ := json.Marshal(map[string]any{"key": key, "value": value, "timestamp": r.body["timestamp"], "op_id": r.body["op_id"]})
	op, err2 := kv.DecodeMessage(kind, body, kv.DefaultLimits())
	if err := errors.Join(err1, err2); err != nil || r.body["op"] != string(kind) || !op.Version.Time.Equal(ts) {
		t.Fatalf("202 body %v does not describe the operation: %v", r.body, err)
	}
	return op
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, still not %s: %s", timeout, what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// storedEntry is the key's row, tombstone included; ok is false without one.
func (s *stack) storedEntry(key string) (kv.Entry, bool) {
	s.t.Helper()
	e, err := s.store.Get(context.Background(), key)
	if errors.Is(err, kv.ErrNotFound) {
		return kv.Entry{}, false
	}
	if err != nil {
		s.t.Fatalf("store get %q: %v", key, err)
	}
	// The writer aside: the cache and the ops the tests build keep none
	// (TestWritesAreAttributed checks it).
	e.WrittenBy = ""
	return e, true
}

// waitStored waits until the key's row is exactly the operation's result.
func (s *stack) waitStored(op kv.Op) {
	s.t.Helper()
	eventually(s.t, 20*time.Second, fmt.Sprintf("stored %s %q", op.Kind, op.Key), func() (bool, string) {
		e, ok := s.storedEntry(op.Key)
		return ok && e == op.Entry(), fmt.Sprintf("row %+v (present %v), want %+v", e, ok, op.Entry())
	})
}

// waitCached waits until Redis holds exactly the operation's result.
func (s *stack) waitCached(op kv.Op) {
	s.t.Helper()
	eventually(s.t, 20*time.Second, fmt.Sprintf("cached %s %q", op.Kind, op.Key), func() (bool, string) {
		e, err := s.cache.Get(context.Background(), op.Key)
		return err == nil && e == op.Entry(), fmt.Sprintf("cache %+v (%v), want %+v", e, err, op.Entry())
	})
}
