//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/native"
	"github.com/kvstack/kvstack/lab/native/engines"
	"github.com/kvstack/kvstack/lab/nginxtest"
)

// stackEnv is the native stack's settings (lab/native: stack.env
// overlaid with the environment), as bin/stack reads them.
type stackEnv struct {
	root string
	s    *native.Settings
	vars map[string]string // stack.env's names, resolved
}

func loadStackEnv(tb testing.TB, extra ...string) stackEnv {
	tb.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		tb.Fatal(err)
	}
	s, err := native.Load(root, append(os.Environ(), extra...))
	if err != nil {
		tb.Fatalf("the native stack's settings: %v", err)
	}
	vars := map[string]string{}
	for _, a := range s.File {
		vars[a.Name] = s.Get(a.Name)
	}
	return stackEnv{root: root, s: s, vars: vars}
}

func (s stackEnv) host() string { return s.s.Host() }

// dialAMQP connects to url as the stack's binaries do (over TLS, trusting
// RABBITMQ_TLS_CA_FILE, to the stack's own RabbitMQ).
func (s stackEnv) dialAMQP(url string) (*amqp.Connection, error) {
	return engines.DialAMQP(url, s.s.Get("RABBITMQ_TLS_CA_FILE"))
}

func (s stackEnv) addr(portVar string) string { return s.s.Addr(portVar) }

func (s stackEnv) dir() string { return s.s.Dir }

func (s stackEnv) logFile(name string) string { return s.s.LogFile(name) }

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// client is an HTTP client through the edge carrying an admin token
// signed by the stack's key, as `make token` makes it.
func (s stackEnv) client(tb testing.TB, timeout time.Duration) *http.Client {
	tb.Helper()
	transport, err := native.EdgeTransport(s.s, 64)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := native.Client(s.s, "e2e", transport, timeout)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// trust is a TLS client configuration that trusts the stack's CA
// (KV_TLS_CA), as curl --cacert does.
func (s stackEnv) trust(tb testing.TB) *tls.Config {
	tb.Helper()
	cfg, err := native.EdgeTLS(s.s)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// dialEdge opens a TLS connection to an edge (nginx) at addr, for a test
// that writes its own bytes.
func dialEdge(addr string, trust *tls.Config) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, trust)
}

// stack is the running native stack, to control its processes.
func (s stackEnv) stack() *supervisor.Stack { return native.NewStack(s.s, io.Discard) }

// harness is what every test needs: the stack's addresses and an HTTP
// client that keeps connections alive, as real clients do, and carries an
// admin token signed by the stack's key (make token's).
type harness struct {
	stackEnv
	nginx  string // base URL through nginx: https://, the stack's CA trusted
	client *http.Client
	// spec checks every exchange through nginx against api/openapi.yaml;
	// nil checks nothing.
	spec *contract
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	env := loadStackEnv(t)
	h := &harness{stackEnv: env, nginx: native.EdgeURL(env.s), client: env.client(t, 15*time.Second), spec: newContract(t)}
	t.Cleanup(h.client.CloseIdleConnections)
	h.mustAnswer(t, "nginx", h.nginx+"/healthz")
	backlog.Do(func() { backlogErr = env.waitBacklogApplied(t, 10*time.Minute) })
	if backlogErr != nil {
		t.Fatal(backlogErr)
	}
	return h
}

// The work queues' backlog at the suite's start, once: the tests time
// their writes from a stack with nothing queued before them.
var (
	backlog    sync.Once
	backlogErr error
)

// waitBacklogApplied waits, up to limit, until the stack's work queues are
// empty. On the machine's shared engines they may hold what another
// stack left there (a bench stopped with its consumers' backlog queued),
// which this stack's consumers dead-letter, as signed with keys not its
// own, at a few thousand a second: writes timed meanwhile wait behind it.
func (env stackEnv) waitBacklogApplied(tb testing.TB, limit time.Duration) error {
	add, del := env.s.WorkQueues()
	start := time.Now()
	for {
		depth, err := env.queueDepths(add, del)
		if err != nil {
			return err
		}
		if depth[add]+depth[del] == 0 {
			if waited := time.Since(start); waited > time.Second {
				tb.Logf("the work queues held a backlog at the start: applied or dead-lettered in %s", waited.Round(time.Second))
			}
			return nil
		}
		if time.Since(start) > limit {
			return fmt.Errorf("the work queues still hold %v after %s: the stack's consumers are not applying them (make status, %s)", depth, limit, env.dir()+"/logs")
		}
		time.Sleep(time.Second)
	}
}

// queueDepths are the ready messages of each queue on the stack's
// RabbitMQ (the one its RABBITMQ_URL names: the shared node, or the
// stack's own).
func (env stackEnv) queueDepths(queues ...string) (map[string]int, error) {
	conn, err := env.dialAMQP(env.s.Get("RABBITMQ_URL"))
	if err != nil {
		return nil, fmt.Errorf("RabbitMQ of the stack: %w", err)
	}
	defer conn.Close()
	depth := map[string]int{}
	for _, q := range queues {
		// A channel each: a failed passive declare closes its channel.
		ch, err := conn.Channel()
		if err != nil {
			return nil, fmt.Errorf("RabbitMQ of the stack: %w", err)
		}
		got, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		ch.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
		depth[q] = got.Messages
	}
	return depth, nil
}

// mustAnswer fails the test, naming the part, when url does not answer 200.
func (h *harness) mustAnswer(tb testing.TB, part, url string) {
	tb.Helper()
	resp, err := h.client.Get(url)
	if err != nil {
		tb.Fatalf("%s is not reachable at %s (%v): start the stack with `make up` (status: `make status`)", part, url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("%s at %s answered %d, want 200: see `make status` and %s", part, url, resp.StatusCode, h.dir()+"/logs")
	}
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		tb.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

func (h *harness) do(tb testing.TB, method, path string, body []byte, header ...string) response {
	tb.Helper()
	resp, err := h.try(method, h.nginx+path, body, header...)
	if err != nil {
		tb.Fatalf("%s %s through nginx: %v", method, path, err)
	}
	return resp
}

// try sends one request; header holds name, value pairs.
func (h *harness) try(method, url string, body []byte, header ...string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	if strings.HasPrefix(url, h.nginx+"/") {
		h.spec.check(req, body, r)
	}
	return r, nil
}

func (h *harness) put(tb testing.TB, key, value string, header ...string) response {
	tb.Helper()
	body, _ := json.Marshal(map[string]string{"key": key, "value": value})
	return h.do(tb, http.MethodPut, "/api", body, header...)
}

// eventually retries check until it returns "" or timeout passes; the last
// complaint fails the test.
func eventually(tb testing.TB, timeout time.Duration, check func() string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var seq atomic.Int64

// uniq is a name no other test or earlier run uses.
func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), seq.Add(1))
}

// ---------------------------------------------------------------- processes

// pidOf is the pid of a process of the stack, as its supervisord reports.
func (h *harness) pidOf(tb testing.TB, name string) int {
	tb.Helper()
	pid, err := h.stack().Supervisor().Pid(context.Background(), name)
	if err != nil || pid == 0 {
		tb.Fatalf("%s: no pid (%v): is the stack up? `make up`", name, err)
	}
	return pid
}

// startProcess starts a process of the running stack (when down) and waits
// until it is healthy.
func (h *harness) startProcess(name string) error {
	st := h.stack()
	if err := st.Supervisor().Start(context.Background(), name, false); err != nil {
		return err
	}
	return st.WaitHealthy(context.Background(), name)
}

// replicaHealthy is true when the replica answers /healthz directly.
func (h *harness) replicaHealthy(portVar string) bool {
	resp, err := h.try(http.MethodGet, "http://"+h.addr(portVar)+"/healthz", nil)
	return err == nil && resp.status == http.StatusOK
}

// ---------------------------------------------------------------- logs

// logLines returns the JSON lines of a log file that carry request id id.
func logLines(tb testing.TB, file, id string) []map[string]any {
	tb.Helper()
	f, err := os.Open(file)
	if err != nil {
		tb.Fatalf("log %s: %v", file, err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	needle := []byte(`"` + id + `"`)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), needle) {
			continue
		}
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["request_id"] == id {
			out = append(out, m)
		}
	}
	return out
}

// uncommented returns the directives of an nginx config, comments dropped
// and whitespace squeezed, for checks on its text.
func uncommented(conf []byte) string {
	var b strings.Builder
	for _, line := range strings.Split(string(conf), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString(regexp.MustCompile(`\s+`).ReplaceAllString(line, " "))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// runNginx runs a private nginx in the foreground (prefix, config, error
// log; its stderr to stderr when not nil) until the test ends: SIGINT, then
// SIGKILL if it has not stopped within 10 s.
func runNginx(t *testing.T, prefix, conf, errorLog string, stderr io.Writer) {
	t.Helper()
	cmd := exec.Command("nginx", "-p", prefix+"/", "-c", conf, "-e", errorLog,
		"-g", "daemon off; pid "+filepath.Join(prefix, "nginx.pid")+";")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() { nginxtest.Stop(cmd) })
}
