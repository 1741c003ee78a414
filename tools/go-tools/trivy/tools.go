//go:build tools

// Pins Trivy v0.74.0 for scripts/go-tool: `trivy config` with its embedded Kubernetes checks is
// a peer of `palisade audit` in scripts/bench-offline.
package tools

import _ "github.com/aquasecurity/trivy/cmd/trivy"
