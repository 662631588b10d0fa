"""Places to road nodes, and travel-time matrices between nodes (pgRouting), cached per day in the process.

The cache is keyed by day and by the road graph's build digest (a rebuilt graph starts afresh) and holds
cells, so a re-plan or an urgent job computes only the rows and columns of nodes it has not seen that day.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date

from sqlalchemy import text
from sqlalchemy.orm import Session

# A place further than this from the main road network is "off the network" (fields, the river…).
MAX_SNAP_M = 1000.0
# Matrix cell for a pair with no path (a one-way trap): never chosen by the solver when avoidable.
UNREACHABLE_S = 24 * 3600
EDGES_SQL = "SELECT id, source, target, cost, reverse_cost FROM road_edges"
# The same graph with every edge turned round: one-to-many on it gives many-to-one on the real one.
REVERSED_SQL = "SELECT id, source, target, reverse_cost AS cost, cost AS reverse_cost FROM road_edges"
KEEP_DAYS = 3

_lock = threading.Lock()
_cache: dict[tuple[str, date, str], dict[tuple[int, int], int]] = {}


@dataclass(frozen=True)
class Snap:
    """The road node nearest to a place, or None with the distance to it when too far."""

    node: int | None
    distance_m: float | None


def graph_digest(session: Session) -> str | None:
    """The current road graph's build digest (None: no graph built)."""
    if not session.execute(text("SELECT EXISTS (SELECT 1 FROM road_nodes WHERE main)")).scalar_one():
        return None
    return session.execute(text(
        "SELECT coalesce((SELECT summary->>'source_sha256' FROM import_runs WHERE entry = 'road_network' "
        "AND summary->>'status' = 'imported' ORDER BY id DESC LIMIT 1), 'unrecorded')")).scalar_one()


def snap_points(session: Session, geoms_sql: str, params: dict) -> dict:
    """Nearest main-component node for each row (key, geom) of `geoms_sql` (storage CRS), KNN."""
    rows = session.execute(text(f"""
        SELECT q.key, n.id, ST_Distance(q.geom, n.geom) AS d FROM ({geoms_sql}) q
        LEFT JOIN LATERAL (SELECT id, geom FROM road_nodes WHERE main ORDER BY geom <-> q.geom LIMIT 1) n ON true
    """), params).all()
    return {k: (Snap(n, d) if n is not None and d <= MAX_SNAP_M else Snap(None, d)) for k, n, d in rows}


def _cells(session: Session, key: tuple[str, date, str]) -> dict[tuple[int, int], int]:
    with _lock:
        for old in [k for k in _cache if k[0] == key[0] and (k[2] != key[2] or abs((k[1] - key[1]).days) >= KEEP_DAYS)]:
            del _cache[old]
        return _cache.setdefault(key, {})


def _run(session: Session, sql: str, params: dict) -> list[tuple[int, int, float]]:
    return [tuple(r) for r in session.execute(text(sql), params).all()]


def travel_matrix(session: Session, day: date, nodes: list[int], digest: str) -> list[list[int]]:
    """Seconds between every pair of `nodes` (rows: from, columns: to) for `day`, computing only what is missing.

    Nodes never seen this day: all of them at once with pgr_dijkstraCostMatrix (many-to-many Dijkstra),
    else one Dijkstra from each new node on the graph and one on the reversed graph (its column).
    """
    key = (str(session.get_bind().engine.url), day, digest)
    cells = _cells(session, key)
    distinct = sorted(set(nodes))
    with _lock:
        known = {a for a, _ in cells}
    new = [n for n in distinct if n not in known]
    everyone = sorted(known | set(distinct))
    if len(new) > 1 and 2 * len(new) >= len(everyone):
        # Mostly new: one Dijkstra per node, whole matrix (the cache stays complete among seen nodes).
        found = _run(session, "SELECT start_vid, end_vid, agg_cost FROM pgr_dijkstraCostMatrix("
                              ":edges, CAST(:n AS bigint[]), directed => true)", {"edges": EDGES_SQL, "n": everyone})
    elif new:
        # A few new: rows from them to every seen node, and columns back (reversed graph).
        targets = everyone
        rows = _run(session, "SELECT start_vid, end_vid, agg_cost FROM pgr_dijkstraCost("
                             ":edges, CAST(:s AS bigint[]), CAST(:t AS bigint[]), directed => true)",
                    {"edges": EDGES_SQL, "s": new, "t": targets})
        cols = _run(session, "SELECT end_vid, start_vid, agg_cost FROM pgr_dijkstraCost("
                             ":edges, CAST(:s AS bigint[]), CAST(:t AS bigint[]), directed => true)",
                    {"edges": REVERSED_SQL, "s": new, "t": targets})
        found = rows + cols
    else:
        found = []
    with _lock:
        for n in new:
            cells.setdefault((n, n), 0)
        for a, b, c in found:
            cells[(a, b)] = int(-(-c // 1))
        return [[0 if a == b else cells.get((a, b), UNREACHABLE_S) for b in nodes] for a in nodes]
