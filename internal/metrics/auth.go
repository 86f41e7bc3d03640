package metrics

import "github.com/prometheus/client_golang/prometheus"

// Auth is the API's identity and access metrics.
type Auth struct {
	enabled   prometheus.Gauge
	keys      prometheus.Gauge
	keyErrors prometheus.Counter
	tokens    [tokenResults]prometheus.Counter
	forbidden *prometheus.CounterVec
}

// TokenResult is how a request's bearer token was judged.
type TokenResult uint8

// Token results: accepted from the verified-token cache, accepted after a
// signature check, absent, or refused.
const (
	TokenCached TokenResult = iota
	TokenVerified
	TokenMissing
	TokenInvalid
	tokenResults
)

var tokenResultNames = [tokenResults]string{"cached", "verified", "missing", "invalid"}

// NewAuth registers the auth metrics on reg.
func NewAuth(reg prometheus.Registerer) *Auth {
	tokens := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kvstack_auth_tokens_total",
		Help: "Bearer tokens judged, by result (cached: accepted from the verified-token cache; verified: accepted after a signature check; missing; invalid).",
	}, []string{"result"})
	m := &Auth{
		enabled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvstack_auth_enabled",
			Help: "1 when every data route needs a bearer token; 0 when KV_AUTH=off lets any client read, write and list every key.",
		}),
		keys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvstack_auth_keys",
			Help: "Signing keys loaded that can verify an accepted algorithm (EdDSA, ES256); at 0 every token is refused.",
		}),
		keyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvstack_auth_keyset_errors_total",
			Help: "Failed loads of the signing key set (JWKS file or URL); the keys held stay in use.",
		}),
		forbidden: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvstack_auth_forbidden_total",
			Help: "Requests with a valid token refused (403) because its roles lack the right, by right (read, write, list).",
		}, []string{"right"}),
	}
	for r := range tokenResults {
		m.tokens[r] = tokens.WithLabelValues(tokenResultNames[r])
	}
	for _, r := range []string{"read", "write", "list"} {
		m.forbidden.WithLabelValues(r)
	}
	reg.MustRegister(m.enabled, m.keys, m.keyErrors, tokens, m.forbidden)
	return m
}

// Enabled records whether auth is on.
func (m *Auth) Enabled(on bool) {
	if m == nil {
		return
	}
	if on {
		m.enabled.Set(1)
	} else {
		m.enabled.Set(0)
	}
}

// Keys records how many usable signing keys are loaded.
func (m *Auth) Keys(n int) {
	if m != nil {
		m.keys.Set(float64(n))
	}
}

// KeySetError counts one failed load of the key set.
func (m *Auth) KeySetError() {
	if m != nil {
		m.keyErrors.Inc()
	}
}

// Token counts one token judged.
func (m *Auth) Token(r TokenResult) {
	if m != nil && r < tokenResults {
		m.tokens[r].Inc()
	}
}

// Forbidden counts one request refused for lack of right.
func (m *Auth) Forbidden(right string) {
	if m != nil {
		m.forbidden.WithLabelValues(right).Inc()
	}
}
