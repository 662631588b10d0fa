"""Build the routable road graph (pgRouting) from the roads layer, and summarise its connected components.

Nodes are segment ends clustered within `NODE_TOLERANCE_M`. OS Open Map Local draws some side roads
ending on the middle of the road they join (a T-junction without a vertex there): those segments are
split where another segment's end lies within the tolerance, else the side road would be an island.
Crossings without an end there (bridges, underpasses) are not joined. Cost is seconds from length and
the road-class speed; a `oneway` attribute (yes/true/1: along the line, -1: against it) forbids the other
direction (cost -1, pgRouting's "no edge"). The B&NES roads file carries no one-way data, so every edge
is two-way there.
"""
from __future__ import annotations

import hashlib
import json
import time

from sqlalchemy import text
from sqlalchemy.engine import Connection

NODE_TOLERANCE_M = 1.0
GRAPH_VERSION = "2"  # 2: the summary names each small component's longest road
# Urban-ish average speeds (km/h) by OS road classification; Bath's centre is 20 mph and congested.
SPEED_KMH = {
    "Primary Road": 56.0, "A Road": 40.0, "B Road": 35.0, "Minor Road": 32.0, "Local Road": 24.0,
    "Local Access Road": 16.0, "Restricted Local Access Road": 12.0, "Shared Use Carriageway": 8.0,
}
DEFAULT_SPEED_KMH = 20.0
MAIN_SHARE_MIN = 0.99


def speed_for(classification: str | None) -> float:
    """Speed (km/h) for an OS road classification ("A Road, Collapsed Dual Carriageway" → A Road)."""
    base = (classification or "").split(",")[0].strip()
    return SPEED_KMH.get(base, DEFAULT_SPEED_KMH)


def _digest(conn: Connection, layer: str) -> str:
    sha = conn.execute(text("SELECT source_sha256 FROM asset_layers WHERE name = :n"), {"n": layer}).scalar()
    cfg = json.dumps([GRAPH_VERSION, NODE_TOLERANCE_M, SPEED_KMH, DEFAULT_SPEED_KMH, sha], sort_keys=True)
    return hashlib.sha256(cfg.encode()).hexdigest()


def build_graph(conn: Connection, layer: str = "roads", *, force: bool = False) -> dict:
    """(Re)build road_nodes/road_edges from `layer` in the caller's transaction; returns the summary."""
    t0 = time.perf_counter()
    digest = _digest(conn, layer)
    last = conn.execute(text("SELECT summary FROM import_runs WHERE entry = 'road_network' "
                             "AND summary->>'status' = 'imported' ORDER BY id DESC LIMIT 1")).scalar()
    have = conn.execute(text("SELECT count(*) FROM road_edges")).scalar_one()
    if not force and last and last.get("source_sha256") == digest and have == last.get("imported"):
        return {**last, "status": "skipped", "seconds": round(time.perf_counter() - t0, 3)}
    speeds = json.dumps({k: v for k, v in SPEED_KMH.items()})
    conn.execute(text("TRUNCATE road_edges, road_nodes"))
    conn.execute(text("""
        CREATE TEMP TABLE _seg ON COMMIT DROP AS
        SELECT row_number() OVER () AS sid, asset_id, cls, oneway, g FROM (
          SELECT a.id AS asset_id, coalesce(a.attributes->>'classification', '') AS cls,
                 lower(coalesce(a.attributes->>'oneway', '')) AS oneway, (ST_Dump(a.geom)).geom AS g
            FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = :layer) q
        WHERE ST_Length(g) > 0"""), {"layer": layer})
    conn.execute(text("CREATE INDEX ON _seg USING gist (g)"))
    conn.execute(text("""
        CREATE TEMP TABLE _end ON COMMIT DROP AS
        SELECT sid, ST_StartPoint(g) AS p FROM _seg UNION ALL SELECT sid, ST_EndPoint(g) FROM _seg"""))
    conn.execute(text("CREATE INDEX ON _end USING gist (p)"))
    # T-junctions: another segment's end within tolerance of this segment's interior splits it there.
    conn.execute(text("""
        CREATE TEMP TABLE _piece ON COMMIT DROP AS
        WITH cut AS (
          SELECT s.sid, ST_LineLocatePoint(s.g, e.p) AS f FROM _seg s
            JOIN _end e ON e.sid <> s.sid AND ST_DWithin(s.g, e.p, :tol)
           WHERE NOT ST_DWithin(ST_StartPoint(s.g), e.p, :tol) AND NOT ST_DWithin(ST_EndPoint(s.g), e.p, :tol)
          UNION SELECT sid, 0 FROM _seg UNION SELECT sid, 1 FROM _seg),
        span AS (SELECT sid, f, lead(f) OVER (PARTITION BY sid ORDER BY f) AS nf FROM cut)
        SELECT row_number() OVER (ORDER BY s.sid, span.f) AS id, s.sid, s.asset_id, s.cls, s.oneway,
               ST_LineSubstring(s.g, span.f, span.nf) AS g
          FROM span JOIN _seg s USING (sid) WHERE span.nf IS NOT NULL AND span.nf > span.f"""),
                 {"tol": NODE_TOLERANCE_M})
    conn.execute(text("DELETE FROM _piece WHERE ST_Length(g) = 0"))
    conn.execute(text("""
        CREATE TEMP TABLE _pend ON COMMIT DROP AS
        SELECT id, k, p, ST_ClusterDBSCAN(p, eps := :tol, minpoints := 1) OVER () AS c FROM (
          SELECT id, 0 AS k, ST_StartPoint(g) AS p FROM _piece
          UNION ALL SELECT id, 1, ST_EndPoint(g) FROM _piece) q"""),
                 {"tol": NODE_TOLERANCE_M})
    conn.execute(text("""
        INSERT INTO road_nodes (id, geom, component, main)
        SELECT c + 1, ST_Centroid(ST_Collect(p)), 0, false FROM _pend GROUP BY c"""))
    conn.execute(text("""
        INSERT INTO road_edges (id, asset_id, source, target, cost, reverse_cost, length_m, road_class, speed_kmh, geom)
        SELECT p.id, p.asset_id, s.c + 1, t.c + 1,
               CASE WHEN p.oneway = '-1' THEN -1 ELSE ST_Length(p.g) / (sp.kmh / 3.6) END,
               CASE WHEN p.oneway IN ('yes', 'true', '1') THEN -1 ELSE ST_Length(p.g) / (sp.kmh / 3.6) END,
               ST_Length(p.g), p.cls, sp.kmh, p.g
          FROM _piece p
          JOIN _pend s ON s.id = p.id AND s.k = 0 JOIN _pend t ON t.id = p.id AND t.k = 1
          CROSS JOIN LATERAL (SELECT coalesce((CAST(:speeds AS jsonb) ->> split_part(p.cls, ',', 1))::float,
                                              :default) AS kmh) sp"""),
                 {"speeds": speeds, "default": DEFAULT_SPEED_KMH})
    # Components of the undirected graph (a one-way street still joins its ends).
    conn.execute(text("""
        UPDATE road_nodes n SET component = cc.component FROM pgr_connectedComponents(
          'SELECT id, source, target, 1.0::float8 AS cost, 1.0::float8 AS reverse_cost FROM road_edges') cc
         WHERE cc.node = n.id"""))
    rows = conn.execute(text("""
        SELECT n.component, count(*) AS pieces, count(DISTINCT p.sid) AS segments,
               round(sum(e.length_m)::numeric, 0) AS metres, min(e.asset_id) AS example,
               (array_agg(coalesce(a.name, a.attributes->>'classification', a.external_ref)
                          ORDER BY e.length_m DESC))[1] AS street
          FROM road_edges e JOIN _piece p ON p.id = e.id JOIN road_nodes n ON n.id = e.source
          JOIN assets a ON a.id = e.asset_id
         GROUP BY n.component ORDER BY 3 DESC, 2 DESC""")).all()
    main = rows[0].component if rows else None
    conn.execute(text("UPDATE road_nodes SET main = (component = :m)"), {"m": main})
    segments = conn.execute(text("SELECT count(*) FROM _seg")).scalar_one()
    cuts = conn.execute(text("SELECT count(*) - count(DISTINCT sid) FROM _piece")).scalar_one()
    nodes = conn.execute(text("SELECT count(*) FROM road_nodes")).scalar_one()
    edges = conn.execute(text("SELECT count(*) FROM road_edges")).scalar_one()
    oneway = conn.execute(text("SELECT count(*) FROM road_edges WHERE cost < 0 OR reverse_cost < 0")).scalar_one()
    main_segments = rows[0].segments if rows else 0
    rest = [{"component": int(r.component), "segments": int(r.segments), "metres": float(r.metres),
             "example_asset_id": int(r.example), "street": r.street} for r in rows[1:]]
    share = main_segments / segments if segments else 0.0
    return {"status": "imported", "imported": edges, "nodes": nodes, "edges": edges, "segments": segments,
            "t_junction_splits": int(cuts), "one_way_edges": oneway, "components": len(rows),
            "main_segments": main_segments, "main_share": round(share, 4), "main_ok": share >= MAIN_SHARE_MIN,
            "other_components": rest[:20], "other_segments": segments - main_segments,
            "node_tolerance_m": NODE_TOLERANCE_M, "source_sha256": digest,
            "seconds": round(time.perf_counter() - t0, 3)}
