"""Status changes from crews (and supervisors): evidence, the far-completion flag, idempotent by client_id.

One use case, one commit. A crew completion needs a GPS fix and at least one completion photo; a
completion further than `completion_max_distance_m` from the asset (or the job's place) is accepted
but flagged on the job and its timeline. Supervisor moves that need follow-up get it here: triage →
new and reopen send the job to dispatch again; a decline puts it in the dispatch queue; withdrawing a
job from a contractor (cancel, duplicate, back to new) sends them a cancellation.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.assets.models import Asset
from server.config import get_settings
from server.deps import Principal
from server.dispatch.models import Contractor, Crew, StatusRequest
from server.errors import Conflict, DomainError
from server.geo import point_from_lonlat
from server.jobs import rules
from server.jobs.access import job_or_404
from server.jobs.models import Job
from server.jobs.service import append_event
from server.jobs.transitions import move, owns
from server.jobs.views import job_summary
from server.outbox.service import enqueue
from server.reports.models import Photo

FAR_FLAG = "completion_far_from_asset"


class StatusIn(BaseModel):
    """A status change from the field app or the dashboard."""

    model_config = ConfigDict(extra="forbid")
    status: str = Field(min_length=1, max_length=32, description="the status to move to")
    note: str | None = Field(None, max_length=2000)
    reason: str | None = Field(None, max_length=300, description="why (needed for on_hold)")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, le=100_000)
    photo_ids: list[int] = Field(default_factory=list, max_length=20)
    client_id: uuid.UUID | None = Field(None, description="idempotency key from the device")


def _bad(detail: str, fields: list[str], code: str) -> DomainError:
    return DomainError(detail, fields=fields, code=code, status=422)


def _digest(reference: str, data: StatusIn) -> str:
    canon = {"job": reference, **data.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _replay(session: Session, client_id: uuid.UUID, digest: str) -> dict | None:
    row = session.execute(select(StatusRequest.payload_hash, StatusRequest.response)
                          .where(StatusRequest.client_id == client_id)).first()
    if row is None:
        return None
    if row.payload_hash != digest:
        raise Conflict("this client_id was already used for a different status change", fields=["client_id"],
                       code="idempotency-conflict")
    return row.response


def change_status(session: Session, who: Principal, reference: str, data: StatusIn) -> tuple[int, dict]:
    """Apply one status change (or replay the answer to a retried client_id); commits once."""
    digest = _digest(reference, data)
    if data.client_id and (answer := _replay(session, data.client_id, digest)) is not None:
        return 200, answer
    try:
        job = job_or_404(session, who, reference, for_update=True)
        if data.client_id and (answer := _replay(session, data.client_id, digest)) is not None:
            session.rollback()
            return 200, answer
        answer = _apply(session, who, job, data)
        if data.client_id:
            session.add(StatusRequest(client_id=data.client_id, job_id=job.id, token_id=who.token_id or None,
                                      payload_hash=digest, response=answer))
            session.flush()
        session.commit()
    except IntegrityError:
        session.rollback()  # the same client_id won a race: answer as a retry
        if data.client_id and (answer := _replay(session, data.client_id, digest)) is not None:
            return 200, answer
        raise
    except Exception:
        session.rollback()
        raise
    return 200, answer


def _apply(session: Session, who: Principal, job: Job, data: StatusIn) -> dict:
    target, before = data.status, job.status
    if target not in rules.STATUSES:
        raise _bad(f"unknown status {target!r}; one of {', '.join(rules.STATUSES)}", ["status"], "invalid-status")
    try:
        rules.check_transition(before, target, who.role, own=owns(job, who))
    except rules.InvalidTransition as exc:
        raise DomainError(exc.reason, fields=["status"], code="invalid-transition", status=409,
                          extra={"from": exc.from_status, "to": exc.to_status}) from None
    if (data.lat is None) != (data.lon is None):
        raise _bad("send both lat and lon, or neither", ["lat", "lon"], "invalid-location")
    point = point_from_lonlat(data.lon, data.lat) if data.lat is not None else None
    if data.photo_ids:
        found = set(session.scalars(select(Photo.id).where(Photo.id.in_(data.photo_ids), Photo.job_id == job.id)))
        if missing := sorted(set(data.photo_ids) - found):
            raise _bad(f"no photo {missing} on this job", ["photo_ids"], "unknown-photo")
    if target == "on_hold" and not (data.reason or "").strip():
        raise _bad("say why the job is on hold (it stops the SLA clock)", ["reason"], "missing-reason")
    if target == "completed" and who.role == "crew":
        if point is None:
            raise _bad("a completion needs a GPS fix (lat, lon)", ["lat", "lon"], "missing-evidence")
        photos = session.scalar(select(func.count()).select_from(Photo)
                                .where(Photo.job_id == job.id, Photo.kind == "completion"))
        if not photos:
            raise _bad(f"a completion needs a completion photo: POST /api/v1/jobs/{job.reference}/photos first",
                       ["photo_ids"], "missing-evidence")
    detail: dict[str, Any] = {k: v for k, v in {
        "reason": data.reason, "lat": data.lat, "lon": data.lon, "accuracy_m": data.accuracy_m,
        "photo_ids": data.photo_ids or None, "client_id": str(data.client_id) if data.client_id else None,
    }.items() if v is not None}
    crew_before, contractor_before = job.crew_id, job.contractor_id
    event = move(session, job, target, who, note=data.note, data=detail, geom=point)
    if point is not None and who.role == "crew" and who.crew_id:
        # The crew's last known position: dispatch breaks ties between equally loaded crews by distance.
        session.execute(update(Crew).where(Crew.id == who.crew_id).values(last_position=point, last_seen_at=event.at))
    warnings = []
    if target == "completed" and point is not None:
        warnings += _check_distance(session, job, who, point, data.accuracy_m)
    if contractor_before is not None and before in rules.OPEN_STATUSES and target in ("cancelled", "duplicate", "new"):
        _withdraw_order(session, job, contractor_before, data.reason or data.note or target)
    if target == "new":
        _after_back_to_new(session, job, who, before, data, crew_before)
    session.flush()
    return {"job": job_summary(session, job), "event_id": event.id, "flags": list(job.flags or []),
            "actions": rules.allowed_targets(job.status, who.role), "warnings": warnings}


def _check_distance(session: Session, job: Job, who: Principal, point, accuracy_m: float | None) -> list[str]:
    """Flag a completion far from the asset (or the job's place when there is no asset)."""
    limit = get_settings().completion_max_distance_m
    if job.asset_id is not None:
        where, q = "asset", select(func.ST_Distance(Asset.geom, point)).where(Asset.id == job.asset_id)
    else:
        where, q = "job location", select(func.ST_Distance(Job.geom, point)).where(Job.id == job.id)
    distance = session.scalar(q)
    if distance is None or distance <= limit:
        return []
    if FAR_FLAG not in (job.flags or []):
        job.flags = [*(job.flags or []), FAR_FLAG]  # a new list, so the JSONB change is saved
    append_event(session, job, FAR_FLAG, who, geom=point,
                 data={"distance_m": round(float(distance), 1), "max_m": limit, "from": where,
                       "accuracy_m": accuracy_m})
    return [f"the completion was {distance:.0f} m from the {where} (over {limit:g} m): flagged for review"]


def _after_back_to_new(session: Session, job: Job, who: Principal, before: str, data: StatusIn,
                       crew_before: int | None) -> None:
    if before == "assigned":  # declined: a supervisor decides what next (dispatch would pick the same crew)
        crew = session.scalar(select(Crew.name).where(Crew.id == crew_before)) if crew_before else None
        job.crew_id = None
        reason = f"declined by {who.actor}: {data.reason or data.note or 'no reason given'}"[:300]
        job.queue_reason = reason
        append_event(session, job, "queued", who, after={"queue_reason": reason}, data={"crew": crew}, note=reason)
        return
    # Out of triage, reopened or taken back from a contractor: dispatch again from scratch.
    job.crew_id = None
    job.contractor_id = job.contractor_ref = None
    job.queue_reason = None
    key = f"dispatch:{job.reference}:{uuid.uuid4().hex[:12]}"
    enqueue(session, destination="dispatch", topic="job.redispatch", job=job, key=key,
            payload={"job": job.reference, "category": job.category_code})
    append_event(session, job, "redispatch_requested", who, data={"idempotency_key": key, "after": before})


def _withdraw_order(session: Session, job: Job, contractor_id: int, reason: str) -> None:
    """Tell the contractor the job is off (only once they have given us their reference)."""
    if not job.contractor_ref:
        return
    name = session.scalar(select(Contractor.name).where(Contractor.id == contractor_id))
    enqueue(session, destination=f"contractor:{name}", topic="order.cancel", job=job,
            key=f"cancel:{job.reference}:{job.dispatch_count}",
            payload={"job": job.reference, "contractor_ref": job.contractor_ref, "reason": reason[:300]})
