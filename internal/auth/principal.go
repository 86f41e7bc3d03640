package auth

import (
	"errors"
	"unicode"
	"unicode/utf8"
)

// Principal is who a request acts for: the token's subject, which every
// write it makes carries, and what the token's roles grant. It is shared by
// every request presenting the same token, and never changed.
type Principal struct {
	// Subject is the token's sub; empty only with KV_AUTH=off.
	Subject string
	Rights  Rights
	// until is when the token expires: no request is served on this
	// verification at or after it.
	until int64 // Unix nanoseconds
}

// Allows tells whether the principal may exercise r on key.
func (p *Principal) Allows(r Right, key string) bool {
	return p.Rights.Allows(r, key)
}

// unrestricted is every request's principal with KV_AUTH=off.
var unrestricted = &Principal{Rights: allRights()}

// maxSubjectBytes bounds the sub that writes carry into messages, logs,
// spans and rows.
const maxSubjectBytes = 255

// checkSubject accepts 1–255 bytes of UTF-8 without control characters:
// it is written into log lines, span attributes and a column.
func checkSubject(sub string) error {
	switch {
	case sub == "":
		return errors.New("no sub")
	case len(sub) > maxSubjectBytes:
		return errors.New("sub too long")
	case !utf8.ValidString(sub):
		return errors.New("sub not UTF-8")
	}
	for _, r := range sub {
		if unicode.IsControl(r) {
			return errors.New("sub has a control character")
		}
	}
	return nil
}
