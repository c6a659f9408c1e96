"""The benchmark's PNG: for each target, the rate offered against the rate achieved and the
share of failed calls (left), and the p95 response time (right, log scale), so the knee where a
target stops keeping up is visible at a glance. Needs matplotlib (the ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(report: dict[str, Any], path: Path) -> bool:
    """Write ``path``; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (rates, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    failures = rates.twinx()
    for name, result in report["targets"].items():
        steps = sorted(result["steps"], key=lambda r: r["rate"])
        offered = [r["rate"] for r in steps]
        line = rates.plot(offered, [r["achieved"] for r in steps], marker="o", label=f"{name} achieved")[0]
        failures.plot(offered, [r["failure_ratio"] * 100 for r in steps], linestyle=":", marker="x",
                      color=line.get_color(), label=f"{name} failed %")
        timed = [r for r in steps if r["p95_ms"] is not None]  # a step with no completed call has no p95
        latency.plot([r["rate"] for r in timed], [max(r["p95_ms"], 0.5) for r in timed], marker="o",
                     color=line.get_color(), label=name)
    top = max((r["rate"] for res in report["targets"].values() for r in res["steps"]), default=1)
    rates.plot([0, top], [0, top], color="grey", linewidth=0.8, label="offered")
    rates.set(xlabel="offered per second", ylabel="achieved per second", title=f"{report['scenario']}: rate")
    failures.set_ylabel("failed calls %")
    rates.legend(loc="upper left", fontsize=8)
    failures.legend(loc="lower right", fontsize=8)
    crit = report["criteria"]
    latency.axhline(crit["max_p95_ms"], color="grey", linewidth=0.8, linestyle="--", label="p95 bound")
    latency.set(xlabel="offered per second", ylabel="p95 response ms", yscale="log", title="latency")
    latency.legend(fontsize=8)
    fig.suptitle(f"{report['command']} ({report['when']})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
