package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/kvstack/kvstack/internal/kv"
)

// News of applied versions travels by NOTIFY, sent by the consumer's batch
// transaction itself: PostgreSQL delivers a transaction's notifications
// when it commits, and only if it commits, so news is never early and a
// rolled-back batch tells nothing. Each API process LISTENs on one
// connection (Listener).
//
// The channel is per schema, so that deployments (and tests) sharing a
// database hear only their own news: "kvstack_applied" in public,
// "kvstack_applied.<schema>" elsewhere, the schema's md5 when its name is
// too long for a channel (63 bytes). Consumer and listener evaluate the same
// expression, each on its own session's search_path.
const channelSQL = `CASE
	WHEN current_schema() IS NULL OR current_schema() = 'public' THEN 'kvstack_applied'
	WHEN octet_length(current_schema()) <= 47 THEN 'kvstack_applied.' || current_schema()
	ELSE 'kvstack_applied.' || md5(current_schema())
END`

// notifySQL sends each payload of $1 on the schema's channel.
const notifySQL = `SELECT pg_notify(` + channelSQL + `, p) FROM unnest($1::text[]) AS p`

// maxPayload is NOTIFY's limit: a payload must be shorter than 8000 bytes.
const maxPayload = 7999

// versionLen is the length of kv.Version.String().
const versionLen = 20 + 1 + 36

// News is one applied operation: its key now holds Version.
type News struct {
	Key     string
	Version kv.Version
}

// encodeNews lays news out as payloads under NOTIFY's limit: one line per
// item, "<version> <key>" (the version as kv.Version.String, fixed-length;
// keys hold no control characters, so no newline). An item that alone
// exceeds the limit (a key over ~7.9 kB, which kv_store's index could not
// hold anyway) is left out: its waiters find it by polling.
func encodeNews(news []News) (payloads []string, skipped int) {
	size := 0
	for _, n := range news {
		size += versionLen + 2 + len(n.Key)
	}
	buf := make([]byte, 0, min(size, maxPayload))
	for _, n := range news {
		line := versionLen + 1 + len(n.Key)
		if line > maxPayload {
			skipped++
			continue
		}
		if len(buf) > 0 && len(buf)+1+line > maxPayload {
			payloads = append(payloads, string(buf))
			buf = buf[:0]
		}
		if len(buf) > 0 {
			buf = append(buf, '\n')
		}
		buf = n.Version.AppendText(buf)
		buf = append(buf, ' ')
		buf = append(buf, n.Key...)
	}
	if len(buf) > 0 {
		payloads = append(payloads, string(buf))
	}
	return payloads, skipped
}

// decodeNews parses a payload of encodeNews. A malformed line (a payload
// someone else sent on the channel) fails the whole payload: its
// waiters find their versions by polling.
func decodeNews(payload string) ([]News, error) {
	var news []News
	for line := range strings.SplitSeq(payload, "\n") {
		if len(line) < versionLen+2 || line[versionLen] != ' ' {
			return nil, fmt.Errorf("news: malformed line of %d bytes", len(line))
		}
		v, err := kv.ParseVersion(line[:versionLen])
		if err != nil {
			return nil, fmt.Errorf("news: %w", err)
		}
		news = append(news, News{Key: line[versionLen+1:], Version: v})
	}
	return news, nil
}

// NewsChannel is the channel on which the consumers of the pool's schema
// send news: a Listener's.
func (s *Store) NewsChannel(ctx context.Context) (string, error) {
	var channel string
	if err := s.pool.QueryRow(ctx, "SELECT "+channelSQL).Scan(&channel); err != nil {
		return "", translate("news channel", err)
	}
	return channel, nil
}
