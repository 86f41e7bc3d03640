package native_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/internal/supervisor"
	"github.com/kvstack/kvstack/lab/native"
)

// The native stack's Prometheus, in either topology, runs without
// --web.enable-lifecycle: with it any local process, or a web page by CSRF,
// could POST /-/quit or /-/reload (issue 19; the stack reloads it by
// SIGHUP). Checked on the command line supervisord is given, as
// deploy/composetest checks compose's.
func TestPrometheusWithoutLifecycleAPI(t *testing.T) {
	for _, topology := range []string{"single", "ha"} {
		t.Run(topology, func(t *testing.T) {
			s, err := native.Load("../..", []string{"KV_TOPOLOGY=" + topology, "KV_STACK_DIR=" + t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			sup := supervisor.NewSupervisor(t.TempDir())
			if _, err := sup.WriteConf(native.Processes(s)); err != nil {
				t.Fatal(err)
			}
			conf, err := os.ReadFile(sup.ConfPath())
			if err != nil {
				t.Fatal(err)
			}
			command := programCommand(string(conf), "prometheus")
			if command == "" {
				t.Fatalf("%s: no [program:prometheus] command", filepath.Base(sup.ConfPath()))
			}
			if !strings.Contains(command, "--web.listen-address=") {
				t.Errorf("prometheus: command %q lacks --web.listen-address (not the stack's Prometheus?)", command)
			}
			if strings.Contains(command, "--web.enable-lifecycle") {
				t.Errorf("prometheus runs with --web.enable-lifecycle: %s", command)
			}
		})
	}
}

// programCommand is the command= line of program name in a supervisord.conf.
func programCommand(conf, name string) string {
	_, section, ok := strings.Cut(conf, "[program:"+name+"]\n")
	if !ok {
		return ""
	}
	section, _, _ = strings.Cut(section, "\n[")
	for _, line := range strings.Split(section, "\n") {
		if c, ok := strings.CutPrefix(line, "command="); ok {
			return c
		}
	}
	return ""
}
