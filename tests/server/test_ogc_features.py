"""OGC features written by PostgreSQL (server/ogc/features.py) against what they must say.

Jobs are compared value for value, key for key, with the jobs API's own list row (server.jobs.views, the
Python the features used to be made from) and with times, places and words known in advance; asset and ward
properties with the rule the Python code had (own fields first and winning, then the source's attributes);
numberMatched on full, short, exactly full and empty pages.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from sqlalchemy import func, select, text

from server.areas.models import Area
from server.assets.models import Asset, AssetLayer
from server.auth.tokens import create_token
from server.dispatch.models import Contractor, Crew
from server.jobs.models import Job
from server.jobs.views import job_summary
from tests.conftest import auth

BNG = "http://www.opengis.net/def/crs/EPSG/0/27700"
# A field near Timsbury, inside the council's boundary, where no other test puts anything: (easting, northing).
SPOT = (365432.10, 158765.40)
BOX = (SPOT[0] - 40, SPOT[1] - 40, SPOT[0] + 40, SPOT[1] + 40)
UTC = timezone.utc


def make_job(db, n: int, *, status: str = "new", created: datetime | None = None, **fields) -> Job:
    """A job n metres east of SPOT (0.004 m north too, so the 2-decimal rounding of BNG shows)."""
    created = created or datetime(2026, 2, 3, 4, 5, 6, 250000, tzinfo=UTC)
    fields.setdefault("demand_count", 1)
    job = Job(reference="OGC-" + uuid.uuid4().hex[:10].upper(), category_code=fields.pop("category", "graffiti"),
              geom=func.ST_SetSRID(func.ST_MakePoint(SPOT[0] + n, SPOT[1] + 0.004), 27700), priority="normal",
              status=status, sla_policy={"kind": "hours", "hours": 24}, sla_started_at=created, created_at=created,
              updated_at=created, **fields)
    db.add(job)
    db.flush()
    return job


def page(client, token: str, collection: str = "jobs", **params) -> dict:
    params.setdefault("bbox", ",".join(map(str, BOX)))
    params.setdefault("bbox-crs", BNG)
    r = client.get(f"/ogc/collections/{collection}/items", params=params, headers=auth(token))
    assert r.status_code == 200, r.text
    return r.json()


def rel(doc: dict, name: str) -> dict | None:
    return next((link for link in doc["links"] if link["rel"] == name), None)


def expected_job(db, job: Job) -> dict:
    """The feature the Python code made from the jobs API's list row."""
    s = job_summary(db, job)
    asset, assignee = s.pop("asset") or {}, s.pop("assignee") or {}
    lon, lat = s.pop("lon"), s.pop("lat")
    props = {**s, "asset_layer": asset.get("layer"), "asset_ref": asset.get("ref"),
             "assignee_kind": assignee.get("kind"), "assignee": assignee.get("title")}
    return {"type": "Feature", "id": job.reference, "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": props}


@pytest.fixture
def jobs(db):
    """Five open jobs at SPOT: plain, sent to a contractor (with an asset and a ward), with a crew, on hold,
    and one with awkward text."""
    lighting = db.scalar(select(Contractor).where(Contractor.name == "street-lighting"))
    highways = db.scalar(select(Crew).where(Crew.name == "highways"))
    light = db.scalar(select(Asset).join(AssetLayer).where(AssetLayer.name == "street_lights").order_by(Asset.id))
    ward = db.scalar(select(Area).where(Area.kind == "ward").order_by(Area.code))
    return {
        "plain": make_job(db, 0, created=datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
                          due_at=datetime(2026, 2, 4, 4, 5, 6, 7, tzinfo=UTC)),
        "sent": make_job(db, 5, status="sent", category="street_light", contractor_id=lighting.id,
                         contractor_ref="BW-123", asset_id=light.id, ward_id=ward.id, street="High Street"),
        "crew": make_job(db, 10, status="assigned", crew_id=highways.id, triage_reason=None),
        "held": make_job(db, 15, status="on_hold", crew_id=highways.id, demand_count=3,
                         due_at=datetime(2026, 3, 1, tzinfo=UTC)),
        "odd": make_job(db, 20, status="triage", street='Lane\'s "End" \\ Ünïcödé\n\ttab',
                        triage_reason="no asset within 25 m"),
    }


def test_job_features_say_what_the_jobs_api_says(client, db, tokens, jobs):
    fc = page(client, tokens["advisor"], limit=1000)
    got = {f["id"]: f for f in fc["features"]}
    assert set(got) == {j.reference for j in jobs.values()}
    for job in jobs.values():
        want = expected_job(db, job)
        assert got[job.reference] == want
        assert list(got[job.reference]["properties"]) == list(want["properties"])  # same order too
    # And what they say, known in advance (not taken from the code above).
    plain, sent, crew, odd = (got[jobs[k].reference]["properties"] for k in ("plain", "sent", "crew", "odd"))
    assert plain["created_at"] == "2026-02-03T04:05:06+00:00"  # no fraction when there is none
    assert plain["due_at"] == "2026-02-04T04:05:06.000007+00:00"
    assert plain["status_in_words"] == "Logged and waiting to be passed to a team" and plain["assignee"] is None
    assert sent["status_in_words"] == "With Brightway Street Lighting Ltd, waiting for them to accept it"
    assert (sent["assignee_kind"], sent["asset_layer"], sent["contractor_ref"]) == ("contractor", "street_lights",
                                                                                      "BW-123")
    assert sent["ward"] and sent["asset_ref"] and sent["open311_status"] == "open"
    assert (crew["assignee_kind"], crew["assignee"]) == ("crew", "Highways crew")
    assert odd["street"] == 'Lane\'s "End" \\ Ünïcödé\n\ttab' and odd["triage_reason"] == "no asset within 25 m"
    one = client.get(f"/ogc/collections/jobs/items/{jobs['sent'].reference}", headers=auth(tokens["advisor"]))
    assert {k: v for k, v in one.json().items() if k != "links"} == got[jobs["sent"].reference]
    assert rel(one.json(), "self")["href"].endswith(f"/ogc/collections/jobs/items/{jobs['sent'].reference}")


def test_job_coordinates_in_crs84_and_the_storage_crs(client, db, tokens, jobs):
    job = jobs["plain"]
    lon, lat = db.execute(select(func.ST_X(func.ST_Transform(Job.geom, 4326)),
                                 func.ST_Y(func.ST_Transform(Job.geom, 4326))).where(Job.id == job.id)).one()
    assert -2.51 < lon < -2.48 and 51.32 < lat < 51.34
    crs84 = client.get(f"/ogc/collections/jobs/items/{job.reference}", headers=auth(tokens["advisor"]))
    assert crs84.json()["geometry"] == {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}
    bng = client.get(f"/ogc/collections/jobs/items/{job.reference}", params={"crs": BNG},
                     headers=auth(tokens["advisor"]))
    assert bng.headers["content-crs"] == f"<{BNG}>"
    assert bng.json()["geometry"] == {"type": "Point", "coordinates": [365432.1, 158765.4]}  # 2 decimals
    fc = page(client, tokens["advisor"], crs=BNG)
    assert {f["id"]: f["geometry"]["coordinates"] for f in fc["features"]}[jobs["held"].reference] == [365447.1,
                                                                                                      158765.4]


def test_number_matched_on_full_short_exact_and_empty_pages(client, tokens, jobs):
    refs = sorted(((j.id, j.reference) for j in jobs.values()))
    h = tokens["advisor"]

    def ids(doc):
        return [f["id"] for f in doc["features"]]

    full = page(client, h, limit=2)  # full: the count is made
    assert (full["numberReturned"], full["numberMatched"]) == (2, 5) and ids(full) == [r for _, r in refs[:2]]
    assert parse_qs(urlsplit(rel(full, "next")["href"]).query)["offset"] == ["2"]
    short = page(client, h, limit=10)  # short from the start: it holds them all
    assert (short["numberReturned"], short["numberMatched"]) == (5, 5) and rel(short, "next") is None
    tail = page(client, h, limit=2, offset=4)  # short after an offset: the matches end here
    assert (tail["numberReturned"], tail["numberMatched"]) == (1, 5) and ids(tail) == [refs[4][1]]
    assert rel(tail, "next") is None and rel(tail, "prev")
    middle = page(client, h, limit=2, offset=3)
    assert (middle["numberReturned"], middle["numberMatched"]) == (2, 5) and rel(middle, "next") is None
    exact = page(client, h, limit=5)
    assert (exact["numberReturned"], exact["numberMatched"]) == (5, 5) and rel(exact, "next") is None
    beyond = page(client, h, limit=2, offset=7)  # empty after an offset: counted, not guessed
    assert (beyond["numberReturned"], beyond["numberMatched"], beyond["features"]) == (0, 5, [])
    elsewhere = page(client, h, bbox="300000,100000,300010,100010")
    assert (elsewhere["numberReturned"], elsewhere["numberMatched"]) == (0, 0)


def test_contractors_and_crews_read_only_their_jobs(client, db, jobs):
    _, lighting = create_token(db, "contractor", contractor="street-lighting")
    highways = db.scalar(select(Crew).where(Crew.name == "highways"))
    _, crew = create_token(db, "crew", crew=highways.name)
    db.flush()
    assert [f["id"] for f in page(client, lighting)["features"]] == [jobs["sent"].reference]
    theirs = page(client, crew)
    assert {f["id"] for f in theirs["features"]} == {jobs["crew"].reference, jobs["held"].reference}
    assert theirs["numberMatched"] == 2
    assert client.get(f"/ogc/collections/jobs/items/{jobs['plain'].reference}",
                      headers=auth(crew)).status_code == 404


def asset_expected(db, asset: Asset, layer: str) -> dict:
    """The properties the Python code made: own fields, then attributes not named like them (as stored: jsonb
    keeps its own key order)."""
    ward = db.scalar(select(Area.name).where(Area.id == asset.ward_id)) if asset.ward_id else None
    props = {"ref": asset.external_ref, "name": asset.name, "layer": layer, "ward": ward, "street": asset.street,
             "maintainer": asset.maintainer, "synthetic": asset.synthetic}
    for key, value in (db.scalar(select(Asset.attributes).where(Asset.id == asset.id)) or {}).items():
        props.setdefault(key, value)
    return props


def test_asset_properties_own_fields_first_then_the_sources_attributes(client, db):
    bench = db.scalar(select(Asset).join(AssetLayer).where(AssetLayer.name == "benches").order_by(Asset.id))
    bench.attributes = {"name": "not this one", "ref": "nor this", "seats": 3, "width_m": 1.5,
                        "note": 'a "quoted" back\\slash é', "parts": {"legs": [1, 2.5, None, True]}}
    bench.street = 'St John\'s "Road"'
    plain = db.scalars(select(Asset).join(AssetLayer).where(AssetLayer.name == "benches")
                       .order_by(Asset.id).offset(1).limit(1)).one()
    plain.attributes = {}
    db.flush()
    for asset in (bench, plain):
        r = client.get(f"/ogc/collections/benches/items/{quote(asset.external_ref, safe='')}")
        props = r.json()["properties"]
        want = asset_expected(db, asset, "benches")
        assert props == want and list(props) == list(want)
    props = client.get(f"/ogc/collections/benches/items/{quote(bench.external_ref, safe='')}").json()["properties"]
    assert props["name"] == bench.name != "not this one" and props["seats"] == 3
    assert props["parts"] == {"legs": [1, 2.5, None, True]} and props["street"] == 'St John\'s "Road"'
    # The same feature in a page (by a bbox around it, in the storage CRS) as on its own.
    x, y = db.execute(select(func.ST_X(Asset.geom), func.ST_Y(Asset.geom)).where(Asset.id == bench.id)).one()
    fc = client.get("/ogc/collections/benches/items", params={
        "bbox": f"{x - 1},{y - 1},{x + 1},{y + 1}", "bbox-crs": BNG, "crs": BNG}).json()
    mine = next(f for f in fc["features"] if f["id"] == bench.external_ref)
    assert mine["properties"] == asset_expected(db, bench, "benches")
    assert mine["geometry"] == {"type": "Point", "coordinates": [round(x, 2), round(y, 2)]}


def test_ward_attributes_follow_code_and_name_and_may_replace_them(client, db):
    ward = db.scalar(select(Area).where(Area.kind == "ward").order_by(Area.code))
    ward.attributes = {**ward.attributes, "name": "Named by its attribute", "extra": [1, "two"]}
    db.flush()
    got = client.get(f"/ogc/collections/wards/items/{ward.code}").json()["properties"]
    want = {"code": ward.code, "name": ward.name, **db.scalar(select(Area.attributes).where(Area.id == ward.id))}
    assert got == want and list(got) == list(want) and got["name"] == "Named by its attribute"
    fc = client.get("/ogc/collections/wards/items", params={"limit": 1000}).json()
    assert next(f for f in fc["features"] if f["id"] == ward.code)["properties"] == want


def test_a_page_is_json_a_strict_parser_reads(client, tokens, jobs):
    r = client.get("/ogc/collections/jobs/items", params={"bbox": ",".join(map(str, BOX)), "bbox-crs": BNG},
                   headers=auth(tokens["advisor"]))
    doc = json.loads(r.content.decode("utf-8"), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert list(doc) == ["type", "features", "links", "timeStamp", "numberMatched", "numberReturned"]
    assert int(r.headers["content-length"]) == len(r.content)
    empty = client.get("/ogc/collections/jobs/items", params={"bbox": "10,10,11,11"},
                       headers=auth(tokens["advisor"]))
    assert json.loads(empty.content)["features"] == []


def test_the_status_words_follow_a_title_changed_since_the_last_request(client, db, tokens, jobs):
    def words():
        return {f["id"]: f["properties"]["status_in_words"] for f in page(client, tokens["advisor"])["features"]}

    assert words()[jobs["sent"].reference] == "With Brightway Street Lighting Ltd, waiting for them to accept it"
    db.execute(text("UPDATE contractors SET title = 'Lamps & Co' WHERE name = 'street-lighting'"))
    assert words()[jobs["sent"].reference] == "With Lamps & Co, waiting for them to accept it"
