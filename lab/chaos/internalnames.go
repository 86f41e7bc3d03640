package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The names the cache gives its own keys, written as client keys: a check
// of every campaign (issue 19). Before the cache kept its keys apart
// (<prefix>\x00<name>, internal/redis/cache.go), a client key
// "master-mark:0" landed on a Redis Cluster shard's mark: its apply failed
// with WRONGTYPE on every retry and the failover purge errored. The
// campaign writes each name through its stack's nginx before the faults
// and checks that it is applied, read back and cached like any other key,
// with nothing dead-lettered; after the faults (on the HA topology, the
// Redis failovers, which rewrite the marks and purge the shards) it reads
// each back again.

// fixedInternalNames are the cache's own names that exist on any
// topology's first shards: the marks of a Redis Cluster's shards
// (master-mark:N, the first N that hashes into the shard) and a single
// server's (server-mark).
var fixedInternalNames = []string{"master-mark:0", "master-mark:1", "master-mark:2", "server-mark"}

// internalWrite is one name's write: the value written and the version
// the API answered.
type internalWrite struct {
	key, value, version string
}

// internalNames is fixedInternalNames and the names of the cache's own
// keys in the stack's Redis now (<prefix>\x00<name>, on every master).
func (e *env) internalNames(ctx context.Context) ([]string, error) {
	names := slices.Clone(fixedInternalNames)
	prefix := e.c.s.RedisKeyPrefix() + "\x00"
	var mu sync.Mutex // ForEachMaster scans the masters at once
	scan := func(ctx context.Context, c *goredis.Client) error {
		it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			names = append(names, strings.TrimPrefix(it.Val(), prefix))
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	switch c := e.rdb.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *goredis.Client:
		err = scan(ctx, c)
	default:
		err = fmt.Errorf("redis client %T", e.rdb)
	}
	slices.Sort(names)
	return slices.Compact(names), err
}

// writeInternalNames writes every internal name as a client key through
// nginx (?wait=applied), then checks each as checkInternalNames does, and
// that nothing was dead-lettered.
func (e *env) writeInternalNames(ctx context.Context, run string) ([]internalWrite, error) {
	names, err := e.internalNames(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the cache's own keys: %w", err)
	}
	before, err := e.c.queues(ctx)
	if err != nil {
		return nil, fmt.Errorf("queues: %w", err)
	}
	var writes []internalWrite
	for _, name := range names {
		value := "a client's value under the internal name " + name + ", run " + run
		body, _ := json.Marshal(map[string]string{"key": name, "value": value})
		status, answer, err := e.api(ctx, http.MethodPut, "/api?wait=applied", body)
		if err != nil || status != http.StatusOK || answer["status"] != "applied" {
			return writes, fmt.Errorf("PUT %q?wait=applied: %d %v %v, want 200 applied", name, status, answer, err)
		}
		writes = append(writes, internalWrite{key: name, value: value, version: fmt.Sprint(answer["version"])})
	}
	if err := e.checkInternalNames(ctx, writes); err != nil {
		return writes, err
	}
	after, err := e.c.queues(ctx)
	if err != nil {
		return writes, fmt.Errorf("queues: %w", err)
	}
	for _, q := range []string{"add_key.dlq", "del_key.dlq"} {
		if d := after[q].Messages - before[q].Messages; d != 0 {
			return writes, fmt.Errorf("%s: %+d messages while the internal names were written", q, d)
		}
	}
	return writes, nil
}

// checkInternalNames reads each write back through nginx until it is
// served from the cache (source redis) with its value and version, and
// the cache's entry holds that version (10 s each at most).
func (e *env) checkInternalNames(ctx context.Context, writes []internalWrite) error {
	var errs []error
	for _, w := range writes {
		var last string
		deadline := time.Now().Add(10 * time.Second)
		for {
			last = e.internalNameServed(ctx, w)
			if last == "" || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			sleepCtx(ctx, 100*time.Millisecond)
		}
		if last != "" {
			errs = append(errs, fmt.Errorf("%q: %s", w.key, last))
		}
	}
	return errors.Join(errs...)
}

// internalNameServed is "" when w is read back from the cache, else what
// differs.
func (e *env) internalNameServed(ctx context.Context, w internalWrite) string {
	status, got, err := e.api(ctx, http.MethodGet, "/api?key="+url.QueryEscape(w.key), nil)
	if err != nil || status != http.StatusOK {
		return fmt.Sprintf("GET: %d %v %v", status, got, err)
	}
	if got["value"] != w.value || got["version"] != w.version || got["source"] != "redis" {
		return fmt.Sprintf("GET: %v, want value %q, version %s, source redis", got, w.value, w.version)
	}
	h, err := e.rdb.HGetAll(ctx, e.c.s.RedisKeyPrefix()+w.key).Result()
	if err != nil || h["val"] != w.value {
		return fmt.Sprintf("cache entry %v (%v), want the value written", h, err)
	}
	return ""
}

// api sends one request through the stack's nginx with the campaign's
// token and decodes its JSON answer.
func (e *env) api(ctx context.Context, method, path string, body []byte) (int, map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.s.nginx+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("body %q: %w", b, err)
	}
	return resp.StatusCode, m, nil
}

// internalKeys names the writes' keys, for the log.
func internalKeys(writes []internalWrite) string {
	keys := make([]string, len(writes))
	for i, w := range writes {
		keys[i] = w.key
	}
	return strings.Join(keys, ", ")
}
