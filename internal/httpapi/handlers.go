package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/kvstack/kvstack/internal/kv"
)

// failRequest answers the edge's own errors (size, syntax) and hands the
// rest to fail.
func (a *api) failRequest(w http.ResponseWriter, r *http.Request, err error) {
	var br *badRequest
	switch {
	case errors.Is(err, errTooLarge):
		writeError(w, r, http.StatusRequestEntityTooLarge, "payload_too_large", "request body is larger than the limit")
	case errors.As(err, &br):
		writeError(w, r, http.StatusBadRequest, br.code, br.msg)
	default:
		a.fail(w, r, err)
	}
}

type readResponse struct {
	Key    string    `json:"key"`
	Value  string    `json:"value"`
	Source kv.Source `json:"source"`
}

func (a *api) getKey(w http.ResponseWriter, r *http.Request) {
	key, ok, err := queryKey(r)
	if err == nil && !ok {
		err = &kv.ValidationError{Field: "key", Reason: "missing; use ?key="}
	}
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	read, err := a.svc.Get(r.Context(), key)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, readResponse{Key: read.Entry.Key, Value: read.Entry.Value, Source: read.Source})
}

type acceptedResponse struct {
	Status    string  `json:"status"`
	Op        kv.Kind `json:"op"`
	Key       string  `json:"key"`
	OpID      string  `json:"op_id"`
	Timestamp string  `json:"timestamp"`
}

func writeAccepted(w http.ResponseWriter, r *http.Request, op kv.Op) {
	writeJSON(w, r, http.StatusAccepted, acceptedResponse{
		Status: "accepted", Op: op.Kind, Key: op.Key,
		OpID: op.Version.OpID.String(), Timestamp: op.Version.Time.Format(kv.TimestampLayout),
	})
}

// putKey takes the key and value from the body; a ?key= beside it must name
// the same key, as for DELETE, rather than be silently ignored.
func (a *api) putKey(w http.ResponseWriter, r *http.Request) {
	qkey, inQuery, err := queryKey(r)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	body, err := readBody(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	req, err := decodeWrite(body)
	switch {
	case err != nil:
	case req.Value == nil:
		err = &kv.ValidationError{Field: "value", Reason: "missing"}
	case inQuery && *req.Key != qkey:
		err = errKeysDisagree
	}
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	op, err := a.svc.Put(r.Context(), *req.Key, *req.Value)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	writeAccepted(w, r, op)
}

// errKeysDisagree answers a write whose ?key= and body name different keys.
var errKeysDisagree = &kv.ValidationError{Field: "key", Reason: "query and body name different keys"}

// deleteKey takes the key from the query or from a {"key":K} body; given in
// both, they must agree.
func (a *api) deleteKey(w http.ResponseWriter, r *http.Request) {
	key, ok, err := queryKey(r)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	body, err := readBody(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	if len(body) > 0 {
		req, err := decodeWrite(body)
		switch {
		case err != nil:
		case req.Value != nil:
			err = &kv.ValidationError{Field: "value", Reason: "not allowed in a delete"}
		case ok && *req.Key != key:
			err = errKeysDisagree
		}
		if err != nil {
			a.failRequest(w, r, err)
			return
		}
		key, ok = *req.Key, true
	}
	if !ok {
		a.failRequest(w, r, &kv.ValidationError{Field: "key", Reason: "missing; use ?key= or a {\"key\":…} body"})
		return
	}
	op, err := a.svc.Delete(r.Context(), key)
	if err != nil {
		a.failRequest(w, r, err)
		return
	}
	writeAccepted(w, r, op)
}

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz probes every dependency at once and names the ones that failed.
func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(a.checks))
	for _, c := range a.checks {
		go func() {
			ctx, cancel := context.WithTimeout(r.Context(), a.cfg.ReadyTimeout)
			defer cancel()
			results <- result{c.Name, c.Ping(ctx)}
		}()
	}
	checks := make(map[string]string, len(a.checks))
	var failed []string
	for range a.checks {
		res := <-results
		checks[res.name] = "ok"
		if res.err != nil {
			checks[res.name] = "unavailable"
			failed = append(failed, res.name)
			a.logFor(r).Warn().Err(res.err).Str("dependency", res.name).Msg("readiness check failed")
		}
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		writeJSON(w, r, http.StatusServiceUnavailable, struct {
			errorBody
			Checks map[string]string `json:"checks"`
		}{errorBody{"not_ready", "unavailable: " + strings.Join(failed, ", ")}, checks})
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

func writeJSON(w http.ResponseWriter, _ *http.Request, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a write error means the client left
}
