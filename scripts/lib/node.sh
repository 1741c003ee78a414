# shellcheck shell=bash
# The real node of the local cluster (sourced by scripts/control-plane; `up --node`):
# containerd + runc, the CNI bridge, kubelet, kube-proxy, kube-router (NetworkPolicy firewall)
# and CoreDNS, all on this machine, with every file under the plane's state dir.
#
# Networking: one Linux bridge, palisade0, owns the node address 10.244.0.1/24, which is also
# the pods' gateway and the address kube-apiserver listens on (a kubelet refuses a loopback node
# IP, and pods must reach the API server through the `kubernetes` Service). Nothing leaves the
# machine: an nftables table of our own drops every packet forwarded between the bridge and any
# other interface, and pods may reach only the node address on the host; no masquerade, no
# upstream DNS, and containerd's HTTP(S) proxy is a closed loopback port, so an image pull can
# never reach a registry.
#
# The node is a singleton of the machine (one bridge name, one node address): /run/palisade-node
# records which state dir owns it, so a crashed run's leftovers are cleaned by the next `up`.

NODE_NAME=palisade-node
NODE_BRIDGE=palisade0
NODE_IP=10.244.0.1
NODE_POD_SUBNET=10.244.0.0/24
NODE_CLUSTER_CIDR=10.244.0.0/16
NODE_DNS_IP=10.96.0.10
NODE_KUBELET_PORT=10250
NODE_NFT_TABLE=palisade_node_guard
NODE_OWNER_DIR=/run/palisade-node
# Image references in containerd; pods use imagePullPolicy: Never.
NODE_PAUSE_IMAGE=localhost/palisade-pause:1
NODE_PROBE_IMAGE=localhost/palisade-probe:1
NODE_COREDNS_IMAGE=localhost/coredns:v1.15.0
NODE_DEBIAN_PACKAGES=(containerd runc containernetworking-plugins iptables ipset conntrack nftables kmod iproute2)
NODE_CNI_BIN=/usr/lib/cni
# Paths the components create outside the state dir whatever they are told (containerd's shim
# sockets, libcni's result cache, the kubelet's device-plugin dir and container-log links): down
# removes those that did not exist before up.
NODE_HOST_PATHS=(/run/containerd /var/lib/cni /var/lib/kubelet /var/log/containers)

node_dirs() { # sets the node's paths for the current $STATE
  NODE_STATE="$STATE/node"
  NODE_CTRD="$NODE_STATE/containerd"
  NODE_CTRD_SOCK="$NODE_CTRD/containerd.sock"
  NODE_KUBELET_DIR="$NODE_STATE/kubelet"
  NODE_POD_LOGS="$NODE_STATE/pod-logs"
  NODE_CNI_CONF="$NODE_STATE/cni/net.d"
  NODE_CNI_IPAM="$NODE_STATE/cni/ipam"
  NODE_RUNC_ROOT="$NODE_STATE/runc"
}

node_ctr() { ctr --address "$NODE_CTRD_SOCK" --namespace k8s.io "$@"; }

# ---------------------------------------------------------------- prerequisites and images

node_prereqs() {
  local missing=() p
  for p in "${NODE_DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages for the node: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  [ "$(id -u)" = 0 ] || die "the node needs root (network namespaces, mounts, iptables)"
  modprobe br_netfilter 2>/dev/null || true
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
    die "br_netfilter is not available: bridged pod traffic would bypass NetworkPolicy enforcement"
}

# node_images: builds pause/probe (Go, no dependencies) and packs them and CoreDNS as OCI
# archives, cached by the hash of their inputs.
node_images() {
  local src="$CP_ROOT/tools/node-images" stamp dir coredns
  coredns="$("$CP_ROOT/scripts/go-tool" path coredns coredns)" || die "CoreDNS did not build"
  stamp="$({ find "$src" -type f -print0 | sort -z | xargs -0 cat; cat "$CP_ROOT/scripts/lib/oci_image.py"; sha256sum "$coredns"; go version; } | sha256sum | cut -c1-16)"
  dir="$(dirname "$CP_CACHE")/node-images/$stamp"
  NODE_IMAGE_DIR="$dir"
  [ -f "$dir/.done" ] && return 0
  log "building the node's images (pause, probe, CoreDNS) into $dir"
  rm -rf "$dir"; mkdir -p "$dir/bin"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags '-s -w' -o "$dir/bin/" ./pause ./probe) ||
    die "building the probe/pause binaries failed"
  local py="$CP_ROOT/scripts/lib/oci_image.py"
  python3 "$py" --name "$NODE_PAUSE_IMAGE" --out "$dir/pause.tar" --file "$dir/bin/pause:/pause" \
    --user 65535:65535 --entrypoint /pause >/dev/null
  # The probe image runs as root unless the pod says otherwise: the runAsNonRoot proof needs one.
  python3 "$py" --name "$NODE_PROBE_IMAGE" --out "$dir/probe.tar" --file "$dir/bin/probe:/probe" \
    --dir /tmp:1777 --entrypoint /probe >/dev/null
  python3 "$py" --name "$NODE_COREDNS_IMAGE" --out "$dir/coredns.tar" --file "$coredns:/coredns" \
    --user 65532:65532 --entrypoint /coredns >/dev/null
  touch "$dir/.done"
}

node_import_image() { # archive base-name
  node_ctr images import --base-name "$2" "$1" >/dev/null || die "ctr images import $1 failed"
}

# Palisade's own image (scripts/build-image), when it has been built.
node_palisade_layout() { echo "${CARGO_TARGET_DIR:-$CP_ROOT/target}/container-image/oci"; }

node_import_images() {
  node_import_image "$NODE_IMAGE_DIR/pause.tar" "${NODE_PAUSE_IMAGE%:*}"
  node_import_image "$NODE_IMAGE_DIR/probe.tar" "${NODE_PROBE_IMAGE%:*}"
  node_import_image "$NODE_IMAGE_DIR/coredns.tar" "${NODE_COREDNS_IMAGE%:*}"
  local layout
  layout="$(node_palisade_layout)"
  if [ -f "$layout/index.json" ]; then
    tar -C "$layout" -cf "$NODE_STATE/palisade-image.tar" . &&
      node_import_image "$NODE_STATE/palisade-image.tar" localhost/palisade
    rm -f "$NODE_STATE/palisade-image.tar"
  else
    log "no Palisade image at $layout (scripts/build-image); the node runs without it"
  fi
  log "images in containerd: $(node_ctr images ls -q | grep -v '@sha256' | tr '\n' ' ')"
}

# ---------------------------------------------------------------- host network

# Leftovers of a node whose owner is gone (a killed run) are cleaned before a new one starts.
node_claim() {
  mkdir -p "$NODE_OWNER_DIR"
  if [ -f "$NODE_OWNER_DIR/owner" ]; then
    local owner
    owner="$(cat "$NODE_OWNER_DIR/owner")"
    if [ "$owner" != "$STATE" ]; then
      if STATE="$owner" node_owner_alive; then
        die "a node is already running from state dir $owner (stop it with PALISADE_CP_STATE=$owner scripts/control-plane down)"
      fi
      log "cleaning the leftovers of a node that is no longer running (state $owner)"
      (STATE="$owner"; node_dirs; node_teardown) || die "could not clean the old node's leftovers"
    fi
  fi
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && [ ! -f "$NODE_OWNER_DIR/owner" ]; then
    die "bridge $NODE_BRIDGE exists but no node owns it; remove it (ip link del $NODE_BRIDGE) if it is a leftover"
  fi
  # (the cleanup above removes the directory with the old owner's record)
  mkdir -p "$NODE_OWNER_DIR"
  printf '%s\n' "$STATE" >"$NODE_OWNER_DIR/owner"
}

node_owner_alive() { # STATE set to the owner: is any of its processes running?
  local c
  for c in etcd kube-apiserver kubelet containerd; do
    PIDS="$STATE/pids" alive "$c" && return 0
  done
  return 1
}

node_network_up() {
  mkdir -p "$NODE_STATE"
  # what the host had before, so down restores it exactly
  {
    echo "ip_forward=$(sysctl -n net.ipv4.ip_forward)"
    echo "ipsets=$(ipset list -n 2>/dev/null | tr '\n' ' ' || true)"
    local p created=()
    for p in "${NODE_HOST_PATHS[@]}"; do [ -e "$p" ] || created+=("$p"); done
    echo "created=${created[*]}"
  } >"$NODE_STATE/host-before"
  ip link add "$NODE_BRIDGE" type bridge || die "cannot create bridge $NODE_BRIDGE"
  ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # Host processes (the API server calling an admission webhook's Service) reach ClusterIPs from
  # the node address: kube-proxy DNATs to the pod, and the pod's reply comes back to an address
  # the guard lets pods reach. (The route goes with the bridge.)
  ip route add 10.96.0.0/16 dev "$NODE_BRIDGE" src "$NODE_IP" || die "cannot route the service range"
  # The guard: its own table, so no other rule set (kube-proxy, kube-router, CNI) can accept
  # around it; a drop in any base chain is final.
  nft -f - <<EOF || die "cannot install the nftables guard"
table inet $NODE_NFT_TABLE {
  chain forward {
    type filter hook forward priority -200; policy accept;
    iifname "$NODE_BRIDGE" oifname != "$NODE_BRIDGE" counter drop comment "pods never reach beyond the node"
    oifname "$NODE_BRIDGE" iifname != "$NODE_BRIDGE" counter drop comment "nothing outside reaches the pods"
  }
  chain input {
    type filter hook input priority -200; policy accept;
    iifname "$NODE_BRIDGE" ip daddr != { $NODE_IP, 255.255.255.255, 10.244.0.255 } counter drop comment "pods reach only the node address on the host"
    iifname "$NODE_BRIDGE" meta nfproto ipv6 counter drop comment "no IPv6 from pods"
  }
}
EOF
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
}

# Every chain a node component creates starts with one of these (kubelet/kube-proxy: KUBE-,
# kube-router: KUBE-ROUTER-/KUBE-NWPLCY-/KUBE-POD-FW-/KUBE-SRC-/KUBE-DST-, CNI portmap: CNI-).
node_iptables_clean() { # iptables|ip6tables: drop those chains and the jumps to them
  local dump
  dump="$("$1-save" 2>/dev/null)" || return 0
  local rules
  rules="$(python3 "$CP_ROOT/scripts/lib/iptables_without_node.py" <<<"$dump")" || return 1
  "$1-restore" <<<"$rules" || return 1
}

node_network_down() {
  local rc=0 before_sets="" s
  [ -f "$NODE_STATE/host-before" ] && before_sets="$(sed -n 's/^ipsets=//p' "$NODE_STATE/host-before")"
  node_iptables_clean iptables || rc=1
  node_iptables_clean ip6tables || rc=1
  for s in $(ipset list -n 2>/dev/null); do
    [[ " $before_sets " == *" $s "* ]] && continue
    ipset destroy "$s" 2>/dev/null || { log "cannot destroy ipset $s"; rc=1; }
  done
  nft delete table inet "$NODE_NFT_TABLE" 2>/dev/null || true
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  local p
  for p in $(sed -n 's/^created=//p' "$NODE_STATE/host-before" 2>/dev/null); do
    rm -rf "$p" || rc=1
  done
  NODE_HOST_CREATED="$(sed -n 's/^created=//p' "$NODE_STATE/host-before" 2>/dev/null)"
  if [ -f "$NODE_STATE/host-before" ]; then
    NODE_HOST_IP_FORWARD="$(sed -n 's/^ip_forward=//p' "$NODE_STATE/host-before")"
    sysctl -qw "net.ipv4.ip_forward=$(sed -n 's/^ip_forward=//p' "$NODE_STATE/host-before")" || rc=1
  fi
  return $rc
}

# ---------------------------------------------------------------- certificates and configs

node_certs() {
  (
    cd "$CERTS"
    umask 077
    sign_cert node "/O=system:nodes/CN=system:node:$NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    sign_cert kubelet-serving "/CN=$NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
    sign_cert apiserver-kubelet-client "/CN=palisade:apiserver-kubelet-client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    sign_cert kube-proxy "/CN=system:kube-proxy" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    sign_cert kube-scheduler "/CN=system:kube-scheduler" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    sign_cert kube-router "/CN=palisade:kube-router" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  ) >/dev/null 2>&1 || die "node certificate generation failed (openssl)"
  local who
  for who in node kube-proxy kube-scheduler kube-router; do
    write_kubeconfig "$NODE_STATE/$who.kubeconfig" "$who"
  done
}

node_write_configs() {
  mkdir -p "$NODE_CTRD" "$NODE_KUBELET_DIR" "$NODE_POD_LOGS" "$NODE_CNI_CONF" "$NODE_CNI_IPAM" "$NODE_RUNC_ROOT"
  cat >"$NODE_CTRD/config.toml" <<EOF
version = 2
root = "$NODE_CTRD/root"
state = "$NODE_CTRD/state"
# opt writes to /opt; the other snapshotters are unused
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$NODE_CTRD_SOCK"
[ttrpc]
  address = "$NODE_CTRD/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # runc cannot set a negative oom_score_adj without CAP_SYS_RESOURCE
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$NODE_RUNC_ROOT"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$NODE_CNI_BIN"
    conf_dir = "$NODE_CNI_CONF"
    max_conf_num = 1
EOF
  cat >"$NODE_CNI_CONF/10-palisade.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "palisade",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_CNI_IPAM",
        "ranges": [[{"subnet": "$NODE_POD_SUBNET", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # Pods with dnsPolicy Default get this: no upstream resolver, nothing leaves the machine.
  printf 'options ndots:1\n' >"$NODE_STATE/resolv.conf"
  cat >"$NODE_STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $NODE_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $CERTS/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $CERTS/kubelet-serving.crt
tlsPrivateKeyFile: $CERTS/kubelet-serving.key
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$NODE_CTRD_SOCK
clusterDNS: [$NODE_DNS_IP]
clusterDomain: cluster.local
resolvConf: $NODE_STATE/resolv.conf
podLogsDir: $NODE_POD_LOGS
failSwapOn: false
serializeImagePulls: false
# Imported images are the only images: never garbage-collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
maxPods: 110
syncFrequency: 10s
# Static pods (their mirror pods are what `palisade control-plane` reads); empty by default.
staticPodPath: $NODE_STATE/manifests
fileCheckFrequency: 2s
EOF
  mkdir -p "$NODE_STATE/manifests"
  cat >"$NODE_STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODE_STATE/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $NODE_CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: [$NODE_IP/32]
# do not retune the host's conntrack table
conntrack: {maxPerCore: 0, min: 0}
iptables: {localhostNodePorts: false, masqueradeAll: false}
EOF
}

# RBAC of the node's own components (kube-router and the API server's kubelet client have no
# bootstrap role; the kubelet, kube-proxy and kube-scheduler use Kubernetes' own).
node_rbac() {
  "$CP_K8S_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" apply --server-side -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "palisade:apiserver-kubelet-client"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "palisade:apiserver-kubelet-client"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "palisade:kube-router"}
rules:
- apiGroups: [""]
  resources: [pods, namespaces, nodes, services, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "palisade:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "palisade:kube-router"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "palisade:kube-router"}]
EOF
}

node_coredns() {
  "$CP_K8S_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" apply --server-side -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
automountServiceAccountToken: true
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "palisade:coredns"}
rules:
- apiGroups: [""]
  resources: [services, namespaces, pods]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "palisade:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "palisade:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # Cluster names only: no forward plugin, so no query ever leaves the machine.
  Corefile: |
    .:53 {
        errors
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            ttl 5
        }
        cache 5
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
        # port 53 without any capability: a safe sysctl, allowed by the restricted level
        sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: "53"}]
      containers:
      - name: coredns
        image: $NODE_COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 2
        resources:
          requests: {cpu: 20m, memory: 32Mi}
          limits: {memory: 128Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $NODE_DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 53, protocol: TCP}
EOF
}

# ---------------------------------------------------------------- start / stop

node_ready() {
  [ "$("$CP_K8S_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
coredns_ready() {
  [ "$("$CP_K8S_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" -n kube-system get deploy coredns \
    -o 'jsonpath={.status.readyReplicas}' 2>/dev/null)" = 1 ]
}
containerd_ready() { node_ctr version; }
kube_proxy_healthy() { curl -fsS --max-time 3 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"; }
scheduler_healthy() { [ "$(curl -ksS --max-time 3 "https://127.0.0.1:$SCHEDULER_PORT/healthz")" = ok ]; }
# kube-router's firewall has synced once its filter chains exist.
kube_router_synced() { iptables -S KUBE-ROUTER-FORWARD >/dev/null 2>&1; }

node_start_scheduler() {
  start_proc kube-scheduler \
    --kubeconfig="$NODE_STATE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$NODE_STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$NODE_STATE/kube-scheduler.kubeconfig" \
    --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 \
    --secure-port="$SCHEDULER_PORT" \
    --leader-elect=false \
    --profiling=false
  wait_for "kube-scheduler /healthz" kube-scheduler scheduler_healthy
}

node_start() { # after the control plane is up
  local kube_router
  kube_router="$("$CP_ROOT/scripts/go-tool" path kube-router kube-router)" || die "kube-router did not build"
  node_rbac
  # Image pulls go to a closed loopback port, never to a registry (nothing can be pulled here).
  HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
    start_proc containerd --config "$NODE_CTRD/config.toml"
  wait_for "containerd" containerd containerd_ready
  node_import_images
  start_proc kubelet \
    --config="$NODE_STATE/kubelet-config.yaml" \
    --kubeconfig="$NODE_STATE/node.kubeconfig" \
    --root-dir="$NODE_KUBELET_DIR" \
    --cert-dir="$NODE_KUBELET_DIR/pki" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" \
    --v=1
  wait_for "Node $NODE_NAME Ready" kubelet node_ready
  start_proc kube-proxy --config="$NODE_STATE/kube-proxy-config.yaml" --v=1
  wait_for "kube-proxy /healthz" kube-proxy kube_proxy_healthy
  NODE_KUBE_ROUTER="$kube_router" start_proc kube-router \
    --kubeconfig="$NODE_STATE/kube-router.kubeconfig" \
    --hostname-override="$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false \
    --enable-cni=false --enable-ipv6=false \
    --health-port=0 --metrics-port=0 \
    --iptables-sync-period=1m \
    --v=1
  wait_for "kube-router firewall" kube-router kube_router_synced
  node_coredns
  wait_for "CoreDNS Ready" kubelet coredns_ready
}

# Everything below runs without the processes: it also cleans a killed run's leftovers.
node_kill_containers() {
  [ -S "$NODE_CTRD_SOCK" ] || return 0
  local t c
  for t in $(node_ctr tasks ls -q 2>/dev/null); do node_ctr tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  for t in $(node_ctr tasks ls -q 2>/dev/null); do node_ctr tasks delete -f "$t" >/dev/null 2>&1 || true; done
  for c in $(node_ctr containers ls -q 2>/dev/null); do node_ctr containers rm "$c" >/dev/null 2>&1 || true; done
}

# Processes of the node's pods that outlived their shims (a killed run): anything whose cgroup is
# under kubepods.
node_kill_pod_processes() {
  local pids
  pids="$(grep -l -E ':/kubepods(/|$)' /proc/[0-9]*/cgroup 2>/dev/null | sed 's#/proc/\([0-9]*\)/cgroup#\1#' || true)"
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  # containerd shims started for our state dir
  pids="$(pgrep -f "containerd-shim-runc-v2 .*-address $NODE_CTRD_SOCK" || true)"
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  return 0
}

node_unmount_all() { # every mount under the node's state dir, deepest first
  local m
  for m in $(awk -v p="$NODE_STATE/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
  done
}

node_remove_cgroups() { # the kubepods hierarchy the kubelet created (cgroupfs driver)
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

node_remove_container_logs() { # /var/log/containers is the kubelet's fixed directory of links
  local l
  for l in /var/log/containers/*; do
    [ -L "$l" ] || continue
    case "$(readlink "$l")" in "$NODE_POD_LOGS"/*) rm -f "$l" ;; esac
  done
}

node_teardown() { # cleans up after the node's processes are stopped; non-zero if anything is left
  local rc=0
  [ -d "$NODE_STATE" ] || return 0
  if [ -f "$NODE_OWNER_DIR/owner" ] && [ "$(cat "$NODE_OWNER_DIR/owner")" != "$STATE" ]; then
    log "the node belongs to $(cat "$NODE_OWNER_DIR/owner"); cleaning only $NODE_STATE"
    node_unmount_all
    rm -rf "$NODE_STATE"
    return 0
  fi
  node_kill_containers
  node_kill_pod_processes
  node_unmount_all
  node_network_down || rc=1
  node_remove_cgroups
  node_remove_container_logs
  if [ -f "$NODE_OWNER_DIR/owner" ] && [ "$(cat "$NODE_OWNER_DIR/owner")" = "$STATE" ]; then
    rm -f "$NODE_OWNER_DIR/owner"
    rmdir "$NODE_OWNER_DIR" 2>/dev/null || true
  fi
  rm -rf "$NODE_STATE" 2>/dev/null || { log "cannot remove $NODE_STATE"; rc=1; }
  return $rc
}

# node_leftovers: prints what a node left on this machine; non-zero if anything.
node_leftovers() {
  local found=0 out
  say() { log "left behind: $*"; found=1; }
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && say "bridge $NODE_BRIDGE"
  out="$(ip -o link show type veth 2>/dev/null | grep -o 'veth[0-9a-f]*' || true)"
  [ -n "$out" ] && say "veth links: $out"
  nft list table inet "$NODE_NFT_TABLE" >/dev/null 2>&1 && say "nftables table $NODE_NFT_TABLE"
  out="$( { iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; } | grep -E '^:(KUBE|CNI)-' | cut -d' ' -f1 | sort -u | tr '\n' ' ' || true)"
  [ -n "$out" ] && say "iptables chains: $out"
  if [ -n "${NODE_STATE:-}" ] && awk -v p="$NODE_STATE/" 'index($5, p) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
    say "mounts under $NODE_STATE"
  fi
  out="$(ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null | tr '\n' ' ' || true)"
  [ -n "$out" ] && say "cgroups: $out"
  out="$(pgrep -a -f "containerd-shim-runc-v2 .*$NODE_CTRD_SOCK|^$CP_K8S_DIR/(kubelet|kube-proxy|kube-scheduler)|^$(dirname "$CP_CACHE")/go-tools/kube-router-" || true)"
  [ -n "$out" ] && say "processes: $out"
  [ -f "$NODE_OWNER_DIR/owner" ] && say "owner record $NODE_OWNER_DIR/owner ($(cat "$NODE_OWNER_DIR/owner"))"
  local p
  for p in ${NODE_HOST_CREATED:-}; do [ -e "$p" ] && say "$p (created by the node)"; done
  [ "$(sysctl -n net.ipv4.ip_forward)" = "${NODE_HOST_IP_FORWARD:-0}" ] ||
    say "net.ipv4.ip_forward is $(sysctl -n net.ipv4.ip_forward), was ${NODE_HOST_IP_FORWARD:-0}"
  return $found
}
