package main

import (
	"strconv"
	"strings"
	"testing"
)

// Every campaign has ports of its own, below the ephemeral range
// (32768-60999), a Redis node's cluster bus (its port + 10000) included:
// the campaigns run one at a time, but a port in the ephemeral range may
// be taken by any outgoing connection.
func TestCampaignPortsApart(t *testing.T) {
	campaigns := map[string]map[string]string{"chaos": chaosPorts, "chaos-ha": chaosHAPorts, "dr-drill": drPorts, "dr-drill-ha": drHAPorts}
	owner := map[int]string{}
	for name, ports := range campaigns {
		for k, v := range ports {
			p, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s %s=%q", name, k, v)
			}
			all := []int{p}
			if strings.HasPrefix(k, "KV_HA_REDIS") && !strings.HasSuffix(k, "_EXPORTER_PORT") {
				all = append(all, p+10000)
			}
			for _, p := range all {
				if p >= 32768 {
					t.Errorf("%s %s: %d is in the ephemeral range", name, k, p)
				}
				if o, ok := owner[p]; ok && o != name {
					t.Errorf("port %d is %s's and %s's (%s)", p, o, name, k)
				}
				owner[p] = name
			}
		}
	}
}
