// Package nginxtest runs the edge in tests: a private nginx rendered from
// nginx/nginx.conf.template (as the native stack renders it) in front of
// stand-in API replicas that can drop a request, die in the middle of one
// or answer a status of the test's choice; and the helpers such tests share
// to run a program (free loopback addresses, required commands, waiting for
// it to answer, stopping it).
package nginxtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/syncbuf"
	"github.com/kvstack/kvstack/lab/native"
)

// Replica is a stand-in API replica. As the API does, it answers a
// request without a bearer token 401 with a Bearer challenge; else a
// write (PUT, DELETE) 202, or WriteStatus when set; a read (GET, HEAD)
// 200, or the status of its ?status=N; any other method 405. Its body names the replica. While
// Broken, it reads each request and drops the connection without an
// answer; while Stalled, it reads each request and answers nothing until
// the connection is closed. Hits counts every request it read, Writes the
// PUTs and DELETEs.
type Replica struct {
	Addr        string
	Broken      atomic.Bool
	Stalled     atomic.Bool
	WriteStatus atomic.Int64
	Hits        atomic.Int64
	Writes      atomic.Int64
	// LastHeader is the headers of the last request it read.
	LastHeader atomic.Pointer[http.Header]

	dieOnWrite atomic.Int64
	srv        *http.Server
}

// StartReplica serves a stand-in replica on a free loopback port until the
// test ends.
func StartReplica(tb testing.TB) *Replica {
	tb.Helper()
	r := &Replica{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r.Addr = ln.Addr().String()
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve)}
	go r.srv.Serve(ln)
	tb.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *Replica) serve(w http.ResponseWriter, req *http.Request) {
	r.Hits.Add(1)
	h := req.Header.Clone()
	r.LastHeader.Store(&h)
	io.Copy(io.Discard, req.Body)
	if !strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kvstack"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"replica":%q,"error":"missing_token"}`, r.Addr)
		return
	}
	status := http.StatusOK
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		fmt.Sscan(req.URL.Query().Get("status"), &status)
	case http.MethodPut, http.MethodDelete:
		if n := r.Writes.Add(1); n == r.dieOnWrite.Load() {
			r.Kill()
			return
		}
		status = http.StatusAccepted
		if s := r.WriteStatus.Load(); s != 0 {
			status = int(s)
		}
	default:
		status = http.StatusMethodNotAllowed
	}
	if r.Stalled.Load() {
		<-req.Context().Done()
		return
	}
	if r.Broken.Load() {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"replica":%q,"status":%d}`, r.Addr, status)
}

// Kill does to the network what kill -9 does to a replica: its listener
// and every connection, those with a request in hand too, are closed at
// once, with no answer; from then on connections to it are refused.
func (r *Replica) Kill() { r.srv.Close() }

// Stop stops the replica as the API does at the end of its drain
// (KV_DRAIN_DELAY 0): its listener closes (connections refused from then
// on), its idle keep-alive connections are closed, and the requests in
// hand are answered.
func (r *Replica) Stop() { _ = r.srv.Shutdown(context.Background()) }

// DieOnWrite makes the replica die (Kill) once it has read its nth write
// (counting from its start), before answering it: a kill -9 in the middle
// of a write that it may have published.
func (r *Replica) DieOnWrite(n int64) { r.dieOnWrite.Store(n) }

// Edge is a private nginx: URL is where clients connect (https://),
// Status its stub_status listener, AccessLog its JSON access log; CA is
// the CA of its certificate (made for the test as the stack makes its
// own), which Client trusts.
type Edge struct {
	URL, Status, AccessLog, ErrorLog, CA string
	Client                               *http.Client
}

// Transport is a new HTTP/1.1 transport that trusts the edge's CA, and
// keeps a connection alive for each of up to 64 concurrent requests: the
// default keeps 2, so a test's concurrent clients would pay a TLS
// handshake on almost every request (a flood of 32 workers ran at 316 r/s
// on a loaded machine, below the rate limit it was meant to pass).
func (e Edge) Transport(tb testing.TB) *http.Transport {
	tb.Helper()
	cfg, err := native.ClientTLS(e.CA)
	if err != nil {
		tb.Fatal(err)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	t.MaxIdleConnsPerHost = 64
	return t
}

// StartEdge runs nginx rendered from nginx/nginx.conf.template in front of
// api1 and api2 until the test ends. Every variable of the template has a
// value (the native stack's list, lab/native.Templates); vars replaces
// some of them (NGINX_RATE_LIMIT, say).
func StartEdge(tb testing.TB, api1, api2 string, vars map[string]string) Edge {
	tb.Helper()
	RequireCommands(tb, "nginx")
	dir := tb.TempDir()
	os.Chmod(dir, 0o777) // nginx's workers (nobody) write their temp files here
	tlsDir := filepath.Join(dir, "tls")
	if _, err := native.MakeEdgeCerts(tlsDir, []string{"localhost", "127.0.0.1", "::1"}, time.Now()); err != nil {
		tb.Fatal(err)
	}
	e := Edge{URL: "https://" + FreeAddr(tb), Status: FreeAddr(tb), CA: filepath.Join(tlsDir, native.CAFile),
		AccessLog: filepath.Join(dir, "access.log"), ErrorLog: filepath.Join(dir, "error.log")}
	e.Client = &http.Client{Transport: e.Transport(tb)}
	tb.Cleanup(e.Client.CloseIdleConnections)
	all := map[string]string{
		"NGINX_LISTEN": strings.TrimPrefix(e.URL, "https://"), "NGINX_STATUS_LISTEN": e.Status,
		"NGINX_TLS_CERT": filepath.Join(tlsDir, native.EdgeFile), "NGINX_TLS_KEY": filepath.Join(tlsDir, native.EdgeKeyFile),
		"API1_ADDR": api1, "API2_ADDR": api2, "KV_MAX_BODY_BYTES": "1048576",
		"NGINX_ACCESS_LOG": e.AccessLog, "NGINX_ERROR_LOG": e.ErrorLog,
	}
	// The limits and the trusted sources as shipped (lab/native's defaults).
	for _, v := range native.Variables {
		switch v.Name {
		case "NGINX_RATE_LIMIT", "NGINX_RATE_BURST", "NGINX_WAIT_CONN_LIMIT", "NGINX_TRACE_TRUSTED":
			all[v.Name] = v.Default
		}
	}
	for k, v := range vars {
		all[k] = v
	}
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(render(tb, all)), 0o644); err != nil {
		tb.Fatal(err)
	}
	var stderr syncbuf.Buffer // nginx writes it (exec's copier) while a probe reads it
	cmd := exec.Command("nginx", "-p", dir+"/", "-c", confFile, "-e", e.ErrorLog,
		"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+";")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start nginx: %v", err)
	}
	tb.Cleanup(func() { Stop(cmd) })
	// Probed on stub_status, which logs nothing: the access log holds only
	// the test's requests.
	WaitFor(tb, "nginx on "+e.Status, func() error {
		resp, err := http.Get("http://" + e.Status + "/stub_status")
		if err != nil {
			return fmt.Errorf("%w (nginx: %s)", err, stderr.String())
		}
		return resp.Body.Close()
	})
	return e
}

// render substitutes vars into the template as the native stack does, and
// fails when the template uses a variable the stack does not set.
func render(tb testing.TB, vars map[string]string) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "nginx", "nginx.conf.template")
	tmpl, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	only := map[string]string{}
	for _, t := range native.Templates {
		if t.Program == "nginx" {
			for _, v := range t.Vars {
				only[v] = vars[v]
			}
		}
	}
	conf, err := native.Substitute(string(tmpl), only)
	if err != nil {
		tb.Fatalf("%s: %v", src, err)
	}
	if strings.Contains(conf, "${") {
		tb.Fatalf("%s uses a variable the native stack does not set", src)
	}
	return conf
}

// Answer is what the edge answered.
type Answer struct {
	Status int
	Header http.Header
	Body   string
}

// Do sends method path with a small JSON body through the edge, and fails
// the test when no answer comes.
func (e Edge) Do(tb testing.TB, method, path string) Answer {
	tb.Helper()
	a, err := e.Try(method, path)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// Token is the bearer token the edge's clients carry: the stand-in
// replicas check only that there is one.
const Token = "nginxtest-token"

// Try is Do for other goroutines than the test's: it returns the error.
func (e Edge) Try(method, path string) (Answer, error) {
	return e.TryAs("Bearer "+Token, method, path)
}

// TryAs is Try with this Authorization header (none when empty).
func (e Edge) TryAs(authorization, method, path string) (Answer, error) {
	req, err := http.NewRequest(method, e.URL+path, strings.NewReader(`{"key":"k","value":"v"}`))
	if err != nil {
		return Answer{}, err
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

// FreeAddr is a loopback address nothing listens on now.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// RequireCommands fails the test, naming them, when programs are missing:
// `make setup-all` (lab/scripts/services.sh ensure all) installs them.
func RequireCommands(tb testing.TB, names ...string) {
	tb.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			tb.Fatalf("%s is not installed (make setup-all installs it): %v", n, err)
		}
	}
}

// Stop interrupts a program and waits for it, killing it after 10 s.
func Stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// WaitFor polls try every 50 ms until it succeeds, and fails the test with
// its last error after 10 s.
func WaitFor(tb testing.TB, what string, try func() error) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
