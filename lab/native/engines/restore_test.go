package engines

import (
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/supervisor"
)

// A restore stops and starts the replicas, the consumers and the backup
// scheduler, not the engines, nginx, the observability, nor a program
// left to be started by hand (the chaos campaign's extra consumers).
func TestRestoreApps(t *testing.T) {
	var programs []supervisor.Program
	for _, name := range []string{"postgres1", "redis1", "rabbitmq1", "etcd", "api1", "api2", "consumer", "consumer2", "nginx", "prometheus", "backups"} {
		programs = append(programs, supervisor.Program{Name: name})
	}
	programs = append(programs, supervisor.Program{Name: "consumer3", Manual: true})
	got := strings.Join(RestoreApps(programs), " ")
	if want := "api1 api2 consumer consumer2 backups"; got != want {
		t.Errorf("RestoreApps = %q, want %q", got, want)
	}
}
