"""Kyverno peer of scripts/bench-operator (`scripts/bench-operator --peer kyverno`).

Runs Kyverno's admission controller (`kyverno`) and its `background-controller` as local
processes against the private control plane, out of cluster: `--serverIP 127.0.0.1:<port>` makes
the webhook configurations Kyverno registers point at a URL on this machine, and the serving
certificate Kyverno generates for itself (CA and TLS pair in Secrets of namespace `kyverno`)
carries that address. Both processes use the admin kubeconfig. The binaries and the CRDs come from
the pinned build (tools/go-tools/kyverno, `scripts/go-tool`) and its module source
(`scripts/go-module-file`).

Then a generate policy in the shape of Kyverno's documented sample "add a default-deny
NetworkPolicy to new namespaces" (ClusterPolicy, one `generate` rule on Namespace, a
NetworkPolicy selecting every Pod with no rules, `synchronize: true`), restricted to the bench
namespaces' label, and the same new-namespace latency as Palisade's: namespaces created one at a
time, time from sending the create to the watch event of the generated NetworkPolicy.
Memory: VmRSS/VmHWM of both Kyverno processes from /proc, sampled every 100 ms.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GO_TOOL = os.path.join(ROOT, "scripts", "go-tool")
GO_MODULE_FILE = os.path.join(ROOT, "scripts", "go-module-file")
CONTROL_PLANE = os.path.join(ROOT, "scripts", "control-plane")
KYVERNO_MODULE = "github.com/kyverno/kyverno@v1.19.1"  # as pinned in tools/go-tools/kyverno
NS = "kyverno"
POLICY = "add-networkpolicy"
PSS_POLICY = "pod-security-restricted"
NETPOL = "default-deny"
BACKGROUND_USER = f"system:serviceaccount:{NS}:kyverno-background-controller"
ADMISSION_USER = f"system:serviceaccount:{NS}:kyverno-admission-controller"
CLK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"bench-operator[kyverno]: {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def policy_yaml(label):
    # Written for this benchmark after Kyverno's documented sample policy (not copied).
    return f"""apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: {POLICY}
spec:
  rules:
    - name: default-deny
      match:
        any:
          - resources:
              kinds: [Namespace]
              selector:
                matchLabels:
                  {label}: "true"
      generate:
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        name: {NETPOL}
        namespace: "{{{{request.object.metadata.name}}}}"
        synchronize: true
        data:
          spec:
            podSelector: {{}}
            policyTypes: [Ingress, Egress]
"""


def pss_policy_yaml(label):
    # For the churn phase: what a Kyverno user runs to audit pods against the restricted Pod
    # Security Standard (Palisade audits every pod change the same way).
    return f"""apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: {PSS_POLICY}
spec:
  background: true
  rules:
    - name: restricted
      match:
        any:
          - resources:
              kinds: [Pod]
              namespaceSelector:
                matchLabels:
                  {label}: "true"
      validate:
        failureAction: Audit
        podSecurity:
          level: restricted
          version: latest
"""


def setup_yaml():
    """Namespace, the two ConfigMaps Kyverno reads (INIT_CONFIG, METRICS_CONFIG), and RBAC for
    the admission and background controllers' ServiceAccount user names, which the policy
    webhook checks with SubjectAccessReviews before it accepts a generate rule (both processes
    actually run with the admin kubeconfig)."""
    return f"""apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kyverno
  namespace: {NS}
data:
  resourceFilters: "[Event,*,*][*/*,kube-system,*][*/*,{NS},*]"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kyverno-metrics
  namespace: {NS}
data:
  namespaces: '{{"exclude":[],"include":[]}}'
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: bench-kyverno-background-controller
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - kind: User
    name: {BACKGROUND_USER}
  - kind: User
    name: {ADMISSION_USER}
"""


class Proc:
    """A local process with /proc sampling (VmRSS, VmHWM, CPU seconds)."""

    def __init__(self, name, argv, env, log_path):
        self.name = name
        self.log = open(log_path, "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.last = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()

    def stats(self):
        try:
            status = open(f"/proc/{self.proc.pid}/status").read()
            stat = open(f"/proc/{self.proc.pid}/stat").read()
        except OSError:
            return None
        rss, hwm = re.search(r"VmRSS:\s+(\d+)", status), re.search(r"VmHWM:\s+(\d+)", status)
        if not (rss and hwm):
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return int(rss.group(1)), int(hwm.group(1)), (int(fields[11]) + int(fields[12])) / CLK

    def _sample(self):
        while not self._stop.is_set():
            s = self.stats()
            if s:
                self.last = s
            time.sleep(0.1)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        final = self.stats() or self.last
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stop.set()
        self.log.close()
        return final


def module_dir():
    r = subprocess.run([GO_MODULE_FILE, KYVERNO_MODULE, "go.mod"], text=True,
                       stdout=subprocess.PIPE, check=True)
    return os.path.dirname(r.stdout.strip())


def binary(cmd):
    r = subprocess.run([GO_TOOL, "path", "kyverno", cmd], text=True, stdout=subprocess.PIPE, check=True)
    path = r.stdout.strip()
    if not os.access(path, os.X_OK):
        raise SystemExit(f"bench-operator[kyverno]: no {cmd} binary at {path!r}")
    return path


def crd_files(mod):
    out = []
    for sub in ("kyverno", "policies.kyverno.io", "policyreport", "reports"):
        d = os.path.join(mod, "config", "crds", sub)
        out += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".yaml")]
    return out


def start(cp, out_dir, tag):
    """Installs what Kyverno needs and starts both processes; returns (admission, background)."""
    mod = module_dir()
    kyverno_bin, background_bin = binary("kyverno"), binary("background-controller")
    for f in crd_files(mod):
        cp.kubectl("apply", "--server-side", "-f", f)
    for crd in ("clusterpolicies", "updaterequests", "policies"):
        cp.wait_established(f"crd/{crd}.kyverno.io")
    cp.kubectl("apply", "--server-side", "-f", "-", stdin=setup_yaml())
    port = free_port()
    common_env = dict(os.environ, KUBECONFIG=cp.kubeconfig, KYVERNO_NAMESPACE=NS,
                      INIT_CONFIG="kyverno", METRICS_CONFIG="kyverno-metrics", KYVERNO_SVC="kyverno-svc")
    common = ["--kubeconfig", cp.kubeconfig, "--metricsHost", "127.0.0.1",
              "--controllerRuntimeMetricsAddress", "0", "--disableLogColor"]
    adm_env = dict(common_env, KYVERNO_SERVICEACCOUNT_NAME=ADMISSION_USER.rsplit(":", 1)[1],
                   KYVERNO_DEPLOYMENT="kyverno-admission-controller",
                   KYVERNO_POD_NAME="kyverno-admission-controller-bench")
    adm = Proc("kyverno", [kyverno_bin, *common, "--metricsPort", str(free_port()),
                           "--serverIP", f"127.0.0.1:{port}", "--webhookServerHost", "127.0.0.1",
                           "--webhookServerPort", str(port),
                           "--caSecretName", "kyverno-svc.kyverno.svc.kyverno-tls-ca",
                           "--tlsSecretName", "kyverno-svc.kyverno.svc.kyverno-tls-pair",
                           "--backgroundServiceAccountName", BACKGROUND_USER],
               adm_env, os.path.join(out_dir, f"kyverno-admission-{tag}.log"))
    bg_env = dict(common_env, KYVERNO_SERVICEACCOUNT_NAME="kyverno-background-controller",
                  KYVERNO_DEPLOYMENT="kyverno-background-controller",
                  KYVERNO_POD_NAME="kyverno-background-controller-bench")
    bg = Proc("background-controller", [background_bin, *common, "--metricsPort", str(free_port())],
              bg_env, os.path.join(out_dir, f"kyverno-background-{tag}.log"))
    return adm, bg


def run(cp, kube, names_loaded, label, args, out_dir, wait_until, percentile, die):
    """Latency phase for Kyverno on a loaded control plane; returns a dict of figures."""
    res = {}
    tag = str(len(names_loaded))
    t0 = time.monotonic()
    adm, bg = start(cp, out_dir, tag)
    procs = (adm, bg)
    stop = threading.Event()
    try:
        def check_alive():
            for p in procs:
                if not p.alive():
                    die(f"Kyverno {p.name} exited (code {p.proc.returncode}); see its log in {out_dir}")

        # The policy webhook must be registered before the policy is accepted with validation.
        def webhooks_up():
            check_alive()
            out = cp.kubectl("get", "validatingwebhookconfigurations", "-o", "name")
            return "kyverno-policy-validating-webhook-cfg" in out
        wait_until("Kyverno's policy webhook configuration", 300, webhooks_up, interval=0.5)
        res["start_to_webhooks_s"] = time.monotonic() - t0
        log(f"webhooks registered after {res['start_to_webhooks_s']:.1f}s")
        # The webhook configurations can be registered (CA Secret there) a moment before the
        # serving pair exists; until then the webhook's TLS handshake fails. Retry the apply.
        def policy_applied():
            check_alive()
            r = subprocess.run([CONTROL_PLANE, "kubectl", "apply", "-f", "-"], env=cp.env, text=True,
                               input=policy_yaml(label), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if r.returncode != 0:
                res.setdefault("policy_apply_errors", []).append(r.stderr.strip().splitlines()[-1])
            return r.returncode == 0
        wait_until("the ClusterPolicy to be accepted", 120, policy_applied, interval=1)
        cp.kubectl("wait", "--for=condition=Ready", "--timeout=120s", f"clusterpolicy/{POLICY}")

        seen, cond = {}, threading.Condition()

        def on_np(typ, obj, now):
            if typ in ("ADDED", "MODIFIED"):
                with cond:
                    seen.setdefault(obj["metadata"]["namespace"], now)
                    cond.notify_all()
        path = f"/apis/networking.k8s.io/v1/networkpolicies?fieldSelector=metadata.name%3D{NETPOL}"
        lst = kube.get(path)
        for o in lst.get("items", []):
            on_np("ADDED", o, time.monotonic())
        threading.Thread(target=kube.watch, args=(path, on_np, stop, lst["metadata"]["resourceVersion"]),
                         daemon=True).start()

        # Ready when a probe namespace gets its NetworkPolicy (webhook rules for Namespace are
        # registered a little after the policy becomes Ready).
        probe = {"i": 0, "t": 0.0}

        def probe_ok():
            check_alive()
            with cond:
                if any(ns.startswith("bench-probe-") for ns in seen):
                    return True
            if time.monotonic() - probe["t"] > 5:
                ns = f"bench-probe-{probe['i']}"
                probe["i"] += 1
                probe["t"] = time.monotonic()
                kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": ns, "labels": {label: "true"}}})
            return False
        wait_until("Kyverno to generate a NetworkPolicy for a probe namespace", 180, probe_ok, interval=0.2)
        res["start_to_ready_s"] = time.monotonic() - t0
        res["probe_namespaces"] = probe["i"]
        log(f"Kyverno generating after {res['start_to_ready_s']:.1f}s ({probe['i']} probe namespaces)")
        time.sleep(args.settle)
        res["ready_rss_mib"] = {p.name: (p.stats() or p.last)[0] / 1024 for p in procs}
        cpu0 = {p.name: (p.stats() or p.last)[2] for p in procs}

        lat, lat_resp = [], []
        for i in range(args.latency_namespaces):
            ns = f"bench-new-{i:04d}"
            t_send = time.monotonic()
            kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": ns, "labels": {label: "true"}}})
            t_resp = time.monotonic()

            def got(ns=ns):
                with cond:
                    if ns not in seen:
                        cond.wait(0.5)
                    t = seen.get(ns)
                if t is None:
                    check_alive()
                return t
            t_np = wait_until(f"Kyverno's {NETPOL} in {ns}", 60, got, interval=0)
            lat.append((t_np - t_send) * 1000)
            lat_resp.append((t_np - t_resp) * 1000)
            time.sleep(args.latency_gap)
        res["latency_ms"] = {"n": len(lat), "p50": percentile(lat, 50), "p90": percentile(lat, 90),
                             "p99": percentile(lat, 99), "max": max(lat), "min": min(lat),
                             "p50_from_response": percentile(lat_resp, 50),
                             "p99_from_response": percentile(lat_resp, 99)}
        log(f"latency p50 {res['latency_ms']['p50']:.0f} ms, p99 {res['latency_ms']['p99']:.0f} ms")
        res["latency_cpu_s"] = {p.name: (p.stats() or p.last)[2] - cpu0[p.name] for p in procs}
        if args.churn:
            res["churn"] = churn_phase(cp, kube, names_loaded, label, args, procs, wait_until,
                                       check_alive)
        res["urs_left"] = len(json.loads(cp.kubectl("get", "updaterequests.kyverno.io", "-n", NS,
                                                    "-o", "json"))["items"])
    finally:
        stop.set()
        finals = {p.name: p.stop() for p in procs}
    res["final_rss_mib"] = {n: f[0] / 1024 for n, f in finals.items() if f}
    res["peak_rss_mib"] = {n: f[1] / 1024 for n, f in finals.items() if f}
    res["total_cpu_s"] = {n: f[2] for n, f in finals.items() if f}
    res["peak_rss_sum_mib"] = sum(res["peak_rss_mib"].values())
    return res


def churn_phase(cp, kube, names, label, args, procs, wait_until, check_alive):
    """The pod churn of bench_operator_churn, with Kyverno auditing pods (restricted PSS)."""
    import bench_operator_churn as churn
    cp.kubectl("apply", "-f", "-", stdin=pss_policy_yaml(label))
    cp.kubectl("wait", "--for=condition=Ready", "--timeout=120s", f"clusterpolicy/{PSS_POLICY}")

    def pods_webhook():
        check_alive()
        out = cp.kubectl("get", "validatingwebhookconfigurations", "-o", "json")
        hooks = [w for c in json.loads(out)["items"] for w in c.get("webhooks") or []]
        return any("pods" in (r.get("resources") or []) for w in hooks for r in w.get("rules") or [])
    wait_until("Kyverno's webhook for Pods", 120, pods_webhook, interval=0.5)

    def cpu_now():
        return sum((p.stats() or p.last)[2] for p in procs)
    return churn.run(kube, names, args.churn, args.churn_rate, churn.restricted_container("app"),
                     cpu_now, log=log)


def report(results, args, machine_line):
    names = ["kyverno", "background-controller"]
    L = ["| | " + " | ".join(f"{r['namespaces']} ns loaded" for r in results) + " |",
         "|---|" + "---:|" * len(results)]

    def row(label, f):
        L.append(f"| {label} | " + " | ".join(f(r) for r in results) + " |")
    row("start to webhooks registered, s", lambda r: f"{r['kyverno']['start_to_webhooks_s']:.1f}")
    row("start to first NetworkPolicy generated, s", lambda r: f"{r['kyverno']['start_to_ready_s']:.1f}")
    for q in ("p50", "p90", "p99", "max"):
        row(f"new namespace to default-deny, {q} ms", lambda r, q=q: f"{r['kyverno']['latency_ms'][q]:.0f}")
    for n in names:
        row(f"RSS before the latency loop, {n}, MiB", lambda r, n=n: f"{r['kyverno']['ready_rss_mib'][n]:.1f}")
        row(f"peak RSS (VmHWM), {n}, MiB", lambda r, n=n: f"{r['kyverno']['peak_rss_mib'][n]:.1f}")
        row(f"CPU seconds, latency loop, {n}", lambda r, n=n: f"{r['kyverno']['latency_cpu_s'][n]:.2f}")
        row(f"CPU seconds, whole run, {n}", lambda r, n=n: f"{r['kyverno']['total_cpu_s'][n]:.1f}")
    row("peak RSS, both processes, MiB", lambda r: f"{r['kyverno']['peak_rss_sum_mib']:.1f}")
    if all("churn" in r["kyverno"] for r in results):
        row("pod churn: changes at achieved rate /s",
            lambda r: f"{r['kyverno']['churn']['changes']} at {r['kyverno']['churn']['rate_achieved']:.1f}")
        row("pod churn: CPU s per 1,000 changes, both processes (idle rate subtracted)",
            lambda r: f"{r['kyverno']['churn']['cpu_s_per_1000']:.2f}")
        row("idle CPU s per s, both processes", lambda r: f"{r['kyverno']['churn']['idle_cpu_per_s']:.3f}")
    L += ["", f"Machine: {machine_line}. Latency over {results[0]['kyverno']['latency_ms']['n']} namespaces "
          f"created one at a time ({args.latency_gap} s apart), from sending the create to the watch "
          f"event of Kyverno's `{NETPOL}` NetworkPolicy."]
    return "\n".join(L) + "\n"
