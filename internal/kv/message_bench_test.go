package kv

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func BenchmarkDecodeMessage(b *testing.B) {
	op := Op{Kind: KindPut, Key: "bench:apply:0000012345", Value: string(make([]byte, 100)), Version: Version{Time: time.Now().UTC().Truncate(time.Microsecond), OpID: uuid.New()}}
	op.Value = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
	body, _ := EncodeMessage(op)
	limits := DefaultLimits()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMessage(KindPut, body, limits); err != nil {
			b.Fatal(err)
		}
	}
}
