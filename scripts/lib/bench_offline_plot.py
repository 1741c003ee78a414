#!/usr/bin/python3
"""Plot for scripts/bench-offline: wall time and peak RSS vs corpus size, one line per tool.

usage: bench_offline_plot.py RESULTS.json OUT.png

Log-log axes. A run that timed out is drawn as an open marker at its timeout (a lower bound), labelled.
Needs matplotlib (Debian python3-matplotlib; scripts/bench-offline installs it).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = {"palisade": "o", "kube-score": "s", "kyverno": "^", "trivy": "D"}


def main():
    src, png = sys.argv[1], sys.argv[2]
    with open(src) as f:
        res = json.load(f)
    rows = res["rows"]
    series = []  # (tool, batch), in order of appearance
    for r in rows:
        key = (r["tool"], r.get("batch", 0))
        if key not in series:
            series.append(key)
    batches = {b for _, b in series}
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    for tool, batch in series:
        label = tool if len(batches) == 1 else f"{tool} (batch {batch + 1})"
        mine = [r for r in rows if r["tool"] == tool and r.get("batch", 0) == batch]
        ok = [r for r in mine if r.get("status") == "ok"]
        late = [r for r in mine if r.get("status", "").startswith(">")]
        mk = MARKERS.get(tool, "x")
        style = "-" if batch == 0 else "--"
        color = None
        if ok:
            xs = [r["documents"] for r in ok]
            line, = ax_t.plot(xs, [r["wall_s"] for r in ok], marker=mk, linestyle=style,
                              label=label)
            color = line.get_color()
            ax_m.plot(xs, [r["peak_rss_mib"] for r in ok], marker=mk, linestyle=style,
                      label=label, color=color)
        for r in late:
            ax_t.plot([r["documents"]], [r.get("timeout", res["timeout"])], marker=mk, fillstyle="none",
                      linestyle="none", color=color, label=f"{label}: timeout")
    ax_t.set_title("wall time (median)")
    ax_t.set_ylabel("seconds")
    ax_m.set_title("peak RSS")
    ax_m.set_ylabel("MiB")
    for ax in (ax_t, ax_m):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("documents in the corpus")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    env = res.get("environment", {})
    fig.suptitle(f"palisade audit vs peers, same corpus ({env.get('cpus', '?')} CPUs, "
                 f"{env.get('date', '')})", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main()
