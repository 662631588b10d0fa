"""Dispatch against the real database: zones from wards, crews by side of the river, contractor orders."""
from __future__ import annotations

import uuid
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from contractors import WorkOrder
from server.areas.zones import sync_zones
from server.dispatch.models import Contractor, Crew
from server.dispatch.seed import seed_demo
from server.dispatch.service import dispatch_job
from server.jobs import sla
from server.jobs.models import Job, JobEvent
from server.jobs.transitions import move
from server.outbox.models import OutboxMessage
from tests.conftest import auth
from tests.server.test_intake import body, post

LONDON = ZoneInfo("Europe/London")
WEDNESDAY_10AM = datetime(2026, 11, 25, 10, 0, tzinfo=LONDON)
LANSDOWN = (51.4011, -2.3790)  # Beckford's Tower, north of the Avon
ODD_DOWN = (51.3600, -2.3800)  # south of the Avon


def report(client, token, category, latlon, answers, **over) -> str:
    """Report through the API; the job reference."""
    r = post(client, token, body(category=category, lat=latlon[0], lon=latlon[1], answers=answers, **over))
    assert r.status_code == 201, r.text
    return r.json()["job"]["reference"]


def job_of(db, ref: str) -> Job:
    return db.scalar(select(Job).where(Job.reference == ref))


def event_types(db, job: Job) -> list[str]:
    return list(db.scalars(select(JobEvent.type).where(JobEvent.job_id == job.id).order_by(JobEvent.id)))


def graffiti(client, tokens, latlon, **over) -> str:
    return report(client, tokens["field_worker"], "graffiti", latlon, {"offensive": "no"}, **over)


def street_light(db) -> tuple[float, float, str]:
    return db.execute(text("""
        SELECT ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326)), a.external_ref
          FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = 'street_lights'
         ORDER BY a.id LIMIT 1 OFFSET 7""")).one()


def asset_point(db, layer: str) -> tuple[float, float]:
    return tuple(db.execute(text("""
        SELECT ST_Y(ST_Transform(a.geom, 4326)), ST_X(ST_Transform(a.geom, 4326))
          FROM assets a JOIN asset_layers l ON l.id = a.layer_id WHERE l.name = :l
         ORDER BY a.id LIMIT 1 OFFSET 3"""), {"l": layer}).one())


# --- zones --------------------------------------------------------------------------------------


def zone_at(db, latlon) -> list[str]:
    return list(db.scalars(text("""
        SELECT code FROM areas WHERE kind = 'crew_zone'
           AND ST_Covers(geom, ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 27700)) ORDER BY code"""),
                           {"lat": latlon[0], "lon": latlon[1]}))


def test_zones_are_unions_of_wards_and_every_ward_has_one_crew_zone(db):
    assert zone_at(db, LANSDOWN) == ["bath-north"]
    assert zone_at(db, ODD_DOWN) == ["bath-south"]
    rows = db.execute(text("""
        SELECT w.code, count(z.id) FROM areas w LEFT JOIN areas z ON z.kind = 'crew_zone'
           AND (z.attributes -> 'wards') ? w.code WHERE w.kind = 'ward' GROUP BY w.code""")).all()
    assert len(rows) == 33 and {n for _, n in rows} == {1}
    # The geometry is the union: the zones' areas add up to the wards' (no ward counted twice or lost).
    wards, zones, lighting = db.execute(text("""
        SELECT (SELECT sum(ST_Area(geom)) FROM areas WHERE kind = 'ward'),
               (SELECT sum(ST_Area(geom)) FROM areas WHERE kind = 'crew_zone'),
               (SELECT ST_Area(geom) FROM areas WHERE kind = 'contractor_area' AND code = 'street-lighting')""")).one()
    assert abs(zones - wards) / wards < 0.001 and abs(lighting - wards) / wards < 0.001


def test_zone_sync_and_seed_are_idempotent_and_keep_secrets(db):
    before = {c.name: dict(c.config) for c in db.scalars(select(Contractor))}
    assert {"street-lighting", "green-spaces"} <= set(before)
    for name in ("street-lighting", "green-spaces"):
        assert {"base_url", "api_key", "webhook_secret"} <= set(before[name])
        assert before[name]["base_url"].startswith("http://127.0.0.1:") and len(before[name]["api_key"]) >= 32
    assert before["street-lighting"]["api_key"] != before["green-spaces"]["api_key"]
    assert sync_zones(db)["changed"] == 0
    seed_demo(db)
    assert {c.name: c.config for c in db.scalars(select(Contractor))} == before
    # A row missing a key gets it filled; what it had stays.
    c = db.scalar(select(Contractor).where(Contractor.name == "green-spaces"))
    c.config = {"base_url": "http://elsewhere:9"}
    db.flush()
    seed_demo(db)
    db.refresh(c)
    assert c.config["base_url"] == "http://elsewhere:9" and c.config["webhook_secret"]
    zones = dict(db.execute(select(Crew.name, Crew.zone_id)).all())
    north, south = (db.scalar(text("SELECT id FROM areas WHERE kind='crew_zone' AND code=:c"), {"c": c})
                    for c in ("bath-north", "bath-south"))
    assert zones["cleansing_north"] == north and zones["cleansing_south"] == south
    assert zones["highways"] is None


# --- crews --------------------------------------------------------------------------------------


@pytest.mark.parametrize("where, crew", [(LANSDOWN, "cleansing_north"), (ODD_DOWN, "cleansing_south")],
                         ids=["north", "south"])
def test_graffiti_goes_to_the_cleansing_crew_on_its_side_of_the_river(client, tokens, db, where, crew):
    job = job_of(db, graffiti(client, tokens, where))
    assert job.status == "new" and job.crew_id is None
    out = dispatch_job(db, job, now=WEDNESDAY_10AM)
    assert out["outcome"] == "assigned" and out["crew"] == crew and out["rule"] == "street-cleansing"
    assert job.status == "assigned" and job.crew_id == db.scalar(select(Crew.id).where(Crew.name == crew))
    ev = db.scalar(select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "status_changed")
                   .order_by(JobEvent.id.desc()))
    assert ev.after["status"] == "assigned" and ev.data["assignee"] == {"kind": "crew", "name": crew}
    assert "least loaded" in ev.data["reason"]
    page = client.get(f"/api/v1/jobs/{job.reference}", headers=auth(tokens["advisor"])).json()
    assert page["assignee"]["kind"] == "crew" and page["assignee"]["name"] == crew
    # Running dispatch again (a redelivered outbox message) changes nothing.
    n = len(event_types(db, job))
    assert dispatch_job(db, job, now=WEDNESDAY_10AM)["outcome"] == "skipped"
    assert len(event_types(db, job)) == n


def test_the_less_loaded_crew_wins_when_two_cover_the_place(client, tokens, db):
    # Make the south crew work anywhere: both crews now cover Lansdown; north has more open jobs.
    south = db.scalar(select(Crew).where(Crew.name == "cleansing_south"))
    south.zone_id = None
    first = job_of(db, graffiti(client, tokens, LANSDOWN))
    assert dispatch_job(db, first, now=WEDNESDAY_10AM)["crew"] == "cleansing_north"  # tie on load: by name
    second = job_of(db, graffiti(client, tokens, (LANSDOWN[0] + 0.01, LANSDOWN[1])))
    assert dispatch_job(db, second, now=WEDNESDAY_10AM)["crew"] == "cleansing_south"


def test_no_crew_on_shift_queues_the_job_once_with_the_reason(client, tokens, db):
    job = job_of(db, graffiti(client, tokens, ODD_DOWN))
    night = datetime(2026, 11, 25, 3, 0, tzinfo=LONDON)
    out = dispatch_job(db, job, now=night)
    assert out["outcome"] == "queued" and "no cleansing crew on shift" in out["reason"]
    assert job.status == "new" and job.crew_id is None and "07:00-19:00" in job.queue_reason
    assert dispatch_job(db, job, now=night.replace(minute=30))["outcome"] == "queued"
    assert event_types(db, job).count("queued") == 1
    q = client.get("/api/v1/dispatch/queue", headers=auth(tokens["supervisor"])).json()
    mine = [i for i in q["items"] if i["reference"] == job.reference]
    assert mine and mine[0]["queue_reason"] == job.queue_reason
    # A full crew is a different reason.
    south = db.scalar(select(Crew).where(Crew.name == "cleansing_south"))
    south.capacity = 0
    assert "at capacity" in dispatch_job(db, job, now=WEDNESDAY_10AM)["reason"]
    assert event_types(db, job).count("queued") == 2


def test_triage_jobs_are_not_dispatched(client, tokens, db):
    lat, lon, _ = street_light(db)
    ref = report(client, tokens["field_worker"], "grit_bin", (lat, lon), {"problem": "empty"})
    job = job_of(db, ref)
    if job.status != "triage":  # a grit bin happens to be near: force the case under test
        job.status, job.asset_id = "triage", None
    assert dispatch_job(db, job, now=WEDNESDAY_10AM)["outcome"] == "skipped"
    assert job.status == "triage" and job.crew_id is None and job.contractor_id is None


# --- contractors -----------------------------------------------------------------------------------


def test_street_light_becomes_a_contractor_order_due_in_three_working_days_over_christmas(client, tokens, db):
    lat, lon, asset_ref = street_light(db)
    job = job_of(db, report(client, tokens["field_worker"], "street_light", (lat, lon), {"fault": "out"}))
    # Reported at 10:00 on Thursday 24 December 2026 (before the 15:00 cut-off: day 1 is that day).
    reported = datetime(2026, 12, 24, 10, 0, tzinfo=LONDON)
    job.sla_started_at = reported
    out = dispatch_job(db, job, now=reported)
    assert out["outcome"] == "dispatched" and out["contractor"] == "street-lighting"
    c = db.scalar(select(Contractor).where(Contractor.name == "street-lighting"))
    assert job.contractor_id == c.id and job.status == "new" and job.dispatch_count == 1
    assert job.sla_policy == c.sla_policy == {"kind": "working_days", "days": 3, "cutoff": "15:00"}
    due = job.due_at.astimezone(LONDON)
    assert due == sla.due_at(c.sla_policy, reported) and due == datetime(2026, 12, 30, 17, 30, tzinfo=LONDON)
    assert due.strftime("%A") == "Wednesday"
    # Christmas Day, Boxing Day (Saturday) and its substitute Monday 28th are not working days; 24, 29, 30 are.
    assert [sla.is_working_day(date(2026, 12, d)) for d in (24, 25, 26, 27, 28, 29, 30)] == \
        [True, False, False, False, False, True, True]
    msgs = list(db.scalars(select(OutboxMessage).where(OutboxMessage.job_id == job.id)
                           .order_by(OutboxMessage.id)))
    order_msgs = [m for m in msgs if m.destination == "contractor:street-lighting"]
    assert len(order_msgs) == 1
    m = order_msgs[0]
    assert m.topic == "order.submit" and m.idempotency_key == f"order:{job.reference}:1" and m.state == "pending"
    order = WorkOrder.from_dict(m.payload)
    assert order.job_reference == job.reference and order.idempotency_key == m.idempotency_key
    assert order.asset_ref == asset_ref and order.asset_layer == "street_lights" and order.category == "street_light"
    assert order.due_at == job.due_at and order.answers == {"fault": "out"} and order.ward
    assert abs(order.lat - lat) < 0.001 and abs(order.lon - lon) < 0.001
    types = event_types(db, job)
    assert types[-1] == "dispatched"
    dispatched = db.scalar(select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "dispatched"))
    assert dispatched.data["assignee"] == {"kind": "contractor", "name": "street-lighting"}
    # Idempotent: a second run sends no second order.
    assert dispatch_job(db, job, now=reported)["outcome"] == "skipped"
    assert db.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.job_id == job.id, OutboxMessage.destination.like("contractor:%"))) == 1
    page = client.get(f"/api/v1/jobs/{job.reference}", headers=auth(tokens["advisor"])).json()
    assert page["assignee"]["kind"] == "contractor" and page["assignee"]["name"] == "street-lighting"


def test_contract_sla_replaces_the_category_policy_for_normal_priority_only(client, tokens, db):
    gs = db.scalar(select(Contractor).where(Contractor.name == "green-spaces"))
    gs.sla_policy = {"kind": "working_days", "days": 10}
    bench = asset_point(db, "benches")
    job = job_of(db, report(client, tokens["field_worker"], "bench", bench, _answers_for(client, "bench")))
    before = job.due_at
    out = dispatch_job(db, job, now=WEDNESDAY_10AM)
    assert out["outcome"] == "dispatched" and out["contractor"] == "green-spaces"
    assert job.sla_policy == {"kind": "working_days", "days": 10} and job.due_at != before
    assert job.due_at == sla.due_at(job.sla_policy, job.sla_started_at)
    ev = db.scalar(select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "sla_set")
                   .order_by(JobEvent.id.desc()))
    assert ev.data["source"] == "contract:green-spaces" and ev.after["due_at"] == job.due_at.isoformat()
    # An urgent job keeps its own (shorter) clock.
    urgent = job_of(db, report(client, tokens["field_worker"], "dog_bin", asset_point(db, "dog_bins"),
                               _answers_for(client, "dog_bin")))
    urgent.priority, urgent.sla_policy = "urgent", {"kind": "hours", "hours": 4}
    due = urgent.due_at
    dispatch_job(db, urgent, now=WEDNESDAY_10AM)
    assert urgent.contractor_id == gs.id and urgent.sla_policy == {"kind": "hours", "hours": 4}
    assert urgent.due_at == due


def _answers_for(client, code: str) -> dict:
    """Valid answers for a category: the first value of every required list question."""
    cat = next(c for c in client.get("/api/v1/categories").json() if c["code"] == code)
    return {q["code"]: q["values"][0]["key"] for q in cat["questions"] if q["required"] and q.get("values")}


# --- supervisor actions ----------------------------------------------------------------------------


def test_supervisor_assigns_a_queued_job_and_redispatches_another(client, tokens, db):
    job = job_of(db, graffiti(client, tokens, ODD_DOWN))
    dispatch_job(db, job, now=datetime(2026, 11, 25, 3, 0, tzinfo=LONDON))
    assert job.queue_reason
    h = auth(tokens["supervisor"])
    r = client.post(f"/api/v1/jobs/{job.reference}/assign", json={"crew": "cleansing_north"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["job"]["assignee"]["name"] == "cleansing_north" and r.json()["job"]["status"] == "assigned"
    assert any("covers this place" in w for w in r.json()["warnings"])  # out of its zone: said, not refused
    db.refresh(job)
    assert job.queue_reason is None
    assert client.post(f"/api/v1/jobs/{job.reference}/assign", json={"crew": "nobody"}, headers=h).json()["type"] \
        .endswith("/unknown-crew")
    assert client.post(f"/api/v1/jobs/{job.reference}/assign", json={}, headers=h).status_code == 422
    # Redispatch: back to new, and a fresh dispatch message (not the intake one).
    r = client.post(f"/api/v1/jobs/{job.reference}/redispatch", json={"note": "wrong side"}, headers=h)
    assert r.status_code == 200, r.text
    db.refresh(job)
    assert job.status == "new" and job.crew_id is None
    keys = set(db.scalars(select(OutboxMessage.idempotency_key).where(OutboxMessage.job_id == job.id,
                                                                      OutboxMessage.destination == "dispatch")))
    assert f"dispatch:{job.reference}" in keys and r.json()["key"] in keys and len(keys) == 2
    assert dispatch_job(db, job, now=WEDNESDAY_10AM)["crew"] == "cleansing_south"
    # Crews and advisers may not do this.
    assert client.post(f"/api/v1/jobs/{job.reference}/redispatch", headers=auth(tokens["advisor"])).status_code == 403


def test_a_job_with_an_order_in_flight_cannot_be_redispatched(client, tokens, db):
    lat, lon, _ = street_light(db)
    job = job_of(db, report(client, tokens["field_worker"], "street_light", (lat, lon), {"fault": "out"}))
    dispatch_job(db, job, now=WEDNESDAY_10AM)
    r = client.post(f"/api/v1/jobs/{job.reference}/redispatch", headers=auth(tokens["supervisor"]))
    assert r.status_code == 409 and r.json()["type"].endswith("/cannot-dispatch")


def test_supervisor_status_changes_are_idempotent_too(client, tokens, db):
    # A supervisor's status change with a client_id is idempotent like a crew's (see test_crews for more).
    job = job_of(db, graffiti(client, tokens, ODD_DOWN))
    cid = str(uuid.uuid4())
    h = auth(tokens["supervisor"])
    r1 = client.post(f"/api/v1/jobs/{job.reference}/status", json={"status": "cancelled", "reason": "dup call",
                                                                    "client_id": cid}, headers=h)
    r2 = client.post(f"/api/v1/jobs/{job.reference}/status", json={"status": "cancelled", "reason": "dup call",
                                                                    "client_id": cid}, headers=h)
    assert r1.status_code == r2.status_code == 200 and r1.json() == r2.json()
    assert event_types(db, job).count("status_changed") == 1


def test_cancelling_a_job_the_contractor_holds_sends_them_a_cancellation(client, tokens, db):
    lat, lon, _ = street_light(db)
    job = job_of(db, report(client, tokens["field_worker"], "street_light", (lat, lon), {"fault": "out"}))
    dispatch_job(db, job, now=WEDNESDAY_10AM)
    # As the delivery side records it: the contractor's reference, then new → sent.
    job.contractor_ref = "BSL-TEST-1"
    move(db, job, "sent", "system:outbox")
    db.commit()
    r = client.post(f"/api/v1/jobs/{job.reference}/status", headers=auth(tokens["supervisor"]),
                    json={"status": "cancelled", "reason": "not_councils_responsibility"})
    assert r.status_code == 200, r.text
    cancel = db.scalar(select(OutboxMessage).where(OutboxMessage.job_id == job.id,
                                                   OutboxMessage.topic == "order.cancel"))
    assert cancel.destination == "contractor:street-lighting" and cancel.payload["contractor_ref"] == "BSL-TEST-1"
    assert cancel.idempotency_key == f"cancel:{job.reference}:1"
