package kv

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/kvstack/kvstack/internal/envdefault"
)

// Limits bound what a client may store. The defaults keep a key well inside
// PostgreSQL's B-tree entry limit (about 2.7 kB) and a value far below
// RabbitMQ's default maximum message size.
type Limits struct {
	// MaxKeyBytes bounds a key, MaxValueBytes a value, in bytes of UTF-8.
	MaxKeyBytes   int `env:"KV_MAX_KEY_BYTES" envDefault:"512"`
	MaxValueBytes int `env:"KV_MAX_VALUE_BYTES" envDefault:"262144"`
}

// DefaultLimits() are the limits used when none are configured.
func DefaultLimits() Limits { return envdefault.Of[Limits]() }

// ValidationError names the field that broke a rule and the rule. It wraps
// ErrInvalid.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }
func (e *ValidationError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidateKey accepts a non-empty key of valid UTF-8 with no control
// characters, at most MaxKeyBytes long.
func (l Limits) ValidateKey(key string) error {
	switch {
	case key == "":
		return invalid("key", "must not be empty")
	case len(key) > l.MaxKeyBytes:
		return invalid("key", "longer than %d bytes", l.MaxKeyBytes)
	case !utf8.ValidString(key):
		return invalid("key", "not valid UTF-8")
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return invalid("key", "contains control character %U", r)
		}
	}
	return nil
}

// maxIndexedKeyBytes is the longest key kv_store's primary key index can
// hold: PostgreSQL's B-tree refuses an entry over 2704 bytes (8 kB pages),
// so no stored key, whatever MaxKeyBytes was when it was written, is longer.
const maxIndexedKeyBytes = 2704

// ValidateCursor accepts a listing's cursor: a page's last key, so a key
// as ValidateKey has it, but for its length. A key written while
// MaxKeyBytes was higher is a stored key, and a listing must go past it;
// no stored key is longer than maxIndexedKeyBytes (or MaxKeyBytes, when
// it is set higher).
func (l Limits) ValidateCursor(cursor string) error {
	return Limits{MaxKeyBytes: max(l.MaxKeyBytes, maxIndexedKeyBytes)}.ValidateKey(cursor)
}

// ValidateValue accepts any valid UTF-8 text without NUL (which PostgreSQL's
// text type cannot hold), at most MaxValueBytes long. The empty string is a
// value.
func (l Limits) ValidateValue(value string) error {
	switch {
	case len(value) > l.MaxValueBytes:
		return invalid("value", "longer than %d bytes", l.MaxValueBytes)
	case !utf8.ValidString(value):
		return invalid("value", "not valid UTF-8")
	}
	for i := 0; i < len(value); i++ {
		if value[i] == 0 {
			return invalid("value", "contains NUL")
		}
	}
	return nil
}

// ValidateOp checks an operation's key and, for a put, its value.
func (l Limits) ValidateOp(op Op) error {
	if err := l.ValidateKey(op.Key); err != nil {
		return err
	}
	if err := ValidateWriter(op.WrittenBy); err != nil {
		return err
	}
	switch op.Kind {
	case KindPut:
		return l.ValidateValue(op.Value)
	case KindDelete:
		return nil
	}
	return invalid("op", "unknown kind %q", op.Kind)
}
