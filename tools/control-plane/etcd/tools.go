//go:build tools

// Package tools pins the etcd server built by scripts/control-plane.
// Kept in its own module so its version selection cannot shift the
// dependencies of the Kubernetes build in ../k8s.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
