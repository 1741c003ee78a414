//go:build tools

// Package tools pins the Kubernetes commands built by scripts/control-plane.
// It is never compiled; it only keeps these packages in the module graph so
// that `go build k8s.io/kubernetes/cmd/<name>` resolves against go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
