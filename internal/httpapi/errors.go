package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/kvstack/kvstack/internal/clock"
	"github.com/kvstack/kvstack/internal/kv"
)

// errorBody is every error response: a stable code for programs and a
// message for people.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// versionedError is an error about a key that names a version of it: a
// deleted key's 404 (the delete's), a wait's 504 (the newest seen; null when
// the key was never stored).
type versionedError struct {
	errorBody
	Version *string `json:"version"`
}

// StatusClientClosedRequest is nginx's code for a request whose client left
// before the answer; it is logged and measured, and nobody reads it.
const StatusClientClosedRequest = 499

// fail maps an error from the service to its response. It is the only place
// that picks a status code for a domain error; internal details never reach
// the client. key, when set, is the key the answer is about.
func (a *api) fail(w http.ResponseWriter, r *http.Request, key string, err error) {
	var ve *kv.ValidationError
	switch {
	case errors.As(err, &ve):
		writeError(w, r, http.StatusBadRequest, "invalid_"+ve.Field, ve.Error())
	case errors.Is(err, kv.ErrInvalid):
		writeError(w, r, http.StatusBadRequest, "invalid_request", "the request is not valid")
	case errors.Is(err, kv.ErrNotFound):
		a.writeVersioned(w, r, key, err, http.StatusNotFound, "not_found", "no such key")
	case errors.Is(err, kv.ErrNotReached):
		a.writeVersioned(w, r, key, err, http.StatusGatewayTimeout, "version_not_reached",
			"the key was not applied up to min_version within the wait; version is the newest seen. Retry, or wait longer with timeout=")
	case errors.Is(err, kv.ErrTooManyClientWaiters):
		a.retryAfter(w)
		writeError(w, r, http.StatusTooManyRequests, "rate_limited", "this client has KV_MAX_WAITERS_PER_CLIENT requests waiting on this replica; retry later")
	case errors.Is(err, kv.ErrTooManyWaiters):
		a.retryAfter(w)
		writeError(w, r, http.StatusServiceUnavailable, "too_many_waiters", "too many requests wait on this replica; retry later")
	case errors.Is(err, clock.ErrSkewed):
		a.logFor(r).Error().Err(err).Msg("write refused: this replica's clock is off")
		a.retryAfter(w)
		writeError(w, r, http.StatusServiceUnavailable, "clock_skew", "this replica's clock is off, so its writes could be ordered wrongly; retry (another replica may take it)")
	case errors.Is(err, kv.ErrUnavailable):
		a.logFor(r).Warn().Err(err).Msg("dependency unavailable")
		a.retryAfter(w)
		writeError(w, r, http.StatusServiceUnavailable, "unavailable", "the service cannot take this request now; retry later")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		writeError(w, r, StatusClientClosedRequest, "client_closed_request", "the client left before the answer")
	default:
		a.logFor(r).Error().Err(err).Msg("request failed")
		writeError(w, r, http.StatusInternalServerError, "internal", "internal error")
	}
}

func (a *api) retryAfter(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(a.cfg.RetryAfter.Seconds()))))
}

// writeVersioned answers an error that may name a version of key.
func (a *api) writeVersioned(w http.ResponseWriter, r *http.Request, key string, err error, status int, code, message string) {
	v, ok := versionOf(err)
	if key == "" || !ok {
		writeError(w, r, status, code, message)
		return
	}
	writeJSON(w, r, status, versionedError{errorBody{code, message}, a.version(w, key, v)})
}

func writeError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	writeJSON(w, r, status, errorBody{Error: code, Message: message})
}
