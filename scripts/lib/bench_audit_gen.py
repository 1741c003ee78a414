#!/usr/bin/env python3
"""Deterministic corpus generator for scripts/bench-audit.

Writes a GitOps-style repository of Kubernetes manifests that looks like rendered Helm output:

    OUT/repo/clusters/<cluster>/cluster-scoped/{namespaces,rbac}-NNN.yaml
    OUT/repo/clusters/<cluster>/<team>/<namespace>/apps-NNN.yaml
    OUT/meta.json   counts (workloads, documents, audited objects, skipped documents, ...)

Every file holds at most --docs-per-file documents (default 100). The corpus has exactly
--workloads workload documents (Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod), plus the
objects around them: Namespaces, ServiceAccounts, NetworkPolicies, Roles/ClusterRoles and their
bindings (~5% of documents), and Services/ConfigMaps (kinds Palisade does not audit; they are
reported as "skipped"). Pod specs are 60-120 lines with several containers, init containers,
probes, env, resources and volumes; some are compliant with restricted PSS + hardening, most
are not (missing seccomp, writable root fs, root, privileged infra DaemonSets, ...).

meta.json also names "probes": a few workloads per kind of known posture ("privileged": root,
privileged containers, host namespaces and hostPath; "compliant": restricted PSS + hardening),
with their file. scripts/bench-offline checks that every tool flags the privileged ones, so no
tool is timed doing nothing. Recording them draws no random numbers: the manifests are the same
as without them.

Output depends only on (--workloads, --seed, GENERATOR_VERSION): random.Random(seed) and no
iteration over unordered containers. Standard library only.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import sys

GENERATOR_VERSION = 1

TEAMS = ["payments", "identity", "search", "data", "platform", "growth", "mobile", "ml",
         "observability", "storefront", "logistics", "risk"]
COMPONENTS = ["api", "worker", "web", "gateway", "scheduler", "consumer", "indexer", "cache",
              "sync", "exporter", "auth", "router", "ingest", "notifier", "billing", "ledger",
              "catalog", "checkout", "profile", "feed"]
REGISTRIES = ["registry.example.com", "ghcr.example.io", "quay.example.net"]
SIDECARS = [
    ("envoy", "envoyproxy/envoy:v1.31.2", 9901),
    ("fluent-bit", "fluent/fluent-bit:3.1.9", 2020),
    ("oauth2-proxy", "oauth2-proxy/oauth2-proxy:v7.7.1", 4180),
    ("cloudsql-proxy", "cloud-sql-proxy:2.13.0", 9090),
]
INITS = [
    ("wait-for-db", "busybox:1.36", ["sh", "-c", "until nc -z $(DB_HOST) 5432; do sleep 2; done"]),
    ("migrate", None, ["/app/migrate", "--up"]),
    ("copy-config", "busybox:1.36", ["sh", "-c", "cp /config-ro/* /config/"]),
]
WORKLOAD_MIX = [("Deployment", 50), ("StatefulSet", 10), ("DaemonSet", 5), ("Job", 10),
                ("CronJob", 15), ("Pod", 10)]
# Posture of a pod spec: restricted+hardened, almost (one or two slips), legacy defaults, root/privileged.
POSTURES = [("compliant", 30), ("almost", 40), ("legacy", 22), ("privileged", 8)]


def weighted(rng, pairs):
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for v, w in pairs:
        x -= w
        if x < 0:
            return v
    return pairs[-1][0]


def q(s):
    """YAML double-quoted scalar."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.kinds = {}
        self.last_posture = None  # posture of the last workload() (probes in meta.json)

    def hexd(self, n=64):
        return "%0*x" % (n, self.rng.getrandbits(n * 4))

    def count(self, kind):
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    # ---------------------------------------------------------------- metadata

    def labels(self, out, ind, rel, comp, version, chart):
        p = " " * ind
        out.append(f"{p}app.kubernetes.io/name: {rel['app']}")
        out.append(f"{p}app.kubernetes.io/instance: {rel['name']}")
        out.append(f"{p}app.kubernetes.io/component: {comp}")
        out.append(f"{p}app.kubernetes.io/version: {q(version)}")
        out.append(f"{p}app.kubernetes.io/part-of: {rel['team']}")
        out.append(f"{p}app.kubernetes.io/managed-by: Helm")
        out.append(f"{p}helm.sh/chart: {chart}")

    def metadata(self, out, name, ns, rel, comp, extra_ann=()):
        out.append("metadata:")
        out.append(f"  name: {name}")
        if ns is not None:
            out.append(f"  namespace: {ns}")
        out.append("  labels:")
        self.labels(out, 4, rel, comp, rel["version"], rel["chart"])
        out.append("  annotations:")
        out.append(f"    meta.helm.sh/release-name: {rel['name']}")
        out.append(f"    meta.helm.sh/release-namespace: {rel['ns']}")
        for a in extra_ann:
            out.append(f"    {a}")

    # ---------------------------------------------------------------- pod spec

    def sec_ctx_container(self, out, ind, posture, slips, is_sidecar):
        p = " " * ind
        r = self.rng
        if posture == "privileged" and not is_sidecar:
            out.append(f"{p}securityContext:")
            out.append(f"{p}  privileged: true")
            out.append(f"{p}  runAsUser: 0")
            if r.random() < 0.5:
                out.append(f"{p}  capabilities:")
                out.append(f"{p}    add: [NET_ADMIN, SYS_ADMIN]")
            return
        if posture == "legacy":
            if r.random() < 0.5:
                return  # no securityContext at all
            out.append(f"{p}securityContext:")
            out.append(f"{p}  runAsUser: {r.choice([0, 1000, 1001])}")
            if r.random() < 0.3:
                out.append(f"{p}  capabilities:")
                out.append(f"{p}    add: [NET_RAW]")
            return
        # compliant / almost / sidecars of privileged pods
        out.append(f"{p}securityContext:")
        out.append(f"{p}  allowPrivilegeEscalation: {'true' if 'ape' in slips else 'false'}")
        out.append(f"{p}  readOnlyRootFilesystem: {'false' if 'rofs' in slips else 'true'}")
        if r.random() < 0.5:  # often only set at pod level
            out.append(f"{p}  runAsNonRoot: true")
            out.append(f"{p}  runAsUser: {r.choice([1000, 10001, 65532])}")
        out.append(f"{p}  capabilities:")
        if "caps" in slips:
            out.append(f"{p}    drop: [NET_RAW]")
        else:
            out.append(f"{p}    drop: [ALL]")
        if "seccomp-ctr" in slips:
            out.append(f"{p}  seccompProfile:")
            out.append(f"{p}    type: Unconfined")

    def probe(self, out, ind, name, port, path):
        p = " " * ind
        r = self.rng
        out.append(f"{p}{name}:")
        out.append(f"{p}  httpGet:")
        out.append(f"{p}    path: {path}")
        out.append(f"{p}    port: {port}")
        out.append(f"{p}  periodSeconds: {r.choice([10, 15, 20])}")

    def resources(self, out, ind):
        p = " " * ind
        r = self.rng
        cpu = r.choice([50, 100, 250, 500, 1000])
        mem = r.choice([64, 128, 256, 512, 1024, 2048])
        out.append(f"{p}resources:")
        out.append(f"{p}  requests:")
        out.append(f"{p}    cpu: {cpu}m")
        out.append(f"{p}    memory: {mem}Mi")
        if r.random() < 0.6:
            out.append(f"{p}  limits:")
            out.append(f"{p}    cpu: {cpu * 2}m")
            out.append(f"{p}    memory: {mem * 2}Mi")

    def container(self, out, rel, name, image, port, posture, slips, sidecar, mounts, probes=True):
        r = self.rng
        out.append(f"    - name: {name}")
        out.append(f"      image: {q(image)}")
        out.append(f"      imagePullPolicy: {r.choice(['IfNotPresent', 'IfNotPresent', 'Always'])}")
        if not sidecar and r.random() < 0.5:
            out.append("      args:")
            out.append(f"        - --port={port}")
            out.append(f"        - --log-level={r.choice(['info', 'debug', 'warn'])}")
        if port:
            out.append("      ports:")
            out.append("        - name: http")
            out.append(f"          containerPort: {port}")
            out.append("          protocol: TCP")
            if posture in ("privileged", "legacy") and not sidecar and r.random() < 0.3:
                out.append(f"          hostPort: {port}")
        if not sidecar:
            out.append("      env:")
            out.append("        - name: POD_NAMESPACE")
            out.append("          valueFrom:")
            out.append("            fieldRef:")
            out.append("              fieldPath: metadata.namespace")
            for _ in range(r.randint(1, 2)):
                out.append(f"        - name: {r.choice(['FEATURE', 'CACHE', 'UPSTREAM', 'OTEL', 'MAX'])}_{r.randint(1, 99)}")
                out.append(f"          value: {q(str(r.randint(0, 10000)))}")
            if r.random() < 0.4:
                out.append("        - name: DB_PASSWORD")
                out.append("          valueFrom:")
                out.append("            secretKeyRef:")
                out.append(f"              name: {rel['name']}-db")
                out.append("              key: password")
            if r.random() < 0.5:
                out.append("      envFrom:")
                out.append("        - configMapRef:")
                out.append(f"            name: {rel['name']}-config")
        if probes and port:
            self.probe(out, 6, "livenessProbe", port, "/healthz")
            self.probe(out, 6, "readinessProbe", port, "/readyz")
        self.resources(out, 6)
        if mounts:
            out.append("      volumeMounts:")
            for mname, mpath, ro in mounts:
                out.append(f"        - name: {mname}")
                out.append(f"          mountPath: {mpath}")
                if ro:
                    out.append("          readOnly: true")
        self.sec_ctx_container(out, 6, posture, slips, sidecar)

    def pod_spec(self, out, ind, rel, kind, comp, posture):
        """Emits a pod spec at indentation `ind` (lines are built at 0 and shifted)."""
        r = self.rng
        body = []
        slips = []
        if posture == "almost":
            slips = r.sample(["rofs", "ape", "caps", "seccomp-pod", "automount", "default-sa",
                              "seccomp-ctr"], r.choice([1, 1, 2]))
        if kind in ("Job", "CronJob"):
            body.append(f"restartPolicy: {r.choice(['OnFailure', 'Never'])}")
        sa = rel["sa"]
        if posture == "legacy" and r.random() < 0.6 or "default-sa" in slips:
            sa = None
        if sa:
            body.append(f"serviceAccountName: {sa}")
        if posture == "compliant" or (posture == "almost" and "automount" not in slips):
            body.append("automountServiceAccountToken: false")
        if posture == "privileged":
            body.append("hostNetwork: true")
            if r.random() < 0.4:
                body.append("hostPID: true")
            body.append("dnsPolicy: ClusterFirstWithHostNet")
        if posture in ("compliant", "almost"):
            body.append("securityContext:")
            body.append("  runAsNonRoot: true")
            body.append(f"  runAsUser: {r.choice([1000, 10001, 65532])}")
            body.append(f"  fsGroup: {r.choice([1000, 2000])}")
            if "seccomp-pod" not in slips:
                body.append("  seccompProfile:")
                body.append("    type: RuntimeDefault")
        elif posture == "legacy" and r.random() < 0.4:
            body.append("securityContext:")
            body.append("  fsGroup: 2000")
        if r.random() < 0.2:
            body.append("priorityClassName: " + r.choice(["high-priority", "batch-low"]))
        body.append(f"terminationGracePeriodSeconds: {r.choice([10, 30, 60])}")
        if kind in ("Deployment", "StatefulSet") and r.random() < 0.3:
            body.append("affinity:")
            body.append("  podAntiAffinity:")
            body.append("    preferredDuringSchedulingIgnoredDuringExecution:")
            body.append("      - weight: 100")
            body.append("        podAffinityTerm:")
            body.append("          topologyKey: kubernetes.io/hostname")
            body.append("          labelSelector:")
            body.append("            matchLabels:")
            body.append(f"              app.kubernetes.io/instance: {rel['name']}")
        if r.random() < 0.15:
            body.append("tolerations:")
            body.append("  - key: dedicated")
            body.append("    operator: Equal")
            body.append(f"    value: {rel['team']}")
            body.append("    effect: NoSchedule")
        # volumes
        mounts = [("config", "/etc/app", True), ("tmp", "/tmp", False)]
        vols = [("config", ["configMap:", f"  name: {rel['name']}-config"]),
                ("tmp", ["emptyDir:", "  sizeLimit: 256Mi"])]
        if r.random() < 0.3:
            # 256 = 0400. Charts often write `0400` (a YAML 1.1 octal int, as Kubernetes reads
            # it); decimal keeps the corpus valid for YAML 1.2 readers and comparable over time.
            mounts.append(("tls", "/etc/tls", True))
            vols.append(("tls", ["secret:", f"  secretName: {rel['name']}-tls", "  defaultMode: 256"]))
        if posture == "privileged":
            mounts.append(("host-root", "/host", True))
            vols.append(("host-root", ["hostPath:", "  path: /", "  type: Directory"]))
            if r.random() < 0.5:
                mounts.append(("docker-sock", "/var/run/docker.sock", False))
                vols.append(("docker-sock", ["hostPath:", "  path: /var/run/docker.sock", "  type: Socket"]))
        elif posture == "legacy" and r.random() < 0.2:
            mounts.append(("logs", "/var/log/app", False))
            vols.append(("logs", ["hostPath:", "  path: /var/log/app", "  type: DirectoryOrCreate"]))
        if kind == "StatefulSet":
            mounts.append(("data", "/var/lib/data", False))
        # init containers
        port = r.choice([8080, 8443, 3000, 9000, 5000])
        image = f"{r.choice(REGISTRIES)}/{rel['team']}/{rel['app']}:{rel['version']}"
        n_init = r.choice([0, 0, 0, 1, 1, 2])
        if n_init:
            body.append("initContainers:")
            for name, img, cmd in r.sample(INITS, n_init):
                cbody = []
                cbody.append(f"- name: {name}")
                cbody.append(f"  image: {q(img or image)}")
                cbody.append("  command: [" + ", ".join(q(c) for c in cmd) + "]")
                if name == "copy-config":
                    cbody.append("  volumeMounts:")
                    cbody.append("    - name: config")
                    cbody.append("      mountPath: /config-ro")
                tmp = []
                self.sec_ctx_container(tmp, 2, posture, slips, False)
                cbody.extend(tmp)
                body.extend("  " + l for l in cbody)
        # containers (built with the 4-space list indent, then shifted to 0)
        ctr = []
        self.container(ctr, rel, comp, image, port, posture, slips, False, mounts,
                       probes=kind not in ("Job", "CronJob"))
        n_side = r.choice([0, 0, 0, 0, 0, 1, 1, 2]) if kind not in ("Job", "CronJob") else r.choice([0, 1])
        for name, img, sport in r.sample(SIDECARS, n_side):
            self.container(ctr, rel, name, img, sport, posture, slips, True,
                           [("tmp", "/tmp", False)], probes=r.random() < 0.3)
        body.append("containers:")
        body.extend(l[2:] for l in ctr)
        body.append("volumes:")
        for vname, vlines in vols:
            body.append(f"  - name: {vname}")
            body.extend("    " + l for l in vlines)
        p = " " * ind
        out.extend(p + l for l in body)

    def template(self, out, ind, rel, kind, comp, posture):
        p = " " * ind
        out.append(f"{p}template:")
        out.append(f"{p}  metadata:")
        out.append(f"{p}    labels:")
        out.append(f"{p}      app.kubernetes.io/name: {rel['app']}")
        out.append(f"{p}      app.kubernetes.io/instance: {rel['name']}")
        out.append(f"{p}      app.kubernetes.io/component: {comp}")
        out.append(f"{p}      app.kubernetes.io/part-of: {rel['team']}")
        out.append(f"{p}    annotations:")
        out.append(f"{p}      checksum/config: {self.hexd()}")
        if self.rng.random() < 0.4:
            out.append(f"{p}      prometheus.io/scrape: \"true\"")
            out.append(f"{p}      prometheus.io/port: \"9090\"")
        out.append(f"{p}  spec:")
        self.pod_spec(out, ind + 4, rel, kind, comp, posture)

    def selector(self, out, ind, rel, comp):
        p = " " * ind
        out.append(f"{p}selector:")
        out.append(f"{p}  matchLabels:")
        out.append(f"{p}    app.kubernetes.io/name: {rel['app']}")
        out.append(f"{p}    app.kubernetes.io/instance: {rel['name']}")
        out.append(f"{p}    app.kubernetes.io/component: {comp}")

    def workload(self, rel, kind, comp):
        r = self.rng
        posture = weighted(r, POSTURES)
        if kind == "DaemonSet" and r.random() < 0.5:
            posture = "privileged"  # node agents
        self.last_posture = posture
        name = f"{rel['name']}-{comp}"
        api = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
               "Job": "batch/v1", "CronJob": "batch/v1", "Pod": "v1"}[kind]
        out = [f"# Source: {rel['chart_name']}/templates/{comp}-{kind.lower()}.yaml",
               f"apiVersion: {api}", f"kind: {kind}"]
        self.metadata(out, name, rel["ns"], rel, comp)
        out.append("spec:")
        if kind == "Pod":
            self.pod_spec(out, 2, rel, kind, comp, posture)
        elif kind == "CronJob":
            out.append(f"  schedule: {q('%d */%d * * *' % (r.randint(0, 59), r.choice([1, 2, 6, 12])))}")
            out.append("  concurrencyPolicy: Forbid")
            out.append("  successfulJobsHistoryLimit: 3")
            out.append("  failedJobsHistoryLimit: 1")
            out.append("  jobTemplate:")
            out.append("    spec:")
            out.append(f"      backoffLimit: {r.choice([0, 2, 6])}")
            self.template(out, 6, rel, kind, comp, posture)
        elif kind == "Job":
            out.append(f"  backoffLimit: {r.choice([0, 2, 6])}")
            out.append("  ttlSecondsAfterFinished: 3600")
            self.template(out, 2, rel, kind, comp, posture)
        else:
            if kind != "DaemonSet":
                out.append(f"  replicas: {r.choice([1, 2, 3, 3, 5])}")
            if kind == "StatefulSet":
                out.append(f"  serviceName: {name}-headless")
                out.append("  podManagementPolicy: Parallel")
            if kind == "Deployment" and r.random() < 0.4:
                out.append("  strategy:")
                out.append("    type: RollingUpdate")
                out.append("    rollingUpdate:")
                out.append("      maxSurge: 25%")
                out.append("      maxUnavailable: 0")
            if kind == "DaemonSet":
                out.append("  updateStrategy:")
                out.append("    type: RollingUpdate")
            self.selector(out, 2, rel, comp)
            self.template(out, 2, rel, kind, comp, posture)
            if kind == "StatefulSet":
                out.append("  volumeClaimTemplates:")
                out.append("    - metadata:")
                out.append("        name: data")
                out.append("      spec:")
                out.append("        accessModes: [ReadWriteOnce]")
                out.append(f"        storageClassName: {r.choice(['standard', 'ssd'])}")
                out.append("        resources:")
                out.append("          requests:")
                out.append(f"            storage: {r.choice([1, 10, 50, 100])}Gi")
        self.count(kind)
        return out

    # ---------------------------------------------------------------- other kinds

    def service_account(self, rel):
        out = [f"# Source: {rel['chart_name']}/templates/serviceaccount.yaml",
               "apiVersion: v1", "kind: ServiceAccount"]
        self.metadata(out, rel["sa"], rel["ns"], rel, "serviceaccount")
        if self.rng.random() < 0.5:
            out.append("automountServiceAccountToken: false")
        self.count("ServiceAccount")
        return out

    def service(self, rel, comp):
        out = [f"# Source: {rel['chart_name']}/templates/service.yaml",
               "apiVersion: v1", "kind: Service"]
        self.metadata(out, f"{rel['name']}-{comp}", rel["ns"], rel, comp)
        out += ["spec:", "  type: ClusterIP", "  ports:", "    - name: http", "      port: 80",
                "      targetPort: http", "      protocol: TCP", "  selector:",
                f"    app.kubernetes.io/name: {rel['app']}",
                f"    app.kubernetes.io/instance: {rel['name']}"]
        self.count("Service")
        return out

    def config_map(self, rel):
        out = [f"# Source: {rel['chart_name']}/templates/configmap.yaml",
               "apiVersion: v1", "kind: ConfigMap"]
        self.metadata(out, f"{rel['name']}-config", rel["ns"], rel, "config")
        out += ["data:", "  LOG_FORMAT: json", f"  UPSTREAM_URL: {q('http://%s.svc:80' % rel['name'])}",
                "  app.yaml: |", "    server:", "      port: 8080", "    cache:",
                f"      ttl: {self.rng.randint(10, 600)}s"]
        self.count("ConfigMap")
        return out

    def role_pair(self, rel):
        r = self.rng
        name = f"{rel['name']}-{r.choice(['leader-election', 'reader', 'deployer', 'operator'])}"
        out = [f"# Source: {rel['chart_name']}/templates/role.yaml",
               "apiVersion: rbac.authorization.k8s.io/v1", "kind: Role"]
        self.metadata(out, name, rel["ns"], rel, "rbac")
        out += ["rules:",
                "  - apiGroups: [\"\"]", "    resources: [configmaps]",
                "    verbs: [get, list, watch, create, update, patch]",
                "  - apiGroups: [coordination.k8s.io]", "    resources: [leases]",
                "    verbs: [get, create, update]"]
        x = r.random()
        if x < 0.25:
            out += ["  - apiGroups: [\"\"]", "    resources: [secrets]", "    verbs: [get, list]"]
        elif x < 0.35:
            out += ["  - apiGroups: [\"\"]", "    resources: [pods, pods/exec]",
                    "    verbs: [get, create]"]
        elif x < 0.4:
            out += ["  - apiGroups: [\"*\"]", "    resources: [\"*\"]", "    verbs: [\"*\"]"]
        self.count("Role")
        b = [f"# Source: {rel['chart_name']}/templates/rolebinding.yaml",
             "apiVersion: rbac.authorization.k8s.io/v1", "kind: RoleBinding"]
        self.metadata(b, name, rel["ns"], rel, "rbac")
        b += ["roleRef:", "  apiGroup: rbac.authorization.k8s.io", "  kind: Role", f"  name: {name}",
              "subjects:", "  - kind: ServiceAccount",
              f"    name: {rel['sa'] if r.random() < 0.85 else 'default'}",
              f"    namespace: {rel['ns']}"]
        self.count("RoleBinding")
        return [out, b]

    def cluster_rbac(self, i, rel):
        """A ClusterRole + ClusterRoleBinding for an operator-like release."""
        r = self.rng
        name = f"{rel['name']}-operator-{i}"
        out = [f"# Source: {rel['chart_name']}/templates/clusterrole.yaml",
               "apiVersion: rbac.authorization.k8s.io/v1", "kind: ClusterRole"]
        self.metadata(out, name, None, rel, "rbac")
        out += ["rules:",
                "  - apiGroups: [\"\", apps]", "    resources: [pods, deployments, services, configmaps]",
                "    verbs: [get, list, watch]",
                "  - apiGroups: [\"\"]", "    resources: [events]", "    verbs: [create, patch]"]
        x = r.random()
        if x < 0.2:
            out += ["  - apiGroups: [rbac.authorization.k8s.io]", "    resources: [clusterroles, rolebindings]",
                    "    verbs: [bind, escalate]"]
        elif x < 0.35:
            out += ["  - apiGroups: [admissionregistration.k8s.io]",
                    "    resources: [validatingwebhookconfigurations, mutatingwebhookconfigurations]",
                    "    verbs: [get, list, watch, update, patch]"]
        elif x < 0.45:
            out += ["  - apiGroups: [\"\"]", "    resources: [secrets]", "    verbs: [get, list, watch]"]
        elif x < 0.5:
            out += ["  - apiGroups: [\"*\"]", "    resources: [\"*\"]", "    verbs: [\"*\"]"]
        self.count("ClusterRole")
        b = [f"# Source: {rel['chart_name']}/templates/clusterrolebinding.yaml",
             "apiVersion: rbac.authorization.k8s.io/v1", "kind: ClusterRoleBinding"]
        self.metadata(b, name, None, rel, "rbac")
        role = name if r.random() < 0.97 else "cluster-admin"
        b += ["roleRef:", "  apiGroup: rbac.authorization.k8s.io", "  kind: ClusterRole", f"  name: {role}",
              "subjects:", "  - kind: ServiceAccount", f"    name: {rel['sa']}", f"    namespace: {rel['ns']}"]
        if r.random() < 0.02:
            b += ["  - kind: Group", "    apiGroup: rbac.authorization.k8s.io", "    name: system:authenticated"]
        self.count("ClusterRoleBinding")
        return [out, b]

    def namespace_obj(self, ns, team):
        r = self.rng
        out = ["apiVersion: v1", "kind: Namespace", "metadata:", f"  name: {ns}", "  labels:",
               f"    kubernetes.io/metadata.name: {ns}", f"    team: {team}",
               f"    environment: {r.choice(['prod', 'staging', 'dev'])}"]
        if r.random() < 0.5:
            out += ["    pod-security.kubernetes.io/enforce: restricted",
                    "    pod-security.kubernetes.io/enforce-version: latest"]
        out += ["  annotations:", f"    owner: {team}@example.com"]
        self.count("Namespace")
        return out

    def network_policies(self, ns, team):
        r = self.rng
        docs = []
        meta = lambda name: ["apiVersion: networking.k8s.io/v1", "kind: NetworkPolicy", "metadata:",
                             f"  name: {name}", f"  namespace: {ns}", "  labels:", f"    team: {team}"]
        if r.random() < 0.7:
            docs.append(meta("default-deny") + ["spec:", "  podSelector: {}", "  policyTypes: [Ingress, Egress]"])
            docs.append(meta("allow-dns") + [
                "spec:", "  podSelector: {}", "  policyTypes: [Egress]", "  egress:", "    - to:",
                "        - namespaceSelector:", "            matchLabels:",
                "              kubernetes.io/metadata.name: kube-system",
                "          podSelector:", "            matchLabels:", "              k8s-app: kube-dns",
                "      ports:", "        - protocol: UDP", "          port: 53",
                "        - protocol: TCP", "          port: 53"])
        docs.append(meta("allow-ingress-controller") + [
            "spec:", "  podSelector:", "    matchLabels:", f"      app.kubernetes.io/part-of: {team}",
            "  policyTypes: [Ingress]", "  ingress:", "    - from:", "        - namespaceSelector:",
            "            matchLabels:", "              kubernetes.io/metadata.name: ingress-nginx",
            "      ports:", "        - protocol: TCP", "          port: 8080"])
        if r.random() < 0.08:
            docs.append(meta("allow-all-temporary") + [
                "spec:", "  podSelector: {}", "  policyTypes: [Ingress]", "  ingress:", "    - {}"])
        for _ in docs:
            self.count("NetworkPolicy")
        return docs


AUDITED = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "Namespace",
           "ServiceAccount", "NetworkPolicy", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}


def pct(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, len(sorted_values) * p // 100)]


PROBES_PER_KIND = 2  # per workload kind and probe posture


def write_files(dirpath, stem, docs, per_file, stats, probes=(), repo=None):
    """Writes docs, per_file to a file. probes: (doc index, probe dict) pairs; their "file"
    (relative to repo) is filled in."""
    os.makedirs(dirpath, exist_ok=True)
    for i in range(0, len(docs), per_file):
        chunk = docs[i:i + per_file]
        text = "---\n" + "---\n".join("\n".join(d) + "\n" for d in chunk)
        path = os.path.join(dirpath, f"{stem}-{i // per_file:03d}.yaml")
        for di, probe in probes:
            if i <= di < i + per_file:
                probe["file"] = os.path.relpath(path, repo)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        stats["files"] += 1
        stats["bytes"] += len(text.encode("utf-8"))
        stats["lines"] += text.count("\n")


def generate(workloads, seed, out, per_file):
    g = Gen(seed)
    r = g.rng
    n_ns = max(3, round(workloads / 50))
    n_clusters = max(1, min(8, workloads // 15000 + 1))
    repo = os.path.join(out, "repo")
    stats = {"files": 0, "bytes": 0, "lines": 0}
    workload_lines = []
    remaining = workloads
    cluster_docs = {c: {"namespaces": [], "rbac": []} for c in range(n_clusters)}
    op_index = 0
    probes = {"privileged": [], "compliant": []}
    probe_counts = {}
    for nsi in range(n_ns):
        quota = workloads // n_ns + (1 if nsi < workloads % n_ns else 0)
        team = TEAMS[nsi % len(TEAMS)]
        ns = f"{team}-{nsi:05d}"
        cluster = nsi % n_clusters
        cdocs = cluster_docs[cluster]
        cdocs["namespaces"].append(g.namespace_obj(ns, team))
        docs = list(g.network_policies(ns, team))
        made = 0
        rel_i = 0
        ns_probes = []
        while made < quota:
            app = r.choice(COMPONENTS) + "-" + r.choice(["svc", "app", "core", "v2", "edge"])
            rel = {"name": f"{app}-{rel_i}", "app": app, "team": team, "ns": ns,
                   "version": f"{r.randint(0, 4)}.{r.randint(0, 30)}.{r.randint(0, 9)}",
                   "chart_name": app}
            rel["chart"] = f"{app}-{r.randint(0, 3)}.{r.randint(0, 20)}.{r.randint(0, 9)}"
            rel["sa"] = rel["name"]
            rel_i += 1
            if r.random() < 0.8:
                docs.append(g.service_account(rel))
            if r.random() < 0.3:
                docs.append(g.config_map(rel))
            n_w = min(quota - made, r.choice([1, 1, 1, 2, 2, 3]))
            comps = r.sample(["server", "worker", "migrate", "cron", "agent", "proxy"], n_w)
            for comp in comps:
                kind = weighted(r, WORKLOAD_MIX)
                lines = g.workload(rel, kind, comp)
                posture = g.last_posture
                if posture in probes and probe_counts.get((posture, kind), 0) < PROBES_PER_KIND:
                    probe_counts[(posture, kind)] = probe_counts.get((posture, kind), 0) + 1
                    probe = {"kind": kind, "namespace": ns, "name": f"{rel['name']}-{comp}"}
                    probes[posture].append(probe)
                    ns_probes.append((len(docs), probe))
                workload_lines.append(len(lines))
                docs.append(lines)
                if kind in ("Deployment", "StatefulSet") and r.random() < 0.6:
                    docs.append(g.service(rel, comp))
            made += n_w
            if r.random() < 0.09:
                docs.extend(g.role_pair(rel))
            if r.random() < 0.012:
                cdocs["rbac"].extend(g.cluster_rbac(op_index, rel))
                op_index += 1
        write_files(os.path.join(repo, "clusters", f"cluster-{cluster:02d}", team, ns), "apps",
                    docs, per_file, stats, ns_probes, repo)
    for c in range(n_clusters):
        d = os.path.join(repo, "clusters", f"cluster-{c:02d}", "cluster-scoped")
        write_files(d, "namespaces", cluster_docs[c]["namespaces"], per_file, stats)
        if cluster_docs[c]["rbac"]:
            write_files(d, "rbac", cluster_docs[c]["rbac"], per_file, stats)
    kinds = dict(sorted(g.kinds.items()))
    documents = sum(kinds.values())
    audited = sum(v for k, v in kinds.items() if k in AUDITED)
    wl = sum(v for k, v in kinds.items() if k in WORKLOAD_KINDS)
    rbac = sum(kinds.get(k, 0) for k in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"))
    workload_lines.sort()
    meta = {
        "generator_version": GENERATOR_VERSION, "seed": seed, "workloads": wl,
        "documents": documents, "objects": audited, "skipped": documents - audited,
        "rbac_share": round(rbac / documents, 4), "namespaces": n_ns, "clusters": n_clusters,
        "workload_lines": {"min": workload_lines[0], "p10": pct(workload_lines, 10),
                           "median": pct(workload_lines, 50), "p90": pct(workload_lines, 90),
                           "max": workload_lines[-1]},
        "kinds": kinds, "probes": probes, **stats,
    }
    assert wl == workloads, (wl, workloads)
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--docs-per-file", type=int, default=100)
    ap.add_argument("--out", required=True, help="directory to create (replaced atomically)")
    a = ap.parse_args()
    if a.workloads < 1:
        ap.error("--workloads must be >= 1")
    tmp = a.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    meta = generate(a.workloads, a.seed, tmp, a.docs_per_file)
    shutil.rmtree(a.out, ignore_errors=True)
    os.rename(tmp, a.out)
    json.dump(meta, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
