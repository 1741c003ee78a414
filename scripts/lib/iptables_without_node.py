#!/usr/bin/env python3
"""Filters an iptables-save dump (stdin -> stdout): drops the chains the node's components create
(KUBE-*: kubelet, kube-proxy, kube-router; CNI-*: the portmap plugin) and every rule in or
jumping to them, keeping everything else byte for byte, for iptables-restore."""
import re
import sys

OURS = re.compile(r"(KUBE|CNI)-[A-Za-z0-9_-]+")
JUMP = re.compile(r"\s-[jg]\s+(KUBE|CNI)-[A-Za-z0-9_-]+(\s|$)")

for line in sys.stdin:
    if line.startswith(":") and OURS.fullmatch(line[1:].split()[0]):
        continue
    if line.startswith("-A ") and (OURS.fullmatch(line.split()[1]) or JUMP.search(line)):
        continue
    sys.stdout.write(line)
