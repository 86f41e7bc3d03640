// Package auth identifies the clients of the data routes and judges what
// they may do: a Bearer JWT, verified offline against a key set (a JWKS
// file or an OIDC provider's JWKS URL, kept fresh, keys chosen by kid),
// signed with EdDSA or ES256 only, with exp, nbf, iss and aud checked
// within a small leeway; then a policy that maps the token's roles to read,
// write and list rights on key prefixes, as Consul's key_prefix rules and
// etcd's key ranges do.
//
// Verified tokens are cached (bounded, keyed by their SHA-256, never past
// exp, emptied whenever the key set changes), so that a client reusing its
// token pays for its signature once.
//
// The package picks no status code: its refusals are *Error values that
// wrap ErrNoToken, ErrInvalidToken or ErrForbidden, and the HTTP edge maps
// them (401 with Challenge's WWW-Authenticate, or 403). KV_AUTH=off turns
// it all off: every request is then an unrestricted principal with no
// subject.
package auth
