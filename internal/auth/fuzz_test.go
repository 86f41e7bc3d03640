package auth

import (
	"errors"
	"strings"
	"testing"
)

// Any policy file either loads or is refused with an error; one that
// loads grants only what its rules name.
func FuzzParsePolicy(f *testing.F) {
	f.Add(testPolicy)
	f.Add(`{"role_claims": [["roles"]], "roles": {"a": [{"key_prefix": "", "rights": ["read"]}]}}`)
	f.Add("role_claims: [[roles]]\nroles:\n  a: [{key_prefix: x, rights: [read, list]}]\n")
	f.Add("role_claims: &a [[roles]]\nroles: *a\n")
	f.Fuzz(func(t *testing.T, src string) {
		p, err := ParsePolicy([]byte(src))
		if err != nil {
			return
		}
		for _, rs := range p.roles {
			for r := range rightCount {
				for _, prefix := range rs.on[r] {
					if checkPrefix(prefix) != nil {
						t.Fatalf("a loaded policy holds prefix %q", prefix)
					}
				}
			}
		}
	})
}

// No Authorization header made of a valid token's pieces, or of anything
// else, is accepted unless it is the token itself.
func FuzzAuthenticate(f *testing.F) {
	fx := newFixture(f)
	a := fx.auth(f)
	good := fx.token(f, fx.claims("alice", "admin"))
	f.Add("Bearer " + good)
	f.Add("Bearer " + strings.ToUpper(good))
	f.Add("bearer  " + good + " ")
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("Basic x")
	f.Fuzz(func(t *testing.T, header string) {
		r := bearerRequest("")
		r.Header.Set("Authorization", header)
		p, err := a.Authenticate(r)
		if err == nil {
			if token, _ := bearer(r.Header); token != good || p.Subject != "alice" {
				t.Fatalf("accepted %q as %q", header, p.Subject)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) || !(errors.Is(err, ErrNoToken) || errors.Is(err, ErrInvalidToken)) {
			t.Fatalf("%q: error %v is not a refusal", header, err)
		}
		assertHeaderSafe(t, Challenge(err))
	})
}
