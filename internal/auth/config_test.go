package auth

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/kvstack/kvstack/internal/envdefault"
)

func TestConfigDefaults(t *testing.T) {
	c := envdefault.Of[Config]()
	if !bool(c.Enabled) || c.Audience != "kvstack" || c.Leeway != 30*time.Second || c.JWKSRefresh != 5*time.Minute || c.CacheSize != 10000 ||
		!slices.Equal(c.Algorithms, DefaultAlgorithms) {
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

// KV_AUTH_ALGORITHMS opts in RSA for a provider that signs with it, and
// never a symmetric algorithm or none.
func TestAlgorithms(t *testing.T) {
	base := map[string]string{"KV_AUTH_JWKS_FILE": "jwks.json", "KV_AUTH_ISSUER": "i", "KV_AUTH_POLICY_FILE": "p.yaml"}
	for in, ok := range map[string]bool{"EdDSA,ES256,RS256": true, "PS256": true, "HS256": false, "none": false, "EdDSA,HS512": false} {
		vars := map[string]string{"KV_AUTH_ALGORITHMS": in}
		for k, v := range base {
			vars[k] = v
		}
		c, err := env.ParseAsWithOptions[Config](env.Options{Environment: vars})
		if err == nil {
			err = c.Check()
		}
		if (err == nil) != ok {
			t.Errorf("KV_AUTH_ALGORITHMS=%q: %v, want accepted %v", in, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "KV_AUTH_ALGORITHMS") {
			t.Errorf("KV_AUTH_ALGORITHMS=%q: %v does not name the variable", in, err)
		}
	}
}
