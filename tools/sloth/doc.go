// Package sloth holds Sloth (github.com/slok/sloth), the SLO rule
// generator, as a tool in a module of its own, the way tools/jaeger holds
// Jaeger: its dependency tree never touches the service's go.mod.
//
// Its test generates the rules from observability/slo/ with the Sloth of
// this go.mod and fails when they differ from the committed
// observability/rules/kvstack-slo.yml; `make slo` (the same test with
// -update) writes them.
package sloth
