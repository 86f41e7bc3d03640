package httpapi

import (
	"errors"
	"net/http"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/kv"
)

// authenticate admits a request to the data routes when its bearer token
// is valid (always, with KV_AUTH=off), and keeps its principal on the
// exchange for the handlers, which judge its rights on the key, and for
// the access log and the span, which name its subject. Its subject goes in
// the request's context (kv.WithWriter): the writes it makes carry it, and
// its waits count against its share of the waiters. A refused token gets
// 401 before anything about the request is looked at.
func (a *api) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.auth.Authenticate(r)
		if err != nil {
			a.refuse(w, r, err)
			return
		}
		exchangeOf(r.Context()).principal = p
		next.ServeHTTP(w, r.WithContext(kv.WithWriter(r.Context(), p.Subject)))
	})
}

// principal is who the request acts for (authenticate set it).
func principal(r *http.Request) *auth.Principal {
	return exchangeOf(r.Context()).principal
}

// refuse answers an *auth.Error: 401 with a Bearer challenge for a missing
// or refused token, 403 for a valid token without the right. The reason the
// library gave stays in the debug log; the client reads the message.
func (a *api) refuse(w http.ResponseWriter, r *http.Request, err error) {
	var e *auth.Error
	if !errors.As(err, &e) {
		a.fail(w, r, "", err)
		return
	}
	status := http.StatusUnauthorized
	if errors.Is(err, auth.ErrForbidden) {
		status = http.StatusForbidden
	}
	a.logFor(r).Debug().Err(err).Int("status", status).Msg("request refused")
	w.Header().Set("WWW-Authenticate", auth.Challenge(err))
	writeError(w, r, status, e.Code, e.Message)
}
