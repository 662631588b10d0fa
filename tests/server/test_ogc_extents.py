"""Asset layers keep their extent (migration 0012): written by the GIS import and the scale loader, read by /ogc
(which no longer scans a layer's assets for it)."""
from __future__ import annotations

import io
import json

import pytest
import yaml
from rich.console import Console
from sqlalchemy import text

from gis_data.synthetic import load_scale_layer
from server.assets.importer import import_all
from server.ogc import service

QUIET = Console(file=io.StringIO())
LAYER = "tmp_extent_test"


@pytest.fixture(autouse=True)
def fresh_ogc_cache():
    """/ogc keeps layers and extents for five minutes per process: start and end each test without them."""
    service._cache.clear()
    yield
    service._cache.clear()


def stored_and_actual(conn, layer: str):
    return conn.execute(text("""
        SELECT array[l.extent_xmin, l.extent_ymin, l.extent_xmax, l.extent_ymax],
               (SELECT array[ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)]
                  FROM (SELECT ST_Extent(a.geom) AS e FROM assets a WHERE a.layer_id = l.id) s)
          FROM asset_layers l WHERE l.name = :n"""), {"n": layer}).one()


def crs84_box(conn, box) -> list[float]:
    """What /ogc shows for a storage-CRS box: its CRS84 bounds, 1e-4 of margin, 6 decimals."""
    lo = conn.execute(text("""
        SELECT ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g) FROM (SELECT ST_Transform(ST_Segmentize(
            ST_MakeEnvelope(:x0, :y0, :x1, :y1, 27700), 500), 4326) AS g) s"""),
        dict(zip(("x0", "y0", "x1", "y1"), box))).one()
    return [round(lo[0] - 1e-4, 6), round(lo[1] - 1e-4, 6), round(lo[2] + 1e-4, 6), round(lo[3] + 1e-4, 6)]


def test_every_imported_layer_keeps_the_extent_of_its_assets(db):
    names = db.scalars(text("SELECT name FROM asset_layers WHERE name NOT LIKE 'tmp_%'")).all()
    assert {"street_lights", "roads", "benches"} <= set(names)
    for name in names:
        stored, actual = stored_and_actual(db, name)
        assert stored == actual and None not in stored, name


def test_ogc_shows_the_stored_extent(client, db):
    real = client.get("/ogc/collections/benches").json()["extent"]["spatial"]["bbox"][0]
    stored, _ = stored_and_actual(db, "benches")
    assert real == crs84_box(db, stored)
    # Whatever the table says is what /ogc shows: it is read, not recomputed from the assets.
    db.execute(text("UPDATE asset_layers SET extent_xmin = 370000, extent_ymin = 160000, extent_xmax = 371000, "
                    "extent_ymax = 161000 WHERE name = 'benches'"))
    service._cache.clear()
    shown = client.get("/ogc/collections/benches").json()["extent"]["spatial"]["bbox"][0]
    assert shown == crs84_box(db, (370000, 160000, 371000, 161000)) != real
    listed = {c["id"]: c for c in client.get("/ogc/collections").json()["collections"]}
    assert listed["benches"]["extent"]["spatial"]["bbox"][0] == shown


def _point(ref: str, lon: float, lat: float) -> dict:
    return {"type": "Feature", "properties": {"id": ref}, "geometry": {"type": "Point", "coordinates": [lon, lat]}}


@pytest.fixture
def layer_file(engine, tmp_path):
    """Write a one-layer manifest and its GeoJSON; the layer is removed afterwards (the import commits)."""

    def write(*features) -> dict:
        (tmp_path / "points.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
        (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"streets_layer": "roads", "entries": [{
            "entry": "tmp_extent_entry", "kind": "asset_layer", "target": LAYER, "file": "points.geojson",
            "id": {"field": "id"}, "name": "{id}"}]}))
        return {"manifest": tmp_path / "manifest.yaml", "data_dir": tmp_path}

    yield write
    with engine.begin() as c:
        c.execute(text("DELETE FROM asset_layers WHERE name = :n"), {"n": LAYER})
        c.execute(text("DELETE FROM import_runs WHERE entry = 'tmp_extent_entry'"))


def test_the_import_writes_the_extent_and_a_moved_asset_stays_findable(engine, client, layer_file):
    import_all(**layer_file(_point("a", -2.36, 51.38), _point("b", -2.35, 51.39)), console=QUIET, force=True)
    with engine.connect() as c:
        stored, actual = stored_and_actual(c, LAYER)
    assert stored == actual and stored[0] < stored[2] and stored[1] < stored[3]
    # "b" moves well outside the old extent: a bbox around its new place is clipped to the stored extent
    # before the query, so a stale extent would hide it.
    import_all(**layer_file(_point("a", -2.36, 51.38), _point("b", -2.45, 51.33)), console=QUIET, force=True)
    with engine.connect() as c:
        moved, actual = stored_and_actual(c, LAYER)
    assert moved == actual and moved[0] < stored[0] and moved[1] < stored[1]
    found = client.get(f"/ogc/collections/{LAYER}/items", params={"bbox": "-2.4505,51.3295,-2.4495,51.3305"}).json()
    assert [f["id"] for f in found["features"]] == ["b"] and found["numberMatched"] == 1
    bbox = client.get(f"/ogc/collections/{LAYER}").json()["extent"]["spatial"]["bbox"][0]
    assert bbox[0] < -2.45 < -2.36 < bbox[2] and bbox[1] < 51.33 < 51.38 < bbox[3]


def test_the_scale_loader_writes_the_extent(engine):
    try:
        load_scale_layer(200, layer="tmp_extent_scale", bbox=(-2.40, 51.35, -2.38, 51.36))
        with engine.connect() as c:
            stored, actual = stored_and_actual(c, "tmp_extent_scale")
            n = c.execute(text("SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                               "WHERE l.name = 'tmp_extent_scale'")).scalar_one()
        assert n == 200 and stored == actual and None not in stored
    finally:
        with engine.begin() as c:
            c.execute(text("DELETE FROM asset_layers WHERE name = 'tmp_extent_scale'"))
