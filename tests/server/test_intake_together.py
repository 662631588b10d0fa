"""A batch's new faults written together (migration 0024).

kerbside_intake_new_jobs writes new jobs, their reports, timelines and dispatch messages, one INSERT each for a
whole batch; kerbside_intake calls it for a new job, and kerbside_intake_batch for the reports of a batch that are
certainly a new fault. These tests hold it to what 0018's kerbside_intake wrote one report at a time, and the
batch to its rules: who is written together, who one at a time, and what happens when the together part fails.
"""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text

from tests.server.test_intake_pool import lamp_column, live, report  # noqa: F401 (live is a fixture)

pytestmark = pytest.mark.commits


def _item(token: str, body: dict) -> str:
    """The batch item the API builds for `body` (kerbside_intake_ready's parameter), as JSON text."""
    from server.auth.tokens import hash_token
    from server.deps import Caller
    from server.reports import service
    from server.reports.router import REPORTERS, channel_for
    from server.reports.schemas import ReportIn

    return service._batch_item(Caller(hash_token(token), REPORTERS), ReportIn.model_validate(body), channel_for)


def _ready(db, token: str, body: dict) -> dict:
    """kerbside_intake's parameter for `body`, filled in by the database as a batch fills it in."""
    ready = db.execute(text("SELECT kerbside_intake_ready(CAST(:it AS jsonb))"), {"it": _item(token, body)}).scalar_one()
    assert "p" in ready, ready
    return ready["p"]


def _stored(db, written: dict) -> str:
    """Everything one report's write left (its job, report, timeline, dispatch message, the answer and the
    NOTIFYs) as canonical JSON, with the numbers a sequence gave (ids, references) replaced by their order."""
    job_id, report_id = written["job_id"], written["report_id"]
    rows = db.execute(text("""
        SELECT (SELECT to_jsonb(j) - 'id' FROM jobs j WHERE j.id = :j),
               (SELECT to_jsonb(r) - 'id' - 'job_id' FROM reports r WHERE r.id = :r),
               (SELECT jsonb_agg(to_jsonb(e) - 'job_id' ORDER BY e.id) FROM job_events e WHERE e.job_id = :j),
               (SELECT jsonb_agg(to_jsonb(o) - 'id' - 'job_id' ORDER BY o.id) FROM outbox_messages o
                 WHERE o.job_id = :j)"""), {"j": job_id, "r": report_id}).one()
    text_ = json.dumps({"rows": list(rows), "written": {k: v for k, v in written.items()
                                                          if k not in ("job_id", "report_id")}}, sort_keys=True)
    for i, event_id in enumerate(e["id"] for e in rows[2]):
        text_ = re.sub(rf'"id": {event_id}\b', f'"id": "E{i}"', text_)
        text_ = re.sub(rf'(\\"event_id\\" : ){event_id}\b', rf"\g<1>E{i}", text_)
    for i, ref in enumerate(sorted(set(re.findall(r"\b[JR]-\d+\b", text_)))):
        text_ = text_.replace(ref, f"REF{i}")
    return text_


def test_new_faults_written_together_are_the_rows_one_at_a_time_wrote(live, db):
    """Lamp columns with and without a runner-up, both channels, good and poor fixes, and a category without an
    asset layer: kerbside_intake_new_jobs writing them in one statement leaves the rows, answers and NOTIFYs that
    0018's kerbside_intake left writing them one at a time, to the last digit, but for the numbers a sequence
    gives; and so does today's kerbside_intake, which calls it for each new job."""
    from server.migrations.earlier import migration

    _, tokens = live
    before = migration("0018_intake_autocommit.py").intake().replace(
        "FUNCTION kerbside_intake(", "FUNCTION pg_temp.kerbside_intake_0018(")
    assert "pg_temp.kerbside_intake_0018(" in before
    db.execute(text(before.replace(":", r"\:")))
    ps = []
    for i in range(7):
        _, lat, lon = lamp_column(db)
        body = report(lat + (i % 3 - 1) * 0.00004, lon, accuracy_m=(2.0, 4.0, 12.5, None)[i % 4])
        if i == 6:  # graffiti (no asset layer) by a lamp column, with no open graffiti job near enough to attach to
            assert not db.execute(text("""
                SELECT 1 FROM jobs WHERE category_code = 'graffiti' AND status NOT IN ('completed', 'closed',
                       'cancelled', 'duplicate')
                   AND ST_DWithin(geom, ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), ST_SRID(geom)), 200)
            """), {"lat": lat, "lon": lon}).first()
            body.update(category="graffiti", answers={"offensive": "no"}, lat=lat, lon=lon)
        ps.append(_ready(db, tokens["advisor" if i % 2 else "field_worker"], body))
    assert {p["asset_id"] is None for p in ps} == {True, False}
    assert {p["answer"]["channel"] for p in ps} == {"field_app", "contact_centre"}

    def one_at_a_time(function: str) -> list[str]:
        with db.begin_nested() as sp:
            out = [_stored(db, db.execute(text(f"SELECT {function}(CAST(:p AS jsonb))"),
                                          {"p": json.dumps(p)}).scalar_one()) for p in ps]
            sp.rollback()
        return out

    then = one_at_a_time("pg_temp.kerbside_intake_0018")
    assert one_at_a_time("kerbside_intake") == then
    with db.begin_nested() as sp:
        written = db.execute(text("SELECT kerbside_intake_new_jobs(CAST(:ps AS jsonb))"),
                             {"ps": json.dumps(ps)}).scalar_one()
        together = [_stored(db, w) for w in written]
        sp.rollback()
    assert together == then
    # numbered in the batch's order, jobs and reports alike (migration 0025 draws the numbers a level down)
    for refs in ([w["answer"]["job"]["reference"] for w in written], [w["answer"]["reference"] for w in written]):
        numbers = [int(ref.split("-")[1]) for ref in refs]
        assert numbers == list(range(numbers[0], numbers[0] + len(ps))), refs
    assert all(json.loads(t)["written"]["attached"] is False for t in then)
    # received, opened, SLA set, and for a lamp column snapped: every kind of timeline was compared
    assert sorted(len(json.loads(t)["rows"][2]) for t in then) == [3] + [4] * 6


def _batch(db, items: list[str]) -> list[dict]:
    return json.loads(db.execute(text("SELECT kerbside_intake_batch(CAST(:items AS jsonb))"),
                                 {"items": "[" + ",".join(items) + "]"}).scalar_one())


def _xmins(db, job_ids: list[int]) -> int:
    """How many subtransactions wrote these jobs: one for those written together, one each otherwise."""
    return db.execute(text("SELECT count(DISTINCT xmin::text) FROM jobs WHERE id = ANY(:ids)"),
                      {"ids": job_ids}).scalar_one()


def test_a_batch_writes_its_new_faults_together_and_the_rest_one_at_a_time(live, db):
    """Four new faults go together; two reports of one fault, a report with the reporter's contact, and a report
    of a fault with an open job each go one at a time, as before: the second of the pair and the last attach."""
    client, tokens = live
    token = tokens["field_worker"]
    new = [lamp_column(db) for _ in range(4)]
    _, plat, plon = lamp_column(db)
    _, clat, clon = lamp_column(db)
    _, olat, olon = lamp_column(db)
    opened = client.post("/api/v1/reports", json=report(olat, olon), headers={"Authorization": f"Bearer {token}"})
    assert opened.status_code == 201 and opened.json()["job"]["attached"] is False
    contact = {"first_name": "Ada", "email": "ada.together@example.org", "notify": "email", "consent": True}
    bodies = ([report(lat, lon) for _, lat, lon in new] + [report(plat, plon), report(plat, plon)]
              + [report(clat, clon, contact=contact), report(olat, olon)])
    out = _batch(db, [_item(token, b) for b in bodies])
    assert all("written" in o for o in out), out
    w = [o["written"] for o in out]
    assert [x["attached"] for x in w] == [False] * 4 + [False, True, False, True]
    assert [x["answer"]["job"]["asset"]["ref"] for x in w[:4]] == [ref for ref, _, _ in new]
    assert w[5]["job_id"] == w[4]["job_id"] and w[5]["answer"]["job"]["demand_count"] == 2
    assert w[7]["answer"]["job"]["reference"] == opened.json()["job"]["reference"]
    assert _xmins(db, [x["job_id"] for x in w[:4]]) == 1  # the new faults: one subtransaction
    assert _xmins(db, [w[0]["job_id"], w[4]["job_id"], w[6]["job_id"]]) == 3  # the others: one each
    assert db.execute(text("SELECT count(*) FROM contact_queue WHERE report_id = :r"),
                      {"r": w[6]["report_id"]}).scalar_one() == 1
    for x, b in zip(w, bodies):  # each answer is the one stored for a retry
        stored = db.execute(text("SELECT response FROM reports WHERE id = :r AND client_id = CAST(:c AS uuid)"),
                            {"r": x["report_id"], "c": b["client_id"]}).scalar_one()
        assert stored == x["answer"]
    jobs = {x["job_id"] for x in w}
    assert len(jobs) == 7  # one dispatch message for each job: the six opened here and the one opened before
    assert db.execute(text("SELECT count(*) FROM outbox_messages WHERE job_id = ANY(:ids) AND topic = 'job.opened'"),
                      {"ids": list(jobs)}).scalar_one() == 7


def test_when_the_new_faults_together_fail_each_is_written_on_its_own(live, db):
    """One client_id twice in a batch, at two lamp columns (a device's retry racing its first send): writing the
    new faults together fails on the second, so none of that is kept and each is written on its own: the first
    in lock order is stored, the other declined alone (the API answers it as a retry), and the rest stored."""
    _, tokens = live
    token = tokens["advisor"]
    columns = [lamp_column(db) for _ in range(4)]
    bodies = [report(lat, lon) for _, lat, lon in columns]
    bodies[3]["client_id"] = bodies[1]["client_id"]
    out = _batch(db, [_item(token, b) for b in bodies])
    assert out[0].get("written") and out[2].get("written"), out
    assert sorted([out[1].get("declined") or "written", out[3].get("declined") or "written"]) == ["23505", "written"]
    written = [o["written"] for o in out if "written" in o]
    assert [x["attached"] for x in written] == [False] * 3
    assert _xmins(db, [x["job_id"] for x in written]) == 3  # each on its own
    assert db.execute(text("SELECT count(*) FROM reports WHERE client_id = CAST(:c AS uuid)"),
                      {"c": bodies[1]["client_id"]}).scalar_one() == 1
    declined = columns[1 if "declined" in out[1] else 3][0]
    assert db.execute(text("""
        SELECT count(*) FROM jobs j JOIN assets a ON a.id = j.asset_id WHERE a.external_ref = :ref"""),
                      {"ref": declined}).scalar_one() == 0  # nothing of the declined one stays
