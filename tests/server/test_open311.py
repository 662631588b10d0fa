"""Open311 GeoReport v2 (+ updates extension) against real PostGIS, checked against the specification's shapes."""
from __future__ import annotations

import io
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import urlencode
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import func, select, text

from server.auth.tokens import create_token
from server.config import get_settings
from server.deps import Principal
from server.dispatch.models import Contractor
from server.jobs.models import Job
from server.jobs.transitions import move
from server.open311.formats import Document, to_xml
from server.notifications import received
from server.notifications.models import ReporterContact
from server.reports.models import Photo, Report

V2 = "/open311/v2"
BRISTOL = ("51.4545", "-2.5879")


@pytest.fixture
def tokens(db, tokens):
    """The shared tokens, committed (to the test's savepoint) so a refused POST's rollback keeps them."""
    db.commit()
    return tokens


def street_light(db, n: int = 0) -> tuple[str, float, float]:
    """A real street light of the imported layer: (ref, lat, lon)."""
    return db.execute(text("""
        SELECT a.external_ref, ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326))
          FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights'
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.asset_id = a.id)  -- other suites' committed jobs
         ORDER BY a.id DESC OFFSET :n LIMIT 1"""), {"n": n}).one()


def light_form(db, key: str, n: int = 0, **extra) -> dict:
    _, lat, lon = street_light(db, n)
    return {"api_key": key, "service_code": "street_light", "lat": str(lat), "long": str(lon),
            "attribute[fault]": "out", "description": "Lamp out all night", "email": "pat@example.org",
            "first_name": "Pat", "last_name": "Reporter", "phone": "07700900123", **extra}


def xml_of(r) -> ET.Element:
    assert r.headers["content-type"].startswith("text/xml"), r.headers["content-type"]
    assert r.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(r.content)


def post_items(client, path: str, items: list[tuple[str, str]]):
    """POST a urlencoded form whose names repeat (attribute[code][])."""
    return client.post(path, content=urlencode(items), headers={"Content-Type": "application/x-www-form-urlencoded"})


def reports(db) -> int:
    return db.scalar(select(func.count()).select_from(Report))


def test_discovery_lists_the_v2_endpoint_in_both_formats(client):
    root = xml_of(client.get(f"{V2}/discovery.xml"))
    assert root.tag == "discovery"
    ep = root.find("endpoints/endpoint")
    assert ep.findtext("specification") == "http://wiki.open311.org/GeoReport_v2"
    assert ep.findtext("url").endswith("/open311/v2")
    assert [f.text for f in ep.findall("formats/format")] == ["text/xml", "application/json"]
    js = client.get(f"{V2}/discovery.json").json()
    assert js["endpoints"][0]["formats"] == ["text/xml", "application/json"] and js["contact"]


def test_services_are_the_catalogue_with_groups_and_keywords(client):
    js = client.get(f"{V2}/services.json")
    assert js.headers["content-type"].startswith("application/json")
    by = {s["service_code"]: s for s in js.json()}
    assert {"street_light", "fly_tipping", "pothole", "graffiti"} <= set(by)
    assert by["street_light"]["group"] == "Street lighting" and by["street_light"]["type"] == "realtime"
    assert by["street_light"]["metadata"] is True and by["street_light"]["keywords"]
    root = xml_of(client.get(f"{V2}/services.xml"))
    assert root.tag == "services"
    codes = [s.findtext("service_code") for s in root.findall("service")]
    assert codes == [s["service_code"] for s in js.json()]
    assert root.find("service/metadata").text in ("true", "false")


def test_service_definition_has_attributes_with_order_required_and_values(client):
    js = client.get(f"{V2}/services/fly_tipping.json").json()
    assert js["service_code"] == "fly_tipping"
    attrs = {a["code"]: a for a in js["attributes"]}
    waste = attrs["waste_type"]
    assert waste["datatype"] == "multivaluelist" and waste["required"] is True and waste["variable"] is True
    assert waste["values"] and all(set(v) == {"key", "name"} for v in waste["values"])
    assert sorted(a["order"] for a in js["attributes"]) == list(range(1, len(js["attributes"]) + 1))
    root = xml_of(client.get(f"{V2}/services/pothole.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == "pothole"
    depth = next(a for a in root.findall("attributes/attribute") if a.findtext("code") == "depth_mm")
    assert depth.findtext("datatype") == "number" and depth.findtext("required") == "true"
    assert depth.find("values") is None  # only list attributes carry values


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_unknown_service_code_is_404_in_the_spec_error_shape(client, fmt):
    r = client.get(f"{V2}/services/unicorns.{fmt}")
    assert r.status_code == 404
    if fmt == "json":
        assert r.json() == [{"code": 404, "description": "service_code 'unicorns' not found"}]
    else:
        root = xml_of(r)
        assert root.tag == "errors" and root.findtext("error/code") == "404"
        assert "unicorns" in root.findtext("error/description")


def test_post_request_goes_through_intake_and_reads_back(client, db, tokens):
    r = client.post(f"{V2}/requests.json", data=light_form(db, tokens["advisor"]))
    assert r.status_code == 200, r.text
    [answer] = r.json()
    ref = answer["service_request_id"]
    assert ref.startswith("R-") and "target" in answer["service_notice"]
    report = db.scalar(select(Report).where(Report.reference == ref))
    job = db.get(Job, report.job_id)
    assert report.channel == "open311" and report.answers == {"fault": "out"}
    # The reporter's details are kept apart from the report (reporter_contacts), not in its reporter field.
    assert "email" not in report.reporter and report.asset_id == job.asset_id is not None
    received.write_queued(db)  # the outbox worker files the contact the intake queued with the report
    contact = db.scalar(select(ReporterContact).where(ReporterContact.report_id == report.id))
    assert (contact.email, contact.phone, contact.notify) == ("pat@example.org", "07700900123", "none")
    [row] = client.get(f"{V2}/requests/{ref}.json").json()
    assert row["service_request_id"] == ref and row["status"] == "open" and row["service_code"] == "street_light"
    assert datetime.fromisoformat(row["expected_datetime"]) == job.due_at.replace(microsecond=0)
    assert row["address"] and row["status_notes"] and job.reference in row["service_notice"]
    root = xml_of(client.get(f"{V2}/requests/{ref}.xml"))
    assert root.tag == "service_requests" and root.findtext("request/service_request_id") == ref
    for name in ("status", "status_notes", "agency_responsible", "service_notice", "requested_datetime",
                 "updated_datetime", "expected_datetime", "address", "lat", "long", "media_url"):
        assert root.find(f"request/{name}") is not None, name
    # Reads are public and never carry the reporter's details.
    for body in (client.get(f"{V2}/requests/{ref}.xml").text, client.get(f"{V2}/requests.json").text):
        for secret in ("pat@example.org", "07700900123", "Reporter"):
            assert secret not in body


def test_post_request_answers_xml_with_the_spec_elements(client, db, tokens):
    r = client.post(f"{V2}/requests.xml", data=light_form(db, tokens["field_worker"], account_id="acc-7"))
    root = xml_of(r)
    assert r.status_code == 200 and root.tag == "service_requests"
    assert root.findtext("request/service_request_id").startswith("R-")
    assert root.findtext("request/account_id") == "acc-7" and root.findtext("request/service_notice")


def test_external_id_makes_post_idempotent_per_api_key(client, db, tokens):
    form = light_form(db, tokens["advisor"], **{"attribute[fixmystreet_id]": "FMS-4242"})
    first = client.post(f"{V2}/requests.json", data=form).json()[0]
    before = (reports(db), db.scalar(select(func.count()).select_from(Job)))
    again = client.post(f"{V2}/requests.json", data=form).json()[0]
    assert again["service_request_id"] == first["service_request_id"]
    assert (reports(db), db.scalar(select(func.count()).select_from(Job))) == before
    assert db.scalar(select(Report.external_id).where(Report.reference == first["service_request_id"])) == "FMS-4242"
    other = client.post(f"{V2}/requests.json", data={**form, "api_key": tokens["supervisor"]}).json()[0]
    assert other["service_request_id"] != first["service_request_id"]  # another integration's FMS-4242
    clash = client.post(f"{V2}/requests.json", data={**form, "service_code": "graffiti",
                                                      "attribute[offensive]": "no"})
    assert clash.status_code == 400 and "already used" in clash.json()[0]["description"]


def test_form_attributes_are_coerced_multivalue_and_numbers(client, db, tokens):
    _, lat, lon = street_light(db, 50)
    fly = post_items(client, f"{V2}/requests.json", [
        ("api_key", tokens["advisor"]), ("service_code", "fly_tipping"), ("lat", str(lat)), ("long", str(lon)),
        ("attribute[waste_type][]", "household"), ("attribute[waste_type][]", "furniture"),
        ("attribute[size]", "car_boot"), ("attribute[title]", "FixMyStreet extra, ignored")])
    assert fly.status_code == 200, fly.text
    rep = db.scalar(select(Report).where(Report.reference == fly.json()[0]["service_request_id"]))
    assert sorted(rep.answers["waste_type"]) == ["furniture", "household"] and "title" not in rep.answers
    hole = client.post(f"{V2}/requests.json", data={"api_key": tokens["advisor"], "service_code": "pothole",
                                                    "lat": str(lat), "long": str(lon), "attribute[depth_mm]": "60",
                                                    "attribute[location]": "carriageway"})
    assert hole.status_code == 200, hole.text
    rep = db.scalar(select(Report).where(Report.reference == hole.json()[0]["service_request_id"]))
    assert rep.answers["depth_mm"] == 60


def test_address_string_resolves_a_street_or_says_why_not(client, db, tokens):
    name, ward = db.execute(text("""
        SELECT a.name, min(w.name) FROM assets a JOIN asset_layers l ON l.id = a.layer_id AND l.name = 'roads'
          JOIN areas w ON w.id = a.ward_id WHERE a.name IS NOT NULL GROUP BY a.name
        HAVING count(DISTINCT a.ward_id) = 1 AND ST_MaxDistance(ST_Collect(a.geom), ST_Collect(a.geom)) < 300
         LIMIT 1""")).one()
    base = {"api_key": tokens["advisor"], "service_code": "graffiti", "attribute[offensive]": "no"}
    ok = client.post(f"{V2}/requests.json", data={**base, "address_string": f"12 {name.upper()}"})
    assert ok.status_code == 200, ok.text
    rep = db.scalar(select(Report).where(Report.reference == ok.json()[0]["service_request_id"]))
    assert rep.street == name and rep.location_provider == "manual"
    many = client.post(f"{V2}/requests.json", data={**base, "address_string": "High Street"})
    assert many.status_code == 400 and "several places" in many.json()[0]["description"]
    high_ward = db.scalar(text("""
        SELECT w.name FROM assets a JOIN areas w ON w.id = a.ward_id WHERE a.name = 'High Street' GROUP BY w.name
        HAVING ST_MaxDistance(ST_Collect(a.geom), ST_Collect(a.geom)) < 1000 ORDER BY w.name LIMIT 1"""))
    narrowed = client.post(f"{V2}/requests.json", data={**base, "address_string": f"High Street, {high_ward}"})
    assert narrowed.status_code == 200, narrowed.text
    none = client.post(f"{V2}/requests.json", data={**base, "address_string": "Nowhere Lane Of Dreams"})
    assert none.status_code == 400 and "no street named" in none.json()[0]["description"]


BAD_POSTS = [
    ({"api_key": None}, 403, "api_key is required"),
    ({"api_key": "ks_not-a-real-token"}, 403, "not valid"),
    ({"service_code": "unicorns"}, 404, "service_code"),
    ({"service_code": None}, 400, "service_code is required"),
    ({"lat": None, "long": None}, 400, "location is required"),
    ({"long": None}, 400, "together"),
    ({"lat": "abc"}, 400, "lat must be"),
    ({"lat": "nan"}, 400, "lat must be"),
    ({"long": "181"}, 400, "long must be"),
    ({"lat": BRISTOL[0], "long": BRISTOL[1]}, 400, "outside"),
    ({"attribute[fault]": None}, 400, "attribute[fault]"),
    ({"attribute[fault]": "on fire"}, 400, "attribute[fault]"),
    ({"description": "<script>alert(1)</script>"}, 400, "description"),
    ({"jurisdiction_id": "elsewhere.gov.uk"}, 404, "jurisdiction_id"),
    ({"attribute[fault": "x"}, 400, "attribute"),
]


@pytest.mark.parametrize("change,status,words", BAD_POSTS, ids=[f"{b[1]}-{b[2]}" for b in BAD_POSTS])
def test_bad_posts_are_spec_errors_and_store_nothing(client, db, tokens, change, status, words):
    form = {k: v for k, v in {**light_form(db, tokens["advisor"]), **change}.items() if v is not None}
    before = reports(db)
    r = client.post(f"{V2}/requests.json", data=form)
    assert r.status_code == status, r.text
    [err] = r.json()
    assert err["code"] == status and words in err["description"]
    x = client.post(f"{V2}/requests.xml", data=form)
    assert x.status_code == status and xml_of(x).findtext("error/code") == str(status)
    assert reports(db) == before


def test_multipart_post_with_a_media_file_stores_the_photo(client, db, tokens, tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "photo_root", tmp_path)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 200, 20)).save(buf, "JPEG")
    form = light_form(db, tokens["advisor"], n=1500, **{"attribute[fixmystreet_id]": "FMS-PHOTO"})
    r = client.post(f"{V2}/requests.json", data=form, files={"media": ("lamp.jpg", buf.getvalue(), "image/jpeg")})
    assert r.status_code == 200, r.text
    report_id = db.scalar(select(Report.id).where(Report.reference == r.json()[0]["service_request_id"]))
    photo = db.scalar(select(Photo).where(Photo.report_id == report_id))
    assert photo is not None and photo.content_type == "image/jpeg" and (tmp_path / photo.path).is_file()
    before = reports(db)
    junk = client.post(f"{V2}/requests.json", data=light_form(db, tokens["advisor"], n=1600),
                       files={"media": ("x.jpg", b"not an image", "image/jpeg")})
    assert junk.status_code == 400 and junk.json()[0]["description"].startswith("media:")
    assert reports(db) == before


def test_roles_that_may_not_report_get_403(client, db, tokens):
    _, contractor_key = create_token(db, "contractor", contractor="street-lighting")
    for key in (contractor_key, tokens["crew"]):
        r = client.post(f"{V2}/requests.json", data=light_form(db, key))
        assert r.status_code == 403 and "may not create" in r.json()[0]["description"]


def test_get_requests_filters_and_refuses_bad_windows(client, db, tokens):
    a = client.post(f"{V2}/requests.json", data=light_form(db, tokens["advisor"], n=10)).json()[0]
    b = client.post(f"{V2}/requests.json", data=light_form(db, tokens["advisor"], n=400)).json()[0]
    ids = f"{a['service_request_id']},{b['service_request_id']},R-999999"
    got = client.get(f"{V2}/requests.json", params={"service_request_id": ids}).json()
    assert {r["service_request_id"] for r in got} == {a["service_request_id"], b["service_request_id"]}
    now = datetime.now(timezone.utc)
    window = {"start_date": (now - timedelta(hours=1)).isoformat(), "end_date": (now + timedelta(hours=1)).isoformat()}
    lights = client.get(f"{V2}/requests.json", params={**window, "service_code": "street_light", "status": "open"})
    assert {a["service_request_id"], b["service_request_id"]} <= {r["service_request_id"] for r in lights.json()}
    closed = client.get(f"{V2}/requests.json", params={**window, "status": "closed"}).json()
    assert a["service_request_id"] not in {r["service_request_id"] for r in closed}
    past = {"start_date": "2020-01-01T00:00:00Z", "end_date": "2020-01-02T00:00:00Z"}
    assert client.get(f"{V2}/requests.json", params=past).json() == []
    root = xml_of(client.get(f"{V2}/requests.xml", params={"service_request_id": ids}))
    assert len(root.findall("request")) == 2
    for params, words in [({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}, "90 days"),
                          ({"start_date": "2026-02-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"}, "after"),
                          ({"start_date": "last tuesday"}, "W3C"), ({"status": "pending"}, "open or closed"),
                          ({"jurisdiction_id": "x"}, "jurisdiction_id"), ({"api_key": "nope"}, "api_key")]:
        r = client.get(f"{V2}/requests.json", params=params)
        assert r.status_code in (400, 403, 404) and words in r.json()[0]["description"], (params, r.text)


def test_unknown_request_token_and_paths_are_404(client, db, tokens):
    for path in ("requests/R-999999.json", "tokens/not-a-token.json", f"tokens/{uuid.uuid4()}.json"):
        r = client.get(f"{V2}/{path}")
        assert r.status_code == 404 and r.json()[0]["code"] == 404
    assert xml_of(client.get(f"{V2}/requests")).findtext("error/code") == "404"
    assert xml_of(client.get(f"{V2}/services.html")).findtext("error/code") == "404"
    form = light_form(db, tokens["advisor"], **{"attribute[fixmystreet_id]": "FMS-77"})
    ref = client.post(f"{V2}/requests.json", data=form).json()[0]["service_request_id"]
    cid = db.scalar(select(Report.client_id).where(Report.reference == ref))
    [tok] = client.get(f"{V2}/tokens/{cid}.json").json()
    assert tok == {"service_request_id": ref, "token": str(cid)}
    assert xml_of(client.get(f"{V2}/tokens/{cid}.xml")).findtext("request/token") == str(cid)


def _open_job(client, db, key: str, n: int = 0) -> tuple[str, Job]:
    ref = client.post(f"{V2}/requests.json", data=light_form(db, key, n=n)).json()[0]["service_request_id"]
    return ref, db.get(Job, db.scalar(select(Report.job_id).where(Report.reference == ref)))


def test_updates_come_from_the_job_timeline_in_the_extended_set(client, db, tokens):
    ref, job = _open_job(client, db, tokens["advisor"], n=700)
    boss = Principal(0, "test", "supervisor")
    move(db, job, "sent", "system:test")
    move(db, job, "accepted", boss)
    move(db, job, "in_progress", boss)
    move(db, job, "completed", boss)
    db.flush()
    now = datetime.now(timezone.utc)
    window = {"start_date": (now - timedelta(minutes=10)).isoformat(),
              "end_date": (now + timedelta(minutes=1)).isoformat()}
    mine = [u for u in client.get(f"{V2}/servicerequestupdates.json", params=window).json()
            if u["service_request_id"] == ref]
    assert [u["status"] for u in mine] == ["open", "action_scheduled", "in_progress", "fixed"]
    assert [u["external_status_code"] for u in mine] == ["sent", "accepted", "in_progress", "completed"]
    assert len({u["update_id"] for u in mine}) == 4 and all(u["description"] for u in mine)
    root = xml_of(client.get(f"{V2}/servicerequestupdates.xml", params=window))
    assert root.tag == "service_request_updates"
    ours = [u for u in root.findall("request_update") if u.findtext("service_request_id") == ref]
    assert [u.findtext("status") for u in ours] == ["open", "action_scheduled", "in_progress", "fixed"]
    for name in ("update_id", "updated_datetime", "description", "media_url", "external_status_code"):
        assert ours[0].find(name) is not None, name
    [row] = client.get(f"{V2}/requests/{ref}.json").json()
    assert row["status"] == "closed"
    old = {"start_date": "2021-01-01T00:00:00Z", "end_date": "2021-01-02T00:00:00Z"}
    assert client.get(f"{V2}/servicerequestupdates.json", params=old).json() == []
    assert client.get(f"{V2}/servicerequestupdates.json", params={"start_date": "2020-01-01"}).status_code == 400


def _contractor_job(client, db, tokens, n: int = 900):
    ref, job = _open_job(client, db, tokens["advisor"], n=n)
    lighting = db.scalar(select(Contractor).where(Contractor.name == "street-lighting"))
    move(db, job, "sent", "system:test")
    job.contractor_id = lighting.id
    key = create_token(db, "contractor", contractor="street-lighting")[1]
    db.commit()
    return ref, job, key


def test_a_contractor_pushes_updates_and_a_repeat_is_refused(client, db, tokens):
    ref, job, key = _contractor_job(client, db, tokens)
    at = datetime.now(timezone.utc).isoformat()
    form = {"api_key": key, "service_request_id": ref, "update_id": "BO-1", "status": "ACTION_SCHEDULED",
            "updated_datetime": at, "description": "Booked for Tuesday"}
    ok = client.post(f"{V2}/servicerequestupdates.xml", data=form)
    assert ok.status_code == 200, ok.text
    root = xml_of(ok)
    assert root.tag == "service_request_updates" and root.findtext("request_update/update_id") == "BO-1"
    db.refresh(job)
    assert job.status == "scheduled"
    again = client.post(f"{V2}/servicerequestupdates.json", data=form)
    assert again.status_code == 400 and "already been received" in again.json()[0]["description"]
    start = client.post(f"{V2}/servicerequestupdates.json",
                        data={**form, "update_id": "BO-2", "status": "in_progress",
                              "service_request_id": job.reference})
    assert start.status_code == 200 and start.json() == [{"update_id": "BO-2"}]
    db.refresh(job)
    assert job.status == "in_progress"
    # A completion needs the same evidence as any contractor completion; a refusal stores nothing.
    fixed = {**form, "update_id": "BO-3", "status": "FIXED", "description": "New lantern fitted"}
    refused = client.post(f"{V2}/servicerequestupdates.json", data=fixed)
    assert refused.status_code == 400 and "lat, long and media_url" in refused.json()[0]["description"]
    lat, lon = db.execute(text("SELECT ST_Y(ST_Transform(geom, 4326)), ST_X(ST_Transform(geom, 4326)) "
                               "FROM jobs WHERE id = :id"), {"id": job.id}).one()
    done = client.post(f"{V2}/servicerequestupdates.json", data={
        **fixed, "lat": str(lat), "long": str(lon), "media_url": "https://contractor.example/p/1.jpg"})
    assert done.status_code == 200, done.text
    db.refresh(job)
    assert job.status == "completed"


def test_pushed_updates_are_scoped_and_checked(client, db, tokens):
    ref, job, key = _contractor_job(client, db, tokens, n=950)
    at = datetime.now(timezone.utc).isoformat()
    form = {"api_key": key, "service_request_id": ref, "update_id": "X-1", "status": "IN_PROGRESS",
            "updated_datetime": at, "description": ""}
    _, other = create_token(db, "contractor", contractor="green-spaces")
    cases = [({"api_key": tokens["advisor"]}, 403), ({"api_key": other}, 404), ({"api_key": None}, 403),
             ({"status": "DONE_AND_DUSTED"}, 400), ({"status": None}, 400), ({"updated_datetime": "yesterday"}, 400),
             ({"service_request_id": "R-999999"}, 404), ({"lat": "51.4"}, 400), ({"status": "FOR_TRIAGE"}, 400),
             ({"update_id": "u" * 201}, 400)]
    for change, status in cases:
        data = {k: v for k, v in {**form, **change}.items() if v is not None}
        r = client.post(f"{V2}/servicerequestupdates.json", data=data)
        assert r.status_code == status, (change, r.text)
        assert r.json()[0]["code"] == status
    db.refresh(job)
    assert job.status == "sent"


def test_xml_stays_well_formed_whatever_the_text(client, db, tokens):
    r = client.post(f"{V2}/requests.json", data=light_form(db, tokens["advisor"], n=1200,
                                                         description="Bell \x07 & 1 < 2 \"quoted\" \u2603"))
    ref = r.json()[0]["service_request_id"]
    root = xml_of(client.get(f"{V2}/requests/{ref}.xml"))
    assert root.findtext("request/description") == "Bell \ufffd & 1 < 2 \"quoted\" \u2603"


@given(st.recursive(st.text() | st.integers() | st.booleans() | st.none(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["a", "service_request_id", "values", "errors"]), inner, max_size=3),
                    max_leaves=12))
def test_any_document_renders_as_well_formed_xml(body):
    root = ET.fromstring(to_xml(Document("service_requests", body if isinstance(body, (list, dict)) else [body])))
    assert root.tag == "service_requests"


FIELD_NAMES = ["api_key", "service_code", "lat", "long", "address_string", "attribute[fault]", "attribute[x][]",
               "description", "jurisdiction_id", "media_url", "attribute[fixmystreet_id]", "attribute[", "email"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.lists(st.tuples(st.sampled_from(FIELD_NAMES), st.text(max_size=30)), max_size=8),
       fmt=st.sampled_from(["xml", "json"]), endpoint=st.sampled_from(["requests", "servicerequestupdates"]),
       with_key=st.booleans())
def test_no_form_input_causes_a_500(client, tokens, fields, fmt, endpoint, with_key):
    if with_key:
        fields = [("api_key", tokens["advisor"]), *[f for f in fields if f[0] != "api_key"]]
    r = post_items(client, f"{V2}/{endpoint}.{fmt}", fields)
    assert r.status_code in (200, 400, 403, 404), r.text
    if r.status_code != 200:
        codes = [e["code"] for e in r.json()] if fmt == "json" else \
            [int(c.text) for c in ET.fromstring(r.content).iter("code")]
        assert codes and set(codes) == {r.status_code}
