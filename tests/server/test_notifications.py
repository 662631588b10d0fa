"""Reporter contact kept apart, audited, erased; messages queued per job change; callbacks; status page; chasers.

Rolled back per test (the app's commits are savepoints). Sending through Notify is in
tests/faults/test_notify_loop.py, against the simulator and real processes.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from server.deps import Principal
from server.jobs.models import Job, JobEvent
from server.jobs.transitions import move
from server.notifications import contacts, received
from server.notifications.models import (Chaser, ContactAccess, ContactQueue, Notification, ReceivedQueue,
                                         ReporterContact)
from server.outbox.models import OutboxMessage
from server.reports.models import Report
from tests.conftest import auth, worker_step

SUPERVISOR = Principal(0, "test", "supervisor")
CONTACT = {"first_name": "Pat", "last_name": "Caller", "email": "pat.caller@example.org", "phone": "07700 900123",
           "notify": "both", "consent": True}


def _light(db, n: int = 0) -> dict:
    row = db.execute(text("""
        SELECT a.external_ref AS ref, ST_Y(ST_Transform(a.geom, 4326)) AS lat, ST_X(ST_Transform(a.geom, 4326)) AS lon
          FROM assets a JOIN asset_layers l ON l.id = a.layer_id AND l.name = 'street_lights'
         WHERE a.street IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.asset_id = a.id)
         ORDER BY a.id OFFSET :n LIMIT 1"""), {"n": 40 + n}).one()
    return dict(row._mapping)


def _body(light: dict, contact: dict | None = None, **extra) -> dict:
    body = {"client_id": str(uuid.uuid4()), "category": "street_light", "lat": light["lat"], "lon": light["lon"],
            "accuracy_m": 4.0, "observed_at": datetime.now(timezone.utc).isoformat(), "asset_ref": light["ref"],
            "answers": {"fault": "out"}, **extra}
    if contact is not None:
        body["contact"] = contact
    return body


def _notify_rows(db, job_id: int) -> list[OutboxMessage]:
    return list(db.scalars(select(OutboxMessage).where(OutboxMessage.job_id == job_id,
                                                       OutboxMessage.destination.like("notify:%"))
                           .order_by(OutboxMessage.id)))


def test_report_with_contact_keeps_it_apart_and_queues_received(db, client, tokens):
    light = _light(db)
    body = _body(light, CONTACT)
    r = client.post("/api/v1/reports", json=body, headers=auth(tokens["advisor"]))
    assert r.status_code == 201, r.text
    assert "pat.caller" not in r.text and "07700" not in r.text
    report = db.scalar(select(Report).where(Report.reference == r.json()["reference"]))
    assert report.reporter == {} and "pat" not in str(report.response).lower()
    # The intake queues the contact as it came, with the report (one row); the outbox worker files it.
    assert _contact_queue(db, report.job_id) == [(report.id, "pat.caller@example.org", "07700900123", "both",
                                                  "contact_centre", True)]
    assert _contact(db, report) is None and _queued(db, report.job_id) == []
    # A retry is the same report: answered as before, nothing queued twice.
    again = client.post("/api/v1/reports", json=body, headers=auth(tokens["advisor"]))
    assert again.status_code == 200 and again.json()["reference"] == report.reference
    assert len(_contact_queue(db, report.job_id)) == 1
    # The worker's step files the contact, dated when the report arrived, then writes its messages.
    assert received.write_queued(db) >= 1
    c = _contact(db, report)
    assert (c.email, c.phone, c.notify, c.channel) == ("pat.caller@example.org", "07700900123", "both",
                                                       "contact_centre")
    assert c.job_id == report.job_id and c.created_at == report.received_at
    # Nothing random stored for the unsubscribe link: it is the contact's id, signed.
    assert c.consent_at is not None and c.unsubscribe_token is None
    assert contacts.token_of(c) == contacts.link_token(c.id) and contacts.token_of(c).startswith(f"{c.id}.")
    rows = _notify_rows(db, report.job_id)
    assert [(m.destination, m.topic) for m in rows] == [("notify:email", "received"), ("notify:sms", "received")]
    assert [m.payload for m in rows] == [
        {"contact_id": c.id, "report": report.reference, "template": "received", "kind": kind}
        for kind in ("email", "sms")]
    assert [m.idempotency_key for m in rows] == [f"notify:received:{report.reference}:{k}" for k in ("email", "sms")]
    assert all("pat" not in str(m.payload) and "07700" not in str(m.payload) for m in rows)
    # Filed and written once: both queue rows are gone, and a second run writes nothing for them.
    assert _contact_queue(db, report.job_id) == [] and _queued(db, report.job_id) == []
    received.write_queued(db)
    assert len(_notify_rows(db, report.job_id)) == 2
    assert db.scalar(select(func.count()).select_from(ReporterContact)
                     .where(ReporterContact.report_id == report.id)) == 1


def test_a_job_change_writes_its_own_queued_acknowledgements_first_and_the_worker_the_rest(db, client, tokens):
    post = lambda n, contact: client.post("/api/v1/reports", json=_body(_light(db, 30 + n), contact),  # noqa: E731
                                          headers=auth(tokens["advisor"])).json()
    a, b = post(0, CONTACT), post(1, {"email": "bo@example.org", "notify": "email", "consent": True})
    none = post(2, {"email": "nia@example.org", "notify": "none"})  # no updates wanted: filed, nothing sent
    job_a, job_b, job_n = (db.scalar(select(Job).where(Job.reference == x["job"]["reference"])) for x in (a, b, none))
    assert [len(_contact_queue(db, j.id)) for j in (job_a, job_b, job_n)] == [1, 1, 1]
    assert received.for_job(db, job_a.id) == 2  # its contact filed, then an email and a text
    assert _contact_queue(db, job_a.id) == [] and _queued(db, job_a.id) == []
    assert len(_contact_queue(db, job_b.id)) == 1
    assert [m.destination for m in _notify_rows(db, job_a.id)] == ["notify:email", "notify:sms"]
    assert _notify_rows(db, job_b.id) == []
    received.write_queued(db)
    assert [(m.destination, m.payload["report"]) for m in _notify_rows(db, job_b.id)] == [("notify:email", b["reference"])]
    assert _contact_queue(db, job_b.id) == [] and _queued(db, job_b.id) == []
    assert _contact_queue(db, job_n.id) == [] and _notify_rows(db, job_n.id) == []
    assert db.scalar(select(ReporterContact.notify).where(ReporterContact.job_id == job_n.id)) == "none"


def _contact_queue(db, job_id: int) -> list[tuple]:
    return [tuple(row) for row in db.execute(
        select(ContactQueue.report_id, ContactQueue.email, ContactQueue.phone, ContactQueue.notify,
               ContactQueue.channel, ContactQueue.tell).where(ContactQueue.job_id == job_id)
        .order_by(ContactQueue.report_id))]


def _contact(db, report: Report) -> ReporterContact | None:
    return db.scalar(select(ReporterContact).where(ReporterContact.report_id == report.id))


def _queued(db, job_id: int) -> list[int]:
    return list(db.scalars(select(ReceivedQueue.contact_id).where(ReceivedQueue.job_id == job_id)
                           .order_by(ReceivedQueue.contact_id)))


def test_report_without_contact_stores_and_queues_nothing(db, client, tokens):
    before = db.scalar(select(func.count()).select_from(ReporterContact))
    r = client.post("/api/v1/reports", json=_body(_light(db, 1)), headers=auth(tokens["field_worker"]))
    assert r.status_code == 201
    job = db.scalar(select(Job).where(Job.reference == r.json()["job"]["reference"]))
    assert db.scalar(select(func.count()).select_from(ReporterContact)) == before
    assert _notify_rows(db, job.id) == []


@pytest.mark.parametrize("contact, field", [
    ({**CONTACT, "email": "not-an-address"}, "contact.email"),
    ({**CONTACT, "phone": "12"}, "contact.phone"),
    ({**CONTACT, "consent": False}, "contact"),
    ({"notify": "sms", "consent": True, "email": "a@example.org"}, "contact"),
    ({**CONTACT, "fax": "0123"}, "contact.fax"),
])
def test_bad_contact_is_a_422_naming_the_field_and_stores_nothing(db, client, tokens, contact, field):
    reports = db.scalar(select(func.count()).select_from(Report))
    r = client.post("/api/v1/reports", json=_body(_light(db, 2), contact), headers=auth(tokens["advisor"]))
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert field in r.json()["fields"], r.json()
    assert db.scalar(select(func.count()).select_from(Report)) == reports


def test_contact_is_read_by_advisers_only_and_every_read_is_audited(db, client, tokens):
    r = client.post("/api/v1/reports", json=_body(_light(db, 3), CONTACT), headers=auth(tokens["field_worker"]))
    ref = r.json()["reference"]
    for role in ("field_worker", "crew"):
        assert client.get(f"/api/v1/reports/{ref}/contact", headers=auth(tokens[role])).status_code == 403
    got = client.get(f"/api/v1/reports/{ref}/contact", params={"reason": "caller on the phone"},
                     headers=auth(tokens["advisor"]))
    assert got.status_code == 200 and got.json()["contact"]["email"] == "pat.caller@example.org"
    c = db.scalar(select(ReporterContact).join(Report, Report.id == ReporterContact.report_id)
                  .where(Report.reference == ref))
    trail = list(db.scalars(select(ContactAccess).where(ContactAccess.contact_id == c.id)))
    assert [(a.action, a.actor_role, a.note) for a in trail] == [("read", "advisor", "caller on the phone")]
    # The job page shows advisers no contact details (the audited endpoint is the only way to them).
    job = client.get(f"/api/v1/jobs/{r.json()['job']['reference']}", headers=auth(tokens["advisor"]))
    assert "pat.caller" not in job.text and "07700" not in job.text


def test_a_repeat_contact_is_the_same_email_in_any_case_or_the_same_phone_on_the_same_job_never_an_erased_one(
        db, client, tokens):
    light, elsewhere = _light(db, 5), _light(db, 6)

    def report(where: dict, contact: dict) -> dict:
        r = client.post("/api/v1/reports", json=_body(where, contact), headers=auth(tokens["advisor"]))
        assert r.status_code == 201, r.text
        return r.json()

    def chasers(job_ref: str) -> int:  # after the outbox worker's step, which files the queued contacts
        worker_step(db)
        return db.scalar(select(func.count()).select_from(Chaser).join(Job, Job.id == Chaser.job_id)
                         .where(Job.reference == job_ref, Chaser.kind == "repeat_report"))

    kim = {"first_name": "Kim", "phone": "07700 900787", "notify": "sms", "consent": True}
    first = report(light, kim)
    job = first["job"]["reference"]
    # Kim on another job is not a repeat of this one.
    assert chasers(report(elsewhere, kim)["job"]["reference"]) == 0
    # The same phone written another way, with an email this time: a repeat.
    assert report(light, {"email": "kim@example.org", "phone": "+44 7700 900787", "notify": "email",
                          "consent": True})["job"]["reference"] == job
    assert chasers(job) == 1
    # That email in other capitals, no phone: a repeat.
    report(light, {"email": "KIM@Example.ORG", "notify": "email", "consent": True})
    assert chasers(job) == 2
    # Someone else: not.
    report(light, {"email": "lee@example.org", "phone": "07700 900778", "notify": "both", "consent": True})
    assert chasers(job) == 2
    # Once Kim is erased, nobody on the job has Kim's details: the same phone again is a first contact.
    assert contacts.erase_person(db, phone="07700 900787") == 3
    report(light, {"first_name": "Kim", "phone": "07700900787", "notify": "sms", "consent": True})
    assert chasers(job) == 2
    # Each contact carries its report's job.
    pairs = db.execute(select(ReporterContact.job_id, Report.job_id).join(Report, Report.id == ReporterContact.report_id)
                       .join(Job, Job.id == Report.job_id).where(Job.reference == job)).all()
    assert len(pairs) == 5 and all(a == b for a, b in pairs)


def test_status_change_tells_every_reporter_once_duplicates_included(db, client, tokens):
    light = _light(db, 4)
    first = client.post("/api/v1/reports", json=_body(light, CONTACT), headers=auth(tokens["advisor"])).json()
    other = {"email": "sam@example.org", "notify": "email", "consent": True}
    second = client.post("/api/v1/reports", json=_body(light, other), headers=auth(tokens["advisor"])).json()
    # The same person again, about the same light: a chaser, and still one message per change.
    third = client.post("/api/v1/reports", json=_body(light, CONTACT), headers=auth(tokens["field_worker"])).json()
    assert second["job"]["attached"] and third["job"]["attached"]
    job = db.scalar(select(Job).where(Job.reference == first["job"]["reference"]))
    assert len(_contact_queue(db, job.id)) == 3 and _notify_rows(db, job.id) == []  # queued, not filed yet
    for status in ("assigned", "accepted", "scheduled", "in_progress", "completed"):
        if status == "assigned":
            job.status = "assigned"
            continue
        move(db, job, status, SUPERVISOR)
    db.flush()
    # The first message-sending move wrote the queued acknowledgements first: each report is acknowledged
    # (2 + 1 + 2), and every "received" goes before any later message of the job.
    received_rows = [m for m in _notify_rows(db, job.id) if m.topic == "received"]
    assert len(received_rows) == 5 and _queued(db, job.id) == [] and _contact_queue(db, job.id) == []
    assert [c.kind for c in db.scalars(select(Chaser).where(Chaser.job_id == job.id))] == ["repeat_report"]
    later = [m for m in _notify_rows(db, job.id) if m.topic != "received"]
    assert max(m.id for m in received_rows) < min(m.id for m in later)
    assert sorted((m.topic, m.destination) for m in later) == sorted([
        ("scheduled", "notify:email"), ("scheduled", "notify:sms"), ("scheduled", "notify:email"),
        ("fixed", "notify:email"), ("fixed", "notify:sms"), ("fixed", "notify:email")])
    # The same move enqueued twice (a retried transaction) adds nothing: keys are per event and person.
    event = db.scalar(select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "status_changed")
                      .order_by(JobEvent.id.desc()))
    from server.notifications.service import on_status_changed

    on_status_changed(db, job, event)
    assert len(_notify_rows(db, job.id)) == 5 + 6


def test_duplicate_and_not_ours_messages_carry_what_the_reporter_needs(db, client, tokens):
    a = client.post("/api/v1/reports", json=_body(_light(db, 5), CONTACT), headers=auth(tokens["advisor"])).json()
    b = client.post("/api/v1/reports", json=_body(_light(db, 6), CONTACT), headers=auth(tokens["advisor"])).json()
    job_a = db.scalar(select(Job).where(Job.reference == a["job"]["reference"]))
    job_b = db.scalar(select(Job).where(Job.reference == b["job"]["reference"]))
    move(db, job_a, "duplicate", SUPERVISOR, data={"reason": f"same fault as {job_b.reference}"})
    move(db, job_b, "cancelled", SUPERVISOR, data={"reason": "not_councils_responsibility"},
         note="Western Power Distribution, 0800 6783 105")
    db.flush()
    dup = [m for m in _notify_rows(db, job_a.id) if m.topic == "duplicate"]
    assert dup and all(m.payload["other_reference"] == job_b.reference for m in dup)
    ours = [m for m in _notify_rows(db, job_b.id) if m.topic == "not_ours"]
    assert ours and all("Western Power" in m.payload["who_to_contact"] for m in ours)
    page = client.get(f"/r/{a['reference']}")
    assert page.status_code == 200 and job_b.reference in page.text
    # Joined to job B, A's reporter now hears about B: B's next message goes to both reporters, once each.
    job_c = db.scalar(select(Job).where(Job.reference == client.post(
        "/api/v1/reports", json=_body(_light(db, 14), {"email": "kim@example.org", "notify": "email", "consent": True}),
        headers=auth(tokens["advisor"])).json()["job"]["reference"]))
    move(db, job_a, "new", SUPERVISOR)  # reopened: no message, and A's reporter no longer follows B
    assert db.scalar(select(func.count()).select_from(ReporterContact).where(
        ReporterContact.follows_job_id.is_not(None), ReporterContact.report_id.in_(
            select(Report.id).where(Report.job_id == job_a.id)))) == 0
    move(db, job_a, "duplicate", SUPERVISOR, data={"reason": f"same as {job_c.reference}"})
    db.flush()
    job_c.status = "accepted"
    move(db, job_c, "scheduled", SUPERVISOR)
    db.flush()
    told = sorted((m.payload["report"], m.destination) for m in _notify_rows(db, job_c.id) if m.topic == "scheduled")
    assert told == sorted([(a["reference"], "notify:email"), (a["reference"], "notify:sms"),
                           (client.get(f"/api/v1/jobs/{job_c.reference}", headers=auth(tokens["advisor"]))
                            .json()["reports"][0]["reference"], "notify:email")])


def test_erase_on_request_removes_the_person_and_keeps_job_and_history(db, client, tokens):
    r = client.post("/api/v1/reports", json=_body(_light(db, 7), CONTACT), headers=auth(tokens["advisor"])).json()
    job = db.scalar(select(Job).where(Job.reference == r["job"]["reference"]))
    received.write_queued(db)  # this report's messages are written; the next one's are still queued
    r2 = client.post("/api/v1/reports", json=_body(_light(db, 9), CONTACT), headers=auth(tokens["advisor"])).json()
    job2 = db.scalar(select(Job).where(Job.reference == r2["job"]["reference"]))
    assert len(_contact_queue(db, job2.id)) == 1
    events_before = db.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job.id))
    assert contacts.erase_person(db, email="PAT.CALLER@example.org", actor="test") >= 1
    c = db.scalar(select(ReporterContact).join(Report, Report.id == ReporterContact.report_id)
                  .where(Report.reference == r["reference"]))
    assert (c.first_name, c.last_name, c.email, c.phone, c.notify) == (None, None, None, None, "none")
    assert c.erased_at is not None and c.erase_reason == "request"
    assert db.get(Job, job.id) is not None and db.scalar(select(Report).where(Report.reference == r["reference"]))
    assert db.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job.id)) == events_before
    # Nothing of the person is left anywhere a search would find it.
    hits = db.execute(text("""SELECT count(*) FROM reporter_contacts WHERE email ILIKE '%pat.caller%'
                              OR phone = '07700900123'""")).scalar_one()
    queued = db.execute(text("""SELECT count(*) FROM contact_queue WHERE email ILIKE '%pat.caller%'
                                OR phone = '07700900123'""")).scalar_one()
    assert hits == 0 and queued == 0
    got = client.get(f"/api/v1/reports/{r['reference']}/contact", headers=auth(tokens["advisor"])).json()
    assert got["contact"]["email"] is None and got["contact"]["erase_reason"] == "request"
    # Messages still queued for the person are not sent: the sender skips an erased contact.
    from server.notifications.sender import send

    msg = _notify_rows(db, job.id)[0]
    assert send(db, msg) == {"skipped": "the reporter no longer wants (or can be sent) updates"}
    # Messages not yet written for the person never will be.
    received.write_queued(db)
    assert _queued(db, job2.id) == [] and _notify_rows(db, job2.id) == []


def test_a_drain_goes_on_from_where_its_last_batch_ended_and_the_next_run_takes_what_came_below(db, client, tokens):
    worker_step(db)  # whatever other tests left queued (committed runs elsewhere in the suite)
    lights = [_light(db, 16), _light(db, 17)]
    post = lambda light: client.post("/api/v1/reports", json=_body(light, CONTACT),  # noqa: E731
                                     headers=auth(tokens["advisor"])).json()
    job_of = {i: db.scalar(select(Job.id).where(Job.reference == post(light)["job"]["reference"]))
              for i, light in enumerate(lights)}
    jobs = sorted(job_of.values())
    drain = received.Drain()
    assert received.write_queued(db, limit=1, drain=drain) == 1 and drain.contacts[0] == jobs[0]
    assert received.write_queued(db, limit=1, drain=drain) == 1 and drain.contacts[0] == jobs[1]
    assert [len(_notify_rows(db, j)) for j in jobs] == [2, 2]
    # A report joining the first job now queues below where the drain has got to: the next run takes it.
    again = post(lights[min(job_of, key=job_of.get)])
    assert db.scalar(select(Job.id).where(Job.reference == again["job"]["reference"])) == jobs[0]
    assert received.write_queued(db, drain=drain) == 0 and len(_contact_queue(db, jobs[0])) == 1
    assert received.write_queued(db) == 1 and _contact_queue(db, jobs[0]) == []


def test_a_stop_reply_reaches_a_contact_still_queued(db, client, tokens):
    r = client.post("/api/v1/reports", json=_body(_light(db, 15), {"phone": "07700 900321", "notify": "sms",
                                                                   "consent": True}),
                    headers=auth(tokens["advisor"])).json()
    job = db.scalar(select(Job).where(Job.reference == r["job"]["reference"]))
    assert len(_contact_queue(db, job.id)) == 1  # no worker has filed it yet
    assert contacts.unsubscribe_phone(db, "+44 7700 900321") == 1  # files the queue first, then ends its texts
    assert _contact_queue(db, job.id) == []
    c = _contact(db, db.scalar(select(Report).where(Report.reference == r["reference"])))
    assert c.unsubscribed_at is not None
    worker_step(db)
    assert _notify_rows(db, job.id) == []  # not even "received"
    actions = db.scalars(select(ContactAccess.action).where(ContactAccess.contact_id == c.id)).all()
    assert actions == ["unsubscribe"]


def test_retention_sweep_erases_contacts_past_the_period(db, client, tokens, monkeypatch):
    r = client.post("/api/v1/reports", json=_body(_light(db, 8), CONTACT), headers=auth(tokens["advisor"])).json()
    worker_step(db)
    c = db.scalar(select(ReporterContact).join(Report, Report.id == ReporterContact.report_id)
                  .where(Report.reference == r["reference"]))
    from server.config import get_settings

    days = get_settings().contact_retention_days
    assert days == 395
    c.created_at = datetime.now(timezone.utc) - timedelta(days=days + 1)
    db.flush()
    # The sweep runs in its own session in the worker; here it runs on the test's connection.
    monkeypatch.setattr(contacts, "new_session", lambda: _Borrowed(db))
    assert contacts.sweep_retention() >= 1
    db.refresh(c)
    assert c.email is None and c.erase_reason == "retention"


class _Borrowed:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        return False


def test_open311_contact_goes_to_the_contact_table_and_never_out_again(db, client, tokens):
    light = _light(db, 9)
    form = {"api_key": tokens["advisor"], "service_code": "street_light", "lat": str(light["lat"]),
            "long": str(light["lon"]), "attribute[fault]": "out", "email": "olu@example.org",
            "first_name": "Olu", "last_name": "Witness", "phone": "07700900456", "attribute[kerbside_notify]": "email"}
    r = client.post("/open311/v2/requests.json", data=form)
    assert r.status_code == 200, r.text
    ref = r.json()[0]["service_request_id"]
    worker_step(db)
    c = db.scalar(select(ReporterContact).join(Report, Report.id == ReporterContact.report_id)
                  .where(Report.reference == ref))
    assert (c.email, c.notify, c.channel) == ("olu@example.org", "email", "open311") and c.consent_at
    job_ref = db.scalar(select(Job.reference).join(Report, Report.job_id == Job.id).where(Report.reference == ref))
    outputs = [client.get(f"/open311/v2/requests/{ref}.json"), client.get(f"/open311/v2/requests/{ref}.xml"),
               client.get("/open311/v2/requests.json"),
               client.get(f"/ogc/collections/jobs/items/{job_ref}", headers=auth(tokens["advisor"])),
               client.get("/ogc/collections/jobs/items", headers=auth(tokens["advisor"])),
               client.get(f"/r/{ref}")]
    for out in outputs:
        assert out.status_code == 200, out.url
        for secret in ("olu@example.org", "Olu", "Witness", "07700900456"):
            assert secret not in out.text, (out.url, secret)
    bad = client.post("/open311/v2/requests.json", data={**form, "email": "nope"})
    assert bad.status_code == 400 and "email" in bad.text


def _receipt(n: Notification, status: str) -> dict:
    return {"id": str(n.notify_id), "reference": n.reference, "to": "pat.caller@example.org", "status": status,
            "created_at": "2026-12-05T10:00:00.000000Z", "completed_at": "2026-12-05T10:00:01.000000Z",
            "sent_at": "2026-12-05T10:00:00.500000Z", "notification_type": "email",
            "template_id": "3f0a6c1e-2b7d-4c59-8e14-6a9d0b2c7f31", "template_version": 1}


def test_receipts_need_notifys_token_repeat_harmlessly_and_failures_reach_supervisors(db, client, tokens):
    from server.config import get_settings

    r = client.post("/api/v1/reports", json=_body(_light(db, 10), CONTACT), headers=auth(tokens["advisor"])).json()
    received.write_queued(db)  # the messages written, as the outbox worker does first
    job = db.scalar(select(Job).where(Job.reference == r["job"]["reference"]))
    msg = _notify_rows(db, job.id)[0]
    c = db.scalar(select(ReporterContact).join(Report, Report.id == ReporterContact.report_id)
                  .where(Report.reference == r["reference"]))
    n = Notification(outbox_id=msg.id, contact_id=c.id, job_id=job.id, template="received", kind="email",
                     notify_id=uuid.uuid4(), reference=f"kerbside-{msg.id}", status="created", receipts=0)
    db.add(n)
    db.flush()
    good = {"Authorization": f"Bearer {get_settings().notify_callback_token}"}
    assert client.post("/api/v1/notify/receipts", json=_receipt(n, "delivered")).status_code == 401
    assert client.post("/api/v1/notify/receipts", json=_receipt(n, "delivered"),
                       headers={"Authorization": "Bearer wrong-token-123"}).status_code == 401
    unknown = {**_receipt(n, "delivered"), "id": str(uuid.uuid4())}
    assert client.post("/api/v1/notify/receipts", json=unknown, headers=good).status_code == 404
    bad = client.post("/api/v1/notify/receipts", json={**_receipt(n, "delivered"), "status": "lost"}, headers=good)
    assert bad.status_code == 422 and "status" in str(bad.json()["fields"])
    assert client.post("/api/v1/notify/receipts", json=_receipt(n, "permanent-failure"), headers=good).status_code == 204
    events = db.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job.id))
    # The same receipt again, or a late "delivered" after the final one, changes nothing.
    for status in ("permanent-failure", "delivered"):
        assert client.post("/api/v1/notify/receipts", json=_receipt(n, status), headers=good).status_code == 204
    db.refresh(n)
    assert (n.status, n.receipts) == ("permanent-failure", 1)
    assert db.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job.id)) == events
    failed = client.get("/api/v1/notifications/failures", headers=auth(tokens["supervisor"]))
    assert failed.status_code == 200
    [item] = [i for i in failed.json()["items"] if i["report"] == r["reference"]]
    assert item["status"] == "permanent-failure" and "pat" not in failed.text
    assert client.get("/api/v1/notifications/failures", headers=auth(tokens["advisor"])).status_code == 403


def test_stop_reply_and_unsubscribe_link_end_messages(db, client, tokens):
    from server.config import get_settings

    r = client.post("/api/v1/reports", json=_body(_light(db, 11), CONTACT), headers=auth(tokens["advisor"])).json()
    received.write_queued(db)  # the messages written, as the outbox worker does first
    c = db.scalar(select(ReporterContact).join(Report, Report.id == ReporterContact.report_id)
                  .where(Report.reference == r["reference"]))
    good = {"Authorization": f"Bearer {get_settings().notify_callback_token}"}
    reply = {"id": str(uuid.uuid4()), "source_number": "447700900123", "destination_number": "07700900000",
             "content": "Stop ", "date_received": "2026-12-05T10:00:00.000000Z"}
    assert client.post("/api/v1/notify/inbound-sms", json=reply).status_code == 401
    assert client.post("/api/v1/notify/inbound-sms", json=reply, headers=good).status_code == 204
    db.refresh(c)
    assert c.unsubscribed_at is not None
    # The link in an email: a GET shows a button and changes nothing; the POST ends the messages.
    c.unsubscribed_at = None
    db.flush()
    link = contacts.token_of(c)
    # A forged link (this contact's id, another signature; another contact's signature) finds nobody.
    other = contacts.link_token(c.id + 1).split(".", 1)[1]
    for forged in (f"{c.id}.{'A' * 32}", f"{c.id}.{other}", f"0{link}", f"{link}x"):
        assert client.get(f"/u/{forged}").status_code == 404
        assert client.post(f"/u/{forged}").status_code == 404
    page = client.get(f"/u/{link}")
    assert page.status_code == 200 and "<form" in page.text and r["reference"] in page.text
    db.refresh(c)
    assert c.unsubscribed_at is None
    done = client.post(f"/u/{link}", content=b"List-Unsubscribe=One-Click")
    assert done.status_code == 200 and r["reference"] in done.text
    db.refresh(c)
    assert c.unsubscribed_at is not None
    assert client.post("/u/not-a-token").status_code == 404
    # A link sent before migration 0015 carries the random token stored then, and still works.
    c.unsubscribed_at, c.unsubscribe_token = None, "Zq3v9X_legacy-token-made-before-0015_aB"
    db.flush()
    assert client.get(f"/u/{c.unsubscribe_token}").status_code == 200
    assert client.post(f"/u/{c.unsubscribe_token}").status_code == 200
    db.refresh(c)
    assert c.unsubscribed_at is not None and contacts.token_of(c) == c.unsubscribe_token
    job = db.scalar(select(Job).where(Job.reference == r["job"]["reference"]))
    from server.notifications.sender import send

    assert "skipped" in send(db, _notify_rows(db, job.id)[0])


def test_status_page_in_words_without_personal_data(db, client, tokens):
    r = client.post("/api/v1/reports", json=_body(_light(db, 12), CONTACT, description="Pat at number 4 says"),
                    headers=auth(tokens["advisor"])).json()
    page = client.get(f"/r/{r['reference']}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Street light" in page.text or "street light" in page.text.lower()
    assert "We have your report" in page.text or "team" in page.text
    for secret in ("Pat", "pat.caller", "07700", "number 4"):
        assert secret not in page.text
    assert "<script>" not in page.text and 'lang="en"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get(f"/r/{r['reference'].lower()}").status_code == 200
    missing = client.get("/r/R-999999")
    assert missing.status_code == 404 and "cannot find" in missing.text
    assert client.get(f"/r/{r['reference']}", params={"lang": "xx"}).status_code == 422


def test_chasers_are_counted_with_their_channel_and_shown_in_the_figures(db, client, tokens):
    r = client.post("/api/v1/reports", json=_body(_light(db, 13), CONTACT), headers=auth(tokens["advisor"])).json()
    job_ref = r["job"]["reference"]
    got = client.post(f"/api/v1/jobs/{job_ref}/chasers", json={"channel": "phone"}, headers=auth(tokens["advisor"]))
    assert got.status_code == 201 and got.json()["channel"] == "phone"
    assert client.post(f"/api/v1/jobs/{job_ref}/chasers", json={"channel": "pigeon"},
                       headers=auth(tokens["advisor"])).status_code == 422
    assert client.post(f"/api/v1/jobs/{job_ref}/chasers", json={}, headers=auth(tokens["crew"])).status_code == 403
    job = db.scalar(select(Job).where(Job.reference == job_ref))
    # An Open311 citizen update (a job event the Open311 code writes) is a chaser too, by trigger.
    db.add(JobEvent(job_id=job.id, type="citizen_update", actor="open311:crm", actor_role="advisor", data={}))
    db.flush()
    kinds = sorted((c.kind, c.channel) for c in db.scalars(select(Chaser).where(Chaser.job_id == job.id)))
    assert kinds == [("adviser_call", "phone"), ("citizen_update", "open311")]
    figures = client.get("/api/v1/contact-centre/figures", headers=auth(tokens["supervisor"])).json()
    avoidable = figures["avoidable_contact"]
    assert avoidable["overall"]["chasers"] >= 2 and avoidable["overall"]["jobs"] >= 1
    [row] = [c for c in avoidable["by_category"] if c["category"] == "street_light"]
    assert row["chasers"] >= 2 and row["chasers_per_100_jobs"] > 0
    assert row["before_notification"] + row["after_notification"] == row["chasers"]
    assert {c["channel"] for c in avoidable["by_channel"]} >= {"phone", "open311"}
