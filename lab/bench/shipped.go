package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/lab/native"
)

// The bench measures kvstack as shipped (issue 22): the settings a user of
// docker compose or of the Helm chart's prod values runs, the API
// replicas' and the consumer's environment. `make bench` starts the native
// stack so (the Makefile exports native.ProductionSampler for it; the
// native stack's own default samples every trace); Run refuses a stack
// whose processes run otherwise, and TestMakeBenchRunsTheShippedDefaults
// fails when make bench would start one.

// shippedSetting is one variable of the API's and the consumer's
// environment, the value kvstack ships, and where that value is written;
// dflt is the processes' own default, which an unset variable means.
type shippedSetting struct{ name, value, dflt, where string }

// shippedSettings are the defaults the bench must run: the production
// sampler, the queue type's default (RABBITMQ_QUEUE_TYPE) and auth's
// (KV_AUTH). TLS at the edge is no setting: the native edge serves HTTPS
// only (native.EdgeURL), as compose's and the chart's do.
func shippedSettings() []shippedSetting {
	var out []shippedSetting
	for _, kv := range native.ProductionSampler {
		name, value, _ := strings.Cut(kv, "=")
		out = append(out, shippedSetting{name, value, "", "lab/native.ProductionSampler: docker-compose.yml, docker-compose.ha.yml, the Helm chart's prod values"})
	}
	queue := envDefault(rabbitmq.Config{}, "QueueType")
	authOn := envDefault(auth.Config{}, "Enabled")
	return append(out,
		shippedSetting{"RABBITMQ_QUEUE_TYPE", queue, queue, "internal/rabbitmq's default"},
		shippedSetting{"KV_AUTH", authOn, authOn, "internal/auth's default"})
}

// envDefault is the envDefault tag of a configuration struct's field: the
// value a process runs when its environment does not set the variable.
func envDefault(cfg any, field string) string {
	f, ok := reflect.TypeOf(cfg).FieldByName(field)
	if !ok {
		panic(fmt.Sprintf("%T has no field %s", cfg, field))
	}
	return f.Tag.Get("envDefault")
}

// notShipped lists how env (a process's environment) differs from what
// kvstack ships.
func notShipped(env map[string]string) []string {
	var out []string
	for _, s := range shippedSettings() {
		got := env[s.name]
		if got == "" {
			got = s.dflt
		}
		if got != s.value {
			out = append(out, fmt.Sprintf("%s=%q, kvstack ships %q (%s)", s.name, got, s.value, s.where))
		}
	}
	return out
}

// shippedPrograms are the stack's processes whose settings the bench
// checks, of either topology (the HA topology's second consumer too).
var shippedPrograms = []string{"api1", "api2", "consumer", "consumer2"}

// checkShipped fails unless the stack's API replicas and consumer run the
// shipped settings: those of their configuration (the stack's settings as
// kvbench reads them) and those of the running processes, which an
// earlier `make up` may have started otherwise.
func (h *harness) checkShipped(ctx context.Context) error {
	sup := native.NewStack(h.stack.s, nil).Supervisor()
	var errs []string
	for _, name := range shippedPrograms {
		prog, ok := h.stack.progs[name]
		if !ok {
			continue // consumer2 is the HA topology's
		}
		for _, d := range notShipped(prog.Env) {
			errs = append(errs, fmt.Sprintf("%s's configuration: %s", name, d))
		}
		pid, err := sup.Pid(ctx, name)
		if err != nil || pid == 0 {
			return fmt.Errorf("pid of %s: %v (is the stack up? make bench starts it)", name, err)
		}
		env, err := procEnviron(pid)
		if err != nil {
			return fmt.Errorf("%s's environment: %w", name, err)
		}
		for _, d := range notShipped(env) {
			errs = append(errs, fmt.Sprintf("the running %s: %s", name, d))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the bench runs kvstack as shipped, and this stack does not: %s (`make bench` and `make bench-ha` start it so: they export %s for `make up` and `make up-ha`, which restart what changed)",
			strings.Join(errs, "; "), strings.Join(native.ProductionSampler, " "))
	}
	return nil
}

// procEnviron is a process's environment, from /proc.
func procEnviron(pid int) (map[string]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for kv := range bytes.SplitSeq(data, []byte{0}) {
		if name, value, ok := strings.Cut(string(kv), "="); ok {
			env[name] = value
		}
	}
	return env, nil
}

// shippedShare is the production sampler's ratio as a share of the
// messages, for the report ("one in ten").
func shippedShare() string {
	if productionRatio > 0 && productionRatio < 1 {
		if n := 1 / productionRatio; n == float64(int(n)) {
			return fmt.Sprintf("one in %d", int(n))
		}
	}
	return fmt.Sprintf("%g %% of them", productionRatio*100)
}
