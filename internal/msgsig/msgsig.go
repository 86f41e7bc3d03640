// Package msgsig signs the messages the API queues and checks them in the
// consumer, so that only a holder of the shared key can make an operation
// the consumer applies: a client of the broker without it (a stolen broker
// password, a publish through the management UI) can only fill the DLQ.
//
// A signature is HMAC-SHA256 over the scheme's name, the message's kind
// (the queue it is meant for: a put's body on the delete queue would
// delete its key), its writer (the kv-written-by header: who asked for the
// write, which lands on the row) and its body, which holds the rest the
// consumer reads (key, value, timestamp, op id). It travels in two
// headers: KeyIDHeader, the id of the key that signed (a hash of the key,
// so that the consumer tries one key, not all, and an operator can tell
// which key a message needs), and SignatureHeader, "v2=" and the MAC in
// base64url. A field added to the signed set gets a new scheme.
//
// Scheme "v1" signed no writer: it is still verified, for messages queued
// by an API that signed with it, but only for a message that names no
// writer, so that nobody can add one to a v1 message.
package msgsig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// The headers a signed message carries.
const (
	KeyIDHeader     = "kvstack-key-id"
	SignatureHeader = "kvstack-signature"
)

// MinKeyBytes is the shortest key accepted.
const MinKeyBytes = 32

// scheme names what is signed and how; it is the first thing the MAC
// covers, and the prefix of SignatureHeader. schemeV1 signed the kind and
// the body only.
const (
	scheme   = "v2"
	schemeV1 = "v1"
)

var enc = base64.RawURLEncoding.Strict()

// Reasons a message is refused, as Error.Reason (and the metric label).
const (
	ReasonUnsigned   = "unsigned"      // no signature header
	ReasonUnknownKey = "unknown_key"   // signed by a key this consumer does not hold
	ReasonBad        = "bad_signature" // malformed, or not the MAC of this message
)

// Error is a message that failed the check, with the reason.
type Error struct {
	Reason string
	Detail string
}

func (e *Error) Error() string { return "message signature: " + e.Reason + ": " + e.Detail }

// Keys signs with its first key and verifies with any. It is safe for
// concurrent use.
type Keys struct {
	keys []key
}

type key struct {
	id   string
	macs *sync.Pool // of hash.Hash: a fresh HMAC hashes the key, a Reset one does not
}

// ParseKeys reads KV_MESSAGE_KEYS: one key, or several separated by
// commas, the first signing and all accepted (a key is rotated by adding
// the new one second, then first, then removing the old). Each key is at
// least MinKeyBytes bytes, without commas or surrounding spaces.
func ParseKeys(s string) (*Keys, error) {
	ks := &Keys{}
	for k := range strings.SplitSeq(s, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if len(k) < MinKeyBytes {
			return nil, fmt.Errorf("KV_MESSAGE_KEYS: key %d is %d bytes, want at least %d", len(ks.keys)+1, len(k), MinKeyBytes)
		}
		secret := []byte(k)
		ks.keys = append(ks.keys, key{
			id:   KeyID(k),
			macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }},
		})
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("KV_MESSAGE_KEYS is empty: the API signs every message with it and the consumer refuses unsigned ones (see docs/DESIGN.md, Message signatures)")
	}
	return ks, nil
}

// KeyID names a key without revealing it: the first 8 bytes of SHA-256 of
// a label and the key, in hex.
func KeyID(k string) string {
	sum := sha256.Sum256([]byte("kvstack message key id\x00" + k))
	return hex.EncodeToString(sum[:8])
}

// IDs lists the keys' ids, the signing key's first.
func (ks *Keys) IDs() []string {
	ids := make([]string, len(ks.keys))
	for i, k := range ks.keys {
		ids[i] = k.id
	}
	return ids
}

// Sign returns the headers that sign a message of kind by writer ("": none
// named) with body: the key id and the signature.
func (ks *Keys) Sign(kind, writer string, body []byte) (keyID, signature string) {
	k := ks.keys[0]
	var buf [sha256.Size]byte
	return k.id, scheme + "=" + enc.EncodeToString(k.sum(buf[:0], scheme, kind, writer, body))
}

// Verify checks the headers of a message of kind by writer with body; its
// error is an *Error naming the reason.
func (ks *Keys) Verify(kind, writer string, body []byte, keyID, signature string) error {
	if keyID == "" && signature == "" {
		return &Error{Reason: ReasonUnsigned, Detail: "no " + SignatureHeader + " header"}
	}
	var k *key
	for i := range ks.keys {
		if ks.keys[i].id == keyID {
			k = &ks.keys[i]
			break
		}
	}
	if k == nil {
		return &Error{Reason: ReasonUnknownKey, Detail: fmt.Sprintf("%s %q is none of %v", KeyIDHeader, keyID, ks.IDs())}
	}
	used := scheme
	mac, ok := strings.CutPrefix(signature, scheme+"=")
	if !ok {
		if mac, ok = strings.CutPrefix(signature, schemeV1+"="); !ok {
			return &Error{Reason: ReasonBad, Detail: SignatureHeader + " is not " + scheme + "=<base64url>"}
		}
		if writer != "" {
			return &Error{Reason: ReasonBad, Detail: "a " + schemeV1 + " signature covers no writer, and the message names one"}
		}
		used = schemeV1
	}
	var got, want [sha256.Size]byte
	if len(mac) != enc.EncodedLen(sha256.Size) {
		return &Error{Reason: ReasonBad, Detail: fmt.Sprintf("the MAC is %d characters, want %d", len(mac), enc.EncodedLen(sha256.Size))}
	}
	if _, err := enc.Decode(got[:], []byte(mac)); err != nil {
		return &Error{Reason: ReasonBad, Detail: "the MAC is not " + fmt.Sprint(sha256.Size) + " bytes of base64url"}
	}
	if !hmac.Equal(got[:], k.sum(want[:0], used, kind, writer, body)) {
		return &Error{Reason: ReasonBad, Detail: "the MAC does not match the message"}
	}
	return nil
}

// sum appends to b the MAC of a message under scheme s: the scheme, the
// kind, the writer (v2 on) and the body, each but the body ended by a NUL
// (none contains one: a writer has no control character).
func (k *key) sum(b []byte, s, kind, writer string, body []byte) []byte {
	h := k.macs.Get().(hash.Hash)
	defer k.macs.Put(h)
	h.Reset()
	h.Write([]byte(s))
	h.Write([]byte{0})
	h.Write([]byte(kind))
	h.Write([]byte{0})
	if s != schemeV1 {
		h.Write([]byte(writer))
		h.Write([]byte{0})
	}
	h.Write(body)
	return h.Sum(b)
}
