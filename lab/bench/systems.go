package bench

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvstack/kvstack/lab/native"
)

// system is one column of a scenario: kvstack as shipped, a variant of
// it, a baseline or a reference. Its processes are measured for CPU over
// each run.
type system struct {
	name    string
	op      Op
	procs   func(ctx context.Context) ([]Proc, error)
	profile string // the name of api1's CPU profile taken during its first judged run; "" for none
	admin   string // the port of that api1's admin listener; "" for the stack's api1
	after   func() // run after each of its runs (cleaning up), when set
	// load replaces the loop of op over HTTP when set (a raw publish,
	// say): at rate operations a second, or as fast as it can when rate
	// is 0.
	load func(ctx context.Context, dur time.Duration, rate float64) Result
}

// run drives the system's load for dur: a closed loop of conns when rate
// is 0, else an open loop at rate (the judged runs: rate.go says why).
func (s system) run(ctx context.Context, conns int, dur time.Duration, rate float64) Result {
	if s.load != nil {
		return s.load(ctx, dur, rate)
	}
	return Paced(ctx, conns, dur, 0, rate, s.op)
}

// variant is kvstack run with some settings changed, to put a number on
// the cost of a layer: the same binary, the stack's environment, env on
// top.
type variant struct {
	name string
	env  []string
	bin  string // another build of the API (Options.CompareAPI); "" for bin/api
	// plainEdge: its nginx serves plain HTTP/1.1 (the template's TLS
	// lines left out), the replicas unchanged.
	plainEdge bool
}

// namedBy is whether n names v, as the variant's name or as its profile's
// file name spells it (Options.Variants, kvbench -variants).
func (v variant) namedBy(n string) bool {
	return v.name == n || profileName(v.name) == n
}

// apiVariants are the API's variants of issue 15 beside kvstack as shipped
// (the production sampler, native.ProductionSampler; access log and auth
// on): colFull samples every trace, as the native dev stack does.
//
// colHarness changes nothing: the stack's replicas as the harness runs
// every variant (its own processes and nginx, no Prometheus scraping
// them, started for the scenario). A layer's cost is a variant's
// difference from it, like against like; kvstack's own column against it
// says what the harness's way of running changes by itself.
var apiVariants = []variant{
	{name: colHarness},
	{name: colFull, env: fullSampler},
	{name: "tracing off", env: []string{"OTEL_TRACES_SAMPLER=always_off"}},
	{name: "tracing and access log off", env: []string{"OTEL_TRACES_SAMPLER=always_off", "KV_ACCESS_LOG=false"}},
	// The clients send their token all the same: the difference is what
	// verifying it (from the cache, after the first request) and judging
	// its rights cost.
	{name: colAuthOff, env: []string{"KV_AUTH=off"}},
	// TLS's cost at the edge (issue 19): the same nginx configuration
	// without its TLS lines, the clients speaking plain HTTP/1.1 to it as
	// they speak HTTP/1.1 over TLS to the others. nginx's row is the
	// difference; the replicas' should not move.
	{name: colTLSOff, plainEdge: true},
}

// fullSampler is the production sampler at 100 %: the native dev stack's
// default.
var fullSampler = []string{"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=1.0"}

// productionRatio is native.ProductionSampler's ratio: the share of the
// apply's messages that kvstack's consumer gets sampled.
var productionRatio = func() float64 {
	for _, kv := range native.ProductionSampler {
		if arg, ok := strings.CutPrefix(kv, "OTEL_TRACES_SAMPLER_ARG="); ok {
			r, err := strconv.ParseFloat(arg, 64)
			if err != nil {
				panic(fmt.Sprintf("native.ProductionSampler: %s: %v", kv, err))
			}
			return r
		}
	}
	panic("native.ProductionSampler sets no OTEL_TRACES_SAMPLER_ARG")
}()

// The columns the targets compare.
const (
	colKVStack    = "kvstack"
	colHarness    = "as shipped, run by the harness"
	colFull       = "100 % sampling"
	colUntraced   = "tracing off"
	colAuthOff    = "auth off"
	colTLSOff     = "TLS off at the edge"
	colReference  = "reference"
	colBaseline   = "baseline"
	colRawPublish = "raw publish"
	colCompare    = "compared build"
)

// CheckVariants fails on a name of Options.Variants that is no variant's.
func CheckVariants(names []string) error {
	for _, n := range names {
		if !slices.ContainsFunc(apiVariants, func(v variant) bool { return v.namedBy(n) }) {
			return fmt.Errorf("no API variant %q", n)
		}
	}
	return nil
}

// variants are apiVariants, and with Options.CompareAPI a build of the API
// to compare with (another commit's), run as shipped.
// Options.Variants, when set, keeps only the variants it names.
func (h *harness) variants() []variant {
	var out []variant
	for _, v := range apiVariants {
		if len(h.o.Variants) == 0 || slices.ContainsFunc(h.o.Variants, v.namedBy) {
			out = append(out, v)
		}
	}
	if h.o.CompareAPI == "" {
		return out
	}
	return append(out, variant{name: colCompare, bin: h.o.CompareAPI})
}

// stackSystem is the stack's own edge and replicas: kvstack as shipped.
func (h *harness) stackSystem(op Op, profile string) system {
	return system{name: colKVStack, op: op, profile: profile, procs: func(ctx context.Context) ([]Proc, error) {
		return h.stack.procs(ctx)
	}}
}

// edgeSystem is an edge of the harness's (a variant, a stub) with the
// stack's processes of roles beside it (the engines it uses, say).
func (h *harness) edgeSystem(name string, e *edge, op Op, roles ...string) system {
	return system{name: name, op: op, procs: func(ctx context.Context) ([]Proc, error) {
		procs, err := h.stackProcs(ctx, roles...)
		if err != nil {
			return nil, err
		}
		return append(slices.Clone(e.procs), procs...), nil
	}}
}

// stackProcs are the stack's processes of the given roles that run.
func (h *harness) stackProcs(ctx context.Context, roles ...string) ([]Proc, error) {
	all, err := h.stack.procs(ctx)
	if err != nil {
		return nil, err
	}
	var out []Proc
	for _, p := range all {
		if slices.Contains(roles, p.Role) {
			out = append(out, p)
		}
	}
	return out, nil
}

// notAPI are the roles of the stack beside its edge and replicas.
var notAPI = []string{"consumer", "jaeger", "postgres", "redis", "rabbitmq"}

// startVariants starts each API variant on ports of its own: two replicas
// behind an nginx; stop stops them all.
func (h *harness) startVariants(ctx context.Context, scenario string, mk func(base string) Op) ([]system, func(), error) {
	var (
		out   []system
		edges []*edge
	)
	stop := func() {
		for _, e := range edges {
			e.stop()
		}
	}
	for i, v := range h.variants() {
		listen, a, b := h.o.port(20+3*i), h.o.port(21+3*i), h.o.port(22+3*i)
		var admin string // api1's
		if h.o.Profiles != "" {
			// api1's admin listener on a known port, to profile it as the
			// stack's api1 is.
			admin = h.o.port(41 + i)
		}
		e, err := h.startReplicas(ctx, fmt.Sprintf("%s-variant%d", scenario, i+1), listen, []string{a, b}, v.bin, []string{admin}, v.plainEdge, v.env...)
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("variant %q: %w", v.name, err)
		}
		edges = append(edges, e)
		s := h.edgeSystem(v.name, e, mk(e.url), notAPI...)
		if admin != "" {
			s.profile, s.admin = fmt.Sprintf("api-%s-%s-cpu", scenario, profileName(v.name)), portOf(admin)
		}
		out = append(out, s)
	}
	return out, stop, nil
}

// waitQuiet is WaitQuiet, unless the run is Busy.
func (h *harness) waitQuiet(ctx context.Context) error {
	if h.o.Busy {
		return nil
	}
	return WaitQuiet(ctx)
}

// measured is one run of a system: the load's result and each process's
// CPU µs per successful operation.
type measured struct {
	res   Result
	perOp map[string]float64
}

// runSystem runs the system's load for dur at rate (0: a closed loop)
// and measures its processes.
func (h *harness) runSystem(ctx context.Context, s system, dur time.Duration, rate float64, profile bool) (measured, error) {
	procs, err := s.procs(ctx)
	if err != nil {
		return measured{}, err
	}
	wait := func() {}
	if profile && s.profile != "" {
		admin := s.admin
		if admin == "" {
			admin = h.o.APIAdminPorts[0]
		}
		wait = h.profile(ctx, admin, s.profile, int(dur.Seconds())-1)
	}
	w, err := startCPU(procs)
	if err != nil {
		return measured{}, err
	}
	res := s.run(ctx, h.o.Conns, dur, rate)
	u, err := w.end()
	wait()
	if s.after != nil {
		s.after()
	}
	if err != nil {
		return measured{res: res}, err
	}
	perOp, err := u.PerOp(float64(res.OK))
	if err != nil {
		return measured{res: res}, fmt.Errorf("%s: %s: %w", s.name, res, err)
	}
	return measured{res: res, perOp: perOp}, nil
}

// runOrder is the order in which repetition rep (from 0) runs n systems:
// forward in even repetitions, backward in odd ones, so that no system
// always runs before another. Whatever a run leaves to the next (a
// broker or Jaeger still catching up, the host's load drifting over the
// repetition) then falls on each side of a comparison in turn, instead
// of always on the same side (the "auth off" variant ran right after
// kvstack in every repetition of the first 7 December report), so the
// medians carry less of it; with an odd number of repetitions, 3 by
// default, one side still gets it once more than the other.
func runOrder(n, rep int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
		if rep%2 == 1 {
			out[i] = n - 1 - i
		}
	}
	return out
}

// alternate warms each system up, then runs them in turn, Reps times
// (runOrder: forward, then backward), in closed loops (at Options.Rate
// when set), and returns each one's runs by name; CPU goes into table,
// failed requests into the section's notes. The scale-out's GET hit
// compares replicas' capacities so; make bench's scenarios judge their
// columns at one rate (judgeAtRate).
func (h *harness) alternate(ctx context.Context, label string, sec *Section, table *CPUTable, systems []system) (map[string][]Result, error) {
	h.warmUp(ctx, systems)
	return h.repeat(ctx, label, sec, table, systems, h.o.Rate)
}

// warmUp runs each system, unmeasured, for Options.Warm in a closed loop.
func (h *harness) warmUp(ctx context.Context, systems []system) {
	for _, s := range systems {
		s.run(ctx, h.o.Conns, h.o.Warm, 0)
		if s.after != nil {
			s.after()
		}
	}
}

// repeat runs the systems in turn, Reps times (runOrder), at rate (0: a
// closed loop), and returns each one's runs by name; CPU goes into table,
// failed requests into the section's notes. Api1's profiles are taken in
// the first repetition.
func (h *harness) repeat(ctx context.Context, label string, sec *Section, table *CPUTable, systems []system, rate float64) (map[string][]Result, error) {
	out := map[string][]Result{}
	for r := range h.o.Reps {
		for _, i := range runOrder(len(systems), r) {
			s := systems[i]
			if err := h.waitQuiet(ctx); err != nil {
				return out, err
			}
			m, err := h.runSystem(ctx, s, h.o.Dur, rate, r == 0)
			if err != nil {
				return out, fmt.Errorf("run %d: %w", r+1, err)
			}
			Log("%s run %d: %s %s; %s", label, r+1, s.name, m.res, fmtPerOp(m.perOp))
			h.noteFailures(sec, fmt.Sprintf("run %d", r+1), s.name, m.res)
			table.Add(s.name, m.perOp)
			out[s.name] = append(out[s.name], m.res)
		}
	}
	return out, nil
}

// noteFailures notes a run's failed requests in the section, and in bold
// the 429s of the edge's per-client limit, which make the figures the
// limit's.
func (h *harness) noteFailures(sec *Section, run, name string, res Result) {
	if res.Errors > 0 {
		sec.Notes = append(sec.Notes, fmt.Sprintf("%s: %d %s requests failed (statuses %v)", run, res.Errors, name, res.Status))
	}
	if n := res.Status[http.StatusTooManyRequests]; n > 0 {
		note := fmt.Sprintf("**%s: %d %s requests got 429: one client of the load sent more than the edge's per-client rate (NGINX_RATE_LIMIT %s, burst %s); "+
			"these figures measure the limit. Run the bench with a higher NGINX_RATE_LIMIT and NGINX_RATE_BURST set for `make up` and `make bench` alike, and say so.**",
			run, n, name, h.stack.s.Get("NGINX_RATE_LIMIT"), h.stack.s.Get("NGINX_RATE_BURST"))
		sec.Notes = append(sec.Notes, note)
		Log("%s", note)
	}
}

func fmtPerOp(perOp map[string]float64) string {
	s := "CPU µs/op"
	var total float64
	for _, role := range slices.Sorted(maps.Keys(perOp)) {
		s += fmt.Sprintf(" %s %.1f", role, perOp[role])
		total += perOp[role]
	}
	return s + fmt.Sprintf(" total %.1f", total)
}

// rates, p50s and p99s are the figures of a system's runs.
func rates(rs []Result) []float64 { return each(rs, Result.Rate) }
func p50s(rs []Result) []float64 {
	return each(rs, func(r Result) float64 { return ms(r.Quantile(.5)) })
}
func p99s(rs []Result) []float64 {
	return each(rs, func(r Result) float64 { return ms(r.Quantile(.99)) })
}

func each(rs []Result, f func(Result) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// profileName is a column's name as a file name's part: "100pct-sampling",
// "as-shipped-run-by-the-harness".
func profileName(col string) string {
	var b strings.Builder
	for _, r := range strings.ReplaceAll(col, " % ", "pct ") {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			b.WriteRune(r)
		case 'A' <= r && r <= 'Z':
			b.WriteRune(r + 'a' - 'A')
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}
