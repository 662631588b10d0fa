"""Draw bench/growth.png from bench/growth.json (run with .venv-bench/bin/python: matplotlib lives there).

    .venv-bench/bin/python bench/plot.py bench/growth.json bench/growth.png
"""
from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dest: str) -> None:
    """One figure, two panels: latencies (log-x) and intake throughput against lamp columns loaded."""
    rows = json.load(open(src))
    xs = [r["assets"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("snap_p50", "snap (kerbside_locate) p50"), ("snap_p99", "snap (kerbside_locate) p99"),
                       ("intake_p99", "intake p99, 16 conns"), ("job_p99", "job by reference p99, 16 conns"),
                       ("ogc_p95", "OGC lamp columns bbox (1,000) p95")):
        ys = [r.get(key) for r in rows]
        if any(y is not None for y in ys):
            a.plot(xs, ys, marker="o", label=label)
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("lamp columns loaded")
    a.set_ylabel("ms")
    a.legend(fontsize=7)
    a.grid(True, which="both", alpha=0.3)
    b.plot(xs, [r.get("intake_rps") for r in rows], marker="o", label="intake req/s")
    b.set_xscale("log")
    b.set_xlabel("lamp columns loaded")
    b.set_ylabel("requests/s")
    b.set_ylim(bottom=0)
    b.legend(fontsize=7)
    b.grid(True, which="both", alpha=0.3)
    fig.suptitle("Kerbside cost against size (1M open jobs loaded; shared 2-core machine)", fontsize=10)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
