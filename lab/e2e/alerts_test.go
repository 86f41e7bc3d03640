//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvstack/kvstack/lab/native"
)

// alertFor is the test-only `for:` (and Alertmanager group wait/interval)
// that the native stack renders when KV_ALERT_FOR is set; thresholds are
// the production ones.
const alertFor = "5s"

// webhook is an Alertmanager webhook receiver: it records every alert of
// every notification it gets.
type webhook struct {
	url string
	mu  sync.Mutex
	got []notifiedAlert
}

type notifiedAlert struct {
	Status      string            `json:"status"` // firing or resolved
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func startWebhook(t *testing.T, host string) *webhook {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	w := &webhook{url: "http://" + ln.Addr().String() + "/alerts"}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var n struct {
			Alerts []notifiedAlert `json:"alerts"`
		}
		if r.URL.Path != "/alerts" || json.NewDecoder(r.Body).Decode(&n) != nil {
			http.Error(rw, "want a webhook notification on /alerts", http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.got = append(w.got, n.Alerts...)
		w.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return w
}

// find returns the first notified alert with that status and labels.
func (w *webhook) find(status string, labels map[string]string) (notifiedAlert, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.got {
		if a.Status == status && hasLabels(a.Labels, labels) {
			return a, true
		}
	}
	return notifiedAlert{}, false
}

func (w *webhook) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s []string
	for _, a := range w.got {
		s = append(s, fmt.Sprintf("%s %s%v", a.Status, a.Labels["alertname"], a.Labels))
	}
	return fmt.Sprintf("%d alerts notified: %s", len(w.got), strings.Join(s, "; "))
}

func hasLabels(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// renderWith renders the stack's configs with extra settings (NAME=VALUE,
// later ones win) and reloads the processes whose config changed.
func renderWith(t *testing.T, extra ...string) error {
	t.Helper()
	env := loadStackEnv(t, extra...)
	return native.WriteConfigs(context.Background(), env.s, env.stack().Supervisor(), nil)
}

// promAlert is an alert as Prometheus' /api/v1/alerts shows it.
type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"` // pending or firing
	Value  string            `json:"value"`
}

func (p prometheus) alerts() ([]promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	return data.Alerts, p.get("/api/v1/alerts", nil, &data)
}

// amAlert is an alert as Alertmanager's /api/v2/alerts shows it.
type amAlert struct {
	Labels map[string]string `json:"labels"`
	Status struct {
		State       string   `json:"state"` // active, suppressed, unprocessed
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

// alerting is the stack's alerting path rendered for a test: every alert's
// `for:` and Alertmanager's waits shortened to alertFor (KV_ALERT_FOR), its
// notifications sent to the test's webhook; the stack's own configs are
// rendered back when the test ends.
type alerting struct {
	h        *harness
	p        prometheus
	am       string // Alertmanager's base URL
	hook     *webhook
	deadline time.Time
}

func startAlerting(t *testing.T, budget time.Duration) *alerting {
	t.Helper()
	h := newHarness(t)
	a := &alerting{h: h, p: newPrometheus(t, h), am: "http://" + h.addr("KV_ALERTMANAGER_PORT"), deadline: time.Now().Add(budget)}
	h.mustAnswer(t, "Alertmanager", a.am+"/-/ready")
	a.hook = startWebhook(t, h.host())
	// The stack's configs as they were (no KV_ALERT_FOR; the webhook the
	// environment says), rendered back whatever happens.
	t.Cleanup(func() {
		if err := renderWith(t, "KV_ALERT_FOR=", "ALERT_WEBHOOK_URL="+os.Getenv("ALERT_WEBHOOK_URL")); err != nil {
			t.Errorf("restoring the stack's alert configs: %v", err)
		}
	})
	if err := renderWith(t, "KV_ALERT_FOR="+alertFor, "ALERT_WEBHOOK_URL="+a.hook.url); err != nil {
		t.Fatalf("rendering the configs with KV_ALERT_FOR: %v", err)
	}
	eventually(t, a.within(30*time.Second), func() string {
		rules, err := a.p.rules()
		if err != nil {
			return err.Error()
		}
		for _, r := range rules {
			if r.Name == "QueueLagHigh" && r.Duration == 5 {
				return ""
			}
		}
		return "Prometheus has not loaded the rules with for: " + alertFor
	})
	eventually(t, a.within(30*time.Second), func() string {
		var status struct {
			Config struct {
				Original string `json:"original"`
			} `json:"config"`
		}
		r, err := h.try(http.MethodGet, a.am+"/api/v2/status", nil)
		if err == nil {
			err = json.Unmarshal(r.body, &status)
		}
		if err != nil || !strings.Contains(status.Config.Original, a.hook.url) {
			return fmt.Sprintf("Alertmanager has not loaded the webhook %s: %v", a.hook.url, err)
		}
		return ""
	})
	return a
}

// within is max, or what is left of the test's budget when that is less.
func (a *alerting) within(max time.Duration) time.Duration {
	if left := time.Until(a.deadline); left < max {
		return left
	}
	return max
}

// amAlerts lists Alertmanager's alerts matching the filters (name="value").
func (a *alerting) amAlerts(filters ...string) ([]amAlert, error) {
	var alerts []amAlert
	r, err := a.h.try(http.MethodGet, a.am+"/api/v2/alerts?"+url.Values{"filter": filters}.Encode(), nil)
	if err == nil {
		err = json.Unmarshal(r.body, &alerts)
	}
	return alerts, err
}

// The consumer stops while writes go on: add_key's backlog has no drain,
// its estimated drain time is past QueueLagHigh's 30 s (infinite), the
// alert fires in Prometheus and reaches a webhook through Alertmanager
// (while TargetDown inhibits QueueWithoutConsumer there); the consumer
// comes back, drains the queue, and the alert resolves, with a resolved
// notification. Nothing of it reads head_message_timestamp, which quorum
// queues lack: the test says which type add_key is. Alert `for:` and
// Alertmanager's waits are shortened to 5s through KV_ALERT_FOR; the
// consumer runs again whatever happens.
func TestQueueLagAlert(t *testing.T) {
	a := startAlerting(t, 3*time.Minute)
	h, p, hook, within := a.h, a.p, a.hook, a.within

	lagAlert := func(state string) func() string {
		return func() string {
			alerts, err := p.alerts()
			if err != nil {
				return err.Error()
			}
			var seen []string
			for _, a := range alerts {
				if a.Labels["alertname"] == "QueueLagHigh" {
					if a.Labels["queue"] == "add_key" && a.State == state {
						return ""
					}
					seen = append(seen, fmt.Sprintf("%v %s (value %s)", a.Labels, a.State, a.Value))
				}
			}
			if state == "" && len(seen) == 0 {
				return ""
			}
			return fmt.Sprintf("QueueLagHigh{queue=add_key} not %q in Prometheus; QueueLagHigh alerts: %v", state, seen)
		}
	}
	// Before: the consumer keeps up, nothing fires.
	eventually(t, within(60*time.Second), lagAlert(""))
	t.Logf("add_key is a %s queue", queueType(t, p, "add_key"))

	// The consumer comes back whatever happens.
	t.Cleanup(func() {
		if err := h.startProcess("consumer"); err != nil {
			t.Errorf("restarting the consumer: %v", err)
		}
	})
	if err := h.stack().Supervisor().Stop(context.Background(), "consumer"); err != nil {
		t.Fatalf("stopping the consumer: %v", err)
	}
	stopWriting := keepWriting(t, h)
	defer stopWriting()
	start := time.Now()

	// Firing, and the estimated drain time of add_key is past the
	// threshold: the lag is seen while nothing is applied (the consumer's
	// histogram may have fired it earlier, after a recent backlog).
	drain := `queue:kvstack_queue_drain_time_seconds:estimate{queue="add_key"} > 30`
	eventually(t, within(90*time.Second), func() string {
		if msg := lagAlert("firing")(); msg != "" {
			return msg
		}
		res, err := p.query(drain)
		if err != nil || len(res) == 0 {
			return fmt.Sprintf("QueueLagHigh fires, but %s is empty (%v)", drain, err)
		}
		return ""
	})
	t.Logf("QueueLagHigh firing in Prometheus, add_key's drain time over 30s, %s after the consumer stopped", time.Since(start).Round(time.Second))
	firing := map[string]string{"alertname": "QueueLagHigh", "queue": "add_key", "severity": "critical"}
	eventually(t, within(30*time.Second), func() string {
		a, ok := hook.find("firing", firing)
		if !ok {
			return "no firing QueueLagHigh{queue=add_key} at the webhook; " + hook.summary()
		}
		for _, k := range []string{"summary", "description", "runbook"} {
			if a.Annotations[k] == "" || strings.Contains(a.Annotations[k], "{{") {
				return fmt.Sprintf("annotation %s = %q", k, a.Annotations[k])
			}
		}
		return ""
	})
	t.Logf("QueueLagHigh notified %s after the consumer stopped", time.Since(start).Round(time.Second))

	// Alertmanager holds QueueWithoutConsumer back: the consumer's
	// TargetDown explains it.
	eventually(t, within(30*time.Second), func() string {
		alerts, err := a.amAlerts(`alertname="QueueWithoutConsumer"`, `queue="add_key"`)
		if err != nil || len(alerts) != 1 {
			return fmt.Sprintf("QueueWithoutConsumer{queue=add_key} in Alertmanager: %v, %d alerts", err, len(alerts))
		}
		if alerts[0].Status.State != "suppressed" || len(alerts[0].Status.InhibitedBy) == 0 {
			return fmt.Sprintf("QueueWithoutConsumer is %s (inhibited by %v), want suppressed by TargetDown", alerts[0].Status.State, alerts[0].Status.InhibitedBy)
		}
		return ""
	})
	if _, ok := hook.find("firing", map[string]string{"alertname": "QueueWithoutConsumer"}); ok {
		t.Errorf("QueueWithoutConsumer reached the webhook although TargetDown inhibits it; %s", hook.summary())
	}

	stopWriting()
	if err := h.startProcess("consumer"); err != nil {
		t.Fatalf("starting the consumer again: %v", err)
	}
	restarted := time.Now()
	eventually(t, within(60*time.Second), lagAlert(""))
	eventually(t, within(30*time.Second), func() string {
		if _, ok := hook.find("resolved", firing); !ok {
			return "no resolved QueueLagHigh{queue=add_key} at the webhook; " + hook.summary()
		}
		return ""
	})
	t.Logf("QueueLagHigh resolved and notified %s after the consumer restarted", time.Since(restarted).Round(time.Second))
}

// queueType says whether queue is a quorum queue (its members report
// rabbitmq_detailed_raft_* metrics) or a classic one (they do not), as
// Prometheus sees it.
func queueType(t *testing.T, p prometheus, queue string) string {
	t.Helper()
	res, err := p.query(fmt.Sprintf(`count(rabbitmq_detailed_raft_term_total{job="rabbitmq",queue=%q})`, queue))
	if err != nil {
		t.Fatalf("the members of queue %s: %v", queue, err)
	}
	if len(res) == 0 {
		return "classic"
	}
	return fmt.Sprintf("quorum (members on %v nodes)", res[0].Value[1])
}

// keepWriting PUTs through nginx, ten a second, until the returned func is
// called; every write must be accepted while the consumer is down.
func keepWriting(t *testing.T, h *harness) (stop func()) {
	done := make(chan struct{})
	finished := make(chan string, 1)
	prefix := uniq("e2e-lag")
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var failures []string
		for i := 0; ; i++ {
			select {
			case <-done:
				finished <- strings.Join(failures, "; ")
				return
			case <-tick.C:
			}
			body, _ := json.Marshal(map[string]string{"key": fmt.Sprintf("%s-%d", prefix, i), "value": "v"})
			r, err := h.try(http.MethodPut, h.nginx+"/api", body)
			if (err != nil || r.status != http.StatusAccepted) && len(failures) < 5 {
				failures = append(failures, fmt.Sprintf("PUT %d: %v %d %s", i, err, r.status, r.body))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			if f := <-finished; f != "" {
				t.Errorf("writes refused while the consumer was down: %s", f)
			}
		})
	}
}
