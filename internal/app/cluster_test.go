package app

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// TestDisruptiveRedisMasterKill kills, under a running API and consumer,
// the Redis master of a key whose last update it acknowledged but never
// replicated (its replica cut off): the lost update of asynchronous
// replication. Reads answer all along, from Redis or from PostgreSQL; the
// replica promoted holds the old entry, and the consumer, seeing a master
// that did not mark the shard, purges it: once the cluster is whole again
// the cache holds nothing PostgreSQL does not.
func TestDisruptiveRedisMasterKill(t *testing.T) {
	t.Setenv("REDIS_ADDR", privateRedisCluster.Addr(t))
	s := newStack(t)
	s.conCfg.Consumer.MasterCheckInterval = 200 * time.Millisecond
	s.startAPI()
	consumer, _ := s.startConsumer()
	waitMarked(t, s.rdb.(*goredis.ClusterClient), s.conCfg.Redis.KeyPrefix)
	before := s.put("k", "before")
	s.waitStored(before)
	s.waitCached(before)

	master := privateRedisCluster.MasterOf(t, s.conCfg.Redis.KeyPrefix+"k")
	privateRedisCluster.CutReplica(t, master)
	after := s.put("k", "after")
	s.waitStored(after)
	s.waitCached(after) // on the master alone
	privateRedisCluster.Kill(t, master)
	killed := time.Now()

	sources := map[string]int{}
	var slowest time.Duration
	for time.Since(killed) < 12*time.Second {
		start := time.Now()
		r := s.do("GET", "/api?key=k", "")
		slowest = max(slowest, time.Since(start))
		if r.status != http.StatusOK {
			t.Fatalf("GET during the failover = %d %v, want 200", r.status, r.body)
		}
		sources[r.body["source"].(string)+" "+r.body["value"].(string)]++
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("reads in the 12 s after the kill, by source and value: %v; slowest %s", sources, slowest.Round(time.Millisecond))
	if sources["postgres after"] == 0 {
		t.Errorf("no read answered from PostgreSQL while the master was down")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := privateRedisCluster.Cluster(t).WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster whole again %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	s.requireCacheMatchesStore("k")
	if r := s.do("GET", "/api?key=k", ""); r.status != http.StatusOK || r.body["value"] != "after" {
		t.Errorf("GET after the heal = %d %v, want the value after", r.status, r.body)
	}
	requireSeries(t, "consumer", scrape(t, "http://"+consumer, false),
		`kvstack_consumer_cache_shard_purges_total{mark="other_master"}`)
}

// waitMarked waits until the consumer has marked every shard (its first
// check purges the shards it finds unmarked).
func waitMarked(t *testing.T, cc *goredis.ClusterClient, prefix string) {
	t.Helper()
	eventually(t, 10*time.Second, "every shard marked", func() (bool, string) {
		var mu sync.Mutex
		var marks []string
		err := cc.ForEachMaster(context.Background(), func(ctx context.Context, node *goredis.Client) error {
			keys, err := node.Keys(ctx, prefix+"master-mark:*").Result()
			mu.Lock()
			marks = append(marks, keys...)
			mu.Unlock()
			return err
		})
		return err == nil && len(marks) == 3, strings.Join(marks, " ")
	})
}
