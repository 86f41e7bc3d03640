package rabbitmq_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// asUser is url with another user, whose password is its name (the users
// make setup makes on the shared broker: lab/scripts/services.sh).
func asUser(t *testing.T, raw, user string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, user)
	return u.String()
}

// The API's user may only publish (docs/SECURITY.md): its publisher
// cannot declare the topology, finds it declared (by migrate) and
// publishes; where it is missing, the publisher says to migrate.
func TestPublisherWhoMayNotConfigureChecksTheTopology(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	admin := cfg
	cfg.URL = asUser(t, cfg.URL, "kvstack_api")

	// Not declared yet: it cannot become ready, and says why.
	p, err := rabbitmq.NewPublisher(cfg, rabbittest.Keys(t), testLog(t))
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err = p.WaitReady(ctx)
	cancel()
	p.Close()
	if err == nil {
		t.Fatal("the API's user got a ready publisher on a topology nobody declared, want none: it may not declare")
	}

	rabbittest.Declare(t, admin) // migrate's part
	p = mustPublisher(t, cfg)
	op := kv.Op{Kind: kv.KindPut, Key: "k", Value: "v", Version: kv.NewVersion(time.Now())}
	if err := p.Publish(context.Background(), op); err != nil {
		t.Fatalf("Publish as kvstack_api: %v", err)
	}
	rabbittest.WaitCount(t, admin, admin.QueueAdd, 1, 5*time.Second)
}

// Check finds a missing queue and names the migrations.
func TestCheckNamesTheMigrations(t *testing.T) {
	cfg := rabbittest.MustConfig(t)
	conn := rabbittest.MustDial(t, cfg)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := rabbitmq.Check(ch, rabbitmq.Topology{AddQueue: cfg.QueueAdd, DelQueue: cfg.QueueDel, DLX: cfg.DLX}); err == nil || !strings.Contains(err.Error(), "run the migrations") {
		t.Fatalf("Check of a missing topology: %v, want an error naming the migrations", err)
	}
}
