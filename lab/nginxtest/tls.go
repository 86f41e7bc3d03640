package nginxtest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TLSCase is one check of the edge's TLS, made on a private nginx (this
// package's tests) and on the native stack's (lab/e2e), so that both prove
// the same things.
type TLSCase struct {
	Name  string
	Check func(tb testing.TB, e TLSEdge)
}

// TLSEdge is an edge to check: its base URL (https://host:port), a client
// configuration that trusts its CA, and a valid Authorization header.
type TLSEdge struct {
	URL           string
	Trust         *tls.Config
	Authorization string
}

func (e TLSEdge) addr(tb testing.TB) string {
	tb.Helper()
	u, err := url.Parse(e.URL)
	if err != nil || u.Scheme != "https" {
		tb.Fatalf("edge URL %q: want https://host:port (%v)", e.URL, err)
	}
	return u.Host
}

// handshake dials the edge with cfg (the edge's trust, then cfg's changes).
func (e TLSEdge) handshake(tb testing.TB, change func(*tls.Config)) (tls.ConnectionState, error) {
	tb.Helper()
	cfg := e.Trust.Clone()
	change(cfg)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", e.addr(tb), cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

// get sends GET path with the edge's token over a client of transport.
func (e TLSEdge) get(tb testing.TB, transport *http.Transport, path string) *http.Response {
	tb.Helper()
	defer transport.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, e.URL+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", e.Authorization)
	resp, err := (&http.Client{Transport: transport, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (e TLSEdge) transport(http2 bool) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig, t.ForceAttemptHTTP2 = e.Trust.Clone(), http2
	return t
}

// hstsMinAge is the least max-age the edge's HSTS may have: a year, as
// the HSTS preload list asks.
const hstsMinAge = 365 * 24 * 3600

func hstsAge(h http.Header) int {
	for _, d := range strings.Split(h.Get("Strict-Transport-Security"), ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(d), "max-age="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// TLSCases are the edge's TLS promises (docs/SECURITY.md, "TLS at the
// edge").
func TLSCases() []TLSCase {
	var cases []TLSCase
	for _, v := range []struct {
		name string
		ver  uint16
	}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}} {
		cases = append(cases, TLSCase{v.name + " accepted", func(tb testing.TB, e TLSEdge) {
			st, err := e.handshake(tb, func(c *tls.Config) { c.MinVersion, c.MaxVersion = v.ver, v.ver })
			if err != nil {
				tb.Fatalf("%s handshake: %v", v.name, err)
			}
			if st.Version != v.ver {
				tb.Fatalf("%s handshake negotiated %s", v.name, tls.VersionName(st.Version))
			}
		}})
	}
	for _, v := range []struct {
		name string
		ver  uint16
	}{{"TLS 1.0", tls.VersionTLS10}, {"TLS 1.1", tls.VersionTLS11}} {
		cases = append(cases, TLSCase{v.name + " refused", func(tb testing.TB, e TLSEdge) {
			st, err := e.handshake(tb, func(c *tls.Config) { c.MinVersion, c.MaxVersion = v.ver, v.ver })
			if err == nil {
				tb.Fatalf("a %s handshake succeeded (%s)", v.name, tls.VersionName(st.Version))
			}
			// The server's alert, not a refusal of Go's own.
			if !strings.Contains(err.Error(), "remote error") {
				tb.Fatalf("a %s handshake failed with %v, want the edge's alert", v.name, err)
			}
		}})
	}
	cases = append(cases,
		TLSCase{"CBC cipher suites refused", func(tb testing.TB, e TLSEdge) {
			_, err := e.handshake(tb, func(c *tls.Config) {
				c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
					tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}
			})
			if err == nil || !strings.Contains(err.Error(), "remote error") {
				tb.Fatalf("a TLS 1.2 handshake offering only CBC suites: %v, want the edge's alert", err)
			}
		}},
		TLSCase{"certificate verified by the CA alone", func(tb testing.TB, e TLSEdge) {
			for _, name := range []string{"localhost", "127.0.0.1"} {
				if _, err := e.handshake(tb, func(c *tls.Config) { c.ServerName = name }); err != nil {
					tb.Fatalf("the certificate for %s, with the edge's CA: %v", name, err)
				}
			}
			_, err := e.handshake(tb, func(c *tls.Config) { c.RootCAs = nil }) // the system's roots
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) {
				tb.Fatalf("without the edge's CA: %v, want an unknown authority", err)
			}
		}},
		TLSCase{"HTTP/2 negotiated", func(tb testing.TB, e TLSEdge) {
			st, err := e.handshake(tb, func(c *tls.Config) { c.NextProtos = []string{"h2", "http/1.1"} })
			if err != nil || st.NegotiatedProtocol != "h2" {
				tb.Fatalf("ALPN h2, http/1.1: negotiated %q, %v; want h2", st.NegotiatedProtocol, err)
			}
			if resp := e.get(tb, e.transport(true), "/healthz"); resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
				tb.Fatalf("GET /healthz over an HTTP/2 client: %s %d, want HTTP/2.0 200", resp.Proto, resp.StatusCode)
			}
			if resp := e.get(tb, e.transport(false), "/healthz"); resp.ProtoMajor != 1 || resp.StatusCode != http.StatusOK {
				tb.Fatalf("GET /healthz over an HTTP/1.1 client: %s %d, want HTTP/1.1 200", resp.Proto, resp.StatusCode)
			}
		}},
		TLSCase{"HSTS on every answer", func(tb testing.TB, e TLSEdge) {
			for _, path := range []string{"/healthz", "/api?key=hsts", "/metrics"} {
				for _, h2 := range []bool{false, true} {
					resp := e.get(tb, e.transport(h2), path)
					if age := hstsAge(resp.Header); age < hstsMinAge {
						tb.Errorf("GET %s (%s, %d): Strict-Transport-Security %q, want max-age of a year or more",
							path, resp.Proto, resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
					}
				}
			}
		}},
		TLSCase{"plain HTTP refused", func(tb testing.TB, e TLSEdge) {
			status, body := plainRequest(tb, e.addr(tb), "GET /api?key=plain HTTP/1.1\r\nHost: localhost\r\nAuthorization: "+
				e.Authorization+"\r\nConnection: close\r\n\r\n")
			var got struct{ Error string }
			if status != http.StatusBadRequest || json.Unmarshal([]byte(body), &got) != nil || got.Error != "https_required" {
				tb.Fatalf("plain HTTP on the edge's port: %d %q, want 400 https_required", status, body)
			}
		}},
	)
	return cases
}

// plainRequest writes request in plain text to addr and returns the
// answer's status and body.
func plainRequest(tb testing.TB, addr, request string) (int, string) {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		tb.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tb.Fatalf("plain HTTP to %s: no answer: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
