"""Our open-standards endpoints read by clients we did not write, over real HTTP against a real uvicorn.

GDAL's OAPIF driver (`ogrinfo`, `ogr2ogr` from Debian's gdal-bin) and OWSLib read /ogc; the PyPI
`georeport` wrapper reads /open311/v2 (it has no POST or updates call, so posting a request and reading
the updates is done from the GeoReport v2 specification with plain httpx + xml.etree, no server code).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import owslib.ogcapi
import pytest
from georeport import GeoReport
from owslib.ogcapi.features import Features
from sqlalchemy import select, text

from server.auth.tokens import create_token
from server.db import new_session
from server.deps import Principal
from server.jobs.models import Job
from server.jobs.transitions import move
from server.reports.models import Report
from tests.contractors.conftest import free_port, wait_until

pytestmark = pytest.mark.commits
ROOT = Path(__file__).resolve().parents[2]
LIGHTS_IN_BOX = """
    SELECT a.external_ref FROM assets a JOIN asset_layers l ON l.id = a.layer_id
     WHERE l.name = 'street_lights'
       AND ST_Intersects(ST_Transform(a.geom, 4326), ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))"""


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def api(prepared_db, tmp_path_factory):
    """A real API on a free port, a committed advisor token, and a box around a real street light."""
    logs = tmp_path_factory.mktemp("standards")
    port = free_port()
    with new_session() as s:
        _, token = create_token(s, "advisor", name="standards-clients")
        lat, lon = s.execute(text("""
            SELECT ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326)) FROM assets a
              JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights'
             ORDER BY a.id LIMIT 1""")).one()
        s.commit()
    box = (lon - 0.002, lat - 0.002, lon + 0.002, lat + 0.002)
    with new_session() as s:
        expected = sorted(s.scalars(text(LIGHTS_IN_BOX), dict(zip(("x0", "y0", "x1", "y1"), box))))
    assert 1 <= len(expected) < 200  # a bbox that really selects (not all 15k lights, not none)
    with open(logs / "api.log", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "server.main:create_app", "--factory", "--port",
                                 str(port), "--log-level", "warning"], cwd=ROOT, env=dict(os.environ), stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(f"{base}/healthz"), timeout=30, interval=0.2)
        yield {"base": base, "token": token, "box": box, "lights": expected}
    finally:
        proc.terminate()
        proc.wait(10)


def _gdal(api, *args: str) -> str:
    env = {**os.environ, "GDAL_HTTP_HEADERS": f"Authorization: Bearer {api['token']}"}
    done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- OGC API Features ------------------------------------------------------------------------------------

def test_ogrinfo_lists_our_collections_and_reads_a_bbox_of_street_lights(api):
    src = f"OAPIF:{api['base']}/ogc"
    listing = _gdal(api, "ogrinfo", "-ro", "-q", src)
    names = re.findall(r"^\d+: (\w+) \(title: ", listing, re.M)
    layers = {n: "" for n in names} | dict(re.findall(r"^\d+: (\w+) \(title: .*\) \(([\w ]+)\)$", listing, re.M))
    assert layers["street_lights"] == "Point" and layers["wards"] == "Multi Polygon"
    assert layers["roads"] == "Line String" and "jobs" in layers  # staff token: open jobs too

    summary = _gdal(api, "ogrinfo", "-ro", "-so", src, "street_lights")
    assert "Geometry: Point" in summary and 'ID["EPSG",4326]' in summary
    count = int(re.search(r"Feature Count: (\d+)", summary).group(1))
    with new_session() as s:
        assert count == s.scalar(text("SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                                      "WHERE l.name = 'street_lights'"))
    for field in ("ref: String", "ward: String", "street: String", "maintainer: String"):
        assert field in summary, field

    x0, y0, x1, y1 = (str(v) for v in api["box"])
    feats = _gdal(api, "ogrinfo", "-ro", "-al", "-spat", x0, y0, x1, y1, src, "street_lights")
    refs = sorted(re.findall(r"^\s+ref \(String\) = (.+)$", feats, re.M))
    assert refs == api["lights"]
    assert len(re.findall(r"^\s+POINT \(", feats, re.M)) == len(refs)


def test_ogr2ogr_copies_a_layer_to_geopackage_and_geojson(api, tmp_path):
    src = f"OAPIF:{api['base']}/ogc"
    gpkg = tmp_path / "wards.gpkg"
    _gdal(api, "ogr2ogr", "-f", "GPKG", str(gpkg), src, "wards")
    copied = _gdal(api, "ogrinfo", "-ro", "-so", str(gpkg), "wards")
    with new_session() as s:
        wards = s.scalar(text("SELECT count(*) FROM areas WHERE kind = 'ward'"))
    assert wards > 0 and int(re.search(r"Feature Count: (\d+)", copied).group(1)) == wards
    assert "Geometry: Multi Polygon" in copied

    x0, y0, x1, y1 = (str(v) for v in api["box"])
    out = tmp_path / "lights.geojson"
    _gdal(api, "ogr2ogr", "-f", "GeoJSON", "-spat", x0, y0, x1, y1, str(out), src, "street_lights")
    doc = json.loads(out.read_text())
    assert sorted(f["properties"]["ref"] for f in doc["features"]) == api["lights"]
    for f in doc["features"]:
        lon, lat = f["geometry"]["coordinates"][:2]
        assert api["box"][0] <= lon <= api["box"][2] and api["box"][1] <= lat <= api["box"][3]


def test_owslib_lists_collections_and_reads_items_in_a_bbox(api, monkeypatch):
    # OWSLib 0.35 adds the caller's headers to its module-wide REQUEST_HEADERS dict (every later client in
    # the process would send our token): give it a copy that monkeypatch puts back.
    monkeypatch.setattr(owslib.ogcapi, "REQUEST_HEADERS", dict(owslib.ogcapi.REQUEST_HEADERS))
    ogc = Features(f"{api['base']}/ogc", headers={"Authorization": f"Bearer {api['token']}"})
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in ogc.conformance()["conformsTo"]
    ids = [c["id"] for c in ogc.collections()["collections"]]
    assert {"street_lights", "wards", "roads", "jobs"} <= set(ids)
    assert ogc.collection("street_lights")["title"] == "Street lights (synthetic)"
    page = ogc.collection_items("street_lights", bbox=list(api["box"]), limit=500)
    assert page["type"] == "FeatureCollection"
    assert sorted(f["properties"]["ref"] for f in page["features"]) == api["lights"]
    assert page["numberMatched"] == page["numberReturned"] == len(api["lights"])
    first = page["features"][0]
    one = ogc.collection_item("street_lights", first["id"])
    assert one["id"] == first["id"] and one["geometry"]["type"] == "Point"
    anonymous = httpx.get(f"{api['base']}/ogc/collections").json()["collections"]
    assert "jobs" not in [c["id"] for c in anonymous] and "street_lights" in [c["id"] for c in anonymous]


# --- Open311 GeoReport v2 --------------------------------------------------------------------------------

def _post_request(api, fmt: str, form: dict) -> httpx.Response:
    """POST /requests.{fmt} as the specification says: application/x-www-form-urlencoded, api_key in the form."""
    return httpx.post(f"{api['base']}/open311/v2/requests.{fmt}", data=form, timeout=10)


def _light_for_request(n: int) -> tuple[float, float]:
    with new_session() as s:
        return tuple(s.execute(text("""
            SELECT ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326)) FROM assets a
              JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights'
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.asset_id = a.id)
             ORDER BY a.id DESC OFFSET :n LIMIT 1"""), {"n": n}).one())


def test_georeport_client_lists_services_and_reads_back_a_posted_request(api):
    for fmt in ("json", "xml"):
        client = GeoReport(f"{api['base']}/open311/v2", output_format=fmt)
        services = client.get_service_list()
        light = next(s for s in services if s["service_code"] == "street_light")
        assert light["type"] in ("realtime", "batch", "blackbox") and light["metadata"] in (True, "true")
        definition = client.get_service_definition("street_light")
        attrs = definition["attributes"] if fmt == "json" else definition["attributes"]["attribute"]
        attrs = attrs if isinstance(attrs, list) else [attrs]
        fault = next(a for a in attrs if a["code"] == "fault")
        assert str(fault["required"]).lower() == "true" and fault["datatype"] in ("singlevaluelist", "multivaluelist")
        values = fault["values"] if fmt == "json" else fault["values"]["value"]
        assert "out" in [v["key"] for v in (values if isinstance(values, list) else [values])]

    lat, lon = _light_for_request(3000)
    form = {"api_key": api["token"], "service_code": "street_light", "lat": str(lat), "long": str(lon),
            "attribute[fault]": "out", "description": "Dark since Tuesday", "first_name": "Sam",
            "last_name": "Caller", "email": "sam@example.org"}
    r = _post_request(api, "xml", form)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml"), r.text
    posted = ET.fromstring(r.content)
    assert posted.tag == "service_requests"
    ref = posted.findtext("request/service_request_id")
    assert ref and posted.find("request/service_notice") is not None

    for fmt in ("json", "xml"):
        client = GeoReport(f"{api['base']}/open311/v2", output_format=fmt)
        one = client.get_service_request(ref)
        assert one["service_request_id"] == ref and one["service_code"] == "street_light"
        assert one["status"] == "open" and one["description"] == "Dark since Tuesday"
        assert abs(float(one["lat"]) - lat) < 1e-6 and abs(float(one["long"]) - lon) < 1e-6
        listed = client.get_service_requests(service_request_id=ref)
        listed = listed if isinstance(listed, list) else [listed]
        assert [x["service_request_id"] for x in listed] == [ref]
        recent = client.get_service_requests(service_code="street_light", status="open")
        assert ref in [x["service_request_id"] for x in (recent if isinstance(recent, list) else [recent])]
    with new_session() as s:
        report = s.scalar(select(Report).where(Report.reference == ref))
        assert report.answers.get("fault") == "out"


def test_spec_client_posts_json_and_reads_the_updates_of_the_request(api):
    lat, lon = _light_for_request(3100)
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    r = _post_request(api, "json", {"api_key": api["token"], "service_code": "street_light", "lat": str(lat),
                                    "long": str(lon), "attribute[fault]": "flickering"})
    assert r.status_code == 200, r.text
    [created] = r.json()
    ref = created["service_request_id"]
    token_doc = httpx.get(f"{api['base']}/open311/v2/requests/{ref}.json").json()
    assert token_doc[0]["status"] == "open"

    # The job moves on inside the council (as a crew or contractor would move it).
    with new_session() as s:
        job = s.get(Job, s.scalar(select(Report.job_id).where(Report.reference == ref)))
        boss = Principal(0, "test", "supervisor")
        move(s, job, "sent", "system:test")
        move(s, job, "accepted", boss)
        move(s, job, "in_progress", boss)
        move(s, job, "completed", boss)
        s.commit()

    window = {"start_date": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "end_date": (datetime.now(timezone.utc) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    xml = httpx.get(f"{api['base']}/open311/v2/servicerequestupdates.xml", params=window)
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(xml.content)
    assert root.tag == "service_request_updates"
    ours = [u for u in root.findall("request_update") if u.findtext("service_request_id") == ref]
    assert [u.findtext("status") for u in ours] == ["open", "action_scheduled", "in_progress", "fixed"]
    times = [datetime.fromisoformat(u.findtext("updated_datetime").replace("Z", "+00:00")) for u in ours]
    assert times == sorted(times) and all(since <= t for t in times)
    assert len({u.findtext("update_id") for u in ours}) == 4
    js = httpx.get(f"{api['base']}/open311/v2/servicerequestupdates.json", params=window).json()
    assert [u["status"] for u in js if u["service_request_id"] == ref] == ["open", "action_scheduled",
                                                                          "in_progress", "fixed"]
    closed = GeoReport(f"{api['base']}/open311/v2").get_service_request(ref)
    assert closed["status"] == "closed"
    bad = httpx.post(f"{api['base']}/open311/v2/requests.xml", data={"service_code": "street_light",
                                                                    "lat": str(lat), "long": str(lon)})
    assert bad.status_code == 403
    err = ET.fromstring(bad.content)
    assert err.tag == "errors" and err.findtext("error/code") == "403" and err.findtext("error/description")
