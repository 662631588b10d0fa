"""FixMyStreet talking to us unmodified: its Open311 client's request shapes, replayed, and our answers read its way.

The shapes follow mysociety/fixmystreet's perllib/Open311.pm (read, not copied): every request carries
`jurisdiction_id`; POSTs carry `api_key`; a POST is application/x-www-form-urlencoded, a list value (the
`multi_photos` media_url) becoming the same field repeated, unless files are uploaded (`upload_files`, photos
as `photo1`…`photoN`), when it is multipart/form-data with list values flattened the same way. Answers are read
as XML::Simple reads them (`ForceArray` on the list elements, `GroupTags` for attributes/values): POST requests
→ `request[0].service_request_id`, POST servicerequestupdates → `request_update[0].update_id`, GET updates →
`request_update`, errors → `error[].description`.
"""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode, urlsplit

import pytest
from PIL import Image
from sqlalchemy import func, select, text

from server.auth.tokens import create_token
from server.config import get_settings
from server.deps import Principal
from server.dispatch.models import Contractor
from server.errors import DomainError
from server.jobs.models import Job, JobEvent
from server.jobs.transitions import move
from server.notifications.models import Chaser
from server.outbox.models import OutboxMessage
from server.reports.models import Photo, Report

V2 = "/open311/v2"
JURISDICTION = "bathnes.gov.uk"

# XML::Simple as Open311.pm configures it: these elements are always lists; these wrappers collapse to a list.
FORCE_ARRAY = {"service", "attribute", "value", "request", "error", "request_update", "group"}
GROUP_TAGS = {"services": "service", "attributes": "attribute", "values": "value", "service_requests": "request",
              "errors": "error", "service_request_updates": "request_update", "groups": "group"}


def simple(xml: bytes) -> dict:
    """The document as XML::Simple(ForceArray, KeyAttr => {}, GroupTags, SuppressEmpty => undef) gives it."""
    return _node(ET.fromstring(xml))


def _node(el: ET.Element):
    children = list(el)
    if not children:
        return el.text if el.text and el.text.strip() else None
    out: dict = {}
    for child in children:
        value = _node(child)
        inner = GROUP_TAGS.get(child.tag)
        if inner and isinstance(value, dict) and set(value) == {inner}:
            value = value[inner]  # GroupTags: <attributes><attribute/>…</attributes> → attributes => [...]
        if child.tag in FORCE_ARRAY:
            out.setdefault(child.tag, []).append(value)
        elif child.tag in out:
            out[child.tag] = [*(out[child.tag] if isinstance(out[child.tag], list) else [out[child.tag]]), value]
        else:
            out[child.tag] = value
    return out


def w3cdtf(moment: datetime) -> str:
    """DateTime::Format::W3CDTF of a comment's confirmed time (nanoseconds dropped)."""
    return moment.replace(microsecond=0).isoformat()


def truncate(coordinate: float) -> str:
    """Utils::truncate_coordinate: six decimals, trailing zeros dropped."""
    return f"{coordinate:.6f}".rstrip("0").rstrip(".")


def jpeg(colour=(200, 40, 40), size=(80, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


class FixMyStreet:
    """One FixMyStreet body's Open311 settings (endpoint, jurisdiction, api_key, multi_photos, upload_files)."""

    def __init__(self, client, api_key: str, *, multi_photos: bool = True, upload_files: bool = False):
        self.client, self.api_key = client, api_key
        self.multi_photos, self.upload_files = multi_photos, upload_files
        self.confirmed: dict[int, datetime] = {}  # each comment's confirmed time, sent as is on every retry

    def get(self, path: str, params: dict | None = None):
        return self.client.get(f"{V2}/{path}", params={**(params or {}), "jurisdiction_id": JURISDICTION})

    def post(self, path: str, params: dict, uploads: dict | None = None):
        params = {**params, "jurisdiction_id": JURISDICTION, "api_key": self.api_key}
        if uploads:  # HTTP::Request::Common form-data: list values flattened into repeated fields, then files
            data = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
            files = [(name, (filename, content, "image/jpeg")) for name, (filename, content) in uploads.items()]
            return self.client.post(f"{V2}/{path}", data=dict(_grouped(data)), files=files)
        body = urlencode(params, doseq=True)  # a list value is the field repeated
        return self.client.post(f"{V2}/{path}", content=body,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})

    def service_list(self) -> list[dict]:
        r = self.get("services.xml")
        assert r.status_code == 200, r.text
        return simple(r.content)["service"]

    def service_meta(self, code: str) -> dict:
        r = self.get(f"services/{code}.xml")
        assert r.status_code == 200, r.text
        return simple(r.content)

    def report_params(self, *, service_code: str, lat: float, lon: float, fms_id: int | None, title: str,
                      detail: str, photos: list[str], extra: dict | None = None) -> dict:
        """_populate_service_request_params for a UK cobrand (extended description, name split, lat/long)."""
        url = f"https://fms.example/report/{fms_id or 0}"
        params = {
            "description": f"title: {title}\n\ndetail: {detail}\n\nurl: {url}\n\nSubmitted via FixMyStreet\n",
            "service_code": service_code, "first_name": "Alex", "last_name": "Resident",
            "email": "alex.resident@example.org", "lat": truncate(lat), "long": truncate(lon),
        }
        if photos:
            params["media_url"] = photos if self.multi_photos else photos[0]
        attributes = {"title": title, "description": detail, "report_url": url, **(extra or {})}
        # SendReport::Open311 adds the id field only when the service's definition declares it.
        declared = {a["code"] for a in self.service_meta(service_code).get("attributes") or []}
        if fms_id is not None and "fixmystreet_id" in declared:
            attributes["fixmystreet_id"] = str(fms_id)
        params.update({f"attribute[{k}]": v for k, v in attributes.items()})
        return params

    def send_service_request(self, params: dict, uploads: dict | None = None) -> str:
        """POST requests.xml; the service_request_id as Open311::send_service_request takes it."""
        if uploads:  # always_upload_photos / upload_files: the photos go as files and media_url is dropped
            params = {k: v for k, v in params.items() if k != "media_url"}
        r = self.post("requests.xml", params, uploads)
        assert r.status_code == 200, r.text
        obj = simple(r.content)
        request_id = obj["request"][0]["service_request_id"]
        assert isinstance(request_id, str) and request_id
        return request_id

    def post_service_request_update(self, service_request_id: str, comment_id: int, text_: str,
                                    status: str = "OPEN", photos: list[str] | None = None):
        """_populate_service_request_update_params for a comment by a logged-in resident: updated_datetime is the
        comment's confirmed time, the same when the update is sent again."""
        confirmed = self.confirmed.setdefault(comment_id, datetime.now(timezone.utc))
        params = {"updated_datetime": w3cdtf(confirmed), "service_request_id": service_request_id,
                  "status": status, "description": text_, "last_name": "Resident", "first_name": "Alex",
                  "email": "alex.resident@example.org", "update_id": str(comment_id)}
        if photos:
            params["media_url"] = photos if self.multi_photos else photos[0]
        return self.post("servicerequestupdates.xml", params)


def _grouped(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in items:
        out.setdefault(k, []).append(v)
    return out


@pytest.fixture
def fms(client, db):
    _, key = create_token(db, "open311_client", name="fixmystreet")
    db.commit()
    return FixMyStreet(client, key)


def free_light(db, n: int = 0) -> tuple[str, float, float]:
    """A street light with no job on or near it (other suites commit jobs on the shared database)."""
    return db.execute(text("""
        SELECT a.external_ref, ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326))
          FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights'
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE ST_DWithin(j.geom, a.geom, 80))
         ORDER BY a.id OFFSET :n LIMIT 1"""), {"n": n}).one()


def counts(db) -> tuple[int, int, int]:
    return (db.scalar(select(func.count()).select_from(Report)), db.scalar(select(func.count()).select_from(Photo)),
            db.scalar(select(func.count()).select_from(JobEvent)))


def job_of(db, ref: str) -> Job:
    return db.get(Job, db.scalar(select(Report.job_id).where(Report.reference == ref)))


def test_service_list_and_definitions_declare_the_hidden_attributes(fms):
    services = {s["service_code"]: s for s in fms.service_list()}
    assert services["street_light"]["metadata"] == "true" and services["street_light"]["type"] == "realtime"
    meta = fms.service_meta("street_light")
    assert meta["service_code"] == "street_light"
    attrs = {a["code"]: a for a in meta["attributes"]}
    assert attrs["fixmystreet_id"]["automated"] == "server_set" and attrs["fixmystreet_id"]["variable"] == "false"
    assert attrs["fixmystreet_id"]["required"] == "false"
    assert attrs["asset_id"]["automated"] == "hidden_field" and attrs["asset_id"]["variable"] == "true"
    assert attrs["fault"]["variable"] == "true" and "automated" not in attrs["fault"]
    assert [a["order"] for a in meta["attributes"]] == [str(i) for i in range(1, len(meta["attributes"]) + 1)]
    # A service with no asset layer declares the id but no asset attribute.
    graffiti = {a["code"] for a in fms.service_meta("graffiti")["attributes"]}
    assert "fixmystreet_id" in graffiti and "asset_id" not in graffiti


def test_a_report_with_fixmystreet_id_and_three_media_urls_and_its_resends(fms, db):
    ref_, lat, lon = free_light(db, 0)
    photos = [f"https://fms.example/photo/4101.{i}.full.jpeg" for i in range(3)]
    params = fms.report_params(service_code="street_light", lat=lat, lon=lon, fms_id=4101, title="Lamp out",
                               detail="Dark all week", photos=photos, extra={"fault": "out"})
    assert params["attribute[fixmystreet_id]"] == "4101"
    request_id = fms.send_service_request(params)
    before = counts(db)
    # FixMyStreet's retry after a lost answer: the original id back and nothing new stored.
    assert fms.send_service_request(params) == request_id
    # A re-send keyed by fixmystreet_id answers the original even if the text was edited meanwhile.
    assert fms.send_service_request({**params, "description": "edited"}) == request_id
    assert counts(db) == before
    report = db.scalar(select(Report).where(Report.reference == request_id))
    assert report.external_id == "4101" and report.channel == "open311"
    assert report.reporter["client"] == "fixmystreet" and "email" not in report.reporter
    # Read back every photo, as GetServiceRequests' add_media takes media_url (a list when it repeats).
    read = simple(fms.get(f"requests/{request_id}.xml").content)["request"][0]
    assert read["media_url"] == photos and read["service_request_id"] == request_id
    [row] = fms.client.get(f"{V2}/requests/{request_id}.json").json()
    assert row["media_url"] == photos[0] and row["media_urls"] == photos


def test_the_fixmystreet_id_belongs_to_the_client_not_the_token(fms, client, db):
    _, lat, lon = free_light(db, 1)
    params = fms.report_params(service_code="street_light", lat=lat, lon=lon, fms_id=4102, title="Lamp flickers",
                               detail="On and off", photos=[], extra={"fault": "flickering"})
    first = fms.send_service_request(params)
    _, rotated = create_token(db, "open311_client", name="fixmystreet")  # the council rotates the key
    _, other = create_token(db, "open311_client", name="another-front-end")
    db.commit()
    assert FixMyStreet(client, rotated).send_service_request(params) == first
    assert FixMyStreet(client, other).send_service_request(params) != first  # another site's report 4102


def test_without_fixmystreet_id_the_same_payload_is_a_resend_within_the_window(fms, client, db, monkeypatch):
    _, lat, lon = free_light(db, 2)
    params = fms.report_params(service_code="street_light", lat=lat, lon=lon, fms_id=None, title="Lamp on by day",
                               detail="Burning at noon", photos=["https://fms.example/p/1.jpeg"],
                               extra={"fault": "day_burning"})
    assert "attribute[fixmystreet_id]" not in params
    first = fms.send_service_request(params)
    n = counts(db)[0]
    assert fms.send_service_request(params) == first and counts(db)[0] == n
    # Another payload is another report (joined to the same job as a duplicate: same lamp, same category).
    second = fms.send_service_request({**params, "attribute[description]": "Still burning at noon"})
    assert second != first and counts(db)[0] == n + 1
    assert job_of(db, second).id == job_of(db, first).id
    # After the window the same payload is a new report.
    monkeypatch.setattr(get_settings(), "open311_resend_window_hours", 0.0)
    third = fms.send_service_request(params)
    assert third not in (first, second) and counts(db)[0] == n + 2


def test_three_photos_uploaded_as_files_are_stored_and_served_in_media_url(fms, client, db):
    _, lat, lon = free_light(db, 3)
    fms.upload_files = True
    params = fms.report_params(service_code="street_light", lat=lat, lon=lon, fms_id=4103, title="Column leaning",
                               detail="Hit by a van", photos=["https://fms.example/private.jpeg"],
                               extra={"fault": "damaged_exposed_wiring"})
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    uploads = {f"photo{i + 1}": (f"4103.{i}.full.jpeg", jpeg(c)) for i, c in enumerate(colours)}
    request_id = fms.send_service_request(params, uploads)
    report = db.scalar(select(Report).where(Report.reference == request_id))
    stored = list(db.scalars(select(Photo).where(Photo.report_id == report.id).order_by(Photo.id)))
    assert len(stored) == 3 and all(p.content_type == "image/jpeg" for p in stored)
    before = counts(db)
    assert fms.send_service_request(params, uploads) == request_id and counts(db) == before
    urls = simple(fms.get(f"requests/{request_id}.xml").content)["request"][0]["media_url"]
    assert isinstance(urls, list) and len(urls) == 3
    assert all(u.startswith(get_settings().public_base_url.rstrip("/") + f"{V2}/media/") for u in urls)
    for url, colour in zip(urls, colours):
        got = client.get(urlsplit(url).path)  # FixMyStreet fetches it with no key
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        pixel = Image.open(io.BytesIO(got.content)).convert("RGB").getpixel((10, 10))
        assert all(abs(a - b) < 40 for a, b in zip(pixel, colour)), (pixel, colour)
    # A name that is not an upload's is a 404, whatever id it carries.
    wrong = urls[0].rsplit("/", 1)[1].split("-")[0] + "-" + "0" * 32 + ".jpg"
    assert client.get(f"{V2}/media/{wrong}").status_code == 404


def test_three_photos_as_repeated_media_url_in_one_multipart_form(fms, db):
    """upload_files with multi_photos: media_url's list flattened into repeated form-data fields."""
    _, lat, lon = free_light(db, 4)
    params = fms.report_params(service_code="street_light", lat=lat, lon=lon, fms_id=4104, title="Lamp out",
                               detail="Dark", photos=[f"https://fms.example/p/4104.{i}.jpeg" for i in range(3)],
                               extra={"fault": "out"})
    r = fms.post("requests.xml", params, {"photo1": ("4104.0.full.jpeg", jpeg())})
    assert r.status_code == 200, r.text
    request_id = simple(r.content)["request"][0]["service_request_id"]
    urls = simple(fms.get(f"requests/{request_id}.xml").content)["request"][0]["media_url"]
    assert urls[:3] == params["media_url"] and len(urls) == 4 and f"{V2}/media/" in urls[3]


def test_a_citizen_update_is_a_comment_forwarded_to_the_contractor_and_never_a_status(fms, client, db):
    _, lat, lon = free_light(db, 5)
    request_id = fms.send_service_request(fms.report_params(
        service_code="street_light", lat=lat, lon=lon, fms_id=4105, title="Lamp out", detail="Dark",
        photos=[], extra={"fault": "out"}))
    job = job_of(db, request_id)
    lighting = db.scalar(select(Contractor).where(Contractor.name == "street-lighting"))
    job.contractor_id = lighting.id
    move(db, job, "sent", "system:test")
    db.commit()
    chasers = db.scalar(select(func.count()).select_from(Chaser).where(Chaser.job_id == job.id))
    r = fms.post_service_request_update(request_id, 88001, "Still not fixed, it is very dark",
                                        photos=["https://fms.example/c/88001.0.jpeg"])
    assert r.status_code == 200, r.text
    update_id = simple(r.content)["request_update"][0]["update_id"]
    assert isinstance(update_id, str) and update_id
    db.refresh(job)
    assert job.status == "sent"  # a resident's OPEN is not the contractor accepting
    [ev] = db.scalars(select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "citizen_update")).all()
    assert ev.note == "Still not fixed, it is very dark" and ev.actor == "open311_client:fixmystreet"
    assert ev.data["update_id"] == "88001" and ev.data["reported_status"] == "open"
    assert ev.data["media_url"] == ["https://fms.example/c/88001.0.jpeg"]
    assert ev.data["forwarded_to"] == "contractor:street-lighting"
    assert "alex.resident@example.org" not in str(ev.data)
    [chaser] = db.scalars(select(Chaser).where(Chaser.source_event_id == ev.id)).all()
    assert (chaser.channel, chaser.kind) == ("open311", "citizen_update")
    [note] = db.scalars(select(OutboxMessage).where(OutboxMessage.job_id == job.id,
                                                    OutboxMessage.topic == "order.note")).all()
    assert note.destination == "contractor:street-lighting"
    assert note.payload["note"] == "Still not fixed, it is very dark"
    # FixMyStreet's retry: the same answer, nothing new.
    again = fms.post_service_request_update(request_id, 88001, "Still not fixed, it is very dark",
                                            photos=["https://fms.example/c/88001.0.jpeg"])
    assert simple(again.content)["request_update"][0]["update_id"] == update_id
    assert db.scalar(select(func.count()).select_from(Chaser).where(Chaser.job_id == job.id)) == chasers + 1
    # The same update_id with other words is a conflict, in GeoReport's <errors>.
    clash = fms.post_service_request_update(request_id, 88001, "Something else")
    assert clash.status_code == 409 and simple(clash.content)["error"][0]["code"] == "409"
    # A resident's CLOSED (FixMyStreet marks its own report fixed), even a blank one ("Permit blank updates"),
    # does not close our job either; each is still a contact about it.
    closed = fms.post_service_request_update(request_id, 88002, "Looks fixed now", status="CLOSED")
    blank = fms.post_service_request_update(request_id, 88003, "", status="FIXED")
    assert closed.status_code == 200 and blank.status_code == 200, blank.text
    db.refresh(job)
    assert job.status == "sent"
    assert db.scalar(select(func.count()).select_from(Chaser).where(Chaser.job_id == job.id)) == chasers + 3


def test_a_contractor_key_cannot_move_a_job_with_a_residents_comment(fms, client, db):
    _, lat, lon = free_light(db, 6)
    request_id = fms.send_service_request(fms.report_params(
        service_code="street_light", lat=lat, lon=lon, fms_id=4106, title="Lamp out", detail="Dark",
        photos=[], extra={"fault": "out"}))
    job = job_of(db, request_id)
    job.contractor_id = db.scalar(select(Contractor.id).where(Contractor.name == "street-lighting"))
    move(db, job, "sent", "system:test")
    _, key = create_token(db, "contractor", contractor="street-lighting")
    db.commit()
    events_before = counts(db)[2]
    r = FixMyStreet(client, key).post_service_request_update(request_id, 88003, "Still dark")
    assert r.status_code == 403 and "open311_client" in simple(r.content)["error"][0]["description"]
    db.refresh(job)
    assert job.status == "sent" and counts(db)[2] == events_before


def test_updates_polled_as_fixmystreet_polls_them(fms, db):
    _, lat, lon = free_light(db, 7)
    request_id = fms.send_service_request(fms.report_params(
        service_code="street_light", lat=lat, lon=lon, fms_id=4107, title="Lamp out", detail="Dark",
        photos=[], extra={"fault": "out"}))
    job = job_of(db, request_id)
    boss = Principal(0, "test", "supervisor")
    move(db, job, "sent", "system:test")
    move(db, job, "accepted", boss)
    db.commit()
    assert fms.post_service_request_update(request_id, 88004, "Any news?").status_code == 200
    move(db, job, "in_progress", boss)
    db.commit()
    now = datetime.now(timezone.utc)
    # get_service_request_updates: api_key, start_date and end_date (both or neither), W3CDTF.
    r = fms.get("servicerequestupdates.xml", {"api_key": fms.api_key, "start_date": w3cdtf(now - timedelta(hours=1)),
                                              "end_date": w3cdtf(now + timedelta(minutes=1))})
    assert r.status_code == 200, r.text
    mine = [u for u in simple(r.content)["request_update"] if u["service_request_id"] == request_id]
    assert [u["status"] for u in mine] == ["open", "action_scheduled", "in_progress"]
    assert all(u["update_id"] and u["updated_datetime"] for u in mine)
    # The resident's own comment is not echoed back (FixMyStreet would show it twice).
    assert not any(u.get("description") == "Any news?" for u in mine)


def test_the_asset_id_attribute_is_a_hint_checked_against_our_layer(fms, db):
    pair = db.execute(text("""
        SELECT a.external_ref AS a_ref, b.external_ref AS b_ref,
               ST_Y(ST_Transform(a.geom, 4326)) AS lat, ST_X(ST_Transform(a.geom, 4326)) AS lon
          FROM assets a JOIN asset_layers l ON l.id = a.layer_id AND l.name = 'street_lights'
          JOIN assets b ON b.layer_id = a.layer_id AND b.id <> a.id AND ST_DWithin(a.geom, b.geom, 30)
           AND ST_Distance(a.geom, b.geom) > 5
         WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE ST_DWithin(j.geom, a.geom, 150))
         ORDER BY a.id LIMIT 1""")).one()

    def asset_of(request_id: str) -> str:
        return db.scalar(text("SELECT a.external_ref FROM reports r JOIN assets a ON a.id = r.asset_id "
                              "WHERE r.reference = :r"), {"r": request_id})

    def send(fms_id: int, hint: dict) -> str:
        return fms.send_service_request(fms.report_params(
            service_code="street_light", lat=pair.lat, lon=pair.lon, fms_id=fms_id, title="Lamp out",
            detail=f"Dark {fms_id}", photos=[], extra={"fault": "out", **hint}))

    # FixMyStreet's map had lamp B selected, which is within the radius: the hint wins over the nearest (A).
    assert asset_of(send(4108, {"asset_id": pair.b_ref})) == pair.b_ref
    # An id that is not on our layer (another council's numbering) is not trusted: the nearest, and no refusal.
    assert asset_of(send(4109, {"central_asset_id": "NOT-OURS-1"})) == pair.a_ref


def test_address_id_is_kept_and_read_back_but_cannot_place_a_report_alone(fms, db):
    _, lat, lon = free_light(db, 8)
    params = fms.report_params(service_code="street_light", lat=lat, lon=lon, fms_id=4110, title="Lamp out",
                               detail="Dark", photos=[], extra={"fault": "out"})
    request_id = fms.send_service_request({**params, "address_id": "100120000001"})
    assert simple(fms.get(f"requests/{request_id}.xml").content)["request"][0]["address_id"] == "100120000001"
    n = counts(db)
    # send_notpinpointed: no lat/long, address_id '#NOTPINPOINTED#'.
    alone = {k: v for k, v in params.items() if k not in ("lat", "long")}
    r = fms.post("requests.xml", {**alone, "address_id": "#NOTPINPOINTED#", "attribute[fixmystreet_id]": "4111"})
    assert r.status_code == 400 and "address_id" in simple(r.content)["error"][0]["description"]
    assert counts(db) == n


def test_bad_input_is_an_open311_error_and_nothing_is_half_stored(fms, client, db):
    _, lat, lon = free_light(db, 9)
    params = fms.report_params(service_code="street_light", lat=lat, lon=lon, fms_id=4112, title="Lamp out",
                               detail="Dark", photos=[], extra={"fault": "out"})
    n = counts(db)
    cases = [
        (params, {"photo1": ("a.jpeg", jpeg()), "photo2": ("b.jpeg", b"not an image at all")}, 400, "photo2"),
        (params, {"file_abc": ("a.pdf", b"%PDF-1.4")}, 400, "only photos"),
        ({**params, "media_url": ["https://fms.example/a.jpeg", "javascript:alert(1)"]}, None, 400, "media_url"),
        ({**params, "service_code": "no_such_service"}, None, 404, "service_code"),
        ({**params, "lat": "91"}, None, 400, "lat"),
    ]
    for form, uploads, status, words in cases:
        r = fms.post("requests.xml", form, uploads)
        assert r.status_code == status, (words, r.text)
        [error] = simple(r.content)["error"]
        assert error["code"] == str(status) and words in error["description"], error
        j = fms.post("requests.json", form, uploads)
        assert j.status_code == status and j.json()[0]["code"] == status
    assert counts(db) == n
    # Updates: an unknown request, a missing update_id, an unreadable time, a file; none stores anything.
    request_id = fms.send_service_request(params)
    n = counts(db)
    for change, status in [({"service_request_id": "R-999999"}, 404), ({"update_id": None}, 400),
                           ({"updated_datetime": "last Tuesday"}, 400), ({"status": "MADE_UP"}, 400)]:
        form = {"updated_datetime": w3cdtf(datetime.now(timezone.utc)), "service_request_id": request_id,
                "status": "OPEN", "description": "Hello", "update_id": "88100", **change}
        r = fms.post("servicerequestupdates.xml", {k: v for k, v in form.items() if v is not None})
        assert r.status_code == status and simple(r.content)["error"][0]["code"] == str(status), (change, r.text)
    r = fms.post("servicerequestupdates.xml", {"service_request_id": request_id, "update_id": "88101",
                                               "status": "OPEN", "description": "photo",
                                               "updated_datetime": w3cdtf(datetime.now(timezone.utc))},
                 {"photo1": ("c.jpeg", jpeg())})
    assert r.status_code == 400 and "media_url" in simple(r.content)["error"][0]["description"]
    assert counts(db) == n


def test_an_open311_client_token_needs_a_client_name(db):
    with pytest.raises(DomainError) as bad:
        create_token(db, "open311_client")
    assert bad.value.fields == ["name"]
    with pytest.raises(DomainError):
        create_token(db, "open311_client", name="Fix My Street")
    row, _ = create_token(db, "open311_client", name="fixmystreet")
    assert row.role == "open311_client" and row.name == "fixmystreet"


def test_an_open311_client_key_opens_nothing_outside_open311(fms, client):
    for path in ("/api/v1/jobs", "/api/v1/reports/R-000001", "/api/v1/contractor/jobs", "/api/v1/events"):
        r = client.get(path, headers={"Authorization": f"Bearer {fms.api_key}"})
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json"), path
