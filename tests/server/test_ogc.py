"""OGC API Features at /ogc against real PostGIS: documents, paging, bbox, datetime, access and bad input."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from server.areas.models import Area
from server.auth.tokens import create_token
from server.config import get_settings
from server.deps import Principal
from server.dispatch.models import Contractor
from server.jobs.models import Job
from server.jobs.transitions import move
from server.reports.models import Report
from tests.conftest import auth

CONFORMANCE = {"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
               "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
               "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
               "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs"}


def light(db, n: int = 0) -> tuple[str, float, float]:
    """A street light: (ref, lat, lon)."""
    return db.execute(text("""
        SELECT a.external_ref, ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326))
          FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights'
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.asset_id = a.id)  -- other suites' committed jobs
         ORDER BY a.id DESC OFFSET :n LIMIT 1"""), {"n": n}).one()


def open_job(client, db, key: str, n: int) -> Job:
    """A street-light job opened through Open311 intake (so it is an ordinary open job)."""
    _, lat, lon = light(db, n)
    r = client.post("/open311/v2/requests.json", data={"api_key": key, "service_code": "street_light",
                                                       "lat": str(lat), "long": str(lon), "attribute[fault]": "out"})
    assert r.status_code == 200, r.text
    return db.get(Job, db.scalar(select(Report.job_id).where(Report.reference == r.json()[0]["service_request_id"])))


def rel(doc: dict, name: str) -> dict | None:
    return next((link for link in doc["links"] if link["rel"] == name), None)


def test_landing_conformance_and_api_definition(client):
    land = client.get("/ogc", params={"f": "json"})
    assert land.status_code == 200 and land.headers["content-type"].startswith("application/json")
    doc = land.json()
    assert {"self", "service-desc", "conformance", "data"} <= {link["rel"] for link in doc["links"]}
    assert rel(doc, "service-desc")["type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert set(client.get("/ogc/conformance").json()["conformsTo"]) == CONFORMANCE
    api = client.get(urlsplit(rel(doc, "service-desc")["href"]).path)
    assert api.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    spec = api.json()
    assert spec["openapi"].startswith("3.0")
    limit = next(p for p in spec["paths"]["/collections/{collectionId}/items"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000 and limit["schema"]["default"] == 100


def test_collections_are_layers_and_wards_publicly_and_jobs_for_staff(client, db, tokens):
    anon = {c["id"]: c for c in client.get("/ogc/collections").json()["collections"]}
    assert {"street_lights", "litter_bins", "roads", "wards"} <= set(anon) and "jobs" not in anon
    sl = anon["street_lights"]
    [bbox] = sl["extent"]["spatial"]["bbox"]
    assert -3 < bbox[0] < bbox[2] < -2 and 51 < bbox[1] < bbox[3] < 52  # B&NES, in CRS84 order
    assert sl["crs"] == ["http://www.opengis.net/def/crs/OGC/1.3/CRS84", "http://www.opengis.net/def/crs/EPSG/0/27700"]
    assert sl["storageCrs"] == "http://www.opengis.net/def/crs/EPSG/0/27700"
    assert rel(sl, "items")["type"] == "application/geo+json"
    staff = {c["id"]: c for c in client.get("/ogc/collections", headers=auth(tokens["advisor"])).json()["collections"]}
    assert "jobs" in staff and staff["jobs"]["extent"]["temporal"]["interval"][0][1] is None
    worker = client.get("/ogc/collections", headers=auth(tokens["field_worker"])).json()["collections"]
    assert "jobs" not in {c["id"] for c in worker}
    one = client.get("/ogc/collections/wards").json()
    assert one["id"] == "wards" and rel(one, "items")


def test_items_bbox_finds_the_light_in_crs84(client, db):
    ref, lat, lon = light(db, 3)
    box = f"{lon - 0.0005},{lat - 0.0005},{lon + 0.0005},{lat + 0.0005}"
    r = client.get("/ogc/collections/street_lights/items", params={"bbox": box})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["numberReturned"] == len(fc["features"]) == fc["numberMatched"]
    hit = next(f for f in fc["features"] if f["id"] == ref)
    x, y = hit["geometry"]["coordinates"]
    assert hit["geometry"]["type"] == "Point" and abs(x - lon) < 1e-5 and abs(y - lat) < 1e-5
    assert hit["properties"]["ref"] == ref and hit["properties"]["layer"] == "street_lights"
    for f in fc["features"]:
        fx, fy = f["geometry"]["coordinates"]
        assert lon - 0.0006 < fx < lon + 0.0006 and lat - 0.0006 < fy < lat + 0.0006
    world = client.get("/ogc/collections/street_lights/items", params={"bbox": "-180,-90,180,90", "limit": 1}).json()
    total = db.scalar(text("SELECT count(*) FROM assets a JOIN asset_layers l ON l.id = a.layer_id "
                           "WHERE l.name = 'street_lights'"))
    assert world["numberMatched"] == total
    away = client.get("/ogc/collections/street_lights/items", params={"bbox": "10,10,11,11"}).json()
    assert away["numberMatched"] == 0 and away["features"] == []


def test_paging_follows_next_links_and_limit_is_capped(client):
    first = client.get("/ogc/collections/benches/items", params={"limit": 5}).json()
    assert first["numberReturned"] == 5 and first["numberMatched"] > 10
    nxt = rel(first, "next")
    assert nxt and parse_qs(urlsplit(nxt["href"]).query)["offset"] == ["5"] and rel(first, "prev") is None
    second = client.get(urlsplit(nxt["href"]).path + "?" + urlsplit(nxt["href"]).query).json()
    assert not {f["id"] for f in first["features"]} & {f["id"] for f in second["features"]}
    assert rel(second, "prev")
    last = client.get("/ogc/collections/benches/items",
                      params={"limit": 5, "offset": first["numberMatched"] - 2}).json()
    assert last["numberReturned"] == 2 and rel(last, "next") is None
    beyond = client.get("/ogc/collections/benches/items", params={"offset": 10_000}).json()
    assert beyond["numberReturned"] == 0 and beyond["numberMatched"] == first["numberMatched"]
    big = client.get("/ogc/collections/street_lights/items", params={"limit": 5000})
    assert big.status_code == 200 and big.json()["numberReturned"] == 1000
    assert parse_qs(urlsplit(rel(big.json(), "next")["href"]).query)["limit"] == ["1000"]
    default = client.get("/ogc/collections/street_lights/items").json()
    assert default["numberReturned"] == 100


def test_one_feature_by_id_even_with_a_slash(client, db):
    ref, _, _ = light(db, 7)
    r = client.get(f"/ogc/collections/street_lights/items/{quote(ref, safe='')}")
    assert r.status_code == 200 and r.json()["id"] == ref and rel(r.json(), "collection")
    assert r.headers["content-type"].startswith("application/geo+json")
    missing = client.get("/ogc/collections/street_lights/items/NO-SUCH-LAMP")
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"
    ward = db.scalar(select(Area.code).where(Area.kind == "ward").limit(1))
    w = client.get(f"/ogc/collections/wards/items/{ward}").json()
    assert w["geometry"]["type"] in ("Polygon", "MultiPolygon") and w["properties"]["code"] == ward


def test_wards_collection_has_every_ward(client, db):
    fc = client.get("/ogc/collections/wards/items").json()
    assert fc["numberMatched"] == db.scalar(select(func.count()).select_from(Area).where(Area.kind == "ward"))
    assert all(f["properties"]["name"] for f in fc["features"])


def test_jobs_need_staff_tokens_and_contractors_see_only_theirs(client, db, tokens):
    db.commit()
    job = open_job(client, db, tokens["advisor"], 2000)
    other = open_job(client, db, tokens["advisor"], 2600)
    lighting = db.scalar(select(Contractor).where(Contractor.name == "street-lighting"))
    move(db, job, "sent", "system:test")
    job.contractor_id = lighting.id
    _, contractor_key = create_token(db, "contractor", contractor="street-lighting")
    db.commit()
    assert client.get("/ogc/collections/jobs/items").status_code == 401
    assert client.get("/ogc/collections/jobs/items", headers=auth("ks_wrong")).status_code == 401
    assert client.get("/ogc/collections/jobs/items", headers=auth(tokens["field_worker"])).status_code == 403
    staff = client.get("/ogc/collections/jobs/items", params={"limit": 1000}, headers=auth(tokens["supervisor"]))
    refs = {f["id"] for f in staff.json()["features"]}
    assert {job.reference, other.reference} <= refs
    feat = next(f for f in staff.json()["features"] if f["id"] == job.reference)
    assert feat["properties"]["status"] == "sent" and feat["properties"]["assignee_kind"] == "contractor"
    assert feat["geometry"]["type"] == "Point"
    theirs = client.get("/ogc/collections/jobs/items", params={"limit": 1000}, headers=auth(contractor_key)).json()
    assert job.reference in {f["id"] for f in theirs["features"]}
    assert other.reference not in {f["id"] for f in theirs["features"]}
    assert {f["properties"]["assignee"] for f in theirs["features"]} == {lighting.title}
    assert client.get(f"/ogc/collections/jobs/items/{other.reference}", headers=auth(contractor_key)).status_code == 404
    assert client.get(f"/ogc/collections/jobs/items/{job.reference}", headers=auth(contractor_key)).status_code == 200


def test_jobs_datetime_filters_on_creation_and_closed_jobs_leave(client, db, tokens):
    db.commit()
    job = open_job(client, db, tokens["advisor"], 3000)
    h = auth(tokens["advisor"])
    now = datetime.now(timezone.utc)
    around = f"{(now - timedelta(hours=1)).isoformat()}/.."
    assert job.reference in {f["id"] for f in client.get(
        "/ogc/collections/jobs/items", params={"datetime": around, "limit": 1000}, headers=h).json()["features"]}
    before = client.get("/ogc/collections/jobs/items", params={"datetime": "../2020-01-01T00:00:00Z"}, headers=h)
    assert before.status_code == 200 and job.reference not in {f["id"] for f in before.json()["features"]}
    day = client.get("/ogc/collections/jobs/items", params={"datetime": job.created_at.date().isoformat(),
                                                             "limit": 1000}, headers=h)
    assert job.reference in {f["id"] for f in day.json()["features"]}
    move(db, job, "cancelled", Principal(0, "test", "supervisor"))
    db.commit()
    assert client.get(f"/ogc/collections/jobs/items/{job.reference}", headers=h).status_code == 404


def test_assets_need_a_token_when_the_setting_says_so(client, tokens, monkeypatch):
    monkeypatch.setattr(get_settings(), "ogc_public_assets", False)
    anon = client.get("/ogc/collections/street_lights/items", params={"limit": 1})
    assert anon.status_code == 401 and anon.headers["www-authenticate"] == "Bearer"
    assert client.get("/ogc/collections").json()["collections"] == []
    ok = client.get("/ogc/collections/street_lights/items", params={"limit": 1}, headers=auth(tokens["field_worker"]))
    assert ok.status_code == 200 and ok.json()["numberReturned"] == 1


BAD = [
    ("street_lights", {"bbox": "1,2,3"}, 400), ("street_lights", {"bbox": "a,b,c,d"}, 400),
    ("street_lights", {"bbox": "-2.4,51.3,-2.3,nan"}, 400), ("street_lights", {"bbox": "170,50,-170,60"}, 400),
    ("street_lights", {"bbox": "-2.4,95,-2.3,96"}, 400), ("street_lights", {"bbox": "-2.4,51.4,-2.3,51.3"}, 400),
    ("street_lights", {"limit": "0"}, 400), ("street_lights", {"limit": "ten"}, 400),
    ("street_lights", {"offset": "-1"}, 400), ("street_lights", {"datetime": "yesterday"}, 400),
    ("street_lights", {"datetime": "2026-02-01T00:00:00Z/2026-01-01T00:00:00Z"}, 400),
    ("street_lights", {"colour": "red"}, 400), ("street_lights", {"f": "html"}, 400),
    ("unicorns", {}, 404),
]


@pytest.mark.parametrize("collection,params,status", BAD, ids=[f"{b[0]}-{'&'.join(b[1])}-{b[2]}" for b in BAD])
def test_bad_input_is_a_4xx_with_a_message(client, collection, params, status):
    r = client.get(f"/ogc/collections/{collection}/items", params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] and body["description"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["bbox", "limit", "offset", "datetime", "f"]),
                              st.text(max_size=40) | st.from_regex(r"-?\d{1,3}(\.\d+)?(,-?\d{1,3}(\.\d+)?){3}",
                                                                   fullmatch=True), max_size=4),
       collection=st.sampled_from(["street_lights", "roads", "wards", "camden_street_lights"]))
def test_no_query_causes_a_500(client, params, collection):
    r = client.get(f"/ogc/collections/{collection}/items", params=params)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json()["numberReturned"] <= 1000
