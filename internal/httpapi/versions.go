package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
)

// Tokens turns a key's versions into the opaque tokens clients hold, and
// back (package token).
type Tokens interface {
	Encode(key string, v kv.Version) string
	// Decode fails on a token this deployment never issued for key.
	Decode(key, token string) (kv.Version, error)
}

// VersionHeader carries the version token of what an answer is about: the
// operation a 202 accepted, the state a read returns.
const VersionHeader = "KV-Version"

// The query parameters of reading one's writes.
const (
	paramMinVersion = "min_version"
	paramWait       = "wait"
	paramTimeout    = "timeout"
	waitApplied     = "applied"
)

// single returns the one value of a query parameter; ok is false when it
// is absent, and a parameter given twice is a 400.
func single(q url.Values, name string) (v string, ok bool, err error) {
	vs, ok := q[name]
	switch {
	case !ok:
		return "", false, nil
	case len(vs) > 1:
		return "", false, &badRequest{code: "invalid_" + name, msg: name + " given more than once"}
	}
	return vs[0], true, nil
}

// waitTimeout reads ?timeout= (a Go duration: 500ms, 2s), allowed only
// beside what waits; nil means the configured default. The service caps
// it at KV_WAIT_MAX.
func waitTimeout(q url.Values, waits bool) (*time.Duration, error) {
	s, ok, err := single(q, paramTimeout)
	if err != nil || !ok {
		return nil, err
	}
	if !waits {
		return nil, &kv.ValidationError{Field: paramTimeout, Reason: "only with min_version (GET) or wait=applied (PUT, DELETE)"}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return nil, &kv.ValidationError{Field: paramTimeout, Reason: "not a duration such as 500ms or 2s"}
	}
	return &d, nil
}

// minVersion reads ?min_version=, the token of a version of key.
func (a *api) minVersion(q url.Values, key string) (v kv.Version, ok bool, err error) {
	s, ok, err := single(q, paramMinVersion)
	if err != nil || !ok {
		return kv.Version{}, false, err
	}
	v, err = a.tokens.Decode(key, s)
	if err != nil {
		return kv.Version{}, false, &kv.ValidationError{Field: paramMinVersion, Reason: "not a valid version token: " + err.Error()}
	}
	return v, true, nil
}

// waitParams reads what a write says of waiting: whether it waits
// (?wait=applied) and for how long. A read's min_version has no meaning on
// a write.
func waitParams(q url.Values) (waits bool, timeout *time.Duration, err error) {
	if _, ok := q[paramMinVersion]; ok {
		return false, nil, &kv.ValidationError{Field: paramMinVersion, Reason: "only on GET; a write waits with wait=applied"}
	}
	w, waits, err := single(q, paramWait)
	switch {
	case err != nil:
		return false, nil, err
	case waits && w != waitApplied:
		return false, nil, &kv.ValidationError{Field: paramWait, Reason: "the only wait is wait=applied"}
	}
	timeout, err = waitTimeout(q, waits)
	return waits, timeout, err
}

// version renders v of key as a token and sets the version header; the
// zero version (nothing stored) has none.
func (a *api) version(w http.ResponseWriter, key string, v kv.Version) *string {
	if v == (kv.Version{}) {
		return nil
	}
	t := a.tokens.Encode(key, v)
	w.Header().Set(VersionHeader, t)
	return &t
}

// versionOf returns the version an error names, if any: the delete that
// made a key not found, the newest version seen when a wait timed out.
func versionOf(err error) (kv.Version, bool) {
	var nf *kv.NotFoundError
	var nr *kv.NotReachedError
	switch {
	case errors.As(err, &nf):
		return nf.Version, true
	case errors.As(err, &nr):
		return nr.Newest, true
	}
	return kv.Version{}, false
}

// metricRoute is the route label of a request: its route template, but
// reads and writes that wait are told apart ("/api:min_version",
// "/api:wait"), since their latency is the queue's by design and would
// otherwise hide the API's own in /api's. (Not "/api?…": a label that
// looks like a query string would look like a raw URL.)
func metricRoute(r *http.Request) string {
	route := routePattern(r)
	if route != "/api" || r.URL.RawQuery == "" {
		return route
	}
	param, label := paramWait, "/api:wait"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		param, label = paramMinVersion, "/api:min_version"
	}
	if q, err := queryOf(r); err == nil && q.Has(param) {
		return label
	}
	return route
}
