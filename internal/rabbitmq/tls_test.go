package rabbitmq_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/consumer"
	"github.com/kvstack/kvstack/internal/engine"
	"github.com/kvstack/kvstack/internal/engine/enginetest"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/rabbitmq"
	"github.com/kvstack/kvstack/internal/rabbitmq/rabbittest"
)

// An amqps:// URL with RABBITMQ_TLS_CA_FILE carries what migrate, the
// API's publisher and the consumer exchange over TLS, to a broker whose
// certificate chains to that CA and carries the URL's host, and to no
// other: the topology migrated, a message published, confirmed and
// consumed, all on the node's TLS listener (where a plain-text client gets
// no answer); the same node refused under another authority or another
// name. privateBroker serves TLS with a certificate for localhost only.
func TestTLS(t *testing.T) {
	files := privateBroker.TLSFiles(t)
	tlsURL := privateBroker.TLSURL(t)                             // amqps://guest:guest@localhost:PORT/
	other, err := engine.MakeTLS(t.TempDir(), enginetest.TLSHost) // the same name, another authority
	if err != nil {
		t.Fatal(err)
	}
	// Queue names of its own, deleted over the plain listener at the end.
	cfg := rabbittest.MustConfigAt(t, privateBroker.URL(t))
	cfg.URL, cfg.TLSCAFile = tlsURL, files.CA

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name, url, ca, want string
		}{
			{"another CA", tlsURL, other.CA, "certificate signed by unknown authority"},
			{"the system's CAs", tlsURL, "", "certificate signed by unknown authority"},
			{"an address not in the certificate", strings.Replace(tlsURL, "@"+enginetest.TLSHost+":", "@127.0.0.1:", 1), files.CA,
				"doesn't contain any IP SANs"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				c := cfg
				c.URL, c.TLSCAFile = tc.url, tc.ca
				err := rabbitmq.MigrateQueues(ctx, c, testLog(t))
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("MigrateQueues at %s with CA %q: %v; want refused, saying %q", c.RedactedURL(), tc.ca, err, tc.want)
				}
			})
		}
	})

	t.Run("the right CA and name", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := rabbitmq.MigrateQueues(ctx, cfg, testLog(t)); err != nil { // what cmd/migrate does
			t.Fatalf("MigrateQueues over TLS: %v", err)
		}
		handled := make(chan string, 10)
		startRunner(t, cfg, handlerFunc(func(_ context.Context, b []consumer.Message) ([]consumer.Result, error) {
			for _, m := range b {
				if op, err := kv.DecodeMessage(m.Kind, m.Body, kv.DefaultLimits()); err == nil {
					handled <- op.Key
				}
			}
			return make([]consumer.Result, len(b)), nil
		}))
		p := mustPublisher(t, cfg)
		if err := p.Publish(ctx, kv.Op{Kind: kv.KindPut, Key: "over-tls", Value: "v", Version: kv.NewVersion(time.Now())}); err != nil {
			t.Fatalf("Publish over TLS: %v", err)
		}
		select {
		case k := <-handled:
			if k != "over-tls" {
				t.Fatalf("consumed %q, want over-tls", k)
			}
		case <-ctx.Done():
			t.Fatal("the consumer did not get the message over TLS within 30s")
		}
	})
}
