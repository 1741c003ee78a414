//go:build tools

// Pins cyclonus (the NetworkPolicy oracle of tests/netpol_differential.rs) for scripts/go-tool.
package tools

import _ "github.com/mattfenwick/cyclonus/cmd/cyclonus"
