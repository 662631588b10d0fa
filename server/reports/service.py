"""Report intake: one transaction from a device's report to the right job, exactly once."""
from __future__ import annotations

import hashlib
import json
import zlib
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server import events
from server.areas.models import Area
from server.assets import nearest, snapping
from server.catalogue.answers import AnswerError, priority_for, validate_answers
from server.catalogue.schemas import CategoryDef
from server.catalogue.service import category_or_422
from server.config import get_settings
from server.deps import Principal
from server.errors import Conflict, DomainError
from server.jobs import sla
from server.jobs.models import Job
from server.jobs.rules import OPEN_STATUSES
from server.jobs.service import append_event, append_events, iso, next_reference
from server.jobs.transitions import set_due
from server.outbox.service import enqueue
from server.reports.models import Report
from server.reports.schemas import ReportIn


def payload_hash(data: ReportIn) -> str:
    """A stable hash of what was reported (the idempotency comparison)."""
    canon = data.model_dump(mode="json")
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def submit_report(session: Session, who: Principal, data: ReportIn, channel: str, *,
                  reporter: dict | None = None, external_id: str | None = None) -> tuple[int, dict]:
    """Validate, snap, deduplicate, open or attach a job; returns (HTTP status, answer). Commits once."""
    digest = payload_hash(data)
    replay = _replay(session, data, digest)
    if replay is not None:
        return 200, replay
    category = category_or_422(data.category)
    try:
        answers = validate_answers(category, data.answers)
    except AnswerError as exc:
        raise DomainError(exc.reason, fields=[exc.field], code="invalid-answer", status=422) from None
    try:
        answer = _intake(session, who, data, category, answers, digest, channel, reporter or {}, external_id)
        session.commit()
    except IntegrityError:
        # Another request with this client_id won the race: answer as a retry would be answered.
        session.rollback()
        replay = _replay(session, data, digest)
        if replay is None:
            raise
        return 200, replay
    except Exception:
        session.rollback()
        raise
    return 201, answer


def _replay(session: Session, data: ReportIn, digest: str) -> dict | None:
    row = session.execute(
        select(Report.payload_hash, Report.response).where(Report.client_id == data.client_id)
    ).first()
    if row is None:
        return None
    if row.payload_hash != digest:
        raise Conflict("this client_id was already used for a different report", fields=["client_id"],
                       code="idempotency-conflict")
    return row.response


def _lock(session: Session, *parts: object) -> None:
    """Serialise duplicate checks on the same key across concurrent requests (held to commit)."""
    key = zlib.crc32(":".join(map(str, parts)).encode())
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _intake(session: Session, who: Principal, data: ReportIn, category: CategoryDef, answers: dict,
            digest: str, channel: str, reporter: dict, external_id: str | None) -> dict:
    now = datetime.now(timezone.utc)
    settings = get_settings()
    place = nearest.locate(session, data.lon, data.lat, category.layer)
    if not place.inside:
        raise DomainError(f"the point is outside the {settings.council_name} area", fields=["lat", "lon"],
                          code="out-of-area", status=422)
    warnings: list[str] = []
    if data.accuracy_m is not None and data.accuracy_m > category.max_accuracy_m:
        warnings.append(f"GPS accuracy {data.accuracy_m:.0f} m is worse than the {category.max_accuracy_m:.0f} m "
                        f"this category needs")
    if data.mock_location:
        warnings.append("the device reported a mock location")

    snap = None
    layer_name = category.layer
    if layer_name:
        if place.layer_id is None:
            raise DomainError(f"asset layer {layer_name!r} is not loaded", fields=["category"],
                              code="layer-not-loaded", status=503)
        hint = None
        if data.asset_ref:
            hint = nearest.hint_candidate(session, place.layer_id, data.asset_ref, data.lon, data.lat)
            if hint is None:
                raise DomainError(f"no asset {data.asset_ref!r} on the {layer_name} layer", fields=["asset_ref"],
                                  code="unknown-asset", status=422)
        snap = snapping.choose(place.candidates, category.snap_radius_m, data.accuracy_m, hint)
        if hint is not None and not snap.hint_used:
            warnings.append(f"asset {hint.ref} is {hint.distance_m:.0f} m away, beyond the "
                            f"{category.snap_radius_m:g} m radius; the nearest asset was used instead")
    elif data.asset_ref:
        raise DomainError(f"category {category.code!r} has no asset layer", fields=["asset_ref"],
                          code="unknown-asset", status=422)

    chosen = snap.chosen if snap else None
    point = place.ewkt  # storage-CRS point as EWKT: binds as a plain parameter, batches, never re-read
    priority = priority_for(category, answers)

    # Duplicate check and job creation under one lock per (category, asset) or per category.
    _lock(session, category.code, chosen.asset_id if chosen else "-")
    job = _open_duplicate(session, category, chosen.asset_id if chosen else None, data, point)
    attached = job is not None
    job_ref, report_ref = _references(session, need_job=not attached)
    if job is None:
        job = _new_job(session, job_ref, category, data, chosen, place, priority, point, now, snap)
    report_data = {"report": report_ref, "channel": channel, "client_id": str(data.client_id)}
    specs = [dict(type=events.REPORT_RECEIVED, actor=who, data=report_data, geom=point, notify=False)]
    if attached:
        before = job.demand_count
        job.demand_count = before + 1
        job.updated_at = now
        if _rank(priority) < _rank(job.priority):
            _escalate(session, job, category, priority, who, now)
        specs.append(dict(type=events.REPORT_ATTACHED, actor=who, before={"demand_count": before},
                          after={"demand_count": job.demand_count}, data=report_data))
    else:
        specs += _opening_events(job, who, category, snap, chosen, data, point)
        enqueue(session, destination="dispatch", topic="job.opened", job=job,
                payload={"job": job.reference, "category": category.code}, key=f"dispatch:{job.reference}")

    answer = _answer(session, report_ref, data, channel, job, category, chosen, place, attached, snap,
                     warnings, now)
    session.execute(insert(Report).values(
        reference=report_ref, client_id=data.client_id, payload_hash=digest, category_code=category.code,
        channel=channel, geom=point, lat=data.lat, lon=data.lon, accuracy_m=data.accuracy_m,
        location_provider=data.location_provider, mock_location=data.mock_location, observed_at=data.observed_at,
        received_at=now, asset_hint=data.asset_ref, description=data.description, answers=answers,
        asset_id=chosen.asset_id if chosen else None, snap_distance_m=chosen.distance_m if chosen else None,
        runner_up_asset_id=snap.runner_up.asset_id if snap and snap.runner_up else None,
        runner_up_distance_m=snap.runner_up.distance_m if snap and snap.runner_up else None,
        snap_confidence=snap.confidence if snap else None, ward_id=place.ward_id, street=place.street,
        job_id=job.id, token_id=who.token_id, reporter=reporter, external_id=external_id, response=answer))
    append_events(session, job, specs)
    return answer


def _references(session: Session, *, need_job: bool) -> tuple[str | None, str]:
    """New public references in one round trip: J-001234 for a new job, R-001234 for the report."""
    if need_job:
        j, r = session.execute(text("SELECT nextval('job_reference_seq'), nextval('report_reference_seq')")).one()
        return f"J-{j:06d}", f"R-{r:06d}"
    return None, next_reference(session, "report")


_RANKS = {"emergency": 0, "urgent": 1, "normal": 2, "low": 3}


def _rank(priority: str) -> int:
    return _RANKS.get(priority, 9)


def _escalate(session: Session, job: Job, category: CategoryDef, priority: str, who: Principal,
              now: datetime) -> None:
    """A more severe report on an open job raises its priority; the due date only ever moves earlier."""
    s = get_settings()
    policy = category.sla_for(priority)
    due = sla.due_at(policy, now, tz=s.timezone, country=s.holiday_country, subdiv=s.holiday_subdivision)
    before = {"priority": job.priority, "due_at": iso(job.due_at)}
    job.priority, job.sla_policy = priority, policy
    if job.due_at is None or due < job.due_at:
        set_due(job, due)
    append_event(session, job, "priority_raised", who, before=before,
                 after={"priority": job.priority, "due_at": iso(job.due_at)}, notify=False)


def _open_duplicate(session: Session, category: CategoryDef, asset_id: int | None, data: ReportIn,
                    point: str) -> Job | None:
    """The open job this report duplicates: same asset and category, else same category nearby and recent."""
    open_ = Job.status.in_(OPEN_STATUSES)
    if asset_id is not None:
        q = select(Job).where(Job.asset_id == asset_id, Job.category_code == category.code, open_)
        return session.scalars(q.order_by(Job.id).limit(1).with_for_update()).first()
    if category.duplicate_radius_m <= 0:
        return None
    since = datetime.now(timezone.utc) - timedelta(hours=category.duplicate_window_hours)
    point = func.ST_GeomFromEWKT(point)
    q = (select(Job).where(Job.category_code == category.code, Job.asset_id.is_(None), open_,
                           Job.created_at >= since, func.ST_DWithin(Job.geom, point, category.duplicate_radius_m))
         .order_by(func.ST_Distance(Job.geom, point), Job.id).limit(1).with_for_update())
    return session.scalars(q).first()


def _new_job(session, reference, category, data, chosen, place, priority, point, now, snap) -> Job:
    policy = category.sla_for(priority)
    triage = category.layer is not None and chosen is None
    settings = get_settings()
    due = sla.due_at(policy, now, tz=settings.timezone, country=settings.holiday_country,
                     subdiv=settings.holiday_subdivision)
    job = Job(
        reference=reference, category_code=category.code,
        asset_id=chosen.asset_id if chosen else None, geom=point, ward_id=place.ward_id, street=place.street,
        priority=priority, status="triage" if triage else "new", triage_reason=snap.reason if triage else None,
        sla_policy=policy, sla_started_at=now, demand_count=1, description=data.description,
        created_at=now, updated_at=now,
    )
    set_due(job, due)
    session.add(job)
    session.flush()
    return job


def _opening_events(job, who, category, snap, chosen, data, point) -> list[dict]:
    specs = [dict(type=events.JOB_OPENED, actor=who, after={"status": job.status, "priority": job.priority},
                  data={"category": category.code}, geom=point, notify=False)]
    if snap is not None:
        runner = snap.runner_up
        detail = {"confidence": snap.confidence, "reason": snap.reason, "hint": data.asset_ref,
                  "runner_up": {"ref": runner.ref, "distance_m": round(runner.distance_m, 1)} if runner else None}
        if chosen is not None:
            specs.append(dict(type=events.SNAPPED, actor="system:snapping", notify=False,
                              data={"asset": chosen.ref, "distance_m": round(chosen.distance_m, 1), **detail}))
        else:
            specs.append(dict(type=events.TRIAGED, actor="system:snapping", data=detail, notify=False,
                              note=snap.reason))
    specs.append(dict(type=events.SLA_SET, actor="system:sla", after={"due_at": iso(job.due_at)},
                      data={"policy": job.sla_policy, "priority": job.priority}))
    return specs


def _answer(session, report_ref, data, channel, job, category, chosen, place, attached, snap, warnings,
            now) -> dict:
    """The 201 body, from what the use case already holds (an attached job shares this asset)."""
    asset = None
    if job.asset_id is not None and chosen is not None:
        asset = {"layer": category.layer, "ref": chosen.ref, "distance_m": round(chosen.distance_m, 1),
                 "name": chosen.name}
    if job.ward_id == place.ward_id:
        ward = place.ward
    else:  # a radius duplicate opened from a point in the next ward
        ward = session.scalar(select(Area.name).where(Area.id == job.ward_id)) if job.ward_id else None
    s = get_settings()
    return {
        "reference": report_ref,
        "client_id": str(data.client_id),
        "received_at": iso(now),
        "channel": channel,
        "job": {
            "reference": job.reference, "status": job.status, "priority": job.priority, "category": category.code,
            "asset": asset, "ward": ward, "street": job.street, "due_at": iso(job.due_at),
            "due_in_words": sla.describe_due(job.due_at, now, s.timezone) if job.due_at else None,
            "attached": attached, "demand_count": job.demand_count, "triage_reason": job.triage_reason,
        },
        "snap": {
            "confidence": snap.confidence if snap else None,
            "reason": snap.reason if snap else None,
            "runner_up": ({"ref": snap.runner_up.ref, "distance_m": round(snap.runner_up.distance_m, 1)}
                          if snap and snap.runner_up else None),
        },
        "warnings": warnings,
    }
