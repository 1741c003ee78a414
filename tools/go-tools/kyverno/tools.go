//go:build tools

// Pins Kyverno v1.19.1 for scripts/go-tool. One pinned build gives:
//   - kubectl-kyverno: the CLI, a peer of `palisade audit` in scripts/bench-offline
//     (`kyverno apply POLICY --resource FILES` with a Pod Security Standards policy);
//   - kyverno and background-controller: the in-cluster admission and background
//     controllers, for the operator benchmark.
package tools

import (
	_ "github.com/kyverno/kyverno/cmd/background-controller"
	_ "github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno"
	_ "github.com/kyverno/kyverno/cmd/kyverno"
)
