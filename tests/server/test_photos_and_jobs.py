"""Photos (verified, stripped, idempotent) and reading jobs, on the real database."""
from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image
from sqlalchemy import func, select

from server.auth.tokens import create_token
from server.config import get_settings
from server.reports.models import Photo
from tests.conftest import auth
from tests.server.test_intake import body, post


@pytest.fixture(autouse=True)
def photo_root(tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "photo_root", tmp_path)
    return tmp_path


def jpeg_with_gps(size=(640, 480)) -> bytes:
    img = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SecretPhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (51.0, 22.0, 48.0)}  # GPSInfo: latitude
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def upload(client, token, ref, data, cid=None, name="p.jpg"):
    return client.post(f"/api/v1/reports/{ref}/photos", headers=auth(token),
                       data={"client_id": str(cid or uuid.uuid4())}, files={"file": (name, data, "image/jpeg")})


def test_photo_is_stored_stripped_thumbnailed_and_idempotent(client, tokens, db, photo_root):
    rep = post(client, tokens["field_worker"], body()).json()
    raw = jpeg_with_gps()
    assert b"SecretPhoneMaker" in raw
    cid = uuid.uuid4()
    r = upload(client, tokens["field_worker"], rep["reference"], raw, cid)
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["width"] == 640 and p["content_type"] == "image/jpeg"
    again = upload(client, tokens["field_worker"], rep["reference"], raw, cid)
    assert again.status_code == 200 and again.json()["id"] == p["id"]
    assert db.scalar(select(func.count()).select_from(Photo).where(Photo.client_id == cid)) == 1
    other = upload(client, tokens["field_worker"], rep["reference"], jpeg_with_gps((300, 200)), cid)
    assert other.status_code == 409
    served = client.get(p["url"], headers=auth(tokens["advisor"]))
    assert served.status_code == 200 and b"SecretPhoneMaker" not in served.content
    assert not Image.open(io.BytesIO(served.content)).getexif()
    thumb = client.get(p["thumbnail_url"], headers=auth(tokens["advisor"]))
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 320
    page = client.get(f"/api/v1/jobs/{rep['job']['reference']}", headers=auth(tokens["advisor"])).json()
    assert [x["id"] for x in page["photos"]] == [p["id"]]
    assert any(e["type"] == "photo_added" for e in page["timeline"])


def _png_bomb() -> bytes:
    # A tiny file that declares an enormous canvas: refused before it is decoded.
    img = Image.new("1", (12000, 12000), 0)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


@pytest.mark.parametrize("data,code", [
    (b"%PDF-1.4 not an image at all", "invalid-photo"),
    (jpeg_with_gps()[:2000], "invalid-photo"),
    (_png_bomb(), "photo-too-large"),
    (b"", "invalid-photo"),
], ids=["not-an-image", "truncated", "bomb", "empty"])
def test_bad_photos_are_refused_and_nothing_is_stored(client, tokens, db, data, code, photo_root):
    ref = post(client, tokens["field_worker"], body()).json()["reference"]
    r = upload(client, tokens["field_worker"], ref, data)
    assert r.status_code == 422, r.text
    assert r.json()["type"].endswith("/" + code) and r.json()["fields"] == ["file"]
    assert db.scalar(select(func.count()).select_from(Photo)) == 0
    assert not any(photo_root.rglob("*.*"))


def test_oversized_photo_is_413(client, tokens, monkeypatch):
    ref = post(client, tokens["field_worker"], body()).json()["reference"]
    monkeypatch.setattr(get_settings(), "max_photo_bytes", 5000)
    r = upload(client, tokens["field_worker"], ref, jpeg_with_gps((1600, 1200)))
    assert r.status_code == 413


def test_a_photo_for_someone_elses_report_is_404(client, tokens, db):
    ref = post(client, tokens["field_worker"], body()).json()["reference"]
    _, other = create_token(db, "field_worker", name="another-inspector")
    r = upload(client, other, ref, jpeg_with_gps())
    assert r.status_code == 404 and r.json()["type"].endswith("/report-not-found")


def test_job_page_has_timeline_reports_sla_and_asset(client, tokens):
    rep = post(client, tokens["field_worker"], body()).json()
    ref = rep["job"]["reference"]
    page = client.get(f"/api/v1/jobs/{ref}", headers=auth(tokens["advisor"]))
    assert page.status_code == 200
    j = page.json()
    assert j["reference"] == ref and j["asset"]["layer"] == "grit_bins" and "lat" in j["asset"]
    assert j["sla"]["due_at"] == rep["job"]["due_at"] and j["sla"]["state"] in ("ok", "at_risk")
    assert j["sla"]["remaining_seconds"] > 0 and j["sla"]["due_in_words"]
    assert j["timeline"][0]["id"] > j["timeline"][-1]["id"]  # newest first
    assert [r["reference"] for r in j["reports"]] == [rep["reference"]]
    assert j["status_in_words"]


def test_job_list_filters_and_free_text(client, tokens):
    rep = post(client, tokens["field_worker"], body()).json()
    ref, asset_ref = rep["job"]["reference"], rep["job"]["asset"]["ref"]
    h = auth(tokens["supervisor"])
    for params in ({"q": ref}, {"q": rep["reference"]}, {"q": asset_ref}, {"category": "grit_bin", "status": "new"},
                   {"ward": rep["job"]["ward"]}, {"status": "open"}):
        items = client.get("/api/v1/jobs", params={**params, "limit": 500}, headers=h).json()["items"]
        assert ref in [i["reference"] for i in items], params
    none = client.get("/api/v1/jobs", params={"q": ref, "status": "closed"}, headers=h).json()
    assert none["total"] == 0
    everything = client.get("/api/v1/jobs", headers=h).json()["total"]
    for odd in ("%", "_", "\\"):  # as typed, not wildcards: only a street holding the character matches
        found = client.get("/api/v1/jobs", params={"q": odd, "limit": 500}, headers=h).json()
        assert all(odd in (i["street"] or "") for i in found["items"]) and found["total"] < everything, odd
    lat, lon = rep_lat_lon = (body()["lat"], body()["lon"])
    inside = client.get("/api/v1/jobs", params={"bbox": f"{lon-0.01},{lat-0.01},{lon+0.01},{lat+0.01}"}, headers=h)
    assert ref in [i["reference"] for i in inside.json()["items"]]
    bad = client.get("/api/v1/jobs", params={"bbox": "1,2,3"}, headers=h)
    assert bad.status_code == 422 and bad.json()["fields"] == ["bbox"]
    assert client.get("/api/v1/jobs", params={"status": "nope"}, headers=h).status_code == 422
    assert rep_lat_lon


def test_contractors_and_other_field_workers_cannot_see_the_job(client, tokens, db):
    rep = post(client, tokens["field_worker"], body()).json()
    ref = rep["job"]["reference"]
    _, contractor = create_token(db, "contractor", contractor="street-lighting")
    _, other = create_token(db, "field_worker", name="someone-else")
    for token in (contractor, other):
        r = client.get(f"/api/v1/jobs/{ref}", headers=auth(token))
        assert r.status_code == 404
        assert ref not in [i["reference"] for i in
                           client.get("/api/v1/jobs", params={"limit": 500}, headers=auth(token)).json()["items"]]
    mine = client.get(f"/api/v1/jobs/{ref}", headers=auth(tokens["field_worker"]))
    assert mine.status_code == 200 and "reporter" not in mine.json()["reports"][0]
    got = client.get(f"/api/v1/reports/{rep['reference']}", headers=auth(tokens["field_worker"]))
    assert got.status_code == 200 and got.json()["job_now"]["reference"] == ref
