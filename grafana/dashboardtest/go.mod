// The Grafana Foundation SDK, to decode the dashboards strictly (make
// check-dashboards). A module of its own so that the SDK never touches
// ../../go.mod.
module github.com/kvstack/kvstack/grafana/dashboardtest

go 1.26

require github.com/grafana/grafana-foundation-sdk/go v0.0.22

require gopkg.in/yaml.v3 v3.0.1
