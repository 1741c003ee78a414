//go:build tools

// Pins helm (renders deploy/helm/palisade in tests/deploy.rs) for scripts/go-tool.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
