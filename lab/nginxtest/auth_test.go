package nginxtest_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/kvstack/kvstack/lab/nginxtest"
)

// The edge hands the client's token to a replica and the replica's 401,
// challenge included, back to the client, once: a refused token is the
// client's error, never retried on the other replica. The token stays out
// of the access log.
func TestEdgePassesTokensAndRefusals(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx; not run with -short (make test runs it)")
	}
	a, b := nginxtest.StartReplica(t), nginxtest.StartReplica(t)
	e := nginxtest.StartEdge(t, a.Addr, b.Addr, nil)

	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		before := a.Hits.Load() + b.Hits.Load()
		got, err := e.TryAs("", method, "/api?key=k")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != http.StatusUnauthorized || got.Header.Get("WWW-Authenticate") != `Bearer realm="kvstack"` {
			t.Errorf("%s without a token: %d, WWW-Authenticate %q; want the replica's 401 and challenge", method, got.Status, got.Header.Get("WWW-Authenticate"))
		}
		if hits := a.Hits.Load() + b.Hits.Load() - before; hits != 1 {
			t.Errorf("%s without a token reached the replicas %d times, want once", method, hits)
		}
		if got := e.Do(t, method, "/api?key=k"); got.Status/100 != 2 {
			t.Errorf("%s with a token: %d %s", method, got.Status, got.Body)
		}
	}
	// The log is written every 100 ms: wait for the six requests' lines,
	// so that the check reads them.
	var log []byte
	nginxtest.WaitFor(t, "6 lines in the access log", func() error {
		var err error
		log, err = os.ReadFile(e.AccessLog)
		if n := strings.Count(string(log), "\n"); err == nil && n < 6 {
			return fmt.Errorf("%d lines", n)
		}
		return err
	})
	if strings.Contains(string(log), nginxtest.Token) {
		t.Errorf("the access log holds the bearer token:\n%s", log)
	}
}
