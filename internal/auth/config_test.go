package auth

import (
	"testing"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/kvstack/kvstack/internal/envdefault"
)

func TestConfigDefaults(t *testing.T) {
	c := envdefault.Of[Config]()
	if !c.Enabled || c.Audience != "kvstack" || c.Leeway != 30*time.Second || c.JWKSRefresh != 5*time.Minute || c.CacheSize != 10000 {
		t.Fatalf("defaults %+v", c)
	}
}

func TestSwitch(t *testing.T) {
	for in, want := range map[string]bool{"on": true, "ON": true, "true": true, "1": true, "off": false, "Off": false, "false": false, "0": false} {
		c, err := env.ParseAsWithOptions[Config](env.Options{Environment: map[string]string{"KV_AUTH": in}})
		if err != nil || bool(c.Enabled) != want {
			t.Errorf("KV_AUTH=%s: %v, %v; want %v", in, c.Enabled, err, want)
		}
	}
	for _, in := range []string{"maybe", "yes please"} {
		if _, err := env.ParseAsWithOptions[Config](env.Options{Environment: map[string]string{"KV_AUTH": in}}); err == nil {
			t.Errorf("KV_AUTH=%q accepted", in)
		}
	}
}
