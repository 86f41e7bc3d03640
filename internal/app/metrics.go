package app

import "github.com/prometheus/client_golang/prometheus"

// prometheusGatherer is the registry /metrics serves: the default one, which
// already holds the Go runtime and process collectors.
func prometheusGatherer() prometheus.Gatherer { return prometheus.DefaultGatherer }
