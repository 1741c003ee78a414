//go:build tools

// Pins kube-score (benchmark peer of `palisade audit`) for scripts/go-tool.
package tools

import _ "github.com/zegl/kube-score/cmd/kube-score"
