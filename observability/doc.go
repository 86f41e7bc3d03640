// Package observability holds no code. Its tests run the configuration
// files of this directory through the real programs that read them, as the
// stacks run them: the mtail program over the access log of an nginx
// rendered from the project's template, and prometheus-nginx-exporter on
// that nginx's stub_status. The rules have promtool's unit tests
// (observability/tests, `make check-observability`) and the SLOs their
// generator's (tools/sloth).
package observability
