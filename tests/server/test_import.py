"""GIS import: counts against the real sources, stable refs, idempotency, malformed files, the generators."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import typer
import yaml
from rich.console import Console
from shapely import LineString, Polygon
from sqlalchemy import text
from typer.testing import CliRunner

from gis_data.synthetic import BANES_BBOX, generate_scale_points, street_lights
from server.assets.cli import import_gis
from server.assets.importer import ImportFailed, import_all
from server.assets.sources import Entry, parse_crs, prepare, read_rows
from server.config import get_settings

QUIET = Console(file=io.StringIO())
TMP_LAYER = "tmp_import_test"


def _one(engine, sql: str, **params):
    with engine.connect() as c:
        return c.execute(text(sql), params).one()


def _layer_count(engine, layer: str) -> int:
    return _one(engine, "SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = :n",
                n=layer)[0]


def _snapshot(engine) -> dict:
    """Per layer: row count and a digest of every (ref, geometry, ward, street, updated_at); areas likewise."""
    with engine.connect() as c:
        layers = c.execute(text("""
            SELECT l.name, count(*), md5(string_agg(a.external_ref || ST_AsEWKB(a.geom)::text || coalesce(a.ward_id, 0)
                   || coalesce(a.street, '') || a.updated_at::text, ',' ORDER BY a.external_ref))
            FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name NOT LIKE 'tmp_%'
            GROUP BY l.name""")).all()
        areas = c.execute(text("SELECT kind, count(*), md5(string_agg(id || code || ST_AsEWKB(geom)::text, ',' "
                               "ORDER BY code)) FROM areas GROUP BY kind")).all()
        runs = c.execute(text("SELECT count(*) FROM import_runs WHERE entry NOT LIKE 'tmp_%'")).scalar_one()
    return {"layers": {n: (k, d) for n, k, d in layers}, "areas": {n: (k, d) for n, k, d in areas}, "runs": runs}


@pytest.fixture(scope="module")
def imported(engine):
    """The full import as `server.cli setup` left it, re-run once here (a no-op) to get its summaries."""
    return {s.entry: s for s in import_all(console=QUIET)}


# --- counts against the real sources ---------------------------------------------------------------

def test_areas_boundary_and_33_wards_with_exactly_one_repaired(engine, imported):
    assert _one(engine, "SELECT count(*) FROM areas WHERE kind = 'boundary'")[0] == 1
    n, repaired, invalid, empty = _one(engine, "SELECT count(*), count(*) FILTER (WHERE repaired), "
                                       "count(*) FILTER (WHERE NOT ST_IsValid(geom)), count(*) FILTER "
                                       "(WHERE ST_IsEmpty(geom)) FROM areas WHERE kind = 'ward'")
    assert (n, repaired, invalid, empty) == (33, 1, 0, 0)
    assert _one(engine, "SELECT code FROM areas WHERE kind = 'ward' AND repaired")[0] == "bathavon-south"
    # The repaired ward kept its area (repair, not drop): B&NES wards tile the council boundary.
    ratio = _one(engine, "SELECT (SELECT sum(ST_Area(geom)) FROM areas WHERE kind = 'ward') / "
                         "(SELECT ST_Area(geom) FROM areas WHERE kind = 'boundary')")[0]
    assert 0.97 < ratio < 1.03


def test_layer_counts_match_the_sources(engine, imported):
    expected = {"roads": 9015, "grit_bins": 442, "litter_bins": 302 + 1255, "dog_bins": 86, "benches": 560,
                "picnic_tables": 43, "recycling_bins": 11, "camden_street_lights": 9527}
    assert {k: _layer_count(engine, k) for k in expected} == expected
    lights = _layer_count(engine, "street_lights")
    assert 10_000 <= lights <= 30_000
    assert imported["roads"].rows_read == 9015 and imported["camden_street_lights"].imported == 9527


def test_grit_bin_duplicates_are_reported_with_examples_and_kept(engine, imported):
    s = imported["grit_bins"]
    assert s.duplicate_ids == 2
    assert any(x.startswith("235 ×2 (feature") for x in s.duplicate_examples)
    assert any(x.startswith("380 ×2 (feature") for x in s.duplicate_examples)
    assert s.without_id == 19  # 18 empty feature_id plus one "`"
    refs = {r for (r,) in _rows(engine, "SELECT external_ref FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                                        "WHERE l.name = 'grit_bins' AND external_ref LIKE '380%'")}
    assert refs == {"380", "380~2"}


def _rows(engine, sql: str, **params):
    with engine.connect() as c:
        return c.execute(text(sql), params).all()


def test_a_real_grit_bin_round_trips_ref_and_location(engine):
    src = json.loads((get_settings().gis_data_dir / "banes/banes_grit_bins.geojson").read_text())
    feat = next(f for f in src["features"] if f["properties"]["feature_id"] == "208")
    lon, lat = feat["geometry"]["coordinates"]
    ref, name, glon, glat, street, ward = _one(engine, """
        SELECT a.external_ref, a.name, ST_X(ST_Transform(a.geom, 4326)), ST_Y(ST_Transform(a.geom, 4326)),
               a.street, w.name FROM assets a JOIN asset_layers l ON l.id = a.layer_id
        LEFT JOIN areas w ON w.id = a.ward_id WHERE l.name = 'grit_bins' AND a.external_ref = '208'""")
    assert ref == "208" and name == feat["properties"]["feature_lo"]
    assert math.isclose(glon, lon, abs_tol=1e-7) and math.isclose(glat, lat, abs_tol=1e-7)
    assert street == "Gloucester Road" and ward


def test_every_banes_asset_has_a_ward_and_a_street(engine, imported):
    missing = _rows(engine, """
        SELECT l.name, count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id
        WHERE l.name <> 'camden_street_lights' AND l.name NOT LIKE 'tmp_%' AND l.name NOT LIKE 'bench%'
          AND (a.ward_id IS NULL OR a.street IS NULL) GROUP BY l.name""")
    assert missing == []
    # Roads carry their own name as their street.
    assert _one(engine, "SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                        "WHERE l.name = 'roads' AND a.name IS NOT NULL AND a.street <> a.name")[0] == 0


def test_litter_bins_from_two_sources_have_distinct_prefixes(engine, imported):
    counts = dict(_rows(engine, "SELECT left(external_ref, 3), count(*) FROM assets a JOIN asset_layers l "
                                "ON l.id = a.layer_id WHERE l.name = 'litter_bins' GROUP BY 1"))
    assert counts == {"PK-": 302, "SV-": 1255}
    assert imported["litter_bin_survey"].without_id > 800  # AssetNo is mostly 0 / Unknown


def test_synthetic_street_lights_are_labelled(engine, imported):
    layer_syn, n, flagged, attr = _one(engine, """
        SELECT bool_and(l.synthetic), count(*), count(*) FILTER (WHERE a.synthetic),
               count(*) FILTER (WHERE (a.attributes->>'synthetic')::boolean)
        FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights'""")
    assert layer_syn and n == flagged == attr
    assert _one(engine, "SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                        "WHERE l.name = 'street_lights' AND a.external_ref !~ '^\\d{5}/\\d{3}$'")[0] == 0
    assert _one(engine, "SELECT count(*) FROM assets WHERE synthetic AND layer_id IN "
                        "(SELECT id FROM asset_layers WHERE name <> 'street_lights' AND name NOT LIKE 'bench%')"
                )[0] == 0


# --- idempotency ------------------------------------------------------------------------------------

def test_second_run_skips_everything_and_changes_nothing(engine, imported):
    before = _snapshot(engine)
    again = import_all(console=QUIET)
    assert {s.status for s in again} == {"skipped"}
    assert _snapshot(engine) == before


def test_forced_rerun_upserts_without_touching_rows(engine, imported):
    before = _snapshot(engine)
    again = import_all(console=QUIET, force=True)
    assert {s.status for s in again} == {"imported"}
    assert [(s.entry, s.inserted, s.updated, s.removed) for s in again if s.inserted or s.updated or s.removed] == []
    after = _snapshot(engine)
    assert after["layers"] == before["layers"] and after["areas"] == before["areas"]


def test_camden_refs_are_derived_and_stable(engine, imported):
    sql = ("SELECT md5(string_agg(external_ref, ',' ORDER BY external_ref)), count(*), bool_and(ref_derived), "
           "count(DISTINCT external_ref), max(updated_at) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
           "WHERE l.name = 'camden_street_lights'")
    before = _one(engine, sql)
    assert before[1:4] == (9527, True, 9527)
    (s,) = import_all(only=["camden_street_lights"], console=QUIET, force=True)
    assert (s.rows_read, s.imported, s.without_id, s.inserted, s.updated, s.removed) == (9527, 9527, 9527, 0, 0, 0)
    assert _one(engine, sql) == before
    street, ward = _one(engine, "SELECT street, attributes->>'ward_name' FROM assets a JOIN asset_layers l "
                                "ON l.id = a.layer_id WHERE l.name = 'camden_street_lights' AND street IS NOT NULL "
                                "ORDER BY external_ref LIMIT 1")
    assert street == street.title() or "'" in street  # "King Henry's Road", not "KING HENRY'S ROAD"
    assert ward and ward.isupper()


# --- malformed files ------------------------------------------------------------------------------

@pytest.fixture
def tmp_source(engine, tmp_path):
    """Write a one-entry manifest and its file into tmp_path; clean the temporary layer afterwards."""

    def make(body: str | bytes, *, filename="data.geojson", entry=None, **overrides) -> Path:
        (tmp_path / filename).write_bytes(body.encode() if isinstance(body, str) else body)
        e = {"entry": "tmp_entry", "kind": "asset_layer", "target": TMP_LAYER, "file": filename,
             "id": {"field": "id"}, "name": "{id}", **overrides}
        entries = entry or [e]
        (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"streets_layer": "roads", "entries": entries}))
        return tmp_path / "manifest.yaml"

    yield make
    with engine.begin() as c:
        c.execute(text("DELETE FROM asset_layers WHERE name LIKE 'tmp_%'"))
        c.execute(text("DELETE FROM import_runs WHERE entry LIKE 'tmp_%'"))


def _fc(*features, crs="urn:ogc:def:crs:OGC:1.3:CRS84") -> str:
    return json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": crs}},
                       "features": list(features)})


def _pt(i, lon=-2.3590, lat=51.3811):
    return {"type": "Feature", "properties": {"id": i}, "geometry": {"type": "Point", "coordinates": [lon, lat]}}


def _fails(manifest: Path, tmp_path: Path):
    with pytest.raises(ImportFailed) as info:
        import_all(manifest=manifest, data_dir=tmp_path, console=QUIET, force=True)
    return info.value.summary


def test_bad_json_names_file_and_position_and_imports_nothing(engine, tmp_source, tmp_path):
    good = tmp_source(_fc(_pt(1), _pt(2, lon=-2.36)))
    import_all(manifest=good, data_dir=tmp_path, console=QUIET, force=True)
    assert _layer_count(engine, TMP_LAYER) == 2
    bad = tmp_source(_fc(_pt(1), _pt(2), _pt(3))[:-30])
    s = _fails(bad, tmp_path)
    assert s.status == "failed" and s.error_file == "data.geojson" and s.error_row.startswith("line 1 column")
    assert "invalid JSON" in s.error
    assert _layer_count(engine, TMP_LAYER) == 2  # the earlier good import is untouched
    run = _one(engine, "SELECT summary FROM import_runs WHERE entry = 'tmp_entry' ORDER BY id DESC LIMIT 1")[0]
    assert run["status"] == "failed" and "data.geojson" in run["error"]


def test_rows_gone_from_the_source_are_removed_and_changed_rows_updated(engine, tmp_source, tmp_path):
    import_all(manifest=tmp_source(_fc(_pt(1), _pt(2), _pt(3))), data_dir=tmp_path, console=QUIET, force=True)
    (s,) = import_all(manifest=tmp_source(_fc(_pt(1), _pt(3, lon=-2.37))), data_dir=tmp_path, console=QUIET,
                      force=True)
    assert (s.inserted, s.updated, s.removed) == (0, 1, 1)
    refs = _rows(engine, "SELECT external_ref FROM assets WHERE layer_id = "
                         "(SELECT id FROM asset_layers WHERE name = :n)", n=TMP_LAYER)
    assert sorted(r for (r,) in refs) == ["1", "3"]


@pytest.mark.parametrize("crs, manifest_crs, message", [
    ("urn:ogc:def:crs:EPSG::99999", 99999, "unknown CRS EPSG:99999"),
    ("urn:x-made-up:crs", 4326, "unknown CRS 'urn:x-made-up:crs'"),
    ("urn:ogc:def:crs:EPSG::27700", 4326, "file declares EPSG:27700 but the manifest says EPSG:4326"),
])
def test_wrong_or_unknown_crs_is_refused(engine, tmp_source, tmp_path, crs, manifest_crs, message):
    s = _fails(tmp_source(_fc(_pt(1), crs=crs), crs=manifest_crs), tmp_path)
    assert message in s.error and s.error_file == "data.geojson"
    assert _layer_count(engine, TMP_LAYER) == 0


def test_empty_geometry_names_the_feature_and_imports_nothing(engine, tmp_source, tmp_path):
    empty = {"type": "Feature", "properties": {"id": 2}, "geometry": {"type": "Point", "coordinates": []}}
    s = _fails(tmp_source(_fc(_pt(1), empty, _pt(3))), tmp_path)
    assert s.error_row == "feature 2" and "data.geojson feature 2" in s.error
    assert _layer_count(engine, TMP_LAYER) == 0


def test_unrepairable_polygon_and_coordinates_in_the_wrong_crs_fail(engine, tmp_source, tmp_path):
    flat = {"type": "Feature", "properties": {"id": 1},
            "geometry": {"type": "Polygon", "coordinates": [[[-2.3, 51.3], [-2.2, 51.3], [-2.3, 51.3], [-2.3, 51.3]]]}}
    s = _fails(tmp_source(_fc(flat), geometry="polygon"), tmp_path)
    assert "cannot be repaired" in s.error and s.error_row == "feature 1"
    s = _fails(tmp_source(_fc(_pt(1), _pt(2, lon=375000, lat=165000))), tmp_path)
    assert "out of range for EPSG:4326" in s.error and s.error_row == "feature 2"


def test_csv_rows_without_location_are_counted_and_bad_text_is_fatal(engine, tmp_source, tmp_path):
    csv_ok = "Ref,Location\nA1,\"(51.3811, -2.3590)\"\nA2,\nA3,\"(51.3815, -2.3600)\"\n"
    m = tmp_source(csv_ok, filename="d.csv", format="csv", location={"text": "Location", "order": "latlon"},
                   id={"field": "Ref"}, name="{Ref}")
    (s,) = import_all(manifest=m, data_dir=tmp_path, console=QUIET, force=True)
    assert (s.rows_read, s.imported, s.without_location, s.without_location_examples) == (3, 2, 1, ["line 3"])
    assert _layer_count(engine, TMP_LAYER) == 2
    lon = _one(engine, "SELECT ST_X(ST_Transform(geom, 4326)) FROM assets WHERE external_ref = 'A1' AND layer_id = "
                       "(SELECT id FROM asset_layers WHERE name = :n)", n=TMP_LAYER)[0]
    assert math.isclose(lon, -2.3590, abs_tol=1e-7)  # "(lat, lon)" read in that order
    bad = tmp_source(csv_ok + "A4,\"(fifty-one, -2)\"\n", filename="d.csv", format="csv",
                     location={"text": "Location"}, id={"field": "Ref"}, name="{Ref}")
    s = _fails(bad, tmp_path)
    assert s.error_row == "line 5" and "d.csv line 5" in s.error
    assert _layer_count(engine, TMP_LAYER) == 2


def _line(i, *coords, multi=False):
    geometry = {"type": "MultiLineString", "coordinates": list(coords)} if multi else \
        {"type": "LineString", "coordinates": list(coords)}
    return {"type": "Feature", "properties": {"id": i}, "geometry": geometry}


def test_zero_length_lines_are_dropped_and_repeated_points_removed_and_counted(engine, tmp_source, tmp_path):
    a, b, c = [-2.3590, 51.3811], [-2.3580, 51.3815], [-2.3570, 51.3820]
    m = tmp_source(_fc(_line(1, a, b), _line(2, a, a), _line(3, a, a, b, b, c), _line(4, [a, a], [b, c], multi=True),
                       _line(5, [a, a], [b, b], multi=True)), geometry="line")
    (s,) = import_all(manifest=m, data_dir=tmp_path, console=QUIET, force=True)
    assert (s.rows_read, s.imported, s.zero_length_dropped) == (5, 3, 2)
    assert s.zero_length_examples == ["feature 2", "feature 5"]
    assert s.repaired == 2 and [e.split()[-1] for e in s.repaired_examples] == ["(3)", "(4)"]
    rows = dict(_rows(engine, "SELECT external_ref, ST_NPoints(geom) FROM assets WHERE layer_id = "
                              "(SELECT id FROM asset_layers WHERE name = :n) AND ST_Length(geom) > 0", n=TMP_LAYER))
    assert rows == {"1": 2, "3": 3, "4": 2}  # every stored line has a length; no repeated point is left
    run = _one(engine, "SELECT summary FROM import_runs WHERE entry = 'tmp_entry' ORDER BY id DESC LIMIT 1")[0]
    assert run["zero_length_dropped"] == 2


def test_on_error_continue_goes_on_and_stop_raises(engine, tmp_source, tmp_path):
    (tmp_path / "good.geojson").write_text(_fc(_pt(1)))
    base = {"kind": "asset_layer", "id": {"field": "id"}, "name": "{id}"}
    entries = [{**base, "entry": "tmp_bad", "target": "tmp_bad_layer", "file": "data.geojson", "on_error": "continue"},
               {**base, "entry": "tmp_good", "target": TMP_LAYER, "file": "good.geojson"}]
    m = tmp_source("{not json", entry=entries)
    result = import_all(manifest=m, data_dir=tmp_path, console=QUIET, force=True)
    assert [(s.entry, s.status) for s in result] == [("tmp_bad", "failed"), ("tmp_good", "imported")]
    entries[0]["on_error"] = "stop"
    with pytest.raises(ImportFailed) as info:
        import_all(manifest=tmp_source("{not json", entry=entries), data_dir=tmp_path, console=QUIET, force=True)
    assert [s.entry for s in info.value.summaries] == ["tmp_bad"]


def test_cli_exits_1_with_one_line_on_stop(tmp_source, tmp_path):
    m = tmp_source("{not json")
    app = typer.Typer()
    app.command()(import_gis)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["import-gis", "--manifest", str(m), "--data-dir", str(tmp_path), "--force"])
    assert result.exit_code == 1
    assert "error:" in result.output and "data.geojson" in result.output


# --- pure parts ---------------------------------------------------------------------------------

def test_crs_names():
    assert parse_crs("urn:ogc:def:crs:OGC:1.3:CRS84") == 4326
    assert parse_crs("EPSG:27700") == 27700 and parse_crs("urn:ogc:def:crs:EPSG::3857") == 3857
    assert parse_crs("WGS 84 please") is None


def test_derived_refs_are_deterministic_and_disambiguated(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("Street,Lat,Lon\nHigh St,51.1,-2.1\nHigh St,51.1,-2.1\nLow St,51.2,-2.2\n")
    e = Entry(entry="x", kind="asset_layer", target="x", raw={}, file="x.csv", format="csv",
              location={"lat": "Lat", "lon": "Lon"}, id={"derive": ["Street"]}, ref_prefix="X-")
    refs = [[r.ref for r in prepare(e, *read_rows(e, f)).records] for _ in range(2)]
    assert refs[0] == refs[1]
    assert refs[0][1] == refs[0][0] + "~2" and refs[0][2] != refs[0][0] and refs[0][0].startswith("X-D")


def test_street_light_generator_spacing_sides_and_determinism():
    road = LineString([(0, 0), (1000, 0)])
    ward = Polygon([(-50, -50), (2000, -50), (2000, 50), (-50, 50)])
    params = {"seed": 7, "spacing_m": [30, 40], "offset_m": 4}
    run = [list(street_lights(roads=[("r1", "Test Road", road, "Local Road")], wards=[("w", ward)], params=params))
           for _ in range(2)]
    assert run[0] == run[1]
    lights = run[0]
    assert 24 <= len(lights) <= 34
    code = lights[0].ref.split("/")[0]
    assert [x.ref for x in lights] == [f"{code}/{i:03d}" for i in range(1, len(lights) + 1)]
    assert [math.copysign(1, x.y) for x in lights[:4]] in ([1, -1, 1, -1], [-1, 1, -1, 1])
    assert all(abs(abs(x.y) - 4) < 0.01 for x in lights)
    gaps = [b.x - a.x for a, b in zip(lights, lights[1:])]
    assert min(gaps) >= 30 - 1e-6 and max(gaps) <= 40 + 1e-6
    assert {x.street for x in lights} == {"Test Road"} and all(x.attributes["synthetic"] for x in lights)
    outside = list(street_lights(roads=[("r1", "Test Road", road)], wards=[("w", Polygon([(5000, 0), (5001, 0),
                                                                                          (5001, 1)]))], params=params))
    assert outside == []


def test_scale_points_are_streamed_deterministic_and_inside_the_bbox():
    gen = generate_scale_points(1000, seed=3)
    assert next(gen)[0] == "BL-0000001"
    a, b = list(generate_scale_points(1000, seed=3)), list(generate_scale_points(1000, seed=3))
    assert a == b and len(a) == 1000 and len({r for r, _, _ in a}) == 1000
    minx, miny, maxx, maxy = BANES_BBOX
    assert all(minx <= lon <= maxx and miny <= lat <= maxy for _, lon, lat in a)
    assert list(generate_scale_points(1000, seed=4)) != a
