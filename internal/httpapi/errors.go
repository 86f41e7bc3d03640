package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/kvstack/kvstack/internal/kv"
)

// errorBody is every error response: a stable code for programs and a
// message for people.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// fail maps an error from the service to its response. It is the only place
// that picks a status code for a domain error; internal details never reach
// the client.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ve *kv.ValidationError
	switch {
	case errors.As(err, &ve):
		writeError(w, r, http.StatusBadRequest, "invalid_"+ve.Field, ve.Error())
	case errors.Is(err, kv.ErrInvalid):
		writeError(w, r, http.StatusBadRequest, "invalid_request", "the request is not valid")
	case errors.Is(err, kv.ErrNotFound):
		writeError(w, r, http.StatusNotFound, "not_found", "no such key")
	case errors.Is(err, kv.ErrUnavailable):
		a.logFor(r).Warn().Err(err).Msg("dependency unavailable")
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(a.cfg.RetryAfter.Seconds()))))
		writeError(w, r, http.StatusServiceUnavailable, "unavailable", "the service cannot take this request now; retry later")
	default:
		a.logFor(r).Error().Err(err).Msg("request failed")
		writeError(w, r, http.StatusInternalServerError, "internal", "internal error")
	}
}

func writeError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	writeJSON(w, r, status, errorBody{Error: code, Message: message})
}
