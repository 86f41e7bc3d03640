package kv

import (
	"errors"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

func TestMessageRoundTrip(t *testing.T) {
	v := Version{Time: time.Date(2026, 11, 25, 12, 30, 1, 123456000, time.UTC), OpID: uuid.New()}
	for _, op := range []Op{
		{Kind: KindPut, Key: "k", Value: "v", Version: v},
		{Kind: KindPut, Key: "ключ", Value: "", Version: v},
		{Kind: KindPut, Key: "k", Value: "\"quoted\" \\ <html> \u2028", Version: v},
		{Kind: KindDelete, Key: "k", Version: v},
	} {
		body, err := EncodeMessage(op)
		if err != nil {
			t.Fatalf("EncodeMessage: %v", err)
		}
		got, err := DecodeMessage(op.Kind, body, DefaultLimits())
		if err != nil {
			t.Fatalf("DecodeMessage(%s): %v", body, err)
		}
		if got.Kind != op.Kind || got.Key != op.Key || got.Value != op.Value || got.Version.Compare(op.Version) != 0 {
			t.Fatalf("round trip of %+v gave %+v", op, got)
		}
	}
}

func TestMessageWireFormat(t *testing.T) {
	op := Op{Kind: KindDelete, Key: "k", Version: Version{
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		OpID: uuid.MustParse("0f0e0d0c-0b0a-4908-8706-050403020100"),
	}}
	body, err := EncodeMessage(op)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"key":"k","timestamp":"2026-01-02T03:04:05.000006Z","op_id":"0f0e0d0c-0b0a-4908-8706-050403020100"}`
	if string(body) != want {
		t.Fatalf("body = %s\nwant   %s", body, want)
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	const ts, id = `"2026-01-02T03:04:05.000006Z"`, `"0f0e0d0c-0b0a-4908-8706-050403020100"`
	tests := []struct {
		name string
		kind Kind
		body string
	}{
		{"empty", KindPut, ``},
		{"not JSON", KindPut, `hello`},
		{"truncated", KindPut, `{"key":"k","value":"v","timestamp":` + ts},
		{"trailing data", KindDelete, `{"key":"k","timestamp":` + ts + `,"op_id":` + id + `} {}`},
		{"put without value", KindPut, `{"key":"k","timestamp":` + ts + `,"op_id":` + id + `}`},
		{"null value", KindPut, `{"key":"k","value":null,"timestamp":` + ts + `,"op_id":` + id + `}`},
		{"value of wrong type", KindPut, `{"key":"k","value":1,"timestamp":` + ts + `,"op_id":` + id + `}`},
		{"empty key", KindDelete, `{"key":"","timestamp":` + ts + `,"op_id":` + id + `}`},
		{"NUL in value", KindPut, `{"key":"k","value":"a\u0000","timestamp":` + ts + `,"op_id":` + id + `}`},
		{"invalid UTF-8", KindPut, "{\"key\":\"k\xff\",\"value\":\"v\",\"timestamp\":" + ts + ",\"op_id\":" + id + "}"},
		{"bad timestamp", KindDelete, `{"key":"k","timestamp":"yesterday","op_id":` + id + `}`},
		{"bad op id", KindDelete, `{"key":"k","timestamp":` + ts + `,"op_id":"42"}`},
		{"unknown kind", "upsert", `{"key":"k","timestamp":` + ts + `,"op_id":` + id + `}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeMessage(tt.kind, []byte(tt.body), DefaultLimits())
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("DecodeMessage(%q) = %v, want ErrInvalid", tt.body, err)
			}
		})
	}
}

// FuzzDecodeMessage: no body crashes the decoder, every error is ErrInvalid,
// and whatever it accepts is valid and survives a round trip unchanged.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(true, []byte(`{"key":"k","value":"v","timestamp":"2026-01-02T03:04:05.000006Z","op_id":"0f0e0d0c-0b0a-4908-8706-050403020100"}`))
	f.Add(false, []byte(`{"key":"k","timestamp":"2026-01-02T03:04:05Z","op_id":"0f0e0d0c-0b0a-4908-8706-050403020100"}`))
	f.Add(true, []byte(`{"key":"\u0000","value":"\ud800"}`))
	f.Fuzz(func(t *testing.T, put bool, body []byte) {
		kind := KindDelete
		if put {
			kind = KindPut
		}
		op, err := DecodeMessage(kind, body, DefaultLimits())
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if err := DefaultLimits().ValidateOp(op); err != nil {
			t.Fatalf("accepted an invalid op: %v", err)
		}
		if !utf8.ValidString(op.Key) || op.Version.Time.Location() != time.UTC {
			t.Fatalf("accepted op not normalised: %+v", op)
		}
		again, err := EncodeMessage(op)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeMessage(kind, again, DefaultLimits())
		if err != nil || back != op {
			t.Fatalf("re-decoding %s gave %+v, %v; want %+v", again, back, err, op)
		}
	})
}
