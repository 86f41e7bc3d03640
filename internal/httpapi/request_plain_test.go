package httpapi

import (
	"testing"
	"unicode/utf8"
)

// plainWriteBodies are bodies the fast path takes and bodies it must leave
// to the tokenizer (refused by it, or read with escapes).
var plainWriteBodies = []string{
	`{"key":"k","value":"v"}`,
	`{"value":"v","key":"k"}`,
	` { "key" : "k" , "value" : "v" } `,
	"{\n\t\"key\":\r\n\"k\",\"value\":\"v\"}\n",
	`{"key":"k"}`,
	`{"key":"k","value":null}`,
	`{"key":"k","value":""}`,
	`{"key":"","value":"v"}`,
	`{"key":"ключ","value":"значение ✓"}`,
	`{"key":null,"value":"v"}`,
	`{"value":"v"}`,
	`{}`,
	``,
	`   `,
	`[]`,
	`null`,
	`{"key":"k","value":"v"}x`,
	`{"key":"k","value":"v"}{}`,
	`{"key":"k","value":"v"`,
	`{"key":"k","value":"v",}`,
	`{"key":"k",,"value":"v"}`,
	`{"key":"k""value":"v"}`,
	`{"key":"k","key":"k2"}`,
	`{"key":"k","value":null,"value":"v"}`,
	`{"Key":"k","value":"v"}`,
	`{"KEY":"k"}`,
	`{"key":"k","other":1}`,
	`{"key":"k","value":1}`,
	`{"key":"k","value":true}`,
	`{"key":"k","value":nul}`,
	`{"key":"k","value":nullx}`,
	`{"key":"k","value":["v"]}`,
	`{"key":"k\"","value":"v"}`,
	`{"key":"k","value":"a\nb"}`,
	`{"key":"k","value":"\u00e9"}`,
	`{"key":"k","value":"\ud83d\ude00"}`,
	`{"key":"k","value":"\ud83d"}`,
	"{\"key\":\"k\",\"value\":\"a\tb\"}",
	"{\"key\":\"k\",\"value\":\"a\x01b\"}",
	`{"ke\u0079":"k"}`,
	"\ufeff{\"key\":\"k\"}",
	`{"key":"k" "value":"v"}`,
	`{"key":"k":"v"}`,
	`{"key"`,
	`{"key":`,
	`{"key":"k`,
	`{`,
}

// TestDecodePlainWriteAgreesWithTheDecoder: where the fast path takes a
// body, the tokenizer takes it too and reads the same key and value.
func TestDecodePlainWriteAgreesWithTheDecoder(t *testing.T) {
	taken := 0
	for _, body := range plainWriteBodies {
		if checkPlainWrite(t, []byte(body)) {
			taken++
		}
	}
	if taken < 9 {
		t.Errorf("the fast path took %d bodies, want the 9 plain ones at least", taken)
	}
}

func FuzzDecodePlainWrite(f *testing.F) {
	for _, b := range plainWriteBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if utf8.Valid(body) { // as readBody hands it over
			checkPlainWrite(t, body)
		}
	})
}

// checkPlainWrite fails t when decodePlainWrite takes body and
// decodeWriteTokens refuses it or reads it otherwise; it reports whether
// the fast path took it.
func checkPlainWrite(t *testing.T, body []byte) bool {
	t.Helper()
	fast, ok := decodePlainWrite(body)
	slow, err := decodeWriteTokens(body)
	if !ok {
		return false
	}
	if err != nil {
		t.Errorf("%q: the fast path took it, the tokenizer refuses it: %v", body, err)
		return true
	}
	if str(fast.Key) != str(slow.Key) || str(fast.Value) != str(slow.Value) {
		t.Errorf("%q: fast path key %s value %s, tokenizer key %s value %s", body, str(fast.Key), str(fast.Value), str(slow.Key), str(slow.Value))
	}
	return true
}

func str(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return "\"" + *p + "\""
}

// BenchmarkDecodeWrite: the body kvbench's PUTs send, read by decodeWrite
// (the fast path) and by the tokenizer alone (what decodeWrite did before).
func BenchmarkDecodeWrite(b *testing.B) {
	body := []byte(`{"key":"bench:put:123456","value":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	for _, c := range []struct {
		name string
		dec  func([]byte) (writeRequest, error)
	}{{"decodeWrite", decodeWrite}, {"tokens", decodeWriteTokens}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.dec(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
