"""Contractor updates, pushed or polled, through one path: deduplicate, find the job, ignore stale, apply.

Every update is recorded in `inbound_updates` (unique per contractor and update_id) in the same
transaction as its effect, so an update is applied once however often it arrives.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from contractors import StatusUpdate
from server.config import get_settings
from server.deps import Principal
from server.dispatch.models import Contractor
from server.errors import DomainError
from server.geo import point_from_lonlat
from server.inbound.models import InboundUpdate
from server.jobs import rules
from server.jobs.models import Job
from server.jobs.service import append_event
from server.jobs.transitions import move

# The lifecycle status each contractor status lands on ("rejected" hands the job back).
TARGET = {"accepted": "accepted", "scheduled": "scheduled", "in_progress": "in_progress", "on_hold": "on_hold",
          "completed": "completed", "cancelled": "cancelled", "duplicate": "duplicate", "rejected": "new"}


@dataclass
class InboundResult:
    """What happened to one update, and the HTTP status that says so to a pushing contractor."""

    result: str
    status_code: int
    job: Job | None = None
    detail: str | None = None

    def to_dict(self) -> dict:
        return {"result": self.result, "job": self.job.reference if self.job else None, "detail": self.detail}


def contractor_principal(c: Contractor) -> Principal:
    """The contractor as an actor on the timeline (pushes and polls carry no user token)."""
    return Principal(token_id=0, name=c.name, role="contractor", contractor_id=c.id)


def _canonical(update: StatusUpdate) -> dict:
    d = update.to_dict()
    d.pop("raw", None)
    return json.loads(json.dumps(d, sort_keys=True, default=str))


def _find_job(session: Session, c: Contractor, update: StatusUpdate) -> Job | None:
    conds = [Job.contractor_ref == update.contractor_ref]
    if update.job_reference:
        conds.append(Job.reference == update.job_reference)
    q = (select(Job).where(Job.contractor_id == c.id, or_(*conds)).order_by(Job.id).limit(1)
         .with_for_update())
    return session.scalars(q).first()


def _evidence_problem(update: StatusUpdate) -> tuple[str, list[str]] | None:
    if update.status != "completed":
        return None
    missing = [f for f, v in (("lat", update.lat), ("lon", update.lon), ("photo_url", update.photo_url)) if v is None]
    if missing:
        return "a completion needs a GPS fix (lat, lon) and a photo", missing
    return None


def record_and_apply(session: Session, contractor: Contractor, update: StatusUpdate, *,
                     source: str) -> InboundResult:
    """Apply one contractor update exactly once (does not commit; the caller commits with the cursor)."""
    canon = _canonical(update)
    seen = session.scalar(select(InboundUpdate).where(InboundUpdate.contractor_id == contractor.id,
                                                      InboundUpdate.update_id == update.update_id))
    if seen is not None:
        if seen.raw.get("update") == canon:
            return InboundResult("duplicate", 200, None, f"update {update.update_id} was already received")
        return InboundResult("conflict", 409, None, f"update_id {update.update_id} was used for a different update")
    job = _find_job(session, contractor, update)
    if job is None:
        # Not recorded: a retry after the order is on our side can still apply.
        return InboundResult("unknown_job", 404, None, f"no job of yours with reference {update.contractor_ref!r}")

    def record(result: str, detail: str | None = None) -> bool:
        stmt = insert(InboundUpdate).values(
            contractor_id=contractor.id, update_id=update.update_id, job_id=job.id, result=result, detail=detail,
            raw={"update": canon, "received": update.raw, "source": source})
        return session.execute(stmt.on_conflict_do_nothing().returning(InboundUpdate.id)).first() is not None

    if update.status is None:
        detail = f"unknown contractor status {update.contractor_status!r}"
        record("unmapped", detail)
        append_event(session, job, "contractor_update_unmapped", contractor_principal(contractor),
                     data={"update_id": update.update_id, "contractor_status": update.contractor_status})
        return InboundResult("unmapped", 422, job, detail)
    if job.last_contractor_update_at and update.occurred_at < job.last_contractor_update_at:
        record("stale", "older than the last applied update")
        return InboundResult("stale", 200, job, "older than an update already applied; ignored")
    problem = _evidence_problem(update)
    if problem:
        record("rejected", problem[0])
        return InboundResult("missing_evidence", 422, job, problem[0])
    target = TARGET[update.status]
    who = contractor_principal(contractor)
    if job.status in rules.FINISHED_STATUSES or (job.status == "completed" and target != "completed"):
        if job.status == target:  # e.g. our own cancellation echoed back
            record("applied", "already in that state")
            return InboundResult("applied", 200, job, "already " + target)
        record("rejected", f"the job is {job.status}")
        return InboundResult("job_closed", 409, job, f"the job is {job.status}; no further updates are accepted")
    data = {"update_id": update.update_id, "contractor_status": update.contractor_status, "source": source,
            "contractor_ref": update.contractor_ref}
    if update.scheduled_for:
        data["scheduled_for"] = update.scheduled_for.isoformat()
    if update.photo_url:
        data["photo_url"] = update.photo_url
    geom = point_from_lonlat(update.lon, update.lat) if update.lat is not None and update.lon is not None else None
    if not record("applied"):
        return InboundResult("duplicate", 200, job, "received concurrently")
    if job.contractor_ref is None:
        job.contractor_ref = update.contractor_ref
    try:
        if update.status == "rejected":
            _hand_back(session, job, who, update, data)
        elif job.status != target:
            if job.status == "new":
                # Their update overtook our delivery record: the order evidently reached them.
                move(session, job, "sent", "system:inbound", data={"contractor_ref": update.contractor_ref})
            for step in rules.plan(job.status, target, "contractor"):
                move(session, job, step, who, note=update.note, data=data, geom=geom if step == target else None,
                     at=None)
        else:
            append_event(session, job, "contractor_update", who, data=data, note=update.note, geom=geom)
    except (rules.InvalidTransition, DomainError) as exc:
        raise DomainError(getattr(exc, "reason", None) or getattr(exc, "detail", str(exc)), fields=["status"],
                          code="invalid-transition", status=409) from None
    if target == "completed" and geom is not None:
        flag_far_completion(session, job, update.lon, update.lat, who)
    job.last_contractor_update_at = update.occurred_at
    return InboundResult("applied", 200, job, f"job is now {job.status}")


def _hand_back(session: Session, job: Job, who: Principal, update: StatusUpdate, data: dict) -> None:
    """The contractor will not do it: back to new, off their list, onto the supervisor's queue."""
    move(session, job, "new", who, note=update.note, data=data)
    job.queue_reason = f"rejected by {who.name}: {update.note or 'no reason given'}"[:300]
    job.contractor_id = None


def flag_far_completion(session: Session, job: Job, lon: float, lat: float, who) -> float:
    """Flag a completion whose GPS fix is far from the asset (or the job's point); returns the distance."""
    from server.assets.models import Asset

    target = session.scalar(select(Asset.geom).where(Asset.id == job.asset_id)) if job.asset_id else job.geom
    distance = session.scalar(select(func.ST_Distance(target, point_from_lonlat(lon, lat))))
    limit = getattr(get_settings(), "completion_max_distance_m", 50.0)
    if distance is not None and distance > limit:
        flags = list(job.flags or [])
        if "completion_far_from_asset" not in flags:
            job.flags = flags + ["completion_far_from_asset"]
        append_event(session, job, "completion_far_from_asset", who,
                     data={"distance_m": round(distance, 1), "limit_m": limit})
    return distance


def poll_contractor(session: Session, contractor: Contractor, adapter, max_pages: int = 20) -> int:
    """Fetch and apply a contractor's updates since the stored cursor; the cursor moves in the same commit."""
    applied = 0
    for _ in range(max_pages):
        batch = adapter.fetch_updates(contractor.poll_cursor)
        for update in batch.updates:
            with session.begin_nested():
                try:
                    res = record_and_apply(session, contractor, update, source="poll")
                except DomainError as exc:
                    res = InboundResult("invalid_transition", 409, None, exc.detail)
            if res.result == "invalid_transition":
                _record_refused(session, contractor, update, res.detail)
            applied += res.result == "applied"
        contractor.poll_cursor = batch.cursor
        contractor.polled_at = datetime.now(timezone.utc)
        session.flush()
        if not batch.has_more:
            break
    return applied


def _record_refused(session: Session, contractor: Contractor, update: StatusUpdate, detail: str | None) -> None:
    stmt = insert(InboundUpdate).values(contractor_id=contractor.id, update_id=update.update_id,
                                        result="invalid_transition", detail=detail,
                                        raw={"update": _canonical(update), "received": update.raw, "source": "poll"})
    session.execute(stmt.on_conflict_do_nothing())
