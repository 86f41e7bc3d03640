package postgres

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kvstack/kvstack/internal/kv"
)

func TestNewsRoundTripsInChunksUnderTheLimit(t *testing.T) {
	var news []News
	for i := range 100 {
		key := fmt.Sprintf("%03d-%s", i, strings.Repeat("ключ ", 50)) // 503 bytes, non-ASCII
		news = append(news, News{Key: key, Version: kv.NewVersion(time.Now())})
	}
	news = append(news, News{Key: "short", Version: kv.Version{Time: time.UnixMicro(0).UTC(), OpID: uuid.Max}})
	payloads, skipped := encodeNews(news)
	if skipped != 0 {
		t.Errorf("skipped %d, want none", skipped)
	}
	if len(payloads) < 2 {
		t.Errorf("%d payloads for ~56 kB of news, want it split", len(payloads))
	}
	var got []News
	for i, p := range payloads {
		if len(p) > maxPayload {
			t.Errorf("payload %d: %d bytes, over NOTIFY's limit", i, len(p))
		}
		n, err := decodeNews(p)
		if err != nil {
			t.Fatalf("payload %d: %v", i, err)
		}
		got = append(got, n...)
	}
	if !slices.Equal(got, news) {
		t.Errorf("decoded %d news, want the %d encoded, in order", len(got), len(news))
	}
}

func TestNewsOverTheLimitIsSkipped(t *testing.T) {
	news := []News{
		{Key: strings.Repeat("k", maxPayload), Version: kv.NewVersion(time.Now())},
		{Key: strings.Repeat("k", maxPayload-versionLen-1), Version: kv.NewVersion(time.Now())}, // exactly fits
	}
	payloads, skipped := encodeNews(news)
	if skipped != 1 || len(payloads) != 1 || len(payloads[0]) != maxPayload {
		t.Errorf("encodeNews = %d payloads (%d bytes first), %d skipped; want one full payload, one skipped",
			len(payloads), len(payloads[0]), skipped)
	}
	if p, _ := encodeNews(nil); len(p) != 0 {
		t.Errorf("no news: %d payloads, want none", len(p))
	}
}

func TestDecodeNewsRefusesOthersPayloads(t *testing.T) {
	good, _ := encodeNews([]News{{Key: "k", Version: kv.NewVersion(time.Now())}})
	for _, p := range []string{"", "hello", good[0] + "\n", good[0][:versionLen] + " ", strings.Replace(good[0], ":", "-", 1)} {
		if n, err := decodeNews(p); err == nil {
			t.Errorf("decodeNews(%q) = %v, want an error", p, n)
		}
	}
}

// FuzzDecodeNews: no payload on the channel crashes the listener, and
// what it accepts means what encodeNews would have sent for it (versions
// parse case-insensitively, so the text may differ).
func FuzzDecodeNews(f *testing.F) {
	good, _ := encodeNews([]News{{Key: "k", Version: kv.NewVersion(time.Now())}, {Key: "a b", Version: kv.NewVersion(time.Now())}})
	f.Add(good[0])
	f.Add("")
	f.Add("00000000000000000001:00000000-0000-0000-0000-000000000000 k\n")
	f.Fuzz(func(t *testing.T, payload string) {
		news, err := decodeNews(payload)
		if err != nil || len(payload) > maxPayload {
			return
		}
		again, _ := encodeNews(news)
		if len(again) != 1 {
			t.Fatalf("decodeNews(%q) = %v, which encodes as %d payloads", payload, news, len(again))
		}
		if back, err := decodeNews(again[0]); err != nil || !slices.Equal(back, news) {
			t.Errorf("decodeNews(%q) = %v, which encodes as %q, read back as %v (%v)", payload, news, again[0], back, err)
		}
	})
}
