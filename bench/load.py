"""Scale data for the benchmarks, made in SQL (generate_series; nothing row by row from Python).

- `grow_assets`: synthetic lamp columns (refs BL-n) on the real `street_lights` layer, uniform inside the council
  boundary, until the layer holds the wanted number of them. Large additions drop the GiST index and build it
  again afterwards (one sorted build is much faster than millions of inserts into the tree).
- `add_jobs`: open jobs (graffiti, fly-tipping, abandoned vehicles: categories without an asset layer, so the
  street-light intake never attaches to them) at uniform points inside the boundary, with SLA deadlines in the
  future, references from the same sequence the intake uses.
"""
from __future__ import annotations

import time

import psycopg

LAYER = "street_lights"
PREFIX = "BL-"
GIST = "ix_assets_layer_geom"

_BOUNDARY = """
CREATE TEMP TABLE IF NOT EXISTS _bench_boundary AS
  SELECT ST_Subdivide(geom, 64) AS g FROM areas WHERE kind = 'boundary';
CREATE INDEX IF NOT EXISTS _bench_boundary_g ON _bench_boundary USING gist (g);
ANALYZE _bench_boundary;
"""


def _box(cur) -> tuple[float, float, float, float, float]:
    """(x0, y0, width, height, share of the box inside the boundary) in the storage CRS."""
    cur.execute(_BOUNDARY)
    cur.execute("""SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e) - ST_XMin(e), ST_YMax(e) - ST_YMin(e),
                          (SELECT sum(ST_Area(g)) FROM _bench_boundary) / ST_Area(e::geometry)
                     FROM (SELECT ST_Extent(g) AS e FROM _bench_boundary) s""")
    return cur.fetchone()


def _points_sql(n: int, share: float) -> str:
    """SQL yielding up to n rows (i, p): uniform points of the box (params x0, y0, w, h, srid) inside the boundary."""
    m = int(n / max(share, 0.01) * 1.08) + 1000  # enough candidates that n land inside
    return f"""SELECT row_number() OVER () AS i, c.p FROM (
                 SELECT ST_SetSRID(ST_MakePoint(%(x0)s + random() * %(w)s, %(y0)s + random() * %(h)s), %(srid)s) AS p
                   FROM generate_series(1, {m})) c
                WHERE EXISTS (SELECT 1 FROM _bench_boundary b WHERE ST_Intersects(b.g, c.p))
                LIMIT {int(n)}"""


def bench_assets(conn: psycopg.Connection) -> int:
    """How many synthetic bench lamp columns the layer holds."""
    return conn.execute("SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                        "WHERE l.name = %s AND a.external_ref LIKE %s", (LAYER, PREFIX + "%")).fetchone()[0]


def grow_assets(conn: psycopg.Connection, target: int, srid: int, chunk: int = 1_000_000, progress=None) -> float:
    """Add synthetic lamp columns until `target` are loaded; seconds taken. `progress(done, target)` is called."""
    t0 = time.perf_counter()
    have = bench_assets(conn)
    if have >= target:
        return 0.0
    rebuild = target - have > 300_000
    with conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        x0, y0, w, h, share = _box(cur)
        layer = cur.execute("SELECT id FROM asset_layers WHERE name = %s", (LAYER,)).fetchone()[0]
        if rebuild:
            cur.execute(f"DROP INDEX IF EXISTS {GIST}")
        conn.commit()
        while have < target:
            n = min(chunk, target - have)
            cur.execute(f"""
                INSERT INTO assets (layer_id, external_ref, ref_derived, geom, attributes, maintainer, synthetic)
                SELECT %(layer)s, %(prefix)s || lpad((%(start)s + i)::text, 8, '0'), false, p,
                       '{{"synthetic": true, "bench": true}}'::jsonb, 'street_lighting', true
                  FROM ({_points_sql(n, share)}) pts""",
                        {"x0": x0, "y0": y0, "w": w, "h": h, "srid": srid, "layer": layer, "prefix": PREFIX,
                         "start": have})
            conn.commit()
            have += cur.rowcount
            if progress:
                progress(have, target)
        if rebuild:
            cur.execute("SET maintenance_work_mem = '512MB'")
            cur.execute(f"CREATE INDEX {GIST} ON assets USING gist (layer_id, geom)")
        cur.execute("SELECT kerbside_layer_extent(%s)", (layer,))  # the extent /ogc shows (migration 0012)
        conn.commit()
    conn.autocommit = True
    try:
        conn.execute("VACUUM (ANALYZE) assets")
    finally:
        conn.autocommit = False
    return time.perf_counter() - t0


def add_jobs(conn: psycopg.Connection, n: int, srid: int, chunk: int = 250_000, progress=None) -> float:
    """Add n open jobs (no asset) with at-risk times 6–23 days and deadlines 12–29 days ahead; seconds taken."""
    t0 = time.perf_counter()
    done = 0
    with conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        x0, y0, w, h, share = _box(cur)
        while done < n:
            k = min(chunk, n - done)
            cur.execute(f"""
                INSERT INTO jobs (reference, category_code, geom, priority, status, sla_policy, sla_started_at,
                                  due_at, risk_at, paused_seconds, demand_count, description, created_at, updated_at)
                SELECT kerbside_reference('J', nextval('job_reference_seq')),
                       (ARRAY['graffiti', 'fly_tipping', 'abandoned_vehicle'])[1 + (i %% 3)], p, 'normal', 'new',
                       '{{"kind": "hours", "hours": 720}}'::jsonb, t, t + interval '720 hours',
                       t + interval '576 hours', 0, 1, '', t, t
                  FROM (SELECT i, p, now() - interval '18 days' + random() * interval '17 days' AS t
                          FROM ({_points_sql(k, share)}) pts) s""",
                        {"x0": x0, "y0": y0, "w": w, "h": h, "srid": srid})
            conn.commit()
            done += cur.rowcount
            if progress:
                progress(done, n)
    conn.autocommit = True
    try:
        conn.execute("VACUUM (ANALYZE) jobs")
    finally:
        conn.autocommit = False
    return time.perf_counter() - t0
