//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A write through nginx is applied in the background: readable soon after,
// from Redis on the second read, and a delete makes it 404.
func TestPutGetDeleteThroughNginx(t *testing.T) {
	h := newHarness(t)
	key, value := uniq("e2e-crud"), "hello from e2e"

	resp := h.put(t, key, value)
	if resp.status != http.StatusAccepted {
		t.Fatalf("PUT: status %d, want 202; body %s", resp.status, resp.body)
	}
	if got := resp.json(t); got["op"] != "put" || got["key"] != key || got["op_id"] == nil {
		t.Errorf("PUT body = %v, want op put, key %q and an op_id", got, key)
	}

	get := "/api?key=" + url.QueryEscape(key)
	eventually(t, 10*time.Second, func() string {
		r := h.do(t, http.MethodGet, get, nil)
		if r.status != http.StatusOK {
			return fmt.Sprintf("GET after PUT: status %d, body %s", r.status, r.body)
		}
		if v := r.json(t)["value"]; v != value {
			return fmt.Sprintf("GET after PUT: value %v, want %q", v, value)
		}
		return ""
	})
	second := h.do(t, http.MethodGet, get, nil)
	if got := second.json(t); second.status != http.StatusOK || got["source"] != "redis" {
		t.Errorf("second GET: status %d, body %v; want 200 from source redis", second.status, got)
	}

	del := h.do(t, http.MethodDelete, get, nil)
	if del.status != http.StatusAccepted || del.json(t)["op"] != "delete" {
		t.Fatalf("DELETE: status %d, body %s; want 202 op delete", del.status, del.body)
	}
	eventually(t, 10*time.Second, func() string {
		r := h.do(t, http.MethodGet, get, nil)
		if r.status != http.StatusNotFound {
			return fmt.Sprintf("GET after DELETE: status %d, body %s; want 404", r.status, r.body)
		}
		return ""
	})
}

// /api/all pages by key with limit and cursor (the cursor is the base64url
// of the last key seen, so a test can start just before its own keys), and
// streams everything without limit.
func TestListPagesThroughNginx(t *testing.T) {
	h := newHarness(t)
	prefix := uniq("e2e-list") + "/"
	var keys []string
	for i := range 5 {
		k := fmt.Sprintf("%sk%d", prefix, i)
		keys = append(keys, k)
		if r := h.put(t, k, "v"+k); r.status != http.StatusAccepted {
			t.Fatalf("PUT %s: status %d, body %s", k, r.status, r.body)
		}
	}
	start := base64.RawURLEncoding.EncodeToString([]byte(prefix))

	type page struct {
		Items      []struct{ Key, Value string }
		NextCursor *string `json:"next_cursor"`
	}
	// ours pages through the test's keys, two at a time.
	ours := func() (got []string, pages int, msg string) {
		cursor := start
		for pages < 10 {
			r := h.do(t, http.MethodGet, "/api/all?limit=2&cursor="+cursor, nil)
			if r.status != http.StatusOK {
				return nil, pages, fmt.Sprintf("page %d: status %d, body %s", pages, r.status, r.body)
			}
			var p page
			if err := json.Unmarshal(r.body, &p); err != nil {
				return nil, pages, fmt.Sprintf("page %d: %v in %s", pages, err, r.body)
			}
			pages++
			for _, it := range p.Items {
				if !strings.HasPrefix(it.Key, prefix) {
					return got, pages, ""
				}
				if it.Value != "v"+it.Key {
					return nil, pages, fmt.Sprintf("key %s has value %q", it.Key, it.Value)
				}
				got = append(got, it.Key)
			}
			if p.NextCursor == nil {
				return got, pages, ""
			}
			cursor = *p.NextCursor
		}
		return got, pages, "more than 10 pages"
	}
	eventually(t, 10*time.Second, func() string {
		got, pages, msg := ours()
		if msg != "" {
			return msg
		}
		if fmt.Sprint(got) != fmt.Sprint(keys) || pages != 3 {
			return fmt.Sprintf("paged keys %v in %d pages, want %v in 3", got, pages, keys)
		}
		return ""
	})

	r := h.do(t, http.MethodGet, "/api/all?cursor="+start, nil)
	if r.status != http.StatusOK {
		t.Fatalf("streamed listing: status %d", r.status)
	}
	var all page
	if err := json.Unmarshal(r.body, &all); err != nil {
		t.Fatalf("streamed listing is not one JSON document: %v", err)
	}
	if len(all.Items) < len(keys) || all.Items[0].Key != keys[0] || all.Items[4].Key != keys[4] {
		t.Errorf("streamed listing starts %v, want %v first", all.Items[:min(5, len(all.Items))], keys)
	}
	if all.NextCursor != nil {
		t.Errorf("streamed listing: next_cursor %q, want null", *all.NextCursor)
	}
}

// Round robin reaches both replicas: their own logs show the request ids
// nginx forwarded.
func TestBothReplicasServe(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for i := range 20 {
		id := uniq("e2e-rr")
		ids = append(ids, id)
		r := h.do(t, http.MethodGet, "/healthz", nil, "X-Request-Id", id)
		if r.status != http.StatusOK {
			t.Fatalf("request %d: status %d", i, r.status)
		}
		if got := r.header.Get("X-Request-Id"); got != id {
			t.Errorf("X-Request-Id on the response = %q, want the client's %q", got, id)
		}
	}
	// A replica logs a request just after answering it: wait for the lines.
	eventually(t, 2*time.Second, func() string {
		served := map[string]int{}
		for _, id := range ids {
			for _, replica := range []string{"api1", "api2"} {
				served[replica] += len(logLines(t, h.logFile(replica), id))
			}
		}
		if served["api1"] == 0 || served["api2"] == 0 || served["api1"]+served["api2"] != len(ids) {
			return fmt.Sprintf("requests served per replica = %v; want both > 0, %d in all", served, len(ids))
		}
		return ""
	})
}

// Only the API is routed: the replicas' /metrics and pprof are not
// reachable through nginx, and nginx answers JSON itself.
func TestEdgeRefusesWhatIsNotTheAPI(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap", "/", "/api/", "/apix", "/healthz/x"} {
		t.Run(path, func(t *testing.T) {
			r := h.do(t, http.MethodGet, path, nil)
			if r.status != http.StatusNotFound {
				t.Fatalf("GET %s: status %d, want 404", path, r.status)
			}
			if got := r.json(t)["error"]; got != "not_found" {
				t.Errorf("GET %s: error %v, want not_found", path, got)
			}
			if strings.Contains(string(r.body), "go_goroutines") || r.header.Get("Server") != "nginx" {
				t.Errorf("GET %s: answer looks like a replica's: %s", path, r.body)
			}
		})
	}
	// The replicas serve them on their admin port, to Prometheus on the
	// host; their data port, the one nginx routes to, answers 404.
	h.mustAnswer(t, "api1 /metrics", "http://"+h.addr("KV_API1_ADMIN_PORT")+"/metrics")
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/vars"} {
		resp, err := http.Get("http://" + h.addr("KV_API1_PORT") + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on api1's data port: %d, want 404", path, resp.StatusCode)
		}
	}
}

// Bodies: over the limit nginx answers 413 JSON without bothering a
// replica; a large body within it (buffered to disk by nginx) goes through.
func TestBodyLimits(t *testing.T) {
	h := newHarness(t)
	big := make([]byte, 1<<20+1)
	for i := range big {
		big[i] = 'a'
	}
	r := h.do(t, http.MethodPut, "/api", big)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("PUT of 1 MiB + 1: status %d, want 413", r.status)
	}
	if got := r.json(t)["error"]; got != "payload_too_large" {
		t.Errorf("413 body error = %v, want payload_too_large", got)
	}
	if r.header.Get("X-Request-Id") == "" {
		t.Error("413 has no X-Request-Id")
	}

	key, value := uniq("e2e-big"), strings.Repeat("v", 200<<10)
	if r := h.put(t, key, value); r.status != http.StatusAccepted {
		t.Fatalf("PUT of a 200 KiB value: status %d, body %.200s", r.status, r.body)
	}
	eventually(t, 10*time.Second, func() string {
		r := h.do(t, http.MethodGet, "/api?key="+url.QueryEscape(key), nil)
		if r.status != http.StatusOK || len(r.json(t)["value"].(string)) != len(value) {
			return fmt.Sprintf("GET of the 200 KiB value: status %d", r.status)
		}
		return ""
	})
}

// nginx makes a request id when the client sends none (or one the API would
// not accept), and the replica logs the same id.
func TestRequestIDGenerated(t *testing.T) {
	h := newHarness(t)
	for _, sent := range []string{"", "bad id with spaces"} {
		r := h.do(t, http.MethodGet, "/healthz", nil, "X-Request-Id", sent)
		id := r.header.Get("X-Request-Id")
		if id == "" || id == sent || len(r.header.Values("X-Request-Id")) != 1 {
			t.Fatalf("sent %q: response X-Request-Id %q (%d values), want one fresh id", sent, id, len(r.header.Values("X-Request-Id")))
		}
		eventually(t, 2*time.Second, func() string {
			if n := len(logLines(t, h.logFile("api1"), id)) + len(logLines(t, h.logFile("api2"), id)); n != 1 {
				return fmt.Sprintf("id %s in the replicas' logs %d times, want 1", id, n)
			}
			return ""
		})
	}
}
