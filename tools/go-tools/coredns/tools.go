//go:build tools

// Pins CoreDNS (the real node's cluster DNS, scripts/lib/node.sh) for scripts/go-tool.
package tools

import _ "github.com/coredns/coredns"
