package native_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/lab/native"
)

// Migrate runs bin/migrate with the stack's DATABASE_URL and RABBITMQ_URL,
// and tells a refusal to convert a consumed queue (exit status 3) from
// other failures. A script stands in for the binary.
func TestMigrate(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status string
		want   error
	}{
		{"success", "0", nil},
		{"a queue to convert has consumers", "3", native.ErrQueueInUse},
		{"another failure", "1", errors.New("any")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := native.Load("../..", []string{"KV_STACK_DIR=" + dir, "RABBITMQ_PORT=25673"})
			if err != nil {
				t.Fatal(err)
			}
			s.BinDir = dir
			script := "#!/bin/sh\necho \"db=$DATABASE_URL mq=$RABBITMQ_URL app=$KV_MIGRATE_APP_ROLES monitor=$KV_MIGRATE_MONITOR_ROLES\"\nexit " + tt.status + "\n"
			if err := os.WriteFile(filepath.Join(dir, "migrate"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			err = native.Migrate(context.Background(), s, io.Discard)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Migrate: %v", err)
			case tt.want != nil && err == nil:
				t.Fatal("Migrate succeeded, want an error")
			case errors.Is(err, native.ErrQueueInUse) != errors.Is(tt.want, native.ErrQueueInUse):
				t.Errorf("Migrate = %v; want it to wrap ErrQueueInUse: %v", err, errors.Is(tt.want, native.ErrQueueInUse))
			}
			out, _ := os.ReadFile(s.LogFile("migrate"))
			if !strings.Contains(string(out), "db="+s.Get("DATABASE_URL")) || !strings.Contains(string(out), "mq=amqp://guest:guest@127.0.0.1:25673/") {
				t.Errorf("migrate saw %q, want the stack's DATABASE_URL and RABBITMQ_URL", out)
			}
			// The owner migrates and grants the app's and the exporter's roles.
			if !strings.Contains(string(out), "db=postgres://kvstack:kvstack@") || !strings.Contains(string(out), "app=kvstack_app monitor=kvstack_monitor") {
				t.Errorf("migrate saw %q, want the owner's URL and the roles kvstack_app and kvstack_monitor to grant", out)
			}
		})
	}
}
