package main

import (
	"slices"
	"strings"
	"testing"
)

// The process check reports each killed process's restart, and fails a
// fault whose killed process had no pid before it (consumer3, started for
// its fault and still STARTING when the pids were read, vanished from the
// report's restarted column), or that another process lost its pid.
func TestCompareProcesses(t *testing.T) {
	tests := []struct {
		name          string
		killed        []string
		before, after map[string]int
		restarted     []string
		failure       string
	}{
		{"killed one back", []string{"consumer3"},
			map[string]int{"api1": 10, "consumer3": 30}, map[string]int{"api1": 10, "consumer3": 31},
			[]string{"consumer3 30→31"}, ""},
		{"killed one without a pid before", []string{"consumer3"},
			map[string]int{"api1": 10}, map[string]int{"api1": 10, "consumer3": 31},
			nil, "consumer3 was to be killed but had no pid before the fault"},
		{"killed one kept its pid", []string{"consumer3"},
			map[string]int{"consumer3": 30}, map[string]int{"consumer3": 30},
			nil, "consumer3 was to be killed but kept pid 30"},
		{"another one restarted", nil,
			map[string]int{"api1": 10}, map[string]int{"api1": 11},
			nil, "api1 changed pid 10→11"},
		{"another one down", nil,
			map[string]int{"api1": 10}, map[string]int{},
			nil, "api1 is down after the fault"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r result
			r.compareProcesses(tt.killed, tt.before, tt.after)
			if !slices.Equal(r.restarted, tt.restarted) {
				t.Errorf("restarted = %q, want %q", r.restarted, tt.restarted)
			}
			got := strings.Join(r.failures, "; ")
			if (tt.failure == "") != (got == "") || !strings.Contains(got, tt.failure) {
				t.Errorf("failures = %q, want %q", got, tt.failure)
			}
		})
	}
}
