package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// The capacity plan (issue 22, `kvbench -plan`, `make bench-plan`): the
// CPU each process spent per operation in the last report, times the rate
// of each operation in a target load, is the cores each tier needs; each
// tier's nodes follow from the cores of a node, the share of them the plan
// fills, and what bounds the tier when it scales out (a single-threaded
// process, a queue's leader, one PostgreSQL primary). docs/PERFORMANCE.md
// ("Capacity plan") reads it.

// The operations a load is made of, by the report's scenario ids.
const (
	opHit   = "hit"
	opMiss  = "miss"
	opPut   = "put"
	opApply = "apply"
)

var planOps = []string{opHit, opMiss, opPut, opApply}

var opNames = map[string]string{opHit: "GET hit", opMiss: "GET miss", opPut: "PUT accepted", opApply: "apply"}

// PlanLoad is the traffic a plan sizes for: requests a second at the
// edge, the share of them that are reads (GET of one key; the rest are
// writes, PUT or DELETE, each published once and applied once), and the
// share of the reads the cache answers.
type PlanLoad struct {
	Requests  float64
	ReadShare float64
	HitRatio  float64
}

// Rates are the operations a second the load makes.
func (l PlanLoad) Rates() map[string]float64 {
	reads := l.Requests * l.ReadShare
	writes := l.Requests - reads
	return map[string]float64{
		opHit:   reads * l.HitRatio,
		opMiss:  reads - reads*l.HitRatio,
		opPut:   writes,
		opApply: writes,
	}
}

// PlanNodes are the machines a plan places the tiers on.
type PlanNodes struct {
	Cores int // of one node
	// Utilisation is the share of a node's cores — or of the one core of
	// a single-threaded process (an API replica, a Redis shard, a queue's
	// leader) — the plan fills: the rest is headroom for bursts, a node's
	// loss and the figures' spread.
	Utilisation float64
	// PrimaryCores are the cores of the largest PostgreSQL primary one
	// would run: past what they carry, the plan partitions.
	PrimaryCores int
	// QueueRate is the messages a second one quorum queue carries, as
	// measured on the production nodes; 0: estimated from the broker's CPU
	// per message (PlanQueueRate).
	QueueRate float64
}

// OpCosts are CPU µs per operation, by operation and by tier.
type OpCosts map[string]map[string]float64

// The tiers, each the report's processes it is made of.
var planTiers = []struct {
	name string
	rows []string
}{
	{"edge (nginx + mtail)", []string{"nginx", "mtail"}},
	{"API replicas", []string{rowReplicas}},
	{"consumers", []string{"consumer"}},
	{"Redis Cluster", []string{"redis"}},
	{"RabbitMQ", []string{"rabbitmq"}},
	{"PostgreSQL", []string{"postgres"}},
	{"Jaeger", []string{"jaeger"}},
}

const (
	tierEdge     = "edge (nginx + mtail)"
	tierAPI      = "API replicas"
	tierConsumer = "consumers"
	tierRedis    = "Redis Cluster"
	tierRabbit   = "RabbitMQ"
	tierPostgres = "PostgreSQL"
	tierJaeger   = "Jaeger"
)

// ErrMissingFigures is a report without a figure the plan needs.
var ErrMissingFigures = errors.New("figures missing")

// RowCosts are the CPU µs per operation of each process (a row of the
// report's CPU tables: api1 + api2 as one, the HA report's API replicas
// under the same name) in the column of each operation's section, medians
// of the runs, from the section's first CPU table: in make bench's GET
// hit, GET miss and PUT the judged one, every column at one rate below
// its capacity (judge.go), as a node the plan fills to a share of its
// cores runs, not the closed loop's that follows it; an error names every section, column or row the plan needs
// and the report lacks.
func RowCosts(r *Report, columns map[string]string) (OpCosts, error) {
	out := OpCosts{}
	var missing []string
	for _, op := range planOps {
		col, ok := columns[op]
		if !ok {
			continue
		}
		sec := r.Section(op)
		if sec == nil || len(sec.CPU) == 0 {
			missing = append(missing, fmt.Sprintf("the %s section's CPU table", opNames[op]))
			continue
		}
		t := sec.CPU[0]
		if !slices.Contains(t.Columns, col) {
			missing = append(missing, fmt.Sprintf("the %q column of %q", col, t.Title))
			continue
		}
		costs := map[string]float64{}
		for _, row := range t.Rows {
			v := t.Median(row, col)
			switch {
			case math.IsNaN(v) || row == rowTotal || row == "api1" || row == "api2":
			case row == rowAPIs:
				costs[rowReplicas] += v
			default:
				costs[row] += v
			}
		}
		main := rowReplicas
		if op == opApply {
			main = "consumer"
		}
		if costs[main] <= 0 {
			missing = append(missing, fmt.Sprintf("the %s row of %q, column %q", main, t.Title, col))
			continue
		}
		out[op] = costs
	}
	if len(missing) > 0 {
		return out, fmt.Errorf("%w: %s", ErrMissingFigures, strings.Join(missing, "; "))
	}
	return out, nil
}

// TierCosts are the rows' costs summed by tier.
func TierCosts(rows OpCosts) OpCosts {
	out := OpCosts{}
	for op, costs := range rows {
		out[op] = map[string]float64{}
		for _, tier := range planTiers {
			for _, row := range tier.rows {
				if v, ok := costs[row]; ok {
					out[op][tier.name] += v
				}
			}
		}
	}
	return out
}

// TierPlan is one tier of a plan.
type TierPlan struct {
	Name  string
	PerOp map[string]float64 // CPU µs per operation
	Cores float64            // at the load
	Nodes int
	Count string // what runs on the nodes (replicas, shards, queues …)
	Bound string // what bounds it when it scales out
}

// Plan is the nodes of every tier for a load.
type Plan struct {
	Load  PlanLoad
	Nodes PlanNodes
	Rates map[string]float64
	Tiers []TierPlan
	// QueueRate is the messages a second one quorum queue is planned to
	// carry (filled to Utilisation); QueueRateEstimated when it comes
	// from the broker's CPU per message rather than PlanNodes.QueueRate.
	QueueRate          float64
	QueueRateEstimated bool
	Queues             int
	// PrimaryWrites is the writes a second one primary of PrimaryCores
	// carries at Utilisation, its reads beside them in the load's mix;
	// Partitions the primaries the load needs.
	PrimaryWrites float64
	Partitions    int
}

// MakePlan sizes every tier for the load from the processes' costs
// (RowCosts).
func MakePlan(rows OpCosts, l PlanLoad, n PlanNodes) (*Plan, error) {
	c := TierCosts(rows)
	if n.Cores < 1 || n.Utilisation <= 0 || n.Utilisation > 1 || n.PrimaryCores < 1 {
		return nil, fmt.Errorf("nodes of %d cores filled to %.0f %%, primaries of %d cores: cores ≥ 1 and 0 < utilisation ≤ 1", n.Cores, n.Utilisation*100, n.PrimaryCores)
	}
	if l.Requests <= 0 || l.ReadShare < 0 || l.ReadShare > 1 || l.HitRatio < 0 || l.HitRatio > 1 {
		return nil, fmt.Errorf("a load of %g requests/s, %g reads, %g hits: requests > 0, shares within 0 – 1", l.Requests, l.ReadShare, l.HitRatio)
	}
	p := &Plan{Load: l, Nodes: n, Rates: l.Rates()}
	usable := float64(n.Cores) * n.Utilisation
	nodes := func(cores float64) int { return ceilDiv(cores, usable) }
	for _, tier := range planTiers {
		t := TierPlan{Name: tier.name, PerOp: map[string]float64{}}
		for _, op := range planOps {
			v := c[op][tier.name]
			t.PerOp[op] = v
			t.Cores += p.Rates[op] * v / 1e6
		}
		t.Nodes = nodes(t.Cores)
		p.Tiers = append(p.Tiers, t)
	}
	writes := p.Rates[opPut]
	for i := range p.Tiers {
		t := &p.Tiers[i]
		switch t.Name {
		case tierEdge:
			// One mtail a node runs the program over every line of its
			// nginx's log, a line at a time: about one core of it.
			var mtail float64
			for _, op := range planOps {
				mtail += p.Rates[op] * rows[op]["mtail"] / 1e6
			}
			byMtail := ceilDiv(mtail, n.Utilisation)
			t.Nodes = max(t.Nodes, byMtail)
			t.Count = fmt.Sprintf("%d nginx (a worker per core) and an mtail each", t.Nodes)
			t.Bound = fmt.Sprintf("none shared: each node takes its share of the connections (DNS or an L4 balancer in front); on each, its mtail, which reads the lines one at a time: %.1f cores of mtail in all need %d nodes", mtail, byMtail)
		case tierAPI:
			// GOMAXPROCS=1: a replica is one core.
			replicas := max(2, ceilDiv(t.Cores, n.Utilisation))
			t.Nodes = ceilDiv(float64(replicas), float64(n.Cores))
			t.Count = fmt.Sprintf("%d replicas (GOMAXPROCS=1: one core each)", replicas)
			t.Bound = "none shared: stateless; their pools (PG_MAX_CONNS, REDIS_POOL_SIZE, publish channels) multiply on the engines"
		case tierConsumer:
			if writes > 0 {
				t.Nodes = max(2, t.Nodes)
			}
			t.Count = fmt.Sprintf("%d consumers, one a node", t.Nodes)
			if t.Nodes == 0 {
				t.Count = "none: no writes"
			}
			t.Bound = "the queues they drain (below); each consumer takes every queue"
		case tierRedis:
			// Redis runs commands on one thread: a shard is one core.
			shards := max(3, ceilDiv(t.Cores, n.Utilisation))
			t.Nodes = max(2, ceilDiv(float64(2*shards), float64(n.Cores)))
			t.Count = fmt.Sprintf("%d shards, each a primary and a replica: %d redis-server, a core each, no primary on its replica's node", shards, 2*shards)
			t.Bound = "a shard's one thread; 16,384 slots, hashed by key, so shards scale it out (and memory: shards ≥ the data set ÷ a shard's maxmemory)"
		case tierRabbit:
			t.Nodes = max(3, t.Nodes)
			per := t.PerOp[opPut] + t.PerOp[opApply]
			p.QueueRate = n.QueueRate * n.Utilisation
			if n.QueueRate <= 0 {
				p.QueueRate, p.QueueRateEstimated = PlanQueueRate(per, n.Utilisation), true
			}
			if p.QueueRate > 0 {
				p.Queues = ceilDiv(writes, p.QueueRate)
			}
			t.Count = fmt.Sprintf("%d nodes, %d quorum queues for the writes (%s msg/s each at most)", t.Nodes, p.Queues, count(p.QueueRate))
			t.Bound = "a quorum queue's leader: one Erlang process on one node, so one queue's messages/s; past it, shard the queue"
		case tierPostgres:
			p.PrimaryWrites, p.Partitions = primaryWrites(t, p.Rates, n)
			t.Nodes = 2 * p.Partitions
			t.Count = fmt.Sprintf("%d primary of %d cores and its synchronous standby", p.Partitions, n.PrimaryCores)
			if p.Partitions > 1 {
				t.Count = fmt.Sprintf("%d partitions, each a primary of %d cores and its synchronous standby", p.Partitions, n.PrimaryCores)
			}
			t.Bound = fmt.Sprintf("one primary takes every write: by CPU, %s writes/s on %d cores at this mix (WAL, the standby's replay and vacuum are not in the figure); past it, partition by key", count(p.PrimaryWrites), n.PrimaryCores)
		case tierJaeger:
			t.Count = fmt.Sprintf("%d collectors", t.Nodes)
			t.Bound = "the trace storage behind the collectors (not measured: the bench's Jaeger keeps traces in memory)"
		}
	}
	return p, nil
}

// PlanQueueRate estimates the messages a second one quorum queue carries
// filled to utilisation, from the broker's CPU per message (published,
// confirmed, delivered and acknowledged): as if all of it were the
// queue's leader's, one Erlang process, so on one core — a lower bound,
// since the channels' and connections' processes run beside it on other
// cores.
func PlanQueueRate(brokerMicros, utilisation float64) float64 {
	if brokerMicros <= 0 {
		return 0
	}
	return utilisation * 1e6 / brokerMicros
}

// primaryWrites is what one primary of n.PrimaryCores carries, filled to
// n.Utilisation, of the load's mix (its reads with its writes), and the
// primaries the load needs.
func primaryWrites(t *TierPlan, rates map[string]float64, n PlanNodes) (float64, int) {
	usable := float64(n.PrimaryCores) * n.Utilisation
	if t.Cores <= 0 || rates[opPut] <= 0 {
		return math.Inf(1), 1
	}
	return rates[opPut] * usable / t.Cores, max(1, ceilDiv(t.Cores, usable))
}

func ceilDiv(a, b float64) int {
	if a <= 0 {
		return 0
	}
	return int(math.Ceil(a/b - 1e-9))
}

// Cores is what every tier needs together.
func (p *Plan) Cores() float64 {
	var c float64
	for _, t := range p.Tiers {
		c += t.Cores
	}
	return c
}

// NodeCount is every tier's nodes together.
func (p *Plan) NodeCount() int {
	var n int
	for _, t := range p.Tiers {
		n += t.Nodes
	}
	return n
}

// Write renders the plan in Markdown.
func (p *Plan) Write(w io.Writer) {
	pf := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	r := p.Rates
	pf("Load: %s requests/s, %.0f %% reads with %.0f %% cache hits: %s GET hits/s, %s GET misses/s, %s writes/s (each accepted, then applied once).\n",
		count(p.Load.Requests), p.Load.ReadShare*100, p.Load.HitRatio*100, count(r[opHit]), count(r[opMiss]), count(r[opPut]))
	pf("Nodes of %d cores, filled to %.0f %% (a single-threaded process: %.0f %% of its core); PostgreSQL primaries of %d cores.\n\n",
		p.Nodes.Cores, p.Nodes.Utilisation*100, p.Nodes.Utilisation*100, p.Nodes.PrimaryCores)
	pf("| tier | CPU µs per GET hit / miss / PUT / apply | cores at this load | nodes | what runs |\n|---|---|---|---|---|\n")
	for _, t := range p.Tiers {
		per := make([]string, len(planOps))
		for i, op := range planOps {
			per[i] = fmtMicros(t.PerOp[op])
		}
		pf("| %s | %s | %.1f | %d | %s |\n", t.Name, strings.Join(per, " / "), t.Cores, t.Nodes, t.Count)
	}
	pf("| **total** | | %.1f | %d | |\n\n", p.Cores(), p.NodeCount())
	pf("What bounds each tier when it scales out:\n\n")
	for _, t := range p.Tiers {
		pf("* %s: %s.\n", t.Name, t.Bound)
	}
	if p.QueueRateEstimated {
		pf("\nOne quorum queue is planned at %s msg/s: the broker's CPU per write (publish to ack) as if it were all the queue leader's, one core filled to %.0f %% — a lower bound; give the rate measured on the production nodes with -queue-rate.\n",
			count(p.QueueRate), p.Nodes.Utilisation*100)
	}
}

func count(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// PlanCheck compares the CPU per operation of one process in the report
// the plan used with the HA topology's (SCALEOUT.md): what bench-ha can
// say of the plan on this machine.
type PlanCheck struct {
	Op, Row, Tier      string
	Single, HA, Factor float64
}

// CheckAgainstHA lists the processes both measured (by RowCosts), per
// operation.
func CheckAgainstHA(single, ha OpCosts) []PlanCheck {
	var out []PlanCheck
	for _, op := range planOps {
		for _, tier := range planTiers {
			for _, row := range tier.rows {
				s, okS := single[op][row]
				h, okH := ha[op][row]
				if !okS || !okH || s <= 0 || h <= 0 {
					continue
				}
				out = append(out, PlanCheck{op, row, tier.name, s, h, h / s})
			}
		}
	}
	return out
}

// WriteCheck renders the comparison, and each tier's cores at the plan's
// load with the HA topology's figure in place of the report's.
func WriteCheck(w io.Writer, checks []PlanCheck, p *Plan) {
	fmt.Fprintf(w, "| operation | process | CPU µs per operation, make bench | make bench-ha | HA ÷ bench | its tier's cores at this load with the HA figure |\n|---|---|---|---|---|---|\n")
	for _, c := range checks {
		cores := 0.0
		for _, t := range p.Tiers {
			if t.Name == c.Tier {
				cores = t.Cores + p.Rates[c.Op]*(c.HA-c.Single)/1e6
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f × | %.1f |\n", opNames[c.Op], c.Row, fmtMicros(c.Single), fmtMicros(c.HA), c.Factor, cores)
	}
}
