package composetest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/rs/zerolog"

	"github.com/kvstack/kvstack/internal/auth"
	"github.com/kvstack/kvstack/internal/config"
	"github.com/kvstack/kvstack/internal/httpapi"
	"github.com/kvstack/kvstack/internal/kv"
	"github.com/kvstack/kvstack/internal/metrics"
	"github.com/kvstack/kvstack/lab/native"
)

// docker-compose.yml's API asks for a token (issue 19: 401 in every
// topology). No engine runs here, so the API itself cannot start (it
// waits for RabbitMQ); instead each replica's compose environment, as
// compose resolves it with nothing set, is loaded by the API's own config
// (internal/config), its mounted key set and policy read from where
// compose mounts them from, and served by the API's own authenticator and
// routes (httpapi.NewHandler; only the store is a stub): no token gets 401
// with a Bearer challenge, and a token from `make token` (native.Token)
// gets 200. The key set mounted is the one `make token` signs with:
// the mount's default source is the native stack's KV_AUTH_JWKS_FILE,
// which SigningKey writes beside the key.
func TestComposeAPIAsksForAToken(t *testing.T) {
	p := mustLoad(t)
	shipped, err := native.Load(root, []string{"KV_STACK_DIR=", "KV_AUTH_JWKS_FILE=", "KV_AUTH_ISSUER="}) // the defaults
	if err != nil {
		t.Fatal(err)
	}
	if got, want := shipped.Get("KV_AUTH_JWKS_FILE"), filepath.Join(shipped.AuthDir(), "jwks.json"); got != want {
		t.Fatalf("make token's key set is %s, want beside its key (%s)", got, want)
	}
	// A stack of the test's own: its key and key set, in the same place
	// under its KV_STACK_DIR as the repository's .stack.
	mine, err := native.Load(root, []string{"KV_STACK_DIR=" + filepath.Join(t.TempDir(), ".stack"), "KV_AUTH_JWKS_FILE=", "KV_AUTH_ISSUER="})
	if err != nil {
		t.Fatal(err)
	}
	token, err := native.Token(mine, native.DefaultToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"api1", "api2"} {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			if v := env(s, "KV_AUTH"); v != "on" {
				t.Errorf("KV_AUTH=%q in compose, want on", v)
			}
			vars := map[string]string{}
			for k, v := range s.Environment {
				if v != nil {
					vars[k] = *v
				}
			}
			for _, file := range []string{"KV_AUTH_JWKS_FILE", "KV_AUTH_POLICY_FILE"} {
				src := mountSource(s, vars[file])
				if src == "" {
					t.Fatalf("%s=%s: mounted from nowhere", file, vars[file])
				}
				if file == "KV_AUTH_JWKS_FILE" {
					if src != shipped.Get("KV_AUTH_JWKS_FILE") {
						t.Errorf("compose mounts the key set %s, make token signs for %s", src, shipped.Get("KV_AUTH_JWKS_FILE"))
					}
					rel, _ := filepath.Rel(shipped.Dir, src)
					src = filepath.Join(mine.Dir, rel)
				}
				vars[file] = src
			}
			cfg, err := config.LoadFrom[config.API](vars)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			authn, err := auth.New(ctx, cfg.Auth, zerolog.Nop(), metrics.NewAuth(metrics.New()))
			if err != nil {
				t.Fatal(err)
			}
			h := httpapi.NewHandler(emptyStore{}, noTokens{}, authn, nil, cfg.HTTP, zerolog.Nop(), nil)
			for _, c := range []struct {
				bearer    string
				want      int
				challenge bool
			}{{"", http.StatusUnauthorized, true}, {token, http.StatusOK, false}} {
				req := httptest.NewRequest("GET", "/api/all", nil)
				if c.bearer != "" {
					req.Header.Set("Authorization", "Bearer "+c.bearer)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				ch := rec.Header().Get("WWW-Authenticate")
				if rec.Code != c.want || c.challenge != strings.HasPrefix(ch, "Bearer") {
					t.Errorf("GET /api/all, token %v: %d, WWW-Authenticate %q; want %d, a Bearer challenge %v (%s)",
						c.bearer != "", rec.Code, ch, c.want, c.challenge, strings.TrimSpace(rec.Body.String()))
				}
			}
		})
	}
}

// mountSource is the host path compose binds at target in s ("" if none).
func mountSource(s types.ServiceConfig, target string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			return v.Source
		}
	}
	return ""
}

// emptyStore is a store with no keys.
type emptyStore struct{}

func (emptyStore) Read(context.Context, kv.ReadRequest) (kv.Read, error) {
	return kv.Read{}, kv.ErrNotFound
}

func (emptyStore) Write(context.Context, kv.WriteRequest) (kv.Write, error) {
	return kv.Write{}, errors.New("emptyStore: no writes")
}

func (emptyStore) List(context.Context, kv.ListRequest) ([]kv.Entry, error) { return nil, nil }

// noTokens issues no version tokens.
type noTokens struct{}

func (noTokens) Encode(string, kv.Version) string { return "" }

func (noTokens) Decode(string, string) (kv.Version, error) {
	return kv.Version{}, errors.New("noTokens")
}
