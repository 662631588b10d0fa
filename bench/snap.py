"""The snap query alone: `kerbside_locate` (what the intake calls) and the bare KNN, one connection, prepared.

Each call is timed from the client (psycopg, loopback), sequentially, at report points near loaded lamp
columns; the figures are latencies of the statement, not throughput.
"""
from __future__ import annotations

import random
import re
import statistics
import time
from pathlib import Path

import psycopg

LOCATE = "SELECT * FROM kerbside_locate(%s, %s, %s, 'street_lights')"
KNN = """SELECT a.id, a.external_ref, ST_Distance(a.geom, p.g) AS d
           FROM assets a, (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s) AS g) p
          WHERE a.layer_id = (SELECT id FROM asset_layers WHERE name = 'street_lights')
          ORDER BY a.geom <-> p.g LIMIT 1"""


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def measure(url: str, coords: Path, srid: int, calls: int = 3000, warm: int = 300, seed: int = 3) -> dict:
    """{'locate': {...}, 'knn': {...}} with p50/p95/p99/mean in ms; the two statements alternate call by call."""
    pts = [tuple(map(float, line.split())) for line in coords.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    out: dict[str, list[float]] = {"locate": [], "knn": []}
    with psycopg.connect(url, prepare_threshold=0) as conn:
        for i in range(warm + calls):
            lat, lon = rng.choice(pts)
            for name, sql in (("locate", LOCATE), ("knn", KNN)) if i % 2 else (("knn", KNN), ("locate", LOCATE)):
                t0 = time.perf_counter()
                rows = conn.execute(sql, (lon, lat, srid), prepare=True).fetchall()
                dt = (time.perf_counter() - t0) * 1000
                if not rows:
                    raise RuntimeError(f"{name} returned nothing at {lat} {lon}")
                if i >= warm:
                    out[name].append(dt)
        # Work done per call, free of the shared machine's noise: buffers the KNN touches, at the first 50 points.
        bufs = []
        for lat, lon in pts[:50]:
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + KNN,
                                                          (lon, lat, srid)))
            m = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
            bufs.append(int(m.group(1)) + int(m.group(2) or 0) if m else 0)
        conn.rollback()
    res = {k: {"p50": statistics.median(v), "p95": _pct(v, 0.95), "p99": _pct(v, 0.99), "mean": statistics.fmean(v),
               "calls": len(v)} for k, v in out.items()}
    res["knn"]["buffers"] = statistics.median(bufs)
    return res
