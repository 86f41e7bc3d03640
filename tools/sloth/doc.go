// Package sloth holds Sloth (github.com/slok/sloth), the SLO rule
// generator, as a tool in a module of its own, the way tools/jaeger holds
// Jaeger: its dependency tree never touches the service's go.mod.
//
// Its test generates the rules from observability/slo/ with the Sloth of
// this go.mod and fails when they differ from the committed
// observability/rules/kvstack-slo.yml; `make slo` (the same test with
// -update) writes them. Sloth is compiled once per machine, as Jaeger is,
// into ~/.cache/kvstack/sloth-KEY (KEY: go.mod, go.sum and the Go release),
// and reused by every later run and checkout.
package sloth
