//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// Prometheus scrapes every part of the stack it is configured for, and
// each answers.
func TestPrometheusScrapesTheStack(t *testing.T) {
	h := newHarness(t)
	prom := "http://" + h.addr("KV_PROMETHEUS_PORT")
	h.mustAnswer(t, "Prometheus", prom+"/-/ready")
	want := []string{"alertmanager", "kv-api", "kv-consumer", "prometheus", "rabbitmq", "rabbitmq-node"}
	eventually(t, 20*time.Second, func() string {
		r, err := h.try(http.MethodGet, prom+"/api/v1/targets?state=active", nil)
		if err != nil || r.status != http.StatusOK {
			return fmt.Sprintf("Prometheus targets: %v %d", err, r.status)
		}
		var body struct {
			Data struct {
				ActiveTargets []struct {
					ScrapePool string `json:"scrapePool"`
					ScrapeURL  string `json:"scrapeUrl"`
					Health     string `json:"health"`
					LastError  string `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			return err.Error()
		}
		pools, apis := map[string]bool{}, 0
		var down []string
		for _, tg := range body.Data.ActiveTargets {
			pools[tg.ScrapePool] = true
			if tg.ScrapePool == "kv-api" {
				apis++
			}
			if tg.Health != "up" {
				down = append(down, fmt.Sprintf("%s %s: %s %s", tg.ScrapePool, tg.ScrapeURL, tg.Health, tg.LastError))
			}
		}
		var got []string
		for p := range pools {
			got = append(got, p)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want, ",") || apis != 2 {
			return fmt.Sprintf("scrape pools %v (%d kv-api targets), want %v (2)", got, apis, want)
		}
		if len(down) > 0 {
			return "targets not up: " + strings.Join(down, "; ")
		}
		return ""
	})
}
