//go:build tools

// Pins kube-router (the real node's NetworkPolicy enforcer, firewall only; scripts/lib/node.sh)
// for scripts/go-tool.
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
