// Package observability holds no code. Its tests run the configuration
// files of the repository's observability/ through the real programs that
// read them, as the stacks run them: the mtail program over the access log
// of an nginx rendered from the project's template, prometheus-nginx-exporter
// on that nginx's stub_status, and the PostgreSQL and Redis exporters with
// the project's queries. The rules have promtool's unit tests
// (observability/tests, `make check-observability`) and the SLOs their
// generator's (tools/sloth).
package observability
