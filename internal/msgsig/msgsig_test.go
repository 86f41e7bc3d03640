package msgsig_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/msgsig"
)

const (
	oldKey = "an-old-key-of-at-least-thirty-two-bytes"
	newKey = "a-new-key-of-at-least-thirty-two-bytes!"
)

func mustKeys(t testing.TB, s string) *msgsig.Keys {
	t.Helper()
	ks, err := msgsig.ParseKeys(s)
	if err != nil {
		t.Fatalf("ParseKeys: %v", err)
	}
	return ks
}

func TestParseKeysRefuses(t *testing.T) {
	for _, s := range []string{"", " , ", "short", newKey + ",short"} {
		if _, err := msgsig.ParseKeys(s); err == nil {
			t.Errorf("ParseKeys(%q) = nil error, want one", s)
		}
	}
}

// A signed message verifies under the same keys, and under a rotation's
// next step (the new key first, the old one still accepted); the headers
// name the signing key.
func TestSignVerifyAndRotate(t *testing.T) {
	body := []byte(`{"key":"k","value":"v","timestamp":"2026-12-06T11:00:00.000000Z","op_id":"0b5e3d4c-5f46-4ad7-9c5e-0e4f6b1c2a10"}`)
	old := mustKeys(t, oldKey)
	id, sig := old.Sign("put", "", body)
	if id != msgsig.KeyID(oldKey) || !strings.HasPrefix(sig, "v2=") {
		t.Fatalf("Sign = %q, %q; want the old key's id and a v2 signature", id, sig)
	}
	for _, ks := range []*msgsig.Keys{old, mustKeys(t, oldKey+","+newKey), mustKeys(t, newKey+" , "+oldKey)} {
		if err := ks.Verify("put", "", body, id, sig); err != nil {
			t.Errorf("Verify under keys %v: %v", ks.IDs(), err)
		}
	}
	rotated := mustKeys(t, newKey+","+oldKey)
	if id, _ := rotated.Sign("put", "", body); id != msgsig.KeyID(newKey) {
		t.Errorf("Sign after the rotation used key %s, want the new key's %s", id, msgsig.KeyID(newKey))
	}
}

func TestVerifyRefuses(t *testing.T) {
	ks := mustKeys(t, newKey)
	body := []byte(`{"key":"k","timestamp":"2026-12-06T11:00:00.000000Z","op_id":"0b5e3d4c-5f46-4ad7-9c5e-0e4f6b1c2a10"}`)
	id, sig := ks.Sign("put", "", body)
	otherID, otherSig := mustKeys(t, oldKey).Sign("put", "", body)
	forgedID, forgedSig := mustKeys(t, strings.Repeat("x", 40)).Sign("put", "", body)
	tests := []struct {
		name, kind string
		body       []byte
		id, sig    string
		reason     string
	}{
		{"unsigned", "put", body, "", "", msgsig.ReasonUnsigned},
		{"no key id", "put", body, "", sig, msgsig.ReasonUnknownKey},
		{"a retired key", "put", body, otherID, otherSig, msgsig.ReasonUnknownKey},
		{"a forger's key under our id", "put", body, id, forgedSig, msgsig.ReasonBad},
		{"a forger's own id", "put", body, forgedID, forgedSig, msgsig.ReasonUnknownKey},
		{"no signature", "put", body, id, "", msgsig.ReasonBad},
		{"another scheme", "put", body, id, "v3" + sig[2:], msgsig.ReasonBad},
		{"not base64url", "put", body, id, "v2=" + strings.Repeat("!", 43), msgsig.ReasonBad},
		{"too long", "put", body, id, sig + "AAAA", msgsig.ReasonBad},
		{"the body changed", "put", append([]byte(" "), body...), id, sig, msgsig.ReasonBad},
		{"another queue's kind", "delete", body, id, sig, msgsig.ReasonBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ks.Verify(tt.kind, "", tt.body, tt.id, tt.sig)
			var serr *msgsig.Error
			if !errors.As(err, &serr) || serr.Reason != tt.reason {
				t.Errorf("Verify = %v, want reason %s", err, tt.reason)
			}
		})
	}
}

// The writer is signed: a message's writer cannot be added, changed or
// removed without the key, and a v1 signature, which covered none, is
// good only for a message that names none.
func TestWriterIsSigned(t *testing.T) {
	ks := mustKeys(t, newKey)
	body := []byte(`{"key":"k","value":"v","timestamp":"2026-12-06T11:00:00.000000Z","op_id":"0b5e3d4c-5f46-4ad7-9c5e-0e4f6b1c2a10"}`)
	id, byAlice := ks.Sign("put", "alice", body)
	_, byNobody := ks.Sign("put", "", body)
	if err := ks.Verify("put", "alice", body, id, byAlice); err != nil {
		t.Fatalf("Verify alice's: %v", err)
	}
	v1 := v1Signature("put", body)
	if err := ks.Verify("put", "", body, id, v1); err != nil {
		t.Errorf("a v1 signature of a message naming no writer: %v", err)
	}
	for _, tc := range []struct{ name, writer, sig string }{
		{"another writer", "mallory", byAlice},
		{"the writer removed", "", byAlice},
		{"a writer added", "mallory", byNobody},
		{"a writer added to a v1 message", "mallory", v1},
	} {
		var serr *msgsig.Error
		if err := ks.Verify("put", tc.writer, body, id, tc.sig); !errors.As(err, &serr) || serr.Reason != msgsig.ReasonBad {
			t.Errorf("%s: Verify = %v, want %s", tc.name, err, msgsig.ReasonBad)
		}
	}
}

// The cost of signing and of checking one message of a typical size.
func BenchmarkSign(b *testing.B) {
	ks := mustKeys(b, newKey)
	body := []byte(`{"key":"user:1234","value":"` + strings.Repeat("v", 100) + `","timestamp":"2026-12-06T11:00:00.000000Z","op_id":"0b5e3d4c-5f46-4ad7-9c5e-0e4f6b1c2a10"}`)
	b.ReportAllocs()
	for b.Loop() {
		ks.Sign("put", "", body)
	}
}

func BenchmarkVerify(b *testing.B) {
	ks := mustKeys(b, newKey)
	body := []byte(`{"key":"user:1234","value":"` + strings.Repeat("v", 100) + `","timestamp":"2026-12-06T11:00:00.000000Z","op_id":"0b5e3d4c-5f46-4ad7-9c5e-0e4f6b1c2a10"}`)
	id, sig := ks.Sign("put", "", body)
	b.ReportAllocs()
	for b.Loop() {
		if err := ks.Verify("put", "", body, id, sig); err != nil {
			b.Fatal(err)
		}
	}
}

// Verify never panics, and accepts only what Sign made (or, for a message
// naming no writer, the v1 signature an older API made): whatever the
// headers and body a publisher on the broker sends.
func FuzzVerify(f *testing.F) {
	ks := mustKeys(f, newKey)
	body := []byte(`{"key":"k","value":"v","timestamp":"2026-12-06T11:00:00.000000Z","op_id":"0b5e3d4c-5f46-4ad7-9c5e-0e4f6b1c2a10"}`)
	id, sig := ks.Sign("put", "alice", body)
	f.Add("put", "alice", body, id, sig)
	f.Add("put", "", body, id, sig)
	f.Add("delete", "alice", body, id, sig)
	f.Add("put", "alice", body, id, sig+"A")
	f.Add("put", "", body, id, v1Signature("put", body))
	f.Add("put", "", body, "", "v1=")
	f.Add("put", "", []byte{}, id, "v2="+strings.Repeat("A", 100))
	f.Fuzz(func(t *testing.T, kind, writer string, body []byte, keyID, signature string) {
		err := ks.Verify(kind, writer, body, keyID, signature)
		if err == nil {
			wantID, wantSig := ks.Sign(kind, writer, body)
			v1 := writer == "" && signature == v1Signature(kind, body)
			if keyID != wantID || (signature != wantSig && !v1) {
				t.Fatalf("Verify accepted %q %q for a message Sign signs %q %q", keyID, signature, wantID, wantSig)
			}
		}
	})
}

// v1Signature is the signature an API of scheme v1 made with newKey.
func v1Signature(kind string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(newKey))
	mac.Write([]byte("v1\x00" + kind + "\x00"))
	mac.Write(body)
	return "v1=" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
