package k8s

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

// The engines are given the room their operators and their own
// configuration need, or they stop on a real cluster: RabbitMQ's disk
// alarm, PostgreSQL's and Redis' memory against their container limits.

// rabbitmqOperatorDiskFreeLimit is what the RabbitMQ Cluster Operator writes
// into every node's rabbitmq.conf (cluster-operator
// internal/resource/configmap.go, defaultRabbitmqConf); additionalConfig,
// appended after it, may set another. Below that much free space the node
// raises its disk alarm and blocks every publisher: each PUT and DELETE
// gets 503.
const rabbitmqOperatorDiskFreeLimit = "2GB"

// rabbitmqDiskHeadroom is the room a volume needs above the limit: the
// quorum queues' write-ahead log (wal_max_size_bytes, 512 MiB by default)
// before its entries reach their segment files, a backlog of messages, and
// the filesystem's own overhead.
const rabbitmqDiskHeadroom = 4 << 30

// PostgreSQL's memory: shared_buffers, plus work_mem once per connection
// (a backend at rest holds about 2 MiB; kvstack's statements are single-row
// and sort nothing larger), plus postgresOverhead for the postmaster, its
// background workers and CloudNativePG's instance manager, which run in the
// same container. PostgreSQL's defaults where the Cluster sets none.
const (
	postgresDefaultSharedBuffers = 128 << 20
	postgresDefaultWorkMem       = 4 << 20
	postgresOverhead             = 128 << 20
)

// redisMaxMemoryShare is the largest part of a Redis container's memory
// limit that maxmemory may take: the rest is for the fork of a snapshot
// (copy-on-write pages), replication and client buffers, and
// fragmentation.
const redisMaxMemoryShare = 0.75

func checkCapacity(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	for _, r := range m.rabbitmqs {
		limit, err := rabbitmqDiskFreeLimit(r)
		if err != nil {
			p.add("RabbitmqCluster %s: %v", r.Name, err)
			continue
		}
		storage := int64(10 << 30) // the operator's default
		if r.Spec.Persistence.Storage != nil {
			storage = r.Spec.Persistence.Storage.Value()
		}
		if need := limit + rabbitmqDiskHeadroom; storage < need {
			p.add("RabbitmqCluster %s: a %s volume, but the disk alarm is raised below %s free and the queues need %s above that: want at least %s",
				r.Name, bytesString(storage), bytesString(limit), bytesString(rabbitmqDiskHeadroom), bytesString(need))
		}
	}
	for _, pg := range m.postgreses {
		params := pg.Spec.PostgresConfiguration.Parameters
		maxConns := int64(100)
		if v, ok := params["max_connections"]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				p.add("Cluster %s: max_connections %q: %v", pg.Name, v, err)
				continue
			}
			maxConns = n
		}
		shared, err1 := postgresBytes(params["shared_buffers"], postgresDefaultSharedBuffers)
		work, err2 := postgresBytes(params["work_mem"], postgresDefaultWorkMem)
		if err1 != nil || err2 != nil {
			p.add("Cluster %s: %v %v", pg.Name, err1, err2)
			continue
		}
		need := shared + maxConns*work + postgresOverhead
		limit := pg.Spec.Resources.Limits.Memory()
		if limit.IsZero() || limit.Value() < need {
			p.add("Cluster %s: a memory limit of %s, but shared_buffers %s + max_connections %d × work_mem %s + %s for the other processes need %s",
				pg.Name, limit, bytesString(shared), maxConns, bytesString(work), bytesString(postgresOverhead), bytesString(need))
		}
	}
	return p
}

// rabbitmqDiskFreeLimit is the node's limit: the operator's, or the last
// disk_free_limit setting of additionalConfig (rabbitmq.conf reads the
// later one), absolute or relative to the container's memory.
func rabbitmqDiskFreeLimit(r *RabbitmqCluster) (int64, error) {
	limit, err := rabbitmqBytes(rabbitmqOperatorDiskFreeLimit)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(r.Spec.Rabbitmq.AdditionalConfig, "\n") {
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok:
		case key == "disk_free_limit.absolute":
			if limit, err = rabbitmqBytes(value); err != nil {
				return 0, err
			}
		case key == "disk_free_limit.relative":
			f, err := strconv.ParseFloat(value, 64)
			if err != nil || r.Spec.Resources == nil || r.Spec.Resources.Limits.Memory().IsZero() {
				return 0, fmt.Errorf("disk_free_limit.relative = %s needs a memory limit (%v)", value, err)
			}
			limit = int64(f * float64(r.Spec.Resources.Limits.Memory().Value()))
		}
	}
	return limit, nil
}

// rabbitmqBytes reads rabbitmq.conf's sizes: kB, MB, GB are powers of
// 1000; k/KiB, M/MiB, G/GiB powers of 1024.
func rabbitmqBytes(v string) (int64, error) {
	m := regexp.MustCompile(`^(\d+)\s*([A-Za-z]*)$`).FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, fmt.Errorf("size %q", v)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	mult, ok := map[string]int64{"": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "k": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20, "G": 1 << 30, "GiB": 1 << 30}[m[2]]
	if !ok {
		return 0, fmt.Errorf("size %q: unit %q", v, m[2])
	}
	return n * mult, nil
}

// postgresBytes reads a PostgreSQL memory setting with its unit (kB, MB,
// GB: powers of 1024), or def when unset.
func postgresBytes(v string, def int64) (int64, error) {
	if v == "" {
		return def, nil
	}
	m := regexp.MustCompile(`^(\d+)\s*(kB|MB|GB|TB)$`).FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, fmt.Errorf("PostgreSQL setting %q: give it a unit (kB, MB, GB)", v)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n * map[string]int64{"kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m[2]], nil
}

func bytesString(n int64) string {
	return resource.NewQuantity(n, resource.BinarySI).String()
}

// checkRedisMemory: every Redis node starts with a maxmemory below its
// container's limit and an eviction policy over all keys (it is a cache:
// kvstack's version checks make any loss harmless), read from the
// ConfigMap the image appends to redis.conf at start. Without one Redis
// grows until the kernel kills it, and RedisEvicting never fires.
func checkRedisMemory(t testing.TB, m *manifests, s *sources) problems {
	var p problems
	type node struct {
		what   string
		config *RedisConfig
		limit  *resource.Quantity
	}
	var nodes []node
	for _, r := range m.redises {
		nodes = append(nodes, node{"Redis " + r.Name, r.Spec.RedisConfig, redisLimit(r.Spec.KubernetesConfig)})
	}
	for _, r := range m.redisClusters {
		// The operator reads additionalRedisConfig per role (leader,
		// follower), not from spec.redisConfig.
		nodes = append(nodes,
			node{"RedisCluster " + r.Name + " leaders", r.Spec.RedisLeader.RedisConfig, redisLimit(r.Spec.KubernetesConfig)},
			node{"RedisCluster " + r.Name + " followers", r.Spec.RedisFollower.RedisConfig, redisLimit(r.Spec.KubernetesConfig)})
	}
	for _, n := range nodes {
		if n.config == nil || n.config.AdditionalRedisConfig == nil {
			p.add("%s: no additionalRedisConfig, so no maxmemory: Redis grows until it is killed", n.what)
			continue
		}
		cm := m.configMap(*n.config.AdditionalRedisConfig)
		if cm == nil {
			p.add("%s: additionalRedisConfig %s is no ConfigMap of the build", n.what, *n.config.AdditionalRedisConfig)
			continue
		}
		conf := redisConf(cm.Data[redisAdditionalKey])
		max, err := redisBytes(conf["maxmemory"])
		if err != nil || max <= 0 {
			p.add("%s: ConfigMap %s sets no maxmemory (%q, %v)", n.what, cm.Name, conf["maxmemory"], err)
			continue
		}
		if n.limit == nil || n.limit.IsZero() {
			p.add("%s: no memory limit to size maxmemory against", n.what)
		} else if share := float64(max) / float64(n.limit.Value()); share > redisMaxMemoryShare {
			p.add("%s: maxmemory %s is %.0f%% of the %s limit, above %.0f%%", n.what, conf["maxmemory"], share*100, n.limit, redisMaxMemoryShare*100)
		}
		if !strings.HasPrefix(conf["maxmemory-policy"], "allkeys-") {
			p.add("%s: maxmemory-policy %q, want an allkeys- policy (a cache)", n.what, conf["maxmemory-policy"])
		}
	}
	return p
}

func redisLimit(k RedisKubernetesConf) *resource.Quantity {
	if k.Resources == nil {
		return nil
	}
	return k.Resources.Limits.Memory()
}

// redisConf reads redis.conf directives (the last of each wins).
func redisConf(text string) map[string]string {
	conf := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
			conf[strings.ToLower(f[0])] = strings.Join(f[1:], " ")
		}
	}
	return conf
}

// redisBytes reads redis.conf's sizes: k, m, g are powers of 1000; kb, mb,
// gb powers of 1024 (case-insensitive).
func redisBytes(v string) (int64, error) {
	m := regexp.MustCompile(`^(\d+)([a-z]*)$`).FindStringSubmatch(strings.ToLower(strings.TrimSpace(v)))
	if m == nil {
		return 0, fmt.Errorf("size %q", v)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	mult, ok := map[string]int64{"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}[m[2]]
	if !ok {
		return 0, fmt.Errorf("size %q: unit %q", v, m[2])
	}
	return n * mult, nil
}
