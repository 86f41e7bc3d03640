package kv

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	l := Limits{MaxKeyBytes: 8, MaxValueBytes: 8}
	tests := []struct {
		key  string
		ok   bool
		name string
	}{
		{"a", true, "plain"},
		{"a:b/c*d", true, "punctuation"},
		{"ключ", true, "multibyte within limit"},
		{"", false, "empty"},
		{"123456789", false, "too long"},
		{"a\x00b", false, "NUL"},
		{"a\nb", false, "newline"},
		{"a\x7fb", false, "DEL"},
		{"a\u0085b", false, "C1 control"},
		{"\xff\xfe", false, "invalid UTF-8"},
		{"' OR 1=1", true, "SQL-looking text is just text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.ValidateKey(tt.key)
			if got := err == nil; got != tt.ok {
				t.Fatalf("ValidateKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestValidateValue(t *testing.T) {
	l := Limits{MaxKeyBytes: 8, MaxValueBytes: 8}
	tests := []struct {
		value string
		ok    bool
		name  string
	}{
		{"", true, "empty is a value"},
		{"a\tb\nc", true, "control characters allowed in values"},
		{"12345678", true, "at the limit"},
		{"123456789", false, "over the limit"},
		{"a\x00", false, "NUL"},
		{"\xc3\x28", false, "invalid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.ValidateValue(tt.value)
			if got := err == nil; got != tt.ok {
				t.Fatalf("ValidateValue(%q) = %v, want ok=%v", tt.value, err, tt.ok)
			}
			var ve *ValidationError
			if err != nil && (!errors.As(err, &ve) || ve.Field != "value") {
				t.Fatalf("error %v is not a ValidationError on field value", err)
			}
		})
	}
}

func TestValidateOpUnknownKind(t *testing.T) {
	err := DefaultLimits().ValidateOp(Op{Kind: "upsert", Key: "k"})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("ValidateOp(kind upsert) = %v, want ErrInvalid", err)
	}
	if err := DefaultLimits().ValidateOp(Op{Kind: KindDelete, Key: "k", Value: strings.Repeat("x", 1<<20)}); err != nil {
		t.Fatalf("a delete's value is ignored, got %v", err)
	}
}
