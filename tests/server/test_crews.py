"""The crew API: my jobs, start and complete with photo + GPS, far completions flagged, others' jobs hidden."""
from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image
from sqlalchemy import func, select

from server.auth.tokens import create_token
from server.config import get_settings
from server.dispatch.models import Crew, StatusRequest
from server.dispatch.service import dispatch_job
from server.jobs.models import JobEvent
from server.outbox.models import OutboxMessage
from server.reports.models import Photo
from tests.conftest import auth
from tests.server.test_dispatch import LANSDOWN, ODD_DOWN, WEDNESDAY_10AM, event_types, graffiti, job_of

NEAR = (LANSDOWN[0] + 0.0001, LANSDOWN[1])  # ~11 m from the report
FAR = (LANSDOWN[0] + 0.003, LANSDOWN[1])  # ~330 m


@pytest.fixture(autouse=True)
def photo_root(tmp_path, monkeypatch):
    monkeypatch.setattr(get_settings(), "photo_root", tmp_path)
    return tmp_path


@pytest.fixture
def crews(db) -> dict[str, str]:
    return {name: create_token(db, "crew", crew=name, name=f"test-{name}")[1]
            for name in ("cleansing_north", "cleansing_south")}


@pytest.fixture
def north_job(client, tokens, db):
    """A graffiti job in Lansdown, assigned to cleansing_north."""
    job = job_of(db, graffiti(client, tokens, LANSDOWN))
    assert dispatch_job(db, job, now=WEDNESDAY_10AM)["crew"] == "cleansing_north"
    db.commit()  # as the worker would (a savepoint here): a refused request's rollback must not undo it
    return job


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 10)).save(buf, "JPEG")
    return buf.getvalue()


def photo(client, token, ref, kind="completion", cid=None):
    return client.post(f"/api/v1/jobs/{ref}/photos", headers=auth(token),
                       data={"client_id": str(cid or uuid.uuid4()), "kind": kind},
                       files={"file": ("done.jpg", jpeg(), "image/jpeg")})


def status(client, token, ref, **body):
    return client.post(f"/api/v1/jobs/{ref}/status", json=body, headers=auth(token))


def problem(r, code: str, http: int) -> dict:
    assert r.status_code == http, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    p = r.json()
    assert p["type"].endswith("/" + code), p
    return p


def test_my_jobs_lists_my_crews_jobs_open_first_with_actions(client, crews, north_job, db):
    r = client.get("/api/v1/me/jobs", headers=auth(crews["cleansing_north"]))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    mine = [i for i in items if i["reference"] == north_job.reference]
    assert mine and mine[0]["actions"] == ["new", "accepted"] and mine[0]["status"] == "assigned"
    assert all(i["assignee"]["name"] == "cleansing_north" for i in items)
    other = client.get("/api/v1/me/jobs", headers=auth(crews["cleansing_south"])).json()["items"]
    assert north_job.reference not in {i["reference"] for i in other}
    # Open jobs come first, then by due time.
    opened = [i["status"] in ("assigned", "accepted", "in_progress", "on_hold", "scheduled") for i in items]
    assert opened == sorted(opened, reverse=True)


def test_crew_accepts_starts_and_completes_with_photo_and_gps(client, crews, north_job, db):
    t, ref = crews["cleansing_north"], north_job.reference
    assert status(client, t, ref, status="accepted").json()["job"]["status"] == "accepted"
    r = status(client, t, ref, status="in_progress", lat=NEAR[0], lon=NEAR[1])
    assert r.status_code == 200 and r.json()["actions"] == ["on_hold", "completed"]
    # No GPS, then no photo: refused, nothing changed.
    p = problem(status(client, t, ref, status="completed"), "missing-evidence", 422)
    assert set(p["fields"]) == {"lat", "lon"}
    p = problem(status(client, t, ref, status="completed", lat=NEAR[0], lon=NEAR[1]), "missing-evidence", 422)
    assert p["fields"] == ["photo_ids"]
    db.refresh(north_job)
    assert north_job.status == "in_progress"
    up = photo(client, t, ref)
    assert up.status_code == 201, up.text
    pid = up.json()["id"]
    assert db.scalar(select(Photo.kind).where(Photo.id == pid)) == "completion"
    r = status(client, t, ref, status="completed", lat=NEAR[0], lon=NEAR[1], accuracy_m=4, photo_ids=[pid],
               note="Cleaned off")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["job"]["status"] == "completed" and out["flags"] == [] and out["warnings"] == []
    db.refresh(north_job)
    assert north_job.resolved_at is not None and north_job.flags == []
    ev = db.scalar(select(JobEvent).where(JobEvent.id == out["event_id"]))
    assert ev.actor_role == "crew" and ev.data["photo_ids"] == [pid] and ev.geom is not None
    assert "completion_far_from_asset" not in event_types(db, north_job)
    # The crew's last known position is where it last reported from (dispatch's tie-break).
    crew = db.scalar(select(Crew).where(Crew.name == "cleansing_north"))
    db.refresh(crew)
    where = select(JobEvent.geom).where(JobEvent.id == ev.id).scalar_subquery()
    assert crew.last_seen_at is not None
    assert db.scalar(select(func.ST_Distance(Crew.last_position, where)).where(Crew.id == crew.id)) < 1
    # Nothing more a crew can do with it: closing is a supervisor's move.
    problem(status(client, t, ref, status="closed"), "invalid-transition", 409)


def test_a_completion_far_from_the_job_is_accepted_but_flagged(client, crews, north_job, db):
    t, ref = crews["cleansing_north"], north_job.reference
    for s in ("accepted", "in_progress"):
        assert status(client, t, ref, status=s).status_code == 200
    pid = photo(client, t, ref).json()["id"]
    r = status(client, t, ref, status="completed", lat=FAR[0], lon=FAR[1], photo_ids=[pid])
    assert r.status_code == 200, r.text
    assert r.json()["flags"] == ["completion_far_from_asset"] and r.json()["warnings"]
    db.refresh(north_job)
    assert north_job.status == "completed" and north_job.flags == ["completion_far_from_asset"]
    ev = db.scalar(select(JobEvent).where(JobEvent.job_id == north_job.id,
                                          JobEvent.type == "completion_far_from_asset"))
    assert 250 < ev.data["distance_m"] < 450 and ev.data["max_m"] == get_settings().completion_max_distance_m
    assert ev.data["from"] == "job location"  # graffiti has no asset


def test_a_crew_cannot_see_or_touch_another_crews_job(client, crews, north_job, db):
    t = crews["cleansing_south"]
    ref = north_job.reference
    problem(client.get(f"/api/v1/jobs/{ref}", headers=auth(t)), "job-not-found", 404)
    problem(status(client, t, ref, status="accepted"), "job-not-found", 404)
    problem(photo(client, t, ref), "job-not-found", 404)
    db.refresh(north_job)
    assert north_job.status == "assigned"
    assert db.scalar(select(func.count()).select_from(Photo).where(Photo.job_id == north_job.id)) == 0


@pytest.mark.parametrize("move", ["cancelled", "duplicate", "closed"])
def test_a_crew_cannot_make_supervisor_moves(client, crews, north_job, db, move):
    p = problem(status(client, crews["cleansing_north"], north_job.reference, status=move), "invalid-transition", 409)
    assert p["fields"] == ["status"] and p["from"] == "assigned"
    db.refresh(north_job)
    assert north_job.status == "assigned"


def test_bad_status_input_is_a_4xx_naming_the_field(client, crews, north_job):
    t, ref = crews["cleansing_north"], north_job.reference
    assert problem(status(client, t, ref, status="teleported"), "invalid-status", 422)["fields"] == ["status"]
    assert set(problem(status(client, t, ref, status="accepted", lat=51.4), "invalid-location", 422)["fields"]) == \
        {"lat", "lon"}
    assert "lat" in problem(status(client, t, ref, status="accepted", lat=95, lon=0), "validation-error", 422)["fields"]
    assert "client_id" in problem(status(client, t, ref, status="accepted", client_id="nope"), "validation-error",
                                  422)["fields"]
    assert problem(status(client, t, ref, status="accepted", photo_ids=[999999999]), "unknown-photo",
                   422)["fields"] == ["photo_ids"]
    status(client, t, ref, status="accepted")
    status(client, t, ref, status="in_progress")
    assert problem(status(client, t, ref, status="on_hold"), "missing-reason", 422)["fields"] == ["reason"]
    r = status(client, t, ref, status="on_hold", reason="waiting for a scaffold")
    assert r.status_code == 200 and r.json()["job"]["status"] == "on_hold"


def test_status_changes_are_idempotent_by_client_id(client, crews, north_job, db):
    t, ref = crews["cleansing_north"], north_job.reference
    cid = str(uuid.uuid4())
    first = status(client, t, ref, status="accepted", client_id=cid, note="on my way")
    again = status(client, t, ref, status="accepted", client_id=cid, note="on my way")
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert event_types(db, north_job).count("status_changed") == 2  # assigned + accepted, once
    assert db.scalar(select(func.count()).select_from(StatusRequest).where(StatusRequest.client_id == cid)) == 1
    p = problem(status(client, t, ref, status="in_progress", client_id=cid), "idempotency-conflict", 409)
    assert p["fields"] == ["client_id"]
    db.refresh(north_job)
    assert north_job.status == "accepted"


def test_a_declined_job_waits_in_the_queue(client, crews, north_job, db):
    r = status(client, crews["cleansing_north"], north_job.reference, status="new", reason="needs a jet washer")
    assert r.status_code == 200, r.text
    db.refresh(north_job)
    assert north_job.status == "new" and north_job.crew_id is None
    assert "declined by crew:" in north_job.queue_reason and "jet washer" in north_job.queue_reason
    # Dispatch does not pick it up again by itself (it would choose the same crew).
    assert db.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.job_id == north_job.id, OutboxMessage.destination == "dispatch")) == 1


def test_supervisor_moves_triage_to_new_with_a_dispatch_and_closes_and_reopens(client, tokens, crews, db):
    job = job_of(db, graffiti(client, tokens, ODD_DOWN))
    job.status = "triage"
    job.triage_reason = "test: checking the location"
    db.commit()
    sup = tokens["supervisor"]
    r = status(client, sup, job.reference, status="new", note="location checked")
    assert r.status_code == 200, r.text
    keys = list(db.scalars(select(OutboxMessage.idempotency_key).where(
        OutboxMessage.job_id == job.id, OutboxMessage.destination == "dispatch").order_by(OutboxMessage.id)))
    assert len(keys) == 2 and keys[1].startswith(f"dispatch:{job.reference}:")
    db.refresh(job)
    assert dispatch_job(db, job, now=WEDNESDAY_10AM)["crew"] == "cleansing_south"
    db.commit()
    t = crews["cleansing_south"]
    for s in ("accepted", "in_progress"):
        assert status(client, t, job.reference, status=s).status_code == 200
    pid = photo(client, t, job.reference).json()["id"]
    near = (ODD_DOWN[0] + 0.0001, ODD_DOWN[1])
    assert status(client, t, job.reference, status="completed", lat=near[0], lon=near[1],
                  photo_ids=[pid]).status_code == 200
    assert status(client, sup, job.reference, status="closed").json()["job"]["status"] == "closed"
    r = status(client, sup, job.reference, status="new", reason="came back")
    assert r.status_code == 200 and r.json()["job"]["status"] == "new" and r.json()["job"]["assignee"] is None
    assert db.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.job_id == job.id, OutboxMessage.destination == "dispatch")) == 3


def test_crew_endpoints_need_a_crew_or_supervisor(client, tokens, north_job):
    assert client.get("/api/v1/me/jobs", headers=auth(tokens["advisor"])).status_code == 403
    assert status(client, tokens["field_worker"], north_job.reference, status="accepted").status_code == 403
    assert client.get("/api/v1/me/jobs").status_code == 401
    sup = status(client, tokens["supervisor"], north_job.reference, status="accepted")
    assert sup.status_code == 200 and sup.json()["job"]["status"] == "accepted"
