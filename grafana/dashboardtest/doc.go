// Package dashboardtest proves, without a Grafana, that the dashboards
// under grafana/dashboards are what Grafana reads: each is decoded strictly
// by the Grafana Foundation SDK's Go types (unknown fields, wrong types and
// panel types the SDK has no plugin for all fail, panel options and field
// config included), and every datasource it names is one
// grafana/provisioning/datasources provisions.
//
// The dashboard JSON stays the one source (Grafana's own export format,
// edited in Grafana and exported back; compose and Kubernetes mount the
// same file): the SDK checks it rather than generating it. A module of its
// own, so that the SDK never touches the service's go.mod.
package dashboardtest
