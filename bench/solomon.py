"""Bench (a), issue 15: VROOM (pyvroom, as the planner calls it) on Solomon's 56 VRPTW 100-customer instances.

    .venv/bin/python -m bench.solomon --dir DIR [--exploration 5] [--threads 2] [--only R1]

DIR holds the instances as CSV (one row per place, depot first: index, x, y, demand, ready, due, …, service),
as in github.com/Jondiii/rl_routing data/solomon_dataset (the published Solomon files, converted). Nothing
of them is committed here. Travel time = Euclidean distance (unrounded; scaled ×100 to VROOM's integers),
25 vehicles, capacity by family (C1/R1/RC1 200, C2 700, R2/RC2 1000). VROOM minimises total travel only;
the best-known solutions (SINTEF's table) minimise vehicles first, then distance, so on the wide-window
families (R2, RC2) a distance-only solution with more vehicles can be shorter: a negative gap.
"""
from __future__ import annotations

import argparse
import csv
import math
import statistics
import time
from pathlib import Path

import vroom

SCALE = 100
CAPACITY = {"C1": 200, "C2": 700, "R1": 200, "R2": 1000, "RC1": 200, "RC2": 1000}
# Best known (vehicles, distance), SINTEF TOP's Solomon table (hierarchical objective).
BKS = {
    "C101": (10, 828.94), "C102": (10, 828.94), "C103": (10, 828.06), "C104": (10, 824.78), "C105": (10, 828.94),
    "C106": (10, 828.94), "C107": (10, 828.94), "C108": (10, 828.94), "C109": (10, 828.94),
    "C201": (3, 591.56), "C202": (3, 591.56), "C203": (3, 591.17), "C204": (3, 590.60), "C205": (3, 588.88),
    "C206": (3, 588.49), "C207": (3, 588.29), "C208": (3, 588.32),
    "R101": (19, 1650.80), "R102": (17, 1486.12), "R103": (13, 1292.68), "R104": (9, 1007.31),
    "R105": (14, 1377.11), "R106": (12, 1252.03), "R107": (10, 1104.66), "R108": (9, 960.88),
    "R109": (11, 1194.73), "R110": (10, 1118.84), "R111": (10, 1096.72), "R112": (9, 982.14),
    "R201": (4, 1252.37), "R202": (3, 1191.70), "R203": (3, 939.50), "R204": (2, 825.52), "R205": (3, 994.42),
    "R206": (3, 906.14), "R207": (2, 890.61), "R208": (2, 726.82), "R209": (3, 909.16), "R210": (3, 939.37),
    "R211": (2, 885.71),
    "RC101": (14, 1696.95), "RC102": (12, 1554.75), "RC103": (11, 1261.67), "RC104": (10, 1135.48),
    "RC105": (13, 1629.44), "RC106": (11, 1424.73), "RC107": (11, 1230.48), "RC108": (10, 1139.82),
    "RC201": (4, 1406.94), "RC202": (3, 1365.65), "RC203": (3, 1049.62), "RC204": (3, 798.46),
    "RC205": (4, 1297.65), "RC206": (3, 1146.32), "RC207": (3, 1061.14), "RC208": (3, 828.14),
}


def family(name: str) -> str:
    """C1, C2, R1, R2, RC1 or RC2."""
    return name.rstrip("0123456789") + name[len(name.rstrip("0123456789"))]


def load(path: Path) -> list[tuple[float, float, int, int, int, int]]:
    """Rows (x, y, demand, ready, due, service), depot first."""
    out = []
    with path.open() as f:
        r = csv.reader(f)
        next(r)
        for c in (c for c in r if c):
            ready, due = c[4], c[5]
            if " " in ready:  # one damaged row in that conversion (C104 #36: "0.00    1,110" = ready 0, due 1110)
                ready, head = ready.split()
                due = head + due
                print(f"{path.name}: repaired row {c[0]}: ready {ready}, due {due}")
            out.append((float(c[1]), float(c[2]), int(float(c[3])), int(float(ready)), int(float(due)),
                        int(float(c[-1]))))
    return out


def solve(rows, capacity: int, exploration: int, threads: int, vehicles: int = 25):
    """VROOM's routes (lists of place indices) and its wall time."""
    d = [[math.dist(a[:2], b[:2]) for b in rows] for a in rows]
    problem = vroom.Input()
    problem.set_durations_matrix(profile="car", matrix_input=[[round(x * SCALE) for x in row] for row in d])
    depot_due = rows[0][4] * SCALE
    problem.add_vehicle([vroom.Vehicle(v + 1, start=0, end=0, capacity=[capacity],
                                       time_window=vroom.TimeWindow(0, depot_due)) for v in range(vehicles)])
    problem.add_job([vroom.Job(i, location=i, default_service=s * SCALE, delivery=[q],
                               time_windows=[vroom.TimeWindow(ready * SCALE, due * SCALE)])
                     for i, (x, y, q, ready, due, s) in enumerate(rows) if i])
    t = time.perf_counter()
    out = problem.solve(exploration_level=exploration, nb_threads=threads).to_dict()
    wall = time.perf_counter() - t
    routes = [[s["id"] for s in r["steps"] if s["type"] == "job"] for r in out["routes"]]
    return routes, len(out.get("unassigned", [])), wall, d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--exploration", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="a name prefix, e.g. R1 or RC2")
    ap.add_argument("--fleet", choices=("25", "best"), default="25",
                    help="25 vehicles (Solomon's), or as many as the best-known solution uses (a like-for-like "
                         "distance gap; jobs that do not fit are counted as unassigned)")
    a = ap.parse_args()
    gaps, walls, by_family, short = [], [], {}, 0
    for name in sorted(BKS):
        if not name.startswith(a.only):
            continue
        rows = load(a.dir / f"{name}.csv")
        fleet = 25 if a.fleet == "25" else BKS[name][0]
        routes, missing, wall, d = solve(rows, CAPACITY[family(name)], a.exploration, a.threads, fleet)
        dist = sum(d[0][r[0]] + sum(d[x][y] for x, y in zip(r, r[1:])) + d[r[-1]][0] for r in routes if r)
        veh, best = BKS[name]
        gap = 100 * (dist - best) / best
        gaps.append(gap)
        short += bool(missing)
        walls.append(wall)
        by_family.setdefault(family(name), []).append(gap)
        print(f"{name:6} vehicles {len(routes):2} (best {veh:2}) distance {dist:8.2f} (best {best:8.2f}) "
              f"gap {gap:+6.2f} % unassigned {missing} time {wall:5.2f} s", flush=True)
    print("families: " + ", ".join(f"{f} {statistics.mean(g):+.2f} %" for f, g in by_family.items()))
    print(f"mean gap {statistics.mean(gaps):+.2f} % over {len(gaps)} instances; time per instance median "
          f"{statistics.median(walls):.2f} s, max {max(walls):.2f} s (exploration {a.exploration}, "
          f"{a.threads} threads, fleet {a.fleet}); {short} instances with unassigned customers")


if __name__ == "__main__":
    main()
