//go:build tools

// Pins Prometheus and promtool for scripts/go-tool: the alert unit tests (promtool test rules)
// and the end-to-end test that scrapes the operator with a real Prometheus.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
