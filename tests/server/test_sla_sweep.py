"""The SLA sweep: at-risk and breach flagged once each, on hold does not count, index-driven, safe with two workers."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from server.deps import Principal
from server.jobs.models import Job, JobEvent
from server.jobs.scheduled import _FLAG, BATCH, SWEPT_STATUSES, pending_query, sweep_sla
from server.jobs.transitions import move, set_due
from tests.conftest import auth

# Deadlines long past, so a sweep at these times touches only the jobs made here.
T0 = datetime(2001, 3, 5, 9, 0, tzinfo=timezone.utc)
SUPERVISOR = Principal(token_id=0, name="sla-test", role="supervisor")
ODD_DOWN = (-2.3800, 51.3600)


def make_job(session: Session, *, status: str = "new", started: datetime = T0, hours: float = 10) -> Job:
    """A job at Odd Down on an elapsed-hours clock (flushed)."""
    job = Job(reference="S-" + uuid.uuid4().hex[:10].upper(), category_code="graffiti",
              geom=func.ST_Transform(func.ST_SetSRID(func.ST_MakePoint(*ODD_DOWN), 4326), 27700),
              priority="normal", status=status, sla_policy={"kind": "hours", "hours": hours}, sla_started_at=started,
              created_at=started, updated_at=started)
    set_due(job, started + timedelta(hours=hours))
    session.add(job)
    session.flush()
    return job


def count_events(session: Session, job: Job, type_: str) -> int:
    return session.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job.id,
                                                                          JobEvent.type == type_))


def test_at_risk_then_breached_each_flagged_once(db):
    job = make_job(db)
    assert job.risk_at == T0 + timedelta(hours=8) and job.due_at == T0 + timedelta(hours=10)
    assert job.reference not in sweep_sla(db, now=T0 + timedelta(hours=7))["at_risk"]
    out = sweep_sla(db, now=T0 + timedelta(hours=9))
    assert job.reference in out["at_risk"] and job.reference not in out["breached"]
    db.refresh(job)
    assert job.at_risk_at == T0 + timedelta(hours=9) and job.breached_at is None
    again = sweep_sla(db, now=T0 + timedelta(hours=9, minutes=30))
    assert job.reference not in again["at_risk"] + again["breached"]
    out = sweep_sla(db, now=T0 + timedelta(hours=11))
    assert job.reference in out["breached"] and job.reference not in out["at_risk"]
    sweep_sla(db, now=T0 + timedelta(hours=12))
    db.refresh(job)
    assert job.breached_at == T0 + timedelta(hours=11)
    assert count_events(db, job, "sla_at_risk") == 1 and count_events(db, job, "sla_breached") == 1
    ev = db.scalar(select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "sla_breached"))
    assert ev.actor == "system:sla" and ev.data["due_at"] == job.due_at.isoformat()


def test_finished_and_on_hold_jobs_are_not_swept(db):
    done = make_job(db, status="completed")
    cancelled = make_job(db, status="cancelled")
    held = make_job(db, status="on_hold")
    out = sweep_sla(db, now=T0 + timedelta(days=3))
    flagged = set(out["at_risk"]) | set(out["breached"])
    assert not flagged & {done.reference, cancelled.reference, held.reference}


def test_time_on_hold_does_not_count(db):
    job = make_job(db, status="in_progress")
    move(db, job, "on_hold", SUPERVISOR, at=T0 + timedelta(hours=1), data={"reason": "awaiting power cut"})
    # Well past the original deadline, but the clock is stopped.
    out = sweep_sla(db, now=T0 + timedelta(hours=20))
    assert job.reference not in out["at_risk"] + out["breached"]
    move(db, job, "in_progress", SUPERVISOR, at=T0 + timedelta(hours=21))
    db.refresh(job)
    assert job.paused_seconds == 20 * 3600
    assert job.due_at == T0 + timedelta(hours=30) and job.risk_at == T0 + timedelta(hours=24)
    out = sweep_sla(db, now=T0 + timedelta(hours=22))
    assert job.reference not in out["at_risk"] + out["breached"]
    assert job.reference in sweep_sla(db, now=T0 + timedelta(hours=25))["at_risk"]
    assert job.reference in sweep_sla(db, now=T0 + timedelta(hours=31))["breached"]


def test_the_sweep_is_not_jit_compiled(db):
    # Planned for a batch of thousands, the sweep's statements pass jit_above_cost on a large table, and an
    # empty sweep then spent most of its time compiling. The app's connections have JIT off (server/db.py).
    compiled = _FLAG["at_risk"].compile(dialect=db.bind.dialect)
    params = compiled.construct_params({
        "now": T0, "statuses": list(SWEPT_STATUSES), "limit": BATCH, "type": "sla_at_risk", "after": "{}",
        "channel": "kerbside_test_unheard"})

    def plan() -> str:
        return "\n".join(r[0] for r in db.connection().exec_driver_sql(
            "EXPLAIN (ANALYZE) " + str(compiled), params))

    db.execute(text("SET LOCAL jit_above_cost = 0"))
    assert "JIT:" not in plan()
    db.execute(text("SET LOCAL jit = on"))
    assert "JIT:" in plan()  # the control: on a connection with JIT, this statement is compiled


@pytest.mark.parametrize("kind, index", [("at_risk", "ix_jobs_risk_pending"), ("breached", "ix_jobs_breach_pending")])
def test_the_sweep_reads_the_partial_index_not_the_healthy_jobs(db, kind, index):
    # Many healthy open jobs (deadlines far ahead) and many already flagged (deadlines long gone):
    # the sweep must go straight to the few unflagged jobs whose deadline has come.
    db.execute(text("""
        INSERT INTO jobs (reference, category_code, geom, priority, status, sla_policy, sla_started_at, due_at,
                          risk_at, at_risk_at, breached_at, paused_seconds, demand_count, description)
        SELECT 'X-' || i, 'graffiti', ST_SetSRID(ST_MakePoint(375000 + i % 500, 165000 + i / 500), 27700),
               'normal', 'in_progress', '{"kind": "hours", "hours": 10}', t, t + interval '10 hours',
               t + interval '8 hours', CASE WHEN old THEN t + interval '8 hours' END,
               CASE WHEN old THEN t + interval '10 hours' END, 0, 1, ''
          FROM generate_series(1, 4000) i,
               LATERAL (SELECT i % 4 = 0 AS old) o,
               LATERAL (SELECT CASE WHEN old THEN timestamptz '2000-01-01' ELSE timestamptz '2099-01-01' END
                               + i * interval '1 minute' AS t) s"""))
    db.execute(text("ANALYZE jobs"))  # inside the test transaction: rolled back with the rows
    compiled = pending_query(kind, T0).compile(dialect=db.bind.dialect, compile_kwargs={"render_postcompile": True})
    plan = "\n".join(r[0] for r in db.connection().exec_driver_sql("EXPLAIN " + str(compiled), compiled.params))
    assert index in plan, plan
    assert "Seq Scan on jobs" not in plan


def test_overdue_list_most_overdue_first(client, tokens, db):
    now = datetime.now(timezone.utc)
    late = make_job(db, started=now - timedelta(hours=30), hours=10)  # 20 h overdue
    later = make_job(db, started=now - timedelta(hours=50), hours=10)  # 40 h overdue
    held = make_job(db, status="on_hold", started=now - timedelta(hours=50), hours=10)
    fine = make_job(db, started=now, hours=10)
    r = client.get("/api/v1/jobs/overdue?limit=500", headers=auth(tokens["supervisor"]))
    assert r.status_code == 200, r.text
    refs = [i["reference"] for i in r.json()["items"]]
    assert refs.index(later.reference) < refs.index(late.reference)
    assert held.reference not in refs and fine.reference not in refs
    item = next(i for i in r.json()["items"] if i["reference"] == later.reference)
    assert 39 * 3600 < item["overdue_seconds"] < 41 * 3600
    assert client.get("/api/v1/jobs/overdue", headers=auth(tokens["advisor"])).status_code == 200
    assert client.get("/api/v1/jobs/overdue", headers=auth(tokens["field_worker"])).status_code == 403


@pytest.mark.commits
def test_two_workers_sweeping_at_once_flag_each_job_once(engine):
    with Session(engine) as s:
        jobs = [make_job(s, started=T0 - timedelta(days=400 + i)) for i in range(3)]
        ids, refs = [j.id for j in jobs], {j.reference for j in jobs}
        s.commit()
    now = T0 - timedelta(days=300)
    a, b = Session(engine), Session(engine)
    try:
        first = sweep_sla(a, now=now)  # holds its rows until commit
        second = sweep_sla(b, now=now)  # skips them rather than flag them again
        a.commit()
        b.commit()
        with Session(engine) as c:
            third = sweep_sla(c, now=now)
            c.commit()
        for kind in ("at_risk", "breached"):
            seen = [r for r in first[kind] + second[kind] + third[kind] if r in refs]
            assert sorted(seen) == sorted(refs), kind
        with Session(engine) as s:
            for type_ in ("sla_at_risk", "sla_breached"):
                n = s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id.in_(ids),
                                                                             JobEvent.type == type_))
                assert n == 3, type_
    finally:
        a.close()
        b.close()
        # Events are append-only (a trigger), so the committed jobs stay; closed, nothing sweeps or lists them.
        with Session(engine) as s:
            s.execute(update(Job).where(Job.id.in_(ids)).values(status="cancelled"))
            s.commit()
