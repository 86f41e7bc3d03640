package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A provisioning call made right after the node's start (AddUsers) tries
// again while rabbitmqctl finds the node unavailable (exit 69), as a
// single node serving TLS alone did once at load 10; a call also made on
// nodes stopped on purpose (Queues) does not. A rabbitmqctl of the test's
// own, first in PATH, exits 69 twice and then succeeds, counting its
// calls.
func TestCtlAfterStartWaitsForTheCLI(t *testing.T) {
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	script := "#!/bin/sh\necho x >> " + calls + "\n[ $(wc -l < " + calls + ") -gt 2 ] || { echo 'unable to perform an operation on node' >&2; exit 69; }\n"
	if err := os.WriteFile(filepath.Join(bin, "rabbitmqctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	count := func() int {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "\n")
	}
	r := &RabbitMQ{Node: "kvtest@localhost", Dir: t.TempDir()}

	if _, err := r.Queues(context.Background()); err == nil || !strings.Contains(err.Error(), "exit status 69") {
		t.Errorf("Queues on an unavailable node: %v, want exit status 69", err)
	}
	if got := count(); got != 1 {
		t.Errorf("Queues on an unavailable node ran rabbitmqctl %d times, want 1 (no wait)", got)
	}
	if err := r.AddUsers(context.Background(), nil, User{Name: "app", Password: "pw"}); err != nil {
		t.Errorf("AddUsers once rabbitmqctl reaches the node: %v", err)
	}
	if got := count(); got != 3 {
		t.Errorf("rabbitmqctl ran %d times in all, want 3 (Queues once, AddUsers twice)", got)
	}
}
