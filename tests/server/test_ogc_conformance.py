"""OGC API Features conformance: the real `ogctests` suite (PyPI) against a live API, and what it does not check.

`ogctests` 0.1.15 (pinned in requirements-ogctests.txt, installed into .venv-ogctests by scripts/install.sh,
because it pins httpx<0.28 and pytest<9) is run through its own entry point, `ogctests.main.run_ogctests`,
over real HTTP: once as an anonymous client (asset layers and wards) and once with a staff bearer token
(the jobs collection too, through the suite's documented `test_client` override). Every one of its 29
abstract tests must run and pass: none failed, none skipped.
"""
from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
import yaml
from shapely.geometry import LinearRing
from sqlalchemy import text

from server.config import get_settings
from server.ogc.documents import OGL
from tests.browser.live import ROOT, commit_token, revoke_tokens, start_api, stop
from tests.conftest import auth

pytestmark = pytest.mark.commits  # the staff run needs a committed open job
SUITE_PYTHON = ROOT / ".venv-ogctests" / "bin" / "python"
ALL_TESTS = {f"test_ast{n}" for n in range(1, 30)}
BNG = "http://www.opengis.net/def/crs/EPSG/0/27700"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
# Run in the suite's venv: its documented Python entry point, with an authenticated client when asked.
RUNNER = """
import sys
import httpx
from ogctests.main import run_ogctests
url, junit, token = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
client = httpx.Client(base_url=url, headers={"Authorization": "Bearer " + token}) if token else None
flags = ["-q", "-p", "no:cacheprovider", "--junit-xml=" + junit]
sys.exit(run_ogctests("features/core", url, flags, test_client=client))
"""


@pytest.fixture(scope="module")
def live(prepared_db, tmp_path_factory):
    """A live API, a committed advisor token and one committed open job (made through Open311 intake)."""
    logs = tmp_path_factory.mktemp("ogc-conformance")
    api = start_api(logs / "api.log")
    token_id, token = commit_token("advisor")
    try:
        with api.client() as c:
            light = c.get("/ogc/collections/street_lights/items", params={"limit": 1, "offset": 4321}).json()
            lon, lat = light["features"][0]["geometry"]["coordinates"]
            made = c.post("/open311/v2/requests.json", data={
                "api_key": token, "service_code": "street_light", "lat": str(lat), "long": str(lon),
                "attribute[fault]": "out", "description": "conformance run"})
            assert made.status_code == 200, made.text
        yield {"api": api, "token": token, "logs": logs}
    finally:
        revoke_tokens([token_id])
        stop(api.proc)


def run_suite(live, name: str, token: str | None = None) -> dict[str, str]:
    """Run ogctests features/core; {test name: outcome} from its JUnit report."""
    assert SUITE_PYTHON.exists(), "the suite's venv is missing: run scripts/install.sh (make install)"
    junit = live["logs"] / f"{name}.xml"
    args = [str(SUITE_PYTHON), "-c", RUNNER, f"{live['api'].url}/ogc", str(junit), *([token] if token else [])]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KERBSIDE_", "VIRTUAL_ENV"))}
    done = subprocess.run(args, cwd=live["logs"], env=env, capture_output=True, text=True, timeout=300)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        bad = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = bad[0] if bad else "passed"
    assert done.returncode == 0, f"{outcomes}\n{done.stdout[-4000:]}"
    return outcomes


def test_ogctests_core_passes_anonymously(live):
    outcomes = run_suite(live, "anonymous")
    assert set(outcomes) == ALL_TESTS and set(outcomes.values()) == {"passed"}, outcomes


def test_ogctests_core_passes_with_a_staff_token_reading_jobs_too(live):
    with live["api"].client(live["token"]) as c:
        ids = [col["id"] for col in c.get("/ogc/collections").json()["collections"]]
        assert "jobs" in ids and c.get("/ogc/collections/jobs/items").json()["numberMatched"] >= 1
    outcomes = run_suite(live, "staff", live["token"])
    assert set(outcomes) == ALL_TESTS and set(outcomes.values()) == {"passed"}, outcomes


# --- what the suite does not look at ---------------------------------------------------------------------

GET_PATHS = ["/ogc", "/ogc/", "/ogc/conformance", "/ogc/api", "/ogc/collections", "/ogc/collections/wards",
             "/ogc/collections/street_lights/items?limit=3", "/ogc/collections/wards/items/{ward}",
             "/ogc/collections/unicorns", "/ogc/collections/street_lights/items?limit=ten"]


def test_the_root_with_a_slash_answers_without_a_redirect(client):
    plain, slash = client.get("/ogc", follow_redirects=False), client.get("/ogc/", follow_redirects=False)
    assert plain.status_code == slash.status_code == 200
    assert plain.json() == slash.json()


@pytest.mark.parametrize("path", GET_PATHS)
def test_head_answers_every_get_path_with_the_gets_headers_and_no_body(client, db, path):
    path = path.format(ward=db.scalar(text("SELECT code FROM areas WHERE kind = 'ward' ORDER BY code LIMIT 1")))
    got, head = client.get(path), client.head(path)
    assert head.status_code == got.status_code and head.content == b""
    for name in ("content-type", "content-length", "content-crs", "www-authenticate"):
        assert head.headers.get(name) == got.headers.get(name), name


def test_head_keeps_the_token_rules(client, tokens):
    assert client.head("/ogc/collections/jobs/items").status_code == 401
    assert client.head("/ogc/collections/jobs/items", headers=auth(tokens["field_worker"])).status_code == 403
    assert client.head("/ogc/collections/jobs/items", headers=auth(tokens["advisor"])).status_code == 200


def test_the_api_definition_declares_the_bearer_scheme_and_its_401_and_403(client):
    spec = client.get("/ogc/api").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {**spec["components"]["securitySchemes"]["bearer"],
                                                               "type": "http", "scheme": "bearer"}
    for path, ops in spec["paths"].items():
        op = ops["get"]
        assert "400" in op["responses"]
        if path.startswith("/collections"):
            assert op["security"] == [{}, {"bearer": []}], path
            assert {"401", "403"} <= set(op["responses"]), path
        else:
            assert "security" not in op and "401" not in op["responses"], path
    assert spec["info"]["license"]["url"] == OGL


def test_license_links_on_the_landing_page_and_the_open_data_but_not_on_jobs(client, tokens):
    landing = client.get("/ogc").json()
    assert [link["href"] for link in landing["links"] if link["rel"] == "license"] == [OGL]
    cols = client.get("/ogc/collections", headers=auth(tokens["advisor"])).json()["collections"]
    licensed = {c["id"]: [link["href"] for link in c["links"] if link["rel"] == "license"] for c in cols}
    assert licensed.pop("jobs") == []
    assert licensed and all(hrefs == [OGL] for hrefs in licensed.values()), licensed


def test_every_manifest_entry_is_published_under_the_ogl():
    # The license link says OGL v3 for every asset layer: true only while the manifest says so.
    manifest = yaml.safe_load(get_settings().gis_manifest.read_text())
    default = manifest["defaults"]["licence"]
    assert default == "OGL-3.0"
    assert all(e.get("licence", default) == "OGL-3.0" for e in manifest["entries"])


NOT_FOUND = ["/ogc/collections/unicorns", "/ogc/collections/unicorns/items", "/ogc/collections/wards/items/nope",
             "/ogc/collections/street_lights/items/nope%2Fnone", "/ogc/nothing-here", "/ogc/collections/a/b/c/d",
             "/ogc/collections/street_lights/items/x%0Ay"]


@pytest.mark.parametrize("path", NOT_FOUND)
def test_every_404_has_one_format(client, path):
    r = client.get(path)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].endswith("/not-found") and body["status"] == 404 and body["code"] == "NotFound"
    assert body["title"] == "Not found"
    assert body["detail"] == body["description"] and body["instance"].startswith("/ogc")


def test_other_errors_carry_both_formats_and_name_the_parameter(client):
    r = client.get("/ogc/collections/street_lights/items", params={"bbox": "1,2,3"})
    body = r.json()
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert body["code"] == "InvalidParameterValue" and body["type"].endswith("/invalid-parameter-value")
    assert body["fields"] == ["bbox"] and body["detail"] == body["description"]


def _rings(geometry: dict):
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    for rings in polygons:
        yield True, rings[0]
        for hole in rings[1:]:
            yield False, hole


@pytest.mark.parametrize("crs", [None, BNG])
def test_polygons_wind_as_rfc_7946_says(client, db, crs):
    # Stored as the sources give them (clockwise), so the answer must turn them round.
    assert db.scalar(text("SELECT count(*) FROM areas WHERE kind = 'ward' AND NOT ST_IsPolygonCCW(geom)")) > 0
    params = {"limit": 1000, **({"crs": crs} if crs else {})}
    feats = client.get("/ogc/collections/wards/items", params=params).json()["features"]
    assert len(feats) == db.scalar(text("SELECT count(*) FROM areas WHERE kind = 'ward'"))
    holes = 0
    for f in feats:
        for exterior, ring in _rings(f["geometry"]):
            assert LinearRing(ring).is_ccw == exterior, (f["id"], exterior)
            holes += not exterior
    assert holes >= 1  # the wards include a ring with a hole, so both rules were checked


def test_crs_part_2_geometries_in_the_storage_crs_with_content_crs(client, db):
    ref, x, y = db.execute(text("""
        SELECT a.external_ref, ST_X(a.geom), ST_Y(a.geom) FROM assets a JOIN asset_layers l ON l.id = a.layer_id
         WHERE l.name = 'street_lights' ORDER BY a.id LIMIT 1""")).one()
    r = client.get(f"/ogc/collections/street_lights/items/{quote(ref, safe='')}", params={"crs": BNG})
    assert r.status_code == 200 and r.headers["content-crs"] == f"<{BNG}>"
    got = r.json()["geometry"]
    assert "crs" not in got and got["coordinates"] == pytest.approx([x, y], abs=0.01)
    plain = client.get(f"/ogc/collections/street_lights/items/{quote(ref, safe='')}")
    assert plain.headers["content-crs"] == f"<{CRS84}>"
    lon, lat = plain.json()["geometry"]["coordinates"]
    assert -3 < lon < -2 and 51 < lat < 52


def test_crs_part_2_bbox_in_the_storage_crs_and_paging_keeps_the_crs(client, db):
    x, y = db.execute(text("""
        SELECT ST_X(a.geom), ST_Y(a.geom) FROM assets a JOIN asset_layers l ON l.id = a.layer_id
         WHERE l.name = 'street_lights' ORDER BY a.id LIMIT 1""")).one()
    box = (x - 150, y - 150, x + 150, y + 150)
    expected = db.scalar(text("""
        SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights'
           AND ST_Intersects(a.geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 27700))"""),
        dict(zip(("x0", "y0", "x1", "y1"), box)))
    assert expected >= 3
    params = {"bbox": ",".join(map(str, box)), "bbox-crs": BNG, "crs": BNG, "limit": 2}
    page = client.get("/ogc/collections/street_lights/items", params=params).json()
    assert page["numberMatched"] == expected and page["numberReturned"] == 2
    for f in page["features"]:
        fx, fy = f["geometry"]["coordinates"]
        assert box[0] <= fx <= box[2] and box[1] <= fy <= box[3]
    nxt = next(link["href"] for link in page["links"] if link["rel"] == "next")
    assert "crs=" in nxt and "bbox-crs=" in nxt


@pytest.mark.parametrize("params", [{"crs": "EPSG:4326"}, {"crs": "http://www.opengis.net/def/crs/EPSG/0/4326"},
                                    {"bbox-crs": "urn:nothing"}, {"bbox": "1,2,3,4", "bbox-crs": "x"}])
def test_crs_not_offered_is_a_400_naming_it(client, params):
    r = client.get("/ogc/collections/street_lights/items", params=params)
    assert r.status_code == 400 and r.json()["fields"] == [next(k for k in params if "crs" in k)]


def test_the_collection_lists_its_crs_and_storage_crs_and_conformance_says_part_2(client):
    c = client.get("/ogc/collections/street_lights").json()
    assert c["crs"] == [CRS84, BNG] and c["storageCrs"] == BNG
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in client.get("/ogc/conformance").json()[
        "conformsTo"]
