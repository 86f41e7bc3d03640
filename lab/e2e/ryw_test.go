//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Reading one's writes through nginx: a PUT's token, read through the edge
// (so by either replica), always returns what was written; a write that
// waits answers once applied; a delete's token reads 404.
func TestReadYourWritesThroughNginx(t *testing.T) {
	h := newHarness(t)
	key := uniq("e2e-ryw")
	get := func(tok, extra string) response {
		return h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key)+"&min_version="+tok+extra, nil)
	}
	for i := range 30 {
		value := fmt.Sprint("v", i)
		w := h.put(t, key, value)
		tok := versionOf(t, w)
		if w.status != http.StatusAccepted {
			t.Fatalf("PUT %d: %d %s", i, w.status, w.body)
		}
		r := get(tok, "")
		if got := r.json(t); r.status != http.StatusOK || got["value"] != value {
			t.Fatalf("PUT %d then GET with its token: %d %v, want %q", i, r.status, got, value)
		}
	}

	w := h.do(t, http.MethodPut, "/api?wait=applied", []byte(fmt.Sprintf(`{"key":%q,"value":"waited"}`, key)))
	if got := w.json(t); w.status != http.StatusOK || got["status"] != "applied" {
		t.Fatalf("PUT wait=applied: %d %v, want 200 applied", w.status, got)
	}
	if r := get(versionOf(t, w), "&timeout=0s"); r.status != http.StatusOK || r.json(t)["value"] != "waited" {
		t.Fatalf("GET with an applied write's token, not waiting: %d %s", r.status, r.body)
	}

	d := h.do(t, http.MethodDelete, "/api?key="+url.QueryEscape(key)+"&wait=applied", nil)
	if got := d.json(t); d.status != http.StatusOK || got["status"] != "applied" {
		t.Fatalf("DELETE wait=applied: %d %v", d.status, got)
	}
	tok := versionOf(t, d)
	if r := get(tok, ""); r.status != http.StatusNotFound || r.json(t)["version"] != tok {
		t.Fatalf("GET with the delete's token: %d %s, want 404 naming it", r.status, r.body)
	}

	forged := tok[:len(tok)-1] + map[bool]string{true: "B", false: "A"}[strings.HasSuffix(tok, "A")]
	if r := get(forged, ""); r.status != http.StatusBadRequest || r.json(t)["error"] != "invalid_min_version" {
		t.Errorf("GET with an altered token: %d %s, want 400", r.status, r.body)
	}
}

// Waits longer than nginx's plain read timeout (5s) get the API's own
// answers through the edge: a waiting write's 202 once its bound passed
// (the write is durable, and handled by one replica only), a waiting
// read's 504 naming the newest version; once the consumer runs again, the
// token reads the write.
func TestLongWaitsThroughNginx(t *testing.T) {
	h := newHarness(t)
	key := uniq("e2e-wait")
	before := h.do(t, http.MethodPut, "/api?wait=applied", []byte(fmt.Sprintf(`{"key":%q,"value":"before"}`, key)))
	if before.status != http.StatusOK {
		t.Fatalf("PUT wait=applied: %d %s", before.status, before.body)
	}

	pid := h.pidOf(t, "consumer")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop the consumer: %v", err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("resume the consumer: %v", err)
			}
		}
	}
	t.Cleanup(resume)

	h.client.Timeout = 30 * time.Second
	const bound = 6 * time.Second
	id := uniq("e2e-wait-put")
	start := time.Now()
	w := h.do(t, http.MethodPut, "/api?wait=applied&timeout="+bound.String(), []byte(fmt.Sprintf(`{"key":%q,"value":"during"}`, key)), "X-Request-Id", id)
	if got := w.json(t); w.status != http.StatusAccepted || got["status"] != "accepted" || time.Since(start) < bound {
		t.Fatalf("PUT wait=applied with the consumer stopped: %d %v after %s; want the API's 202 after %s", w.status, got, time.Since(start), bound)
	}
	eventually(t, 5*time.Second, func() string {
		access := logLines(t, h.logFile("nginx-access"), id)
		if len(access) != 1 {
			return fmt.Sprintf("%d nginx access log lines for the waiting PUT, want 1", len(access))
		}
		if up, _ := access[0]["upstream_addr"].(string); strings.Contains(up, ",") {
			return fmt.Sprintf("the waiting PUT went to more than one replica: %q", up)
		}
		return ""
	})

	tok := versionOf(t, w)
	path := "/api?key=" + url.QueryEscape(key) + "&min_version=" + tok
	r := h.do(t, http.MethodGet, path+"&timeout="+bound.String(), nil)
	if got := r.json(t); r.status != http.StatusGatewayTimeout || got["error"] != "version_not_reached" || got["version"] != versionOf(t, before) {
		t.Fatalf("GET with its token, consumer stopped: %d %v; want the API's 504 naming %s", r.status, got, versionOf(t, before))
	}

	resume()
	r = h.do(t, http.MethodGet, path, nil)
	if got := r.json(t); r.status != http.StatusOK || got["value"] != "during" {
		t.Fatalf("GET with its token, consumer back: %d %v, want during", r.status, got)
	}
}

// versionOf is the token an answer names, the same in body and header.
func versionOf(tb testing.TB, r response) string {
	tb.Helper()
	tok, _ := r.json(tb)["version"].(string)
	if tok == "" || r.header.Get("KV-Version") != tok {
		tb.Fatalf("answer %d %s names no version, or another in KV-Version (%q)", r.status, r.body, r.header.Get("KV-Version"))
	}
	return tok
}
