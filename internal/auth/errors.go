package auth

import (
	"errors"
	"strings"
)

// The three ways a request is refused. The HTTP edge maps them to status
// codes: ErrNoToken and ErrInvalidToken to 401 with the WWW-Authenticate
// challenge of Challenge, ErrForbidden to 403.
var (
	// ErrNoToken: the request carries no Bearer token.
	ErrNoToken = errors.New("no bearer token")
	// ErrInvalidToken: the token is malformed, expired, not yet valid,
	// badly signed, or not meant for this API.
	ErrInvalidToken = errors.New("invalid bearer token")
	// ErrForbidden: the token is valid, and its roles do not grant the
	// right on the key.
	ErrForbidden = errors.New("forbidden")
)

// Error is a refusal: a stable code and a message a client may read, which
// never says whether a key exists. It wraps one of the three sentinels.
type Error struct {
	Code    string // missing_token, invalid_token, forbidden
	Message string
	kind    error
	cause   error // for logs: the library's reason, never sent
}

func (e *Error) Error() string {
	if e.cause != nil {
		return e.Message + ": " + e.cause.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

var errNoToken = &Error{Code: "missing_token", kind: ErrNoToken,
	Message: "this route needs Authorization: Bearer <token>"}

func invalidToken(message string, cause error) *Error {
	return &Error{Code: "invalid_token", Message: message, kind: ErrInvalidToken, cause: cause}
}

func forbidden(r Right) *Error {
	return &Error{Code: "forbidden", kind: ErrForbidden,
		Message: "the token's roles do not grant " + r.String() + " on this key"}
}

// errListForbidden is a listing by a token that may list nothing.
var errListForbidden = &Error{Code: "forbidden", kind: ErrForbidden,
	Message: "the token's roles grant list and read on no key prefix"}

// Realm names the protection space in challenges (RFC 7235).
const Realm = "kvstack"

// Challenge is the WWW-Authenticate value answering err (RFC 6750 §3): a
// bare challenge when the request had no token, error="invalid_token" with
// a description when its token was refused, and error="insufficient_scope"
// on a 403.
func Challenge(err error) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="` + Realm + `"`)
	var e *Error
	switch {
	case errors.Is(err, ErrInvalidToken):
		b.WriteString(`, error="invalid_token"`)
	case errors.Is(err, ErrForbidden):
		b.WriteString(`, error="insufficient_scope"`)
	default:
		return b.String()
	}
	if errors.As(err, &e) {
		b.WriteString(`, error_description="` + e.Message + `"`)
	}
	return b.String()
}
