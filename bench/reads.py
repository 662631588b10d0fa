"""Reads under load: a job by reference, and OGC API Features items (a bbox holding ~1,000 open jobs) from
Kerbside and from pygeoapi (its PostgreSQL provider on the same `jobs` table, run from .venv-bench).

The request paths are written to files that bench/get_paths.lua picks from at random, so both OGC servers get
the same bboxes. pygeoapi is configured here (bench/pygeoapi.yml is written from PYGEOAPI_CONFIG at run
time: the database password is not committed) with the storage CRS of the table, the same page size (1,000),
and the same properties our jobs collection returns that exist as columns.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-bench"
OPEN = "('triage','new','assigned','sent','accepted','scheduled','in_progress','on_hold')"

PYGEOAPI_CONFIG = """server:
  bind: {{host: 127.0.0.1, port: 5000}}
  url: http://127.0.0.1:5000
  mimetype: application/json; charset=UTF-8
  encoding: utf-8
  languages: [en-GB]
  limits: {{default_items: 100, max_items: 1000}}
  map:
    url: 'https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png'
    attribution: OSM
logging:
  level: ERROR
metadata:
  identification:
    title: Kerbside bench
    description: pygeoapi on the Kerbside jobs table
    keywords: [bench]
    keywords_type: theme
    terms_of_service: https://example.org
    url: https://example.org
  license: {{name: OGL-UK-3.0, url: https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/}}
  provider: {{name: Kerbside, url: https://example.org}}
  contact: {{name: bench, position: bench, address: x, city: Bath, stateorprovince: BANES, postalcode: BA1,
             country: UK, phone: '+44', fax: '+44', email: bench@example.org, url: https://example.org,
             hours: 24, instructions: none, role: pointOfContact}}
resources:
  jobs:
    type: collection
    title: Open jobs
    description: Kerbside jobs
    keywords: [jobs]
    extents:
      spatial: {{bbox: [-2.71, 51.27, -2.27, 51.44], crs: http://www.opengis.net/def/crs/OGC/1.3/CRS84}}
    providers:
      - type: feature
        name: PostgreSQL
        data: {{host: 127.0.0.1, port: {port}, dbname: {dbname}, user: kerbside, password: {password},
               search_path: [public]}}
        id_field: reference
        table: jobs
        geom_field: geom
        storage_crs: http://www.opengis.net/def/crs/EPSG/0/{srid}
        crs: [http://www.opengis.net/def/crs/OGC/1.3/CRS84, http://www.opengis.net/def/crs/EPSG/0/{srid}]
        properties: [reference, category_code, status, priority, street, due_at, created_at, demand_count]
"""


def job_paths(conn: psycopg.Connection, path: Path, k: int = 20_000) -> int:
    """k random job references as /api/v1/jobs/{ref} lines."""
    refs = [r[0] for r in conn.execute("SELECT reference FROM jobs TABLESAMPLE SYSTEM (5) LIMIT %s", (k,))]
    path.write_text("".join(f"/api/v1/jobs/{r}\n" for r in refs))
    return len(refs)


def bboxes(conn: psycopg.Connection, n: int = 20, features: int = 1000, layer: str | None = None) -> list[dict]:
    """n CRS84 bboxes, each the extent of the `features` open jobs (or lamp columns of `layer`) nearest a random
    one; with how many the bbox holds (≥ features: a box around a circle holds a little more)."""
    out = []
    if layer is None:
        src, cond = "jobs", f"status IN {OPEN}"
    else:
        src, cond = "assets", f"layer_id = (SELECT id FROM asset_layers WHERE name = '{layer}')"
    centres = [r[0] for r in conn.execute(f"SELECT geom FROM {src} TABLESAMPLE SYSTEM (1) WHERE {cond} LIMIT %s",
                                          (n,))]
    for c in centres:
        box = conn.execute(f"""SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
                                 FROM (SELECT ST_Transform(ST_SetSRID(ST_Extent(geom)::geometry,
                                                                      ST_SRID(%(c)s::geometry)), 4326) AS e
                                         FROM (SELECT geom FROM {src} WHERE {cond}
                                                ORDER BY geom <-> %(c)s::geometry LIMIT {features}) k) s""",
                           {"c": c}).fetchone()
        held = conn.execute(f"""SELECT count(*) FROM {src} WHERE {cond} AND ST_Intersects(geom,
                                  ST_Transform(ST_MakeEnvelope(%s, %s, %s, %s, 4326), ST_SRID(%s::geometry)))""",
                            (*box, c)).fetchone()[0]
        out.append({"bbox": ",".join(f"{v:.6f}" for v in box), "held": held})
    return out


def items_paths(boxes: list[dict], path: Path, prefix: str, collection: str = "jobs") -> None:
    """The OGC items requests for the bboxes (limit 1,000, GeoJSON), under `prefix` ('/ogc' or '')."""
    path.write_text("".join(f"{prefix}/collections/{collection}/items?bbox={b['bbox']}&limit=1000&f=json\n"
                            for b in boxes))


def pygeoapi_env(db: str, password: str, port: int, srid: int, work: Path) -> dict[str, str]:
    """Write pygeoapi's config and OpenAPI document for the bench database; the env that runs it."""
    import os

    cfg = work / "pygeoapi.yml"
    cfg.write_text(PYGEOAPI_CONFIG.format(port=port, dbname=db, password=password, srid=srid))
    cfg.chmod(0o600)
    api = work / "pygeoapi-openapi.yml"
    env = {**os.environ, "PYGEOAPI_CONFIG": str(cfg), "PYGEOAPI_OPENAPI": str(api)}
    done = subprocess.run([str(VENV / "bin" / "pygeoapi"), "openapi", "generate", str(cfg), "--output-file",
                           str(api)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pygeoapi openapi generate failed: {done.stderr[-2000:]}")
    return env
