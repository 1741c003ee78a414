// netpol-oracle reads a universe (namespaces, pods, NetworkPolicies) and the cells to decide
// as JSON on stdin and prints cyclonus's verdict for every cell. The policies are defaulted as
// the API server stores them (cyclonus expects stored objects); everything else is cyclonus's
// own matcher, built and simplified as `cyclonus analyze` does by default.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

type port struct {
	Name     string `json:"name"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

type pod struct {
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	IP          string            `json:"ip"`
	HostNetwork bool              `json:"hostNetwork"`
	Ports       []port            `json:"ports"`
}

// endpoint is a pod index or an address.
type endpoint struct {
	Pod *int   `json:"pod"`
	IP  string `json:"ip"`
}

type column struct {
	To       endpoint `json:"to"`
	Port     int      `json:"port"`
	Protocol string   `json:"protocol"`
}

type universe struct {
	Namespaces map[string]map[string]string  `json:"namespaces"`
	Pods       []pod                         `json:"pods"`
	Policies   []*networkingv1.NetworkPolicy `json:"policies"`
	Rows       []endpoint                    `json:"rows"`
	Columns    []column                      `json:"columns"`
	Simplify   bool                          `json:"simplify"`
}

// The API server's defaulting of policyTypes (k8s.io/kubernetes pkg/apis/networking/v1).
func defaultPolicyTypes(np *networkingv1.NetworkPolicy) {
	if len(np.Spec.PolicyTypes) > 0 {
		return
	}
	np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	if len(np.Spec.Egress) > 0 {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}
}

func (u *universe) peer(e endpoint) *matcher.TrafficPeer {
	if e.Pod == nil {
		return &matcher.TrafficPeer{IP: e.IP}
	}
	p := u.Pods[*e.Pod]
	if p.HostNetwork {
		// Host-network traffic is the node's: an address, not a pod policies select.
		return &matcher.TrafficPeer{IP: p.IP}
	}
	return &matcher.TrafficPeer{
		IP: p.IP,
		Internal: &matcher.InternalPeer{
			PodLabels:       p.Labels,
			NamespaceLabels: u.Namespaces[p.Namespace],
			Namespace:       p.Namespace,
		},
	}
}

func (u *universe) portName(to endpoint, number int, protocol string) string {
	if to.Pod == nil {
		return ""
	}
	for _, p := range u.Pods[*to.Pod].Ports {
		if p.Port == number && p.Protocol == protocol {
			return p.Name
		}
	}
	return ""
}

func decide(u *universe) map[string]any {
	start := time.Now()
	for _, np := range u.Policies {
		defaultPolicyTypes(np)
	}
	policy := matcher.BuildNetworkPolicies(u.Simplify, u.Policies)
	// One digit per cell, row-major: 1 = egress allows, 2 = ingress allows.
	cells := make([]byte, 0, len(u.Rows)*len(u.Columns))
	for _, r := range u.Rows {
		src := u.peer(r)
		for _, c := range u.Columns {
			result := policy.IsTrafficAllowed(&matcher.Traffic{
				Source:           src,
				Destination:      u.peer(c.To),
				ResolvedPort:     c.Port,
				ResolvedPortName: u.portName(c.To, c.Port, c.Protocol),
				Protocol:         corev1.Protocol(c.Protocol),
			})
			d := byte('0')
			if result.Egress.IsAllowed() {
				d++
			}
			if result.Ingress.IsAllowed() {
				d += 2
			}
			cells = append(cells, d)
		}
	}
	return map[string]any{"cells": string(cells), "seconds": time.Since(start).Seconds()}
}

// Input: a stream of universes; output: one JSON line per universe.
func main() {
	dec := json.NewDecoder(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for n := 0; ; n++ {
		var u universe
		if err := dec.Decode(&u); err == io.EOF {
			return
		} else if err != nil {
			fmt.Fprintf(os.Stderr, "netpol-oracle: universe %d: bad input: %v\n", n, err)
			os.Exit(2)
		}
		if err := enc.Encode(decide(&u)); err != nil {
			os.Exit(1)
		}
	}
}
