"""Dispatch use cases: decide who does a new job and record it, in the caller's transaction (no commit here).

- `dispatch_job`: what the outbox worker runs for a "dispatch" message. Idempotent: a job that is not
  `new`, or already has a crew or contractor, is left alone; `triage` jobs wait for a supervisor.
- A crew: the job moves new → assigned. A contractor: the contract SLA replaces the category's for
  normal/low priority, and a work order goes into the outbox (the job stays `new` until delivery
  succeeds; the delivery side moves it to `sent`). Nobody: the job waits in the dispatch queue with
  the reason, recorded once.
- `redispatch` and `assign`: the supervisor's "try again" and "give it to X".
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, select, text
from sqlalchemy.orm import Session

from contractors.base import WorkOrder
from server.areas.models import Area
from server.assets.models import Asset, AssetLayer
from server.config import get_settings
from server.deps import Principal
from server.dispatch import rules as drules
from server.dispatch.models import Contractor, Crew
from server.errors import Conflict, DomainError, Unprocessable
from server.geo import lonlat_of
from server.jobs import rules as jrules
from server.jobs.models import Job
from server.jobs.service import append_event, iso
from server.jobs.transitions import move, recompute_due
from server.outbox.models import OutboxMessage
from server.outbox.service import enqueue
from server.reports.models import Photo, Report

DISPATCHER = "system:dispatch"
# Priorities where a contract SLA replaces the category's policy (emergencies keep theirs).
CONTRACT_SLA_PRIORITIES = ("normal", "low")


@lru_cache(maxsize=4)
def _rules_at(path: str, mtime: float) -> tuple[drules.Rule, ...]:
    return drules.load_rules(Path(path))


def current_rules() -> tuple[drules.Rule, ...]:
    """The dispatch rules file, re-read when it changes on disk."""
    path = Path(get_settings().dispatch_rules_file)
    return _rules_at(str(path), path.stat().st_mtime)


def job_facts(session: Session, job: Job) -> drules.JobFacts:
    """Category, asset maintainer and every ward / crew zone / contractor area holding the job.

    Zones built from wards (zones.yaml) are matched by the job's ward, so a job is in exactly one
    crew zone even on a boundary; other polygons by geometry.
    """
    maintainer = session.scalar(select(Asset.maintainer).where(Asset.id == job.asset_id)) if job.asset_id else None
    rows = session.execute(text("""
        SELECT a.kind, a.code FROM jobs j
          LEFT JOIN areas w ON w.id = j.ward_id
          JOIN areas a ON (a.kind = 'ward' AND a.id = j.ward_id)
            OR (a.kind IN ('crew_zone', 'contractor_area') AND CASE
                  WHEN w.code IS NOT NULL AND a.attributes ? 'wards' THEN (a.attributes -> 'wards') ? w.code
                  ELSE ST_Intersects(a.geom, j.geom) END)
         WHERE j.id = :id"""), {"id": job.id}).all()
    return drules.JobFacts(job.category_code, maintainer, frozenset((k, c) for k, c in rows))


def crew_states(session: Session, team: str, job: Job, *, lock: bool = True) -> list[drules.CrewState]:
    """The team's crews with their open-job counts and distance to the job.

    Locks the team's crew rows first (in id order), so two dispatches cannot both take a crew's last slot.
    """
    if lock:
        session.execute(select(Crew.id).where(Crew.team == team).order_by(Crew.id).with_for_update())
    open_jobs = (select(func.count()).select_from(Job)
                 .where(Job.crew_id == Crew.id, Job.status.in_(jrules.OPEN_STATUSES)).scalar_subquery())
    here = select(Job.geom).where(Job.id == job.id).scalar_subquery()
    rows = session.execute(
        select(Crew, Area.code, open_jobs, func.ST_Distance(Crew.last_position, here))
        .outerjoin(Area, Area.id == Crew.zone_id).where(Crew.team == team).order_by(Crew.id)).all()
    return [drules.CrewState(id=c.id, name=c.name, team=c.team, skills=frozenset(c.skills or ()), zone=zone,
                             shift_start=c.shift_start, shift_end=c.shift_end, capacity=c.capacity, open_jobs=n,
                             distance_m=float(d) if d is not None else None, active=c.active)
            for c, zone, n, d in rows]


def local_time(now: datetime):
    """Wall-clock time in the council's timezone (shifts are local)."""
    return now.astimezone(ZoneInfo(get_settings().timezone)).time()


def dispatch_job(session: Session, job: Job, *, now: datetime | None = None, who: Principal | str = DISPATCHER) -> dict:
    """Decide and record who does a new job; returns what happened. A no-op for jobs already dealt with."""
    now = now or datetime.now(timezone.utc)
    session.flush()
    session.refresh(job, with_for_update=True)
    answer = {"job": job.reference}
    if job.status == "triage":
        return {**answer, "outcome": "skipped", "reason": "the job is in triage: a supervisor moves it to new"}
    if job.status != "new" or job.crew_id is not None or job.contractor_id is not None:
        return {**answer, "outcome": "skipped", "reason": f"already dispatched (status {job.status})"}
    facts = job_facts(session, job)
    rules = current_rules()
    rule = drules.match_rule(rules, facts)
    crews = crew_states(session, rule.crew_team, job) if rule is not None and rule.crew_team else []
    decision = drules.decide(rules, facts, crews, local_time(now))
    if decision.outcome == "crew":
        crew = session.get(Crew, decision.crew.id)
        _assign_crew(session, job, crew, who, now, reason=decision.reason, rule=decision.rule)
        return {**answer, "outcome": "assigned", "crew": crew.name, "rule": decision.rule, "reason": decision.reason}
    if decision.outcome == "contractor":
        c = session.scalar(select(Contractor).where(Contractor.name == decision.contractor))
        if c is None or not c.active:
            why = f"contractor {decision.contractor!r} is {'inactive' if c else 'not set up'}"
            _queue(session, job, why, who, now, rule=decision.rule)
            return {**answer, "outcome": "queued", "reason": why, "rule": decision.rule}
        key = _send_to_contractor(session, job, c, who, now, reason=decision.reason, rule=decision.rule)
        return {**answer, "outcome": "dispatched", "contractor": c.name, "rule": decision.rule, "key": key,
                "due_at": iso(job.due_at)}
    _queue(session, job, decision.reason, who, now, rule=decision.rule)
    return {**answer, "outcome": "queued", "reason": decision.reason, "rule": decision.rule}


def dispatch_reference(session: Session, reference: str, *, now: datetime | None = None) -> dict:
    """dispatch_job for a job reference (a missing job is reported, not raised)."""
    job = session.scalar(select(Job).where(Job.reference == reference))
    if job is None:
        return {"job": reference, "outcome": "skipped", "reason": "no such job"}
    return dispatch_job(session, job, now=now)


def _assign_crew(session: Session, job: Job, crew: Crew, who, now: datetime, *, reason: str,
                 rule: str | None) -> None:
    job.crew_id = crew.id
    job.queue_reason = None
    move(session, job, "assigned", who, at=now, note=reason,
         data={"assignee": {"kind": "crew", "name": crew.name}, "rule": rule, "reason": reason})


def _send_to_contractor(session: Session, job: Job, c: Contractor, who, now: datetime, *, reason: str,
                        rule: str | None) -> str:
    """Contract SLA, work order in the outbox, `dispatched` event; returns the order's idempotency key."""
    job.contractor_id = c.id
    job.queue_reason = None
    job.dispatch_count = (job.dispatch_count or 0) + 1
    if c.sla_policy and job.priority in CONTRACT_SLA_PRIORITIES and job.sla_policy != c.sla_policy:
        before = job.due_at
        job.sla_policy = dict(c.sla_policy)
        recompute_due(job)
        if job.due_at != before:
            append_event(session, job, "sla_set", "system:sla", before={"due_at": iso(before)},
                         after={"due_at": iso(job.due_at)}, at=now,
                         data={"policy": job.sla_policy, "priority": job.priority, "source": f"contract:{c.name}"})
    key = f"order:{job.reference}:{job.dispatch_count}"
    order = work_order(session, job, key)
    enqueue(session, destination=f"contractor:{c.name}", topic="order.submit", job=job, payload=order.to_dict(),
            key=key)
    append_event(session, job, "dispatched", who, note=reason, at=now, data={
        "assignee": {"kind": "contractor", "name": c.name}, "rule": rule, "reason": reason, "idempotency_key": key})
    return key


def _queue(session: Session, job: Job, reason: str, who, now: datetime, *, rule: str | None = None) -> None:
    """Park the job for a supervisor; the event is written only when the reason changes."""
    reason = reason[:300]
    if job.queue_reason == reason:
        return
    before = job.queue_reason
    job.queue_reason = reason
    append_event(session, job, "queued", who, before={"queue_reason": before}, after={"queue_reason": reason},
                 data={"rule": rule}, note=reason, at=now)


def work_order(session: Session, job: Job, key: str) -> WorkOrder:
    """The WorkOrder for a job (place, asset, ward, first report's answers, photo URLs)."""
    lon, lat = session.execute(select(*lonlat_of(Job.geom)).where(Job.id == job.id)).one()
    asset = session.execute(
        select(Asset.external_ref, AssetLayer.name).join(AssetLayer, AssetLayer.id == Asset.layer_id)
        .where(Asset.id == job.asset_id)).first() if job.asset_id else None
    ward = session.scalar(select(Area.name).where(Area.id == job.ward_id)) if job.ward_id else None
    answers = session.scalar(select(Report.answers).where(Report.job_id == job.id).order_by(Report.id).limit(1))
    base = get_settings().public_base_url.rstrip("/")
    photos = session.scalars(select(Photo.id).where(Photo.job_id == job.id).order_by(Photo.id)).all()
    return WorkOrder(job_reference=job.reference, idempotency_key=key, category=job.category_code,
                     priority=job.priority, description=job.description or "", lat=round(lat, 7), lon=round(lon, 7),
                     due_at=job.due_at, asset_ref=asset[0] if asset else None, asset_layer=asset[1] if asset else None,
                     street=job.street, ward=ward, answers=answers or {},
                     photos=tuple(f"{base}/api/v1/photos/{p}" for p in photos))


def _pending_order(session: Session, job: Job) -> bool:
    return bool(session.scalar(select(exists().where(
        OutboxMessage.job_id == job.id, OutboxMessage.topic == "order.submit", OutboxMessage.state == "pending"))))


def _back_to_new(session: Session, job: Job, who: Principal, note: str | None) -> None:
    """Take a job out of triage, or back from a crew that has not accepted it, so it can be dispatched."""
    if job.status == "triage":
        move(session, job, "new", who, note=note)
    elif job.status == "assigned":
        crew = session.scalar(select(Crew.name).where(Crew.id == job.crew_id))
        job.crew_id = None
        move(session, job, "new", who, note=note, data={"unassigned": {"kind": "crew", "name": crew}})
    if job.status != "new":
        raise Conflict(f"a {job.status} job cannot be dispatched again", fields=["status"], code="cannot-dispatch")
    if job.contractor_id is not None:
        if _pending_order(session, job):
            raise Conflict("an order for this job is still being delivered to the contractor", fields=["status"],
                           code="cannot-dispatch")
        job.contractor_id = None  # the last order failed for good (dead) or was rejected


def redispatch(session: Session, job: Job, who: Principal, *, note: str | None = None) -> dict:
    """Supervisor: run dispatch again for this job (a fresh "dispatch" outbox message)."""
    _back_to_new(session, job, who, note)
    job.queue_reason = None
    key = f"dispatch:{job.reference}:{uuid.uuid4().hex[:12]}"
    enqueue(session, destination="dispatch", topic="job.redispatch", job=job, key=key,
            payload={"job": job.reference, "category": job.category_code})
    append_event(session, job, "redispatch_requested", who, note=note, data={"idempotency_key": key})
    return {"job": job.reference, "outcome": "redispatch_requested", "key": key}


def assign(session: Session, job: Job, who: Principal, *, crew: str | None = None, contractor: str | None = None,
           note: str | None = None, now: datetime | None = None) -> dict:
    """Supervisor: give the job to a named crew or contractor, whatever the rules say (warnings if unusual)."""
    now = now or datetime.now(timezone.utc)
    if (crew is None) == (contractor is None):
        raise Unprocessable("name exactly one of crew and contractor", fields=["crew", "contractor"])
    reason = f"assigned by {who.actor}" + (f": {note}" if note else "")
    if crew is not None:
        row = session.scalar(select(Crew).where(Crew.name == crew))
        if row is None or not row.active:
            raise DomainError(f"no active crew named {crew!r}", fields=["crew"], code="unknown-crew", status=422)
        if job.status == "assigned" and job.crew_id is not None:
            if job.crew_id == row.id:
                raise Conflict(f"the job is already with {crew}", fields=["crew"], code="already-assigned")
            old = session.scalar(select(Crew.name).where(Crew.id == job.crew_id))
            job.crew_id = row.id
            append_event(session, job, "reassigned", who, note=note, before={"crew": old}, after={"crew": row.name})
            return {"job": job.reference, "outcome": "reassigned", "crew": row.name, "warnings": _crew_warnings(
                session, job, row, now)}
        _back_to_new(session, job, who, note)
        warnings = _crew_warnings(session, job, row, now)
        _assign_crew(session, job, row, who, now, reason=reason, rule=None)
        return {"job": job.reference, "outcome": "assigned", "crew": row.name, "warnings": warnings}
    c = session.scalar(select(Contractor).where(Contractor.name == contractor))
    if c is None or not c.active:
        raise DomainError(f"no active contractor named {contractor!r}", fields=["contractor"],
                          code="unknown-contractor", status=422)
    _back_to_new(session, job, who, note)
    key = _send_to_contractor(session, job, c, who, now, reason=reason, rule=None)
    return {"job": job.reference, "outcome": "dispatched", "contractor": c.name, "key": key, "warnings": []}


def _crew_warnings(session: Session, job: Job, crew: Crew, now: datetime) -> list[str]:
    state = next(s for s in crew_states(session, crew.team, job, lock=False) if s.id == crew.id)
    facts = job_facts(session, job)
    chosen, why = drules.choose_crew([state], team=crew.team, category=job.category_code,
                                     zones=facts.codes("crew_zone"), at=local_time(now))
    return [] if chosen is not None else [why]
