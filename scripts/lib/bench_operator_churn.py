"""Pod churn for scripts/bench-operator (`--churn N`): the CPU an operator spends per pod change.

The same phase runs for Palisade and for a peer, on the same loaded control plane:
  1. idle: `idle_s` seconds with no changes, to measure the process' background CPU rate;
  2. churn: N pod changes at a fixed rate (`rate` per second), in rounds of three over the
     covered namespaces: create a bare Pod `churn-<i>`, change its labels (a merge patch), delete
     it. Requests are paced from a schedule, not fired as fast as possible, so a slow operator
     cannot make the load lighter for itself; the achieved rate is reported;
  3. settle: after the last change, until the process' CPU stops rising (under 0.02 s over 2 s)
     or `settle_max_s`: work queued during the churn is counted.

Reported: raw CPU seconds over churn + settle, the idle rate times that window, and the
difference per 1,000 changes (the cost of the changes themselves).
"""

import time


def restricted_container(name):
    """A container that passes the restricted Pod Security Standard (the bench's pods)."""
    return {"name": name, "image": "app:1.0",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"}}}


def pod(name, container):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "churn", "round": "0"}},
            "spec": {"serviceAccountName": "app", "automountServiceAccountToken": False,
                     "containers": [container]}}


def cpu_settled(cpu_now, window_s=2.0, quiet_cpu_s=0.02, max_s=60.0):
    """Waits until `cpu_now()` rises by less than `quiet_cpu_s` over `window_s`; returns the
    seconds waited (at most `max_s`)."""
    start = time.monotonic()
    last = cpu_now()
    while time.monotonic() - start < max_s:
        time.sleep(window_s)
        now = cpu_now()
        if now - last < quiet_cpu_s:
            break
        last = now
    return time.monotonic() - start


def run(kube, namespaces, changes, rate, container, cpu_now, idle_s=20.0, log=print):
    """Runs the phase; `cpu_now()` returns the measured processes' CPU seconds so far."""
    log(f"churn: idle {idle_s:.0f}s, then {changes} pod changes at {rate}/s")
    c0, t0 = cpu_now(), time.monotonic()
    time.sleep(idle_s)
    idle_rate = (cpu_now() - c0) / (time.monotonic() - t0)

    cpu_start, start = cpu_now(), time.monotonic()
    done, late = 0, 0.0
    i = 0
    while done < changes:
        ns = namespaces[i % len(namespaces)]
        name = f"churn-{i}"
        base = f"/api/v1/namespaces/{ns}/pods"
        steps = [
            lambda: kube.create(base, pod(name, container)),
            lambda: kube.request("PATCH", f"{base}/{name}",
                                 {"metadata": {"labels": {"round": str(i + 1)}}},
                                 content_type="application/merge-patch+json"),
            lambda: kube.request("DELETE", f"{base}/{name}", {"gracePeriodSeconds": 0},
                                 ok=(200, 202, 404)),
        ]
        for step in steps:
            if done >= changes:
                break
            due = start + done / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late = max(late, -wait)
            step()
            done += 1
        i += 1
    churn_wall = time.monotonic() - start
    settle = cpu_settled(cpu_now)
    window = time.monotonic() - start
    raw = cpu_now() - cpu_start
    net = max(raw - idle_rate * window, 0.0)
    res = {"changes": done, "rate_target": rate, "rate_achieved": done / churn_wall,
           "max_behind_schedule_s": late, "churn_s": churn_wall, "settle_s": settle,
           "idle_cpu_per_s": idle_rate, "cpu_s_raw": raw, "cpu_s_idle_share": idle_rate * window,
           "cpu_s_per_1000": net / done * 1000}
    log(f"churn: {done} changes in {churn_wall:.1f}s (+{settle:.1f}s settle): CPU {raw:.2f}s raw, "
        f"{res['cpu_s_per_1000']:.2f}s per 1,000 changes after the idle rate {idle_rate:.3f}/s")
    return res
