package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestJudgeOutage(t *testing.T) {
	outage := fault{outageChecks: outageChecks{apiReady: true, refuseWithin: refusePrompt, hitsServed: true}}
	tests := []struct {
		name string
		fig  outageFigures
		want string // a failure containing it; "" for none
	}{
		{"whole", outageFigures{holdFromCache: 10, hold503: 3, refusedMax: time.Second}, ""},
		{"a replica out", outageFigures{holdFromCache: 10, apiOut: []string{"api1 at 2 polls"}}, "taken out of the edge"},
		{"a slow refusal", outageFigures{holdFromCache: 10, refusedMax: 4 * time.Second}, "refused write took"},
		{"no cache hit", outageFigures{holdFromStore: 10}, "no read served from the cache"},
		{"a 502", outageFigures{holdFromCache: 10, holdOther: 1}, "otherwise than 503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := result{outageFigures: tt.fig}
			r.judgeOutage(outage)
			got := strings.Join(r.failures, "; ")
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("failures %q, want one with %q", got, tt.want)
			}
			plain := result{outageFigures: tt.fig}
			plain.judgeOutage(fault{})
			if len(plain.failures) > 0 {
				t.Errorf("a fault without outage checks failed: %v", plain.failures)
			}
		})
	}
}

func TestReadyState(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"status":"ready","capabilities":{"list":{"state":"down"},"read":{"state":"degraded","reason":"x"},"write":{"state":"ok"}}}`))
	}))
	defer srv.Close()
	got := readyState(context.Background(), srv.Client(), strings.TrimPrefix(srv.URL, "http://"))
	if want := "ready (list down, read degraded)"; got != want {
		t.Errorf("readyState = %q, want %q", got, want)
	}
	if got := readyState(context.Background(), srv.Client(), "127.0.0.1:1"); got != "no answer" {
		t.Errorf("readyState of nothing = %q, want no answer", got)
	}
}

// A replica that says it is not ready is out at once; one that does not
// answer a poll is out only at the third in a row, as for a probe.
func TestReadinessLogCountsAReplicaOut(t *testing.T) {
	l := &readinessLog{start: time.Now(), last: map[string]string{}, apiOut: map[string]int{}, silent: map[string]int{}}
	for _, s := range []string{"ready", "no answer", "no answer", "ready (read degraded)", "no answer"} {
		l.note("api1", s)
	}
	l.note("consumer", "not_ready (apply down)")
	if out := l.apiNotReady(); len(out) > 0 {
		t.Fatalf("out %v after two polls unanswered in a row and a consumer not ready, want none", out)
	}
	l.note("api1", "no answer")
	l.note("api1", "no answer")
	l.note("api2", "draining")
	if got, want := strings.Join(l.apiNotReady(), ", "), "api1 at 1 polls, api2 at 1 polls"; got != want {
		t.Errorf("out %q, want %q", got, want)
	}
}
