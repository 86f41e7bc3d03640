package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// HEAD on a read route answers what GET would, headers only: nginx routes
// HEAD as a read. A real server, since net/http is what drops the body.
func TestHeadServesReads(t *testing.T) {
	svc := &fakeService{entries: map[string]string{"a": "1", "b": "2", "c": "3"}}
	srv := httptest.NewServer(newTestHandler(svc))
	t.Cleanup(srv.Close)

	for _, target := range []string{"/api?key=a", "/api?key=absent", "/api?key=", "/api/all", "/api/all?limit=1", "/healthz", "/readyz"} {
		t.Run(target, func(t *testing.T) {
			get, getBody := send(t, http.MethodGet, srv.URL+target)
			head, headBody := send(t, http.MethodHead, srv.URL+target)
			if head.StatusCode != get.StatusCode {
				t.Errorf("HEAD status %d, GET %d", head.StatusCode, get.StatusCode)
			}
			for _, name := range []string{"Content-Type", "Content-Length"} {
				if h, g := head.Header.Get(name), get.Header.Get(name); h != g {
					t.Errorf("HEAD %s %q, GET %q", name, h, g)
				}
			}
			if len(headBody) != 0 {
				t.Errorf("HEAD has a body: %q", headBody)
			}
			if len(getBody) == 0 {
				t.Errorf("GET has no body")
			}
		})
	}
	if len(svc.writes) != 0 {
		t.Fatalf("a HEAD wrote: %+v", svc.writes)
	}
}

func send(t *testing.T, method, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}
